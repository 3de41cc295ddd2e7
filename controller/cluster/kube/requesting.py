"""One HTTP session to the API server: JSON requests, and streams of lines (watches, logs)."""

from __future__ import annotations

import json
from typing import Any, Iterator

import requests

from controller.cluster.kube.connecting import Connection
from controller.cluster.kube.errors import ApiError, from_status

REQUEST_TIMEOUT = (10.0, 60.0)  # connect, read (seconds)
MERGE_PATCH = "application/merge-patch+json"
USER_AGENT = "tp4-controller"
# Writes refuse unknown or duplicate fields (HTTP 422) instead of dropping them with a warning
# (the API server's default): a drift between the code and the CRD or the Job schema shows at once.
STRICT = {"fieldValidation": "Strict"}


class Api:
    """The API server of one Connection; every verb module takes one as `api`."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.namespace = connection.namespace
        self.session = requests.Session()
        self.session.verify = connection.verify
        self.session.cert = connection.cert
        self.session.headers.update({"Accept": "application/json", "User-Agent": USER_AGENT})
        if connection.proxy:
            self.session.proxies = {"https": connection.proxy, "http": connection.proxy}

    def _headers(self, content_type: str | None = None) -> dict[str, str]:
        headers = {"Content-Type": content_type} if content_type else {}
        if token := self.connection.token():
            headers["Authorization"] = f"Bearer {token}"
        return headers

    def call(self, method: str, path: str, *, params: dict[str, str] | None = None, body: Any = None,
             content_type: str = "application/json") -> dict[str, Any]:
        """A request whose answer is one JSON object; ApiError (by status code) on a refusal."""
        data = json.dumps(body) if body is not None else None
        response = self.session.request(method, self.connection.server + path, params=params, data=data,
                                        headers=self._headers(content_type if data is not None else None),
                                        timeout=REQUEST_TIMEOUT)
        if response.status_code >= 400:
            raise _refusal(response)
        return response.json() if response.content else {}

    def lines(self, path: str, *, params: dict[str, str], read_timeout: float) -> Iterator[bytes]:
        """A streamed answer (a watch, a followed log), line by line as the server flushes it."""
        response = self.session.get(self.connection.server + path, params=params, headers=self._headers(),
                                    stream=True, timeout=(REQUEST_TIMEOUT[0], read_timeout))
        with response:
            if response.status_code >= 400:
                raise _refusal(response)
            # chunk_size=None: each chunk as it arrives (the default 512 waits for 512 bytes)
            yield from response.iter_lines(chunk_size=None)

    def close(self) -> None:
        self.session.close()


def _refusal(response: requests.Response) -> ApiError:
    try:
        status = response.json()
    except ValueError:
        status = None
    return from_status(code=response.status_code, status=status, text=response.text)
