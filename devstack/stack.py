"""The stack as a whole: start in order, stop in reverse, and the environment a client gets.

Every secret the stack makes or receives (passwords, S3 keys, the CSRF key) is
registered with `Stack.redactor` as soon as it exists; the private files live
in `<folder>/private` (0700), which `stop()` removes.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import contract
from devstack.mlflow_server import (
    ArtifactStore,
    AuthSettings,
    Credentials,
    MlflowServer,
    ServerSettings,
    auth_ini,
    create_user,
    environment,
)
from devstack.postgres import Postgres, start_postgres
from devstack.private import PRIVATE_DIR, Redactor, private_folder, write_private
from devstack.processes import free_port
from devstack.s3 import ALL, Keys, S3Server, start_s3

ENV_DVC_REMOTE = "TP4_DVC_REMOTE"  # read by jobs/dataset.py
SERVER, JOBS, ADMIN = "mlflow-server", "tp4-jobs", "admin"  # the S3 principals
DB_USER, TRACKING_DB, AUTH_DB = "mlflow", "mlflow", "mlflow_auth"
TP4_USER = "tp4"


@dataclass(frozen=True)
class StackConfig:
    folder: Path
    auth: bool = False
    host: str = "127.0.0.1"
    region: str = "us-east-1"
    artifacts_bucket: str = "tp4-mlflow-artifacts"
    dvc_bucket: str = "tp4-dvc"
    dvc_remote: str = "s3"  # the remote of .dvc/config whose url is s3://<dvc_bucket>
    allowed_hosts: tuple[str, ...] = ()

    @property
    def private(self) -> Path:
        """The 0700 folder of the files that hold secrets (removed when the stack stops)."""
        return self.folder / PRIVATE_DIR


def client_env(*, tracking_uri: str, user: Credentials | None, s3_endpoint: str, region: str, keys: Keys,
               dvc_remote: str) -> dict[str, str]:
    """What a job or the controller needs, exactly as a Kubernetes Job would receive it.
    The S3 keys are the jobs' own (DVC and s3:// weights); MLflow's artifact keys stay on the server."""
    env = {contract.ENV_TRACKING_URI: tracking_uri, contract.ENV_S3_ENDPOINT: s3_endpoint,
           contract.ENV_S3_REGION: region, ENV_DVC_REMOTE: dvc_remote, **keys.env()}
    if user is not None:
        env |= {contract.ENV_TRACKING_USERNAME: user.username, contract.ENV_TRACKING_PASSWORD: user.password}
    return env


@dataclass
class Stack:
    config: StackConfig
    postgres: Postgres | None = None
    s3: S3Server | None = None
    mlflow: MlflowServer | None = None
    user: Credentials | None = None
    admin: Credentials | None = None
    redactor: Redactor = field(default_factory=Redactor)

    @property
    def tracking_uri(self) -> str:
        assert self.mlflow is not None
        return self.mlflow.url

    def client_env(self) -> dict[str, str]:
        assert self.s3 is not None
        return client_env(tracking_uri=self.tracking_uri, user=self.user, s3_endpoint=self.s3.endpoint,
                          region=self.config.region, keys=self.s3.keys[JOBS], dvc_remote=self.config.dvc_remote)

    def pids(self) -> dict[str, int]:
        found = {"postgres": self.postgres.process.pid if self.postgres else None,
                 "mlflow": self.mlflow.process.pid if self.mlflow and self.mlflow.process else None}
        return {name: pid for name, pid in found.items() if pid}

    def stop(self) -> None:
        """Reverse order; every part is stopped even if one fails; then the private files are removed."""
        errors = []
        for part in (self.mlflow, self.s3, self.postgres):
            try:
                if part is not None:
                    part.stop()
            except Exception as error:  # keep stopping the others
                errors.append(error)
        shutil.rmtree(self.config.private, ignore_errors=True)
        if errors:
            raise errors[0]


def _mlflow(config: StackConfig, *, postgres: Postgres, s3: S3Server,
            redactor: Redactor) -> tuple[MlflowServer, AuthSettings | None]:
    auth = None
    if config.auth:
        auth = AuthSettings(ini_path=config.private / "basic_auth.ini", secret_key=secrets.token_hex(16),
                            admin=Credentials(username="admin", password=redactor.new_password()))
        redactor.add(auth.secret_key)
        write_private(path=auth.ini_path, text=auth_ini(database_uri=postgres.url(AUTH_DB)))
    settings = ServerSettings(host=config.host, port=free_port(host=config.host), backend_uri=postgres.url(TRACKING_DB),
                              artifacts_destination=f"s3://{config.artifacts_bucket}",
                              allowed_hosts=config.allowed_hosts, auth=auth)
    keys = s3.keys[SERVER]
    store = ArtifactStore(endpoint=s3.endpoint, region=config.region, access_key=keys.access_key,
                          secret_key=keys.secret_key)
    env = environment(base=os.environ, settings=settings, store=store)
    return MlflowServer(settings=settings, env=env, log=config.folder / "mlflow.log", redactor=redactor), auth


def start_stack(config: StackConfig, *, redactor: Redactor | None = None) -> Stack:
    """Postgres, then S3, then MLflow (and its user); on failure, what started is stopped.
    `redactor`: where the secrets are registered (a new one by default; `Stack.redactor`)."""
    config.folder.mkdir(parents=True, exist_ok=True)
    stack = Stack(config=config, redactor=redactor or Redactor())
    secret = stack.redactor
    try:
        private_folder(config.private)
        stack.postgres = start_postgres(folder=config.folder, host=config.host, port=free_port(host=config.host),
                                        user=DB_USER, password=secret.new_password(), databases=(TRACKING_DB, AUTH_DB),
                                        redactor=secret)
        stack.s3 = start_s3(host=config.host, port=free_port(host=config.host), region=config.region,
                            grants={SERVER: (config.artifacts_bucket,), JOBS: (config.dvc_bucket,), ADMIN: (ALL,)})
        for keys in stack.s3.keys.values():
            secret.add(keys.access_key, keys.secret_key)
        stack.mlflow, auth = _mlflow(config, postgres=stack.postgres, s3=stack.s3, redactor=secret)
        stack.mlflow.start()
        if auth is not None:
            stack.admin, stack.user = auth.admin, Credentials(username=TP4_USER, password=secret.new_password())
            create_user(url=stack.mlflow.url, admin=auth.admin, user=stack.user)
    except BaseException:
        stack.stop()
        raise
    return stack


@contextmanager
def running_stack(config: StackConfig) -> Iterator[Stack]:
    stack = start_stack(config)
    try:
        yield stack
    finally:
        stack.stop()
