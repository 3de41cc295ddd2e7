"""The local executor's state store: what Kubernetes' API server keeps for the cluster.

One JSON file per grid under .tp4/grids/<grid>/state.json, written atomically,
so a restarted controller sees which Jobs exist and how they ended.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from controller.reconciling import JobPhase, ObservedJob


@dataclass
class Attempt:
    number: int
    log: str
    started: float
    finished: float | None = None
    exit_code: int | None = None
    reason: str = ""  # e.g. "DeadlineExceeded", "Killed", "Interrupted"


@dataclass
class LocalJob:
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
        return ObservedJob(name=self.name, grid=self.grid, spec_hash=self.spec_hash,
                           submission=self.submission, phase=self.phase)


@dataclass
class GridState:
    grid: str
    submission: str = ""
    experiment: str = ""
    phase: str = "Pending"
    message: str = ""
    jobs: dict[str, LocalJob] = field(default_factory=dict)


def grid_dir(root: Path, grid: str) -> Path:
    return root / ".tp4" / "grids" / grid


def state_path(root: Path, grid: str) -> Path:
    return grid_dir(root, grid) / "state.json"


def load_state(root: Path, grid: str) -> GridState:
    path = state_path(root, grid)
    if not path.exists():
        return GridState(grid=grid)
    raw = json.loads(path.read_text())
    jobs = {}
    for name, job in raw.pop("jobs").items():
        attempts = [Attempt(**a) for a in job.pop("attempts")]
        jobs[name] = LocalJob(**{**job, "phase": JobPhase(job["phase"]), "attempts": attempts})
    return GridState(**raw, jobs=jobs)


def save_state(root: Path, state: GridState) -> None:
    path = state_path(root, state.grid)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = asdict(state)
    for job in data["jobs"].values():
        job["phase"] = JobPhase(job["phase"]).value
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as handle:
        json.dump(data, handle, indent=1)
    os.replace(handle.name, path)


def known_grids(root: Path) -> list[str]:
    base = root / ".tp4" / "grids"
    return sorted(p.parent.name for p in base.glob("*/state.json")) if base.exists() else []


def job_owners(root: Path) -> dict[str, str]:
    """Job name -> the grid that uses it, across every grid of this project."""
    owners: dict[str, str] = {}
    for grid in known_grids(root):
        for name in load_state(root, grid).jobs:
            owners.setdefault(name, grid)
    return owners
