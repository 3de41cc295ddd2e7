"""grid.yaml validation: every problem reported with its location, nothing accepted silently."""

from __future__ import annotations

from pathlib import Path

import pytest

from contract.grid import load_grid
from contract.train_args import TRAIN_ARGUMENTS
from controller.errors import InvalidInput
from tests.helpers.gridfiles import lab_grid, write_grid
from tests.helpers.paths import REPO


def problems(tmp_path: Path, grid: dict, **kwargs) -> list[str]:
    with pytest.raises(InvalidInput) as caught:
        load_grid(write_grid(tmp_path, grid, **kwargs))
    return [str(p) for p in caught.value.problems]


def test_the_lab_grid_is_valid_with_defaults(tmp_path: Path) -> None:
    grid = load_grid(write_grid(tmp_path, lab_grid()))
    assert grid.name == "lab" and grid.experiment == "lab"
    assert grid.axes == {"imgsz": [320, 416], "lr0": [0.005, 0.01], "seed": [1, 42]}
    assert grid.train["optimizer"] == "SGD"
    assert grid.job.backoff_limit == 1 and grid.objective_metric == "mAP50-95"
    assert grid.registered_model == "lab-model" and grid.language == "en"


def test_the_repository_grid_is_the_lab_grid() -> None:
    grid = load_grid(REPO / "grid.yaml")
    assert grid.axes == {"imgsz": [320, 416], "lr0": [0.005, 0.01], "seed": [1, 42]}
    assert grid.train["epochs"] == 3 and grid.train["nbs"] == grid.train["batch"] and grid.train["warmup_epochs"] == 0
    assert grid.job.name_template == "train-{imgsz}-{lr0}-{seed}"


def test_every_problem_is_reported_at_once_with_its_location(tmp_path: Path) -> None:
    grid = lab_grid(colour="blue", axes={"imgsz": [320, 400], "lr0": [0.0, -1], "seed": []})
    found = problems(tmp_path, grid)
    text = "\n".join(found)
    assert "colour: unknown key" in text
    assert "axes.imgsz[1]: must be a positive multiple of 32" in text and "400" in text
    assert "axes.lr0[0]: must be > 0" in text and "axes.lr0[1]: must be > 0" in text
    assert "axes.seed: must be a non-empty list" in text
    assert all(line.startswith(str(tmp_path / "grid.yaml")) for line in found)


@pytest.mark.parametrize(("change", "expected"), [
    ({"axes": {"imgsz": ["320"]}}, "axes.imgsz[0]: must be an integer, got '320'"),
    ({"axes": {"imgsz": [True]}}, "axes.imgsz[0]: must be an integer, got a boolean"),
    ({"axes": {}}, "axes: must declare at least one axis"),
    ({"axes": {"lr00": [0.1]}}, "axes.lr00: is not an ultralytics train argument"),
    ({"axes": {"data": ["x.yaml"]}}, "axes.data: is set by the train Job itself"),
    ({"axes": {"epochs": [1, 2]}}, "axes.epochs: is also fixed in train.epochs"),
    ({"axes": {"seed": [1, 1]}}, "axes.seed: has duplicate values"),
    ({"train": {"optimizer": "auto"}}, "train.optimizer: must be one of"),
    ({"train": {"epochs": 0}}, "train.epochs: must be > 0"),
    ({"name": "Lab_Grid"}, "name: must be a lowercase DNS label"),
    ({"job": {"parallelism": 0}}, "job.parallelism: must be > 0"),
    ({"job": {"resources": {"memory": "lots"}}}, "job.resources.memory: not a Kubernetes memory quantity"),
    ({"job": {"backof_limit": 2}}, "job.backof_limit: unknown key"),
    ({"objective": {"direction": "up"}}, "objective.direction: must be one of"),
    ({"constraints": [{"metric": "recall"}]}, "constraints[0]: needs min or max"),
    ({"gates": {"min_success_fraction": 2}}, "gates.min_success_fraction: must be between 0 and 1"),
    ({"report": {"language": "de"}}, "report.language: must be one of"),
    ({"dataset": {"path": "data/tiny_coco", "md5": "abc"}}, "dataset.md5: must be a DVC md5"),
])
def test_bad_values_are_named(tmp_path: Path, change: dict, expected: str) -> None:
    grid = lab_grid(**change)
    if "epochs" in change.get("axes", {}):
        grid["train"]["epochs"] = 3
    assert any(expected in p for p in problems(tmp_path, grid)), problems(tmp_path, grid)


def test_missing_required_sections(tmp_path: Path) -> None:
    found = "\n".join(problems(tmp_path, {"name": "x"}))
    for key in ("dataset", "model", "axes"):
        assert f"{key}: is required" in found


def test_missing_dataset_is_an_error(tmp_path: Path) -> None:
    found = "\n".join(problems(tmp_path, lab_grid(), with_dataset=False))
    assert "dataset.path: no dataset at" in found and "tiny_coco.dvc" in found


def test_unreadable_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="cannot read"):
        load_grid(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(InvalidInput, match=r"bad.yaml:\d+:\d+: not valid YAML"):
        load_grid(bad)


def test_known_arguments_match_the_installed_ultralytics() -> None:
    ultralytics_cfg = pytest.importorskip("ultralytics.cfg")
    assert TRAIN_ARGUMENTS == set(ultralytics_cfg.DEFAULT_CFG_DICT)
