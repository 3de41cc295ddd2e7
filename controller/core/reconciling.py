"""The rules of a grid, as a pure function: (desired grid, observed Jobs) -> actions.

Level-triggered: the plan depends only on what is desired and what is
observed now, so running it again after a crash or a resubmission creates
nothing twice. The submission driver (controller/driving.py) acts on its plan through either Job store
(local processes, Kubernetes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

# A Job that a podFailurePolicy FailJob rule failed: its container exited 2, a configuration error
# that retrying cannot fix (the Job controller's condition reason; the local kubelet uses it too).
CONFIGURATION_FAILURE = "PodFailurePolicy"
CONFIGURATION_ERROR = "ConfigurationError"  # the grid's reason when such failures stop it
MIN_CONFIGURATION_FAILURES = 2  # failed points that stop a grid (a grid of one point: that one)


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


# What a point is now (reconcile's Plan.states): not created yet; created and not done (running, waiting,
# or about to be deleted and created again: its spec changed, or it failed in an earlier submission);
# succeeded; failed in this submission; its name held by another grid.
PointState = Literal["missing", "active", "succeeded", "failed", "blocked"]
IN_FLIGHT: tuple[PointState, ...] = ("missing", "active", "blocked")  # a search counts these as trials in flight


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
    pending: bool = False  # a search will still add points (controller.searching): not time to finalize


@dataclass(frozen=True)
class ObservedJob:
    name: str
    grid: str
    spec_hash: str
    submission: str
    phase: JobPhase
    failure_reason: str = ""  # why a failed Job failed, e.g. CONFIGURATION_FAILURE, "BackoffLimitExceeded"


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
    reason: str = ""  # why the grid is in this phase, when the phase alone does not say (CONFIGURATION_ERROR)
    states: dict[str, PointState] = field(default_factory=dict)  # each desired point's state, by name
    budget_spent: bool = False  # the failure budget is spent or a configuration error stops the grid: start no point

    def in_flight(self) -> set[str]:
        """The points a search counts as in flight: not created yet, not done, or to be created again."""
        return {name for name, state in self.states.items() if state in IN_FLIGHT}

    def failed(self) -> set[str]:
        """The points that failed in this submission."""
        return {name for name, state in self.states.items() if state == "failed"}

    @property
    def creates(self) -> list[Create]:
        return [a for a in self.actions if isinstance(a, Create)]

    @property
    def deletes(self) -> list[Delete]:
        return [a for a in self.actions if isinstance(a, Delete)]

    @property
    def conflicts(self) -> list[Conflict]:
        return [a for a in self.actions if isinstance(a, Conflict)]


def _classify(point: DesiredJob, job: ObservedJob | None, desired: DesiredGrid) -> tuple[PointState, Action | None]:
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
    """Decide the actions that move the observed Jobs towards the desired grid; the plan also carries each
    point's state and whether the failure budget is spent (what a search and a status read)."""
    states: dict[str, PointState] = {}
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
    config_failed = configuration_failures(desired, observed, states)
    budget_spent = (desired.failure_budget is not None and failed > desired.failure_budget) or bool(config_failed)
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
    stop = _configuration_message(config_failed, counts) if config_failed else ""
    if counts.running or counts.waiting or (desired.pending and not budget_spent):
        message = f"{counts.succeeded + counts.failed}/{counts.total} points done" + (f"; {stop}" if stop else "")
        message += "; searching" if desired.pending and not (counts.running or counts.waiting) else ""
        return Plan(actions=actions, phase=GridPhase.RUNNING, counts=counts, message=message, states=states,
                    budget_spent=budget_spent)
    if config_failed and observed.get(desired.finalizer.name) is None:
        return Plan(actions=actions, phase=GridPhase.FAILED, counts=counts, message=stop + "; finalizer skipped",
                    reason=CONFIGURATION_ERROR, states=states, budget_spent=True)
    finalizer_actions, phase, message = _finalize(desired, observed.get(desired.finalizer.name), counts)
    return Plan(actions=actions + finalizer_actions, phase=phase, counts=counts, message=message, states=states,
                budget_spent=budget_spent)


def configuration_failures(desired: DesiredGrid, observed: dict[str, ObservedJob],
                           states: dict[str, PointState]) -> list[str]:
    """The points whose failures stop the grid, or []: every point that finished in this submission
    failed with a configuration error (exit code 2, CONFIGURATION_FAILURE), and at least
    MIN_CONFIGURATION_FAILURES of them did (all of them, in a smaller grid). A configuration error
    hits every point alike, so the rest would fail the same way, and a finalizer would rank nothing."""
    finished = [p.name for p in desired.points if states.get(p.name) in ("succeeded", "failed")]
    config = [n for n in finished if states[n] == "failed" and observed[n].failure_reason == CONFIGURATION_FAILURE]
    enough = min(MIN_CONFIGURATION_FAILURES, len(desired.points))
    return config if finished and len(config) == len(finished) and len(config) >= enough else []


def _configuration_message(failed: list[str], counts: Counts) -> str:
    named = ", ".join(failed[:3]) + (f" and {len(failed) - 3} more" if len(failed) > 3 else "")
    skipped = f", {counts.skipped} points not started" if counts.skipped else ""
    return (f"{CONFIGURATION_ERROR}: {named} failed with exit code 2 (a configuration error every point "
            f"would hit; see their logs){skipped}")


def _blocked(desired: DesiredGrid, actions: list[Action], states: dict[str, PointState], *, blocked: int, failed: int,
             active: int, missing: int) -> Plan:
    """A point's name belongs to another grid: start nothing new (the grid could never be complete,
    and a finalizer would decide without that point) until the name is free again."""
    counts = Counts(total=len(desired.points), succeeded=sum(s == "succeeded" for s in states.values()),
                    failed=failed, running=active, waiting=missing + blocked)
    return Plan(actions=actions, phase=GridPhase.PENDING, counts=counts,
                message=f"blocked: {blocked} Job names belong to other grids", states=states)


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
