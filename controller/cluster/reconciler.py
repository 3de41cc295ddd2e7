"""One reconcile of one Grid on a cluster: observe its Jobs, run the shared rules, act, write its status.

The decisions are the reconciler's (controller/reconciling.py), the same as
the local executor's; this module only observes (the mirrors of Grids and
Jobs kept by watches), applies the plan through the Kubernetes adapter, and
talks to MLflow (the submission's parent run, the best point, the decision).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

import contract
from contract.grid import GridSpec
from controller import tracking
from controller.cluster import kube
from controller.cluster import results as cluster_results
from controller.cluster.informer import Mirror
from controller.cluster.jobs import observe, owned
from controller.cluster.kube import GRIDS, JOBS, Kube
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
from controller.core.expanding import GridPoint, finalizer_name
from controller.core.reconciling import (
    CONFIGURATION_ERROR,
    Conflict,
    Create,
    Delete,
    DesiredGrid,
    DesiredJob,
    GridPhase,
    JobPhase,
    ObservedJob,
    Plan,
    is_up_to_date,
    reconcile,
)
from controller.core.rendering import finalizer_hash, render_finalize_job, render_train_job
from controller.errors import InvalidInput

if TYPE_CHECKING:
    from controller.searching import Search

TERMINAL = (GridPhase.SUCCEEDED.value, GridPhase.FAILED.value)


log = logging.getLogger(__name__)


def desired_grid(cluster: ClusterGrid, submission: str, *, pending: bool = False) -> DesiredGrid:
    return DesiredGrid(grid=cluster.spec.name, submission=submission,
                       points=tuple(DesiredJob(p.name, p.spec_hash) for p in cluster.points),
                       finalizer=DesiredJob(finalizer_name(cluster.spec), finalizer_hash(cluster.spec)),
                       parallelism=cluster.parallelism, failure_budget=cluster.spec.job.failure_budget,
                       pending=pending)


def searches(grid: GridSpec) -> bool:
    """True when points are asked, stopped or confirmed as results come (controller.searching)."""
    return grid.sampled or grid.early_stopping is not None or grid.confirm is not None


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
        self.searches: dict[str, Search] = {}  # by submission (parent run id): rebuilt from MLflow after a restart
        self.pending: dict[str, bool] = {}
        self.budget_spent: dict[str, bool] = {}
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
        names = [p.name for p in cluster.points] + [finalizer_name(cluster.spec)]
        observed = observe(self.jobs.snapshot().values(), grid=name, names=names)
        experiment_id = self.experiment(cluster.spec.experiment)
        if submission_requested(grid):
            grid = self.new_submission(grid, cluster, observed, experiment_id)
            if grid is None:
                return
        status = grid["status"]
        submission = status["parentRunId"]
        pending = False
        if searches(cluster.spec):
            cluster, pending = self.look_at_search(cluster, observed, submission=submission,
                                                   experiment_id=experiment_id)
            names = [p.name for p in cluster.points] + [finalizer_name(cluster.spec)]
            observed = observe(self.jobs.snapshot().values(), grid=name, names=names)
        plan = reconcile(desired_grid(cluster, submission, pending=pending), observed)
        self.budget_spent[submission] = bool(plan.counts.skipped) or plan.reason == CONFIGURATION_ERROR
        if searches(cluster.spec) and plan.phase.value not in TERMINAL and self.requeue is not None:
            from controller.searching import POLL_SECONDS

            self.requeue(name, POLL_SECONDS)
        conflicts = self.apply(plan, grid=grid, cluster=cluster, submission=status["parentRunId"])
        outcome = self.outcome(grid, cluster, plan, experiment_id, conflicts)
        new = grid_status(status, plan=plan, observed=observed, grid=name,
                          points={p.name: p.spec_hash for p in cluster.points}, outcome=outcome, now=self.clock())
        if new["phase"] in TERMINAL and status.get("phase") not in TERMINAL:
            tracking.end_run(self.mlflow, outcome.submission,
                             status="FINISHED" if new["phase"] == GridPhase.SUCCEEDED.value else "FAILED")
        self.write_status(grid, new)

    def look_at_search(self, cluster: ClusterGrid, observed: dict[str, ObservedJob], *, submission: str,
                       experiment_id: str) -> tuple[ClusterGrid, bool]:
        """The grid with the points its search has asked so far (new ones recorded in MLflow first), and
        whether more will come. Hopeless running points get a stop request; a Job still running
        early_stopping.grace_seconds after it gets its deadline cut (the Job controller stops it)."""
        from controller.searching import Search  # Optuna (and numpy): imported by a grid that searches

        search = self.searches.get(submission)
        if search is None:
            search = Search(self.mlflow, cluster.spec, experiment_id, submission, cluster.dataset_md5)
            search.start(cluster.points)
            self.searches = {submission: search, **{k: v for k, v in self.searches.items()
                                                    if v.grid.name != cluster.spec.name}}
        if search.due():
            jobs = {n: j for n, j in observed.items() if j.grid == cluster.spec.name}
            # a Job failed in an earlier submission is retried by this one: in flight, not a failed trial
            live = {p.name for p in search.trials if p.name not in jobs or not jobs[p.name].phase.terminal
                    or (jobs[p.name].phase is JobPhase.FAILED and jobs[p.name].submission != submission)}
            failed = {n for n, j in jobs.items() if j.phase is JobPhase.FAILED and j.submission == submission}
            tick = search.tick(room=cluster.parallelism - len(live), live=live, failed=failed,
                               budget_spent=self.budget_spent.get(submission, False))
            self.pending[submission] = tick.pending
            for decision in tick.stops:
                log.info("stop requested", extra={"grid": cluster.spec.name, "point": decision.name,
                                                  "epoch": decision.epoch, "rule": decision.rule})
            for point in tick.overdue:
                job = jobs.get(point)
                if job is not None and not job.phase.terminal:
                    self.api.patch(JOBS, point, {"spec": {"activeDeadlineSeconds": 1}})
        return dataclasses.replace(cluster, points=search.points), self.pending.get(submission, True)

    def new_submission(self, grid: dict[str, Any], cluster: ClusterGrid, observed: dict[str, ObservedJob],
                       experiment_id: str) -> dict[str, Any] | None:
        """Start one (a parent run, recorded in the status at once), or find the grid up to date (None)."""
        status, meta = grid.get("status") or {}, grid["metadata"]
        previous = status.get("parentRunId", "")
        if previous and is_up_to_date(desired_grid(cluster, previous), observed):
            self.write_status(grid, up_to_date_status(status, generation=meta.get("generation", 0),
                                                      start_time=start_time(grid, self.clock()), now=self.clock()))
            return None
        if previous:  # superseded while it ran
            close_submission(self.mlflow, previous,
                             reason=f"superseded by a new submission of grid {cluster.spec.name}")
        parent = tracking.start_parent_run(self.mlflow, grid=cluster.spec, points=cluster.points,
                                           experiment_id=experiment_id, backend="kubernetes",
                                           dataset_md5=cluster.dataset_md5)
        # the orphan sweep (controller/cluster/orphans.py) closes only the runs of its own namespace
        self.mlflow.set_tag(parent, contract.TAG_NAMESPACE, self.api.namespace)
        if previous and searches(cluster.spec):  # the trials the superseded submission asked carry over
            from controller.searching import Search, recorded_trials

            Search(self.mlflow, cluster.spec, experiment_id, parent, cluster.dataset_md5).start(
                cluster.points, carried=tuple(recorded_trials(self.mlflow, previous)))
        started = {key: value for key, value in status.items() if key in ("conditions", "counts")}
        started.update(observedGeneration=meta.get("generation"), phase=GridPhase.PENDING.value, parentRunId=parent,
                       startTime=start_time(grid, self.clock()))
        what = (f"a TPE search of {cluster.spec.search.trials} trials" if cluster.spec.search.mode == "tpe"
                else f"{len(cluster.points)} points")
        self.event(grid, "Submitted", f"submission {parent}: {what}, "
                   f"{cluster.parallelism} at a time")
        return self.write_status(grid, started)

    # --- acting on the plan -------------------------------------------------------------------

    def apply(self, plan: Plan, *, grid: dict[str, Any], cluster: ClusterGrid, submission: str) -> list[Conflict]:
        conflicts = list(plan.conflicts)
        points = {p.name: p for p in cluster.points}
        for action in plan.actions:
            if isinstance(action, Delete):
                self.api.delete(JOBS, action.name, propagation="Background")
                self.jobs.forget(action.name)
                self.event(grid, "JobDeleted", f"job {action.name}: {action.reason}", point=action.name)
            elif isinstance(action, Create):
                conflict = self.create_job(action, grid=grid, cluster=cluster, points=points, submission=submission)
                conflicts += [conflict] if conflict else []
        return conflicts

    def manifest(self, action: Create, *, cluster: ClusterGrid, points: dict[str, GridPoint],
                 submission: str) -> dict[str, Any]:
        """The Job that `action` creates; `points`: the grid's points by name."""
        settings = self.settings.render_settings(parent_run_id=submission)
        if action.finalizer:
            return render_finalize_job(cluster.spec, settings, dataset_md5=cluster.dataset_md5)
        return render_train_job(cluster.spec, points[action.name], settings, dataset_md5=cluster.dataset_md5)

    def create_job(self, action: Create, *, grid: dict[str, Any], cluster: ClusterGrid, points: dict[str, GridPoint],
                   submission: str) -> Conflict | None:
        body = owned(self.manifest(action, cluster=cluster, points=points, submission=submission), grid=grid,
                     submission=submission)
        try:
            self.jobs.remember(self.api.create(JOBS, body))
        except kube.Conflict:
            existing = self.api.get(JOBS, action.name)
            owner = (existing["metadata"].get("labels") or {}).get(contract.LABEL_GRID)
            if owner == cluster.spec.name:
                self.jobs.remember(existing)  # ours: the watch had not shown it yet
                return None
            return Conflict(action.name, owner or "(a Job that tp4 did not create)")
        if action.finalizer:
            self.event(grid, "FinalizerCreated", f"every point is terminal: job {action.name} ranks the runs",
                       point=action.name)
        else:
            log.info("job created", extra={"grid": cluster.spec.name, "point": action.name, "run": submission})
        return None

    # --- results and status -------------------------------------------------------------------

    def outcome(self, grid: dict[str, Any], cluster: ClusterGrid, plan: Plan, experiment_id: str,
                conflicts: list[Conflict]) -> Outcome:
        status = grid["status"]
        best, verdict, report = status.get("best"), status.get("decision"), status.get("report")
        try:
            newly = plan.counts.succeeded != (status.get("counts") or {}).get("succeeded")
            if plan.counts.succeeded and (best is None or newly):
                best = cluster_results.best_point(self.mlflow, experiment_id=experiment_id, grid=cluster.spec.name,
                                                  metric=cluster.spec.objective_metric,
                                                  direction=cluster.spec.objective_direction,
                                                  hashes={p.spec_hash: p.name for p in cluster.points})
        except (MlflowException, OSError) as error:  # shown at a later reconcile; the grid goes on
            log.warning("best point not read from MLflow", extra={"grid": cluster.spec.name, "error": str(error)})
        if plan.phase.value in TERMINAL and verdict is None:
            # an error here retries the reconcile: the final status is written once, with the decision
            verdict, report = cluster_results.decision(self.mlflow, parent_run_id=status["parentRunId"])
        return Outcome(generation=grid["metadata"].get("generation", 0), submission=status["parentRunId"],
                       start_time=status.get("startTime", ""), best=best, decision=verdict, report=report,
                       conflicts=conflicts)

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
