"""The developers' stack: what the server and the clients are given, and `python -m devstack up/env/down`
starting and stopping real servers, with no secret on a command line, in a log, or left after `down`."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import time
from pathlib import Path

import boto3
import psycopg2
import pytest
import requests
from botocore.exceptions import ClientError

import contract
from devstack.envfile import CREDENTIALS_FILE, ENV_FILE, STATE_FILE, alive, export_lines, read_state
from devstack.mlflow_server import (
    ArtifactStore,
    AuthSettings,
    Credentials,
    ServerSettings,
    auth_ini,
    command,
    environment,
)
from devstack.s3 import Keys
from devstack.stack import client_env
from tests.helpers.paths import REPO
from tests.helpers.stackfixtures import stack_folder

SETTINGS = ServerSettings(host="127.0.0.1", port=5999, backend_uri="postgresql+psycopg2://u:p@127.0.0.1:5432/mlflow",
                          artifacts_destination="s3://tp4-mlflow-artifacts")
STORE = ArtifactStore(endpoint="http://127.0.0.1:9000", region="us-east-1", access_key="SERVER",
                      secret_key="server-secret")
AUTH = AuthSettings(ini_path=Path("/x/basic_auth.ini"), admin=Credentials("admin", "admin-password1"), secret_key="k")


def test_server_command_is_one_worker_proxying_artifacts_and_holds_no_secret() -> None:
    argv = command(SETTINGS)
    assert argv[1:2] == ["server"] and Path(argv[0]).name == "mlflow"
    flags = dict(zip(argv[2::2], argv[3::2], strict=True))
    assert flags == {"--host": "127.0.0.1", "--port": "5999", "--workers": "1",
                     "--artifacts-destination": "s3://tp4-mlflow-artifacts"}  # the backend URI is in the environment
    auth = command(ServerSettings(**{**SETTINGS.__dict__, "auth": AUTH, "allowed_hosts": ("mlflow.tp4", "10.*")}))
    assert auth[-4:] == ["--allowed-hosts", "mlflow.tp4,10.*", "--app-name", "basic-auth"]


def test_only_the_server_holds_the_artifact_store_keys() -> None:
    caller = {"PATH": "/bin", "MLFLOW_TRACKING_PASSWORD": "client", "AWS_ACCESS_KEY_ID": "JOBS",
              "AWS_PROFILE": "dev", "TP4_DVC_REMOTE": "s3", "MLFLOW_S3_ENDPOINT_URL": "http://elsewhere"}
    env = environment(base=caller, settings=SETTINGS, store=STORE)
    assert env == {"PATH": "/bin", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
                   "MLFLOW_BACKEND_STORE_URI": SETTINGS.backend_uri,
                   "MLFLOW_S3_ENDPOINT_URL": "http://127.0.0.1:9000", "AWS_DEFAULT_REGION": "us-east-1",
                   "AWS_ACCESS_KEY_ID": "SERVER", "AWS_SECRET_ACCESS_KEY": "server-secret"}
    with_auth = environment(base={}, settings=ServerSettings(**{**SETTINGS.__dict__, "auth": AUTH}), store=STORE)
    assert {k: with_auth[k] for k in ("MLFLOW_AUTH_CONFIG_PATH", "MLFLOW_AUTH_ADMIN_USERNAME",
                                      "MLFLOW_FLASK_SERVER_SECRET_KEY")} == {
        "MLFLOW_AUTH_CONFIG_PATH": "/x/basic_auth.ini", "MLFLOW_AUTH_ADMIN_USERNAME": "admin",
        "MLFLOW_FLASK_SERVER_SECRET_KEY": "k"}

    jobs = client_env(tracking_uri="http://127.0.0.1:5999", user=Credentials("tp4", "tp4-password12"),
                      s3_endpoint=STORE.endpoint, region="us-east-1", keys=Keys("JOBS", "jobs-secret"), dvc_remote="s3")
    assert jobs == {contract.ENV_TRACKING_URI: "http://127.0.0.1:5999", contract.ENV_TRACKING_USERNAME: "tp4",
                    contract.ENV_TRACKING_PASSWORD: "tp4-password12", contract.ENV_S3_ENDPOINT: STORE.endpoint,
                    contract.ENV_S3_REGION: "us-east-1", contract.ENV_S3_ACCESS_KEY: "JOBS",
                    contract.ENV_S3_SECRET_KEY: "jobs-secret", "TP4_DVC_REMOTE": "s3"}


def test_mlflow_reads_the_auth_ini(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow.server.auth.config import read_auth_config

    ini = tmp_path / "basic_auth.ini"
    ini.write_text(auth_ini(database_uri="postgresql+psycopg2://u:p@127.0.0.1:1/mlflow_auth"))
    monkeypatch.setenv("MLFLOW_AUTH_CONFIG_PATH", str(ini))
    config = read_auth_config()
    assert (config.database_uri, config.default_permission, config.auth_cache_ttl_seconds) == (
        "postgresql+psycopg2://u:p@127.0.0.1:1/mlflow_auth", "READ", 60)


def test_export_lines_survive_the_shell(tmp_path: Path) -> None:
    env = {"A": "plain", "B": "with space and 'quote'", "C": "a+b/c=="}
    script = tmp_path / "env.sh"
    script.write_text(export_lines(env))
    shown = subprocess.run(["bash", "-c", f"source {script}; printf '%s|%s|%s' \"$A\" \"$B\" \"$C\""],
                           capture_output=True, text=True, check=True).stdout
    assert shown == "plain|with space and 'quote'|a+b/c=="


def devstack(*args: str, folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "devstack", "--folder", str(folder), *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


def sourced(folder: Path) -> dict[str, str]:
    text = subprocess.run(["bash", "-c", f"source {folder / ENV_FILE}; env -0"], capture_output=True,
                          check=True).stdout.decode()
    return dict(item.split("=", 1) for item in text.split("\0") if "=" in item)


def process_env(pid: int) -> dict[str, str]:
    """A process's environment, as its owner (and root) may read it."""
    items = Path(f"/proc/{pid}/environ").read_bytes().decode().split("\0")
    return dict(item.split("=", 1) for item in items if "=" in item)


