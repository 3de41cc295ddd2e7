"""Beyond a grid: sampled points (random, TPE), early-stopping decisions and the confirm phase (pure).

Optuna does the sampling and the pruning; this module only translates. Its study lives in memory and is
rebuilt on every call from `TrialRecord`s, what MLflow holds about the search (controller/searching.py reads
them): a restarted controller, local or in a cluster, asks and decides exactly as one that never stopped
would, without a study database.

- `ask_points` (`sample_points`: its points): the points of `search.mode: random` (all at once: they do
  not depend on results) and the next points of `search.mode: tpe` (as many as there is room for, given
  the finished ones). Each trial's sampler is seeded from (`search.seed`, trial number), so the same
  history gives the same point. One configuration, one training: a point whose spec hash is already
  in the history (or asked in the same call) is never asked again; a search that can find no other
  point says so (`Asked.exhausted`) and ends short of its trials.
- `stop_decisions`: the running points that `early_stopping.rule` (Optuna's pruner) finds hopeless. The
  history is replayed in the order MLflow timestamped it (each epoch value, each end), so pruners with
  state (successive halving's rungs) see what they would have seen live.
- `confirm_points`: the re-runs of the top configurations with the confirm seeds.

Names: a sampled float is rounded for the Job name (3 significant digits), never for the value; a name
already taken gets the trial number (`-t<n>`) or, for a confirm point, its seed (`-s<seed>`).
"""

from __future__ import annotations

import itertools
import logging
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

import contract
from contract.grid import GridSpec
from contract.objective import Direction, objective_key
from controller.core.points import JOB_NAME, MAX_NAME_LENGTH, GridPoint, format_value, point_spec

optuna.logging.set_verbosity(logging.WARNING)

SEED = "seed"
TrialPhase = Literal["search", "confirm"]
TrialStatus = Literal["waiting", "running", "complete", "stopped", "failed"]
NAME_DIGITS = 3  # significant digits of a sampled float in a Job name


@dataclass(frozen=True)
class TrialRecord:
    """One point of a search as MLflow shows it.

    `number`: the order it was asked in (0-based; confirm points follow the search's). `status`: waiting
    (recorded, no run yet), running, complete (FINISHED), stopped (FINISHED, stopped early), failed.
    `values`: the objective(s) of a complete or stopped run (`objective.metric`, then `objective.second`).
    `curve`: the early-stopping metric per epoch, as (timestamp s, epoch, value). `ended`: end time (s).
    `metrics`: the run's final metrics (constraints are checked on them). `stop_requested_at`: when the
    controller asked it to stop (s since the epoch), None when it did not. `running_run_id`: its newest
    run when that run is RUNNING (where a stop request goes), else None.
    """

    name: str
    number: int
    params: dict[str, Any]
    phase: TrialPhase = "search"
    status: TrialStatus = "waiting"
    values: tuple[float, ...] | None = None
    curve: tuple[tuple[float, int, float], ...] = ()
    started: float | None = None
    ended: float | None = None
    stop_requested: bool = False
    metrics: dict[str, float] = field(default_factory=dict)
    stop_requested_at: float | None = None
    running_run_id: str | None = None

    @property
    def finished(self) -> bool:
        return self.status in ("complete", "stopped", "failed")


@dataclass(frozen=True)
class Decision:
    """Stop point `name`: at `epoch`, `value` was hopeless by `rule`."""

    name: str
    epoch: int
    value: float
    rule: str


@dataclass
class Names:
    """Job names already given (this grid's points): a new name never takes one of them."""

    taken: set[str] = field(default_factory=set)

    def give(self, base: str, *suffixes: str) -> str:
        """`base` made a valid Job name (lowercase, DNS characters, at most 63), or, when taken, `base`
        with the suffixes added one by one, then a counter: never a name already given."""
        clean = _clean(base)
        candidates = [clean] + [_with_suffix(clean, "".join(suffixes[:i + 1])) for i in range(len(suffixes))]
        counter = 2
        while True:
            for name in candidates:
                if name and name not in self.taken and JOB_NAME.fullmatch(name):
                    self.taken.add(name)
                    return name
            candidates = [_with_suffix(clean, "".join(suffixes) + f"-{counter}")]
            counter += 1


