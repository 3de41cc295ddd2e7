"""Runs always end: what a local controller does at start about what an earlier one left behind.

1. `GridLock`: one controller per grid at a time (a `filelock` lock on
   .tp4/grids/<grid>/lock: flock on POSIX, LockFileEx on Windows, released by
   the kernel when its holder dies, even by kill -9); a second `submit-grid` of
   a running grid is bad input.
2. `stop_orphans`: attempts that a controller which died left running (their
   pid and start time are in state.json) are stopped, never run twice at once;
   their Jobs count as failed, so the reconciler starts them again.
3. `sweep`: every RUNNING MLflow run (parent or train) of this project's grids
   whose process is gone (pid gone or reused) is ended FAILED with the reason
   in the contract.TAG_CLOSED_BY tag. Runs of another host (a shared tracking
   server) are left alone.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout
from mlflow.tracking import MlflowClient

import contract
from contract.errors import InvalidInput, Problem
from controller import tracking
from controller.core.reconciling import JobPhase
from controller.local import processes
from controller.local.state import GridState, grid_dir, known_grids, load_state

STOP_GRACE_SECONDS = 15.0
PARENT_RUN_TAG = "mlflow.parentRunId"


class GridLock:
    """Held while a controller runs a grid (context manager).

    The lock file also names its holder: byte 0 is the byte Windows locks (LockFileEx) and no other
    process may read, so it holds a newline and the holder's pid follows, readable from anywhere."""

    def __init__(self, root: Path, grid: str) -> None:
        self.path = grid_dir(root, grid) / "lock"
        self.grid = grid
        self.lock: FileLock | None = None

    def __enter__(self) -> GridLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = _file_lock(self.path, on_acquired=_write_holder)
        try:
            lock.acquire(blocking=False)
        except Timeout:
            holder = _read_holder(self.path) or "another process"
            raise InvalidInput([Problem("grid", f"grid {self.grid!r} is being run by another controller "
                                        f"(pid {holder}) in this project: wait for it to end, or stop it "
                                        f"({processes.stop_hint(holder)}) and submit again")]) from None
        self.lock = lock
        return self

    def __exit__(self, *exc: object) -> None:
        if self.lock is not None:
            self.lock.release()
            self.lock = None


def _file_lock(path: Path, *, on_acquired: Callable[[int], None] | None = None) -> FileLock:
    """An OS lock on `path` (flock, LockFileEx) that the kernel drops with its holder, never a soft
    lock (a marker file that a kill -9 would leave behind); the file stays on release."""
    return FileLock(path, fallback_to_soft=False, preserve_lock_file=True, on_acquired=on_acquired)


def _write_holder(fd: int) -> None:
    data = f"\n{os.getpid()}".encode()
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, data)
    os.ftruncate(fd, len(data))


def _read_holder(path: Path) -> str:
    """The holder's pid as written in the lock file ('' when unreadable). Windows refuses a read of
    byte 0 while it is locked: then from byte 1 on."""
    try:
        with open(path, "rb") as handle:
            try:
                data = handle.read()
            except OSError:
                handle.seek(1)
                data = handle.read()
    except OSError:
        return ""
    return data.decode(errors="replace").strip()


def is_locked(root: Path, grid: str) -> bool:
    """True when a live controller holds grid `grid`'s lock (this process's own GridLock included)."""
    path = grid_dir(root, grid) / "lock"
    if not path.exists():
        return False
    lock = _file_lock(path)
    try:
        lock.acquire(blocking=False)
    except Timeout:
        return True
    lock.release()
    return False


@dataclass
class Orphan:
    job: str
    attempt: int
    pid: int | None
    stopped: bool  # True: it was still running and we stopped it; False: already gone


def stop_orphans(state: GridState, *, grace_s: float = STOP_GRACE_SECONDS) -> list[Orphan]:
    """Attempts that are not terminal in `state` although no controller runs the grid (the caller
    holds its lock): stop the live ones (SIGTERM to their process group, then SIGKILL), and mark
    every such Job FAILED ("Orphaned" when it was stopped, "Lost" when its process was gone)."""
    found = []
    for job in state.jobs.values():
        if job.phase.terminal:
            continue
        attempt = job.attempts[-1] if job.attempts else None
        stopped = False
        if attempt is not None and attempt.finished is None:
            if attempt.pid is not None and attempt.process_started is not None:
                stopped = processes.stop_group(attempt.pid, attempt.process_started, grace_s=grace_s)
            attempt.finished, attempt.reason = time.time(), "Orphaned" if stopped else "Lost"
            found.append(Orphan(job=job.name, attempt=attempt.number, pid=attempt.pid, stopped=stopped))
        job.phase = JobPhase.FAILED
    return found


