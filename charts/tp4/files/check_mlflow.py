"""helm test: the MLflow tracking server answers, through its Service name, with auth if enabled.

    python check_mlflow.py        # MLFLOW_TRACKING_URI, and MLFLOW_TRACKING_USERNAME/PASSWORD when auth is on

Checks /health, then a REST call (experiments/search) sent to the Service name,
which MLflow's Host-header check must accept; with basic auth on, the same call
without credentials must be refused (401). Standard library only.
"""

from __future__ import annotations

import base64
import os
import sys
import time
import urllib.error
import urllib.request

WAIT_SECONDS = int(os.environ.get("TP4_MLFLOW_WAIT_SECONDS", "120"))


def _get(url: str, auth: tuple[str, str] | None) -> tuple[int, str]:
    request = urllib.request.Request(url)
    if auth:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")


def main() -> int:
    base = os.environ["MLFLOW_TRACKING_URI"].rstrip("/")
    user, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    auth = (user, password) if user and password else None
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        try:
            status, body = _get(f"{base}/health", None)
            if status == 200 and body.strip() == "OK":
                break
            problem = f"HTTP {status} {body[:200]!r}"
        except OSError as error:
            problem = str(error)
        if time.monotonic() > deadline:
            print(f"FAIL {base}/health: {problem}", file=sys.stderr)
            return 1
        time.sleep(3)
    print(f"ok: {base}/health answers OK")
    api = f"{base}/api/2.0/mlflow/experiments/search?max_results=1"
    status, body = _get(api, auth)
    if status != 200:
        print(f"FAIL {api}: HTTP {status} {body[:300]!r}"
              " (403 'Invalid Host header': --allowed-hosts misses the Service name)", file=sys.stderr)
        return 1
    print(f"ok: the REST API answers through {base}" + (" with credentials" if auth else ""))
    if auth:
        status, _ = _get(api, None)
        if status != 401:
            print(f"FAIL {api} without credentials: HTTP {status}, expected 401", file=sys.stderr)
            return 1
        print("ok: without credentials the API answers 401")
    return 0


if __name__ == "__main__":
    sys.exit(main())