def _clean(name: str) -> str:
    """Lowercase, '+' dropped (1.03e+03 -> 1.03e03), other characters outside [a-z0-9.-] as '-',
    no '-' or '.' at either end, at most MAX_NAME_LENGTH characters."""
    name = re.sub(r"[^a-z0-9.-]", "-", name.lower().replace("+", ""))
    name = re.sub(r"\.{2,}", ".", name).strip("-.")
    return name[:MAX_NAME_LENGTH].rstrip("-.") or "trial"


def _with_suffix(name: str, suffix: str) -> str:
    return name[: MAX_NAME_LENGTH - len(suffix)].rstrip("-.") + suffix


def name_value(value: Any) -> str:
    """An axis value in a sampled point's name: floats rounded to NAME_DIGITS significant digits."""
    if isinstance(value, float) and not isinstance(value, bool):
        return format(value, f".{NAME_DIGITS}g")
    return format_value(value)


def point_name(grid: GridSpec, params: dict[str, Any]) -> str:
    """The name template filled with rounded values (a field the template names but the point lacks: '')."""
    values = {k: name_value(v) for k, v in params.items()}
    return grid.job.name_template.format_map(_Blank(values))


class _Blank(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return ""


# --- the search space ----------------------------------------------------------------------------------

def distributions(grid: GridSpec) -> dict[str, BaseDistribution]:
    """Optuna's distribution of each axis: a list is a categorical choice."""
    found: dict[str, BaseDistribution] = {}
    for name, axis in grid.axes.items():
        if isinstance(axis, list):
            found[name] = CategoricalDistribution(axis)
            continue
        kind, args = next(iter(axis.items()))
        if kind == "choice":
            found[name] = CategoricalDistribution(args)
        elif kind == "int":
            found[name] = IntDistribution(int(args[0]), int(args[1]), step=int(args[2]) if len(args) == 3 else 1)
        else:
            found[name] = FloatDistribution(float(args[0]), float(args[1]), log=kind == "loguniform")
    return found


def _directions(grid: GridSpec) -> list[Direction]:
    second = grid.objective.second
    return [grid.objective.direction] + ([second.direction] if second else [])


def trial_seed(search_seed: int, number: int, attempt: int = 0) -> int:
    """The seed of trial `number`'s sampler: numpy's SeedSequence of (search seed, number), so searches
    with nearby seeds share no trials (a plain seed + number would shift one onto the other); `attempt`
    > 0 when the point it gave was already run (asked again)."""
    entropy = [search_seed, number] + ([attempt] if attempt else [])
    return int(numpy.random.SeedSequence(entropy).generate_state(1)[0])


def _sampler(grid: GridSpec, number: int, attempt: int = 0) -> optuna.samplers.BaseSampler:
    seed = trial_seed(grid.search.seed, number, attempt)
    if grid.search.mode == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup_trials(grid), constant_liar=True)
    return optuna.samplers.RandomSampler(seed=seed)


