"""End to end with the local executor and real trainings (tiny settings): a TPE search whose points are
stopped early through MLflow, and a grid whose verdict is confirmed with more seeds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from mlflow.tracking import MlflowClient

import contract
from tests.controller.local.test_submit_grid import controller, tiny_dataset
from tests.helpers.paths import BACKBONE, COCO128

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    folder = tmp_path_factory.mktemp("search-data")
    out, md5 = tiny_dataset(COCO128, folder)
    return out, md5


def project(tmp_path: Path, dataset: tuple[Path, str], **changes: Any) -> Path:
    source, md5 = dataset
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "tiny_coco").symlink_to(source, target_is_directory=True)
    grid = {
        "name": "tiny-search", "experiment": "tiny-search",
        "dataset": {"path": "data/tiny_coco", "md5": md5},
        "model": {"weights": str(BACKBONE), "registered_name": "tiny-search-person"},
        "train": {"epochs": 1, "batch": 4, "nbs": 4, "warmup_epochs": 0, "workers": 0, "imgsz": 64, "seed": 1},
        "axes": {"lr0": [0.005, 0.01]},
        "job": {"name_template": "train-{lr0}", "parallelism": 2},
        "gates": {"min_objective": 0.0, "min_success_fraction": 0.25},
        **changes,
    }
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump(grid, sort_keys=False))
    return tmp_path


def runs(folder: Path, experiment: str = "tiny-search") -> tuple[MlflowClient, list[Any], Any]:
    client = MlflowClient(contract.embedded_tracking_uri(folder))
    found = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    train = [r for r in found if r.data.tags.get(contract.TAG_ROLE) == contract.ROLE_TRAIN]
    parent = next(r for r in found if r.data.tags.get(contract.TAG_ROLE) == contract.ROLE_PARENT)
    return client, train, parent


def trials(parent: Any) -> dict[str, dict[str, Any]]:
    return {k.removeprefix(contract.TAG_TRIAL_PREFIX): json.loads(v) for k, v in parent.data.tags.items()
            if k.startswith(contract.TAG_TRIAL_PREFIX)}


def test_a_tpe_search_stops_hopeless_points_through_mlflow(tmp_path: Path, dataset: tuple[Path, str]) -> None:
    folder = project(
        tmp_path, dataset,
        train={"epochs": 10, "batch": 4, "nbs": 4, "warmup_epochs": 0, "workers": 0, "imgsz": 64, "seed": 1},
        search={"mode": "tpe", "trials": 4, "seed": 7},
        axes={"lr0": {"loguniform": [0.001, 0.02]}},
        # no tiny training reaches mAP50-95 0.99 at epoch 1: every point is hopeless by this rule
        early_stopping={"rule": "threshold", "metric": "epoch/mAP50-95", "threshold": 0.99, "min_epochs": 1})
    result = controller(folder, "submit-grid", "grid.yaml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "a TPE search of 4 trials, 2 at a time" in result.stdout
    _, train, parent = runs(folder)
    assert len(train) == 4 and {r.info.status for r in train} == {"FINISHED"}
    recorded = trials(parent)
    assert sorted(t["number"] for t in recorded.values()) == [0, 1, 2, 3]
    assert {r.data.tags[contract.TAG_POINT] for r in train} == set(recorded)
    assert len({r.data.params["lr0"] for r in train}) == 4  # four distinct sampled points
    stopped = [r for r in train if contract.TAG_STOPPED_EARLY in r.data.tags]
    assert stopped, "no point was stopped early"
    for run in stopped:
        epochs = int(run.data.tags[contract.TAG_STOPPED_EARLY])
        assert 1 <= epochs < 10 and run.data.metrics[contract.METRIC_EPOCHS] == epochs
        assert int(run.data.tags[contract.TAG_STOP_REQUESTED]) >= 1
        assert contract.METRIC_MAP50_95 in run.data.metrics  # final metrics logged: ended cleanly
        assert run.data.tags[contract.TAG_PHASE] == contract.PHASE_SEARCH
    assert "stop requested at epoch" in result.stdout
    assert parent.info.status == "FINISHED"
    report = (folder / "reports" / "tiny-search" / "decision.md").read_text()
    assert "## Search" in report and "### Points stopped early" in report and "**Compute saved**" in report


def test_a_confirm_phase_reruns_the_top_configurations_with_more_seeds(tmp_path: Path,
                                                                       dataset: tuple[Path, str]) -> None:
    folder = project(tmp_path, dataset, confirm={"top": 2, "seeds": [2], "tie": "faster"})
    result = controller(folder, "submit-grid", "grid.yaml")
    assert result.returncode == 0, result.stdout + result.stderr
    _, train, parent = runs(folder)
    assert len(train) == 4 and {r.info.status for r in train} == {"FINISHED"}
    phases = {r.data.tags[contract.TAG_POINT]: r.data.tags[contract.TAG_PHASE] for r in train}
    assert sorted(phases.values()) == ["confirm", "confirm", "search", "search"]
    confirm = [r for r in train if r.data.tags[contract.TAG_PHASE] == contract.PHASE_CONFIRM]
    assert {r.data.params["seed"] for r in confirm} == {"2"}
    assert {r.data.params["lr0"] for r in confirm} == {"0.005", "0.01"}
    assert {t["phase"] for t in trials(parent).values()} == {"search", "confirm"}
    assert sorted(phases) == ["train-0.005", "train-0.005-s2", "train-0.01", "train-0.01-s2"]
    # the report decides on the repeats: two runs per configuration, a verdict, a tie settled by `faster`
    report = (folder / "reports" / "tiny-search" / "decision.md").read_text()
    assert "## Confirmation" in report
    assert "**Verdict**:" in report and ("named winner" in report or "Tie rule `faster`" in report)
