"""The start-up check of an MLflow tracking server: one implementation for the
controller and the jobs (like contract.py, it imports neither torch nor the
kubernetes client).

Before anything else, both halves make one authenticated request to a
tracking server. While the server is down or overloaded, `wait_for` retries
with backoff (0.5 s doubling to 8 s) for `TP4_CONNECT_TIMEOUT_S` seconds
(default 60), then raises `Unreachable` naming the endpoint; a definite
answer (rejected or missing credentials) raises `Refused` at once. Each half
maps these to its own exit codes.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests

import contract

ENV_CONNECT_TIMEOUT = "TP4_CONNECT_TIMEOUT_S"
DEFAULT_CONNECT_TIMEOUT_S = 60.0
PROBE_TIMEOUT_S = 5.0
FIRST_DELAY_S, MAX_DELAY_S = 0.5, 8.0
# A cheap authenticated read: what every job does first, hence what must work.
PROBE_PATH = "/api/2.0/mlflow/experiments/search?max_results=1"
RETRIED_STATUS = {429, 500, 502, 503, 504}
# MLflow 3 clients of a server whose artifacts live in S3 move artifacts straight to and from
# S3 through presigned URLs when the server advertises it (/server-info): the client then needs
# a route to the S3 endpoint the *server* uses (in-cluster MinIO, unreachable from a laptop).
# Every transfer goes through the server unless these are set otherwise.
PROXIED_TRANSFERS = {"MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD": "false", "MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD": "false"}


class Retry(Exception):
    """The endpoint did not answer usefully yet."""


class Unreachable(Exception):
    """The endpoint stayed down for the whole connect timeout."""


class Refused(Exception):
    """The server answered, and the answer was no (credentials): retrying cannot help."""


class BadTimeout(ValueError):
    """TP4_CONNECT_TIMEOUT_S is not a number of seconds >= 0."""


def prefer_proxied_transfers() -> None:
    for name, value in PROXIED_TRANSFERS.items():
        os.environ.setdefault(name, value)


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
        raise BadTimeout(f"{ENV_CONNECT_TIMEOUT}={raw}: expected a number of seconds >= 0")
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


def redact_uri(uri: str) -> str:
    """The URI without a password, for logs."""
    parts = urlsplit(uri)
    if not parts.password:
        return uri
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def is_server(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def request_options() -> dict[str, Any]:
    """The credentials and TLS settings MLflow's own client takes from the environment."""
    env = os.environ
    options: dict[str, Any] = {}
    if env.get(contract.ENV_TRACKING_USERNAME) and env.get(contract.ENV_TRACKING_PASSWORD):
        options["auth"] = (env[contract.ENV_TRACKING_USERNAME], env[contract.ENV_TRACKING_PASSWORD])
    elif env.get("MLFLOW_TRACKING_TOKEN"):
        options["headers"] = {"Authorization": f"Bearer {env['MLFLOW_TRACKING_TOKEN']}"}
    if env.get("MLFLOW_TRACKING_INSECURE_TLS", "").lower() == "true":
        options["verify"] = False
    elif env.get("MLFLOW_TRACKING_SERVER_CERT_PATH"):
        options["verify"] = env["MLFLOW_TRACKING_SERVER_CERT_PATH"]
    return options


def server_name(uri: str) -> str:
    return f"MLflow tracking server {redact_uri(uri)}"


def probe_server(*, uri: str, where: str) -> None:
    """One authenticated request; `Retry` while down, `Refused` on a definite refusal."""
    response = http_get(url=uri.rstrip("/") + PROBE_PATH, **request_options())
    status = response.status_code
    if status == 200:
        return
    if status in RETRIED_STATUS:
        raise Retry(f"HTTP {status}")
    if status == 401:
        raise Refused(credentials_problem(where=where))
    raise Refused(f"{where} refused the request (HTTP {status}): {response.text.strip()[:300]}")


def credentials_problem(*, where: str) -> str:
    user = os.environ.get(contract.ENV_TRACKING_USERNAME)
    if not user:
        return (f"{where} requires authentication: set {contract.ENV_TRACKING_USERNAME} and "
                f"{contract.ENV_TRACKING_PASSWORD}")
    return (f"{where} rejected the credentials of user {user!r} "
            f"({contract.ENV_TRACKING_USERNAME}/{contract.ENV_TRACKING_PASSWORD}): HTTP 401")


def wait_for_server(*, uri: str, where: str | None = None, sleep: Callable[[float], None] = time.sleep) -> None:
    """For a tracking server (not a local store): wait until it answers, bounded; `Refused` at once."""
    if not is_server(uri):
        return
    where = where or server_name(uri)
    wait_for(what=where, probe=lambda: probe_server(uri=uri, where=where), timeout_s=connect_timeout(), sleep=sleep)
