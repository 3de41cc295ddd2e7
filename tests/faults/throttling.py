"""A throttling HTTP proxy in front of an S3 server: what a busy S3-compatible store does to DVC.

`ThrottlingProxy(upstream)` listens on a loopback port and forwards every request, byte for byte
(the Host header included, so that signatures still match), to `upstream`. While its budget of
refusals lasts, it answers object GETs (a bucket and a key in the path, no query string: not a
listing) with what AWS S3 answers a client that asks too fast, `503 SlowDown` "Please reduce your
request rate.", without forwarding them; then it passes everything through. Counting refusals,
not seconds, makes "for a while" the same on a slow machine and a fast one.
"""

from __future__ import annotations

import http.client
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

SLOW_DOWN = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
             b"<Message>Please reduce your request rate.</Message><RequestId>tp4-drill</RequestId></Error>")
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
              "transfer-encoding", "upgrade"}


class ThrottlingProxy:
    """Forward to `upstream` (http://host:port); refuse the first `refusals` object GETs with 503 SlowDown."""

    def __init__(self, upstream: str, *, refusals: int) -> None:
        parts = urlsplit(upstream)
        assert parts.scheme == "http" and parts.hostname and parts.port, upstream
        self.upstream = (parts.hostname, parts.port)
        self.lock = threading.Lock()
        self.left = refusals
        self.refused: list[str] = []  # the paths refused, in order
        self.passed: list[str] = []  # "METHOD path" forwarded, in order
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> ThrottlingProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()

    def _refuse(self, method: str, path: str) -> bool:
        bucket, _, key = urlsplit(path).path.lstrip("/").partition("/")
        if method != "GET" or "?" in path or not bucket or not key:
            return False
        with self.lock:
            if self.left <= 0:
                return False
            self.left -= 1
            self.refused.append(path)
            return True

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (the base class's name)
                return

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if proxy._refuse(self.command, self.path):
                    self.send_response(503)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(SLOW_DOWN)))
                    self.end_headers()
                    self.wfile.write(SLOW_DOWN)
                    return
                with proxy.lock:
                    proxy.passed.append(f"{self.command} {self.path}")
                upstream = http.client.HTTPConnection(*proxy.upstream, timeout=60)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                    upstream.request(self.command, self.path, body=body, headers=headers)
                    response = upstream.getresponse()
                    payload = response.read()
                finally:
                    upstream.close()
                self.send_response(response.status, response.reason)
                head = self.command == "HEAD"  # no body: the upstream's Content-Length is the object's
                for key, value in response.getheaders():
                    if key.lower() not in HOP_BY_HOP and (head or key.lower() != "content-length"):
                        self.send_header(key, value)
                if not head:
                    self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if not head:
                    self.wfile.write(payload)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _forward  # noqa: N815 (http.server's names)

        return Handler
