"""Is the best configuration ahead of the runner-up beyond the noise? The separation verdict of every grid (pure)

Every decision says whether its data separates the candidate's configuration from the runner-up
(`grid_separation`, on a plain grid: the two best ranked configurations, each over its distinct seeds, at
`gates.confidence`; when they cannot be separated, `gates.tie` decides: `best` keeps the better mean and says
the data cannot tell, `cheaper`, `faster` or `no`, as below). A configuration with one seed has no interval:
two such configurations cannot be separated, whatever their means. `seeds_needed` says how many seeds per
configuration would separate the difference seen.

With `confirm:` in grid.yaml, the controller re-runs the top configurations with more seeds. Here
(`confirm_verdict`):
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

from scipy import stats

import contract
from contract.objective import Direction, objective_key
from jobs.finalize.configs import ConfigSummary

TIE_METRICS = {"cheaper": contract.METRIC_TRAIN_SECONDS, "faster": contract.METRIC_LATENCY_MS}
MIN_RUNS = 2
POWER = 0.8  # the power `seeds_needed` plans for
MAX_SEEDS_NEEDED = 1000  # beyond it the difference seen is, for this purpose, zero
PHASE_GRID, PHASE_CONFIRM = "grid", "confirm"
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
    phase: str = PHASE_CONFIRM  # PHASE_CONFIRM: the confirm phase's verdict; PHASE_GRID: a plain grid's
    seeds_needed: int | None = None  # seeds per configuration that would separate the difference seen (POWER)

    @property
    def headline(self) -> str:
        """separated, not_separated (a tie, settled or not), alone (nothing to compare with) or no_data."""
        return {WINNER: "separated", TIE: "not_separated", ALONE: "alone"}.get(self.outcome, "no_data")

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


def seeds_needed(*, first: Sequence[float], second: Sequence[float], confidence: float,
                 power: float = POWER) -> int | None:
    """Seeds per configuration that would make a difference like the one seen (mean(first) - mean(second))
    come out separated at `confidence` with probability `power` (two-sample normal approximation on the pooled
    sample std: n = 2 ((z_(1+c)/2 + z_power) s / d)^2); None when the spread is unknown (< 2 runs on a side)
    or the difference is zero, capped at MAX_SEEDS_NEEDED."""
    xs = [v for v in first if math.isfinite(v)]
    ys = [v for v in second if math.isfinite(v)]
    if len(xs) < MIN_RUNS or len(ys) < MIN_RUNS:
        return None
    difference = abs(statistics.fmean(xs) - statistics.fmean(ys))
    pooled = math.sqrt(((len(xs) - 1) * statistics.variance(xs) + (len(ys) - 1) * statistics.variance(ys))
                       / (len(xs) + len(ys) - 2))
    if pooled == 0:
        return MIN_RUNS if difference > 0 else None
    if difference == 0:
        return MAX_SEEDS_NEEDED
    z = float(stats.norm.ppf((1 + confidence) / 2)) + float(stats.norm.ppf(power))
    return min(MAX_SEEDS_NEEDED, max(MIN_RUNS, math.ceil(2 * (z * pooled / difference) ** 2)))


def interval_of(config: ConfigSummary, objective: str, confidence: float) -> Interval:
    values = objective_values(config, objective)
    mean, std, low, high = t_interval(values, confidence)
    return Interval(config=config, n=len(values), mean=mean, std=std, low=low, high=high)


def settle_tie(verdict: Verdict, tie: str) -> Verdict:
    """`verdict` with the two best not separated: what the tie rule chooses (None: rule no)."""
    assert verdict.first is not None and verdict.second is not None
    if tie == "best":
        return replace(verdict, outcome=TIE, chosen=verdict.first.config)
    tie_metric = TIE_METRICS.get(tie)
    if tie_metric is None:
        return replace(verdict, outcome=TIE, chosen=None)
    first, second = verdict.first.config, verdict.second.config
    costs = (first.stat(tie_metric).mean, second.stat(tie_metric).mean)
    # the lower cost wins; unknown or equal costs keep the better mean
    chosen = second if all(map(math.isfinite, costs)) and costs[1] < costs[0] else first
    return replace(verdict, outcome=TIE, chosen=chosen, tie_metric=tie_metric, tie_values=costs)


def grid_separation(*, configs: Sequence[ConfigSummary], objective: str, confidence: float,
                    tie: str) -> Verdict:
    """The separation verdict of a plain grid: the two best ranked configurations of `configs` (the ranking's
    order; excluded ones have rank None) compared by Welch's interval over their distinct seeds. Without an
    interval (one seed on a side) they are not separated and `tie` decides, as when the interval includes 0."""
    rows, single = [], []
    for config in configs:
        n = len(objective_values(config, objective))
        if n >= MIN_RUNS:
            rows.append(interval_of(config, objective, confidence))
        elif n:
            single.append(config)
    ranked = sorted((c for c in configs if c.rank is not None), key=lambda c: c.rank or 0)
    verdict = Verdict(confidence=confidence, tie_rule=tie, rows=tuple(rows), single=tuple(single), first=None,
                      second=None, difference=None, outcome=INSUFFICIENT, chosen=None, phase=PHASE_GRID)
    if not ranked:
        return verdict
    first = interval_of(ranked[0], objective, confidence)
    if len(ranked) < 2:
        return replace(verdict, first=first, outcome=ALONE, chosen=first.config)
    second = interval_of(ranked[1], objective, confidence)
    a, b = objective_values(first.config, objective), objective_values(second.config, objective)
    verdict = replace(verdict, first=first, second=second,
                      seeds_needed=seeds_needed(first=a, second=b, confidence=confidence))
    if first.n >= MIN_RUNS and second.n >= MIN_RUNS:
        difference = welch_interval(a, b, confidence)
        verdict = replace(verdict, difference=difference)
        # maximising or minimising, the best is ahead when the interval of (best - runner-up) excludes 0
        if difference.excludes_zero:
            return replace(verdict, outcome=WINNER, chosen=first.config)
    return settle_tie(verdict, tie)


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
    verdict = replace(verdict, first=first, second=second, difference=difference, seeds_needed=seeds_needed(
        first=objective_values(first.config, objective), second=objective_values(second.config, objective),
        confidence=confidence))
    if difference.excludes_zero:
        return replace(verdict, outcome=WINNER, chosen=first.config)
    return settle_tie(verdict, tie)
