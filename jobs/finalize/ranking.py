"""Aggregate a grid's runs over seeds, rank configurations, pick the candidate (pure).

A configuration is a grid point without its seed. Only runs that FINISHED with
a finite objective are ranked; the others are listed with the reason. Runs the
controller stopped early (early_stopping) are set apart: never ranked, never in
a configuration's mean, never a candidate. Constraints exclude configurations
on their seed mean. Ties are broken, in order, by more successful seeds, a
smaller seed spread, then the order of the axis values in grid.yaml, so the
same runs always give the same ranking.

The chosen configuration is the best ranked one, unless grid.yaml says
otherwise: with `objective.second`, the Pareto rule (jobs.finalize.pareto);
with `confirm`, the confirm verdict (jobs.finalize.verdict), which takes
precedence. The candidate is the best run of the chosen configuration.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import contract
from contract.objective import TIE_DIGITS, objective_key  # noqa: F401 (TIE_DIGITS: re-exported)
from jobs.finalize.configs import ConfigSummary, Exclusion, Stat, Unranked
from jobs.finalize.effects import AxisEffect, axis_effects, pooled_seed_spread
from jobs.finalize.flags import Flag, collect_flags
from jobs.finalize.gridrules import SEED_AXIS, GridRules
from jobs.finalize.pareto import ParetoChoice, pareto_choice
from jobs.finalize.records import FINISHED, MISSING, RunRecord
from jobs.finalize.verdict import Verdict, confirm_verdict, grid_separation

REPORTED_METRICS = contract.TRAIN_RUN_METRICS


@dataclass(frozen=True)
class Ranking:
    rules: GridRules
    runs: tuple[RunRecord, ...]  # every point, in grid.json order
    configs: tuple[ConfigSummary, ...]  # ranked ones by rank, then excluded ones by objective
    candidate: RunRecord | None
    unranked: tuple[Unranked, ...]
    effects: tuple[AxisEffect, ...]
    seed_spread: float
    flags: tuple[Flag, ...]
    metrics: tuple[str, ...]
    stopped: tuple[RunRecord, ...] = ()  # FINISHED runs the controller stopped early, in grid.json order
    verdict: Verdict | None = None  # with `confirm`
    pareto: ParetoChoice | None = None  # with `objective.second`
    chosen: ConfigSummary | None = None  # the candidate's configuration
    separation: Verdict | None = None  # every grid: the confirm verdict with `confirm`, else the plain grid's

    @property
    def ranked(self) -> tuple[ConfigSummary, ...]:
        return tuple(c for c in self.configs if c.rank is not None)

    @property
    def best(self) -> ConfigSummary | None:
        """The best ranked configuration on the objective (rank 1)."""
        return self.ranked[0] if self.ranked else None

    @property
    def n_points(self) -> int:
        return len(self.rules.points)

    @property
    def n_stopped(self) -> int:
        return len(self.stopped)

    @property
    def n_success(self) -> int:
        return sum(len(c.runs) for c in self.configs)


def rank(*, runs: Sequence[RunRecord], rules: GridRules) -> Ranking:
    """The whole analysis of one grid's runs."""
    metrics = metric_names(rules)
    stopped = tuple(r for r in runs if r.stopped)
    ok, unranked = split_runs(runs=[r for r in runs if not r.stopped], objective=rules.spec.objective_metric)
    ok, repeats = distinct_trainings(runs=ok, rules=rules)
    unranked += repeats
    summaries = [summarise(params=p, runs=group, rules=rules, metrics=metrics)
                 for p, group in group_by_config(runs=ok, rules=rules)]
    configs = order_configs(configs=summaries, rules=rules)
    verdict, pareto, separation, chosen = choose(configs=configs, rules=rules)
    objective = rules.spec.objective_metric
    spread = pooled_seed_spread(objective_values=[[r.metric(objective) for r in c.runs] for c in configs])
    effects = axis_effects(runs=ok, rules=rules, seed_spread=spread)
    return Ranking(
        rules=rules, runs=tuple(runs), configs=tuple(configs),
        candidate=pick_candidate(config=chosen, rules=rules) if chosen else None,
        unranked=tuple(unranked), effects=tuple(effects), seed_spread=spread,
        flags=tuple(collect_flags(runs=runs, ok=ok, configs=configs, effects=effects, rules=rules, stopped=stopped)),
        metrics=metrics, stopped=stopped, verdict=verdict, pareto=pareto, chosen=chosen, separation=separation,
    )


def choose(*, configs: Sequence[ConfigSummary], rules: GridRules
           ) -> tuple[Verdict | None, ParetoChoice | None, Verdict, ConfigSummary | None]:
    """The confirm verdict, the Pareto choice, the separation verdict and the chosen configuration.

    Chosen: the separation verdict's on a plain grid (the best ranked one, or what `gates.tie` picks when the
    two best cannot be separated); the Pareto rule's pick with a second objective; the confirm verdict's with
    `confirm`, which is then the separation verdict too. When a verdict forbids promotion (tie rule `no`), the
    best configuration it judged, else the best ranked one, stays the candidate to show."""
    best = next((c for c in configs if c.rank == 1), None)
    gates = rules.spec.gates
    separation = grid_separation(configs=configs, objective=rules.spec.objective_metric, confidence=gates.confidence,
                                 tie=gates.tie)
    chosen = separation.chosen or best
    pareto = verdict = None
    second = rules.spec.objective.second
    if second is not None:
        pareto = pareto_choice(configs=configs, objective=rules.spec.objective_metric,
                               direction=rules.spec.objective_direction,
                               second=second.metric, second_direction=second.direction, tolerance=second.tolerance)
        chosen = pareto.chosen or best
    confirm = rules.spec.confirm
    if confirm is not None:
        verdict = separation = confirm_verdict(configs=configs, objective=rules.spec.objective_metric,
                                               direction=rules.spec.objective_direction, confidence=confirm.confidence,
                                               tie=confirm.tie)
        chosen = verdict.chosen or (verdict.first.config if verdict.first else chosen)
    return verdict, pareto, separation, chosen


