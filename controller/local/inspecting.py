"""The verbs that look at grids: `status`, `logs`, `report`; the decision line of a grid's report.

A missing grid, Job or report is NotFound (exit 1, as kubectl's for a missing object); a bad value
(an attempt that does not exist) is InvalidInput (exit 2)."""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console

import contract
from contract.decision import DECISION_JSON, DECISION_MD, Decision, read_decision
from controller.core.summary import decision_line, decision_lines
from controller.errors import InvalidInput, Problem
from controller.local import relocating
from controller.local.state import GridState, grid_dir, known_grids, load_state, safe_child
from controller.output import grid_document, job_name, print_grids
from controller.submitting import NotFound, grid_name

FOLLOW_POLL_SECONDS = 0.5
CURRENT_FILE = "current.json"  # under .tp4/grids/<grid>/: the points of the grid's latest submission


def record_current(root: Path, state: GridState, *, points: list[str]) -> None:
    """Write the points the running submission wants (`points`: the grid's points in order, a search's as it
    adds them) to .tp4/grids/<grid>/current.json, {"submission": parent run id, "points": [...]}, so that
    `status` can tell them from Jobs left by an earlier submission of another spec. Atomic; nothing is written
    before the submission has a parent run, nor when the file already says the same."""
    if not state.submission:
        return
    data = {"submission": state.submission, "points": list(points)}
    path = grid_dir(root, state.grid) / CURRENT_FILE
    try:
        if json.loads(path.read_text(encoding="utf-8")) == data:
            return
    except (OSError, ValueError):
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp", encoding="utf-8") as out:
        json.dump(data, out)
    os.replace(out.name, path)


def current_points(root: Path, state: GridState) -> list[str] | None:
    """The points of the grid's latest submission (record_current), None when it is not known (a grid run by
    an older tp4: every Job then counts as current)."""
    try:
        data = json.loads((grid_dir(root, state.grid) / CURRENT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("submission") != state.submission:
        return None
    points = data.get("points")
    return [str(p) for p in points] if isinstance(points, list) else None


def shown_jobs(root: Path, state: GridState, *, show_obsolete: bool) -> tuple[list[str], frozenset[str], int]:
    """(the rows of `status`, in order: points first, then the finalizer; the obsolete ones among them; how many
    obsolete Jobs were hidden). A Job is obsolete when it is no point of the latest submission and was not
    created by it (a point of an earlier spec, the finalizer of an earlier submission); a point of the latest
    submission not created yet is a row too (Waiting)."""
    wanted = current_points(root, state)
    names = sorted(state.jobs, key=lambda name: (state.jobs[name].role != contract.ROLE_TRAIN, name))
    if wanted is None:
        return names, frozenset(), 0
    keep = set(wanted)
    obsolete = frozenset(n for n in names if n not in keep and state.jobs[n].submission != state.submission)
    waiting = [p for p in wanted if p not in state.jobs]
    rows = [n for n in names if show_obsolete or n not in obsolete]
    finalizers = [n for n in rows if state.jobs[n].role != contract.ROLE_TRAIN]
    rows = [n for n in rows if n not in finalizers] + waiting + finalizers
    return rows, obsolete, 0 if show_obsolete else len(obsolete)


def known_grid(root: Path, grid: str) -> str:
    """The name of grid `grid` (a name or a grid file) of this project; NotFound (exit 1) when it has none."""
    name = grid_name(grid)
    known = known_grids(root)
    if name not in known:
        raise NotFound(f"no grid named {name!r} in {root} (known: {', '.join(known) or 'none'})")
    return name


def show_status(*, root: Path, grid: str | None, console: Console, output: str | None = None,
                show_obsolete: bool = False) -> int:
    """The status of one grid (or of every grid of the project) in `output` format (controller.output)."""
    names = [known_grid(root, grid)] if grid else known_grids(root)
    if not names and output in (None, "wide"):
        console.print("no grid has been submitted in this project yet")
        return 0
    documents = []
    for name in names:
        state = load_state(root, name)
        rows, obsolete, hidden = shown_jobs(root, state, show_obsolete=show_obsolete)
        documents.append((state, grid_document(state, points=rows, obsolete=obsolete, hidden=hidden)))
    print_grids(console, documents, output=output, single=grid is not None)
    return 0


def find_job(root: Path, job: str) -> tuple[GridState, str]:
    """The state of the grid that has Job `job` (a name, or kubectl's job/NAME), and the grid's name;
    NotFound (exit 1) when no grid of the project has it."""
    for name in known_grids(root):
        state = load_state(root, name)
        if job in state.jobs:
            return state, name
    raise NotFound(f"no Job named {job!r} in any grid of {root}")


_LOG_NAME = r"\.(?P<submission>[0-9A-Za-z]{1,12})\.(?P<attempt>[0-9]+)(?:-[0-9]+)?\.log"


def all_attempts(root: Path, grid: str, state: GridState, job: str) -> list[tuple[Path, str]]:
    """Every attempt of Job `job` whose log is here, oldest first, as (log file, submission id prefix): those of
    earlier submissions (their files under .tp4/grids/<grid>/logs, by modification time), then the latest
    submission's, in the order the state records them."""
    logs = grid_dir(root, grid) / "logs"
    current = [relocating.local_log(root, a.log, logs_dir=logs) for a in state.jobs[job].attempts]
    pattern = re.compile(re.escape(job) + _LOG_NAME)
    earlier: list[tuple[float, Path, str]] = []
    if logs.is_dir():
        seen = {p.name for p in current}
        for path in logs.iterdir():
            match = pattern.fullmatch(path.name)
            if match and path.name not in seen:
                earlier.append((path.stat().st_mtime, path, match["submission"]))
    earlier.sort(key=lambda found: (found[0], found[1].name))
    submission = state.jobs[job].submission[:12]
    return [(path, sub) for _, path, sub in earlier] + [(path, submission) for path in current]


def show_logs(*, root: Path, job: str, follow: bool, attempt: int | None) -> int:
    """A Job's log on stdout: its latest attempt's, or attempt N (1-based, counted over every submission of the
    grid whose log is still here), followed with `follow` until the Job ends. `job`: NAME or job/NAME."""
    job = job_name(job)
    state, grid = find_job(root, job)
    attempts = all_attempts(root, grid, state, job)
    if not attempts:
        raise NotFound(f"{job} has not started yet: no attempt, no log")
    if attempt is not None and not 1 <= attempt <= len(attempts):
        raise InvalidInput([Problem("--attempt", f"{job} has attempts 1..{len(attempts)}, not {attempt}")])
    number = attempt or len(attempts)
    path = attempts[number - 1][0]
    latest = number == len(attempts) and bool(state.jobs[job].attempts)
    with open(path, "rb") as log:
        sys.stdout.buffer.write(log.read())
        while follow and latest:
            sys.stdout.flush()
            current = load_state(root, grid).jobs.get(job)
            if current is None or current.phase.terminal or len(current.attempts) > len(state.jobs[job].attempts):
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
        raise NotFound(f"no decision report for {grid!r} in {root / 'reports'} nor on a parent run at "
                       f"{tracking.redact(uri)}")
    run_id, decision = found
    return decision, f"runs:/{run_id}/{contract.ARTIFACT_REPORT_DIR}/{DECISION_MD} ({tracking.redact(uri)})"
