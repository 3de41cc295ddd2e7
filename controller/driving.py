"""One submission of a grid, driven the same way whichever Job store runs its Jobs.

A step is observe -> search -> reconcile -> act: the store says what Jobs exist (`JobStore.observe`),
the search (controller.searching, when the grid searches) asks, stops and confirms points from what
MLflow holds, the pure rules (controller.core.reconciling.reconcile) decide, and the actions go back
through the store (create, delete, cut a deadline). The backends write the status from the `Step`:
the local one to its state store and live table, the cluster one to the Grid resource and its Events.

The submission's lifecycle is here too: its MLflow parent run (started, ended), the trials a previous
submission of the grid asked that carry over, the failure budget (a spent budget asks no new point).

A tracking server that cannot be read during a search pauses the search and keeps the grid running
(the points already asked go on, nothing is finalized while the search may still add points); the
next step looks again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

import requests
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

import contract
from contract.grid import GridSpec
from controller import tracking
from controller.core.expanding import GridPoint, finalizer_name
from controller.core.reconciling import (
    Conflict,
    Create,
    Delete,
    DesiredGrid,
    DesiredJob,
    GridPhase,
    ObservedJob,
    Plan,
    reconcile,
)
from controller.core.rendering import RenderSettings, finalizer_hash, render_finalize_job, render_train_job

if TYPE_CHECKING:
    from controller.core.searching import Decision
    from controller.searching import Search

__all__ = ["SEARCH_READ_ERRORS", "JobStore", "Look", "Step", "Submission", "desired_grid", "searches"]

# What a look at a search may meet when the tracking server is away: the grid goes on, the search waits.
SEARCH_READ_ERRORS = (MlflowException, OSError, requests.RequestException)

log = logging.getLogger(__name__)


class JobStore(Protocol):
    """Where a submission's Jobs live: the local kubelet and its state, or the Kubernetes API.

    Names are Job names (a point's name, or the finalizer's); a store never decides, it only reports
    and carries out."""

    def observe(self, names: Iterable[str]) -> dict[str, ObservedJob]:
        """The grid's Jobs by name, plus the Jobs of other grids that hold one of `names`."""
        ...

    def create(self, name: str, manifest: dict[str, Any], *, role: str, spec_hash: str,
               submission: str) -> Conflict | None:
        """Create a Job from its rendered manifest; a `Conflict` when the name turns out to be
        held by another grid (or by a Job that tp4 did not create)."""
        ...

    def delete(self, name: str, *, reason: str) -> None:
        """Delete a Job (stopping what it runs)."""
        ...

    def cut_deadline(self, name: str) -> None:
        """Stop a running Job that ignored its stop request: its deadline is now."""
        ...


def searches(grid: GridSpec) -> bool:
    """True when points are asked, stopped or confirmed as results come (controller.searching)."""
    return grid.sampled or grid.early_stopping is not None or grid.confirm is not None


def desired_grid(grid: GridSpec, points: Iterable[GridPoint], *, submission: str, parallelism: int,
                 pending: bool = False) -> DesiredGrid:
    """What the rules reconcile towards: `points` (those known now), the finalizer, the bounds;
    `pending`: the search will still add points (the grid is not finalized meanwhile)."""
    return DesiredGrid(grid=grid.name, submission=submission,
                       points=tuple(DesiredJob(p.name, p.spec_hash) for p in points),
                       finalizer=DesiredJob(finalizer_name(grid), finalizer_hash(grid)),
                       parallelism=parallelism, failure_budget=grid.job.failure_budget, pending=pending)


@dataclass(frozen=True)
class Look:
    """What one look at a search did: the points it asked (recorded), the stops it requested, the Jobs
    whose deadline it cut, why it asks no more (`exhausted`), or why it could not look (`search_error`)."""

    new_points: list[GridPoint] = field(default_factory=list)
    stops: list[Decision] = field(default_factory=list)
    overdue: list[str] = field(default_factory=list)
    exhausted: str | None = None
    search_error: str | None = None