def startup_trials(grid: GridSpec) -> int:
    """TPE's random trials before it models anything: search.startup_trials, else a quarter of the
    budget (at least 2, at most Optuna's default of 10)."""
    if grid.search.startup_trials is not None:
        return int(grid.search.startup_trials)
    return max(2, min(10, int(grid.search.trials or 0) // 4))


def _study(grid: GridSpec, history: Iterable[TrialRecord]) -> optuna.Study:
    """The sampling study: every search trial so far (finished ones with their objective, the others
    in flight), so TPE models the results and keeps away from what is already running."""
    space = distributions(grid)
    directions = _directions(grid)
    study = optuna.create_study(directions=directions, sampler=_sampler(grid, 0))
    rule = grid.early_stopping
    # TPE ranks a stopped trial by its last epoch value in the study's direction: only meaningful with one
    # objective that the early-stopping metric measures the same way (mAP per epoch for mAP, not a loss)
    curves = rule is not None and len(directions) == 1 and rule.direction == directions[0]
    for trial in sorted((t for t in history if t.phase == "search"), key=lambda t: t.number):
        if not in_space(trial.params, space):
            continue  # a trial of another search space (the axes changed): not evidence for this one
        params = {k: trial.params[k] for k in space}
        values = list(trial.values) if trial.values is not None else None
        if trial.status == "complete" and values is not None and all(map(math.isfinite, values)):
            state, kept = TrialState.COMPLETE, values
        elif trial.status == "stopped":
            state, kept = TrialState.PRUNED, None
        elif trial.finished:
            state, kept = TrialState.FAIL, None
        else:
            state, kept = TrialState.RUNNING, None
        study.add_trial(optuna.trial.create_trial(
            state=state, values=kept, params=params, distributions={k: space[k] for k in params},
            intermediate_values={epoch: value for _, epoch, value in trial.curve} if curves else None))
    return study


def in_space(params: dict[str, Any], space: dict[str, BaseDistribution]) -> bool:
    """True when `params` give every axis a value its distribution holds."""
    try:
        return set(space) <= set(params) and all(space[k]._contains(space[k].to_internal_repr(params[k]))
                                                 for k in space)
    except (ValueError, TypeError):
        return False


MAX_REASKS = 20  # a proposal already asked is asked again, with another seed, at most this many times
ENUMERABLE = 10_000  # a discrete space of at most this many points is enumerated when the sampler repeats itself


@dataclass(frozen=True)
class Asked:
    """What one look at a sampled search asks. `points`: (trial number, point), each a configuration (seed
    included) never asked before. `exhausted`: why the search cannot ask the rest of `search.trials` (every
    point of a discrete space asked, or no new point found), None while it can."""

    points: list[tuple[int, GridPoint]]
    exhausted: str | None = None


def identity(grid: GridSpec, params: dict[str, Any], *, dataset_md5: str) -> str:
    """A point's spec hash with this grid: two points with the same one are the same training."""
    return contract.spec_hash(point_spec(grid, params, dataset_md5=dataset_md5))


def sample_points(grid: GridSpec, history: Sequence[TrialRecord], *, room: int, dataset_md5: str,
                  names: Names) -> list[tuple[int, GridPoint]]:
    """`ask_points`' points, (trial number, point): what `render` and a submission's first Jobs need."""
    return ask_points(grid, history, room=room, dataset_md5=dataset_md5, names=names).points


def ask_points(grid: GridSpec, history: Sequence[TrialRecord], *, room: int, dataset_md5: str,
               names: Names) -> Asked:
    """The next search points: at most `room`, never past `search.trials`, never the same training twice.

    Random: independent of results. TPE: from the study rebuilt from `history`; points asked in one
    call are in flight for the next (constant liar). A proposal with the spec hash of a point of
    `history` (any phase, any status: asked, in flight, trained, failed, confirmed) or of this call is
    asked again with another seed, up to MAX_REASKS times, the repeats kept in flight meanwhile (TPE's
    constant liar steers away from them); then, in a discrete space of at most ENUMERABLE points, the
    point is drawn uniformly among those never asked. When there is none (every point of a discrete
    space asked, or a larger space that gave only repeats), asking ends: `exhausted` says why, and the
    search stops short of its budget rather than train a point twice."""
    searched = [t for t in history if t.phase == "search"]
    count = min(room, int(grid.search.trials or 0) - len(searched))
    if grid.search.mode == "grid" or count <= 0:
        return Asked([])
    study = _study(grid, history)
    space = distributions(grid)
    seen = {identity(grid, t.params, dataset_md5=dataset_md5) for t in history}
    asked: list[tuple[int, GridPoint]] = []
    number = max((t.number for t in history), default=-1) + 1
    for _ in range(count):
        params = _new_point(grid, study, space, seen, number=number, dataset_md5=dataset_md5)
        if isinstance(params, str):
            trials = int(grid.search.trials or 0)
            return Asked(asked, f"{params}: the search stops at {len(searched) + len(asked)} of its {trials} "
                                f"trials rather than train a point twice")
        seen.add(identity(grid, params, dataset_md5=dataset_md5))
        asked.append((number, make_point(grid, params, dataset_md5=dataset_md5, names=names,
                                         suffixes=(f"-t{number}",))))
        number += 1
    return Asked(asked)


def _new_point(grid: GridSpec, study: optuna.Study, space: dict[str, BaseDistribution], seen: set[str], *,
               number: int, dataset_md5: str) -> dict[str, Any] | str:
    """Trial `number`'s params, whose spec hash is not in `seen`, asked to the study (in flight there);
    or why there is none."""
    repeats: list[optuna.trial.Trial] = []
    found: dict[str, Any] | None = None
    for attempt in range(MAX_REASKS + 1):
        study.sampler = _sampler(grid, number, attempt)
        trial = study.ask(space)
        params = {axis: _plain(trial.params[axis]) for axis in grid.axes}
        if identity(grid, params, dataset_md5=dataset_md5) not in seen:
            found = params
            break
        repeats.append(trial)
    for trial in repeats:
        study.tell(trial, state=TrialState.FAIL)  # not evidence: ignored by the next asks
    if found is not None:
        return found
    size = discrete_size(space)
    if size is None or size > ENUMERABLE:
        return (f"{MAX_REASKS + 1} asks for trial {number} gave only points already asked "
                f"({'a continuous' if size is None else f'a {size}-point'} space)")
    unseen = [params for params in _enumerate(space) if identity(grid, params, dataset_md5=dataset_md5) not in seen]
    if not unseen:
        return f"every one of the {size} points of the search space is already asked"
    rng = numpy.random.default_rng(trial_seed(grid.search.seed, number, MAX_REASKS + 1))
    chosen = unseen[int(rng.integers(len(unseen)))]
    study.enqueue_trial(chosen)
    study.ask(space)  # the enqueued point: in flight for the next asks of this call
    return chosen


def discrete_size(space: dict[str, BaseDistribution]) -> int | None:
    """The number of points of a space of categorical and int axes; None when an axis is continuous."""
    size = 1
    for distribution in space.values():
        if isinstance(distribution, CategoricalDistribution):
            size *= len(distribution.choices)
        elif isinstance(distribution, IntDistribution):
            size *= (distribution.high - distribution.low) // distribution.step + 1
        else:
            return None
    return size


def _enumerate(space: dict[str, BaseDistribution]) -> list[dict[str, Any]]:
    """Every point of a discrete space (`discrete_size` is not None), in the order of its axes' values."""
    return [{axis: _plain(value) for axis, value in zip(space, point, strict=True)}
            for point in itertools.product(*(_values(d) for d in space.values()))]


def _values(distribution: BaseDistribution) -> list[Any]:
    if isinstance(distribution, CategoricalDistribution):
        return list(distribution.choices)
    assert isinstance(distribution, IntDistribution), distribution
    return list(range(distribution.low, distribution.high + 1, distribution.step))


def _plain(value: Any) -> Any:
    """numpy scalars from a categorical choice -> Python's (JSON, YAML, Job args)."""
    return value.item() if hasattr(value, "item") else value


def make_point(grid: GridSpec, params: dict[str, Any], *, dataset_md5: str, names: Names,
               suffixes: tuple[str, ...], phase: str = contract.PHASE_SEARCH) -> GridPoint:
    return GridPoint(name=names.give(point_name(grid, params), *suffixes), params=params,
                     spec_hash=contract.spec_hash(point_spec(grid, params, dataset_md5=dataset_md5)), phase=phase)


# --- early stopping ------------------------------------------------------------------------------------

def pruner(grid: GridSpec) -> optuna.pruners.BasePruner:
    """Optuna's pruner of `early_stopping.rule` (steps are epochs, 1-based)."""
    rule = grid.early_stopping
    assert rule is not None
    if rule.rule == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=rule.startup_trials, n_warmup_steps=rule.min_epochs)
    if rule.rule == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=rule.min_epochs,
                                                      reduction_factor=rule.reduction_factor)
    maximize = rule.direction == "maximize"
    return optuna.pruners.ThresholdPruner(lower=rule.threshold if maximize else None,
                                          upper=None if maximize else rule.threshold, n_warmup_steps=rule.min_epochs)


