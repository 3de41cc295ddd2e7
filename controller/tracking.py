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
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout
from mlflow.entities import RunStatus, ViewType
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, ErrorCode
from mlflow.tracking import MlflowClient

import contract
import tracking_probe
from contract.decision import DECISION_JSON, Decision, read_decision
from contract.grid import GridSpec
from controller.core.expanding import GridPoint
from controller.credentials import refuse_credentials_in_uri
from controller.errors import InvalidInput, Problem

# On a parent run the local executor creates: "host pid start-time" of the controller process
# that owns it (controller.local.processes), so a later start can tell whether it is gone.
TAG_PROCESS = "tp4.process"
RUNNING = RunStatus.to_string(RunStatus.RUNNING)

STORE_TRIES = 4  # opening a new SQLite store that another process is creating (see client)


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
    with store_lock(uri):
        for attempt in range(1, STORE_TRIES + 1):
            try:
                mlflow = MlflowClient(tracking_uri=uri, registry_uri=uri)
                if contract.sqlite_store_lock(uri) is not None:  # create and migrate both stores now, under the lock
                    mlflow.search_experiments(max_results=1)
                    mlflow.search_registered_models(max_results=1)
                return mlflow
            except Exception as error:  # sqlalchemy's OperationalError, from MLflow's own table creation
                # A process that opens the store without the lock (an older tp4) may still be creating its
                # tables: the loser's "table ... already exists" goes away once the winner is done.
                if attempt == STORE_TRIES or "already exists" not in str(error):
                    raise
                time.sleep(0.5 * attempt)
    raise AssertionError("unreachable")


STORE_LOCK_TIMEOUT_S = 300.0


@contextmanager
def store_lock(uri: str) -> Iterator[None]:
    """For a SQLite store, an OS lock (contract.sqlite_store_lock) held while it is opened: MLflow creates
    its tables and runs its alembic migrations on first use, and two tp4 commands started together on a
    new project would race ("duplicate column name", "Online migration expected to match one row").
    `InvalidInput` if another process holds it for STORE_LOCK_TIMEOUT_S."""
    path = contract.sqlite_store_lock(uri)
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(path, timeout=STORE_LOCK_TIMEOUT_S, fallback_to_soft=False, preserve_lock_file=True)
    try:
        lock.acquire()
    except Timeout as error:
        raise InvalidInput([Problem(str(path), f"another process has held the tracking store's lock for "
                                    f"{STORE_LOCK_TIMEOUT_S:g} s")]) from error
    try:
        yield
    finally:
        lock.release()


redact = tracking_probe.redact_uri


def connect_timeout() -> float:
    try:
        return tracking_probe.connect_timeout()
    except tracking_probe.BadTimeout as error:
        raise InvalidInput([Problem(tracking_probe.ENV_CONNECT_TIMEOUT, str(error))]) from error


def deleted_experiment_problem(name: str, experiment_id: str) -> Problem:
    return Problem("experiment", f"MLflow experiment {name!r} (id {experiment_id}) is deleted, and this grid's runs "
                   f"live in it: restore it (mlflow experiments restore --experiment-id {experiment_id}, or the "
                   "MLflow UI) or choose another `experiment:` in grid.yaml")


def check_experiment(mlflow: MlflowClient, *, name: str) -> str | None:
    """The id of experiment `name` (None when it does not exist yet); `InvalidInput` (exit 2)
    when it is deleted: nothing could be logged into it, and the runs it holds do not count."""
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is None:
        return None
    if experiment.lifecycle_stage != "active":
        raise InvalidInput([deleted_experiment_problem(name, experiment.experiment_id)])
    return experiment.experiment_id


def ensure_experiment(mlflow: MlflowClient, *, name: str, root: Path, uri: str) -> str:
    """The id of the active experiment `name`, created when missing (a SQLite store, the embedded one
    among them: its artifacts under mlartifacts/ beside the database, the folder created now so that a
    location that cannot be written is bad input before any run exists); `InvalidInput` when it is
    deleted or unwritable. Get-or-create: another process (a second `submit-grid` of a grid in the same experiment) may
    create it between the look and the create; its experiment is then this one."""
    experiment_id = check_experiment(mlflow, name=name)
    if experiment_id is None:
        try:
            return _create_experiment(mlflow, name=name, root=root, uri=uri)
        except MlflowException as error:
            if error.error_code != ErrorCode.Name(RESOURCE_ALREADY_EXISTS):
                raise
        experiment_id = check_experiment(mlflow, name=name)
        if experiment_id is None:  # created, then deleted and purged at once: nothing sensible to log into
            raise InvalidInput([Problem("experiment", f"MLflow experiment {name!r} was created by another process "
                                        "and removed again while this grid started: submit again")])
    if mlflow.get_experiment(experiment_id).tags.get(contract.TAG_EXPERIMENT_KIND) is None:
        mlflow.set_experiment_tag(experiment_id, contract.TAG_EXPERIMENT_KIND, contract.EXPERIMENT_KIND_TRAINING)
    return experiment_id


