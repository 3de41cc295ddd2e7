"""The one grid model (contract/grid.py): the regressions of issue 9 and the bounds of issue 11."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

import contract
from contract.errors import InvalidInput
from contract.grid import GridSpec, argument_problem, load_grid, parse_grid
from contract.objective import better, objective_key
from controller.core.expanding import expand
from controller.core.rendering import RenderSettings, render_all
from tests.helpers.gridfiles import MD5, lab_grid, write_grid
from tests.helpers.paths import REPO


def problems(tmp_path: Path, grid: dict[str, Any] | str) -> list[str]:
    if isinstance(grid, str):
        (tmp_path / "data" / "tiny_coco").mkdir(parents=True, exist_ok=True)
        path = tmp_path / "grid.yaml"
        path.write_text(grid)
    else:
        path = write_grid(tmp_path, grid)
    with pytest.raises(InvalidInput) as caught:
        load_grid(path)
    found = [str(p) for p in caught.value.problems]
    assert found and all(line.startswith(str(path)) for line in found), found
    return found


def job_accepts(optimizer: str) -> tuple[bool, str]:
    """The train Job's own flag validation (jobs/train/options.py) of --optimizer."""
    pytest.importorskip("ultralytics")
    from jobs.common.errors import BadInput
    from jobs.train.cli import options_from
    from jobs.train.options import validate

    options = options_from(["--optimizer", optimizer])
    try:
        return True, validate(options=options).optimizer
    except BadInput as error:
        return False, str(error)


# --- optimizer names: the controller accepts a spelling iff the train Job does -------------------------

@pytest.mark.parametrize("spelling", ["RMSprop", "RMSProp", "rmsprop", "sgd", "SGD", "adamw", "MuSGD",
                                      "auto", "Auto", "Adagrad", "lion", ""])
def test_the_controller_accepts_an_optimizer_iff_the_train_job_does(tmp_path: Path, spelling: str) -> None:
    try:
        grid = load_grid(write_grid(tmp_path, lab_grid(train={"epochs": 3, "optimizer": spelling})))
        controller = (True, grid.train["optimizer"])
    except InvalidInput as error:
        controller = (False, str(error))
        assert "train.optimizer: must be one of" in str(error)
    job = job_accepts(spelling)
    assert controller[0] == job[0], (controller, job)
    if controller[0]:
        assert controller[1] == job[1]  # both store the canonical spelling
    if spelling.lower() == "auto":
        assert "ignores lr0" in controller[1] and "ignores lr0" in job[1]


@pytest.mark.parametrize(("spelling", "canonical"), [("sgd", "SGD"), ("rmsprop", "RMSprop"), ("RMSProp", "RMSprop"),
                                                     ("ADAMW", "AdamW")])
def test_optimizer_names_are_stored_in_ultralytics_spelling(tmp_path: Path, spelling: str, canonical: str) -> None:
    grid = load_grid(write_grid(tmp_path, lab_grid(train={"epochs": 3, "optimizer": spelling})))
    assert grid.train["optimizer"] == canonical
    assert argument_problem("optimizer", spelling) == (canonical, None)


def test_an_optimizer_axis_without_train_optimizer_renders_one_job_per_optimizer(tmp_path: Path) -> None:
    axes = {"imgsz": [320, 416], "lr0": [0.005, 0.01], "seed": [1, 42], "optimizer": ["sgd", "AdamW"]}
    grid = load_grid(write_grid(tmp_path, lab_grid(train={"epochs": 3}, axes=axes)))
    assert grid.job.name_template == "train-{imgsz}-{lr0}-{seed}-{optimizer}"  # the default names every axis
    assert "optimizer" not in grid.train and grid.axes["optimizer"] == ["SGD", "AdamW"]
    points = expand(grid, dataset_md5=MD5)
    assert len(points) == 16  # twice the lab grid's 8
    train_jobs = render_all(grid, points, RenderSettings(tracking_uri="http://mlflow:5000", backend="kubernetes"),
                            dataset_md5=MD5)[:-1]
    flags = []
    for job in train_jobs:
        args = job["spec"]["template"]["spec"]["containers"][0]["args"]
        flags.append(args[args.index("--optimizer") + 1])
        assert args.count("--optimizer") == 1
    assert sorted(flags) == ["AdamW"] * 8 + ["SGD"] * 8


def test_the_default_optimizer_applies_only_where_the_grid_sets_none(tmp_path: Path) -> None:
    assert load_grid(write_grid(tmp_path, lab_grid(train={"epochs": 3}))).train["optimizer"] == "SGD"
    found = problems(tmp_path, lab_grid(train={"epochs": 3, "optimizer": "SGD"}, axes={"optimizer": ["SGD", "Adam"]}))
    assert any("axes.optimizer: is also fixed in train.optimizer" in p for p in found)


