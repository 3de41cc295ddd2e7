"""The local Job store: a grid's Jobs as processes of the local kubelet, recorded in its state store.

What the submission driver (controller.driving.JobStore) observes, creates, deletes and cuts short,
on this machine: the kubelet (controller.local.kubelet) runs each Job's manifest as a process, the
state (controller.local.state) is what the API server keeps on a cluster. Observing polls the kubelet;
an attempt that ended without ending its MLflow run has the run ended FAILED here, and a train Job that
succeeded has its run and final metrics read for the live table.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mlflow.tracking import MlflowClient

import contract
from controller import tracking
from controller.core.reconciling import Conflict, JobPhase, ObservedJob
from controller.local.kubelet import LocalKubelet
from controller.local.state import GridState, JobRecord, job_owners, save_state


def observe(state: GridState, *, owners: dict[str, str], names: Iterable[str]) -> dict[str, ObservedJob]:
    """This grid's Jobs, plus the Jobs of other grids that use one of its names."""
    observed = {name: job.observed() for name, job in state.jobs.items()}
    for name in names:
        if name not in observed and owners.get(name, state.grid) != state.grid:
            observed[name] = ObservedJob(name=name, grid=owners[name], spec_hash="", submission="",
                                         phase=JobPhase.SUCCEEDED)
    return observed


class LocalStore:
    """The JobStore of one grid on this machine. `experiment_id` and `submission` (the parent run) are
    set once the submission began; `changed` holds the Jobs changed since the last `save`."""

    def __init__(self, *, root: Path, state: GridState, kubelet: LocalKubelet, mlflow: MlflowClient) -> None:
        self.root, self.state, self.kubelet, self.mlflow = root, state, kubelet, mlflow
        self.experiment_id = ""
        self.changed: set[str] = set()  # Jobs added, changed or removed since the last save

    def save(self, *, whole: bool = False) -> None:
        """Record the state: the Jobs that changed since the last save (a journal line), or `whole`
        (a new snapshot: at the start and the end of a submission, controller.local.state)."""
        save_state(self.root, self.state, changed=None if whole else self.changed)
        self.changed.clear()

    # --- the port -------------------------------------------------------------------------------

    def observe(self, names: Iterable[str]) -> dict[str, ObservedJob]:
        for job in self.state.jobs.values():
            before = len(job.attempts)
            changed = self.kubelet.poll(job)
            if changed or len(job.attempts) != before:
                self.close_ended_attempts(job, before)
                self.changed.add(job.name)
            if changed:
                self.collect_metrics(job)
        return observe(self.state, owners=job_owners(self.root, skip=self.state.grid), names=names)

    def create(self, name: str, manifest: dict[str, Any], *, role: str, spec_hash: str,
               submission: str) -> Conflict | None:
        # another grid's hold on `name` was observed (a Conflict in the plan): nothing to meet here
        job = JobRecord(name=name, grid=self.state.grid, spec_hash=spec_hash, submission=submission, role=role,
                        manifest=manifest)
        self.state.jobs[name] = job
        self.kubelet.start(job)
        self.changed.add(name)
        return None

    def delete(self, name: str, *, reason: str) -> None:
        job = self.state.jobs.pop(name)
        self.kubelet.stop(job, reason="Deleted")
        self.changed.add(name)

    def cut_deadline(self, name: str) -> None:
        job = self.state.jobs.get(name)
        if job is not None and not job.phase.terminal:
            self.kubelet.stop(job, reason="StopRequestIgnored")
            self.changed.add(name)

    # --- what the kubelet leaves to its store ----------------------------------------------------

    def collect_metrics(self, job: JobRecord) -> None:
        if job.role != contract.ROLE_TRAIN or job.phase is not JobPhase.SUCCEEDED:
            return
        try:
            job.run_id, job.metrics = tracking.final_metrics(
                self.mlflow, experiment_id=self.experiment_id, parent_run_id=self.state.submission, point=job.name)
        except Exception as error:  # a status read must never stop the grid
            self.state.message = f"could not read metrics of {job.name}: {error}"

    def close_ended_attempts(self, job: JobRecord, before: int) -> None:
        """An attempt that ended without ending its run (killed, or the tracking server was down
        when it failed): end the run FAILED now; a failure here is left to the next start's sweep."""
        ended = [a for a in job.attempts[max(0, before - 1):] if a.finished is not None and a.exit_code != 0]
        if job.role != contract.ROLE_TRAIN or not ended:
            return
        try:
            for run in tracking.runs_of_point(self.mlflow, experiment_id=self.experiment_id,
                                              parent_run_id=self.state.submission, point=job.name):
                attempt = next((a for a in ended if str(a.number) == run.data.tags.get(contract.TAG_ATTEMPT)), None)
                if attempt is not None and run.info.status == tracking.RUNNING:
                    tracking.end_run(self.mlflow, run.info.run_id, status="FAILED",
                                     reason=f"job process {attempt.pid} exited with code {attempt.exit_code}")
        except Exception as error:  # the tracking server may be down: the next start sweeps it
            self.state.message = f"could not close the run of {job.name}: {error}"