def distinct_trainings(*, runs: Sequence[RunRecord], rules: GridRules) -> tuple[list[RunRecord], list[Unranked]]:
    """One run per (configuration, seed): the same configuration trained with the same seed is one training
    (two trials of a search that asked the same point), never two seeds. The newest run is kept (start time,
    then run id); the others are listed as "duplicate"."""
    kept: dict[tuple[Any, ...], RunRecord] = {}
    for run in sorted(runs, key=lambda r: (r.start_time, r.run_id or ""), reverse=True):
        kept.setdefault((config_of(run=run, rules=rules), repr(run.params.get(SEED_AXIS))), run)
    chosen = {id(r) for r in kept.values()}
    return ([r for r in runs if id(r) in chosen],
            [Unranked(run=r, reason="duplicate") for r in runs if id(r) not in chosen])


def metric_names(rules: GridRules) -> tuple[str, ...]:
    second = rules.spec.objective.second
    extra = [rules.spec.objective_metric, *([second.metric] if second else []),
             *(c.metric for c in rules.spec.constraints)]
    return tuple(dict.fromkeys([*REPORTED_METRICS, *extra]))


def split_runs(*, runs: Iterable[RunRecord], objective: str) -> tuple[list[RunRecord], list[Unranked]]:
    ok, unranked = [], []
    for run in runs:
        reason = unranked_reason(run=run, objective=objective)
        if reason:
            unranked.append(Unranked(run=run, reason=reason))
        else:
            ok.append(run)
    return ok, unranked


def unranked_reason(*, run: RunRecord, objective: str) -> str | None:
    if run.status == MISSING:
        return "missing"
    if run.status != FINISHED:
        return {"FAILED": "failed", "KILLED": "killed"}.get(run.status, "running")
    if not math.isfinite(run.metric(objective)):
        return "no_objective"
    return None


def value_index(*, rules: GridRules, axis: str, value: Any) -> tuple[int, str]:
    values = rules.axes.get(axis, ())
    return (values.index(value), "") if value in values else (len(values), repr(value))


def config_of(*, run: RunRecord, rules: GridRules) -> tuple[tuple[str, Any], ...]:
    return tuple((axis, run.params.get(axis)) for axis in rules.config_axes)


def group_by_config(*, runs: Iterable[RunRecord], rules: GridRules) -> list[tuple[dict[str, Any], list[RunRecord]]]:
    groups: dict[tuple[tuple[str, Any], ...], list[RunRecord]] = {}
    for run in runs:
        groups.setdefault(config_of(run=run, rules=rules), []).append(run)
    def by_seed(run: RunRecord) -> tuple[int, str]:
        return value_index(rules=rules, axis=SEED_AXIS, value=run.params.get(SEED_AXIS))

    return [(dict(key), sorted(group, key=by_seed)) for key, group in groups.items()]


def stat_of(values: Iterable[float]) -> Stat:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return Stat(math.nan, math.nan, 0)
    std = statistics.stdev(finite) if len(finite) > 1 else math.nan
    return Stat(statistics.fmean(finite), std, len(finite))


def summarise(*, params: dict[str, Any], runs: list[RunRecord], rules: GridRules,
              metrics: Sequence[str]) -> ConfigSummary:
    stats = {m: stat_of(r.metric(m) for r in runs) for m in metrics}
    exclusions = []
    for constraint in rules.spec.constraints:
        value = stats[constraint.metric].mean
        bound = constraint.violation(value)
        if bound:
            exclusions.append(Exclusion(metric=constraint.metric, bound=bound,
                                        limit=constraint.limit(bound), value=value))
    return ConfigSummary(params=params, runs=tuple(runs), stats=stats, exclusions=tuple(exclusions), rank=None)


def order_key(*, config: ConfigSummary, rules: GridRules) -> tuple[Any, ...]:
    objective = config.stat(rules.spec.objective_metric)
    std = objective.std if math.isfinite(objective.std) else math.inf
    axes_order = tuple(value_index(rules=rules, axis=a, value=config.params.get(a)) for a in rules.config_axes)
    return (objective_key(objective.mean, rules.spec.objective_direction), -objective.n, std, axes_order)


def order_configs(*, configs: list[ConfigSummary], rules: GridRules) -> list[ConfigSummary]:
    ordered = sorted(configs, key=lambda c: order_key(config=c, rules=rules))
    eligible = [c for c in ordered if not c.exclusions]
    excluded = [c for c in ordered if c.exclusions]
    ranked = [ConfigSummary(params=c.params, runs=c.runs, stats=c.stats, exclusions=(), rank=i)
              for i, c in enumerate(eligible, start=1)]
    return ranked + excluded


def meets_constraints(*, run: RunRecord, rules: GridRules) -> bool:
    return all(c.violation(run.metric(c.metric)) is None for c in rules.spec.constraints)


def pick_candidate(*, config: ConfigSummary, rules: GridRules) -> RunRecord:
    """The best run of the best configuration, preferring one that meets the constraints itself."""
    def key(run: RunRecord) -> tuple[Any, ...]:
        objective = objective_key(run.metric(rules.spec.objective_metric), rules.spec.objective_direction)
        return (not meets_constraints(run=run, rules=rules), objective,
                value_index(rules=rules, axis=SEED_AXIS, value=run.params.get(SEED_AXIS)), run.run_id or "")
    return min(config.runs, key=key)
