"""Child processes of the stack: free ports, readiness, orderly stops."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from devstack.private import Redactor, pump

STOP_GRACE_S = 20.0
LOG_DRAIN_S = 5.0
_PUMPS: dict[int, threading.Thread] = {}  # pid -> the thread writing that child's log


class StartFailed(RuntimeError):
    """A server did not come up; the message holds the end of its log."""


def free_port(*, host: str = "127.0.0.1") -> int:
    """A port nothing listens on now (the OS picks it: never a fixed, well-known one)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def log_tail(path: Path, *, chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else "(no log)"


def start_logged(argv: list[Any], *, log: Path, redactor: Redactor, **options: Any) -> subprocess.Popen[bytes]:
    """A child in its own session whose stdout and stderr reach `log` through `redactor` (never directly:
    a server may print a connection string); `stop_process` drains the log."""
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                               start_new_session=True, **options)
    assert process.stdout is not None
    _PUMPS[process.pid] = pump(stream=process.stdout, log=log, redactor=redactor)
    return process


def wait_until(*, ready: Callable[[], bool], process: subprocess.Popen[bytes], name: str, log: Path,
               timeout_s: float) -> None:
    """Poll `ready` until it is true; StartFailed if the process exits or time runs out."""
    deadline = time.monotonic() + timeout_s
    while not ready():
        if process.poll() is not None:
            raise StartFailed(f"{name} exited with code {process.returncode} while starting:\n{log_tail(log)}")
        if time.monotonic() > deadline:
            raise StartFailed(f"{name} not ready after {timeout_s:g} s:\n{log_tail(log)}")
        time.sleep(0.2)


def stop_process(process: subprocess.Popen[bytes] | None, *, sig: int = signal.SIGTERM) -> None:
    """Signal the process group (the process and its workers), then SIGKILL after a grace period."""
    if process is None:
        return
    if process.poll() is None:
        _signal_group(pid=process.pid, sig=sig)
        try:
            process.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            _signal_group(pid=process.pid, sig=signal.SIGKILL)
            process.wait()
    if thread := _PUMPS.pop(process.pid, None):
        thread.join(timeout=LOG_DRAIN_S)


def _signal_group(*, pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
