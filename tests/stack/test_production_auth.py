"""The tiny grid against the stack with MLflow's basic-auth app: the controller and the jobs
authenticate with MLFLOW_TRACKING_USERNAME/PASSWORD from the environment; wrong or missing
credentials fail at once (exit 2, the tracking URI named), before anything is pulled, trained or started.
No secret of the stack (passwords, S3 keys) is in any artifact of the grid: logs, manifests, MLflow params
and tags, reports, local state, or any process's command line."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import requests

import contract
import tracking_probe
from devstack import Stack
from jobs.common import tracking
from tests.helpers.stackfixtures import (
    DATASET,
    GridRun,
    command_lines,
    controller,
    fresh_project,
    local_state,
    postgres_rows,
    stack_env,
    submit_grid,
    train_job,
)

pytestmark = pytest.mark.slow
STACK_AUTH = True


@pytest.fixture(scope="module")
def grid(stack: Stack, published: Path, tmp_path_factory: pytest.TempPathFactory) -> GridRun:
    return submit_grid(stack, published, tmp_path_factory.mktemp("project"))


def test_grid_runs_with_credentials_from_the_environment(grid: GridRun, stack: Stack,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    assert grid.done.returncode == 0, grid.done.stdout[-3000:] + grid.done.stderr[-3000:]
    assert grid.env[contract.ENV_TRACKING_USERNAME] == "tp4"
    for name, value in stack.client_env().items():
        monkeypatch.setenv(name, value)
    mlflow = tracking.make_client(uri=stack.tracking_uri)
    experiment = mlflow.get_experiment_by_name("tiny-stack")
    runs = mlflow.search_runs([experiment.experiment_id])
    assert len(runs) == 3 and {r.info.status for r in runs} == {"FINISHED"}
    assert {r.data.tags.get(contract.TAG_ROLE) for r in runs} == {contract.ROLE_PARENT, contract.ROLE_TRAIN}
    parent = next(r for r in runs if r.data.tags[contract.TAG_ROLE] == contract.ROLE_PARENT)
    assert "report/decision.md" in {a.path for a in mlflow.list_artifacts(parent.info.run_id, "report")}
    assert mlflow.get_registered_model("tiny-person").aliases.get("challenger")


def test_the_server_refuses_anonymous_requests(grid: GridRun, stack: Stack) -> None:
    response = requests.get(f"{stack.tracking_uri}{tracking_probe.PROBE_PATH}", timeout=10)
    assert response.status_code == 401


@pytest.mark.parametrize(("password", "named"), [("wrong-password", "rejected the credentials of user 'tp4'"),
                                                 (None, "requires authentication")])
def test_job_with_bad_credentials_fails_at_once(password: str | None, named: str, stack: Stack, published: Path,
                                                tmp_path: Path) -> None:
    env = stack_env(stack, MLFLOW_TRACKING_PASSWORD=password or "")
    if password is None:
        del env[contract.ENV_TRACKING_USERNAME], env[contract.ENV_TRACKING_PASSWORD]
    project = fresh_project(published, tmp_path / "project")
    started = time.monotonic()
    done = train_job(project, "--exp-name", "auth-refused", env=env)
    seconds = time.monotonic() - started
    assert done.returncode == contract.EXIT_BAD_INPUT, done.stdout + done.stderr
    assert f"MLflow tracking server {stack.tracking_uri} {named}" in done.stderr
    assert "retrying" not in done.stderr and seconds < 60  # no wait: a refusal is definite
    assert not (project / DATASET).exists()  # nothing pulled, nothing trained


def test_controller_with_wrong_password_starts_nothing(grid: GridRun, stack: Stack, published: Path,
                                                       tmp_path: Path) -> None:
    before = postgres_rows(stack, "SELECT count(*) FROM runs")
    project = fresh_project(published, tmp_path / "project", name="refused", experiment="auth-refused")
    env = stack_env(stack, MLFLOW_TRACKING_PASSWORD="wrong-password")
    done = controller(project, "submit-grid", "grid.yaml", env=env)
    assert done.returncode == contract.EXIT_BAD_INPUT, done.stdout + done.stderr
    output = (done.stdout + done.stderr).replace("\n", "")  # the message is on stderr
    assert f"the MLflow tracking server {stack.tracking_uri} rejected the credentials of user 'tp4'" in output
    assert local_state(project) == []
    assert postgres_rows(stack, "SELECT count(*) FROM runs") == before
    assert postgres_rows(stack, "SELECT count(*) FROM experiments WHERE name = 'auth-refused'") == [(0,)]


def _text_files(folder: Path, *, skip: tuple[str, ...] = ()) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and not set(p.relative_to(folder).parts) & set(skip)]


def test_no_secret_in_any_artifact_of_the_grid(grid: GridRun, stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    assert grid.done.returncode == 0, grid.done.stdout[-3000:] + grid.done.stderr[-3000:]
    secrets = stack.redactor.secrets
    assert stack.postgres is not None and stack.admin is not None
    for known in (grid.env[contract.ENV_TRACKING_PASSWORD], grid.env[contract.ENV_S3_SECRET_KEY],
                  stack.postgres.password, stack.admin.password):  # the test can fail: it looks for these
        assert known in secrets
    leaks: dict[str, int] = {}

    def look(where: str, text: str) -> None:
        if hits := sum(secret in text for secret in secrets):
            leaks[where] = hits  # where, and how many: never the secret itself

    # the stack's own files while it runs (its Postgres cluster and private folder aside)
    stack_files = _text_files(stack.config.folder, skip=("pgdata", "private"))
    assert {"mlflow.log", "postgres.log"} <= {p.name for p in stack_files}
    for path in stack_files:
        look(f"stack: {path.name}", path.read_text(errors="replace"))
    # the project: Job logs, the local state, the reports (the dataset and DVC's cache aside)
    project_files = _text_files(grid.project, skip=("data", "cache"))
    job_logs = [p for p in project_files if p.suffix == ".log" and "logs" in p.parts]
    assert len(job_logs) >= 3 and any("reports" in p.parts for p in project_files)  # 2 points and the finalizer
    for path in project_files:
        look(f"project: {path.relative_to(grid.project)}", path.read_text(errors="replace"))
    look("submit-grid output", grid.done.stdout + grid.done.stderr)
    # the manifests, rendered with the same environment
    rendered = controller(grid.project, "render", "grid.yaml", env=grid.env)
    assert rendered.returncode == 0 and "kind: Job" in rendered.stdout, rendered.stderr
    look("render", rendered.stdout + rendered.stderr)
    # MLflow: params and tags of every run, tags and sources of every model version
    for name, value in stack.client_env().items():
        monkeypatch.setenv(name, value)
    mlflow = tracking.make_client(uri=stack.tracking_uri)
    experiments = [e.experiment_id for e in mlflow.search_experiments()]
    runs = mlflow.search_runs(experiments)
    assert len(runs) >= 3
    for run in runs:
        look(f"run {run.info.run_name}", json.dumps([run.data.params, run.data.tags, run.info.artifact_uri]))
    for version in mlflow.search_model_versions():
        look(f"model version {version.name}/{version.version}", json.dumps([version.tags, version.source]))
    # every process's command line: sampled while the grid ran (the stack, the controller, the Jobs), and now
    seen = grid.command_lines + command_lines()
    assert any("mlflow server" in line for line in seen) and any("jobs.train" in line for line in seen)
    assert any("postgres -D" in line for line in seen)
    look("ps -eo args", "\n".join(seen))
    assert leaks == {}
