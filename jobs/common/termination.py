"""Turn SIGTERM (Kubernetes, the local executor) and SIGINT (Ctrl-C) into a
`Terminated` exception, so that `with` blocks unwind: the MLflow run gets its
KILLED status and temporary folders are removed. On Windows the local executor
stops a Job with CTRL_BREAK_EVENT, which Python sees as SIGBREAK: handled alike
(the signal exists there only).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from jobs.common.errors import Terminated

SIGNALS: tuple[signal.Signals, ...] = tuple(
    sig for sig in (signal.SIGTERM, signal.SIGINT, getattr(signal, "SIGBREAK", None)) if sig is not None)
_received: list[int] = []


def received() -> int | None:
    """The first termination signal this process received, if any."""
    return _received[0] if _received else None


def _raise_once(signum: int, frame: object) -> None:
    first = not _received
    _received.append(signum)
    if first:
        # Further signals (Ctrl-C reaches the whole process group, then the
        # executor sends SIGTERM too) must not interrupt the cleanup.
        for sig in SIGNALS:
            signal.signal(sig, _record_only)
        raise Terminated(signum)


def _record_only(signum: int, frame: object) -> None:
    _received.append(signum)


@contextmanager
def terminate_on_signals() -> Iterator[None]:
    """Within the block, SIGTERM/SIGINT (and SIGBREAK, Windows) raise `Terminated` in the main thread.

    Outside the main thread (where Python cannot install handlers) this is a
    no-op. Previous handlers are restored on exit.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in SIGNALS}
    for sig in SIGNALS:
        signal.signal(sig, _raise_once)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            # An enclosing block must not be re-armed once a signal arrived.
            signal.signal(sig, _record_only if handler is _raise_once and _received else handler)
