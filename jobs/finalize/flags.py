"""Warnings about a grid's results that a reader must see before trusting the ranking (pure).

A flag is a code and its data; the report templates word it in each language.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from jobs.finalize.configs import ConfigSummary
from jobs.finalize.effects import AxisEffect, changed_nothing
from jobs.finalize.gridrules import SEED_AXIS, GridRules
from jobs.finalize.records import RunRecord

# Axes that only an explicit optimizer honours (ultralytics' optimizer=auto ignores them).
OPTIMIZER_AXES = frozenset({"lr0", "lrf", "momentum", "weight_decay", "warmup_momentum", "warmup_bias_lr"})


@dataclass(frozen=True)
class Flag:
    code: str
    data: Mapping[str, Any] = field(default_factory=dict)


def collect_flags(*, runs: Sequence[RunRecord], ok: Sequence[RunRecord], configs: Sequence[ConfigSummary],
                  effects: Sequence[AxisEffect], rules: GridRules, stopped: Sequence[RunRecord] = ()) -> list[Flag]:
    """`stopped`: runs stopped early on purpose (early_stopping): neither successes nor failures."""
    return [
        *too_few_success(ok=ok, rules=rules, n_stopped=len(stopped)),
        *unranked_runs(runs=runs, ok=[*ok, *stopped]),
        *axes_without_effect(effects=effects, rules=rules),
        *seed_without_effect(ok=ok, rules=rules),
        *scratch_runs(runs=runs),
        *single_seed(configs=configs),
        *all_excluded(configs=configs),
    ]


def too_few_success(*, ok: Sequence[RunRecord], rules: GridRules, n_stopped: int = 0) -> list[Flag]:
    total = len(rules.points) - n_stopped
    fraction = len(ok) / total if total else 0.0
    if fraction >= rules.spec.min_success_fraction and len(ok) >= 2:
        return []
    return [Flag("too_few_success", {"n_success": len(ok), "n_points": total, "fraction": fraction,
                                     "required": rules.spec.min_success_fraction, "n_stopped": n_stopped})]


def unranked_runs(*, runs: Sequence[RunRecord], ok: Sequence[RunRecord]) -> list[Flag]:
    ok_ids = {id(r) for r in ok}
    bad = [r for r in runs if id(r) not in ok_ids]
    if not bad:
        return []
    return [Flag("unranked", {"points": [r.point for r in bad],
                              "statuses": {r.point: r.status for r in bad}})]


def axes_without_effect(*, effects: Sequence[AxisEffect], rules: GridRules) -> list[Flag]:
    return [Flag("axis_no_effect", {"axis": e.axis, "axis_values": [lv.value for lv in e.levels],
                                    "optimizer_hint": e.axis in OPTIMIZER_AXES,
                                    "optimizer": rules.spec.train.get("optimizer")})
            for e in effects if e.identical]


def seed_without_effect(*, ok: Sequence[RunRecord], rules: GridRules) -> list[Flag]:
    if SEED_AXIS not in rules.axes or not changed_nothing(runs=ok, rules=rules, axis=SEED_AXIS):
        return []
    return [Flag("seed_no_effect", {"axis_values": list(rules.axes[SEED_AXIS])})]


def scratch_runs(*, runs: Sequence[RunRecord]) -> list[Flag]:
    scratch = [r.point for r in runs if r.scratch]
    return [Flag("scratch", {"points": scratch, "n": len(scratch)})] if scratch else []


def single_seed(*, configs: Sequence[ConfigSummary]) -> list[Flag]:
    lonely = [c.label for c in configs if len(c.runs) == 1]
    return [Flag("single_seed", {"configs": lonely})] if lonely else []


def all_excluded(*, configs: Sequence[ConfigSummary]) -> list[Flag]:
    if configs and all(c.exclusions for c in configs):
        return [Flag("all_excluded", {"n_configs": len(configs)})]
    return []
