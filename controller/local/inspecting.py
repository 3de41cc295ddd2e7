"""The verbs that look at grids: `status`, `logs`, `report`; the decision line of a grid's report."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from rich.console import Console

import contract
from contract.decision import DECISION_JSON, DECISION_MD, Decision, read_decision
from controller.core.summary import decision_line, decision_lines
from controller.errors import InvalidInput, Problem
from controller.local import relocating
from controller.local.state import GridState, grid_dir, known_grids, load_state, safe_child
from controller.progress import status_table
from controller.submitting import grid_name

FOLLOW_POLL_SECONDS = 0.5


def _points(state: GridState) -> list[str]:
    return sorted(state.jobs, key=lambda name: (state.jobs[name].role != "train", name))


def show_status(*, root: Path, grid: str | None, console: Console) -> int:
    names = [grid_name(grid)] if grid else known_grids(root)
    if not names:
        console.print("no grid has been submitted in this project yet")
        return 0
    for name in names:
        if name not in known_grids(root):
            known = ", ".join(known_grids(root)) or "none"
            raise InvalidInput([Problem("grid", f"no grid named {name!r} in {root} (known: {known})")])
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
    path = relocating.local_log(root, attempts[number - 1].log, logs_dir=grid_dir(root, grid) / "logs")
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


def report_dir(root: Path, grid: str) -> Path:
    """reports/<grid>/ under the project folder, where the finalizer writes decision.md and decision.json."""
    return safe_child(root / "reports", grid)


def shown_path(path: Path) -> str:
    """`path` as the user reaches it from where the command runs: relative when below it, else absolute."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path.resolve())


def local_decision_line(root: Path, grid: str) -> str | None:
    """The one-line decision of reports/<grid>/decision.json, None when the grid has no report here."""
    folder = report_dir(root, grid)
    if not (folder / DECISION_JSON).is_file():
        return None
    return decision_line(read_decision(folder / DECISION_JSON), report=shown_path(folder / DECISION_MD))


def show_report(*, root: Path, grid: str, console: Console) -> int:
    """Print the decision summary from reports/<grid>/, else from the grid's latest parent run in MLflow."""
    name = grid_name(grid)
    local = report_dir(root, name) / DECISION_JSON
    if local.exists():
        decision, where = read_decision(local), shown_path(local.with_name(DECISION_MD))
    else:
        decision, where = _report_from_mlflow(root, name)
    for line in decision_lines(decision):
        console.print(line, highlight=False, soft_wrap=True)
    console.print(f"report: {where}", highlight=False, soft_wrap=True)
    return 0


def _report_from_mlflow(root: Path, grid: str) -> tuple[Decision, str]:
    from controller import tracking

    uri = tracking.tracking_uri(root)
    from controller.local.executor import relocate_store

    for note in relocate_store(root):
        print(note, file=sys.stderr)
    found = tracking.latest_report(tracking.client(uri), grid=grid)
    if found is None:
        raise InvalidInput([Problem("grid", f"no decision report for {grid!r} in {root / 'reports'} "
                                    f"nor on a parent run at {uri}")])
    run_id, decision = found
    return decision, f"runs:/{run_id}/{contract.ARTIFACT_REPORT_DIR}/{DECISION_MD} ({tracking.redact(uri)})"
