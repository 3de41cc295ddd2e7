"""Promotion gates: YES only when every gate passes; otherwise NO, naming the failed gates (pure).

Gates, in order:
- success_fraction: enough grid points succeeded (gates.min_success_fraction);
- candidate: some configuration survived the constraints;
- constraints: the candidate run itself meets them;
- min_objective: the candidate reaches gates.min_objective (a ceiling when the
  objective is minimised);
- champion: it beats the current `champion` by more than gates.champion_margin;
- confirm (only with `confirm:` in grid.yaml): the confirm verdict named a configuration (a winner, or a
  tie its `tie` rule settled; jobs.finalize.verdict).
Points stopped early on purpose (early_stopping) count neither as successes nor as points in
success_fraction.
A candidate's metric is judged on the test split when it was evaluated there,
otherwise on val; the champion comparison uses the same split on both sides.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import contract
from jobs.finalize.ranking import Ranking
from jobs.finalize.records import ChampionInfo, RunRecord

GATES = ("success_fraction", "candidate", "constraints", "min_objective", "champion", "confirm")


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
    if ranking.verdict is not None:
        gates.append(confirm_gate(ranking))
    return Decision(tuple(gates))


def success_gate(ranking: Ranking) -> Gate:
    points = ranking.n_points - ranking.n_stopped
    fraction = ranking.n_success / points if points else 0.0
    required = ranking.rules.min_success_fraction
    return Gate("success_fraction", fraction >= required and ranking.n_success > 0,
                {"n_success": ranking.n_success, "n_points": points, "n_stopped": ranking.n_stopped,
                 "fraction": fraction, "required": required})


def confirm_gate(ranking: Ranking) -> Gate:
    verdict = ranking.verdict
    assert verdict is not None
    return Gate("confirm", verdict.chosen is not None,
                {"outcome": verdict.outcome, "tie_rule": verdict.tie_rule, "confidence": verdict.confidence,
                 "difference": verdict.difference.value if verdict.difference else None,
                 "low": verdict.difference.low if verdict.difference else None,
                 "high": verdict.difference.high if verdict.difference else None,
                 "chosen": verdict.chosen.label if verdict.chosen else None})


def judged(*, run: RunRecord, metric: str) -> tuple[float, str]:
    """The run's value for `metric`: on test when evaluated there, else on val."""
    test = run.test_metric(metric)
    return (test, "test") if math.isfinite(test) else (run.metric(metric), "val")


def constraints_gate(*, ranking: Ranking, candidate: RunRecord) -> Gate:
    checks = []
    for constraint in ranking.rules.constraints:
        value, basis = judged(run=candidate, metric=constraint.metric)
        bound = constraint.violation(value)
        checks.append({"metric": constraint.metric, "value": value, "basis": basis,
                       "min": constraint.min, "max": constraint.max, "passed": bound is None})
    return Gate("constraints", all(c["passed"] for c in checks), {"checks": checks})


def objective_gate(*, ranking: Ranking, candidate: RunRecord) -> Gate:
    rules = ranking.rules
    value, basis = judged(run=candidate, metric=rules.objective)
    passed = math.isfinite(value) and rules.sign * (value - rules.min_objective) >= 0
    return Gate("min_objective", passed, {"metric": rules.objective, "value": value, "basis": basis,
                                          "threshold": rules.min_objective, "direction": rules.direction})


def champion_gate(*, ranking: Ranking, candidate: RunRecord, champion: ChampionInfo | None) -> Gate:
    rules = ranking.rules
    margin = rules.champion_margin
    if champion is None:
        return Gate("champion", True, {"status": "none", "margin": margin})
    base = {"version": champion.version, "champion_run_id": champion.run_id, "margin": margin,
            "metric": rules.objective}
    if champion.run_id is not None and champion.run_id == candidate.run_id:
        return Gate("champion", True, {**base, "status": "same_run"})
    for basis, name in (("test", contract.TEST_PREFIX + rules.objective), ("val", rules.objective)):
        ours, theirs = candidate.metric(name), champion.metric(name)
        if math.isfinite(ours) and math.isfinite(theirs):
            improvement = rules.sign * (ours - theirs)
            return Gate("champion", improvement > margin,
                        {**base, "status": "compared", "basis": basis, "candidate_value": ours,
                         "champion_value": theirs, "improvement": improvement})
    return Gate("champion", False, {**base, "status": "not_comparable"})
