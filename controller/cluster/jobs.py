"""batch/v1 Jobs as the reconciler sees them, and the labels and owner a created Job carries (pure)."""

from __future__ import annotations

import copy
import sys
from collections.abc import Iterable
from typing import Any

import contract
from controller.core.reconciling import JobPhase, ObservedJob

# The submission a Job belongs to: its grid's MLflow parent run id (32 hex digits, a valid label value).
LABEL_SUBMISSION = contract.LABEL_SUBMISSION


def _true_conditions(job: dict[str, Any]) -> dict[str, dict[str, Any]]:
    conditions = (job.get("status") or {}).get("conditions") or []
    return {c["type"]: c for c in conditions if c.get("status") == "True"}


def job_phase(job: dict[str, Any]) -> JobPhase:
    """Complete -> Succeeded, Failed -> Failed (terminal conditions only: a Job whose pods are still
    terminating is not done); suspended (Kueue holds it) or no ready pod yet -> Pending."""
    conditions = _true_conditions(job)
    if "Complete" in conditions:
        return JobPhase.SUCCEEDED
    if "Failed" in conditions:
        return JobPhase.FAILED
    status = job.get("status") or {}
    if (job.get("spec") or {}).get("suspend"):
        return JobPhase.PENDING
    ready = status.get("ready")
    running = ready > 0 if ready is not None else (status.get("active") or 0) > 0
    return JobPhase.RUNNING if running else JobPhase.PENDING


def failure_reason(job: dict[str, Any]) -> str:
    """Why a Job failed: BackoffLimitExceeded, DeadlineExceeded, PodFailurePolicy, ..."""
    return str(_true_conditions(job).get("Failed", {}).get("reason") or "")


def attempts(job: dict[str, Any]) -> int:
    """Pods the Job started so far (ignored disruptions included)."""
    status = job.get("status") or {}
    return sum(int(status.get(key) or 0) for key in ("active", "succeeded", "failed"))


def labels(job: dict[str, Any]) -> dict[str, str]:
    return (job.get("metadata") or {}).get("labels") or {}


def observed_job(job: dict[str, Any]) -> ObservedJob:
    found = labels(job)
    return ObservedJob(name=job["metadata"]["name"], grid=found.get(contract.LABEL_GRID, ""),
                       spec_hash=found.get(contract.LABEL_SPEC_HASH, ""),
                       submission=found.get(LABEL_SUBMISSION, ""), phase=job_phase(job),
                       failure_reason=failure_reason(job))


def observe(jobs: Iterable[dict[str, Any]], *, grid: str, names: Iterable[str]) -> dict[str, ObservedJob]:
    """This grid's Jobs, and the Jobs of other grids that hold one of its names."""
    wanted = set(names)
    observed: dict[str, ObservedJob] = {}
    for job in jobs:
        name = job["metadata"]["name"]
        if labels(job).get(contract.LABEL_GRID) == grid or name in wanted:
            observed[name] = observed_job(job)
    return observed


# What the controller keeps of a Job it watches (controller/cluster/informer.py, `keep`): the fields
# job_phase, failure_reason, attempts and observe read, and the resourceVersion the mirror compares.
# A whole Job (its pod template: image, command, env, volumes; managedFields) is ~20 KB in memory; this
# is ~1 KB, the strings every Job repeats (label keys, the grid, the submission, condition types) shared.
KEPT_LABELS = (contract.LABEL_GRID, contract.LABEL_POINT, contract.LABEL_SPEC_HASH, contract.LABEL_ROLE,
               LABEL_SUBMISSION)
KEPT_METADATA = ("name", "resourceVersion", "deletionTimestamp")
KEPT_STATUS = ("active", "ready", "succeeded", "failed")
KEPT_CONDITION = ("type", "status", "reason")


def _shared(value: Any) -> Any:
    return sys.intern(value) if isinstance(value, str) else value


def slim(job: dict[str, Any]) -> dict[str, Any]:
    """The part of a Job the controller reads, in the same shape (a Job in, a smaller Job out: new
    dicts throughout, nothing shared with `job`): name, tp4's labels, resourceVersion, spec.suspend,
    the pod counts and the conditions (type, status, reason) of its status."""
    meta = job.get("metadata") or {}
    found = labels(job)
    kept_meta: dict[str, Any] = {key: meta[key] for key in KEPT_METADATA if key in meta}
    kept_meta["labels"] = {key: _shared(found[key]) for key in KEPT_LABELS if key in found}
    kept: dict[str, Any] = {"metadata": kept_meta}
    if (job.get("spec") or {}).get("suspend") is not None:
        kept["spec"] = {"suspend": job["spec"]["suspend"]}
    status = job.get("status") or {}
    kept_status: dict[str, Any] = {key: status[key] for key in KEPT_STATUS if key in status}
    if status.get("conditions"):
        kept_status["conditions"] = [{key: _shared(c[key]) for key in KEPT_CONDITION if key in c}
                                     for c in status["conditions"]]
    if kept_status:
        kept["status"] = kept_status
    return kept


def owner_reference(grid: dict[str, Any]) -> dict[str, Any]:
    # blockOwnerDeletion false: true would need `update` on grids/finalizers (controller/rbac.py)
    return {"apiVersion": grid["apiVersion"], "kind": grid["kind"], "name": grid["metadata"]["name"],
            "uid": grid["metadata"]["uid"], "controller": True, "blockOwnerDeletion": False}


def owned(manifest: dict[str, Any], *, grid: dict[str, Any], submission: str) -> dict[str, Any]:
    """A rendered Job, owned by its Grid (deleting the Grid deletes it) and labelled with its submission."""
    job = copy.deepcopy(manifest)
    job["metadata"]["namespace"] = grid["metadata"]["namespace"]
    job["metadata"]["labels"][LABEL_SUBMISSION] = submission
    job["metadata"]["ownerReferences"] = [owner_reference(grid)]
    return job
