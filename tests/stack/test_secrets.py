"""No secret on the way: a tracking URI with credentials in it is refused before anything starts (the
controller and the jobs, exit 2, the password never echoed); what the stack's servers print reaches
their logs redacted; private files and folders are their owner's only. Real child processes, no server."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import contract
from contract.errors import InvalidInput
from controller.credentials import refuse_credentials_in_uri
from devstack.private import REDACTED, Redactor, private_folder, write_private
from devstack.processes import start_logged, stop_process
from tests.helpers.gridfiles import lab_grid, write_grid
from tests.helpers.paths import REPO
from tests.helpers.stackfixtures import local_state

PASSWORD = "pa55-w0rd-of-the-test"
CREDENTIALED = [
    (f"http://alice:{PASSWORD}@mlflow.tp4:5000", "mlflow.tp4:5000"),
    (f"https://alice:{PASSWORD}@mlflow.example.org/prefix", "mlflow.example.org"),
    (f"http://:{PASSWORD}@10.0.0.7:5000", "10.0.0.7:5000"),  # a token as the password
    (f"http://{PASSWORD}@mlflow", "mlflow"),  # a token as the user name
    (f"postgresql+psycopg2://mlflow:{PASSWORD}@db:5432/mlflow", "db:5432"),  # a database store
    (f"HTTP://alice:{PASSWORD}@[::1]:5000", "[::1]:5000"),
]
PLAIN = ["http://mlflow.tp4:5000", "https://mlflow.example.org/prefix/@/runs", "sqlite:////tmp/at@sign/mlflow.db",
         "file:///tmp/mlruns", "databricks", "http://mlflow:5000/?user=a@b", "mlruns"]


@pytest.mark.parametrize(("uri", "host"), CREDENTIALED)
def test_credentials_in_the_tracking_uri_are_refused_naming_the_host_only(uri: str, host: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        refuse_credentials_in_uri(uri)
    [problem] = refused.value.problems
    assert problem.location == contract.ENV_TRACKING_URI
    assert f"host {host} carries credentials" in problem.message
    assert contract.ENV_TRACKING_USERNAME in problem.message and contract.ENV_TRACKING_PASSWORD in problem.message
    assert PASSWORD not in str(refused.value) and "alice" not in str(refused.value)


@pytest.mark.parametrize("uri", PLAIN)
def test_uris_without_credentials_pass(uri: str) -> None:
    refuse_credentials_in_uri(uri)


def test_the_location_names_the_variable_it_came_from() -> None:
    with pytest.raises(InvalidInput) as refused:
        refuse_credentials_in_uri(f"http://u:{PASSWORD}@h", variable="TP4_JOBS_TRACKING_URI")
    assert refused.value.problems[0].location == "TP4_JOBS_TRACKING_URI"


# --- the whole program: controller and jobs -------------------------------------------------------


def _env(uri: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "TP4_", "AWS_"))}
    return env | {contract.ENV_TRACKING_URI: uri, "YOLO_OFFLINE": "true"}


def _controller(project: Path, *args: str, uri: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "controller", "--root", str(project), *args], cwd=project,
                          env=_env(uri), capture_output=True, text=True, timeout=300)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    write_grid(tmp_path, lab_grid())
    return tmp_path


def test_render_refuses_the_uri_and_renders_nothing(project: Path) -> None:
    uri = f"http://alice:{PASSWORD}@mlflow.tp4:5000"
    done = _controller(project, "render", "grid.yaml", uri=uri)
    assert done.returncode == contract.EXIT_BAD_INPUT, done.stdout + done.stderr
    assert done.stdout == ""  # nothing rendered: `render > jobs.yaml` writes no manifest
    assert f"{contract.ENV_TRACKING_URI}: the URI of host mlflow.tp4:5000 carries credentials" in done.stderr
    assert PASSWORD not in done.stdout + done.stderr
    plain = _controller(project, "render", "grid.yaml", uri="http://mlflow.tp4:5000")  # the same grid, no credentials
    assert plain.returncode == 0 and "value: http://mlflow.tp4:5000" in plain.stdout, plain.stderr


def test_submit_grid_refuses_the_uri_and_starts_nothing(project: Path) -> None:
    done = _controller(project, "submit-grid", "grid.yaml", uri=f"http://tp4:{PASSWORD}@127.0.0.1:9")
    assert done.returncode == contract.EXIT_BAD_INPUT, done.stdout + done.stderr
    assert "the URI of host 127.0.0.1:9 carries credentials" in (done.stdout + done.stderr).replace("\n", "")
    assert PASSWORD not in done.stdout + done.stderr
    assert local_state(project) == []


@pytest.mark.slow
def test_a_job_refuses_the_uri_before_anything_else(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "jobs.train", "--data", "data/tiny_coco/data.yaml", "--model",
                           "yolov8n.pt", "--exp-name", "refused"], cwd=tmp_path, capture_output=True, text=True,
                          env=_env(f"http://tp4:{PASSWORD}@127.0.0.1:9") | {"PYTHONPATH": str(REPO)}, timeout=300)
    assert done.returncode == contract.EXIT_BAD_INPUT, done.stdout + done.stderr
    assert f"{contract.ENV_TRACKING_URI}: the URI of host " in done.stdout + done.stderr
    assert "carries credentials" in done.stdout + done.stderr
    assert PASSWORD not in done.stdout + done.stderr
    assert list(tmp_path.iterdir()) == []  # nothing pulled, trained or tracked


# --- the stack: redaction, private files ------------------------------------------------------------


def test_redactor_replaces_each_secret_plain_and_url_quoted() -> None:
    redactor = Redactor()
    password = redactor.new_password()
    redactor.add("s3cret/with+chars=")
    text = f"postgresql://u:{password}@h/db key=s3cret/with+chars= quoted=s3cret%2Fwith%2Bchars%3D"
    assert redactor.redact(text) == f"postgresql://u:{REDACTED}@h/db key={REDACTED} quoted={REDACTED}"
    assert password in redactor.secrets and len(password) >= 12
    with pytest.raises(ValueError, match="cannot be redacted"):
        redactor.add("s3")  # would redact ordinary words


def test_a_child_that_prints_a_secret_logs_it_redacted(tmp_path: Path) -> None:
    redactor = Redactor()
    redactor.add(PASSWORD)
    log = tmp_path / "server.log"
    process = start_logged([sys.executable, "-c", f"import sys; print('connecting to postgresql://u:{PASSWORD}@db'); "
                            f"print('err {PASSWORD}', file=sys.stderr)"], log=log, redactor=redactor)
    process.wait(timeout=60)
    stop_process(process)  # drains the log
    assert log.read_text() == f"connecting to postgresql://u:{REDACTED}@db\nerr {REDACTED}\n"
    assert stat.S_IMODE(log.stat().st_mode) == 0o600


def test_the_supervisors_own_output_is_redacted_down_to_its_file_descriptors(tmp_path: Path) -> None:
    script = textwrap.dedent(f"""
        import logging, os, subprocess, sys
        from devstack.private import Redactor, redacted_output
        early = logging.StreamHandler(sys.stderr)  # bound before the redirection
        redactor = Redactor()
        with redacted_output(redactor):
            redactor.add({PASSWORD!r})
            print("print {PASSWORD}", flush=True)
            os.write(2, b"fd2 {PASSWORD}\\n")
            early.handle(logging.makeLogRecord({{"msg": "handler {PASSWORD}"}}))
            subprocess.run(["echo", "child {PASSWORD}"], check=True)
        print("after {PASSWORD}")
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = sorted(done.stdout.splitlines())
    assert lines == ["after " + PASSWORD, f"child {REDACTED}", f"fd2 {REDACTED}", f"handler {REDACTED}",
                     f"print {REDACTED}"]  # all of it to the former stdout (the log), redacted while inside


def test_private_files_and_folders_are_their_owners_only(tmp_path: Path) -> None:
    folder = private_folder(tmp_path / "private")
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    path = folder / "credentials.json"
    path.write_text("old")
    path.chmod(0o644)
    write_private(path=path, text="{}")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and path.read_text() == "{}"


def test_the_cluster_controller_refuses_credentials_in_its_tracking_uris() -> None:
    from controller.cluster.settings import ENV_JOBS_TRACKING_URI, settings_from_env

    for env in ({"MLFLOW_TRACKING_URI": "http://tp4:s3cret-pw@mlflow:5000"},
                {"MLFLOW_TRACKING_URI": "http://mlflow:5000", ENV_JOBS_TRACKING_URI: "http://tp4:s3cret-pw@mlflow:5000"}):
        with pytest.raises(InvalidInput) as refused:
            settings_from_env(env)
        assert "s3cret-pw" not in str(refused.value) and "MLFLOW_TRACKING_USERNAME" in str(refused.value)