def stop_decisions(grid: GridSpec, history: Sequence[TrialRecord]) -> list[Decision]:
    """The running search points to stop now, replaying the history in time order.

    Every search trial's epoch values and its end are events; each reported epoch asks the pruner,
    as it would have been asked live. A running trial whose latest report is judged hopeless (and
    not already asked to stop) is a Decision. Confirm points are never stopped: they are repeats."""
    rule = grid.early_stopping
    if rule is None:
        return []
    study = optuna.create_study(direction=rule.direction, pruner=pruner(grid))
    events: list[tuple[float, int, int, int, float]] = []  # (time, kind 0=report 1=end, number, epoch, value)
    trials = {t.number: t for t in history if t.phase == "search"}
    for trial in trials.values():
        events += [(when, 0, trial.number, epoch, value) for when, epoch, value in trial.curve]
        if trial.finished and trial.curve:  # ended after its last report (clocks of two machines may disagree)
            events.append((max(trial.ended or 0.0, trial.curve[-1][0]), 1, trial.number, 0, 0.0))
    live: dict[int, optuna.Trial] = {}
    verdict: dict[int, tuple[int, float, bool]] = {}
    for _, kind, number, epoch, value in sorted(events, key=lambda e: (e[0], e[1], e[2], e[3])):
        trial = trials[number]
        if kind == 1:
            state = TrialState.COMPLETE if trial.status == "complete" else (
                TrialState.PRUNED if trial.status == "stopped" else TrialState.FAIL)
            last = trial.curve[-1][2]
            study.tell(live.pop(number), values=last if state is TrialState.COMPLETE and math.isfinite(last)
                       else None, state=state if math.isfinite(last) or state is not TrialState.COMPLETE
                       else TrialState.FAIL)
            continue
        if number not in live:
            live[number] = study.ask()
        live[number].report(value, epoch)
        verdict[number] = (epoch, value, live[number].should_prune())
    decisions = []
    for number, (epoch, value, hopeless) in sorted(verdict.items()):
        trial = trials[number]
        if hopeless and trial.status == "running" and not trial.stop_requested and epoch >= rule.min_epochs:
            decisions.append(Decision(trial.name, epoch, value, rule.rule))
    return decisions


