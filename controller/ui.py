"""`python -m controller ui`: the MLflow UI on this project's runs (what `make ui` runs).

The embedded store unless MLFLOW_TRACKING_URI names a server (then there is nothing to start: open it).
Sized for a laptop: one process. `mlflow server` is a supervisor that only starts `uvicorn` on MLflow's
FastAPI app (`mlflow.server.fastapi_app:app`) with its settings in the environment; this does what
`mlflow server` does (mlflow 3.17's `mlflow.cli.server` and `mlflow.server._run_server`: the same
environment, the stores initialised before serving, MLflow's uvicorn log configuration) and serves that
app with uvicorn in this very process: no supervisor, no worker process, MLflow's job runner off
(bench/README.md P5: 0.625 GB in three processes before, one process now).
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from rich.console import Console

import contract

DEFAULT_PORT = 5000
APP = "mlflow.server.fastapi_app:app"


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


def serve(*, root: Path, host: str, port: int, console: Console) -> int:
    """Run the UI until interrupted (SIGINT or SIGTERM: uvicorn stops gracefully); its exit code."""
    remote = os.environ.get(contract.ENV_TRACKING_URI)
    if remote and not remote.startswith("sqlite:"):
        console.print(f"MLFLOW_TRACKING_URI is a server: open {remote}", highlight=False, soft_wrap=True)
        return 0
    (root / contract.EMBEDDED_DIR).mkdir(exist_ok=True)
    settings = server_settings(root=root)
    # Before MLflow's server modules are imported: they read their settings (and whether they run as a
    # server, which installs the Host-header and CORS checks) from the environment at import.
    os.environ.update(settings)
    import uvicorn
    from mlflow.server import _UVICORN_LOG_CONFIG
    from mlflow.server.constants import ARTIFACT_ROOT_ENV_VAR, BACKEND_STORE_URI_ENV_VAR
    from mlflow.server.handlers import initialize_backend_stores
    from mlflow.tracing.trace_rollup_service import validate_sql_trace_rollup_startup

    store = settings[BACKEND_STORE_URI_ENV_VAR]
    validate_sql_trace_rollup_startup(store)
    initialize_backend_stores(store, store, settings[ARTIFACT_ROOT_ENV_VAR])
    # MLflow 3.17's UI opens experiments on its GenAI pages unless the link says otherwise: its own
    # workflowType preference decides, not the experiment's mlflow.experimentKind tag (which tp4 sets too).
    console.print(f"MLflow UI on http://{host}:{port}/#/experiments?workflowType=machine_learning "
                  "(Ctrl-C stops it)", highlight=False, soft_wrap=True)
    try:
        uvicorn.run(APP, host=host, port=port, workers=1, log_config=str(_UVICORN_LOG_CONFIG))
    except KeyboardInterrupt:
        return 0
    return 0
