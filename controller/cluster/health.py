"""The controller's liveness and readiness over HTTP (the chart's probes), stdlib http.server in a thread.

GET /healthz: 200 while the controller's main loop (standing by or leading)
has ticked within `stale_seconds`; 503 when it is stuck (the kubelet then
restarts the container). GET /readyz: 200 once this process leads and its
watches have listed Grids and Jobs; 503 while it stands by or starts. The
body says which, in one line.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STALE_SECONDS = 300.0  # a reconcile waits on MLflow's own retries (minutes) before it gives up


@dataclass
class Health:
    stale_seconds: float = STALE_SECONDS
    state: str = "starting"  # starting, standby, syncing, leading, stopped
    last_beat: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def beat(self, state: str | None = None) -> None:
        with self.lock:
            self.last_beat = time.monotonic()
            self.state = state or self.state

    def live(self) -> tuple[bool, str]:
        with self.lock:
            age = time.monotonic() - self.last_beat
            return age < self.stale_seconds and self.state != "stopped", f"{self.state}, last tick {age:.1f} s ago"

    def ready(self) -> tuple[bool, str]:
        with self.lock:
            return self.state == "leading", self.state


def serve(health: Health, *, port: int, host: str = "0.0.0.0") -> ThreadingHTTPServer:  # noqa: S104 (the pod's probes)
    """Start answering /healthz and /readyz on `port` (0: any free port, see server_address); stop with shutdown()."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # the probes would flood the log
            pass

        def do_GET(self) -> None:
            checks = {"/healthz": health.live, "/readyz": health.ready}
            check = checks.get(self.path.split("?")[0])
            ok, text = check() if check else (False, "not found")
            body = f"{'ok' if ok else 'not ok'}: {text}\n".encode()
            self.send_response(200 if ok else 404 if check is None else 503)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True, name="health").start()
    return server