# --- the confirm phase -----------------------------------------------------------------------------------

def configuration(params: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    """A point's configuration: its params but the seed (repr'd: 0.01 and 0.010 are one value)."""
    return tuple(sorted((k, repr(v)) for k, v in params.items() if k != SEED))


def top_configurations(grid: GridSpec, history: Sequence[TrialRecord], *, top: int) -> list[dict[str, Any]]:
    """The `top` configurations by mean objective over their complete search runs, best first
    (ties: the earlier trial), as params without the seed; a configuration whose mean breaks one of
    `constraints` (as the finalizer judges it) is not one of them."""
    groups: dict[tuple[tuple[str, str], ...], list[TrialRecord]] = {}
    for trial in history:
        if trial.phase == "search" and trial.status == "complete" and trial.values is not None \
                and math.isfinite(trial.values[0]):
            groups.setdefault(configuration(trial.params), []).append(trial)
    direction = grid.objective.direction

    def key(runs: list[TrialRecord]) -> tuple[float, int]:
        mean = sum(t.values[0] for t in runs if t.values is not None) / len(runs)
        return objective_key(mean, direction), min(t.number for t in runs)

    def allowed(runs: list[TrialRecord]) -> bool:
        for constraint in grid.constraints:
            values = [t.metrics[constraint.metric] for t in runs if constraint.metric in t.metrics]
            if constraint.violation(sum(values) / len(values) if values else None) is not None:
                return False
        return True

    ranked = sorted((runs for runs in groups.values() if allowed(runs)), key=key)
    return [{k: v for k, v in runs[0].params.items() if k != SEED} for runs in ranked[:top]]


def search_done(grid: GridSpec, history: Sequence[TrialRecord], *, exhausted: bool = False) -> bool:
    """Every search point asked and finished (a grid's points are all in `history` from the start;
    `exhausted`: a sampled search could ask no more, `Asked.exhausted`, and ends short of its trials)."""
    searched = [t for t in history if t.phase == "search"]
    budget = int(grid.search.trials or 0) if grid.sampled and not exhausted else len(searched)
    return len(searched) >= budget and all(t.finished for t in searched)


def confirm_points(grid: GridSpec, history: Sequence[TrialRecord], *, dataset_md5: str,
                   names: Names, exhausted: bool = False) -> list[tuple[int, GridPoint]]:
    """The confirm phase's points, (trial number, point): each top configuration with each confirm seed
    it has not run with yet (nor been asked to); [] until the search is done (`exhausted`: as for
    `search_done`). Asked again after a restart or a resubmission, it gives only what is still missing."""
    if grid.confirm is None or not search_done(grid, history, exhausted=exhausted):
        return []
    # a point without a seed trained with ultralytics' default seed, 0
    ran = {(configuration(t.params), t.params.get(SEED, grid.train.get(SEED, 0))) for t in history}
    number = max((t.number for t in history), default=-1) + 1
    points: list[tuple[int, GridPoint]] = []
    for config in top_configurations(grid, history, top=grid.confirm.top):
        for seed in grid.confirm.seeds:
            params = {**config, SEED: seed}
            if (configuration(params), seed) in ran:
                continue
            points.append((number, make_point(grid, params, dataset_md5=dataset_md5, names=names,
                                              suffixes=(f"-s{seed}", f"-t{number}"),
                                              phase=contract.PHASE_CONFIRM)))
            number += 1
    return points
