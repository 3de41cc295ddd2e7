"""A search's own story: its trials in order, the points stopped early and the compute that saved (pure).

- Trials: the search points (not the confirm re-runs) that have a run, by trial number (the order the
  controller asked for them; grid.json's order for a point recorded without one). The best objective
  found so far counts finished, non-stopped runs only: a stopped run's objective is that of a model
  trained for fewer epochs.
- Compute saved by early stopping, an estimate: a stopped run would have needed
  train_seconds x epochs asked / epochs trained to finish (each epoch as long as the ones it trained),
  so it saved train_seconds x (epochs asked / epochs trained - 1). The fraction is the total saved over
  what the search would have used without stopping: the saved seconds plus the train_seconds of every
  search run that logged it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import contract
from contract.objective import objective_key
from jobs.finalize.gridrules import GridRules
from jobs.finalize.records import FINISHED, MISSING, RunRecord

EPOCHS = "epochs"
PLOT_BEST = "search_best_so_far.png"  # plots/ files (jobs.finalize.plotting)
PLOT_TRIALS = "search_objective_per_trial.png"


@dataclass(frozen=True)
class StoppedRun:
    run: RunRecord
    epoch: int | None  # the last epoch trained (TAG_STOPPED_EARLY)
    epochs_asked: float  # NaN when unknown
    epochs_trained: float  # contract.METRIC_EPOCHS, else the tag's epoch
    objective: float  # the objective logged at the stop
    train_seconds: float
    saved_seconds: float  # NaN when it cannot be estimated


@dataclass(frozen=True)
class ComputeSaved:
    stopped: tuple[StoppedRun, ...]
    saved_seconds: float  # the sum of the estimates that could be made
    used_seconds: float  # train_seconds of every search run that logged it (stopped ones included)
    fraction: float  # saved / (saved + used); NaN when nothing was used
    unknown: tuple[str, ...]  # stopped points whose saving could not be estimated


@dataclass(frozen=True)
class Trial:
    number: int
    run: RunRecord
    objective: float  # NaN for a run that did not finish with one
    stopped: bool
    best_so_far: float  # the best objective of the finished, non-stopped trials up to this one (NaN: none yet)


def epochs_asked(*, run: RunRecord, rules: GridRules) -> float:
    """The epochs the run was asked to train: its point's (an axis), the logged param, else grid.yaml's train."""
    for source in (run.params, run.logged_params, rules.spec.train):
        value = _number(source, EPOCHS)
        if value is not None:
            return value
    return math.nan


def _number(source: Mapping[str, Any], key: str) -> float | None:
    value = source.get(key)
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number > 0 else None


def saved_seconds(*, train_seconds: float, asked: float, trained: float) -> float:
    """train_seconds x (asked / trained - 1), never below 0; NaN when any input is unknown."""
    if not (math.isfinite(train_seconds) and math.isfinite(asked) and math.isfinite(trained)) or trained <= 0:
        return math.nan
    return max(0.0, train_seconds * (asked / trained - 1))


def stopped_run(*, run: RunRecord, rules: GridRules) -> StoppedRun:
    asked, trained = epochs_asked(run=run, rules=rules), run.epochs_trained
    seconds = run.metric(contract.METRIC_TRAIN_SECONDS)
    return StoppedRun(run=run, epoch=run.stopped_at, epochs_asked=asked, epochs_trained=trained,
                      objective=run.metric(rules.spec.objective_metric), train_seconds=seconds,
                      saved_seconds=saved_seconds(train_seconds=seconds, asked=asked, trained=trained))


def compute_saved(*, runs: Sequence[RunRecord], rules: GridRules) -> ComputeSaved:
    stopped = tuple(stopped_run(run=r, rules=rules) for r in runs if r.stopped)
    known = [s.saved_seconds for s in stopped if math.isfinite(s.saved_seconds)]
    used = sum(v for r in runs if not r.confirming and math.isfinite(v := r.metric(contract.METRIC_TRAIN_SECONDS)))
    saved = sum(known)
    total = saved + used
    return ComputeSaved(stopped=stopped, saved_seconds=saved, used_seconds=used,
                        fraction=saved / total if total > 0 else math.nan,
                        unknown=tuple(s.run.point for s in stopped if not math.isfinite(s.saved_seconds)))


def trials(*, runs: Sequence[RunRecord], rules: GridRules) -> tuple[Trial, ...]:
    """The search's trials with a run, by number, with the best objective found so far."""
    position = {p.name: i for i, p in enumerate(rules.points)}

    def number(run: RunRecord) -> int:
        return run.number if run.number is not None else position.get(run.point, len(position))

    searched = sorted((r for r in runs if r.status != MISSING and not r.confirming), key=lambda r: (number(r), r.point))
    best = math.nan
    found = []
    direction = rules.spec.objective_direction
    for run in searched:
        value = run.metric(rules.spec.objective_metric) if run.status == FINISHED else math.nan
        if not run.stopped and objective_key(value, direction) < objective_key(best, direction):
            best = value
        found.append(Trial(number=number(run), run=run, objective=value, stopped=run.stopped, best_so_far=best))
    return tuple(found)


def best_at(found: Sequence[Trial]) -> int | None:
    """The number of the trial that found the final best (None before any)."""
    if not found or not math.isfinite(found[-1].best_so_far):
        return None
    return next(t.number for t in found if not t.stopped and t.objective == found[-1].best_so_far)


def shown(rules: GridRules) -> bool:
    """The report has a search section: a sampled search, or early stopping."""
    return rules.spec.search.mode != "grid" or rules.spec.early_stopping is not None
