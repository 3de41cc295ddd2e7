"""A search's state in MLflow, for both backends: the trials on the parent run, their results in the runs.

MLflow is the only store of a search (controller/core/searching.py rebuilds Optuna's study from what is
read here on every call):
- each point the controller asks for (a sampled trial, a confirm re-run) is recorded on the submission's
  parent run, as the tag contract.TAG_TRIAL_PREFIX + <name> = JSON {"number", "params", "phase",
  "spec_hash"} (contract.trial), *before* its Job is created: a controller that dies between the two finds the trial and
  creates the Job; one that dies before recording asks again from the same history;
- a trial's status, objective(s) and per-epoch curve come from its newest train run in the grid's
  experiment (any submission: a resubmission keeps the finished trials it carries over);
- a stop decision is the tag contract.TAG_STOP_REQUESTED on the running train run (the Job ends itself).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from mlflow.entities import RunTag
from mlflow.tracking import MlflowClient

import contract
from contract.grid import GridSpec
from contract.trial import TrialTag, trial_tags
from controller.core.expanding import GridPoint, point_spec
from controller.core.searching import (
    Decision,
    Names,
    TrialPhase,
    TrialRecord,
    ask_points,
    confirm_points,
    distributions,
    in_space,
    search_done,
    stop_decisions,
)

__all__ = ["POLL_SECONDS", "Search", "Tick", "Trial", "recorded_trials"]

POLL_SECONDS = 2.0  # how often a controller reads a search's runs (each read: one search_runs, one history per run)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Trial(TrialTag):
    """A point recorded on the parent run: the contract's trial (its fields, its one encoder `tag`) as a point."""

    def point(self) -> GridPoint:
        return GridPoint(name=self.name, params=self.params, spec_hash=self.spec_hash, phase=self.phase)


def recorded_trials(mlflow: MlflowClient, parent_run_id: str) -> list[Trial]:
    """The trials recorded on a parent run, by number (contract.trial's decoder; a tag that does not decode
    is logged and skipped: the search asks again what it would have held)."""
    found, problems = trial_tags(mlflow.get_run(parent_run_id).data.tags)
    for problem in problems:
        log.warning("trial tag skipped: %s", problem)
    return [Trial(name=t.name, number=t.number, params=t.params, phase=t.phase, spec_hash=t.spec_hash)
            for t in found]


TAGS_PER_BATCH = 100  # MLflow's limit of tags in one log_batch


def record(mlflow: MlflowClient, parent_run_id: str, trials: list[Trial]) -> None:
    """The trials' tags on the parent run, a batch of at most TAGS_PER_BATCH per request."""
    tags = [RunTag(*trial.tag()) for trial in trials]
    for start in range(0, len(tags), TAGS_PER_BATCH):
        mlflow.log_batch(parent_run_id, tags=tags[start:start + TAGS_PER_BATCH])


@dataclass(frozen=True)
class Tick:
    """What one look at a search decided: `new` points (already recorded), `stops` (tags already set),
    whether more points may still come (`pending`: the grid must not be finalized), the points whose
    Job is to be stopped (`overdue`), and, once the sampled search can ask no new point, why it ends
    short of its trials (`exhausted`: for the grid's status message and events)."""

    new: list[GridPoint]
    stops: list[Decision]
    pending: bool
    overdue: list[str] = field(default_factory=list)  # points asked to stop that did not end in time
    exhausted: str | None = None


def _with_job_phase(trial: TrialRecord, *, live: bool, failed: bool) -> TrialRecord:
    if live and trial.finished:
        return dataclasses.replace(trial, status="running" if trial.started else "waiting", values=None)
    if failed and not trial.finished:
        return dataclasses.replace(trial, status="failed")
    return trial