def secrets_of(folder: Path, *, mlflow_pid: int) -> set[str]:
    """Every secret a running stack holds: the clients' (stack.env), the passwords a person may need
    (private/credentials.json), and the server's own (its environment: backend URI, admin, S3, CSRF key)."""
    client, server = sourced(folder), process_env(mlflow_pid)
    credentials = json.loads((folder / "private" / CREDENTIALS_FILE).read_text())
    postgres_password = credentials["postgres"].split("@")[0].rsplit(":", 1)[1]
    assert server["MLFLOW_BACKEND_STORE_URI"] == credentials["postgres"]
    found = {client["MLFLOW_TRACKING_PASSWORD"], client["AWS_SECRET_ACCESS_KEY"], client["AWS_ACCESS_KEY_ID"],
             credentials["mlflow_admin_password"], postgres_password, server["MLFLOW_AUTH_ADMIN_PASSWORD"],
             server["MLFLOW_FLASK_SERVER_SECRET_KEY"], server["AWS_SECRET_ACCESS_KEY"], server["AWS_ACCESS_KEY_ID"]}
    assert all(len(secret) >= 16 for secret in found) and len(found) == 8  # the admin's password, twice
    return found


def leaks(text: str, secrets: set[str]) -> int:
    return sum(secret in text for secret in secrets)


@pytest.mark.slow
def test_up_env_down_with_no_secret_on_the_way() -> None:
    with stack_folder() as parent:
        up_env_down(folder=parent / "stack")


def up_env_down(*, folder: Path) -> None:
    started = time.monotonic()
    up = devstack("up", "--auth", folder=folder)
    assert up.returncode == 0, up.stdout + up.stderr
    print(f"\n`python -m devstack up --auth`: {time.monotonic() - started:.1f} s")
    try:
        assert "export MLFLOW_TRACKING_URI=http://127.0.0.1:" in up.stdout and "mlflow 3.17.2" in up.stdout
        assert "AWS_SECRET_ACCESS_KEY, MLFLOW_TRACKING_PASSWORD (not shown)" in up.stdout
        env = sourced(folder)
        assert devstack("env", folder=folder).stdout == (folder / ENV_FILE).read_text()
        assert requests.get(f"{env['MLFLOW_TRACKING_URI']}/health", timeout=5).status_code == 200
        credentials = json.loads((folder / "private" / CREDENTIALS_FILE).read_text())
        psycopg2.connect(credentials["postgres"].replace("+psycopg2", "")).close()
        s3 = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name=env["AWS_DEFAULT_REGION"],
                          aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])
        s3.put_object(Bucket="tp4-dvc", Key="probe", Body=b"x")
        with pytest.raises(ClientError, match="AccessDenied"):
            s3.put_object(Bucket="tp4-mlflow-artifacts", Key="probe", Body=b"x")
        again = devstack("up", folder=folder)
        assert again.returncode == 1 and "already runs" in again.stderr
        pids = read_state(folder)["pids"]
        secrets = secrets_of(folder, mlflow_pid=int(pids["mlflow"]))

        # where secrets may be: files of their owner only, the private ones in a folder of its owner only
        assert stat.S_IMODE((folder / "private").stat().st_mode) == 0o700
        for path in [folder / ENV_FILE, folder / STATE_FILE, *folder.glob("*.log"), *(folder / "private").iterdir()]:
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        # where they may not be: what `up` printed, the logs, the state, any process's command line
        assert leaks(up.stdout + up.stderr, secrets) == 0
        for path in [folder / STATE_FILE, *folder.glob("*.log")]:
            assert leaks(path.read_text(errors="replace"), secrets) == 0, path.name
        command_lines = subprocess.run(["ps", "-ww", "-eo", "args"], capture_output=True, text=True, check=True).stdout
        assert "mlflow server" in command_lines and "postgres -D" in command_lines
        assert leaks(command_lines, secrets) == 0
    finally:
        down = devstack("down", folder=folder)
    assert down.returncode == 0 and "stopped" in down.stdout
    assert not any(alive(int(pid)) for pid in pids.values())
    left = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))
    assert left == ["devstack.log", "mlflow.log", "postgres.log"]  # no env, state, private folder nor Postgres data
    for path in folder.iterdir():
        assert leaks(path.read_text(errors="replace"), secrets) == 0, path.name
    assert devstack("env", folder=folder).returncode == 1