# --- metric names: only what a train run logs ------------------------------------------------------------

def test_an_objective_on_ultralytics_column_name_exits_2_from_render(tmp_path: Path) -> None:
    grid = lab_grid(objective={"metric": "metrics/mAP50-95(B)"},
                    constraints=[{"metric": "metrics/recall(B)", "min": 0.2}])
    path = write_grid(tmp_path, grid)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop(contract.ENV_TRACKING_URI, None)
    done = subprocess.run([sys.executable, "-m", "controller", "--root", str(tmp_path), "render", str(path)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == contract.EXIT_BAD_INPUT, done.stdout + done.stderr
    output = done.stdout + done.stderr
    assert "objective.metric" in output and "did you mean mAP50-95?" in output
    assert "constraints[0].metric" in output and "did you mean recall?" in output
    assert "kind: Job" not in done.stdout


@pytest.mark.parametrize(("metric", "suggestion"), [("map50-95", "mAP50-95"), ("mAP50_95", "mAP50-95"),
                                                    ("metrics/precision(B)", "precision"), ("latency", None)])
def test_unknown_metrics_are_refused_with_a_suggestion(tmp_path: Path, metric: str, suggestion: str | None) -> None:
    found = "\n".join(problems(tmp_path, lab_grid(objective={"metric": metric})))
    assert "objective.metric" in found and "is not a metric a train run logs" in found
    if suggestion:
        assert f"did you mean {suggestion}" in found


def test_every_metric_a_train_run_logs_is_accepted(tmp_path: Path) -> None:
    for metric in contract.TRAIN_RUN_METRICS:
        grid = lab_grid(objective={"metric": metric, "direction": "maximize"},
                        constraints=[{"metric": metric, "min": 0}])
        assert load_grid(write_grid(tmp_path, grid)).objective_metric == metric


# --- grid.json: one shape, written and read through the model --------------------------------------------

def test_grid_json_spec_round_trips_through_the_model(tmp_path: Path) -> None:
    grid = load_grid(REPO / "grid.yaml")
    stored = grid.to_dict()
    assert set(stored) == set(GridSpec.model_fields)
    again = GridSpec.model_validate(stored)
    assert again == grid and again.to_dict() == stored


# --- one definition of "better" ---------------------------------------------------------------------------

def test_better_follows_the_direction_and_ties_at_twelve_digits() -> None:
    assert better(0.5, 0.4, "maximize") and not better(0.4, 0.5, "maximize")
    assert better(0.4, 0.5, "minimize")
    assert not better(0.5 + 1e-15, 0.5, "maximize")  # float noise is a tie
    assert better(0.0, float("nan"), "maximize") and not better(float("nan"), 0.0, "minimize")
    assert objective_key(None, "maximize") == float("inf")


# --- bounds (issue 11) -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("change", "expected"), [
    ({"axes": {"imgsz": [320, 1000000000]}}, "axes.imgsz[1]: must be between 32 and 4096"),
    ({"axes": {"seed": [1, 18446744073709551616]}}, "axes.seed[1]: must be < 4.29497e+09, got an integer of 65 bits"),
    ({"axes": {"seed": [-1]}}, "axes.seed[0]: must be >= 0"),
    ({"train": {"warmup_epochs": float("inf")}}, "train.warmup_epochs: must be a finite number"),
    ({"axes": {"mosaic": [1.0, "lots"]}}, "axes.mosaic[1]: must be a number, got 'lots'"),
    ({"axes": {"mosaic": [1.0, 1.5]}}, "axes.mosaic[1]: must be between 0 and 1, got 1.5"),
    ({"axes": {"weight_decay": [0, 0.0]}}, "axes.weight_decay: has duplicate values"),
    ({"axes": {"cos_lr": [True, "yes"]}}, "axes.cos_lr[1]: must be a boolean"),
    ({"train": {"device": "cpu"}}, "train.device: is set by the train Job itself"),
    ({"train": {"cfg": "x.yaml"}}, "train.cfg: is set by the train Job itself"),
    ({"name": "lab\n"}, "name: must be a lowercase DNS label"),
    ({"experiment": ""}, "experiment: must not be empty"),
    ({"experiment": None}, "experiment: must be a string"),
    ({"job": {"image": ""}}, "job.image: must not be empty"),
    ({"job": {"queue": "Team_Queue"}}, "job.queue: must be a Kueue LocalQueue name"),
    ({"job": {"name_template": "train-{lr0:.3f}"}}, "job.name_template: may only hold plain {axis} fields"),
    ({"job": {"name_template": "train-{lr0"}}, "job.name_template: is not a valid template"),
    ({"constraints": [{"metric": "recall", "min": 1.5}]}, "constraints[0]: recall is in [0.0, 1.0]"),
    ({"constraints": [{"metric": "recall", "min": 0.6, "max": 0.5}]}, "constraints[0]: min 0.6 > max 0.5"),
    ({"constraints": [{"metric": "recall", "min": float("nan")}]}, "constraints[0].min: must be a finite number"),
    ({"gates": {"min_objective": 2.0}}, "gates.min_objective: mAP50-95 is in [0.0, 1.0]"),
    ({"gates": {"min_objective": float("nan")}}, "gates.min_objective: must be a finite number"),
    ({"dataset": {"path": "/etc"}}, "dataset.path: must be a path inside the project folder"),
    ({"dataset": {"path": "../elsewhere"}}, "dataset.path: must be a path inside the project folder"),
    ({"axes": None}, "axes: must declare at least one axis"),
    ({"model": {"weights": "s3:///x.pt"}}, "model.weights: must name an object: s3://<bucket>/<key>"),
    ({"model": {"weights": "s3://bucket"}}, "model.weights: must name an object"),
])
def test_values_out_of_bounds_are_refused_with_their_location(tmp_path: Path, change: dict[str, Any],
                                                              expected: str) -> None:
    found = problems(tmp_path, lab_grid(**change))
    assert any(expected in p for p in found), found


