"""A configuration's summary over its seeds, and why a run or a configuration is not ranked (pure data).

The value types that the ranking (jobs.finalize.ranking) produces and that flags, the Pareto rule and the
confirm verdict read: here, below all of them, so that none of them imports the ranking back.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jobs.finalize.gridrules import SEED_AXIS
from jobs.finalize.records import RunRecord


@dataclass(frozen=True)
class Stat:
    mean: float
    std: float  # sample standard deviation over seeds; NaN with one seed
    n: int


@dataclass(frozen=True)
class Exclusion:
    metric: str
    bound: str  # "min" or "max"
    limit: float
    value: float  # the configuration's mean; NaN when the metric is missing


@dataclass(frozen=True)
class ConfigSummary:
    params: Mapping[str, Any]  # axis values but the seed
    runs: tuple[RunRecord, ...]  # its ranked (successful) runs
    stats: Mapping[str, Stat]
    exclusions: tuple[Exclusion, ...]
    rank: int | None  # 1 = best; None when excluded

    @property
    def label(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.params.items()) or "(single configuration)"

    @property
    def seeds(self) -> tuple[Any, ...]:
        return tuple(r.params.get(SEED_AXIS) for r in self.runs)

    def stat(self, metric: str) -> Stat:
        return self.stats.get(metric, Stat(math.nan, math.nan, 0))


@dataclass(frozen=True)
class Unranked:
    run: RunRecord
    reason: str  # "missing", "failed", "killed", "running", "no_objective", "duplicate" (same config and seed)