@dataclass
class Search:
    """One submission's search: what is recorded, and what to ask, stop and confirm next.

    `points` (the grid's own points, for a grid or a random search) are the first trials; `trials`
    grows as the controller asks."""

    mlflow: MlflowClient
    grid: GridSpec
    experiment_id: str
    parent_run_id: str
    dataset_md5: str
    trials: list[Trial] = field(default_factory=list)
    exhausted: str | None = None  # why the search asks no more points (ask_points), once it cannot
    _curves: dict[str, tuple[tuple[float, int, float], ...]] = field(default_factory=dict)
    _last: float = 0.0

    def start(self, points: list[GridPoint], *, carried: tuple[Trial, ...] = ()) -> None:
        """Record the grid's points on the parent run, with the trials of a previous submission of this grid
        that are still trials of this one (`carries`): the grid's own points win a name."""
        recorded = {t.name: t for t in recorded_trials(self.mlflow, self.parent_run_id)}
        known = dict(recorded)
        for number, point in enumerate(points):
            known.setdefault(point.name, Trial(point.name, number, point.params, point.phase, point.spec_hash))
        for trial in carried:
            if trial.name not in known and self.carries(trial):
                known[trial.name] = trial
        self.trials = sorted(known.values(), key=lambda t: t.number)
        record(self.mlflow, self.parent_run_id, [t for t in self.trials if t.name not in recorded])

    def carries(self, trial: Trial) -> bool:
        """A previous submission's trial is one of this grid's when the grid would still train it the same
        way (its spec hash, recomputed now, is unchanged) and could have asked it: a TPE trial inside the
        current space, or a confirm re-run (confirm on). A grid's or a random search's points are its own."""
        if contract.spec_hash(point_spec(self.grid, trial.params, dataset_md5=self.dataset_md5)) != trial.spec_hash:
            return False
        if trial.phase == contract.PHASE_CONFIRM:
            return self.grid.confirm is not None
        return self.grid.search.mode == "tpe" and in_space(trial.params, distributions(self.grid))

    @property
    def points(self) -> list[GridPoint]:
        return [t.point() for t in self.trials]

    def due(self, *, now: float | None = None, force: bool = False) -> bool:
        now = time.monotonic() if now is None else now
        if force or now - self._last >= POLL_SECONDS:
            self._last = now
            return True
        return False

    def history(self) -> list[TrialRecord]:
        """Each recorded trial with its newest train run's status, objective(s) and curve."""
        query = (f"tags.`{contract.TAG_GRID}` = '{self.grid.name}' and tags.`{contract.TAG_ROLE}` = "
                 f"'{contract.ROLE_TRAIN}'")
        runs = self.mlflow.search_runs([self.experiment_id], filter_string=query, max_results=5000,
                                       order_by=["attributes.start_time DESC"])
        newest: dict[tuple[str, str], Any] = {}
        for run in runs:
            key = (run.data.tags.get(contract.TAG_POINT, ""), run.data.tags.get(contract.TAG_SPEC_HASH, ""))
            newest.setdefault(key, run)
        return [self._record(trial, newest.get((trial.name, trial.spec_hash))) for trial in self.trials]

    def _record(self, trial: Trial, run: Any) -> TrialRecord:
        phase: TrialPhase = "confirm" if trial.phase == contract.PHASE_CONFIRM else "search"
        if run is None:
            return TrialRecord(trial.name, trial.number, trial.params, phase=phase)
        tags, status = run.data.tags, run.info.status
        stopped = contract.TAG_STOPPED_EARLY in tags
        state = {"RUNNING": "running", "SCHEDULED": "running", "FINISHED": "stopped" if stopped else "complete"
                 }.get(status, "failed")
        metrics = run.data.metrics
        names = [self.grid.objective.metric] + ([self.grid.objective.second.metric]
                                                 if self.grid.objective.second else [])
        values = tuple(float(metrics[n]) for n in names) if all(n in metrics for n in names) else None
        if state == "complete" and values is None:
            state = "failed"  # FINISHED without its objective: nothing to learn from
        try:
            asked_at: float | None = float(tags[contract.TAG_STOP_REQUESTED_AT])
        except (KeyError, ValueError):
            asked_at = None
        return TrialRecord(trial.name, trial.number, trial.params, phase=phase, status=state,  # type: ignore[arg-type]
                           values=values, curve=self._curve(run, finished=state != "running"),
                           started=run.info.start_time / 1000 if run.info.start_time else None,
                           ended=run.info.end_time / 1000 if run.info.end_time else None,
                           stop_requested=contract.TAG_STOP_REQUESTED in tags or stopped,
                           metrics={k: float(v) for k, v in metrics.items() if k in contract.TRAIN_RUN_METRICS},
                           stop_requested_at=asked_at, running_run_id=run.info.run_id if status == "RUNNING" else None)

    def _curve(self, run: Any, *, finished: bool) -> tuple[tuple[float, int, float], ...]:
        rule = self.grid.early_stopping
        if rule is None:
            return ()
        run_id = run.info.run_id
        if run_id in self._curves:
            return self._curves[run_id]
        history = self.mlflow.get_metric_history(run_id, rule.metric)
        curve = tuple(sorted((m.timestamp / 1000, int(m.step), float(m.value)) for m in history))
        if finished:
            self._curves[run_id] = curve  # a finished run's curve no longer changes
        return curve

    def tick(self, *, room: int, live: set[str], failed: set[str], budget_spent: bool = False) -> Tick:
        """One look at the search: stop what is hopeless, ask what there is `room` for (tpe), or the
        confirm points once the search is done. A search that can ask no new point (ask_points: every
        point of a discrete space asked) asks nothing more from then on and is done when its points are
        (`Tick.exhausted` says why; logged once). New points are recorded on the parent run before they
        are returned (the caller creates their Jobs). The Jobs' phases correct what the runs say:
        `live` points (Job not created yet, or not terminal) are in flight whatever an earlier attempt's
        run says; `failed` ones (Job failed) are failed even when no run or a RUNNING one says otherwise."""
        history = [_with_job_phase(t, live=t.name in live, failed=t.name in failed) for t in self.history()]
        decisions = []
        runs = {t.name: t.running_run_id for t in history}
        for decision in stop_decisions(self.grid, history):
            run = runs[decision.name]
            if run is not None:
                self.mlflow.log_batch(run, tags=[RunTag(contract.TAG_STOP_REQUESTED, str(decision.epoch)),
                                                 RunTag(contract.TAG_STOP_REQUESTED_AT, f"{time.time():.3f}")])
                decisions.append(decision)
        overdue = self.overdue(history)
        if budget_spent:
            return Tick([], decisions, pending=False, overdue=overdue)
        names = Names(taken={t.name for t in self.trials})
        asked: list[tuple[int, GridPoint]] = []
        if self.exhausted is None:
            sampled = ask_points(self.grid, history, room=room, dataset_md5=self.dataset_md5, names=names)
            asked, self.exhausted = sampled.points, sampled.exhausted
            if self.exhausted is not None:
                log.warning("grid %s: %s", self.grid.name, self.exhausted)
        exhausted = self.exhausted is not None
        if not asked:
            asked = confirm_points(self.grid, history, dataset_md5=self.dataset_md5, names=names,
                                   exhausted=exhausted)
        new = [Trial(p.name, n, p.params, p.phase, p.spec_hash) for n, p in asked]
        record(self.mlflow, self.parent_run_id, new)
        self.trials += new
        searched = sum(t.phase == contract.PHASE_SEARCH for t in self.trials)
        more = self.grid.sampled and not exhausted and searched < int(self.grid.search.trials or 0)
        pending = bool(new) or more or (
            self.grid.confirm is not None and not search_done(self.grid, history, exhausted=exhausted))
        return Tick([t.point() for t in new], decisions, pending=pending, overdue=overdue, exhausted=self.exhausted)

    def overdue(self, history: list[TrialRecord], *, now: float | None = None) -> list[str]:
        """Running points asked to stop more than early_stopping.grace_seconds ago (the time is a tag on
        their run: it survives a restart of the controller): their Job is to be stopped."""
        rule = self.grid.early_stopping
        now = time.time() if now is None else now
        if rule is None:
            return []
        return [t.name for t in history if t.status == "running" and t.stop_requested_at is not None
                and now - t.stop_requested_at > rule.grace_seconds]
