"""A TPE search with early stopping through the cluster controller: the fake API server (real HTTP), a real
MLflow store, and the train Jobs' runs written as `python -m jobs.train` writes them (epoch by epoch)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from mlflow.tracking import MlflowClient

import contract
from controller.cluster.jobs import LABEL_SUBMISSION
from controller.cluster.kube import GRIDS
from controller.cluster.resource import grid_object
from tests.helpers.cluster_harness import (
    RunningController,
    connect,
    env_of,
    grid_status,
    job_names,
    run_job,
    small_spec,
    wait_until,
)
from tests.helpers.fake_kube import FakeKube


def search_spec(**changes: Any) -> dict[str, Any]:
    spec = small_spec(
        "tpe",
        train={"epochs": 3, "imgsz": 64, "seed": 1},
        axes={"lr0": {"loguniform": [0.001, 0.1]}},
        search={"mode": "tpe", "trials": 4, "seed": 11, "startup_trials": 2},
        early_stopping={"rule": "median", "metric": "epoch/mAP50-95", "min_epochs": 1, "startup_trials": 1,
                        "grace_seconds": 2},
        job={"name_template": "train-{lr0}", "parallelism": 2},
    )
    spec.update(changes)
    return spec


def submit(kube: FakeKube, spec: dict[str, Any]) -> None:
    connect(kube).create(GRIDS, grid_object(spec=spec, namespace="default", submitted_at="2026-01-01T00:00:00Z"))


def start_run(mlflow: MlflowClient, kube: FakeKube, name: str) -> str:
    """The Job's pod starts and opens its run, as jobs.train does."""
    job = kube.find("jobs", name)
    assert job is not None
    env, labels = env_of(job), job["metadata"]["labels"]
    kube.start_job(name)
    experiment = mlflow.get_experiment_by_name(env[contract.ENV_EXPERIMENT]).experiment_id
    run = mlflow.create_run(experiment, tags={
        "mlflow.parentRunId": labels[LABEL_SUBMISSION], contract.TAG_GRID: labels[contract.LABEL_GRID],
        contract.TAG_POINT: name, contract.TAG_ROLE: contract.ROLE_TRAIN,
        contract.TAG_SPEC_HASH: labels[contract.LABEL_SPEC_HASH], contract.TAG_BACKEND: "kubernetes"})
    return run.info.run_id


def epoch(mlflow: MlflowClient, run_id: str, step: int, value: float) -> None:
    mlflow.log_metric(run_id, "epoch/mAP50-95", value, timestamp=int(time.time() * 1000), step=step)
    time.sleep(0.01)


def finish(mlflow: MlflowClient, kube: FakeKube, name: str, run_id: str, value: float, *,
           stopped_at: int | None = None) -> None:
    mlflow.log_metric(run_id, contract.METRIC_MAP50_95, value)
    if stopped_at is not None:
        mlflow.set_tag(run_id, contract.TAG_STOPPED_EARLY, str(stopped_at))
    mlflow.set_terminated(run_id, "FINISHED")
    kube.finish_job(name, succeeded=True)


def train(mlflow: MlflowClient, kube: FakeKube, name: str, values: list[float]) -> None:
    run_id = start_run(mlflow, kube, name)
    for step, value in enumerate(values, start=1):
        epoch(mlflow, run_id, step, value)
    finish(mlflow, kube, name, run_id, values[-1])


def trials(mlflow: MlflowClient, parent: str) -> dict[str, dict[str, Any]]:
    tags = mlflow.get_run(parent).data.tags
    return {k.removeprefix(contract.TAG_TRIAL_PREFIX): json.loads(v) for k, v in tags.items()
            if k.startswith(contract.TAG_TRIAL_PREFIX)}


def train_jobs(kube: FakeKube) -> list[str]:
    return [n for n in job_names(kube, "tpe") if n.startswith("train-")]


def test_a_tpe_search_with_early_stopping_survives_a_controller_restart(
        kube: FakeKube, uri: str, mlflow: MlflowClient, tmp_path: Path) -> None:
    submit(kube, search_spec())
    with RunningController(kube, uri=uri, root=tmp_path):
        first, second = wait_until(lambda: len(train_jobs(kube)) == 2 and train_jobs(kube), what="2 trials")
        parent = grid_status(kube, "tpe")["parentRunId"]
        assert set(trials(mlflow, parent)) == {first, second}  # recorded before the Jobs were created
        train(mlflow, kube, first, [0.2, 0.3, 0.4])
        third = wait_until(lambda: len(train_jobs(kube)) == 3 and (set(train_jobs(kube)) - {first, second}).pop(),
                           what="a third trial once one ended")
    # a new controller (the old one's pod is gone): rebuilds the study from MLflow, asks nothing twice
    with RunningController(kube, uri=uri, root=tmp_path, name="controller-b"):
        run_id = start_run(mlflow, kube, second)
        epoch(mlflow, run_id, 1, 0.01)  # far below the finished trial's epoch 1 (0.2): hopeless
        wait_until(lambda: contract.TAG_STOP_REQUESTED in mlflow.get_run(run_id).data.tags, seconds=20,
                   what="a stop request on the hopeless trial")
        assert mlflow.get_run(run_id).data.tags[contract.TAG_STOP_REQUESTED] == "1"
        finish(mlflow, kube, second, run_id, 0.01, stopped_at=1)  # the Job ends itself after the epoch
        fourth = wait_until(lambda: len(train_jobs(kube)) == 4 and (set(train_jobs(kube)) - {first, second, third})
                            .pop(), what="the fourth trial")
        # the third ignores its stop request: past grace_seconds its Job's deadline is cut
        late = start_run(mlflow, kube, third)
        epoch(mlflow, late, 1, 0.0)
        wait_until(lambda: any(r.method == "PATCH" and r.path.endswith(f"/jobs/{third}") for r in kube.requests),
                   seconds=20, what="the deadline of a Job that did not stop")
        patch = next(r for r in kube.requests if r.method == "PATCH" and r.path.endswith(f"/jobs/{third}"))
        assert patch.body == {"spec": {"activeDeadlineSeconds": 1}}
        kube.finish_job(third, succeeded=False, reason="DeadlineExceeded")
        mlflow.set_terminated(late, "KILLED")
        train(mlflow, kube, fourth, [0.3, 0.35, 0.5])
        wait_until(lambda: "finalize-tpe" in job_names(kube), seconds=20, what="the finalizer once the search ended")
        assert len(train_jobs(kube)) == 4  # the budget: 4 trials, none repeated
        run_job(kube, mlflow, "finalize-tpe")
        final = wait_until(lambda: grid_status(kube, "tpe").get("phase") == "Succeeded" and grid_status(kube, "tpe"),
                           what="Succeeded")
    recorded = trials(mlflow, parent)
    assert sorted(recorded) == sorted([first, second, third, fourth])
    assert sorted(t["number"] for t in recorded.values()) == [0, 1, 2, 3]
    assert len({json.dumps(t["params"]) for t in recorded.values()}) == 4
    posts = [r.body["metadata"]["name"] for r in kube.sent("POST", "/jobs")]
    # four trials and the finalizer, each created once across both controllers
    assert sorted(posts) == sorted([first, second, third, fourth, "finalize-tpe"])
    assert final["best"]["point"] == fourth
    assert kube.refusals == []
