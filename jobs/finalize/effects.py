"""What each axis did to the objective, measured against the spread between seeds (pure)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import contract
from jobs.finalize.gridrules import SEED_AXIS, GridRules
from jobs.finalize.records import RunRecord

# Two runs "gave identical metrics" when every final metric agrees this closely.
IDENTICAL_REL = 1e-9
IDENTICAL_ABS = 1e-12


@dataclass(frozen=True)
class Level:
    value: Any
    mean: float  # marginal mean of the objective over every successful run with this value
    n: int


@dataclass(frozen=True)
class AxisEffect:
    axis: str
    levels: tuple[Level, ...]
    spread: float  # best level mean minus worst, in objective units (>= 0)
    ratio: float  # spread / seed spread; NaN when the seed spread is unknown
    identical: bool | None  # True: changing this axis alone changed no metric at all
    verdict: str  # single_value, no_data, identical, unknown_noise, within_noise, beyond_noise
    best_value: Any


def pooled_seed_spread(*, objective_values: Iterable[Sequence[float]]) -> float:
    """Pooled within-configuration standard deviation of the objective (NaN without two seeds anywhere)."""
    squares, dof = 0.0, 0
    for values in objective_values:
        finite = [v for v in values if math.isfinite(v)]
        if len(finite) > 1:
            squares += statistics.variance(finite) * (len(finite) - 1)
            dof += len(finite) - 1
    return math.sqrt(squares / dof) if dof else math.nan


def same_metrics(a: RunRecord, b: RunRecord) -> bool:
    def equal(x: float, y: float) -> bool:
        both_nan = math.isnan(x) and math.isnan(y)
        return both_nan or math.isclose(x, y, rel_tol=IDENTICAL_REL, abs_tol=IDENTICAL_ABS)
    return all(equal(a.metric(m), b.metric(m)) for m in contract.FINAL_METRICS)


def changed_nothing(*, runs: Sequence[RunRecord], rules: GridRules, axis: str) -> bool | None:
    """True when every pair of runs that differ only in `axis` has identical metrics; None if no such pair."""
    others = [a for a in rules.axes if a != axis]
    groups: dict[tuple[Any, ...], list[RunRecord]] = {}
    for run in runs:
        groups.setdefault(tuple(repr(run.params.get(a)) for a in others), []).append(run)
    comparable = [g for g in groups.values() if len({repr(r.params.get(axis)) for r in g}) > 1]
    if not comparable:
        return None
    return all(same_metrics(g[0], other) for g in comparable for other in g[1:])


def levels_of(*, runs: Sequence[RunRecord], rules: GridRules, axis: str) -> tuple[Level, ...]:
    levels = []
    for value in rules.axes[axis]:
        values = [r.metric(rules.spec.objective_metric) for r in runs if r.params.get(axis) == value]
        finite = [v for v in values if math.isfinite(v)]
        levels.append(Level(value=value, mean=statistics.fmean(finite) if finite else math.nan, n=len(finite)))
    return tuple(levels)


def verdict_of(*, levels: Sequence[Level], identical: bool | None, spread: float, seed_spread: float) -> str:
    measured = [lv for lv in levels if lv.n]
    if len(levels) < 2:
        return "single_value"
    if len(measured) < 2:
        return "no_data"
    if identical:
        return "identical"
    if not math.isfinite(seed_spread) or seed_spread == 0:
        return "unknown_noise"
    return "within_noise" if spread <= seed_spread else "beyond_noise"


def effect_of(*, runs: Sequence[RunRecord], rules: GridRules, axis: str, seed_spread: float) -> AxisEffect:
    levels = levels_of(runs=runs, rules=rules, axis=axis)
    measured = [lv for lv in levels if lv.n]
    spread = max(lv.mean for lv in measured) - min(lv.mean for lv in measured) if len(measured) > 1 else math.nan
    identical = changed_nothing(runs=runs, rules=rules, axis=axis)
    ratio = spread / seed_spread if math.isfinite(seed_spread) and seed_spread > 0 else math.nan
    best = max(measured, key=lambda lv: rules.sign * lv.mean).value if measured else None
    return AxisEffect(axis=axis, levels=levels, spread=spread, ratio=ratio, identical=identical,
                      verdict=verdict_of(levels=levels, identical=identical, spread=spread, seed_spread=seed_spread),
                      best_value=best)


def axis_effects(*, runs: Sequence[RunRecord], rules: GridRules, seed_spread: float) -> list[AxisEffect]:
    """One effect per axis but the seed, whose spread is the yardstick."""
    return [effect_of(runs=runs, rules=rules, axis=a, seed_spread=seed_spread)
            for a in rules.axes if a != SEED_AXIS]
