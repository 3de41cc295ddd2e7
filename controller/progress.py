"""What a person watches while a grid runs: a live table on a terminal, one line per change elsewhere."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, TextIO

from rich.console import Console
from rich.live import Live
from rich.table import Table

import contract
from controller.core.reconciling import JobPhase
from controller.core.state import GridState, JobRecord

PHASE_STYLE: dict[str, str] = {JobPhase.PENDING: "dim", JobPhase.RUNNING: "yellow", JobPhase.SUCCEEDED: "green",
                               JobPhase.FAILED: "red"}


def duration(job: JobRecord, now: float) -> str:
    if job.started is None:
        return ""
    seconds = (job.finished or now) - job.started
    return f"{int(seconds // 60)}:{int(seconds % 60):02d}"


def objective_cell(job: JobRecord, metric: str) -> str:
    value = job.metrics.get(metric)
    return f"{value:.4f}" if value is not None else ""


STATUS_COLUMNS = ("job", "phase", "attempts", "duration")  # then the objective's column, named by its metric
WIDE_COLUMNS = ("role", "submission", "run", "started")  # `-o wide` adds these


def status_rows(state: GridState, *, points: list[str], metric: str = contract.METRIC_MAP50_95,
                now: float | None = None, obsolete: frozenset[str] = frozenset()) -> list[dict[str, Any]]:
    """One dict per row of the status table, in `points` order: every column the table shows (STATUS_COLUMNS,
    then `metric`: its value or None; `phase` without the reason), plus `reason` (why a failed Job failed),
    `duration_s` (seconds, None before it started), `current` (False: a point of an earlier submission,
    no longer in the grid), and WIDE_COLUMNS (`submission` and `run` are MLflow run ids, `started` ISO 8601
    UTC). What `-o json|yaml` prints and what the tables are drawn from."""
    now = time.time() if now is None else now
    rows: list[dict[str, Any]] = []
    for name in points:
        job = state.jobs.get(name)
        if job is None:
            rows.append({"job": name, "phase": "Waiting", "attempts": 0, "duration": "", metric: None,
                         "reason": "", "duration_s": None, "current": True, "role": "", "submission": "",
                         "run": None, "started": None})
            continue
        reason = job.attempts[-1].reason if job.phase is JobPhase.FAILED and job.attempts else ""
        started = job.started
        rows.append({"job": name, "phase": job.phase.value, "attempts": len(job.attempts),
                     "duration": duration(job, now), metric: job.metrics.get(metric), "reason": reason,
                     "duration_s": None if started is None else round((job.finished or now) - started, 3),
                     "current": name not in obsolete, "role": job.role, "submission": job.submission,
                     "run": job.run_id,
                     "started": None if started is None else datetime.fromtimestamp(started, UTC).isoformat()})
    return rows


def _cells(row: dict[str, Any], metric: str, *, wide: bool, styled: bool) -> list[str]:
    phase = row["phase"]
    if styled:
        phase = f"[{PHASE_STYLE.get(phase, 'dim')}]{phase}[/]"  # a StrEnum key matches its string
    phase += f" ({row['reason']})" if row["reason"] else ""
    phase += " (obsolete)" if not row["current"] else ""
    value = row[metric]
    cells = [row["job"], phase, "" if row["phase"] == "Waiting" else str(row["attempts"]), row["duration"],
             f"{value:.4f}" if value is not None else ""]
    if wide:
        cells += [row["role"], row["submission"], row["run"] or "", row["started"] or ""]
    return cells


def _title(state: GridState, hidden: int) -> str:
    title = f"grid {state.grid} — {state.phase}" + (f": {state.message}" if state.message else "")
    if hidden:
        title += f" ({hidden} obsolete Jobs of an earlier submission hidden: --show-obsolete)"
    return title


def status_table(state: GridState, *, points: list[str], metric: str = contract.METRIC_MAP50_95,
                 now: float | None = None, obsolete: frozenset[str] = frozenset(), hidden: int = 0,
                 wide: bool = False) -> Table:
    """The status table for a terminal (rich). A name is never cut: a cell too long for the terminal folds
    onto the next line. `obsolete`: Jobs marked so; `hidden`: how many the title says were left out."""
    table = Table(title=_title(state, hidden), title_justify="left")
    columns = (*STATUS_COLUMNS, metric, *(WIDE_COLUMNS if wide else ()))
    for column in columns:
        table.add_column(column, justify="right" if column in ("attempts", "duration", metric) else "left",
                         overflow="fold")
    for row in status_rows(state, points=points, metric=metric, now=now, obsolete=obsolete):
        table.add_row(*_cells(row, metric, wide=wide, styled=True))
    return table


def plain_table(header: list[str], rows: list[list[str]]) -> list[str]:
    """kubectl's layout for a pipe or a file: left-aligned columns three spaces apart, no box drawing, no
    colour, every cell whole however wide the line gets (a name is never cut)."""
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]
    return ["   ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
            for line in (header, *rows)]


def print_status(console: Console, state: GridState, *, points: list[str], metric: str = contract.METRIC_MAP50_95,
                 obsolete: frozenset[str] = frozenset(), hidden: int = 0, wide: bool = False) -> None:
    """The status table: drawn by rich on a terminal, plain_table's layout anywhere else (a pipe, a file)."""
    if console.is_terminal:
        console.print(status_table(state, points=points, metric=metric, obsolete=obsolete, hidden=hidden,
                                   wide=wide))
        return
    header = [*STATUS_COLUMNS, metric, *(WIDE_COLUMNS if wide else ())]
    rows = [_cells(row, metric, wide=wide, styled=False)
            for row in status_rows(state, points=points, metric=metric, obsolete=obsolete)]
    for line in [_title(state, hidden), *plain_table(header, rows)]:
        console.print(line, markup=False, highlight=False, soft_wrap=True)


class ProgressView:
    """A live table when stdout is a terminal; otherwise a line per phase change."""

    def __init__(self, *, points: list[str], metric: str, console: Console | None = None,
                 stream: TextIO | None = None, clock: Callable[[], float] = time.time) -> None:
        self.console = console or Console(file=stream)
        self.points = points
        self.metric = metric
        self.clock = clock
        self.live: Live | None = None
        self.seen: dict[str, str] = {}

    def __enter__(self) -> ProgressView:
        if self.console.is_terminal:
            self.live = Live(console=self.console, refresh_per_second=2, transient=False)
            self.live.__enter__()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if self.live is not None:
            self.live.__exit__(exc_type, exc, traceback)

    def update(self, state: GridState) -> None:
        if self.live is not None:
            self.live.update(status_table(state, points=self.points, metric=self.metric, now=self.clock()))
            return
        for name in [*self.points, *sorted(set(state.jobs) - set(self.points))]:
            job = state.jobs.get(name)
            if job is None:
                continue
            key = f"{job.phase.value}/{len(job.attempts)}"
            if self.seen.get(name) != key:
                self.seen[name] = key
                extra = f" {self.metric}={job.metrics[self.metric]:.4f}" if self.metric in job.metrics else ""
                self.console.print(f"{name}: {job.phase.value} (attempt {len(job.attempts)}){extra}",
                                   highlight=False, soft_wrap=True)
