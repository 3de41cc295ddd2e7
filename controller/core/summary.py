"""The decision summary that `report` prints and the one-line decision that ends `submit-grid` and
`finalize`, from the finalizer's decision.json read by contract.decision (pure)."""

from __future__ import annotations

from contract.decision import (
    OUTCOME_ALONE,
    OUTCOME_INSUFFICIENT,
    OUTCOME_TIE,
    OUTCOME_WINNER,
    Decision,
    Separation,
)
from contract.warning_words import warning_sentence

SHOWN_WARNINGS = 5  # `report` prints the first ones; the report lists them all


def decision_lines(decision: Decision) -> list[str]:
    """The decision summary, from decision.json (written by the finalizer): the verdict, the candidate, the
    registry, and the first warnings in words (contract.warning_words)."""
    verdict = decision.decision
    objective = decision.objective.metric
    lines = [f"grid {decision.grid}: decision {verdict.verdict}"]
    if verdict.failed_gates:
        lines.append(f"failed gates: {', '.join(verdict.failed_gates)}")
    candidate = decision.candidate
    if candidate is not None:
        metric = candidate.metrics.get(objective)
        values = ", ".join(f"{split} {value:.4f}" for split, value in
                           (("val", metric.val if metric else None), ("test", metric.test if metric else None))
                           if value is not None)
        lines.append(f"candidate: {candidate.point} (run {candidate.run_id}) {objective}: {values}")
        if candidate.label:
            lines.append(f"{candidate.label}: {separation_phrase(decision.separation)}")
    registry = decision.registry
    if registry is not None and registry.version:
        moved = "champion moved" if registry.champion_moved else "champion unchanged"
        lines.append(f"registered: {registry.name} version {registry.version} ({moved})")
    for flag in decision.flags[:SHOWN_WARNINGS]:
        lines.append(f"warning: {warning_sentence(flag.code, flag.data)}")
    if len(decision.flags) > SHOWN_WARNINGS:
        lines.append(f"... and {len(decision.flags) - SHOWN_WARNINGS} more warnings in the report")
    return lines


def separation_phrase(separation: Separation | None) -> str:
    """What the data says of the candidate against the runner-up, in a few words.

    None (a decision.json written before separation existed): "separation not assessed"."""
    if separation is None:
        return "separation not assessed"
    if separation.outcome == OUTCOME_TIE:
        rule = f"; tie rule: {separation.tie_rule}" if separation.tie_rule else ""
        return f"cannot be separated from the runner-up{rule}"
    if separation.outcome == OUTCOME_ALONE:
        return "no runner-up to compare with"
    if separation.outcome == OUTCOME_INSUFFICIENT:
        return "separation not assessed: too few seeds per configuration for an interval"
    if separation.outcome == OUTCOME_WINNER or separation.separated:
        return "separated from the runner-up"
    return "not separated from the runner-up"


def decision_line(decision: Decision, *, report: str) -> str:
    """One line: the verdict, the candidate and whether the data separates it from the runner-up,
    the failed gates (NO), and where the report is (`report`, as the caller shows it), e.g.
    `decision: YES — train-320-0.01 (separated from the runner-up) — reports/lab/decision.md`."""
    parts = [f"decision: {decision.verdict}"]
    candidate = decision.candidate.label if decision.candidate is not None else ""
    parts.append(f"{candidate} ({separation_phrase(decision.separation)})" if candidate else "no candidate")
    if decision.decision.failed_gates:
        parts.append(f"failed gates: {', '.join(decision.decision.failed_gates)}")
    parts.append(report)
    return " — ".join(parts)
