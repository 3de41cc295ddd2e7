"""One behaviour on both Job stores: each scenario runs unchanged against the local store (the kubelet's
processes) and the cluster store (the fake API server over real HTTP), and asserts the same outcomes in
MLflow and in the grid's status (tests/conformance/worlds.py). The Jobs run tests/conformance/fake_job.py:
what a train or finalize Job leaves in MLflow, without training."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

import contract
from tests.conformance.fake_job import EPOCH_SECONDS_ENV, LATE_KEY, SCRIPT_ENV
from tests.conformance.worlds import MD5, ClusterWorld, LocalWorld, TrackingLink, World, run_until
from tests.helpers.crd_schema import grid_validator
from tests.helpers.fake_kube import FakeKube
from tests.helpers.paths import REPO


def spec(name: str = "conf", **changes: Any) -> dict[str, Any]:
    """Two points (lr0 0.01, seeds 1 and 2), both at once."""
    grid: dict[str, Any] = {
        "name": name, "experiment": f"{name}-exp",
        "dataset": {"path": "data/tiny_coco", "md5": MD5},
        "model": {"weights": "yolov8n.pt"},
        "train": {"epochs": 1, "imgsz": 64, "lr0": 0.01},
        "axes": {"seed": [1, 2]},
        "job": {"name_template": "train-{seed}", "parallelism": 2, "backoff_limit": 1},
    }
    grid.update(changes)
    return grid


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow SQLite store with its tables created, copied by each test."""
    path = tmp_path_factory.mktemp("empty-store") / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def tracking(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, empty_store: Path) -> TrackingLink:
    # a connection per session: a store that goes away fails the next read, as a server that is down
    monkeypatch.setenv("MLFLOW_SQLALCHEMYSTORE_POOLCLASS", "NullPool")
    monkeypatch.setenv("PYTHONPATH", str(REPO))  # the local kubelet's processes import tests.conformance
    monkeypatch.setenv(contract.ENV_WARM_START, "0")  # no fork server (it imports the training stack)
    return TrackingLink(tmp_path / "tracking", template=empty_store)


def write_script(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, script: dict[str, Any], *,
                 epoch_seconds: float = 0.0) -> None:
    path = tmp_path / "script.json"
    path.write_text(json.dumps(script))
    monkeypatch.setenv(SCRIPT_ENV, str(path))
    monkeypatch.setenv(EPOCH_SECONDS_ENV, str(epoch_seconds))


@pytest.fixture(params=["local", "cluster"])
def world(request: pytest.FixtureRequest, tmp_path: Path, tracking: TrackingLink) -> Iterator[World]:
    if request.param == "local":
        local = LocalWorld(tmp_path, tracking)
        yield local
        local.close()
    else:
        with FakeKube(grid_schema=grid_validator()) as kube:
            cluster = ClusterWorld(tmp_path, tracking, kube)
            yield cluster
            cluster.close()


# --- what both stores must show ------------------------------------------------------------------------


def runs(mlflow: MlflowClient, experiment: str, role: str) -> list[Any]:
    found = mlflow.get_experiment_by_name(experiment)
    assert found is not None
    return [r for r in mlflow.search_runs([found.experiment_id], max_results=1000,
                                          order_by=["attributes.start_time ASC"])
            if r.data.tags.get(contract.TAG_ROLE) == role]


def statuses_by_point(mlflow: MlflowClient, experiment: str) -> dict[str, list[str]]:
    """Each point's train runs' statuses, oldest first."""
    found: dict[str, list[str]] = {}
    for run in runs(mlflow, experiment, contract.ROLE_TRAIN):
        found.setdefault(run.data.tags[contract.TAG_POINT], []).append(run.info.status)
    return found


def finish(world: World, seconds: float = 60.0) -> tuple[str, str]:
    run_until(world, world.ended, seconds=seconds, what="the grid's end")
    return world.status()


# --- the scenarios ---------------------------------------------------------------------------------------


