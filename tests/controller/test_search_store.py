"""A search's state lives in MLflow alone (controller/searching.py): trials recorded on the parent run before
their Jobs exist, results read from the runs, trials carried over to the next submission. A real store."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

import contract
from contract.grid import GridSpec, parse_grid
from controller.searching import Search, recorded_trials
from tests.helpers.gridfiles import MD5, lab_grid


@pytest.fixture
def mlflow(tmp_path: Path) -> MlflowClient:
    return MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")


def spec() -> GridSpec:
    return parse_grid(lab_grid(axes={"lr0": {"loguniform": [0.001, 0.1]}, "seed": [1, 2]},
                               search={"mode": "tpe", "trials": 4, "seed": 9, "startup_trials": 2},
                               job={"name_template": "train-{lr0}-{seed}"}, confirm={"top": 2, "seeds": [3]}),
                      source="grid.yaml", base_dir=None)


def parent(mlflow: MlflowClient, experiment: str) -> str:
    return mlflow.create_run(experiment, tags={contract.TAG_GRID: "lab", contract.TAG_ROLE: "parent"}).info.run_id


def log_run(mlflow: MlflowClient, experiment: str, parent_id: str, name: str, spec_hash: str, value: float) -> None:
    run = mlflow.create_run(experiment, tags={
        "mlflow.parentRunId": parent_id, contract.TAG_GRID: "lab", contract.TAG_POINT: name,
        contract.TAG_ROLE: contract.ROLE_TRAIN, contract.TAG_SPEC_HASH: spec_hash})
    mlflow.log_metric(run.info.run_id, contract.METRIC_MAP50_95, value)
    mlflow.set_terminated(run.info.run_id, "FINISHED")


def test_a_resubmission_carries_the_trials_and_asks_exactly_the_next_ones(mlflow: MlflowClient) -> None:
    experiment = mlflow.create_experiment("lab")
    grid = spec()
    first = Search(mlflow, grid, experiment, parent(mlflow, experiment), MD5)
    first.start([])
    tick = first.tick(room=2, live=set(), failed=set())
    assert [p.name for p in tick.new] == [t.name for t in recorded_trials(mlflow, first.parent_run_id)]
    assert tick.pending
    a, b = tick.new
    log_run(mlflow, experiment, first.parent_run_id, a.name, a.spec_hash, 0.3)
    # the controller dies; the next submission starts a new parent run with the trials carried over
    second = Search(mlflow, grid, experiment, parent(mlflow, experiment), MD5)
    second.start([], carried=tuple(recorded_trials(mlflow, first.parent_run_id)))
    assert [t.name for t in second.trials] == [a.name, b.name]
    asked = second.tick(room=1, live={b.name}, failed=set()).new
    # what a controller that never stopped would have asked from the same history
    replay = Search(mlflow, grid, experiment, parent(mlflow, experiment), MD5)
    replay.start([], carried=tuple(recorded_trials(mlflow, first.parent_run_id)))
    assert [p.params for p in replay.tick(room=1, live={b.name}, failed=set()).new] == [p.params for p in asked]
    assert [t.number for t in recorded_trials(mlflow, second.parent_run_id)] == [0, 1, 2]


def test_confirm_points_come_once_the_search_is_done_and_then_nothing_is_pending(mlflow: MlflowClient) -> None:
    experiment = mlflow.create_experiment("lab")
    search = Search(mlflow, spec(), experiment, parent(mlflow, experiment), MD5)
    search.start([])
    points = search.tick(room=4, live=set(), failed=set()).new
    assert len(points) == 4
    for value, point in zip([0.1, 0.4, 0.3, 0.2], points, strict=True):
        log_run(mlflow, experiment, search.parent_run_id, point.name, point.spec_hash, value)
    confirm = search.tick(room=4, live=set(), failed=set())
    assert [p.params["seed"] for p in confirm.new] == [3, 3]
    assert [p.params["lr0"] for p in confirm.new] == [points[1].params["lr0"], points[2].params["lr0"]]
    tags = {t.name: t.phase for t in recorded_trials(mlflow, search.parent_run_id)}
    assert [tags[p.name] for p in confirm.new] == [contract.PHASE_CONFIRM] * 2
    for point in confirm.new:
        log_run(mlflow, experiment, search.parent_run_id, point.name, point.spec_hash, 0.35)
    after = search.tick(room=4, live=set(), failed=set())
    assert after.new == [] and not after.pending


def test_a_failed_job_without_a_run_is_a_failed_trial_and_frees_its_room(mlflow: MlflowClient) -> None:
    experiment = mlflow.create_experiment("lab")
    search = Search(mlflow, spec(), experiment, parent(mlflow, experiment), MD5)
    search.start([])
    a, b = search.tick(room=2, live=set(), failed=set()).new
    more = search.tick(room=1, live={b.name}, failed={a.name}).new  # a's pod failed before it opened a run
    assert len(more) == 1 and more[0].name not in (a.name, b.name)


def test_a_changed_grid_carries_only_the_trials_it_would_still_run(mlflow: MlflowClient) -> None:
    experiment = mlflow.create_experiment("lab")
    before = Search(mlflow, spec(), experiment, parent(mlflow, experiment), MD5)
    before.start([])
    asked = before.tick(room=4, live=set(), failed=set()).new
    carried = tuple(recorded_trials(mlflow, before.parent_run_id))
    # more epochs: every trial would train differently (its spec hash changed): none is carried
    longer = parse_grid({**lab_grid(axes={"lr0": {"loguniform": [0.001, 0.1]}, "seed": [1, 2]},
                                    search={"mode": "tpe", "trials": 4, "seed": 9, "startup_trials": 2},
                                    job={"name_template": "train-{lr0}-{seed}"}),
                         "train": {"epochs": 10, "batch": 8, "optimizer": "SGD", "nbs": 8, "warmup_epochs": 0}},
                        source="grid.yaml", base_dir=None)
    after = Search(mlflow, longer, experiment, parent(mlflow, experiment), MD5)
    after.start([], carried=carried)
    assert after.trials == []
    # a narrower space: only the trials inside it are carried, and they count against the budget
    low = [p for p in asked if p.params["lr0"] <= 0.01]
    narrow = parse_grid(lab_grid(axes={"lr0": {"loguniform": [0.001, 0.01]}, "seed": [1, 2]},
                                 search={"mode": "tpe", "trials": 4, "seed": 9, "startup_trials": 2},
                                 job={"name_template": "train-{lr0}-{seed}"}, confirm={"top": 2, "seeds": [3]}),
                        source="grid.yaml", base_dir=None)
    kept = Search(mlflow, narrow, experiment, parent(mlflow, experiment), MD5)
    kept.start([], carried=carried)
    assert sorted(t.name for t in kept.trials) == sorted(p.name for p in low)
    assert len(kept.tick(room=4, live=set(), failed=set()).new) == 4 - len(low)


def test_a_stop_request_and_its_time_are_on_the_run_and_survive_a_restart(mlflow: MlflowClient) -> None:
    experiment = mlflow.create_experiment("lab")
    grid = parse_grid(lab_grid(axes={"lr0": {"loguniform": [0.001, 0.1]}},
                               search={"mode": "tpe", "trials": 2, "seed": 1},
                               early_stopping={"rule": "threshold", "threshold": 0.9, "grace_seconds": 1},
                               job={"name_template": "train-{lr0}"}),
                      source="grid.yaml", base_dir=None)
    search = Search(mlflow, grid, experiment, parent(mlflow, experiment), MD5)
    search.start([])
    first, _ = search.tick(room=2, live=set(), failed=set()).new
    run = mlflow.create_run(experiment, tags={
        "mlflow.parentRunId": search.parent_run_id, contract.TAG_GRID: "lab", contract.TAG_POINT: first.name,
        contract.TAG_ROLE: contract.ROLE_TRAIN, contract.TAG_SPEC_HASH: first.spec_hash}).info.run_id
    mlflow.log_metric(run, "epoch/mAP50-95", 0.01, step=1)
    tick = search.tick(room=0, live={first.name}, failed=set())
    assert [d.name for d in tick.stops] == [first.name] and tick.overdue == []
    tags = mlflow.get_run(run).data.tags
    assert tags[contract.TAG_STOP_REQUESTED] == "1" and float(tags[contract.TAG_STOP_REQUESTED_AT]) > 0
    # a new controller: the request is not made twice, and its grace period still runs out
    restarted = Search(mlflow, grid, experiment, search.parent_run_id, MD5)
    restarted.start([])
    time.sleep(1.2)
    again = restarted.tick(room=0, live={first.name}, failed=set())
    assert again.stops == [] and again.overdue == [first.name]
