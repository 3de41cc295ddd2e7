"""Which process is which, across controller restarts: a pid plus its start time.

A pid alone can be reused by an unrelated process once the first one ends; a
pid with the process's start time (psutil's `create_time`, seconds since the
epoch) names one process for ever. The local executor records both for every
attempt it starts and for itself (on the grid's parent run), so a later start
can tell a live attempt (stop it, never start a duplicate) from a gone one
(close its MLflow run).

It is also the one place that knows the operating system's process calls
(`GROUPS`, chosen once at import): an attempt runs as the leader of a process
group of its own (a training spawns dataloader workers: the whole group must
stop), Ctrl-C in the controller's terminal reaches the controller only, and a
stop is a polite request first, then a kill.

- POSIX: `start_new_session=True`; SIGTERM, then SIGKILL, to the process group
  (`os.killpg`).
- Windows: `CREATE_NEW_PROCESS_GROUP`; CTRL_BREAK_EVENT to the group (Python
  sees SIGBREAK: jobs.common.termination handles it as SIGTERM), then the
  process tree killed through psutil (`stop_tree`). A process that shares no
  console with the controller gets no CTRL_BREAK_EVENT: its tree is stopped
  at once.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

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
    process group: SIGTERM (Windows: CTRL_BREAK_EVENT), then after `grace_s` SIGKILL (Windows:
    its process tree). True when it was running."""
    if not alive(pid, started):
        return False
    terminate_group(pid)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if not alive(pid, started):
            return True
        time.sleep(0.2)
    kill_group(pid)
    try:
        psutil.Process(pid).wait(timeout=grace_s)
    except (psutil.NoSuchProcess, psutil.TimeoutExpired):
        pass
    return True


def stop_tree(pid: int, *, grace_s: float) -> list[int]:
    """Stop process `pid` and every process below it (psutil, any OS): terminate them all (on
    Windows psutil's terminate is TerminateProcess, a kill), wait up to `grace_s`, kill what is
    left. The tree is read once, first, so children whose parent ends meanwhile are still reached.
    Returns the pids it found (empty: `pid` was gone)."""
    try:
        parent = psutil.Process(pid)
        tree = [parent, *parent.children(recursive=True)]
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return []
    for process in tree:
        _quietly(process.terminate)
    for process in _wait_gone(tree, timeout_s=grace_s):
        _quietly(process.kill)
    _wait_gone(tree, timeout_s=STOP_WAIT_S)
    return [process.pid for process in tree]


STOP_WAIT_S = 5.0  # a killed process ends within this


def _wait_gone(tree: list[psutil.Process], *, timeout_s: float) -> list[psutil.Process]:
    """Wait until every process of `tree` has ended (a zombie has: it only waits for its parent to
    read its exit status); those still running after `timeout_s`. (psutil.wait_procs would wait on
    a zombie, and reap a child of ours before its Popen could read its exit code.)"""
    deadline = time.monotonic() + timeout_s
    while True:
        left = [process for process in tree if _running(process)]
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.05)


def _running(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True


def _quietly(call: Callable[[], None]) -> None:
    """A psutil signal call, for a process that may have ended meanwhile (or that we may not
    signal: nothing more can be done about it here)."""
    try:
        call()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        pass


class _PosixGroups:
    """A session (hence a process group) per attempt; signals to the group."""

    def popen_options(self) -> dict[str, Any]:
        return {"start_new_session": True}

    def terminate(self, pid: int) -> None:
        self._signal(pid, signal.SIGTERM)

    def kill(self, pid: int) -> None:
        self._signal(pid, signal.SIGKILL)

    def stop_hint(self, pid: str) -> str:
        return f"kill -TERM {pid}"

    @staticmethod
    def _signal(pid: int, sig: int) -> None:
        """The attempt's process group (it leads its own session), else the process itself."""
        try:
            os.killpg(pid, sig) if os.getpgid(pid) == pid else os.kill(pid, sig)
        except ProcessLookupError:
            pass


# Their values on Windows (subprocess and signal define them there only).
CREATE_NEW_PROCESS_GROUP: int = getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0x00000200)
CTRL_BREAK_EVENT: int = getattr(signal, "CTRL_BREAK_EVENT", 1)


class _WindowsGroups:
    """A new process group per attempt (Ctrl-C in the controller's console does not reach it);
    CTRL_BREAK_EVENT to the group, then the tree killed with psutil. Meant for Windows only, but
    `kill` is psutil alone (its test runs on Linux)."""

    def popen_options(self) -> dict[str, Any]:
        return {"creationflags": CREATE_NEW_PROCESS_GROUP}

    def terminate(self, pid: int) -> None:
        try:
            os.kill(pid, CTRL_BREAK_EVENT)  # GenerateConsoleCtrlEvent to the group that pid leads
        except OSError:  # it shares no console with us (or is gone): no polite way, stop its tree now
            stop_tree(pid, grace_s=0.0)

    def kill(self, pid: int) -> None:
        stop_tree(pid, grace_s=0.0)

    def stop_hint(self, pid: str) -> str:
        return f"Ctrl-C in its console, or Stop-Process -Id {pid}"


GROUPS: _PosixGroups | _WindowsGroups = _WindowsGroups() if os.name == "nt" else _PosixGroups()

# What stops a controller as SIGTERM does: SIGHUP (a closed terminal) where it exists, SIGBREAK
# (Ctrl-Break in its console) where it exists (Windows). SIGINT (Ctrl-C) is KeyboardInterrupt.
STOP_SIGNALS: tuple[signal.Signals, ...] = tuple(
    sig for sig in (signal.SIGTERM, getattr(signal, "SIGHUP", None), getattr(signal, "SIGBREAK", None))
    if sig is not None)


def popen_options() -> dict[str, Any]:
    """subprocess.Popen keyword arguments that start a process as the leader of a new process group."""
    return GROUPS.popen_options()


def terminate_group(pid: int) -> None:
    """Ask the process group that `pid` leads to stop (SIGTERM; Windows: CTRL_BREAK_EVENT). Gone: nothing."""
    GROUPS.terminate(pid)


def kill_group(pid: int) -> None:
    """Kill the process group that `pid` leads (SIGKILL; Windows: its process tree). Gone: nothing."""
    GROUPS.kill(pid)


def stop_hint(pid: str) -> str:
    """How a user stops controller `pid` from a shell of this OS."""
    return GROUPS.stop_hint(pid)
