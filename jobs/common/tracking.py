"""MLflow adapter shared by the jobs (train, finalize) and the controller.

Where runs go: `MLFLOW_TRACKING_URI` when set (an `mlflow server`, with
`MLFLOW_TRACKING_USERNAME`/`PASSWORD` for basic auth, read by MLflow itself),
else the embedded default `default_tracking_uri()`: a SQLite file
`<project>/.tp4/mlflow.db`, whose experiments keep their artifacts in
`<project>/.tp4/mlartifacts/<experiment>` (both from contract.py, shared
with the controller). For any `sqlite:///` store the artifacts go beside the
database (`<db dir>/mlartifacts/<experiment>`, which is the contract's
location for the embedded store), never into the working directory (MLflow's
own default, `./mlruns`); a server decides its artifact location itself
(proxied artifacts: clients hold no S3 keys, and `make_client` keeps every
artifact transfer on the server's proxy, see tracking_probe.PROXIED_TRANSFERS).

`wait_for_server` checks, before a job does anything else, that a tracking
server (an `http(s)://` URI) answers an authenticated request: it retries
with backoff while the server is down (`TP4_CONNECT_TIMEOUT_S`, see
tracking_probe) and fails at once, with `BadInput`, on rejected credentials.

`tracked_run` starts a run (a child of a parent run when given) and ends it
FINISHED, FAILED or KILLED on every exit path, SIGTERM and SIGINT included.

Imports neither torch nor ultralytics, so the controller may use it.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from filelock import FileLock
from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

import contract
import tracking_probe
from contract.credentials import credentials_problem
from jobs.common import termination
from jobs.common.errors import BadInput, Terminated

MAX_PARAM_LENGTH = 6000  # MLflow's limit on a param value
FINISHED = RunStatus.to_string(RunStatus.FINISHED)
FAILED = RunStatus.to_string(RunStatus.FAILED)
KILLED = RunStatus.to_string(RunStatus.KILLED)
AUTH_ERRORS = {"UNAUTHENTICATED", "PERMISSION_DENIED"}
NO_SUCH_RUN = {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"}  # what MLflow answers for an unknown run id

def project_root() -> Path:
    """The project folder: where contract.py lives, for jobs and controller alike."""
    return Path(contract.__file__).resolve().parents[1]


def default_tracking_uri(*, root: Path | None = None) -> str:
    """The embedded default store: `sqlite:///<project>/.tp4/mlflow.db` (absolute)."""
    return contract.embedded_tracking_uri(root or project_root())


def tracking_uri() -> str:
    """`MLFLOW_TRACKING_URI` when set, else `default_tracking_uri()`; `BadInput` (exit 2) when it
    carries credentials (contract.credentials: the controller's rule too)."""
    uri = os.environ.get(contract.ENV_TRACKING_URI) or default_tracking_uri()
    if problem := credentials_problem(uri):
        raise BadInput(str(problem))
    return uri


def local_artifact_root(*, uri: str) -> Path | None:
    """Where a SQLite store keeps artifacts (`<db dir>/mlartifacts`); None otherwise (contract.sqlite_artifact_root)."""
    return contract.sqlite_artifact_root(uri)


redact_uri = tracking_probe.redact_uri


def wait_for_server(*, uri: str | None = None) -> None:
    """For a tracking server: wait until it answers (bounded, `tracking_probe.Unreachable`),
    fail fast on bad credentials (`BadInput`)."""
    try:
        tracking_probe.wait_for_server(uri=uri or tracking_uri())
    except (tracking_probe.Refused, tracking_probe.BadTimeout) as exc:
        raise BadInput(str(exc)) from exc


def make_client(*, uri: str | None = None) -> MlflowClient:
    """A client on `uri` (default `tracking_uri()`); for a SQLite store, creates its folder, then the store
    itself under its lock (contract.sqlite_store_lock)."""
    tracking_probe.prefer_proxied_transfers()
    uri = uri or tracking_uri()
    if root := local_artifact_root(uri=uri):
        root.parent.mkdir(parents=True, exist_ok=True)
    lock = contract.sqlite_store_lock(uri)
    if lock is None:
        return MlflowClient(tracking_uri=uri)
    # MLflow creates and migrates a SQLite store on first use; two processes doing it at once race
    # (the controller takes the same lock: controller.tracking.store_lock)
    with FileLock(lock, fallback_to_soft=False, preserve_lock_file=True):
        client = MlflowClient(tracking_uri=uri)
        client.search_experiments(max_results=1)
        client.search_registered_models(max_results=1)
    return client


def ensure_experiment(*, client: MlflowClient, name: str) -> str:
    """The id of experiment `name`, created if missing (safe under races), its artifacts where
    contract.artifact_location puts them (a SQLite store: beside the database; a name like '../x' stays inside)."""
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        try:
            location = contract.artifact_location(client.tracking_uri, name)
            return client.create_experiment(name, artifact_location=location,
                                            tags={contract.TAG_EXPERIMENT_KIND: contract.EXPERIMENT_KIND_TRAINING})
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            experiment = client.get_experiment_by_name(name)
    if experiment is None or experiment.lifecycle_stage == "deleted":
        raise BadInput(f"MLflow experiment {name!r} is deleted: restore it or choose another name")
    return experiment.experiment_id


def parent_experiment_id(*, client: MlflowClient, parent_run_id: str) -> str:
    """The experiment of the parent run; BadInput when the server says there is no such run. Any other
    failure (the server throttling or failing past MLflow's own retries) propagates: exit 1, not bad input."""
    try:
        parent = client.get_run(parent_run_id)
    except MlflowException as exc:
        if exc.error_code not in NO_SUCH_RUN:
            raise
        raise BadInput(
            f"{contract.ENV_PARENT_RUN_ID}={parent_run_id}: no such run in {redact_uri(client.tracking_uri)}"
        ) from exc
    if parent.info.lifecycle_stage == "deleted":
        raise BadInput(f"{contract.ENV_PARENT_RUN_ID}={parent_run_id}: the parent run is deleted")
    return parent.info.experiment_id


@contextmanager
def tracked_run(
    *,
    client: MlflowClient,
    experiment_id: str,
    run_name: str | None = None,
    parent_run_id: str | None = None,
    tags: Mapping[str, Any] | None = None,
) -> Iterator[str]:
    """Create a run, yield its id, and always end it.

    FINISHED when the block completes; KILLED on SIGTERM/SIGINT (raised as
    `Terminated`/`KeyboardInterrupt` inside the block); FAILED on any other
    exception, which is re-raised.
    """
    from mlflow.tracking.context.registry import resolve_tags

    own = {k: str(v) for k, v in (tags or {}).items()}
    if parent_run_id:
        own[MLFLOW_PARENT_RUN_ID] = parent_run_id
    if run_name:
        own[MLFLOW_RUN_NAME] = run_name
    with termination.terminate_on_signals():
        run = client.create_run(experiment_id, tags=resolve_tags(own), run_name=run_name)
        run_id = run.info.run_id
        try:
            yield run_id
        except BaseException as exc:
            _end_quietly(client=client, run_id=run_id, status=status_for(exc=exc))
            raise
        client.set_terminated(run_id, status=FINISHED)


def status_for(*, exc: BaseException) -> str:
    """KILLED for a termination signal, FAILED for anything else."""
    if isinstance(exc, (Terminated, KeyboardInterrupt)) or termination.received():
        return KILLED
    return FAILED


def _end_quietly(*, client: MlflowClient, run_id: str, status: str) -> None:
    try:
        client.set_terminated(run_id, status=status)
    except Terminated:
        client.set_terminated(run_id, status=KILLED)
        raise
    except Exception as exc:  # the original error matters more than this one
        print(f"WARNING: could not mark MLflow run {run_id} {status}: {exc}", file=sys.stderr)


def log_params(*, client: MlflowClient, run_id: str, params: Mapping[str, Any]) -> None:
    """Log params (values as strings, cut to MLflow's limit) in batches."""
    items = [Param(key, str(value)[:MAX_PARAM_LENGTH]) for key, value in params.items()]
    client.log_batch(run_id, params=items)


def log_tags(*, client: MlflowClient, run_id: str, tags: Mapping[str, Any]) -> None:
    """Set tags (values as strings)."""
    client.log_batch(run_id, tags=[RunTag(key, str(value)) for key, value in tags.items()])


def log_metrics(
    *, client: MlflowClient, run_id: str, metrics: Mapping[str, float], step: int | None = None
) -> None:
    """Log metrics at `step` (0 when None); non-numeric values are an error."""
    now = int(time.time() * 1000)
    items = [Metric(key, float(value), now, step or 0) for key, value in metrics.items()]
    client.log_batch(run_id, metrics=items)


def missing_metrics(*, client: MlflowClient, run_id: str, names: tuple[str, ...]) -> list[str]:
    """Which of `names` the run lacks or holds as NaN/inf."""
    logged = client.get_run(run_id).data.metrics
    return [name for name in names if name not in logged or not math.isfinite(logged[name])]