@dataclass
class Closed:
    run_id: str
    grid: str
    role: str
    point: str
    reason: str


@dataclass
class _Parents:
    """What is known of parent runs while sweeping: owner process, whether ours."""

    mlflow: MlflowClient
    cache: dict[str, dict[str, str]] = field(default_factory=dict)

    def tags(self, run_id: str) -> dict[str, str] | None:
        if run_id not in self.cache:
            try:
                self.cache[run_id] = dict(self.mlflow.get_run(run_id).data.tags)
            except Exception:
                self.cache[run_id] = {}
        return self.cache[run_id] or None


def _parent_gone(run: Any, state: GridState, *, root: Path, keep: set[str]) -> str | None:
    """Why parent run `run` of this project is gone (None: alive, or not ours to judge)."""
    if run.info.run_id in keep:
        return None
    owner = processes.ProcessId.from_tag(run.data.tags.get(tracking.TAG_PROCESS, ""))
    if owner is not None:
        if not processes.is_on_this_host(owner):
            return None
        if processes.alive(owner.pid, owner.started):
            return None
        return f"controller process {owner.pid} on {owner.host} is gone"
    if run.info.run_id == state.submission and not is_locked(root, state.grid):
        return "no controller runs this grid (no process recorded)"
    return None


def _train_gone(run: Any, state: GridState, parents: _Parents, *, root: Path, keep: set[str]) -> str | None:
    parent_id = run.data.tags.get(PARENT_RUN_TAG, "")
    parent = parents.tags(parent_id) if parent_id else None
    owner = processes.ProcessId.from_tag((parent or {}).get(tracking.TAG_PROCESS, ""))
    if owner is not None and not processes.is_on_this_host(owner):
        return None  # a run of another machine on a shared tracking server
    if owner is None and parent_id != state.submission:
        return None  # not a run this project's local executor started
    point = run.data.tags.get(contract.TAG_POINT, "")
    number = run.data.tags.get(contract.TAG_ATTEMPT, "")
    job = state.jobs.get(point)
    if job is not None and job.submission == parent_id:
        for attempt in job.attempts:
            if str(attempt.number) == number:
                if attempt.finished is None and processes.alive(attempt.pid, attempt.process_started):
                    return None
                return f"job process {attempt.pid} ({point}, attempt {number}) is gone"
        if parent_id in keep or (owner is not None and processes.alive(owner.pid, owner.started)):
            return None  # its controller lives and may not have recorded the attempt yet
    return f"job process of {point or run.info.run_id} (attempt {number or '?'}) is gone"


def sweep(mlflow: MlflowClient, root: Path, *, keep: frozenset[str] = frozenset()) -> list[Closed]:
    """End FAILED every RUNNING run of this project's grids whose process is gone; `keep`: run ids
    the caller owns. Reads the state of every grid; a grid whose experiment is deleted is skipped."""
    closed: list[Closed] = []
    parents = _Parents(mlflow)
    for grid in known_grids(root):
        state = load_state(root, grid)
        if not state.experiment:
            continue
        experiment = mlflow.get_experiment_by_name(state.experiment)
        if experiment is None or experiment.lifecycle_stage != "active":
            continue
        for run in tracking.running_runs(mlflow, experiment_id=experiment.experiment_id, grid=grid):
            role = run.data.tags.get(contract.TAG_ROLE, "")
            if role == contract.ROLE_PARENT:
                reason = _parent_gone(run, state, root=root, keep=set(keep))
            elif role == contract.ROLE_TRAIN:
                reason = _train_gone(run, state, parents, root=root, keep=set(keep))
            else:
                reason = None
            if reason and tracking.end_run(mlflow, run.info.run_id, status="FAILED", reason=reason):
                closed.append(Closed(run_id=run.info.run_id, grid=grid, role=role,
                                     point=run.data.tags.get(contract.TAG_POINT, ""), reason=reason))
    return closed
