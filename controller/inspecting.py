"""The verbs that look at grids: `status`, `logs`, `report`."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from rich.console import Console

from controller.errors import InvalidInput, Problem
from controller.local_state import GridState, known_grids, load_state
from controller.progress import status_table

FOLLOW_POLL_SECONDS = 0.5


def grid_name(value: str) -> str:
    """A grid given by name, or by the grid file that names it."""
    path = Path(value)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        from controller.gridspec import load_grid

        return load_grid(path).name
    return value


def _points(state: GridState) -> list[str]:
    return sorted(state.jobs, key=lambda name: (state.jobs[name].role != "train", name))


def show_status(*, root: Path, grid: str | None, console: Console) -> int:
    names = [grid_name(grid)] if grid else known_grids(root)
    if not names:
        console.print("no grid has been submitted in this project yet")
        return 0
    for name in names:
        if name not in known_grids(root):
            raise InvalidInput([Problem("grid", f"no grid named {name!r} in {root} (known: {', '.join(known_grids(root)) or 'none'})")])
        state = load_state(root, name)
        console.print(status_table(state, points=_points(state)))
    return 0


def find_job(root: Path, job: str) -> tuple[GridState, str]:
    for name in known_grids(root):
        state = load_state(root, name)
        if job in state.jobs:
            return state, name
    raise InvalidInput([Problem("job", f"no Job named {job!r} in any grid of {root}")])


def show_logs(*, root: Path, job: str, follow: bool, attempt: int | None) -> int:
    state, grid = find_job(root, job)
    attempts = state.jobs[job].attempts
    if not attempts:
        raise InvalidInput([Problem("job", f"{job} has not started yet")])
    if attempt is not None and not 1 <= attempt <= len(attempts):
        raise InvalidInput([Problem("--attempt", f"{job} has attempts 1..{len(attempts)}, not {attempt}")])
    number = attempt or len(attempts)
    path = Path(attempts[number - 1].log)
    with open(path, "rb") as log:
        sys.stdout.buffer.write(log.read())
        while follow:
            sys.stdout.flush()
            current = load_state(root, grid).jobs.get(job)
            if current is None or current.phase.terminal or len(current.attempts) > number:
                sys.stdout.buffer.write(log.read())
                break
            time.sleep(FOLLOW_POLL_SECONDS)
            sys.stdout.buffer.write(log.read())
    sys.stdout.flush()
    return 0


def show_report(*, root: Path, grid: str, console: Console) -> int:
    name = grid_name(grid)
    folder = root / "reports" / name
    decision = folder / "decision.json"
    if not decision.exists():
        raise InvalidInput([Problem("grid", f"no decision report for {name!r} in {folder}")])
    summary = json.loads(decision.read_text())
    console.print(f"decision: [bold]{summary.get('decision', '?')}[/]", highlight=False)
    for line in summary.get("summary", []) if isinstance(summary.get("summary"), list) else [summary.get("summary", "")]:
        console.print(line, highlight=False, soft_wrap=True)
    console.print(f"report: {folder / 'decision.md'}", highlight=False)
    return 0
