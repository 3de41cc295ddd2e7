"""What a Job sets in its own environment before ultralytics is imported (both Jobs, and the warm-start server
that imports their stack for them)."""

from __future__ import annotations

import os

# ultralytics' defaults a Job keeps unless its environment says otherwise.
JOB_ENV_DEFAULTS = {
    "YOLO_AUTOINSTALL": "false",  # never pip-install inside a Job
    # MLflow's download bars (logging the model reads its files back) are carriage-return noise in a Job's log
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}


def configure_environment() -> None:
    """Job-friendly ultralytics defaults (JOB_ENV_DEFAULTS) where unset; call before importing ultralytics."""
    for name, value in JOB_ENV_DEFAULTS.items():
        os.environ.setdefault(name, value)