def _create_experiment(mlflow: MlflowClient, *, name: str, root: Path, uri: str) -> str:
    """Its artifacts where the Jobs put them too (contract.artifact_location: beside a SQLite store, the embedded
    one's .tp4/mlartifacts among them; a server decides itself); the folder made now."""
    location = contract.artifact_location(uri, name)
    artifact_root = contract.sqlite_artifact_root(uri)
    if artifact_root is not None:
        folder = artifact_root / contract.artifact_folder(name)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise InvalidInput([Problem("experiment", f"cannot create the artifact folder {folder}: "
                                                      f"{error.strerror or error}")]) from error
    return mlflow.create_experiment(name, artifact_location=location,
                                    tags={contract.TAG_EXPERIMENT_KIND: contract.EXPERIMENT_KIND_TRAINING})


def start_parent_run(mlflow: MlflowClient, *, grid: GridSpec, points: list[GridPoint], experiment_id: str,
                     backend: str, dataset_md5: str, process: str = "") -> str:
    """One parent run per submission, holding the grid spec the finalizer reads back; `process`
    ('host pid start', see TAG_PROCESS) names the controller process that owns it.
    Creates the run first: a failure after that is the caller's to close (end_run FAILED)."""
    run = mlflow.create_run(experiment_id, run_name=parent_run_name(mlflow, experiment_id=experiment_id,
                                                                     grid=grid.name), tags={
        contract.TAG_ROLE: contract.ROLE_PARENT, contract.TAG_GRID: grid.name,
        contract.TAG_CODE_VERSION: contract.CODE_VERSION, contract.TAG_BACKEND: backend,
        contract.TAG_DATASET_MD5: dataset_md5,
        **({contract.TAG_IMAGE: grid.job.image} if backend == "kubernetes" else {}),  # local Jobs run in no image
        **({TAG_PROCESS: process} if process else {}),
    })
    run_id = run.info.run_id
    try:
        _describe_parent_run(mlflow, run_id=run_id, grid=grid, points=points, dataset_md5=dataset_md5)
    except Exception as error:
        end_run(mlflow, run_id, status="FAILED", reason=f"setup failed: {type(error).__name__}: {error}"[:5000])
        raise ParentRunFailed(run_id, error) from error
    except BaseException:
        end_run(mlflow, run_id, status="KILLED", reason="interrupted during setup")
        raise
    return run_id


def parent_run_name(mlflow: MlflowClient, *, experiment_id: str, grid: str) -> str:
    """The name of a new submission's parent run: `grid-<grid> #<n>`, n = 1 + the parent runs this grid already
    has in the experiment (deleted ones included), so that two submissions of a grid (a changed axis, a
    resubmission after a failure) are never two runs of one name side by side in the runs table."""
    query = f"tags.`{contract.TAG_ROLE}` = '{contract.ROLE_PARENT}' and tags.`{contract.TAG_GRID}` = '{grid}'"
    earlier = mlflow.search_runs([experiment_id], filter_string=query, run_view_type=ViewType.ALL, max_results=5000)
    return f"grid-{grid} #{len(earlier) + 1}"


def delete_grid_runs(mlflow: MlflowClient, *, experiment_id: str, grid: str) -> int:
    """Delete every active run tagged with grid `grid` in the experiment (its parent runs, points and
    finalizers; not the lab's baseline runs, which only borrow its recipe); MLflow's soft delete, restorable
    until its garbage collection. How many."""
    query = f"tags.`{contract.TAG_GRID}` = '{grid}'"
    runs = [run for run in mlflow.search_runs([experiment_id], filter_string=query, max_results=50000)
            if run.data.tags.get(contract.TAG_ROLE) != contract.ROLE_BASELINE]
    for run in runs:
        mlflow.delete_run(run.info.run_id)
    return len(runs)


class ParentRunFailed(Exception):
    """The parent run was created, then describing it failed: the run is ended FAILED."""

    def __init__(self, run_id: str, error: Exception) -> None:
        super().__init__(f"{type(error).__name__}: {error}")
        self.run_id = run_id


def _describe_parent_run(mlflow: MlflowClient, *, run_id: str, grid: GridSpec, points: list[GridPoint],
                         dataset_md5: str) -> None:
    params = {"grid": grid.name, "points": str(len(points)), "weights": grid.weights,
              "objective": f"{grid.objective_metric} ({grid.objective_direction})",
              **{f"axis.{name}": json.dumps(values) for name, values in grid.axes.items()},
              **{f"train.{name}": str(value) for name, value in grid.train.items()}}
    for key, value in params.items():
        mlflow.log_param(run_id, key, value)
    experiment_id = mlflow.get_run(run_id).info.experiment_id
    mlflow.set_tag(run_id, "mlflow.note.content",
                   parent_description(grid=grid, points=points, experiment_id=experiment_id))
    spec = {"spec": grid.to_dict(), "points": [p.to_dict() for p in points], "dataset_md5": dataset_md5}
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / contract.ARTIFACT_GRID_SPEC
        path.write_text(json.dumps(spec, indent=1, default=str))
        mlflow.log_artifact(run_id, str(path))


