"""`mlflow server` as a child process: Postgres backend, proxied artifacts in S3, optional basic auth.

Only the server holds the S3 endpoint and keys of the artifact store
(MLFLOW_S3_ENDPOINT_URL, AWS_*): clients log artifacts through it
(`mlflow-artifacts:` URIs). One uvicorn worker and no job runner keep it
near 0.65 GB instead of 2.9 GB (ARCHITECTURE.md section 5).

No secret on its command line (which every local user sees in `ps`): the
backend store URI, which holds the Postgres password, is the child's
MLFLOW_BACKEND_STORE_URI (the variable `mlflow server --backend-store-uri`
reads); the admin password and the CSRF key are environment variables too;
the auth database's URI is in basic_auth.ini (0600). Its output reaches
mlflow.log through the stack's Redactor.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import requests

import contract
from devstack.private import Redactor
from devstack.processes import StartFailed, start_logged, stop_process, wait_until

READY_TIMEOUT_S = 180.0  # imports and the schema migrations take 10-30 s on 2 busy cores
# Client-side settings that must not leak from the caller's environment into the server's.
CLIENT_PREFIXES = ("MLFLOW_TRACKING_", "AWS_", "MLFLOW_S3_", "TP4_")
ENV_BACKEND_STORE_URI = "MLFLOW_BACKEND_STORE_URI"  # click's envvar of `mlflow server --backend-store-uri`


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str


@dataclass(frozen=True)
class AuthSettings:
    """MLflow's basic-auth app: its ini file, the admin it creates at the first start, the CSRF key."""

    ini_path: Path
    admin: Credentials
    secret_key: str


@dataclass(frozen=True)
class ServerSettings:
    host: str
    port: int
    backend_uri: str
    artifacts_destination: str
    allowed_hosts: tuple[str, ...] = ()
    auth: AuthSettings | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


@dataclass(frozen=True)
class ArtifactStore:
    """Where and how the server (only) reaches the artifact bucket."""

    endpoint: str
    region: str
    access_key: str
    secret_key: str


def command(settings: ServerSettings) -> list[str]:
    """The server's argv: nothing secret (the backend store URI is in `environment`)."""
    mlflow = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or "mlflow"
    argv = [mlflow, "server", "--host", settings.host, "--port", str(settings.port), "--workers", "1",
            "--artifacts-destination", settings.artifacts_destination]
    if settings.allowed_hosts:
        argv += ["--allowed-hosts", ",".join(settings.allowed_hosts)]
    if settings.auth is not None:
        argv += ["--app-name", "basic-auth"]
    return argv


def environment(*, base: Mapping[str, str], settings: ServerSettings, store: ArtifactStore) -> dict[str, str]:
    """The server's environment: the caller's, less any client setting, plus the backend store
    URI (with its password) and the store's keys."""
    env = {k: v for k, v in base.items() if not k.startswith(CLIENT_PREFIXES)}
    env |= {ENV_BACKEND_STORE_URI: settings.backend_uri,
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_S3_ENDPOINT_URL": store.endpoint,
            contract.ENV_S3_REGION: store.region, contract.ENV_S3_ACCESS_KEY: store.access_key,
            contract.ENV_S3_SECRET_KEY: store.secret_key}
    if settings.auth is not None:
        env |= {"MLFLOW_AUTH_CONFIG_PATH": str(settings.auth.ini_path),
                "MLFLOW_AUTH_ADMIN_USERNAME": settings.auth.admin.username,
                "MLFLOW_AUTH_ADMIN_PASSWORD": settings.auth.admin.password,
                "MLFLOW_FLASK_SERVER_SECRET_KEY": settings.auth.secret_key}
    return env


def auth_ini(*, database_uri: str, default_permission: str = "READ", cache_ttl_s: int = 60) -> str:
    """The basic-auth app's configuration. Users live in Postgres too. The credential cache
    (off by default) matters: without it every request hashes the password (PBKDF2), about
    0.7 s per request measured here; with one worker there is no cross-worker staleness."""
    return (f"[mlflow]\ndefault_permission = {default_permission}\ndatabase_uri = {database_uri}\n"
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
            f"auth_cache_ttl_seconds = {cache_ttl_s}\n")


def _healthy(url: str) -> bool:
    try:
        return requests.get(f"{url}/health", timeout=2).status_code == 200
    except requests.RequestException:
        return False


class MlflowServer:
    """One `mlflow server` process; `start()` returns once /health answers."""

    def __init__(self, *, settings: ServerSettings, env: dict[str, str], log: Path, redactor: Redactor) -> None:
        self.settings, self.env, self.log, self.redactor = settings, env, log, redactor
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return self.settings.url

    def start(self) -> None:
        self.process = start_logged(command(self.settings), env=self.env, log=self.log, redactor=self.redactor)
        try:
            wait_until(ready=lambda: _healthy(self.url), process=self.process, name="mlflow server", log=self.log,
                       timeout_s=READY_TIMEOUT_S)
        except StartFailed:
            self.stop()
            raise

    def stop(self) -> None:
        stop_process(self.process)
        self.process = None


def create_user(*, url: str, admin: Credentials, user: Credentials) -> None:
    """A user of the basic-auth app, through its REST API (as an admin)."""
    response = requests.post(f"{url}/api/2.0/mlflow/users/create", timeout=30,
                             json={"username": user.username, "password": user.password},
                             auth=(admin.username, admin.password))
    if response.status_code != 200:
        raise StartFailed(f"creating MLflow user {user.username!r} failed: HTTP {response.status_code} "
                          f"{response.text[:300]}")