@pytest.mark.parametrize("template", ["train..{seed}-{imgsz}-{lr0}", "train-{imgsz}-{lr0}-{seed}."])
def test_a_template_giving_invalid_job_names_is_refused_before_anything_starts(tmp_path: Path, template: str) -> None:
    grid = load_grid(write_grid(tmp_path, lab_grid(job={"name_template": template})))
    with pytest.raises(InvalidInput, match="not a valid Kubernetes Job name"):
        expand(grid, dataset_md5=MD5)


def test_a_lab_grid_with_everything_in_bounds_is_valid(tmp_path: Path) -> None:
    grid = lab_grid(axes={"imgsz": [32, 4096], "seed": [0, 2**32 - 1], "weight_decay": [0, 0.0005]})
    assert load_grid(write_grid(tmp_path, grid)).n_points == 8


@pytest.mark.parametrize(("content", "expected"), [
    ("name: lab\nname: other\n", "duplicate key 'name' (first at line 1)"),
    ("name: [" * 10_000, "nested more than 20 levels deep"),
    ("a: &a [x, x]\n" + "".join(f"a{i}: &a{i} [*a{i - 1 if i else ''}, *a{i - 1 if i else ''}]\n" for i in range(60)),
     "more than 100 aliases"),
    ("name: [unclosed\n", "not valid YAML"),
    ("seed: " + "9" * 5000 + "\n", ""),  # a 5,000-digit number: a located problem, not a traceback
])
def test_the_file_is_read_with_bounds(tmp_path: Path, content: str, expected: str) -> None:
    found = "\n".join(problems(tmp_path, content))
    assert expected in found


def test_binary_and_huge_files_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "grid.yaml"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(InvalidInput, match="not UTF-8"):
        load_grid(path)
    path.write_text("# " + "x" * 2_000_000)
    with pytest.raises(InvalidInput, match="more than a grid file needs"):
        load_grid(path)


def test_too_many_points_are_refused_fast(tmp_path: Path) -> None:
    grid = lab_grid(axes={"seed": list(range(1000)), "lr0": [round(0.0001 * (i + 1), 4) for i in range(100)],
                          "imgsz": [32 * (i + 1) for i in range(100)]})
    started = time.monotonic()
    found = "\n".join(problems(tmp_path, grid))
    assert "gives 10000000 points, more than the limit of 10000" in found and "--max-points" in found
    assert time.monotonic() - started < 2.0
    raw = yaml.safe_load(write_grid(tmp_path, lab_grid()).read_text())
    with pytest.raises(InvalidInput, match="more than the limit of 4"):
        parse_grid(raw, source="grid.yaml", base_dir=tmp_path, max_points=4)


def test_name_template_problems_from_the_controller_name_the_file(tmp_path: Path) -> None:
    from controller.submitting import prepare

    path = write_grid(tmp_path, lab_grid(job={"name_template": "train-{imgsz}-{lr0}"}))
    with pytest.raises(InvalidInput) as caught:
        prepare(grid_path=path, root=tmp_path)
    assert all(p.location == f"{path}: job.name_template" for p in caught.value.problems)
    with pytest.raises(InvalidInput, match="more than the limit of 4"):
        prepare(grid_path=write_grid(tmp_path, lab_grid()), root=tmp_path, max_points=4)