def parent_description(*, grid: GridSpec, points: list[GridPoint], experiment_id: str) -> str:
    """The parent run's description (Markdown, the run page's Description): what the grid is, where its
    report is, how to compare its children."""
    axes = ", ".join(f"`{name}` {values}" for name, values in grid.axes.items())
    query = f"{contract.UI_WORKFLOW_QUERY}&searchFilter=tags.`{contract.TAG_GRID}`%3D'{grid.name}'"
    return (
        f"**tp4 grid `{grid.name}`**: {len(points)} points over {axes}; objective `{grid.objective_metric}` "
        f"({grid.objective_direction}).\n\n"
        f"- The decision report: this run's artifact `{contract.ARTIFACT_REPORT_DIR}/decision.md` (and "
        f"`reports/{grid.name}/decision.md` in the project), written when every point has ended; "
        f"`python -m controller report {grid.name}` prints its summary.\n"
        f"- Compare the points: expand this run in the runs table, select its child runs and press "
        f"**Compare** (or open [the grid's runs](#/experiments/{experiment_id}/runs?{query})); the charts "
        f"view plots `epoch/mAP50-95` per point.\n"
        f"- Each child run is one point: its params, `epoch/*` curves, plots, weights and its model.")


def end_run(mlflow: MlflowClient, run_id: str, *, status: str, reason: str = "") -> bool:
    """End run `run_id` with `status` if it is still RUNNING, `reason` kept as the
    contract.TAG_CLOSED_BY tag; True when this call ended it."""
    if mlflow.get_run(run_id).info.status != RUNNING:
        return False
    if reason:
        mlflow.set_tag(run_id, contract.TAG_CLOSED_BY, reason)
    mlflow.set_terminated(run_id, status=status)
    return True


def missing_runs(mlflow: MlflowClient, run_ids: dict[str, str]) -> list[str]:
    """Of {what: run id}, what is not a FINISHED run in an active experiment (deleted, or gone
    from the store): "nothing to do" relies on these runs being there."""
    missing = []
    active: dict[str, bool] = {}
    for what, run_id in run_ids.items():
        try:
            run = mlflow.get_run(run_id)
        except Exception:  # RESOURCE_DOES_NOT_EXIST: purged, or another store
            missing.append(what)
            continue
        experiment_id = run.info.experiment_id
        if experiment_id not in active:
            active[experiment_id] = mlflow.get_experiment(experiment_id).lifecycle_stage == "active"
        if run.info.status != "FINISHED" or run.info.lifecycle_stage != "active" or not active[experiment_id]:
            missing.append(what)
    return missing


def running_runs(mlflow: MlflowClient, *, experiment_id: str, grid: str) -> list[Any]:
    """The RUNNING runs (parent and train) of grid `grid` in one experiment."""
    query = f"tags.`{contract.TAG_GRID}` = '{grid}' and attributes.status = '{RUNNING}'"
    return mlflow.search_runs([experiment_id], filter_string=query, max_results=5000)


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


def final_metrics(mlflow: MlflowClient, *, experiment_id: str, parent_run_id: str,
                  point: str) -> tuple[str | None, dict[str, float]]:
    """The newest FINISHED run of a point in this submission, and its final metrics."""
    for run in runs_of_point(mlflow, experiment_id=experiment_id, parent_run_id=parent_run_id, point=point):
        if run.info.status == "FINISHED":
            keep = (*contract.FINAL_METRICS, contract.METRIC_TRAIN_SECONDS)
            return run.info.run_id, {k: v for k, v in run.data.metrics.items() if k in keep}
    return None, {}


def latest_report(mlflow: MlflowClient, *, grid: str) -> tuple[str, Decision] | None:
    """The newest parent run of a grid that has a decision, from any experiment, and its decision.json
    (contract.decision: InvalidInput when a field the controller reads has the wrong type)."""
    query = f"tags.`{contract.TAG_ROLE}` = '{contract.ROLE_PARENT}' and tags.`{contract.TAG_GRID}` = '{grid}'"
    experiments = [e.experiment_id for e in mlflow.search_experiments()]
    for run in mlflow.search_runs(experiments, filter_string=query, order_by=["attributes.start_time DESC"]):
        if contract.TAG_DECISION not in run.data.tags:
            continue
        with tempfile.TemporaryDirectory() as folder:
            path = mlflow.download_artifacts(run.info.run_id, f"{contract.ARTIFACT_REPORT_DIR}/{DECISION_JSON}",
                                             folder)
            return run.info.run_id, read_decision(Path(path))
    return None
