"""The cluster's Job store: a Grid's Jobs through the Kubernetes API, seen through the Jobs' informer.

What the submission driver (controller.driving.JobStore) observes, creates, deletes and cuts short on a
cluster: observing reads the mirror the watch keeps (controller/cluster/informer.py), never the API
server; what this process writes is remembered in the mirror at once (a reconcile running before its
watch event arrives does not act on the older copy). A created Job is owned by its Grid (deleting the
Grid deletes it) and labelled with its submission (controller/cluster/jobs.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

import contract
from controller.cluster import kube
from controller.cluster.informer import Mirror
from controller.cluster.jobs import observe, owned
from controller.cluster.kube import JOBS, Kube
from controller.core.reconciling import Conflict, ObservedJob

# what the store reports to the Grid's Events: (reason, message, point)
Event = Callable[[str, str, str], None]

log = logging.getLogger(__name__)


class ClusterStore:
    """The JobStore of one Grid (`grid`: the Grid object, the owner of the Jobs it creates)."""

    def __init__(self, *, api: Kube, jobs: Mirror, grid: dict[str, Any], event: Event) -> None:
        self.api, self.jobs, self.grid, self.event = api, jobs, grid, event
        self.name = grid["metadata"]["name"]

    def observe(self, names: Iterable[str]) -> dict[str, ObservedJob]:
        return observe(self.jobs.snapshot().values(), grid=self.name, names=names)

    def create(self, name: str, manifest: dict[str, Any], *, role: str, spec_hash: str,
               submission: str) -> Conflict | None:
        body = owned(manifest, grid=self.grid, submission=submission)
        try:
            self.jobs.remember(self.api.create(JOBS, body))
        except kube.Conflict:
            existing = self.api.get(JOBS, name)
            owner = (existing["metadata"].get("labels") or {}).get(contract.LABEL_GRID)
            if owner == self.name:
                self.jobs.remember(existing)  # ours: the watch had not shown it yet
                return None
            return Conflict(name, owner or "(a Job that tp4 did not create)")
        if role == contract.ROLE_FINALIZE:
            self.event("FinalizerCreated", f"every point is terminal: job {name} ranks the runs", name)
        else:
            log.info("job created", extra={"grid": self.name, "point": name, "run": submission})
        return None

    def delete(self, name: str, *, reason: str) -> None:
        self.api.delete(JOBS, name, propagation="Background")
        self.jobs.forget(name)
        self.event("JobDeleted", f"job {name}: {reason}", name)

    def cut_deadline(self, name: str) -> None:
        """The Job controller stops it (DeadlineExceeded)."""
        self.api.patch(JOBS, name, {"spec": {"activeDeadlineSeconds": 1}})
