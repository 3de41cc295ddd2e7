"""What a person watches while a grid runs: a live table on a terminal, one line per change elsewhere."""

from __future__ import annotations

import time
from collections.abc import Callable
from types import TracebackType
from typing import TextIO

from rich.console import Console
from rich.live import Live
from rich.table import Table

import contract
from controller.core.reconciling import JobPhase
from controller.core.state import GridState, JobRecord

PHASE_STYLE = {JobPhase.PENDING: "dim", JobPhase.RUNNING: "yellow", JobPhase.SUCCEEDED: "green", JobPhase.FAILED: "red"}


def duration(job: JobRecord, now: float) -> str:
    if job.started is None:
        return ""
    seconds = (job.finished or now) - job.started
    return f"{int(seconds // 60)}:{int(seconds % 60):02d}"


def objective_cell(job: JobRecord, metric: str) -> str:
    value = job.metrics.get(metric)
    return f"{value:.4f}" if value is not None else ""


def status_table(state: GridState, *, points: list[str], metric: str = contract.METRIC_MAP50_95,
                 now: float | None = None) -> Table:
    now = time.time() if now is None else now
    table = Table(title=f"grid {state.grid} — {state.phase}" + (f": {state.message}" if state.message else ""),
                  title_justify="left")
    for column in ("job", "phase", "attempts", "duration", metric):
        table.add_column(column, justify="right" if column in ("attempts", "duration", metric) else "left")
    for name in points:
        job = state.jobs.get(name)
        if job is None:
            table.add_row(name, "[dim]Waiting[/]", "", "", "")
            continue
        reason = job.attempts[-1].reason if job.phase is JobPhase.FAILED and job.attempts else ""
        phase = f"[{PHASE_STYLE[job.phase]}]{job.phase.value}[/]" + (f" ({reason})" if reason else "")
        table.add_row(name, phase, str(len(job.attempts)), duration(job, now), objective_cell(job, metric))
    return table


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
