"""The lab's baseline run (handout step 5, `python -m controller baseline`, `make baseline`): the grid's recipe,
the weights the lab grid gets, named and tagged as a baseline, beside the grid's runs, never a grid point.

Real components: a DVC-tracked tiny dataset in a temporary project, its embedded MLflow store (SQLite under .tp4),
`python -m jobs.train` as a process, the finalizer's own run selection (jobs.finalize.results).
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from rich.console import Console

import contract
from contract.errors import InvalidInput
from contract.grid import load_grid, parse_grid
from controller import baseline
from controller.core.expanding import expand
from controller.demo import SHARED_WEIGHTS, lab_weights
from jobs.common.errors import BadInput
from jobs.train.cli import options_from
from jobs.train.job import context_from_env
from tests.helpers.paths import BACKBONE, REPO, SHARED
from tests.jobs.test_train_job import tiny_dvc_project

MD5 = "0123456789abcdef0123456789abcdef.dir"
CONTEXT_ENV = (contract.ENV_GRID, contract.ENV_POINT, contract.ENV_ROLE, contract.ENV_PARENT_RUN_ID,
               contract.ENV_SPEC_HASH, contract.ENV_ATTEMPT, contract.ENV_PHASE, contract.ENV_EXPERIMENT)


def lab_grid_yaml(**changes: Any) -> dict[str, Any]:
    """The repository's grid.yaml (the lab grid and its recipe), with `changes` on top."""
    raw = yaml.safe_load((REPO / "grid.yaml").read_text())
    return {**raw, **changes}


# --- the plan: pure, fast -----------------------------------------------------------------------------


def test_the_baseline_takes_the_grids_recipe_and_the_handouts_values(tmp_path: Path) -> None:
    (tmp_path / "data" / "tiny_coco").mkdir(parents=True)
    grid = parse_grid(lab_grid_yaml(), source="grid.yaml", base_dir=tmp_path)
    points = expand(grid, dataset_md5=MD5)
    plan = baseline.plan(grid, {"imgsz": None, "lr0": None, "seed": None, "epochs": None}, dataset_md5=MD5,
                         points=points)
    assert plan.name == "baseline-320-0.01-0"
    assert plan.params == {"imgsz": 320, "lr0": 0.01, "seed": 0}
    flags = " ".join(plan.args)
    # the grid's `train:` section, not ultralytics' defaults (nbs 64, warmup_epochs 3)
    for expected in ("--epochs 3", "--batch 8", "--optimizer SGD", "--arg nbs=8", "--arg warmup_epochs=0",
                     "--arg workers=0", "--imgsz 320", "--lr0 0.01", "--seed 0", "--exp-name cv_yolo_tiny",
                     "--data data/tiny_coco/data.yaml", "--model yolov8n.pt"):
        assert expected in flags
    assert plan.same_as is None and plan.spec_hash not in {p.spec_hash for p in points}  # seed 0: no grid point
    same = baseline.plan(grid, {"imgsz": 416, "lr0": 0.005, "seed": 42, "epochs": 3}, dataset_md5=MD5,
                         points=points)
    assert same.name == "baseline-416-0.005-42" and same.same_as == "train-416-0.005-42"


def test_values_a_grid_would_refuse_are_bad_input_naming_the_flag(tmp_path: Path) -> None:
    (tmp_path / "data" / "tiny_coco").mkdir(parents=True)
    grid = parse_grid(lab_grid_yaml(), source="grid.yaml", base_dir=tmp_path)
    with pytest.raises(InvalidInput) as refused:
        baseline.baseline_params(grid, {"imgsz": 320, "lr0": -1.0, "seed": None, "epochs": 0})
    assert [p.location for p in refused.value.problems] == ["--lr0 -1.0", "--epochs 0"]


def test_a_value_fixed_by_the_grids_train_section_is_the_baselines_default(tmp_path: Path) -> None:
    (tmp_path / "data" / "tiny_coco").mkdir(parents=True)
    raw = lab_grid_yaml()
    raw["train"] = {**raw["train"], "lr0": 0.02}
    raw["axes"] = {"imgsz": [320, 416], "seed": [1, 42]}
    grid = parse_grid(raw, source="grid.yaml", base_dir=tmp_path)
    assert baseline.baseline_params(grid, {"imgsz": None, "lr0": None, "seed": 7, "epochs": None}) == {
        "imgsz": 320, "lr0": 0.02, "seed": 7}


