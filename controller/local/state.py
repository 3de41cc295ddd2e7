"""The local executor's state store: what Kubernetes' API server keeps for the cluster.

One JSON file per grid under .tp4/grids/<grid>/state.json, written atomically,
so a restarted controller sees which Jobs exist and how they ended.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from contract.errors import InvalidInput, Problem
from controller.core.reconciling import JobPhase
from controller.core.state import Attempt, GridState, JobRecord

__all__ = ["Attempt", "GridState", "JobRecord", "grid_dir", "state_path", "load_state", "save_state",
           "known_grids", "job_owners", "safe_child"]


def safe_child(base: Path, name: str) -> Path:
    """`base / name` when `name` is one plain path component that stays inside `base`
    (a grid, Job or file name from grid.yaml is never used as a path unchecked);
    `InvalidInput` (exit 2) naming the value otherwise."""
    path = base / name
    plain = bool(name) and name not in (".", "..") and "/" not in name and "\\" not in name and "\0" not in name
    if not plain or path.resolve().parent != base.resolve():
        raise InvalidInput([Problem("name", f"{name!r} cannot name a file or folder under {base}: "
                                            "use letters, digits and '-' only")])
    return path


def grid_dir(root: Path, grid: str) -> Path:
    return safe_child(root / ".tp4" / "grids", grid)


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
        jobs[name] = JobRecord(**{**job, "phase": JobPhase(job["phase"]), "attempts": attempts})
    return GridState(**raw, jobs=jobs)


def _job_data(job: JobRecord) -> dict[str, Any]:
    """A JobRecord as JSON-ready data, its manifest shared, not copied (asdict deep-copies every manifest)."""
    data = {f.name: getattr(job, f.name) for f in fields(job)}
    return {**data, "phase": JobPhase(job.phase).value, "attempts": [asdict(a) for a in job.attempts]}


def save_state(root: Path, state: GridState) -> None:
    """Write the whole state atomically (one JSON line per Job: the file is read by load_state, not by hand).
    Each write costs O(Jobs): bench/p2_scale.py measures how the total grows with the grid."""
    path = state_path(root, state.grid)
    path.parent.mkdir(parents=True, exist_ok=True)
    head = {f.name: getattr(state, f.name) for f in fields(state) if f.name != "jobs"}
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as handle:
        handle.write(json.dumps(head)[:-1] + ', "jobs": {\n')
        handle.write(",\n".join(f"{json.dumps(name)}: {json.dumps(_job_data(job))}"
                                 for name, job in state.jobs.items()))
        handle.write("\n}}\n")
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
