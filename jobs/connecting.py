"""Wait, with backoff and for a bounded time, for an endpoint a job needs at start.

A Job may start before the tracking server or the S3 store is up (a fresh
install, a restarting pod). Each probe either returns (the endpoint is up),
raises `Retry` (down or overloaded: try again), or raises anything else
(a definite answer such as rejected credentials: stop at once). After
`TP4_CONNECT_TIMEOUT_S` seconds (default 60) of `Retry`, `Unreachable`
names the endpoint and the last error.

Imports neither torch nor ultralytics.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Callable, Iterator

import requests

from jobs.errors import BadInput

ENV_CONNECT_TIMEOUT = "TP4_CONNECT_TIMEOUT_S"
DEFAULT_CONNECT_TIMEOUT_S = 60.0
PROBE_TIMEOUT_S = 5.0
FIRST_DELAY_S, MAX_DELAY_S = 0.5, 8.0


class Retry(Exception):
    """The endpoint did not answer usefully yet."""


class Unreachable(Exception):
    """The endpoint stayed down for the whole connect timeout (exit code 1: worth retrying the Job)."""


def connect_timeout() -> float:
    """`TP4_CONNECT_TIMEOUT_S` in seconds (>= 0), default 60."""
    raw = os.environ.get(ENV_CONNECT_TIMEOUT, "").strip()
    if not raw:
        return DEFAULT_CONNECT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise BadInput(f"{ENV_CONNECT_TIMEOUT}={raw}: expected a number of seconds >= 0")
    return value


def delays(*, first: float = FIRST_DELAY_S, cap: float = MAX_DELAY_S) -> Iterator[float]:
    """0.5, 1, 2, 4, 8, 8, ... seconds."""
    delay = first
    while True:
        yield delay
        delay = min(cap, delay * 2)


def wait_for(*, what: str, probe: Callable[[], None], timeout_s: float,
             sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic) -> None:
    """Call `probe` until it returns; `Unreachable` naming `what` once `timeout_s` is spent."""
    deadline = clock() + timeout_s
    for delay in delays():
        try:
            probe()
            return
        except Retry as exc:
            left = deadline - clock()
            if left <= 0:
                raise Unreachable(f"{what} did not answer within {timeout_s:g} s: {exc}") from exc
            pause = min(delay, left)
            print(f"{what} not reachable ({exc}); retrying in {pause:.1f} s ({left:.0f} s left)",
                  file=sys.stderr, flush=True)
            sleep(pause)


def http_get(*, url: str, **kwargs: object) -> requests.Response:
    """GET `url`; connection failures and timeouts become `Retry`."""
    try:
        return requests.get(url, timeout=PROBE_TIMEOUT_S, **kwargs)  # type: ignore[arg-type]
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise Retry(_short(exc)) from exc


def _short(exc: Exception) -> str:
    text = str(exc)
    for marker in ("Connection refused", "Name or service not known", "timed out", "Connection reset"):
        if marker in text:
            return f"{type(exc).__name__}: {marker}"
    return f"{type(exc).__name__}: {text[:200]}"


def probe_s3(*, endpoint: str, bucket: str) -> None:
    """A signed HEAD of the bucket (S3 servers may fail unsigned requests outright): any answer
    but a 5xx means the endpoint is up; a refusal is left to the client that needs the bucket."""
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    config = Config(retries={"max_attempts": 1}, connect_timeout=PROBE_TIMEOUT_S, read_timeout=PROBE_TIMEOUT_S)
    try:
        boto3.client("s3", endpoint_url=endpoint, config=config).head_bucket(Bucket=bucket)
    except ClientError as exc:
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
        if status >= 500:
            raise Retry(f"HTTP {status}") from exc
    except NoCredentialsError:
        return
    except BotoCoreError as exc:  # connection refused, timeouts, DNS
        raise Retry(f"{type(exc).__name__}: {str(exc)[:200]}") from exc


def wait_for_s3(*, endpoint: str, bucket: str) -> None:
    wait_for(what=f"S3 endpoint {endpoint}", probe=lambda: probe_s3(endpoint=endpoint, bucket=bucket),
             timeout_s=connect_timeout())
