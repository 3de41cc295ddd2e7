"""Child processes of the stack: free ports, readiness, orderly stops."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Callable

STOP_GRACE_S = 20.0


class StartFailed(RuntimeError):
    """A server did not come up; the message holds the end of its log."""


def free_port(*, host: str = "127.0.0.1") -> int:
    """A port nothing listens on now (the OS picks it: never a fixed, well-known one)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def log_tail(path: Path, *, chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else "(no log)"


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
    if process is None or process.poll() is not None:
        return
    _signal_group(pid=process.pid, sig=sig)
    try:
        process.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        _signal_group(pid=process.pid, sig=signal.SIGKILL)
        process.wait()


def _signal_group(*, pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
