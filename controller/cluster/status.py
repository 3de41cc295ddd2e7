"""A Grid's status from the reconciler's plan (pure). Its size does not grow with the number of
points: counts, the best point, the decision and three conditions; per-point state lives on
the Jobs (labels, status) and in MLflow."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from controller.core.reconciling import Conflict, GridPhase, JobPhase, ObservedJob, Plan

MAX_MESSAGE = 1024
MAX_LISTED = 5
TERMINAL = (GridPhase.SUCCEEDED, GridPhase.FAILED)


@dataclass(frozen=True)
class Outcome:
    """What one reconcile found, beyond the plan: the inputs of the status."""

    generation: int
    submission: str
    start_time: str
    best: dict[str, Any] | None = None
    decision: str | None = None
    report: dict[str, str] | None = None
    conflicts: list[Conflict] = field(default_factory=list)


def timestamp(now: datetime) -> str:
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str | None) -> datetime | None:
    """An RFC 3339 time ("2026-01-02T03:04:05Z"), None when absent or unreadable."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def shorten(text: str, limit: int = MAX_MESSAGE) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def listed(items: list[str]) -> str:
    more = f" and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else ""
    return "; ".join(items[:MAX_LISTED]) + more


def condition(previous: dict[str, Any], *, type_: str, ok: bool, reason: str, message: str, generation: int,
              now: datetime) -> dict[str, Any]:
    """A metav1.Condition; lastTransitionTime moves only when the status flips."""
    old = next((c for c in previous.get("conditions") or [] if c.get("type") == type_), None)
    status = "True" if ok else "False"
    since = old["lastTransitionTime"] if old and old.get("status") == status else timestamp(now)
    return {"type": type_, "status": status, "observedGeneration": generation, "lastTransitionTime": since,
            "reason": reason, "message": shorten(message)}


def counts(plan: Plan, observed: dict[str, ObservedJob], *, grid: str, points: dict[str, str]) -> dict[str, int]:
    """Points per phase; `pending` holds those not created yet, queued or suspended."""
    running = sum(1 for name, spec_hash in points.items()
                  if (job := observed.get(name)) is not None and job.grid == grid and job.spec_hash == spec_hash
                  and job.phase is JobPhase.RUNNING)
    total, succeeded, failed = plan.counts.total, plan.counts.succeeded, plan.counts.failed
    return {"total": total, "pending": max(0, total - succeeded - failed - running), "running": running,
            "succeeded": succeeded, "failed": failed}


def grid_phase(plan: Plan, tally: dict[str, int]) -> GridPhase:
    if plan.phase is GridPhase.RUNNING and not (tally["running"] or tally["succeeded"] or tally["failed"]):
        return GridPhase.PENDING  # nothing started yet: Jobs queued, suspended by Kueue, or pulling images
    return plan.phase


def grid_status(previous: dict[str, Any], *, plan: Plan, observed: dict[str, ObservedJob], grid: str,
                points: dict[str, str], outcome: Outcome, now: datetime) -> dict[str, Any]:
    tally = counts(plan, observed, grid=grid, points=points)
    phase = grid_phase(plan, tally)
    gen = outcome.generation
    clashes = [f"job {c.name} belongs to grid {c.owner}" for c in outcome.conflicts]
    status: dict[str, Any] = {
        "observedGeneration": gen, "phase": phase.value, "counts": tally,
        **({"parentRunId": outcome.submission} if outcome.submission else {}),
        **({"startTime": outcome.start_time} if outcome.start_time else {}),
        "conditions": [
            condition(previous, type_="Valid", ok=True, reason="SpecValid", message="the spec is a valid grid",
                      generation=gen, now=now),
            condition(previous, type_="NamesAvailable", ok=not clashes,
                      reason="NameConflict" if clashes else "NamesFree",
                      message=listed(clashes) if clashes else "every Job name is free or this grid's",
                      generation=gen, now=now),
            condition(previous, type_="Progressing", ok=phase not in TERMINAL, reason=plan.reason or phase.value,
                      message=plan.message, generation=gen, now=now),
        ],
    }
    if phase in TERMINAL:
        status["completionTime"] = previous.get("completionTime") if previous.get("phase") == phase.value \
            and previous.get("completionTime") else timestamp(now)
    for key, value in (("best", outcome.best), ("decision", outcome.decision), ("report", outcome.report)):
        if value:
            status[key] = value
    return status


def invalid_status(previous: dict[str, Any], *, generation: int, message: str, now: datetime) -> dict[str, Any]:
    """A spec the parser refuses: Failed, with every problem (shortened) in the Valid condition."""
    status: dict[str, Any] = {key: previous[key] for key in ("parentRunId", "startTime", "counts") if key in previous}
    status.update({"observedGeneration": generation, "phase": GridPhase.FAILED.value, "conditions": [
        condition(previous, type_="Valid", ok=False, reason="InvalidSpec", message=message, generation=generation,
                  now=now),
        condition(previous, type_="Progressing", ok=False, reason="InvalidSpec",
                  message="nothing is run for an invalid spec",
                  generation=generation, now=now),
    ]})
    return status


def up_to_date_status(previous: dict[str, Any], *, generation: int, start_time: str, now: datetime) -> dict[str, Any]:
    """A submission with nothing to do: every point and the finalizer already succeeded with this spec.
    It is taken up (startTime) and done at once; the results stay those of the previous parent run."""
    status = dict(previous)
    kept = [c for c in previous.get("conditions") or [] if c.get("type") != "Progressing"]
    status.update(observedGeneration=generation, phase=GridPhase.SUCCEEDED.value, startTime=start_time,
                  completionTime=start_time, conditions=kept + [condition(
                      previous, type_="Progressing", ok=False, reason="UpToDate", generation=generation, now=now,
                      message="nothing to do: every point and the finalizer already succeeded with this spec")])
    return status


def merge_patch(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The JSON merge patch (RFC 7386) that turns `old` into `new`: None deletes a key."""
    patch: dict[str, Any] = {key: None for key in old if key not in new}
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(old.get(key), dict):
            inner = merge_patch(old[key], value)
            if inner:
                patch[key] = inner
        elif old.get(key) != value or key not in old:
            patch[key] = value
    return patch
