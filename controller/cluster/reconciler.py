"""One reconcile of one Grid on a cluster: the submission driver's step, then the Grid's status.

The orchestration (observe, search, the shared rules, act, the parent run, carried trials, the budget)
is the submission driver's (controller/driving.py), the same as the local executor's; its Jobs are
created and watched through the cluster's Job store (controller/cluster/store.py). What is this
module's own: the Grid resource (when a submission is asked for, its status and Events) and MLflow's
results in that status (the best point, the decision).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

import contract
from controller import tracking
from controller.cluster import kube
from controller.cluster import results as cluster_results
from controller.cluster.informer import Mirror
from controller.cluster.kube import GRIDS, Kube
from controller.cluster.orphans import close_submission
from controller.cluster.resource import ANNOTATION_SUBMITTED_AT, ClusterGrid, read_grid
from controller.cluster.settings import ClusterSettings
from controller.cluster.status import (
    Outcome,
    grid_status,
    invalid_status,
    merge_patch,
    parse_time,
    timestamp,
    up_to_date_status,
)
from controller.cluster.store import ClusterStore
from controller.core.expanding import GridPoint
from controller.core.reconciling import DesiredGrid, GridPhase, ObservedJob, is_up_to_date
from controller.driving import JobStore, Step, Submission, searches
from controller.driving import desired_grid as driver_desired_grid
from controller.errors import InvalidInput

TERMINAL = (GridPhase.SUCCEEDED.value, GridPhase.FAILED.value)


log = logging.getLogger(__name__)


def desired_grid(cluster: ClusterGrid, submission: str, *, pending: bool = False) -> DesiredGrid:
    """The desired grid of a Grid resource's points (controller.driving.desired_grid)."""
    return driver_desired_grid(cluster.spec, cluster.points, submission=submission, parallelism=cluster.parallelism,
                               pending=pending)


def asked_at(grid: dict[str, Any]) -> datetime | None:
    return parse_time((grid["metadata"].get("annotations") or {}).get(ANNOTATION_SUBMITTED_AT))


def submission_requested(grid: dict[str, Any]) -> bool:
    """A new submission: none yet, a spec not handled yet (generation), or `submit-grid` asked again
    (its annotation is later than the start of the current submission)."""
    status, meta = grid.get("status") or {}, grid["metadata"]
    asked, started = asked_at(grid), parse_time(status.get("startTime"))
    return (not status.get("parentRunId") or status.get("observedGeneration") != meta.get("generation")
            or (asked is not None and (started is None or asked > started)))


def start_time(grid: dict[str, Any], now: datetime) -> str:
    """When a submission was taken up: never before it was asked for, so that one request starts
    one submission even when the asker's clock runs ahead of the controller's."""
    asked = asked_at(grid)
    return timestamp(max(now, asked) if asked is not None else now)


