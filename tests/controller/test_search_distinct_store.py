"""One configuration, one training, through the controller's own code (a real MLflow store, no training): the
Jobs a random search's submission renders, and a resubmitted TPE search whose space is already run."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

import contract
from contract.grid import GridSpec, parse_grid
from controller.core.searching import Names, make_point
from controller.searching import Search, recorded_trials
from controller.submitting import render_grid
from tests.helpers.gridfiles import MD5, lab_grid, write_grid


def test_the_issues_random_search_renders_four_jobs_with_four_spec_hashes(tmp_path: Path) -> None:
    grid = lab_grid(name="r", axes={"imgsz": [160, 192], "lr0": [0.005, 0.01]},
                    search={"mode": "random", "trials": 4, "seed": 248}, job={"name_template": "r-{imgsz}-{lr0}"})
    path = write_grid(tmp_path, grid)
    jobs = [d for d in yaml.safe_load_all(render_grid(grid_path=path, root=tmp_path))
            if d and d["kind"] == "Job" and d["metadata"]["labels"][contract.LABEL_ROLE] == "train"]
    assert sorted(j["metadata"]["name"] for j in jobs) == ["r-160-0.005", "r-160-0.01", "r-192-0.005", "r-192-0.01"]
    assert len({j["metadata"]["labels"][contract.LABEL_SPEC_HASH] for j in jobs}) == 4


@pytest.fixture
def mlflow(tmp_path: Path) -> MlflowClient:
    return MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")


def tpe(trials: int) -> GridSpec:
    return parse_grid(lab_grid(axes={"imgsz": [160, 192], "seed": [7, 8]}, search={"mode": "tpe", "trials": trials,
                                                                                  "seed": 4},
                               job={"name_template": "train-{imgsz}-{seed}"}, confirm={"top": 2, "seeds": [8]}),
                      source="grid.yaml", base_dir=None)


def finish(mlflow: MlflowClient, experiment: str, parent_id: str, search: Search, value: float) -> None:
    for trial in search.trials:
        run = mlflow.create_run(experiment, tags={
            "mlflow.parentRunId": parent_id, contract.TAG_GRID: "lab", contract.TAG_POINT: trial.name,
            contract.TAG_ROLE: contract.ROLE_TRAIN, contract.TAG_SPEC_HASH: trial.spec_hash})
        mlflow.log_metric(run.info.run_id, contract.METRIC_MAP50_95, value)
        mlflow.set_terminated(run.info.run_id, "FINISHED")
        value += 0.01


def test_a_resubmission_whose_space_is_already_run_asks_nothing_and_ends(mlflow: MlflowClient) -> None:
    experiment = mlflow.create_experiment("lab")
    # the first submission: two search points with seed 7, then their confirm re-runs with seed 8
    small = tpe(2)
    first = Search(mlflow, small, experiment, mlflow.create_run(experiment).info.run_id, MD5)
    first.start([make_point(small, {"imgsz": size, "seed": 7}, dataset_md5=MD5, names=Names(), suffixes=())
                 for size in (160, 192)])
    finish(mlflow, experiment, first.parent_run_id, first, 0.02)
    confirm = first.tick(room=2, live=set(), failed=set()).new
    assert sorted((p.params["imgsz"], p.params["seed"], p.phase) for p in confirm) == [
        (160, 8, contract.PHASE_CONFIRM), (192, 8, contract.PHASE_CONFIRM)]
    finish(mlflow, experiment, first.parent_run_id, first, 0.03)
    # resubmitted with trials 4: the four points of the space are all carried over, none may train again
    second = Search(mlflow, tpe(4), experiment, mlflow.create_run(experiment).info.run_id, MD5)
    second.start([], carried=tuple(recorded_trials(mlflow, first.parent_run_id)))
    tick = second.tick(room=2, live=set(), failed=set())
    assert tick.new == [] and not tick.pending
    assert tick.exhausted == ("every one of the 4 points of the search space is already asked: the search "
                              "stops at 2 of its 4 trials rather than train a point twice")
    hashes = [t.spec_hash for t in recorded_trials(mlflow, second.parent_run_id)]
    assert len(hashes) == len(set(hashes)) == 4
