"""Alternatives to the promoted configuration, with pros and cons drawn from the data (pure)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import contract
from jobs.finalize.configs import ConfigSummary, Exclusion
from jobs.finalize.ranking import Ranking

LOWER_IS_BETTER = frozenset(contract.COST_METRICS)
# Differences smaller than this fraction of the candidate's value are not worth a pro or a con.
MEANINGFUL = 0.01
MAX_ALTERNATIVES = 3


@dataclass(frozen=True)
class Difference:
    metric: str
    alternative: float
    candidate: float


@dataclass(frozen=True)
class Alternative:
    config: ConfigSummary
    pros: tuple[Difference, ...]  # where the alternative is better than the candidate's configuration
    cons: tuple[Difference, ...]
    exclusions: tuple[Exclusion, ...]
    steadier: bool | None  # smaller seed spread on the objective; None when unknown
    fewer_seeds: bool


def higher_is_better(*, metric: str, ranking: Ranking) -> bool:
    if metric == ranking.rules.spec.objective_metric:
        return ranking.rules.sign > 0
    second = ranking.rules.spec.objective.second
    if second is not None and metric == second.metric:
        return second.direction == "maximize"
    return metric not in LOWER_IS_BETTER


def differences(*, alternative: ConfigSummary, best: ConfigSummary,
                ranking: Ranking) -> tuple[list[Difference], list[Difference]]:
    pros: list[Difference] = []
    cons: list[Difference] = []
    for metric in ranking.metrics:
        ours, theirs = alternative.stat(metric).mean, best.stat(metric).mean
        if not (math.isfinite(ours) and math.isfinite(theirs)):
            continue
        if abs(ours - theirs) <= MEANINGFUL * max(abs(theirs), 1e-12):
            continue
        better = (ours > theirs) == higher_is_better(metric=metric, ranking=ranking)
        (pros if better else cons).append(Difference(metric=metric, alternative=ours, candidate=theirs))
    return pros, cons


def steadier(*, alternative: ConfigSummary, best: ConfigSummary, objective: str) -> bool | None:
    ours, theirs = alternative.stat(objective).std, best.stat(objective).std
    if not (math.isfinite(ours) and math.isfinite(theirs)):
        return None
    if abs(ours - theirs) <= MEANINGFUL * max(theirs, 1e-12):
        return None
    return ours < theirs


def choose(ranking: Ranking) -> list[ConfigSummary]:
    """Excluded configurations that beat the chosen one first (the trade-off a reader asks about), then the
    runners-up."""
    best = ranking.chosen
    if best is None:
        return list(ranking.configs[:MAX_ALTERNATIVES])
    sign, objective = ranking.rules.sign, ranking.rules.spec.objective_metric
    better_excluded = [c for c in ranking.configs if c.exclusions
                       and sign * (c.stat(objective).mean - best.stat(objective).mean) > 0]
    rest = [c for c in ranking.configs if c is not best and c not in better_excluded]
    return (better_excluded[:1] + rest)[:MAX_ALTERNATIVES]


def alternatives(ranking: Ranking) -> list[Alternative]:
    """Alternatives to the chosen configuration (the candidate's; the best ranked one on a plain grid)."""
    best = ranking.chosen
    chosen = choose(ranking)
    if best is None:
        return [Alternative(config=c, pros=(), cons=(), exclusions=c.exclusions, steadier=None,
                            fewer_seeds=False) for c in chosen]
    result = []
    for config in chosen:
        pros, cons = differences(alternative=config, best=best, ranking=ranking)
        result.append(Alternative(
            config=config, pros=tuple(pros), cons=tuple(cons), exclusions=config.exclusions,
            steadier=steadier(alternative=config, best=best, objective=ranking.rules.spec.objective_metric),
            fewer_seeds=len(config.runs) < len(best.runs)))
    return result