class GridController:
    def __init__(self, *, api: Kube, grids: Mirror, jobs: Mirror, mlflow: MlflowClient, settings: ClusterSettings,
                 root: Path, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.api, self.grids, self.jobs, self.mlflow = api, grids, jobs, mlflow
        self.settings, self.root, self.clock = settings, root, clock
        self.experiments: dict[str, str] = {}
        # each grid's current submission, by grid name: rebuilt from MLflow after a restart
        self.submissions: dict[str, Submission] = {}
        # set by the loop: reconcile this grid again in `delay` s (a search reads MLflow while Jobs run)
        self.requeue: Callable[[str, float], None] | None = None

    def experiment(self, name: str) -> str:
        if name not in self.experiments:
            self.experiments[name] = tracking.ensure_experiment(self.mlflow, name=name, root=self.root,
                                                                uri=self.settings.tracking_uri)
        return self.experiments[name]

    # --- the reconcile ------------------------------------------------------------------------

    def reconcile(self, name: str) -> None:
        grid = self.grids.get(name)
        if grid is None or grid["metadata"].get("deletionTimestamp"):
            return  # the garbage collector deletes its Jobs (owner references)
        if (grid.get("status") or {}).get("phase") in TERMINAL and not submission_requested(grid):
            return  # a finished submission is final: its Jobs may go (ttlSecondsAfterFinished), nothing re-runs
        try:
            cluster = read_grid(grid, settings=self.settings)
        except InvalidInput as error:
            self.write_status(grid, invalid_status(grid.get("status") or {},
                                                   generation=grid["metadata"].get("generation", 0),
                                                   message=str(error), now=self.clock()))
            return
        experiment_id = self.experiment(cluster.spec.experiment)
        if submission_requested(grid):
            grid = self.new_submission(grid, cluster, experiment_id)
            if grid is None:
                return
        status = grid["status"]
        submission = self.submission(cluster, parent_run_id=status["parentRunId"], experiment_id=experiment_id)
        step = submission.step(self.job_store(grid))
        if searches(cluster.spec) and not step.terminal and self.requeue is not None:
            from controller.searching import POLL_SECONDS

            self.requeue(name, POLL_SECONDS)
        outcome = self.outcome(grid, cluster, step, experiment_id, points=submission.points)
        new = grid_status(status, plan=dataclasses.replace(step.plan, message=step.message), observed=step.observed,
                          grid=name, points={p.name: p.spec_hash for p in submission.points}, outcome=outcome,
                          now=self.clock())
        if new["phase"] in TERMINAL and status.get("phase") not in TERMINAL:
            submission.end(GridPhase(new["phase"]))
        self.write_status(grid, new)

    def job_store(self, grid: dict[str, Any]) -> JobStore:
        """Where the Grid's Jobs are created and observed: the Kubernetes API (its Events on the Grid)."""
        return ClusterStore(api=self.api, jobs=self.jobs, grid=grid,
                            event=lambda reason, message, point: self.event(grid, reason, message, point=point))

    def submission(self, cluster: ClusterGrid, *, parent_run_id: str, experiment_id: str) -> Submission:
        """The driver of the grid's current submission: the one this controller began, or one resumed
        from MLflow (a restarted controller; its search rebuilt from the trials on the parent run)."""
        known = self.submissions.get(cluster.spec.name)
        if known is not None and known.parent_run_id == parent_run_id:
            return known
        resumed = Submission.resume(mlflow=self.mlflow, grid=cluster.spec, points=cluster.points,
                                    dataset_md5=cluster.dataset_md5, parallelism=cluster.parallelism,
                                    experiment_id=experiment_id, parent_run_id=parent_run_id,
                                    render=self.settings.render_settings(parent_run_id=parent_run_id))
        self.submissions[cluster.spec.name] = resumed
        return resumed

    def new_submission(self, grid: dict[str, Any], cluster: ClusterGrid,
                       experiment_id: str) -> dict[str, Any] | None:
        """Start one (a parent run, recorded in the status at once), or find the grid up to date (None)."""
        status, meta = grid.get("status") or {}, grid["metadata"]
        previous = status.get("parentRunId", "")
        if previous:
            store = self.job_store(grid)
            desired = desired_grid(cluster, previous)
            observed: dict[str, ObservedJob] = store.observe([p.name for p in desired.points]
                                                             + [desired.finalizer.name])
            if is_up_to_date(desired, observed):
                self.write_status(grid, up_to_date_status(status, generation=meta.get("generation", 0),
                                                          start_time=start_time(grid, self.clock()),
                                                          now=self.clock()))
                return None
            # superseded while it ran
            close_submission(self.mlflow, previous,
                             reason=f"superseded by a new submission of grid {cluster.spec.name}")
        submission = Submission.begin(
            mlflow=self.mlflow, grid=cluster.spec, points=cluster.points, dataset_md5=cluster.dataset_md5,
            parallelism=cluster.parallelism, experiment_id=experiment_id,
            render=self.settings.render_settings(parent_run_id=""), backend="kubernetes",  # the new run's id: begin
            # the orphan sweep (controller/cluster/orphans.py) closes only the runs of its own namespace
            tags={contract.TAG_NAMESPACE: self.api.namespace}, previous=previous)
        for note in submission.notes:
            log.warning(note, extra={"grid": cluster.spec.name})
        self.submissions[cluster.spec.name] = submission
        parent = submission.parent_run_id
        started = {key: value for key, value in status.items() if key in ("conditions", "counts")}
        started.update(observedGeneration=meta.get("generation"), phase=GridPhase.PENDING.value, parentRunId=parent,
                       startTime=start_time(grid, self.clock()))
        what = (f"a TPE search of {cluster.spec.search.trials} trials" if cluster.spec.search.mode == "tpe"
                else f"{len(cluster.points)} points")
        self.event(grid, "Submitted", f"submission {parent}: {what}, "
                   f"{cluster.parallelism} at a time")
        return self.write_status(grid, started)

    # --- results and status -------------------------------------------------------------------

    def outcome(self, grid: dict[str, Any], cluster: ClusterGrid, step: Step, experiment_id: str, *,
                points: list[GridPoint]) -> Outcome:
        """The status's results: the best point of `points` (the grid's, with those its search asked)
        when one more point succeeded, the decision once the grid ended."""
        status, plan = grid["status"], step.plan
        best, verdict, report = status.get("best"), status.get("decision"), status.get("report")
        try:
            newly = plan.counts.succeeded != (status.get("counts") or {}).get("succeeded")
            if plan.counts.succeeded and (best is None or newly):
                best = cluster_results.best_point(self.mlflow, experiment_id=experiment_id, grid=cluster.spec.name,
                                                  metric=cluster.spec.objective_metric,
                                                  direction=cluster.spec.objective_direction,
                                                  hashes={p.spec_hash: p.name for p in points})
        except (MlflowException, OSError) as error:  # shown at a later reconcile; the grid goes on
            log.warning("best point not read from MLflow", extra={"grid": cluster.spec.name, "error": str(error)})
        if plan.phase.value in TERMINAL and verdict is None:
            # an error here retries the reconcile: the final status is written once, with the decision
            verdict, report = cluster_results.decision(self.mlflow, parent_run_id=status["parentRunId"])
        return Outcome(generation=grid["metadata"].get("generation", 0), submission=status["parentRunId"],
                       start_time=status.get("startTime", ""), best=best, decision=verdict, report=report,
                       conflicts=step.conflicts)

    def write_status(self, grid: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
        old = grid.get("status") or {}
        patch = merge_patch(old, new)
        if not patch:
            return grid
        updated = self.api.patch_status(GRIDS, grid["metadata"]["name"], patch)
        self.grids.remember(updated)
        self.transitions(updated, old, new)
        return updated

    def transitions(self, grid: dict[str, Any], old: dict[str, Any], new: dict[str, Any]) -> None:
        """Events for what changed: the phase, a name conflict, an invalid spec."""
        if new.get("phase") != old.get("phase") and new.get("phase") != GridPhase.PENDING.value:
            message = next((c["message"] for c in new.get("conditions", []) if c["type"] == "Progressing"), "")
            self.event(grid, new["phase"], message or new["phase"], warning=new["phase"] == GridPhase.FAILED.value)
        for type_, reason in (("NamesAvailable", "NameConflict"), ("Valid", "InvalidSpec")):
            before: dict[str, Any] = next((c for c in old.get("conditions", []) if c["type"] == type_), {})
            after: dict[str, Any] = next((c for c in new.get("conditions", []) if c["type"] == type_), {})
            if after.get("status") == "False" and before.get("status") != "False":
                self.event(grid, reason, after.get("message", ""), warning=True)

    def event(self, grid: dict[str, Any], reason: str, message: str, *, warning: bool = False,
              point: str | None = None) -> None:
        name = grid["metadata"]["name"]
        fields = {"grid": name, "reason": reason, **({"point": point} if point else {})}
        log.log(logging.WARNING if warning else logging.INFO, message, extra=fields)
        try:
            self.api.record(about=grid, reason=reason, message=message, warning=warning, now=self.clock())
        except kube.UNREACHABLE as error:  # an Event is never worth failing for
            log.warning("event not recorded", extra={**fields, "error": str(error)})

    def grid_deleted(self, grid: dict[str, Any]) -> None:
        """The Grid is gone (its Jobs with it): an unfinished submission's runs are KILLED, with the reason."""
        status, name = grid.get("status") or {}, grid["metadata"]["name"]
        if status.get("parentRunId") and status.get("phase") not in TERMINAL:
            ended = close_submission(self.mlflow, status["parentRunId"], reason=f"grid {name} deleted")
            log.info("grid deleted: its submission's runs KILLED",
                     extra={"grid": name, "run": status["parentRunId"], "runs_ended": ended})
