"""Bounded waits for the endpoints a job or the controller needs at start (jobs.common.connecting,
jobs.common.tracking.wait_for_server, controller.tracking.client): the backoff on its own, then against
real HTTP servers on loopback ports that answer late, never, or refuse the credentials."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import contract
from controller import tracking as controller_tracking
from controller.errors import InvalidInput
from devstack.processes import free_port
from jobs.common import connecting, tracking
from jobs.common.errors import BadInput


class Clock:
    """Time that passes only when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_backoff_doubles_up_to_a_cap() -> None:
    gen = connecting.delays()
    assert [next(gen) for _ in range(7)] == [0.5, 1, 2, 4, 8, 8, 8]


def test_wait_gives_up_after_the_timeout_naming_the_endpoint() -> None:
    clock = Clock()

    def down() -> None:
        raise connecting.Retry("ConnectionError: Connection refused")

    with pytest.raises(connecting.Unreachable, match=r"^thing at http://x did not answer within 10 s: .*refused"):
        connecting.wait_for(what="thing at http://x", probe=down, timeout_s=10, sleep=clock.sleep,
                            clock=lambda: clock.now)
    assert clock.sleeps == [0.5, 1, 2, 4, 2.5] and clock.now == 10


def test_wait_stops_at_once_on_a_definite_answer() -> None:
    clock = Clock()

    def refused() -> None:
        raise BadInput("rejected")

    with pytest.raises(BadInput):
        connecting.wait_for(what="x", probe=refused, timeout_s=10, sleep=clock.sleep, clock=lambda: clock.now)
    assert clock.sleeps == []


@pytest.mark.parametrize("raw", ["soon", "-1", "nan"])
def test_bad_connect_timeout_is_bad_input(raw: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(connecting.ENV_CONNECT_TIMEOUT, raw)
    with pytest.raises(BadInput, match=connecting.ENV_CONNECT_TIMEOUT):
        connecting.connect_timeout()
    with pytest.raises(InvalidInput, match=connecting.ENV_CONNECT_TIMEOUT):
        controller_tracking.connect_timeout()


class MlflowLike(BaseHTTPRequestHandler):
    """Answers the probe's search request like MLflow: 200 for user `tp4`, else 401."""

    def do_HEAD(self) -> None:  # noqa: N802 (http.server's names)
        self.send_response(401)
        self.end_headers()

    def do_GET(self) -> None:  # noqa: N802
        import base64

        good = "Basic " + base64.b64encode(b"tp4:right-password").decode()
        status = 200 if self.headers.get("Authorization") == good else 401
        self.send_response(status)
        self.end_headers()
        self.wfile.write(b'{"experiments": []}' if status == 200 else b"You are not authenticated.")

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def serve(port: int, *, after: float = 0.0) -> Iterator[None]:
    """MlflowLike on `port`, listening `after` seconds from now (at once when 0)."""
    servers: list[ThreadingHTTPServer] = []

    def start() -> None:
        time.sleep(after)
        servers.append(ThreadingHTTPServer(("127.0.0.1", port), MlflowLike))
        servers[0].serve_forever(poll_interval=0.05)

    if after:
        threading.Thread(target=start, daemon=True).start()
    else:
        servers.append(ThreadingHTTPServer(("127.0.0.1", port), MlflowLike))
        threading.Thread(target=servers[0].serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        yield
    finally:
        while not servers:
            time.sleep(0.05)
        servers[0].shutdown()
        servers[0].server_close()


@pytest.fixture
def late_server() -> Iterator[str]:
    """A server that starts listening 1.5 s after the test starts."""
    port = free_port()
    with serve(port, after=1.5):
        yield f"http://127.0.0.1:{port}"


@pytest.fixture
def credentials(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.setenv(contract.ENV_TRACKING_USERNAME, "tp4")
    monkeypatch.setenv(contract.ENV_TRACKING_PASSWORD, "right-password")
    monkeypatch.setenv(connecting.ENV_CONNECT_TIMEOUT, "20")
    return monkeypatch


def test_job_waits_for_a_server_that_starts_late(late_server: str, credentials: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture) -> None:
    started = time.monotonic()
    tracking.wait_for_server(uri=late_server)
    assert 1.4 < time.monotonic() - started < 15
    assert f"MLflow tracking server {late_server} not reachable" in capsys.readouterr().err


def test_controller_waits_for_a_server_that_starts_late(late_server: str, credentials: pytest.MonkeyPatch) -> None:
    started = time.monotonic()
    assert controller_tracking.client(late_server).tracking_uri == late_server
    assert 1.4 < time.monotonic() - started < 15


def test_server_that_never_answers_is_named_after_the_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    uri = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv(connecting.ENV_CONNECT_TIMEOUT, "1")
    started = time.monotonic()
    with pytest.raises(connecting.Unreachable, match=f"MLflow tracking server {uri} did not answer within 1 s"):
        tracking.wait_for_server(uri=uri)
    with pytest.raises(InvalidInput, match=f"{uri} did not answer within 1 s"):
        controller_tracking.client(uri)
    assert time.monotonic() - started < 10


@pytest.mark.parametrize(("password", "named"), [("wrong", "rejected the credentials of user 'tp4'"),
                                                 (None, "requires authentication")])
def test_rejected_credentials_fail_at_once(password: str | None, named: str, credentials: pytest.MonkeyPatch) -> None:
    port = free_port()
    if password is None:
        credentials.delenv(contract.ENV_TRACKING_USERNAME)
        credentials.delenv(contract.ENV_TRACKING_PASSWORD)
    else:
        credentials.setenv(contract.ENV_TRACKING_PASSWORD, password)
    with serve(port):
        started = time.monotonic()
        with pytest.raises(BadInput, match=named):
            tracking.wait_for_server(uri=f"http://127.0.0.1:{port}")
        with pytest.raises(InvalidInput, match=named):
            controller_tracking.client(f"http://127.0.0.1:{port}")
        assert time.monotonic() - started < 5


def test_s3_endpoint_that_answers_anything_is_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "any")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "any")
    port = free_port()
    with serve(port):
        connecting.wait_for_s3(endpoint=f"http://127.0.0.1:{port}", bucket="tp4-dvc")  # 401: up, refusing


def test_embedded_store_is_not_probed(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv(connecting.ENV_CONNECT_TIMEOUT, "0")
    tracking.wait_for_server(uri=f"sqlite:///{tmp_path}/mlflow.db")
