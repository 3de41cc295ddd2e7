"""What the progress view and the reconciler see of a grid's Jobs, whichever backend runs them (pure).

The local executor stores these in .tp4/grids/<grid>/state.json (controller.local.state);
the cluster backend builds them from a Grid and its Jobs (controller.cluster.view).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from controller.core.reconciling import JobPhase, ObservedJob


@dataclass
class Attempt:
    number: int
    log: str
    started: float
    finished: float | None = None
    exit_code: int | None = None
    reason: str = ""  # e.g. "DeadlineExceeded", "Killed", "Interrupted"
    pid: int | None = None  # the local executor's process of this attempt, and its start time
    process_started: float | None = None  # (psutil create_time, s since the epoch): a pid reused later differs


@dataclass
class JobRecord:
    name: str
    grid: str
    spec_hash: str
    submission: str
    role: str
    manifest: dict[str, Any]
    phase: JobPhase = JobPhase.PENDING
    attempts: list[Attempt] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    run_id: str | None = None

    @property
    def started(self) -> float | None:
        return self.attempts[0].started if self.attempts else None

    @property
    def finished(self) -> float | None:
        return self.attempts[-1].finished if self.attempts and self.phase.terminal else None

    def observed(self) -> ObservedJob:
        reason = self.attempts[-1].reason if self.attempts and self.phase is JobPhase.FAILED else ""
        return ObservedJob(name=self.name, grid=self.grid, spec_hash=self.spec_hash,
                           submission=self.submission, phase=self.phase, failure_reason=reason)


@dataclass
class GridState:
    grid: str
    submission: str = ""
    experiment: str = ""
    phase: str = "Pending"
    message: str = ""
    jobs: dict[str, JobRecord] = field(default_factory=dict)
