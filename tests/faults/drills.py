"""Helpers of the fault drills: a one-point tiny grid (1 epoch, imgsz 160), the controller as a
process, the MLflow runs and the executor's state to assert on, a plain `mlflow server`."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests
import yaml
from mlflow.tracking import MlflowClient

import contract
from controller.core.state import GridState
from controller.local.state import load_state
from tests.helpers.paths import BACKBONE

TRAIN = {"epochs": 1, "batch": 4, "nbs": 4, "warmup_epochs": 0, "workers": 0, "imgsz": 160, "seed": 1}
POINT = "train-0.01"


def write_grid(folder: Path, md5: str, *, name: str, **changes: Any) -> Path:
    """A one-point grid (point `train-0.01`) named `name`, experiment `<name>-e`."""
    grid = {
        "name": name, "experiment": f"{name}-e",
        "dataset": {"path": "data/tiny_coco", "md5": md5},
        "model": {"weights": str(BACKBONE), "registered_name": f"{name}-person"},
        "train": dict(TRAIN),
        "axes": {"lr0": [0.01]},
        "job": {"name_template": "train-{lr0}"},
        "gates": {"min_objective": 0.0, "min_success_fraction": 0.5},
        **changes,
    }
    path = folder / "grid.yaml"
    path.write_text(yaml.safe_dump(grid, sort_keys=False))
    return path


def new_project(dataset: Path, folder: Path, md5: str, *, name: str, **changes: Any) -> Path:
    """`folder` with a copy of the tiny dataset and a one-point grid."""
    shutil.copytree(dataset, folder / "data" / "tiny_coco")
    write_grid(folder, md5, name=name, **changes)
    return folder


def env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1", **extra}


def controller(folder: Path, *args: str, timeout: float = 900, extra_env: dict[str, str] | None = None,
               ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "controller", "--root", str(folder), *args], cwd=folder,
                          capture_output=True, text=True, timeout=timeout, env=env(**(extra_env or {})))


def start_controller(folder: Path, *, extra_env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """`submit-grid grid.yaml` in the background, its output in <folder>/controller.out."""
    out = open(folder / "controller.out", "w")
    return subprocess.Popen([sys.executable, "-m", "controller", "--root", str(folder), "submit-grid", "grid.yaml"],
                            cwd=folder, stdout=out, stderr=subprocess.STDOUT, text=True, env=env(**(extra_env or {})))


def output(folder: Path) -> str:
    return (folder / "controller.out").read_text()


def wait_for(what: str, predicate: Callable[[], Any], *, timeout: float = 300, every: float = 0.2,
             process: subprocess.Popen[str] | None = None) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the controller ended ({process.returncode}) before {what}")
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def client(folder: Path, uri: str | None = None) -> MlflowClient:
    return MlflowClient(uri or contract.embedded_tracking_uri(folder))


def runs(mlflow: MlflowClient, experiment: str, role: str | None = None) -> list[Any]:
    found = mlflow.get_experiment_by_name(experiment)
    if found is None:
        return []
    query = f"tags.`{contract.TAG_ROLE}` = '{role}'" if role else ""
    return mlflow.search_runs([found.experiment_id], filter_string=query, order_by=["attributes.start_time ASC"])


def safe_runs(mlflow: MlflowClient, experiment: str, role: str | None = None) -> list[Any]:
    try:
        return runs(mlflow, experiment, role)
    except Exception:  # the store is being created by the controller
        return []


def running_train_run(mlflow: MlflowClient, experiment: str) -> Any:
    return next((r for r in safe_runs(mlflow, experiment, contract.ROLE_TRAIN) if r.info.status == "RUNNING"), None)


def training_started(folder: Path, grid: str, *, process: subprocess.Popen[str], uri: str | None = None,
                     ) -> tuple[MlflowClient, Any, int]:
    """Wait until the point's attempt runs and its MLflow run exists: (client, the run, the attempt's pid).
    The client is made only once the controller created the store (two first clients of one SQLite
    file would both run MLflow's migrations)."""
    pid = wait_for("the point's attempt", lambda: live_attempt_pid(folder, grid), process=process)
    mlflow = client(folder, uri)
    experiment = state(folder, grid).experiment
    run = wait_for("the training's MLflow run", lambda: running_train_run(mlflow, experiment), process=process)
    return mlflow, run, pid


def in_first_epoch(folder: Path, grid: str) -> bool:
    """True once the running attempt's log shows ultralytics' progress row of epoch 1 (`1/1 ...`)."""
    job = state(folder, grid).jobs.get(POINT)
    if job is None or not job.attempts:
        return False
    text = Path(job.attempts[-1].log).read_text(errors="replace")
    start = text.find("Starting training for")
    return start >= 0 and " 1/1 " in text[start:]


def state(folder: Path, grid: str) -> GridState:
    return load_state(folder, grid)


def live_attempt_pid(folder: Path, grid: str) -> int | None:
    """The pid of the point's running attempt, as state.json records it."""
    try:
        job = state(folder, grid).jobs.get(POINT)
    except (OSError, ValueError):
        return None
    if job is None or not job.attempts or job.attempts[-1].finished is not None:
        return None
    return job.attempts[-1].pid


def alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def statuses(found: list[Any]) -> list[tuple[str, str, str]]:
    return [(r.data.tags.get(contract.TAG_ROLE, ""), r.data.tags.get(contract.TAG_ATTEMPT, ""), r.info.status)
            for r in found]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PlainMlflowServer:
    """`mlflow server` on SQLite with proxied artifacts, on a fixed loopback port: stop() and
    start() again keep its port and its store."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, *, timeout: float = 180) -> None:
        mlflow = Path(sys.executable).with_name("mlflow")
        server_env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "TP4_"))}
        server_env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
        log = open(self.folder / "server.log", "ab")
        self.process = subprocess.Popen(
            [str(mlflow), "server", "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
             "--backend-store-uri", f"sqlite:///{self.folder / 'server.db'}",
             "--artifacts-destination", str(self.folder / "artifacts")],
            stdout=log, stderr=subprocess.STDOUT, env=server_env, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"mlflow server exited: {(self.folder / 'server.log').read_text()[-2000:]}")
            try:
                if requests.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.5)
        raise AssertionError("mlflow server did not answer /health")

    def stop(self) -> None:
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        except ProcessLookupError:
            pass
        self.process = None