@dataclass(frozen=True)
class Step:
    """What one step saw and did: the `plan` (phase, counts, message, each point's state), the Jobs
    `observed` before acting, the name `conflicts` (the plan's and those met on create), what the search
    added, asked to stop or ended on, and `search_error` when the search could not be read (paused)."""

    plan: Plan
    observed: dict[str, ObservedJob]
    conflicts: list[Conflict] = field(default_factory=list)
    new_points: list[GridPoint] = field(default_factory=list)
    stops: list[Decision] = field(default_factory=list)
    overdue: list[str] = field(default_factory=list)
    exhausted: str | None = None
    search_error: str | None = None

    @property
    def message(self) -> str:
        """The plan's message, and why the search is paused when it is (the status of both backends)."""
        return self.plan.message + (f"; {self.search_error}" if self.search_error else "")

    @property
    def terminal(self) -> bool:
        return self.plan.phase in (GridPhase.SUCCEEDED, GridPhase.FAILED)


class Submission:
    """One submission of a grid (its parent run id is `parent_run_id`): its points, its search, its budget.

    Built by `begin` (a new parent run) or `resume` (a parent run that exists: a restarted controller,
    or a later reconcile of the same submission); the search's state is MLflow's, so both continue it."""

    def __init__(self, *, mlflow: MlflowClient, grid: GridSpec, points: list[GridPoint], dataset_md5: str,
                 parallelism: int, experiment_id: str, parent_run_id: str, render: RenderSettings) -> None:
        self.mlflow, self.grid, self.dataset_md5 = mlflow, grid, dataset_md5
        self.points = list(points)  # a search adds the points it asks
        self.parallelism, self.experiment_id, self.parent_run_id = parallelism, experiment_id, parent_run_id
        self.render = render
        self.search: Search | None = None
        self.pending = False  # the search will still add points
        self.budget_spent = False  # from the last step's plan: a spent budget asks no new point
        self.notes: list[str] = []  # what the caller should say once (a carried search that could not be read)
        self._seen: dict[str, str] = {}  # each Job's phase at the last step: a change looks at the search at once

    # --- the lifecycle --------------------------------------------------------------------------

    @classmethod
    def begin(cls, *, mlflow: MlflowClient, grid: GridSpec, points: list[GridPoint], dataset_md5: str,
              parallelism: int, experiment_id: str, render: RenderSettings, backend: str, process: str = "",
              tags: dict[str, str] | None = None, previous: str = "") -> Submission:
        """A new submission: its parent run (raises tracking.ParentRunFailed, with the run to close,
        when the run was created but not completed), `tags` set on it, and, for a grid that searches,
        its points recorded with the trials `previous` (the parent run of an earlier submission) asked
        that are still this grid's. `render.parent_run_id` is replaced by the new run's id."""
        parent = tracking.start_parent_run(mlflow, grid=grid, points=points, experiment_id=experiment_id,
                                           backend=backend, dataset_md5=dataset_md5, process=process)
        for key, value in (tags or {}).items():
            mlflow.set_tag(parent, key, value)
        submission = cls(mlflow=mlflow, grid=grid, points=points, dataset_md5=dataset_md5, parallelism=parallelism,
                         experiment_id=experiment_id, parent_run_id=parent,
                         render=_with_parent(render, parent))
        if searches(grid):
            submission.start_search(previous)
        return submission

    @classmethod
    def resume(cls, *, mlflow: MlflowClient, grid: GridSpec, points: list[GridPoint], dataset_md5: str,
               parallelism: int, experiment_id: str, parent_run_id: str, render: RenderSettings) -> Submission:
        """A submission whose parent run exists; a search is rebuilt from the trials recorded on it."""
        submission = cls(mlflow=mlflow, grid=grid, points=points, dataset_md5=dataset_md5, parallelism=parallelism,
                         experiment_id=experiment_id, parent_run_id=parent_run_id,
                         render=_with_parent(render, parent_run_id))
        if searches(grid):
            submission.start_search("")
        return submission

    def start_search(self, previous: str) -> None:
        """Record the search's points on the parent run, with the trials `previous` asked (a controller
        restarted mid-search neither repeats nor loses one); a previous run that cannot be read (deleted
        since) is noted and the search starts afresh."""
        from controller.searching import Search, Trial, recorded_trials  # Optuna: imported by a grid that searches

        carried: list[Trial] = []
        if previous:
            try:
                carried = recorded_trials(self.mlflow, previous)
            except Exception as error:  # a parent run deleted since: start afresh
                self.notes.append(f"could not read the previous submission's trials: {error}")
        self.search = Search(self.mlflow, self.grid, self.experiment_id, self.parent_run_id, self.dataset_md5)
        self.search.start(self.points, carried=tuple(carried))
        self.points = self.search.points
        self.pending = True  # until the first look at the search says otherwise

    def end(self, phase: GridPhase) -> None:
        """End the parent run as the grid ended: FINISHED when it succeeded, FAILED otherwise."""
        tracking.end_run(self.mlflow, self.parent_run_id,
                         status="FINISHED" if phase is GridPhase.SUCCEEDED else "FAILED")

    # --- one step -------------------------------------------------------------------------------

    def desired(self) -> DesiredGrid:
        return desired_grid(self.grid, self.points, submission=self.parent_run_id, parallelism=self.parallelism,
                            pending=self.pending)

    def names(self) -> list[str]:
        return [p.name for p in self.points] + [finalizer_name(self.grid)]

    def step(self, store: JobStore) -> Step:
        """Observe, look at the search, reconcile, act; what the status is written from."""
        observed = store.observe(self.names())
        seen = {name: job.phase.value for name, job in observed.items()}
        changed, self._seen = seen != self._seen, seen
        looked = self.look_at_search(store, observed, force=changed)
        if looked.new_points:
            observed = store.observe(self.names())  # a new point's name may be held by another grid
        plan = reconcile(self.desired(), observed)
        self.budget_spent = plan.budget_spent
        conflicts = list(plan.conflicts) + self.act(store, plan)
        return Step(plan=plan, observed=observed, conflicts=conflicts, new_points=looked.new_points,
                    stops=looked.stops, overdue=looked.overdue, exhausted=looked.exhausted,
                    search_error=looked.search_error)

    def look_at_search(self, store: JobStore, observed: dict[str, ObservedJob], *, force: bool) -> Look:
        """Ask, stop and confirm (controller.searching): every POLL_SECONDS, or at once when a Job changed."""
        if self.search is None or not self.search.due(force=force):
            return Look()
        # the trials' states as the rules see them: a Job failed in an earlier submission is retried
        # by this one (in flight, not a failed trial)
        states = reconcile(self.desired(), observed)
        try:
            tick = self.search.tick(room=self.parallelism - len(states.in_flight()), live=states.in_flight(),
                                    failed=states.failed(), budget_spent=self.budget_spent)
        except SEARCH_READ_ERRORS as error:  # the tracking server away a moment: look again at the next step
            self.pending = True
            reason = f"search not updated: {type(error).__name__}: {error}"[:500]
            log.warning(reason, extra={"grid": self.grid.name})
            return Look(search_error=reason)
        self.points += tick.new
        self.pending = tick.pending
        for decision in tick.stops:
            log.info("stop requested", extra={"grid": self.grid.name, "point": decision.name,
                                              "epoch": decision.epoch, "rule": decision.rule})
        overdue = [name for name in tick.overdue if name in observed and not observed[name].phase.terminal]
        for name in overdue:
            store.cut_deadline(name)
        return Look(new_points=list(tick.new), stops=list(tick.stops), overdue=overdue, exhausted=tick.exhausted)

    def act(self, store: JobStore, plan: Plan) -> list[Conflict]:
        """Carry out the plan's deletes and creates; the conflicts met on create."""
        conflicts: list[Conflict] = []
        for action in plan.actions:
            if isinstance(action, Delete):
                store.delete(action.name, reason=action.reason)
            elif isinstance(action, Create):
                manifest, spec_hash, role = self.manifest(action)
                conflict = store.create(action.name, manifest, role=role, spec_hash=spec_hash,
                                        submission=self.parent_run_id)
                conflicts += [conflict] if conflict else []
        return conflicts

    def manifest(self, create: Create) -> tuple[dict[str, Any], str, str]:
        """The Job that `create` makes: its manifest, spec hash and role."""
        if create.finalizer:
            manifest = render_finalize_job(self.grid, self.render, dataset_md5=self.dataset_md5)
            return manifest, finalizer_hash(self.grid), contract.ROLE_FINALIZE
        point = next(p for p in self.points if p.name == create.name)
        manifest = render_train_job(self.grid, point, self.render, dataset_md5=self.dataset_md5)
        return manifest, point.spec_hash, contract.ROLE_TRAIN


def _with_parent(render: RenderSettings, parent_run_id: str) -> RenderSettings:
    return replace(render, parent_run_id=parent_run_id)
