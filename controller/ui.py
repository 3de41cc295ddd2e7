"""`python -m controller ui`: the MLflow UI on this project's runs (what `make ui` runs).

The embedded store unless MLFLOW_TRACKING_URI names a server (then there is nothing to start: open it).
Sized for a laptop: one process. `mlflow server` is a supervisor that only starts `uvicorn` on MLflow's
FastAPI app (`mlflow.server.fastapi_app:app`) with its settings in the environment; this does what
`mlflow server` does (mlflow 3.17's `mlflow.cli.server` and `mlflow.server._run_server`: the same
environment, the stores initialised before serving, MLflow's uvicorn log configuration) and serves that
app with uvicorn in this very process: no supervisor, no worker process, MLflow's job runner off
(bench/README.md P5: 0.625 GB in three processes before, one process now). The app is wrapped so that the
browser opens on the grid's model-training pages (controller/ui_app.py).

The port is bound first, the link printed once it is: a taken port is one error (exit 2), never a link to
another server.
"""

from __future__ import annotations

import errno
import os
import socket
import sys
import uuid
import warnings
from pathlib import Path

from rich.console import Console

import contract
from controller.errors import InvalidInput, Problem

DEFAULT_PORT = 5000
MAKE_PORT_VARIABLE = "UI_PORT"  # the Makefile's variable for `make ui` (its --port)


def server_settings(*, root: Path) -> dict[str, str]:
    """The environment `mlflow server --backend-store-uri <embedded> --default-artifact-root <mlartifacts>`
    hands its uvicorn worker (`_run_server`'s env_map; artifacts served, as `--serve-artifacts` defaults to).

    The proxied artifacts' destination is the project's artifact folder, not `./mlartifacts` of the
    current directory (`mlflow server`'s default): tp4's experiments store artifacts there anyway.
    """
    from mlflow.server.constants import (
        ARTIFACT_ROOT_ENV_VAR,
        ARTIFACTS_DESTINATION_ENV_VAR,
        BACKEND_STORE_URI_ENV_VAR,
        REGISTRY_STORE_URI_ENV_VAR,
        SERVE_ARTIFACTS_ENV_VAR,
    )

    store = contract.embedded_tracking_uri(root)
    artifacts = (root / contract.EMBEDDED_DIR / "mlartifacts").resolve().as_uri()
    return {
        BACKEND_STORE_URI_ENV_VAR: store,
        REGISTRY_STORE_URI_ENV_VAR: store,
        ARTIFACT_ROOT_ENV_VAR: artifacts,
        SERVE_ARTIFACTS_ENV_VAR: "true",
        ARTIFACTS_DESTINATION_ENV_VAR: artifacts,
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",  # no job runner, no huey consumers
        "_MLFLOW_SERVER_BOOT_ID": uuid.uuid4().hex,
        "_MLFLOW_IN_JOB_EXECUTOR": "false",
        "_MLFLOW_SGI_NAME": "uvicorn",
    }


def bind(*, host: str, port: int) -> socket.socket:
    """A TCP socket bound to (host, port) and listening: connections wait in its backlog until served.

    Raises InvalidInput (exit 2) when the port is taken or the address cannot be bound, naming what to do.
    Windows: SO_EXCLUSIVEADDRUSE, since its SO_REUSEADDR would share a port another server listens on.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if sys.platform == "win32":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_EXCLUSIVEADDRUSE, 1)  # type: ignore[attr-defined]
        else:  # a port left in TIME_WAIT by a UI just stopped is free again; a listening one is not
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as error:
        sock.close()
        raise InvalidInput([Problem(f"--port {port}", _bind_advice(error, host=host, port=port))]) from error
    return sock


def _bind_advice(error: OSError, *, host: str, port: int) -> str:
    other = port + 1 if port < 65535 else 5001
    choose = (f"choose another port: `python -m controller ui --port {other}` "
              f"(with make: `make ui {MAKE_PORT_VARIABLE}={other}`)")
    if error.errno in (errno.EADDRINUSE, getattr(errno, "WSAEADDRINUSE", -1)) or getattr(error, "winerror", 0) \
            in (10048, 10013):
        return (f"port {port} on {host} is already in use by another program (another MLflow server, the "
                f"handout's Docker MLflow, a second `ui`, macOS's AirPlay Receiver on 5000); {choose}")
    if error.errno == errno.EACCES:
        return f"not allowed to listen on port {port} ({error.strerror}); {choose}"
    return f"cannot listen on {host}:{port} ({error.strerror or error}); check --host, or {choose}"


def link(*, host: str, port: int) -> str:
    """The URL printed for a browser: the experiments list (a wildcard host is reached on loopback)."""
    shown = {"0.0.0.0": "127.0.0.1", "::": "[::1]"}.get(host, f"[{host}]" if ":" in host else host)
    return f"http://{shown}:{port}/#/experiments"


def serve(*, root: Path, host: str, port: int, console: Console) -> int:
    """Run the UI until interrupted (SIGINT or SIGTERM: uvicorn stops gracefully); its exit code.

    Raises InvalidInput (exit 2, nothing printed on stdout) when (host, port) cannot be bound.
    """
    remote = os.environ.get(contract.ENV_TRACKING_URI)
    if remote and not remote.startswith("sqlite:"):
        console.print(f"MLFLOW_TRACKING_URI is a server: open {remote}", highlight=False, soft_wrap=True)
        return 0
    sock = bind(host=host, port=port)
    try:
        (root / contract.EMBEDDED_DIR).mkdir(exist_ok=True)
        settings = server_settings(root=root)
        # Before MLflow's server modules are imported: they read their settings (and whether they run as a
        # server, which installs the Host-header and CORS checks) from the environment at import.
        os.environ.update(settings)
        # MLflow's own import of starlette's WSGI middleware warns on stderr: not the user's business
        warnings.filterwarnings("ignore", message="starlette.middleware.wsgi is deprecated")
        import uvicorn
        from mlflow.server import _UVICORN_LOG_CONFIG
        from mlflow.server.constants import ARTIFACT_ROOT_ENV_VAR, BACKEND_STORE_URI_ENV_VAR
        from mlflow.server.handlers import initialize_backend_stores
        from mlflow.tracing.trace_rollup_service import validate_sql_trace_rollup_startup

        from controller import tracking
        from controller.ui_app import create_app

        store = settings[BACKEND_STORE_URI_ENV_VAR]
        with tracking.store_lock(store):  # a first submit-grid may be creating this store at the same moment
            validate_sql_trace_rollup_startup(store)
            initialize_backend_stores(store, store, settings[ARTIFACT_ROOT_ENV_VAR])
        config = uvicorn.Config(create_app(), host=host, port=port, workers=1, log_config=str(_UVICORN_LOG_CONFIG))
        console.print(f"MLflow UI on {link(host=host, port=port)} (Ctrl-C stops it)", highlight=False,
                      soft_wrap=True)
        uvicorn.Server(config).run(sockets=[sock])
    except KeyboardInterrupt:
        return 0
    finally:
        sock.close()
    return 0
