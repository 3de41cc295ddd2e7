"""`python -m controller ui`: the MLflow UI on this project's runs (what `make ui` runs).

The embedded store unless MLFLOW_TRACKING_URI names a server (then there is nothing to start: open it).
Sized for a laptop: one uvicorn worker and MLflow's job runner off (MLflow 3.17's defaults take about
2.9 GB; this about 0.65 GB, docs/architecture.md section 5).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from rich.console import Console

import contract

DEFAULT_PORT = 5000


def server_command(*, root: Path, host: str, port: int) -> list[str]:
    """The `mlflow server` command line for the embedded store of the project folder `root`."""
    return [sys.executable, "-m", "mlflow", "server", "--workers", "1", "--host", host, "--port", str(port),
            "--backend-store-uri", contract.embedded_tracking_uri(root),
            "--default-artifact-root", (root / contract.EMBEDDED_DIR / "mlartifacts").resolve().as_uri()]


def server_env() -> dict[str, str]:
    return {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def serve(*, root: Path, host: str, port: int, console: Console) -> int:
    """Run the UI until interrupted; its exit code."""
    remote = os.environ.get(contract.ENV_TRACKING_URI)
    if remote and not remote.startswith("sqlite:"):
        console.print(f"MLFLOW_TRACKING_URI is a server: open {remote}", highlight=False, soft_wrap=True)
        return 0
    # MLflow 3.17's UI opens experiments on its GenAI pages unless the link says otherwise: its own
    # workflowType preference decides, not the experiment's mlflow.experimentKind tag (which tp4 sets too).
    console.print(f"MLflow UI on http://{host}:{port}/#/experiments?workflowType=machine_learning "
                  "(Ctrl-C stops it)", highlight=False, soft_wrap=True)
    (root / contract.EMBEDDED_DIR).mkdir(exist_ok=True)
    try:
        return subprocess.run(server_command(root=root, host=host, port=port), env=server_env(),
                              check=False).returncode
    except KeyboardInterrupt:
        return 0
