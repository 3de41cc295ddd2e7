"""The rules of a grid, as a pure function: (desired grid, observed Jobs) -> actions.

Level-triggered: the plan depends only on what is desired and what is
observed now, so running it again after a crash or a resubmission creates
nothing twice. Both executors (local processes, Kubernetes) act on its plan.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class JobPhase(StrEnum):
    PENDING = "Pending"  # created, not started yet (or suspended by a queue)
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"

    @property
    def terminal(self) -> bool:
        return self in (JobPhase.SUCCEEDED, JobPhase.FAILED)


class GridPhase(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    FINALIZING = "Finalizing"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


@dataclass(frozen=True)
class DesiredJob:
    name: str
    spec_hash: str


@dataclass(frozen=True)
class DesiredGrid:
    grid: str
    submission: str  # identifies this submission (its MLflow parent run id)
    points: tuple[DesiredJob, ...]
    finalizer: DesiredJob
    parallelism: int
    failure_budget: int | None = None  # failed points tolerated; None: no limit


@dataclass(frozen=True)
class ObservedJob:
    name: str
    grid: str
    spec_hash: str
    submission: str
    phase: JobPhase


@dataclass(frozen=True)
class Create:
    name: str
    finalizer: bool = False


@dataclass(frozen=True)
class Delete:
    name: str
    reason: str


@dataclass(frozen=True)
class Conflict:
    name: str
    owner: str  # the grid that already uses this name


Action = Create | Delete | Conflict


@dataclass(frozen=True)
class Counts:
    total: int = 0
    succeeded: int = 0
    failed: int = 0
    running: int = 0
    waiting: int = 0  # not created yet
    skipped: int = 0  # never created: the failure budget was spent


@dataclass(frozen=True)
class Plan:
    actions: list[Action] = field(default_factory=list)
    phase: GridPhase = GridPhase.PENDING
    counts: Counts = Counts()
    message: str = ""

    @property
    def creates(self) -> list[Create]:
        return [a for a in self.actions if isinstance(a, Create)]

    @property
    def deletes(self) -> list[Delete]:
        return [a for a in self.actions if isinstance(a, Delete)]

    @property
    def conflicts(self) -> list[Conflict]:
        return [a for a in self.actions if isinstance(a, Conflict)]


def _classify(point: DesiredJob, job: ObservedJob | None, desired: DesiredGrid) -> tuple[str, Action | None]:
    """What a point is now: 'missing', 'active', 'succeeded', 'failed' or 'blocked', and what to do."""
    if job is None:
        return "missing", None
    if job.grid != desired.grid:
        return "blocked", Conflict(point.name, job.grid)
    if job.spec_hash != point.spec_hash:
        return "active", Delete(point.name, f"spec changed ({job.spec_hash} -> {point.spec_hash})")
    if job.phase is JobPhase.SUCCEEDED:
        return "succeeded", None
    if job.phase is JobPhase.FAILED:
        if job.submission != desired.submission:
            return "active", Delete(point.name, "failed in an earlier submission: retrying")
        return "failed", None
    return "active", None


def reconcile(desired: DesiredGrid, observed: dict[str, ObservedJob]) -> Plan:
    """Decide the actions that move the observed Jobs towards the desired grid."""
    states: dict[str, str] = {}
    actions: list[Action] = []
    for point in desired.points:
        state, action = _classify(point, observed.get(point.name), desired)
        states[point.name] = state
        if action is not None:
            actions.append(action)
    failed = sum(s == "failed" for s in states.values())
    active = sum(s == "active" for s in states.values())
    missing = [p.name for p in desired.points if states[p.name] == "missing"]
    blocked = sum(s == "blocked" for s in states.values())
    if blocked:
        return _blocked(desired, actions, states, blocked=blocked, failed=failed, active=active, missing=len(missing))
    budget_spent = desired.failure_budget is not None and failed > desired.failure_budget
    room = 0 if budget_spent else max(0, desired.parallelism - active)
    actions += [Create(name) for name in missing[:room]]
    counts = Counts(
        total=len(desired.points),
        succeeded=sum(s == "succeeded" for s in states.values()),
        failed=failed,
        running=active + min(room, len(missing)),
        waiting=0 if budget_spent else len(missing) - min(room, len(missing)),
        skipped=len(missing) if budget_spent else 0,
    )
    if counts.running or counts.waiting:
        message = f"{counts.succeeded + counts.failed}/{counts.total} points done"
        return Plan(actions=actions, phase=GridPhase.RUNNING, counts=counts, message=message)
    finalizer_actions, phase, message = _finalize(desired, observed.get(desired.finalizer.name), counts)
    return Plan(actions=actions + finalizer_actions, phase=phase, counts=counts, message=message)


def _blocked(desired: DesiredGrid, actions: list[Action], states: dict[str, str], *, blocked: int, failed: int,
             active: int, missing: int) -> Plan:
    """A point's name belongs to another grid: start nothing new (the grid could never be complete,
    and a finalizer would decide without that point) until the name is free again."""
    counts = Counts(total=len(desired.points), succeeded=sum(s == "succeeded" for s in states.values()),
                    failed=failed, running=active, waiting=missing + blocked)
    return Plan(actions=actions, phase=GridPhase.PENDING, counts=counts,
                message=f"blocked: {blocked} Job names belong to other grids")


def _finalize(desired: DesiredGrid, job: ObservedJob | None, counts: Counts) -> tuple[list[Action], GridPhase, str]:
    """Every point is terminal: run the finalizer exactly once per submission."""
    spent = f"; failure budget spent, {counts.skipped} points skipped" if counts.skipped else ""
    if job is None:
        return [Create(desired.finalizer.name, finalizer=True)], GridPhase.FINALIZING, "all points terminal" + spent
    if job.grid != desired.grid:
        return [Conflict(job.name, job.grid)], GridPhase.FAILED, f"finalizer name {job.name} is used by grid {job.grid}"
    if job.submission != desired.submission:
        return [Delete(job.name, "finalizer of an earlier submission")], GridPhase.FINALIZING, "re-finalizing"
    if job.phase is JobPhase.SUCCEEDED:
        return [], GridPhase.SUCCEEDED, "decision report written" + spent
    if job.phase is JobPhase.FAILED:
        return [], GridPhase.FAILED, "finalizer failed" + spent
    return [], GridPhase.FINALIZING, "finalizer running" + spent


def is_up_to_date(desired: DesiredGrid, observed: dict[str, ObservedJob]) -> bool:
    """True when a resubmission has nothing to do: every point succeeded with its
    current spec and the finalizer succeeded for this very grid spec."""
    for point in desired.points:
        job = observed.get(point.name)
        if (job is None or job.grid != desired.grid or job.spec_hash != point.spec_hash
                or job.phase is not JobPhase.SUCCEEDED):
            return False
    final = observed.get(desired.finalizer.name)
    return final is not None and final.spec_hash == desired.finalizer.spec_hash and final.phase is JobPhase.SUCCEEDED