def test_a_grid_completes(world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_script(tmp_path, monkeypatch, {"train-1": {"value": 0.3}, "train-2": {"value": 0.4}})
    world.submit(spec())
    phase, message = finish(world)
    assert (phase, message) == ("Succeeded", "decision report written")
    assert statuses_by_point(world.mlflow, "conf-exp") == {"train-1": ["FINISHED"], "train-2": ["FINISHED"]}
    [parent] = runs(world.mlflow, "conf-exp", contract.ROLE_PARENT)
    assert parent.info.status == "FINISHED" and parent.data.tags[contract.TAG_DECISION] == "YES"
    assert world.job_names() == ["finalize-conf", "train-1", "train-2"]


def test_exit_1_is_retried_and_exit_2_fails_the_point_at_once(world: World, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    write_script(tmp_path, monkeypatch, {"train-1": {"exit": [1, 0]}, "train-2": {"exit": [2, 0]}})
    world.submit(spec())
    phase, message = finish(world)
    # one point succeeded on its second attempt; the other's configuration error was not retried; the
    # finalizer ranks what succeeded
    assert (phase, message) == ("Succeeded", "decision report written")
    assert statuses_by_point(world.mlflow, "conf-exp") == {"train-1": ["FAILED", "FINISHED"], "train-2": ["FAILED"]}


def test_every_point_failing_with_exit_2_stops_the_grid_without_a_finalizer(
        world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_script(tmp_path, monkeypatch, {"train-1": {"exit": [2]}, "train-2": {"exit": [2]}})
    world.submit(spec())
    phase, message = finish(world)
    assert phase == "Failed" and message.startswith("ConfigurationError: train-1, train-2 failed with exit code 2")
    assert statuses_by_point(world.mlflow, "conf-exp") == {"train-1": ["FAILED"], "train-2": ["FAILED"]}
    assert "finalize-conf" not in world.job_names()
    [parent] = runs(world.mlflow, "conf-exp", contract.ROLE_PARENT)
    assert parent.info.status == "FAILED"


def test_a_restarted_controller_goes_on_with_what_runs(world: World, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The cluster's new controller adopts the running Jobs; the local one stops what the dead one left
    (never two trainings of one point) and runs it again: either way each point ends with one FINISHED
    run and no train run is left RUNNING."""
    write_script(tmp_path, monkeypatch, {name: {"curve": [0.1, 0.2, 0.3]} for name in ("train-1", "train-2")},
                 epoch_seconds=1.0)
    world.submit(spec())
    run_until(world, lambda: world.job_running("train-1") and world.job_running("train-2"), what="both running")
    world.restart()
    assert finish(world) == ("Succeeded", "decision report written")
    found = statuses_by_point(world.mlflow, "conf-exp")
    assert sorted(found) == ["train-1", "train-2"]
    assert all(s[-1] == "FINISHED" and s.count("FINISHED") == 1 and "RUNNING" not in s for s in found.values())


def test_a_job_deleted_under_the_grid_is_created_again(world: World, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    write_script(tmp_path, monkeypatch, {"train-1": {"curve": [0.1, 0.2, 0.3]}}, epoch_seconds=1.0)
    world.submit(spec())
    run_until(world, lambda: world.job_running("train-1"), what="train-1 running")
    world.delete_job("train-1")
    phase, _ = finish(world)
    assert phase == "Succeeded"
    found = statuses_by_point(world.mlflow, "conf-exp")
    assert found["train-1"][-1] == "FINISHED" and found["train-2"] == ["FINISHED"]
    assert "train-1" in world.job_names()  # created again, by the same submission
    assert len(runs(world.mlflow, "conf-exp", contract.ROLE_PARENT)) == 1


def test_a_changed_grid_resubmitted_runs_only_what_changed(world: World, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    write_script(tmp_path, monkeypatch, {})
    world.submit(spec())
    assert finish(world)[0] == "Succeeded"
    world.submit(spec())  # unchanged and finished: nothing to do, no new submission
    assert finish(world)[0] == "Succeeded"
    assert len(runs(world.mlflow, "conf-exp", contract.ROLE_PARENT)) == 1
    world.submit(spec(axes={"seed": [1, 2, 3]}))  # one point more: the two that succeeded are kept
    assert finish(world) == ("Succeeded", "decision report written")
    assert statuses_by_point(world.mlflow, "conf-exp") == {
        "train-1": ["FINISHED"], "train-2": ["FINISHED"], "train-3": ["FINISHED"]}
    parents = runs(world.mlflow, "conf-exp", contract.ROLE_PARENT)
    assert [p.info.status for p in parents] == ["FINISHED", "FINISHED"]
    assert all(p.data.tags.get(contract.TAG_DECISION) == "YES" for p in parents)  # finalized again


def test_the_tracking_server_away_mid_search_pauses_the_search_and_the_grid_runs_on(
        world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tracking: TrackingLink) -> None:
    write_script(tmp_path, monkeypatch, {}, epoch_seconds=0.5)
    world.submit(spec("rnd", train={"epochs": 2, "imgsz": 64}, axes={"lr0": {"loguniform": [0.001, 0.1]}},
                      search={"mode": "random", "trials": 3, "seed": 5},
                      job={"name_template": "train-{lr0}", "parallelism": 2}))
    run_until(world, lambda: len(world.job_names()) == 2, what="the first two trials created")
    tracking.away()
    try:
        paused = run_until(world, lambda: "search not updated" in world.status()[1] and world.status(),
                           seconds=30, what="the search paused")
        assert paused[0] == "Running"  # the grid goes on: no failure, no finalizer
        for _ in range(3):  # more steps while it is away: nothing fails, nothing is finalized
            world.step()
            assert world.status()[0] == "Running"
    finally:
        tracking.back()
    phase, message = finish(world, seconds=90)
    assert (phase, message) == ("Succeeded", "decision report written")
    found = statuses_by_point(world.mlflow, "rnd-exp")
    assert len(found) == 3 and all(s[-1] == "FINISHED" for s in found.values())
    [parent] = runs(world.mlflow, "rnd-exp", contract.ROLE_PARENT)
    trials = [k for k in parent.data.tags if k.startswith(contract.TAG_TRIAL_PREFIX)]
    assert sorted(k.removeprefix(contract.TAG_TRIAL_PREFIX) for k in trials) == sorted(found)


def test_a_tpe_search_stops_hopeless_trials_and_confirms_the_best(world: World, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Two start-up trials succeed (0.5 at every epoch); each later trial (number 2, 3) is hopeless
    (0.0 at epoch 1, slow epochs): the median rule asks it to stop, it ends after the epoch it is at,
    FINISHED and tagged stopped early; then the two best configurations are re-run with seed 2."""
    write_script(tmp_path, monkeypatch, {LATE_KEY: {"from_trial": 2, "curve": [0.0, 0.0, 0.0, 0.0],
                                                    "epoch_seconds": 3.0}})
    world.submit(spec("tpe", train={"epochs": 3, "imgsz": 64, "seed": 1},
                      axes={"lr0": {"loguniform": [0.001, 0.1]}},
                      search={"mode": "tpe", "trials": 4, "seed": 11, "startup_trials": 2},
                      early_stopping={"rule": "median", "metric": "epoch/mAP50-95", "min_epochs": 1,
                                      "startup_trials": 1, "grace_seconds": 60},
                      confirm={"top": 2, "seeds": [2]},
                      job={"name_template": "train-{lr0}", "parallelism": 2}))
    assert finish(world, seconds=180) == ("Succeeded", "decision report written")
    train = runs(world.mlflow, "tpe-exp", contract.ROLE_TRAIN)
    phases = sorted(r.data.tags[contract.TAG_PHASE] for r in train)
    assert phases == ["confirm", "confirm", "search", "search", "search", "search"]
    assert all(r.info.status == "FINISHED" for r in train)
    stopped = [r for r in train if contract.TAG_STOP_REQUESTED in r.data.tags]
    assert len(stopped) == 2 and all(contract.TAG_STOPPED_EARLY in r.data.tags for r in stopped)
    assert all(r.data.tags[contract.TAG_PHASE] == contract.PHASE_SEARCH for r in stopped)
    [parent] = runs(world.mlflow, "tpe-exp", contract.ROLE_PARENT)
    recorded = {k.removeprefix(contract.TAG_TRIAL_PREFIX): json.loads(v) for k, v in parent.data.tags.items()
                if k.startswith(contract.TAG_TRIAL_PREFIX)}
    assert sorted(t["phase"] for t in recorded.values()) == phases  # each trial recorded once, run once
    assert sorted(recorded) == sorted(r.data.tags[contract.TAG_POINT] for r in train)
