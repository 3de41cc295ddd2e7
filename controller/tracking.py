"""The controller's MLflow adapter: the grid's parent run and what status shows of results.

`client(uri)` checks a tracking server before anything is submitted, with
tracking_probe (the check the jobs run too): it waits for a server that is
down, with backoff, for `TP4_CONNECT_TIMEOUT_S` seconds (default 60), and
refuses at once credentials the server rejects. Either failure is
`InvalidInput` (exit code 2) naming the tracking URI, and nothing has been
started.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from mlflow.entities import RunStatus
from mlflow.tracking import MlflowClient

import contract
import tracking_probe
from controller.credentials import refuse_credentials_in_uri
from controller.errors import InvalidInput, Problem
from controller.core.expanding import GridPoint
from contract.grid import GridSpec

def tracking_uri(root: Path) -> str:
    """MLFLOW_TRACKING_URI, or the embedded store under the project folder; `InvalidInput`
    (exit 2) when the URI carries credentials (controller.credentials)."""
    uri = os.environ.get(contract.ENV_TRACKING_URI) or contract.embedded_tracking_uri(root)
    refuse_credentials_in_uri(uri)
    return uri


def is_embedded(uri: str) -> bool:
    return uri.startswith("sqlite:") or uri.startswith("file:") or "://" not in uri


def client(uri: str) -> MlflowClient:
    """A client on `uri`, once a tracking server there answers an authenticated request."""
    tracking_probe.prefer_proxied_transfers()
    try:
        tracking_probe.wait_for_server(uri=uri, where=f"the {tracking_probe.server_name(uri)}")
    except (tracking_probe.Refused, tracking_probe.Unreachable) as error:
        raise InvalidInput([Problem(contract.ENV_TRACKING_URI, str(error))]) from error
    except tracking_probe.BadTimeout as error:
        raise InvalidInput([Problem(tracking_probe.ENV_CONNECT_TIMEOUT, str(error))]) from error
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


redact = tracking_probe.redact_uri


def connect_timeout() -> float:
    try:
        return tracking_probe.connect_timeout()
    except tracking_probe.BadTimeout as error:
        raise InvalidInput([Problem(tracking_probe.ENV_CONNECT_TIMEOUT, str(error))]) from error


def ensure_experiment(mlflow: MlflowClient, *, name: str, root: Path, uri: str) -> str:
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    location = contract.embedded_artifact_location(root, name) if is_embedded(uri) else None
    return mlflow.create_experiment(name, artifact_location=location)


def start_parent_run(mlflow: MlflowClient, *, grid: GridSpec, points: list[GridPoint], experiment_id: str,
                     backend: str, dataset_md5: str) -> str:
    """One parent run per submission, holding the grid spec the finalizer reads back."""
    run = mlflow.create_run(experiment_id, run_name=f"grid-{grid.name}", tags={
        contract.TAG_ROLE: contract.ROLE_PARENT, contract.TAG_GRID: grid.name,
        contract.TAG_CODE_VERSION: contract.CODE_VERSION, contract.TAG_BACKEND: backend,
        contract.TAG_DATASET_MD5: dataset_md5, contract.TAG_IMAGE: grid.job.image,
    })
    run_id = run.info.run_id
    params = {"grid": grid.name, "points": str(len(points)), "weights": grid.weights,
              "objective": f"{grid.objective_metric} ({grid.objective_direction})",
              **{f"axis.{name}": json.dumps(values) for name, values in grid.axes.items()},
              **{f"train.{name}": str(value) for name, value in grid.train.items()}}
    for key, value in params.items():
        mlflow.log_param(run_id, key, value)
    spec = {"spec": grid.to_dict(), "points": [p.to_dict() for p in points], "dataset_md5": dataset_md5}
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / contract.ARTIFACT_GRID_SPEC
        path.write_text(json.dumps(spec, indent=1, default=str))
        mlflow.log_artifact(run_id, str(path))
    return run_id


def end_run(mlflow: MlflowClient, run_id: str, *, status: str) -> None:
    if mlflow.get_run(run_id).info.status == "RUNNING":
        mlflow.set_terminated(run_id, status=status)


def runs_of_point(mlflow: MlflowClient, *, experiment_id: str, parent_run_id: str, point: str) -> list[Any]:
    query = (f"tags.`{contract.TAG_POINT}` = '{point}' and tags.mlflow.parentRunId = '{parent_run_id}'")
    return mlflow.search_runs([experiment_id], filter_string=query, order_by=["attributes.start_time DESC"])


def kill_open_runs(mlflow: MlflowClient, *, experiment_id: str, parent_run_id: str, points: list[str]) -> int:
    """Mark KILLED the runs that interrupted Jobs could not end themselves."""
    killed = 0
    for point in points:
        for run in runs_of_point(mlflow, experiment_id=experiment_id, parent_run_id=parent_run_id, point=point):
            if run.info.status == RunStatus.to_string(RunStatus.RUNNING):
                mlflow.set_terminated(run.info.run_id, status="KILLED")
                killed += 1
    return killed


def final_metrics(mlflow: MlflowClient, *, experiment_id: str, parent_run_id: str, point: str) -> tuple[str | None, dict[str, float]]:
    """The newest FINISHED run of a point in this submission, and its final metrics."""
    for run in runs_of_point(mlflow, experiment_id=experiment_id, parent_run_id=parent_run_id, point=point):
        if run.info.status == "FINISHED":
            keep = (*contract.FINAL_METRICS, contract.METRIC_TRAIN_SECONDS)
            return run.info.run_id, {k: v for k, v in run.data.metrics.items() if k in keep}
    return None, {}


def latest_report(mlflow: MlflowClient, *, grid: str) -> tuple[str, dict[str, Any]] | None:
    """decision.json of the newest parent run of a grid that has one, from any experiment."""
    query = f"tags.`{contract.TAG_ROLE}` = '{contract.ROLE_PARENT}' and tags.`{contract.TAG_GRID}` = '{grid}'"
    experiments = [e.experiment_id for e in mlflow.search_experiments()]
    for run in mlflow.search_runs(experiments, filter_string=query, order_by=["attributes.start_time DESC"]):
        if contract.TAG_DECISION not in run.data.tags:
            continue
        with tempfile.TemporaryDirectory() as folder:
            path = mlflow.download_artifacts(run.info.run_id, f"{contract.ARTIFACT_REPORT_DIR}/decision.json", folder)
            return run.info.run_id, json.loads(Path(path).read_text())
    return None
