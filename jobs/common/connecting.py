"""Wait, with backoff and for a bounded time, for an endpoint a job needs at start.

A Job may start before the tracking server or the S3 store is up (a fresh
install, a restarting pod). Each probe either returns (the endpoint is up),
raises `Retry` (down or overloaded: try again), or raises anything else
(a definite answer such as rejected credentials: stop at once). After
`TP4_CONNECT_TIMEOUT_S` seconds (default 60) of `Retry`, `Unreachable`
names the endpoint and the last error.

The backoff itself is tracking_probe's, shared with the controller; this
module adds the S3 probe. Imports neither torch nor ultralytics.
"""

from __future__ import annotations

import tracking_probe
from jobs.common.errors import BadInput
from tracking_probe import ENV_CONNECT_TIMEOUT, PROBE_TIMEOUT_S, Retry, Unreachable, delays, http_get, wait_for

# Re-exported from tracking_probe: the jobs' one place to wait for an endpoint.
__all__ = ["ENV_CONNECT_TIMEOUT", "PROBE_TIMEOUT_S", "Retry", "Unreachable", "delays", "http_get", "wait_for",
           "connect_timeout", "probe_s3", "wait_for_s3"]


def connect_timeout() -> float:
    """`TP4_CONNECT_TIMEOUT_S` in seconds (>= 0), default 60; a bad value is bad input (exit 2)."""
    try:
        return tracking_probe.connect_timeout()
    except tracking_probe.BadTimeout as exc:
        raise BadInput(str(exc)) from exc


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
