"""The tiny grid against the stack with MLflow's basic-auth app: the controller and the jobs
authenticate with MLFLOW_TRACKING_USERNAME/PASSWORD from the environment; wrong or missing
credentials fail at once (exit 2, the tracking URI named), before anything is pulled, trained or started."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests

import contract
import tracking_probe
from devstack import Stack
from jobs.common import tracking
from tests.helpers.stackfixtures import (DATASET, GridRun, controller, fresh_project, postgres_rows, published,  # noqa: F401
                                 stack, stack_env, submit_grid, train_job)

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
    done = controller(project, "submit-grid", "grid.yaml", env=stack_env(stack, MLFLOW_TRACKING_PASSWORD="wrong-password"))
    assert done.returncode == contract.EXIT_BAD_INPUT, done.stdout + done.stderr
    output = done.stdout.replace("\n", "")
    assert f"the MLflow tracking server {stack.tracking_uri} rejected the credentials of user 'tp4'" in output
    assert not (project / contract.EMBEDDED_DIR / "grids").exists()
    assert postgres_rows(stack, "SELECT count(*) FROM runs") == before
    assert postgres_rows(stack, "SELECT count(*) FROM experiments WHERE name = 'auth-refused'") == [(0,)]
