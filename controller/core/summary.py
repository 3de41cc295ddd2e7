"""The decision summary that `report` prints, from the finalizer's decision.json (pure)."""

from __future__ import annotations

from typing import Any


def decision_lines(decision: dict[str, Any]) -> list[str]:
    """The decision summary, from decision.json (written by the finalizer)."""
    verdict = decision.get("decision", {})
    objective = decision.get("objective", {}).get("metric", "")
    lines = [f"grid {decision.get('grid')}: decision {verdict.get('verdict', '?')}"]
    if verdict.get("failed_gates"):
        lines.append(f"failed gates: {', '.join(verdict['failed_gates'])}")
    candidate = decision.get("candidate")
    if candidate:
        metric = candidate.get("metrics", {}).get(objective, {})
        values = ", ".join(f"{split} {metric[split]:.4f}" for split in ("val", "test") if metric.get(split) is not None)
        lines.append(f"candidate: {candidate.get('point')} (run {candidate.get('run_id')}) {objective}: {values}")
    registry = decision.get("registry") or {}
    if registry.get("version"):
        moved = "champion moved" if registry.get("champion_moved") else "champion unchanged"
        lines.append(f"registered: {registry.get('name')} version {registry['version']} ({moved})")
    for flag in decision.get("flags", [])[:5]:
        details = ", ".join(f"{k}={v}" for k, v in flag.get("data", {}).items())
        lines.append(f"warning: {flag.get('code')}" + (f" ({details})" if details else ""))
    return lines
