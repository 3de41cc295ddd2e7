"""The confirm phase's verdict: is the best configuration ahead of the runner-up beyond the noise? (pure)

With `confirm:` in grid.yaml, the controller re-runs the top configurations with more seeds. Here:
- every configuration with at least two finished, non-stopped runs gets the mean of the objective and
  its Student-t confidence interval at `confirm.confidence` (a configuration with one run has no
  interval: it is listed, never judged);
- the two best of them by mean (among those that meet the constraints) are compared by Welch's t
  interval of the difference of their means (best minus runner-up). When it excludes 0 the best is the
  **named winner**. Otherwise the two **cannot be separated on this data**, and `confirm.tie` decides:
  `cheaper` (the lower mean train_seconds), `faster` (the lower mean inference_ms_per_image) or `no`
  (no promotion, that is the reason).
The candidate is then the best run of the chosen configuration.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from scipy import stats

import contract
from contract.objective import Direction, objective_key

if TYPE_CHECKING:
    from jobs.finalize.ranking import ConfigSummary

TIE_METRICS = {"cheaper": contract.METRIC_TRAIN_SECONDS, "faster": contract.METRIC_LATENCY_MS}
MIN_RUNS = 2
# Outcomes: a named winner; a tie the rule settled (cheaper, faster) or left open (no); one configuration
# with two runs or more (nothing to compare it with); none.
WINNER, TIE, ALONE, INSUFFICIENT = "winner", "tie", "alone", "insufficient"


@dataclass(frozen=True)
class Interval:
    """One configuration's objective over its runs: mean, sample std and the Student-t interval."""

    config: ConfigSummary
    n: int
    mean: float
    std: float
    low: float
    high: float


@dataclass(frozen=True)
class Difference:
    """Best minus runner-up, with Welch's t interval (df: Welch-Satterthwaite; NaN when both spreads are 0)."""

    value: float
    low: float
    high: float
    df: float

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0


@dataclass(frozen=True)
class Verdict:
    confidence: float
    tie_rule: str  # confirm.tie: cheaper, faster or no
    rows: tuple[Interval, ...]  # every configuration with >= 2 runs, in the ranking's order
    single: tuple[ConfigSummary, ...]  # configurations with one run only: not judged
    first: Interval | None  # the best configuration with >= 2 runs that meets the constraints
    second: Interval | None  # the runner-up
    difference: Difference | None
    outcome: str  # WINNER, TIE, ALONE, INSUFFICIENT
    chosen: ConfigSummary | None  # the configuration to promote; None: decision NO (tie with rule no, or no data)
    tie_metric: str | None = None  # what the tie rule compared (cheaper, faster)
    tie_values: tuple[float, float] | None = None  # its mean for the best and the runner-up

    @property
    def separated(self) -> bool:
        return self.outcome == WINNER

    @property
    def reason(self) -> str | None:
        """Why the verdict forbids promotion: "tie" (rule no) or "insufficient"; None when it allows it."""
        return None if self.chosen is not None else self.outcome


def t_interval(values: Sequence[float], confidence: float) -> tuple[float, float, float, float]:
    """(mean, sample std, low, high) of the Student-t interval of the mean; std and bounds NaN with one value."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return math.nan, math.nan, math.nan, math.nan
    mean = statistics.fmean(finite)
    if len(finite) < 2:
        return mean, math.nan, math.nan, math.nan
    std = statistics.stdev(finite)
    half = float(stats.t.ppf((1 + confidence) / 2, len(finite) - 1)) * std / math.sqrt(len(finite))
    return mean, std, mean - half, mean + half


def welch_interval(a: Sequence[float], b: Sequence[float], confidence: float) -> Difference:
    """mean(a) - mean(b) with Welch's t interval (unequal variances); both need two values or more."""
    xs = [v for v in a if math.isfinite(v)]
    ys = [v for v in b if math.isfinite(v)]
    if len(xs) < MIN_RUNS or len(ys) < MIN_RUNS:
        raise ValueError("Welch's interval needs two values or more on each side")
    diff = statistics.fmean(xs) - statistics.fmean(ys)
    va, vb = statistics.variance(xs) / len(xs), statistics.variance(ys) / len(ys)
    se = math.sqrt(va + vb)
    if se == 0:  # both without spread: the difference is exact
        return Difference(value=diff, low=diff, high=diff, df=math.nan)
    df = (va + vb) ** 2 / (va ** 2 / (len(xs) - 1) + vb ** 2 / (len(ys) - 1))
    half = float(stats.t.ppf((1 + confidence) / 2, df)) * se
    return Difference(value=diff, low=diff - half, high=diff + half, df=df)


def objective_values(config: ConfigSummary, objective: str) -> list[float]:
    return [r.metric(objective) for r in config.runs if math.isfinite(r.metric(objective))]


def confirm_verdict(*, configs: Sequence[ConfigSummary], objective: str, direction: Direction,
                    confidence: float, tie: str) -> Verdict:
    """The verdict on `configs` (the ranking's, ranked ones first by rank; excluded ones have rank None)."""
    rows, single = [], []
    for config in configs:
        values = objective_values(config, objective)
        if len(values) < MIN_RUNS:
            if values:
                single.append(config)
            continue
        mean, std, low, high = t_interval(values, confidence)
        rows.append(Interval(config=config, n=len(values), mean=mean, std=std, low=low, high=high))
    judged = sorted((r for r in rows if r.config.rank is not None),
                    key=lambda r: (objective_key(r.mean, direction), r.config.rank))
    verdict = Verdict(confidence=confidence, tie_rule=tie, rows=tuple(rows), single=tuple(single), first=None,
                      second=None, difference=None, outcome=INSUFFICIENT, chosen=None)
    if not judged:
        return verdict
    first = judged[0]
    if len(judged) < 2:
        return replace(verdict, first=first, outcome=ALONE, chosen=first.config)
    second = judged[1]
    difference = welch_interval(objective_values(first.config, objective), objective_values(second.config, objective),
                                confidence)
    verdict = replace(verdict, first=first, second=second, difference=difference)
    if difference.excludes_zero:
        return replace(verdict, outcome=WINNER, chosen=first.config)
    tie_metric = TIE_METRICS.get(tie)
    if tie_metric is None:
        return replace(verdict, outcome=TIE)
    costs = (first.config.stat(tie_metric).mean, second.config.stat(tie_metric).mean)
    # the lower cost wins; unknown or equal costs keep the better mean
    chosen = second.config if all(map(math.isfinite, costs)) and costs[1] < costs[0] else first.config
    return replace(verdict, outcome=TIE, chosen=chosen, tie_metric=tie_metric, tie_values=costs)
