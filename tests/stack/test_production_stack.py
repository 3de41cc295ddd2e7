"""The tiny grid against the production-like stack: `mlflow server` on Postgres, proxied artifacts
in S3, the dataset pulled by each job from the DVC S3 remote; then the faults a pod meets at start.

Real servers (devstack), started by the `stack` fixture; the controller and the jobs are processes
configured by environment variables only, as Kubernetes Jobs are.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from mlflow.tracking import MlflowClient

import contract
from devstack import Stack
from devstack.processes import free_port
from devstack.stack import ADMIN, JOBS
from jobs.common import tracking
from jobs.common.dataset import file_md5
from tests.helpers.stackfixtures import (
    DATASET,
    GridRun,
    controller,
    fresh_project,
    local_state,
    postgres_rows,
    push_copy,
    s3_object_key,
    stack_env,
    submit_grid,
    train_job,
)

pytestmark = pytest.mark.slow
STACK_AUTH = False
POINTS = ["train-0.005", "train-0.01"]


@pytest.fixture(scope="module")
def grid(stack: Stack, published: Path, tmp_path_factory: pytest.TempPathFactory) -> GridRun:
    return submit_grid(stack, published, tmp_path_factory.mktemp("project"))


@pytest.fixture(scope="module")
def mlflow(stack: Stack) -> MlflowClient:
    return tracking.make_client(uri=stack.tracking_uri)  # artifacts through the proxy, as the jobs do


def train_runs(mlflow: MlflowClient, experiment: str) -> list:
    found = mlflow.get_experiment_by_name(experiment)
    if found is None:
        return []
    return mlflow.search_runs([found.experiment_id], filter_string=f"tags.`{contract.TAG_ROLE}` = 'train'")


def test_grid_succeeds_with_jobs_configured_by_environment_only(grid: GridRun) -> None:
    assert grid.done.returncode == 0, grid.done.stdout[-3000:] + grid.done.stderr[-3000:]
    for point in POINTS:
        assert f"{point}: Succeeded" in grid.done.stdout
    assert "MLFLOW_S3_ENDPOINT_URL" not in grid.env  # the jobs get no MLflow artifact endpoint ...
    assert not any(k.startswith("MLFLOW_TRACKING_") for k in grid.env if k != contract.ENV_TRACKING_URI)


def test_each_job_pulled_the_pinned_dataset_from_the_s3_remote(grid: GridRun, published: Path) -> None:
    logs = {point: grid.job_log(point) for point in POINTS}
    pulls = [point for point, log in logs.items() if "is missing: dvc pull" in log and "remote 's3'" in log]
    assert pulls, logs  # the first job pulled; the other waited for it, then verified the same bytes
    for log in logs.values():
        assert "md5" in log and "verified" in log
    pinned = (published / f"{DATASET}.dvc").read_text()
    assert (grid.project / f"{DATASET}.dvc").read_text() == pinned
    assert any((grid.project / ".dvc" / "cache").rglob("*.dir"))  # DVC's cache was filled from the remote


def test_runs_metrics_and_artifacts_are_read_back_from_the_server(grid: GridRun, mlflow: MlflowClient) -> None:
    runs = train_runs(mlflow, "tiny-stack")
    assert sorted(r.data.tags[contract.TAG_POINT] for r in runs) == POINTS
    for run in runs:
        assert run.info.status == "FINISHED"
        assert run.info.artifact_uri.startswith("mlflow-artifacts:/")  # proxied: the client never sees s3://
        assert all(metric in run.data.metrics for metric in contract.FINAL_METRICS)
        assert [m.step for m in mlflow.get_metric_history(run.info.run_id, "epoch/mAP50-95")] == [1]
        weights = {a.path for a in mlflow.list_artifacts(run.info.run_id, contract.ARTIFACT_WEIGHTS_DIR)}
        assert weights == {"weights/best.pt", "weights/last.pt"}
    parent = mlflow.get_run(runs[0].data.tags["mlflow.parentRunId"])
    assert parent.info.status == "FINISHED" and parent.data.tags.get(contract.TAG_DECISION) in ("YES", "NO")
    report = {a.path for a in mlflow.list_artifacts(parent.info.run_id, contract.ARTIFACT_REPORT_DIR)}
    assert {"report/decision.md", "report/runs.csv"} <= report


def test_artifacts_are_objects_in_the_bucket_that_only_the_server_may_write(
        grid: GridRun, stack: Stack, mlflow: MlflowClient) -> None:
    bucket = stack.config.artifacts_bucket
    keys = set()
    for page in stack.s3.client(principal=ADMIN).get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys |= {o["Key"] for o in page.get("Contents", [])}
    for run in train_runs(mlflow, "tiny-stack"):
        prefix = f"{run.info.experiment_id}/{run.info.run_id}/artifacts"
        assert {f"{prefix}/weights/best.pt", f"{prefix}/results.csv"} <= keys
    assert any(k.endswith("/artifacts/report/decision.md") for k in keys)
    with pytest.raises(ClientError, match="AccessDenied"):  # the jobs' keys could not have put them there
        stack.s3.client(principal=JOBS).list_objects_v2(Bucket=bucket)


def test_runs_are_rows_in_postgres(grid: GridRun, stack: Stack, mlflow: MlflowClient) -> None:
    rows = postgres_rows(stack, "SELECT r.run_uuid, r.status FROM runs r JOIN experiments e "
                                "ON r.experiment_id = e.experiment_id WHERE e.name = %s", "tiny-stack")
    expected = {r.info.run_id for r in train_runs(mlflow, "tiny-stack")}
    assert expected <= {run_id for run_id, _ in rows}
    assert len(rows) == 3 and {status for _, status in rows} == {"FINISHED"}  # the parent and two points
    metrics = postgres_rows(stack, "SELECT count(*) FROM latest_metrics WHERE run_uuid = ANY(%s)", list(expected))
    assert metrics[0][0] >= 2 * len(contract.FINAL_METRICS)
    assert postgres_rows(stack, "SELECT name FROM registered_models") == [("tiny-person",)]


# --- faults at the start of a job ------------------------------------------------------------


@pytest.fixture(scope="module")
def label_and_image(published: Path) -> tuple[Path, Path]:
    folder = published / DATASET
    return next((folder / "labels" / "val").glob("*.txt")), next((folder / "images" / "val").glob("*.jpg"))


def test_missing_dataset_object_fails_before_training_naming_the_file(
        stack: Stack, published: Path, label_and_image: tuple[Path, Path], mlflow: MlflowClient,
        tmp_path: Path) -> None:
    label, _ = label_and_image
    url = push_copy(published, stack=stack, prefix="missing")
    stack.s3.client(principal=ADMIN).delete_object(
        Bucket=stack.config.dvc_bucket, Key=s3_object_key(file_md5(path=label), prefix="missing"))
    project = fresh_project(published, tmp_path / "project")
    done = train_job(project, "--exp-name", "faults-missing", env=stack_env(stack, TP4_DVC_REMOTE_URL=url))
    assert done.returncode == contract.EXIT_BAD_INPUT, done.stdout + done.stderr
    assert f"not fetched: labels/val/{label.name}" in done.stderr
    assert mlflow.get_experiment_by_name("faults-missing") is None  # no run: it failed before training


def test_corrupted_dataset_object_fails_before_training_naming_the_file(
        stack: Stack, published: Path, label_and_image: tuple[Path, Path], mlflow: MlflowClient,
        tmp_path: Path) -> None:
    _, image = label_and_image
    url = push_copy(published, stack=stack, prefix="corrupted")
    stack.s3.client(principal=ADMIN).put_object(
        Bucket=stack.config.dvc_bucket, Key=s3_object_key(file_md5(path=image), prefix="corrupted"),
        Body=image.read_bytes()[:-10])
    project = fresh_project(published, tmp_path / "project")
    done = train_job(project, "--exp-name", "faults-corrupted", env=stack_env(stack, TP4_DVC_REMOTE_URL=url))
    assert done.returncode == contract.EXIT_BAD_INPUT, done.stdout + done.stderr
    assert f"modified:   images/val/{image.name}" in done.stderr
    assert mlflow.get_experiment_by_name("faults-corrupted") is None


def test_s3_endpoint_down_at_job_start_is_retried_then_named(stack: Stack, published: Path, tmp_path: Path) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    project = fresh_project(published, tmp_path / "project")
    env = stack_env(stack, AWS_ENDPOINT_URL=down, TP4_CONNECT_TIMEOUT_S="2")
    done = train_job(project, "--exp-name", "faults-s3-down", env=env)
    assert done.returncode == contract.EXIT_FAILED, done.stdout + done.stderr
    assert f"S3 endpoint {down} did not answer within 2 s" in done.stderr
    assert "retrying in" in done.stderr


@pytest.fixture(scope="class")
def server_down(stack: Stack, grid: GridRun) -> Iterator[Stack]:
    """The tracking server stopped (after the grid ran); started again at the end if a test did not."""
    stack.mlflow.stop()
    yield stack
    if stack.mlflow.process is None:
        stack.mlflow.start()


@pytest.mark.usefixtures("server_down")
class TestTrackingServerDownAtStart:
    def test_job_retries_then_fails_naming_the_server_and_touches_nothing(
            self, stack: Stack, published: Path, tmp_path: Path) -> None:
        project = fresh_project(published, tmp_path / "project")
        started = time.monotonic()
        done = train_job(project, "--exp-name", "faults-server-down", env=stack_env(stack, TP4_CONNECT_TIMEOUT_S="3"))
        assert done.returncode == contract.EXIT_FAILED, done.stdout + done.stderr
        assert f"MLflow tracking server {stack.tracking_uri} did not answer within 3 s" in done.stderr
        assert "retrying in" in done.stderr and time.monotonic() - started < 60
        assert not (project / DATASET).exists()  # the server is checked before anything else

    def test_controller_refuses_and_starts_nothing(self, stack: Stack, published: Path, tmp_path: Path) -> None:
        project = fresh_project(published, tmp_path / "project")
        done = controller(project, "submit-grid", "grid.yaml", env=stack_env(stack, TP4_CONNECT_TIMEOUT_S="3"))
        assert done.returncode == contract.EXIT_BAD_INPUT, done.stdout + done.stderr
        assert f"{stack.tracking_uri} did not answer within 3 s" in (done.stdout + done.stderr).replace("\n", "")
        assert local_state(project) == []

    def test_controller_goes_on_when_the_server_comes_back(self, stack: Stack, grid: GridRun) -> None:
        process = subprocess.Popen([sys.executable, "-m", "controller", "--root", str(grid.project), "submit-grid",
                                    "grid.yaml"], cwd=grid.project, env=stack_env(stack, TP4_CONNECT_TIMEOUT_S="120"),
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        time.sleep(3)
        assert process.poll() is None, process.communicate()[0]
        stack.mlflow.start()
        output = process.communicate(timeout=300)[0]
        assert process.returncode == 0 and "nothing to do" in output, output
        assert "retrying in" in output


def test_no_run_was_left_running(stack: Stack, grid: GridRun) -> None:
    assert postgres_rows(stack, "SELECT count(*) FROM runs WHERE status = 'RUNNING'") == [(0,)]
