"""Which process is which, across controller restarts: a pid plus its start time.

A pid alone can be reused by an unrelated process once the first one ends; a
pid with the process's start time (psutil's `create_time`, seconds since the
epoch) names one process for ever. The local executor records both for every
attempt it starts and for itself (on the grid's parent run), so a later start
can tell a live attempt (stop it, never start a duplicate) from a gone one
(close its MLflow run).
"""

from __future__ import annotations

import os
import signal
import socket
import time
from dataclasses import dataclass

import psutil

# create_time is rounded differently by different reads (/proc ticks): equal within this.
START_TOLERANCE_S = 1.0


@dataclass(frozen=True)
class ProcessId:
    host: str
    pid: int
    started: float

    def tag(self) -> str:
        """'host pid started', the form kept on an MLflow run."""
        return f"{self.host} {self.pid} {self.started:.3f}"

    @classmethod
    def from_tag(cls, value: str) -> ProcessId | None:
        parts = value.split()
        if len(parts) != 3:
            return None
        try:
            return cls(host=parts[0], pid=int(parts[1]), started=float(parts[2]))
        except ValueError:
            return None


def this_host() -> str:
    return socket.gethostname()


def identify(pid: int) -> ProcessId | None:
    """The identity of live process `pid` on this host, None when there is none."""
    try:
        return ProcessId(host=this_host(), pid=pid, started=psutil.Process(pid).create_time())
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None


def myself() -> ProcessId:
    me = identify(os.getpid())
    assert me is not None
    return me


def alive(pid: int | None, started: float | None) -> bool:
    """True when process `pid`, started at `started`, still runs on this host (not a zombie)."""
    if pid is None or started is None:
        return False
    try:
        process = psutil.Process(pid)
        if abs(process.create_time() - started) > START_TOLERANCE_S:
            return False  # the pid was reused
        return process.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def is_on_this_host(process: ProcessId) -> bool:
    return process.host == this_host()


def stop_group(pid: int, started: float, *, grace_s: float) -> bool:
    """Stop a process that is not our child (an attempt of a controller that died) and its
    process group: SIGTERM, then SIGKILL after `grace_s`. True when it was running."""
    if not alive(pid, started):
        return False
    _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if not alive(pid, started):
            return True
        time.sleep(0.2)
    _signal(pid, signal.SIGKILL)
    try:
        psutil.Process(pid).wait(timeout=grace_s)
    except (psutil.NoSuchProcess, psutil.TimeoutExpired):
        pass
    return True


def _signal(pid: int, sig: int) -> None:
    """The attempt's process group (it leads its own session), else the process itself."""
    try:
        os.killpg(pid, sig) if os.getpgid(pid) == pid else os.kill(pid, sig)
    except ProcessLookupError:
        pass
