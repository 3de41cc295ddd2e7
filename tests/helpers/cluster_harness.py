"""The reconcile loop against the fake API server, with a real MLflow store (SQLite), and what the
train and finalize Jobs would leave in MLflow when the tests mark them done."""

from __future__ import annotations

import json
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlflow.tracking import MlflowClient

import contract
from controller.cluster import kube as kube_client
from controller.cluster.health import Health
from controller.cluster.jobs import LABEL_SUBMISSION
from controller.cluster.leader import LeaderElection
from controller.cluster.loop import ClusterController
from controller.cluster.settings import ClusterSettings
from controller.core.rendering import SecretRef
from tests.helpers.fake_kube import FakeKube

MD5 = "c56034fdae7ce88dc7ada7678b985028.dir"


def settings(uri: str) -> ClusterSettings:
    return ClusterSettings(
        tracking_uri=uri,
        jobs_tracking_uri="http://tp4-mlflow:5000",
        extra_env={"AWS_ENDPOINT_URL": "http://tp4-minio:9000", "TP4_DVC_REMOTE_URL": "s3://tp4-dvc"},
        secret_env=(
            SecretRef("AWS_ACCESS_KEY_ID", "tp4-s3", "AWS_ACCESS_KEY_ID"),
            SecretRef("AWS_SECRET_ACCESS_KEY", "tp4-s3", "AWS_SECRET_ACCESS_KEY"),
        ),
        trainer_image="tp4-trainer:0.1.0",
        job_ttl_seconds=3600,
    )


def small_spec(name: str = "lab", **changes: Any) -> dict[str, Any]:
    """2 lr0 x 2 seeds, 2 Jobs at once."""
    spec: dict[str, Any] = {
        "name": name,
        "experiment": f"{name}-exp",
        "dataset": {"path": "data/tiny_coco", "md5": MD5},
        "model": {"weights": "yolov8n.pt"},
        "train": {"epochs": 1, "imgsz": 64},
        "axes": {"lr0": [0.005, 0.01], "seed": [1, 2]},
        "job": {"name_template": "train-{lr0}-{seed}", "parallelism": 2},
    }
    spec.update(changes)
    return spec


def connect(kube: FakeKube, *, namespace: str = "default", token: str | None = None) -> kube_client.Kube:
    """The official client, configured from a kubeconfig file that reaches the fake server (as `token`)."""
    user = {"token": token} if token else None
    path = kube.kubeconfig(name=f"config-{namespace}-{token or 'anonymous'}", namespace=namespace, user=user)
    return kube_client.connect(kubeconfig=str(path))


def wait_until(predicate: Callable[[], Any], seconds: float = 30.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + seconds
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what} not met within {seconds} s"
        time.sleep(0.02)


class RunningController:
    """`python -m controller run`'s loop in a thread (the signal handling aside), its lease timed for tests.
    `name` is its Lease holder identity and its bearer token: the fake server's log tells who sent what."""

    def __init__(
        self,
        kube: FakeKube,
        *,
        uri: str,
        root: Path,
        namespace: str = "default",
        name: str = "controller-a",
        lease_seconds: int = 2,
    ) -> None:
        self.api = connect(kube, namespace=namespace, token=name)
        self.election = LeaderElection(
            self.api, holder=name, lease_seconds=lease_seconds, renew_seconds=lease_seconds * 0.75, retry_seconds=0.2
        )
        self.health = Health()
        self.controller = ClusterController(
            api=self.api,
            mlflow=MlflowClient(tracking_uri=uri),
            settings=settings(uri),
            root=root,
            resync_seconds=0.5,
            watch_seconds=30,
            election=self.election,
            health=self.health,
        )
        self.stop_event = threading.Event()
        self.exit_code: int | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.kube, self.name = kube, name

    def _run(self) -> None:
        self.exit_code = self.controller.run(stop=self.stop_event)

    def __enter__(self) -> RunningController:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stop_event.set()
        wait_until(
            lambda: self.controller.halted.is_set() or not self.thread.is_alive(),
            seconds=5,
            what="the controller halting",
        )  # before the streams end: no watch resumes after
        self.kube.close_watches()
        self.thread.join(timeout=10)
        assert not self.thread.is_alive(), "the controller did not stop"

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def requests(self, method: str | None = None, path_part: str = "") -> list[Any]:
        """What this controller sent to the API server."""
        return [
            r
            for r in list(self.kube.requests)
            if r.authorization == f"Bearer {self.name}"
            and (method is None or r.method == method)
            and path_part in r.path
        ]


def env_of(job: dict[str, Any]) -> dict[str, str]:
    container = job["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", "") for e in container["env"]}


def log_train_run(mlflow: MlflowClient, job: dict[str, Any], *, value: float, status: str = "FINISHED") -> str:
    """What `python -m jobs.train` leaves in MLflow for this Job: a child run of its parent run."""
    env, labels = env_of(job), job["metadata"]["labels"]
    experiment = mlflow.get_experiment_by_name(env[contract.ENV_EXPERIMENT]).experiment_id
    run = mlflow.create_run(
        experiment,
        tags={
            "mlflow.parentRunId": labels[LABEL_SUBMISSION],
            contract.TAG_GRID: labels[contract.LABEL_GRID],
            contract.TAG_POINT: labels[contract.LABEL_POINT],
            contract.TAG_ROLE: contract.ROLE_TRAIN,
            contract.TAG_SPEC_HASH: labels[contract.LABEL_SPEC_HASH],
            contract.TAG_BACKEND: env[contract.ENV_BACKEND],
        },
    )
    mlflow.log_metric(run.info.run_id, contract.METRIC_MAP50_95, value)
    mlflow.set_terminated(run.info.run_id, status=status)
    return run.info.run_id


def log_decision(mlflow: MlflowClient, job: dict[str, Any], *, verdict: str = "YES") -> str:
    """What `python -m jobs.finalize` leaves on the parent run: the decision tag and the report."""
    parent = env_of(job)[contract.ENV_PARENT_RUN_ID]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "decision.json"
        path.write_text(
            json.dumps(
                {
                    "grid": job["metadata"]["labels"][contract.LABEL_GRID],
                    "decision": {"verdict": verdict},
                    "objective": {"metric": "mAP50-95"},
                }
            )
        )
        mlflow.log_artifact(parent, str(path), artifact_path=contract.ARTIFACT_REPORT_DIR)
    mlflow.set_tag(parent, contract.TAG_DECISION, verdict)
    return parent


def job_names(kube: FakeKube, grid: str | None = None) -> list[str]:
    return sorted(
        j["metadata"]["name"]
        for j in kube.all("jobs")
        if grid is None or j["metadata"]["labels"].get(contract.LABEL_GRID) == grid
    )


def run_job(
    kube: FakeKube, mlflow: MlflowClient, name: str, *, value: float = 0.2, succeed: bool = True, verdict: str = "YES"
) -> None:
    """A Job's whole life as the cluster and the job's code would live it."""
    job = kube.find("jobs", name)
    assert job is not None
    kube.start_job(name, log=[f"training {name}"])
    if job["metadata"]["labels"][contract.LABEL_ROLE] == contract.ROLE_FINALIZE:
        log_decision(mlflow, job, verdict=verdict)
    elif succeed:
        log_train_run(mlflow, job, value=value)
    kube.finish_job(name, succeeded=succeed)


def grid_status(kube: FakeKube, name: str = "lab") -> dict[str, Any]:
    return (kube.find("grids", name) or {}).get("status") or {}
