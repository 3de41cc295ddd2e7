"""Bounded retries, with jittered exponential back-off, of a call that meets the world's transient faults.

Inside a Job, a throttled object store (`503 SlowDown`), a 5xx, a reset connection or a time-out
is not the grid's fault, and the same call a little later usually succeeds. `retry(what, call)`
runs `call` until it returns; `call` raises `Transient` for a fault worth another try and anything
else for a final answer (which `retry` lets through at once). After `Backoff.attempts` tries in all,
`GaveUp` (a `tracking_probe.Unreachable`: the Jobs exit 1, and the Job's backoffLimit may try
again later; never a configuration error) names what failed and the last fault.

Between tries, "full jitter" (Brooker, "Exponential Backoff And Jitter", AWS Architecture Blog,
2015): a pause drawn uniformly in [0, min(cap, first * 2^k)] before retry k+1, so that Jobs
throttled together do not come back together.

`transient_fault(exc)` says whether an exception (or one in its cause/context chain) is such a
fault for the clients the Jobs use: the standard library's connection errors and time-outs,
botocore's connection errors and 429/5xx/throttling answers, s3fs's translations of those
(`OSError` EBUSY "Please reduce your request rate.", EREMOTEIO), aiohttp's connection errors.
Imports neither torch nor ultralytics.
"""

from __future__ import annotations

import errno
import random
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import tracking_probe

T = TypeVar("T")

# HTTP statuses a retry may cure (MLflow's client retries the same set: mlflow/utils/request_utils.py)
TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
# S3 error codes that mean "later" (botocore's _retry.json throttling policies, and S3's own)
TRANSIENT_CODES = frozenset({"SlowDown", "Throttling", "ThrottlingException", "ThrottledException",
                             "RequestThrottled", "RequestThrottledException", "TooManyRequestsException",
                             "RequestLimitExceeded", "ProvisionedThroughputExceededException", "BandwidthLimitExceeded",
                             "ServiceUnavailable", "InternalError", "RequestTimeout", "RequestTimeoutException",
                             "PriorRequestNotComplete", "OperationAborted"})
# errno values of OSErrors that s3fs (s3fs/errors.py) and the OS give to such faults: SlowDown, 503 and
# ServiceUnavailable are EBUSY, 500 InternalError is EREMOTEIO
TRANSIENT_ERRNOS = frozenset({errno.EBUSY, getattr(errno, "EREMOTEIO", errno.EIO), errno.ETIMEDOUT, errno.ECONNRESET,
                              errno.ECONNREFUSED, errno.ECONNABORTED, errno.EPIPE, errno.EAGAIN, errno.ENETUNREACH,
                              errno.EHOSTUNREACH})


class Transient(Exception):
    """A fault worth another try (raise it from the retried call, `from` the original exception)."""


class GaveUp(tracking_probe.Unreachable):
    """A transient fault outlasted every try: exit code 1, never bad input."""


@dataclass(frozen=True)
class Backoff:
    """`attempts` tries in all; before retry k (k = 0, 1, ...) a pause uniform in [0, min(cap_s, first_s * 2^k)]."""

    attempts: int = 5
    first_s: float = 2.0
    cap_s: float = 30.0

    def pauses(self, *, draw: Callable[[], float] = random.random) -> Iterator[float]:
        """The attempts - 1 pauses, in seconds; `draw` gives numbers in [0, 1)."""
        for k in range(self.attempts - 1):
            yield draw() * min(self.cap_s, self.first_s * 2**k)

    @property
    def longest_s(self) -> float:
        """The most the pauses can add up to."""
        return sum(min(self.cap_s, self.first_s * 2**k) for k in range(self.attempts - 1))


DEFAULT_BACKOFF = Backoff()


def retry(*, what: str, call: Callable[[], T], backoff: Backoff = DEFAULT_BACKOFF,
          sleep: Callable[[float], None] = time.sleep, draw: Callable[[], float] = random.random) -> T:
    """`call()`'s result; each `Transient` it raises is retried after a pause, up to `backoff.attempts`
    tries in all, then `GaveUp` (from the last fault). Any other exception propagates at once.
    One line on stderr per retry."""
    pauses = backoff.pauses(draw=draw)
    for attempt in range(1, backoff.attempts + 1):
        try:
            return call()
        except Transient as fault:
            pause = next(pauses, None)
            if pause is None:
                raise GaveUp(f"{what} failed {attempt} times with a transient fault "
                             f"(the last: {fault}); giving up for now") from fault
            print(f"{what}: transient fault ({fault}); try {attempt + 1} of {backoff.attempts} "
                  f"in {pause:.1f} s", file=sys.stderr, flush=True)
            sleep(pause)
    raise AssertionError("unreachable: the last try returns or raises")


def chain(exc: BaseException) -> Iterator[BaseException]:
    """`exc`, then its causes and contexts, each once."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        todo += [e for e in (current.__cause__, current.__context__) if e is not None]


def transient_fault(exc: BaseException) -> str | None:
    """A short description when `exc` or an exception in its chain is a transient fault, else None."""
    for link in chain(exc):
        reason = transient_reason(link)
        if reason:
            return reason
    return None


def transient_reason(exc: BaseException) -> str | None:
    """A short description when `exc` itself (not its chain) is a transient fault, else None."""
    from botocore.exceptions import ClientError, HTTPClientError, IncompleteReadError
    from botocore.exceptions import ConnectionError as BotoConnectionError

    if isinstance(exc, ClientError):
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        code = str(exc.response.get("Error", {}).get("Code") or "")
        if status in TRANSIENT_STATUS or code in TRANSIENT_CODES:
            return f"HTTP {status} {code}".strip()
        return None
    if isinstance(exc, (BotoConnectionError, HTTPClientError, IncompleteReadError)):
        return f"{type(exc).__name__}: {str(exc)[:200]}"
    if _aiohttp_transient(exc):
        return f"{type(exc).__name__}: {str(exc)[:200]}"
    if isinstance(exc, (TimeoutError, ConnectionError)):
        return f"{type(exc).__name__}: {str(exc)[:200]}"
    if isinstance(exc, OSError) and exc.errno in TRANSIENT_ERRNOS:
        return f"{type(exc).__name__}: [Errno {exc.errno}] {exc.strerror or exc}"
    return None


def _aiohttp_transient(exc: BaseException) -> bool:
    try:
        import aiohttp
    except ImportError:  # pragma: no cover (DVC's S3 and HTTP remotes bring it)
        return False
    if isinstance(exc, aiohttp.ClientResponseError):
        return exc.status in TRANSIENT_STATUS
    return isinstance(exc, (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError))
