"""Promotion gates: YES only when every gate passes; otherwise NO, naming the failed gates (pure).

Gates, in order:
- success_fraction: enough grid points succeeded (gates.min_success_fraction);
- candidate: some configuration survived the constraints;
- constraints: the candidate run itself meets them;
- min_objective: the candidate reaches gates.min_objective (a ceiling when the
  objective is minimised);
- champion: it beats the current `champion` by more than gates.champion_margin with gates.confidence, both
  measured on the same test images in this finalizer run (a paired bootstrap, jobs.finalize.champion);
- separation (a plain grid) or confirm (with `confirm:` in grid.yaml): the separation verdict
  (jobs.finalize.verdict) named a configuration: the two best are separated on this data, or they cannot
  be separated and the tie rule (`gates.tie`, `confirm.tie`) settled it; it fails only with the rule `no`,
  or when no configuration could be judged.
Points stopped early on purpose (early_stopping) count neither as successes nor as points in
success_fraction.
A candidate's metric is judged on the test split when it was evaluated there, otherwise on val
(constraints, min_objective); the champion comparison is always on the test images, never on a number
another run stored.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from jobs.finalize.ranking import Ranking
from jobs.finalize.records import ChampionInfo, RunRecord
from jobs.finalize.verdict import PHASE_CONFIRM

GATES = ("success_fraction", "candidate", "constraints", "min_objective", "champion", "separation", "confirm")


@dataclass(frozen=True)
class Gate:
    name: str
    passed: bool
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Decision:
    gates: tuple[Gate, ...]

    @property
    def promote(self) -> bool:
        return all(g.passed for g in self.gates)

    @property
    def verdict(self) -> str:
        return "YES" if self.promote else "NO"

    @property
    def failed(self) -> tuple[str, ...]:
        return tuple(g.name for g in self.gates if not g.passed)

    def gate(self, name: str) -> Gate | None:
        return next((g for g in self.gates if g.name == name), None)


def decide(*, ranking: Ranking, candidate: RunRecord | None, champion: ChampionInfo | None) -> Decision:
    """`candidate` is ranking.candidate, with its test metrics when it was evaluated."""
    gates = [success_gate(ranking)]
    if candidate is None:
        gates.append(Gate("candidate", False, {"reason": "all_excluded" if ranking.configs else "no_success"}))
        return Decision(tuple(gates))
    gates += [
        Gate("candidate", True, {"run_id": candidate.run_id, "point": candidate.point}),
        constraints_gate(ranking=ranking, candidate=candidate),
        objective_gate(ranking=ranking, candidate=candidate),
        champion_gate(ranking=ranking, candidate=candidate, champion=champion),
    ]
    if ranking.separation is not None:
        gates.append(separation_gate(ranking))
    return Decision(tuple(gates))


def success_gate(ranking: Ranking) -> Gate:
    points = ranking.n_points - ranking.n_stopped
    fraction = ranking.n_success / points if points else 0.0
    required = ranking.rules.spec.min_success_fraction
    return Gate("success_fraction", fraction >= required and ranking.n_success > 0,
                {"n_success": ranking.n_success, "n_points": points, "n_stopped": ranking.n_stopped,
                 "fraction": fraction, "required": required})


def separation_gate(ranking: Ranking) -> Gate:
    """"confirm" with `confirm:` (the confirm phase's verdict), else "separation" (the plain grid's)."""
    verdict = ranking.separation
    assert verdict is not None
    return Gate(verdict.phase if verdict.phase == PHASE_CONFIRM else "separation", verdict.chosen is not None,
                {"outcome": verdict.outcome, "tie_rule": verdict.tie_rule, "confidence": verdict.confidence,
                 "separated": verdict.separated, "headline": verdict.headline,
                 "difference": verdict.difference.value if verdict.difference else None,
                 "low": verdict.difference.low if verdict.difference else None,
                 "high": verdict.difference.high if verdict.difference else None,
                 "first": verdict.first.config.label if verdict.first else None,
                 "second": verdict.second.config.label if verdict.second else None,
                 "seeds_needed": verdict.seeds_needed,
                 "chosen": verdict.chosen.label if verdict.chosen else None})


def judged(*, run: RunRecord, metric: str) -> tuple[float, str]:
    """The run's value for `metric`: on test when evaluated there, else on val."""
    test = run.test_metric(metric)
    return (test, "test") if math.isfinite(test) else (run.metric(metric), "val")


def constraints_gate(*, ranking: Ranking, candidate: RunRecord) -> Gate:
    checks = []
    for constraint in ranking.rules.spec.constraints:
        value, basis = judged(run=candidate, metric=constraint.metric)
        bound = constraint.violation(value)
        checks.append({"metric": constraint.metric, "value": value, "basis": basis,
                       "min": constraint.min, "max": constraint.max, "passed": bound is None})
    return Gate("constraints", all(c["passed"] for c in checks), {"checks": checks})


def objective_gate(*, ranking: Ranking, candidate: RunRecord) -> Gate:
    rules = ranking.rules
    value, basis = judged(run=candidate, metric=rules.spec.objective_metric)
    passed = math.isfinite(value) and rules.sign * (value - rules.spec.min_objective) >= 0
    return Gate("min_objective", passed, {"metric": rules.spec.objective_metric, "value": value, "basis": basis,
                                          "threshold": rules.spec.min_objective,
                                          "direction": rules.spec.objective_direction})


def champion_gate(*, ranking: Ranking, candidate: RunRecord, champion: ChampionInfo | None) -> Gate:
    """Keep the champion unless the candidate beats it by more than gates.champion_margin with the stated
    confidence, both measured on the same test images in this finalizer run (jobs.finalize.champion: the lower
    bound of the paired bootstrap interval of the improvement must exceed the margin). Never a number another run
    stored. A champion whose version, run, artifacts or weights are gone is "unavailable": the gate passes, as
    with no champion. One that could not be evaluated here is "not_comparable": the champion is kept."""
    from jobs.finalize.champion import candidate_wins  # here: this function is the champion module's only user

    rules = ranking.rules
    margin = rules.spec.champion_margin
    if champion is None:
        return Gate("champion", True, {"status": "none", "margin": margin, "metric": rules.spec.objective_metric,
                                       "model": rules.spec.registered_model, "alias": "champion"})
    base = {"version": champion.version, "champion_run_id": champion.run_id, "margin": margin,
            "metric": rules.spec.objective_metric, "model": champion.model or rules.spec.registered_model,
            "alias": champion.alias}
    if champion.missing is not None:
        return Gate("champion", True, {**base, "status": "unavailable", "missing": champion.missing,
                                       "detail": champion.detail, "note": champion.note})
    if champion.run_id is not None and champion.run_id == candidate.run_id:
        return Gate("champion", True, {**base, "status": "same_run"})
    comparison = champion.comparison
    if comparison is None or comparison.metric != rules.spec.objective_metric:
        return Gate("champion", False, {**base, "status": "not_comparable",
                                        "reason": champion.not_compared or "not_evaluated"})
    return Gate("champion", candidate_wins(comparison=comparison, margin=margin), {
        **base, "status": "compared", "basis": "test", "candidate_value": comparison.candidate,
        "champion_value": comparison.champion, "improvement": comparison.improvement, "low": comparison.low,
        "high": comparison.high, "confidence": comparison.confidence, "n_images": comparison.n_images,
        "n_boxes": comparison.n_boxes, "resolvable": comparison.resolvable, "separated": comparison.separated,
        "rule": "low_above_margin", "resamples": comparison.resamples})