# --- the weights: one rule for `controller demo`, `controller baseline` and the Makefile ---------------------


def test_lab_weights_the_shared_backbone_else_the_grids(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TP4_SHARED", str(tmp_path / "shared"))
    assert lab_weights(tmp_path, None) is None  # no backbone there: the grid's model.weights
    (tmp_path / "shared" / SHARED_WEIGHTS).parent.mkdir(parents=True)
    (tmp_path / "shared" / SHARED_WEIGHTS).write_bytes(b"weights")
    assert lab_weights(tmp_path, None) == str(tmp_path / "shared" / SHARED_WEIGHTS)
    assert lab_weights(tmp_path, "other.pt") == "other.pt"


def test_make_baseline_passes_the_weights_make_demo_and_controller_demo_find(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TP4_SHARED", raising=False)
    env = {k: v for k, v in os.environ.items() if k not in ("WEIGHTS", "SHARED", "GRID", "MAKEFLAGS", "MFLAGS")}
    lines = {}
    for target in ("demo", "baseline"):
        done = subprocess.run(["make", "-n", target], cwd=REPO, env=env, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
        lines[target] = next(line for line in done.stdout.splitlines() if "-m controller" in line).split()
    assert lines["baseline"][1:5] == ["-m", "controller", "baseline", "grid.yaml"]
    expected = lab_weights(REPO, None)
    for words in lines.values():
        given = words[words.index("--weights") + 1] if "--weights" in words else None
        assert (given and str((REPO / given).resolve())) == (expected and str(Path(expected).resolve()))


# --- the Job's side: the role comes from the environment ------------------------------------------------------


def test_the_role_names_and_tags_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in CONTEXT_ENV:
        monkeypatch.delenv(var, raising=False)
    options = options_from(["--imgsz", "160"])
    standalone = context_from_env(options=options)
    assert standalone.standalone and standalone.run_name(options=options) == "train-160-0.01-0"
    monkeypatch.setenv(contract.ENV_ROLE, contract.ROLE_BASELINE)
    monkeypatch.setenv(contract.ENV_GRID, "tp4-lab")
    context = context_from_env(options=options)
    assert not context.standalone and context.run_name(options=options) == "baseline-160-0.01-0"
    assert context.tags[contract.TAG_ROLE] == contract.ROLE_BASELINE and context.tags[contract.TAG_GRID] == "tp4-lab"
    monkeypatch.setenv(contract.ENV_ROLE, "champion")
    with pytest.raises(BadInput, match=f"{contract.ENV_ROLE}=champion: expected one of train, baseline"):
        context_from_env(options=options)


# --- one real baseline training, in a tiny project with the lab's recipe -------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):
    """`python -m controller baseline grid.yaml --epochs 1 --imgsz 160` (add_arguments' parser) in a tiny project:
    the repository's grid.yaml on 8 train / 4 val images, 1 epoch, one point equal to the baseline's values."""
    if not BACKBONE.is_file():
        pytest.fail(f"the shared backbone is missing at {BACKBONE} (set TP4_SHARED)")
    project = tiny_dvc_project(tmp_path_factory.mktemp("baseline-project"))
    raw = lab_grid_yaml(dataset={"path": "data/tiny"}, axes={"imgsz": [160], "lr0": [0.01], "seed": [0, 1]})
    raw["train"] = {**raw["train"], "epochs": 1}
    (project / "grid.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    parser = argparse.ArgumentParser()
    baseline.add_arguments(parser)
    args = parser.parse_args(["grid.yaml", "--epochs", "1", "--imgsz", "160"])
    output = io.StringIO()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TP4_SHARED", str(SHARED))
        patch.setenv("YOLO_OFFLINE", "true")
        patch.delenv(contract.ENV_TRACKING_URI, raising=False)
        for var in CONTEXT_ENV:
            patch.delenv(var, raising=False)
        code = baseline.command(args, root=project, console=Console(file=output, width=300))
    from controller import tracking

    client = tracking.client(contract.embedded_tracking_uri(project))
    grid = load_grid(project / "grid.yaml", base_dir=project)
    experiment = client.get_experiment_by_name(grid.experiment)
    runs = client.search_runs([experiment.experiment_id]) if experiment else []
    assert code == 0 and len(runs) == 1, output.getvalue()
    return project, client, grid, runs[0], output.getvalue()


@pytest.mark.slow
def test_the_baseline_trains_from_the_shared_backbone_not_scratch(trained) -> None:
    _, _, _, run, _ = trained
    assert run.info.status == "FINISHED"
    assert run.data.tags[contract.TAG_WEIGHTS_SOURCE] == "path"
    assert Path(run.data.tags[contract.TAG_WEIGHTS]).resolve() == BACKBONE.resolve()
    assert "FROM SCRATCH" not in run.data.tags["mlflow.note.content"]
    assert run.data.tags["mlflow.note.content"].startswith("**The lab's baseline**")  # labelled as one in the UI


@pytest.mark.slow
def test_the_baseline_trains_with_the_grids_recipe(trained) -> None:
    _, _, grid, run, _ = trained
    params = run.data.params
    assert params["optimizer"] == grid.train["optimizer"] == "SGD"
    for name in ("nbs", "warmup_epochs", "batch", "workers"):
        assert float(params[name]) == float(grid.train[name]), name
    assert (float(params["nbs"]), float(params["warmup_epochs"])) == (8, 0)  # not ultralytics' 64 and 3
    assert (params["epochs"], params["imgsz"], params["lr0"], params["seed"]) == ("1", "160", "0.01", "0")


@pytest.mark.slow
def test_the_baseline_is_named_and_tagged_beside_the_grids_runs(trained) -> None:
    project, _, grid, run, output = trained
    point = next(p for p in expand(grid.with_weights(str(BACKBONE)), dataset_md5=run.data.tags[
        contract.TAG_DATASET_MD5]) if p.name == "train-160-0.01-0")
    assert run.info.run_name == "baseline-160-0.01-0"
    tags = run.data.tags
    assert (tags[contract.TAG_ROLE], tags[contract.TAG_GRID], tags[contract.TAG_BACKEND]) == (
        contract.ROLE_BASELINE, grid.name, "local")
    assert tags[contract.TAG_SPEC_HASH] == point.spec_hash  # the same configuration as that grid point
    assert contract.TAG_POINT not in tags and "mlflow.parentRunId" not in tags
    assert contract.embedded_tracking_uri(project) in output and "same configuration as grid point " \
        "train-160-0.01-0" in output
    # the metric names of a grid's train run: comparable column by column in the MLflow UI
    assert set(contract.TRAIN_RUN_METRICS) | {contract.METRIC_EPOCHS} <= set(run.data.metrics)
    assert any(name.startswith(contract.EPOCH_PREFIX) for name in run.data.metrics)


@pytest.mark.slow
def test_the_finalizer_does_not_count_the_baseline_as_a_grid_point(trained) -> None:
    from controller.tracking import start_parent_run
    from jobs.finalize.records import MISSING
    from jobs.finalize.results import fetch_runs, load_rules

    _, client, grid, run, _ = trained
    md5 = run.data.tags[contract.TAG_DATASET_MD5]
    grid = grid.with_weights(str(BACKBONE))
    points = expand(grid, dataset_md5=md5)
    parent = start_parent_run(client, grid=grid, points=points, experiment_id=run.info.experiment_id,
                              backend="local", dataset_md5=md5)
    rules, parent_run = load_rules(client=client, parent_run_id=parent)
    records = fetch_runs(client=client, rules=rules, parent=parent_run)
    assert [(r.point, r.status) for r in records] == [("train-160-0.01-0", MISSING), ("train-160-0.01-1", MISSING)]
    # the same tags with tp4.role=train are a grid point: the role alone keeps the baseline out
    as_train = {**run.data.tags, contract.TAG_ROLE: contract.ROLE_TRAIN}
    twin = client.create_run(run.info.experiment_id, tags=as_train).info.run_id
    client.set_terminated(twin)
    records = fetch_runs(client=client, rules=rules, parent=parent_run)
    assert [r.run_id for r in records] == [twin, None]
