"""What every point would fail on, refused once before anything starts (controller.preflight)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from contract.dvc_listing import file_entries, listing_md5, object_path, repair_commands
from controller.errors import InvalidInput
from controller.preflight import check_dataset, check_weights, dvc_remote
from controller.submitting import prepare
from tests.helpers.paths import REPO

FILES = {"data.yaml": "path: .\ntrain: images/train\nval: images/val\nnames: {0: person}\n",
         "images/train/a.jpg": "jpeg a", "labels/train/a.txt": "0 0.5 0.5 0.1 0.1\n"}


def dvc_project(folder: Path, *, cached: bool = True, remote_has: bool = False) -> str:
    """A DVC project holding data/tiny_coco (pinned in data/tiny_coco.dvc), as `dvc add` + `dvc push` leave it;
    returns the pinned md5."""
    (folder / ".dvc").mkdir(parents=True)
    (folder / ".dvc" / "config").write_text("[core]\n    remote = local\n['remote \"local\"']\n"
                                            "    url = ../.remote\n")
    dataset = folder / "data" / "tiny_coco"
    for relpath, text in FILES.items():
        (dataset / relpath).parent.mkdir(parents=True, exist_ok=True)
        (dataset / relpath).write_text(text)
    entries = file_entries(path=dataset)
    md5 = listing_md5(entries=entries)
    (folder / "data" / "tiny_coco.dvc").write_text(yaml.safe_dump({"outs": [{"md5": md5, "path": "tiny_coco"}]}))
    for store, wanted in ((folder / ".dvc" / "cache", cached), (folder / ".remote", remote_has)):
        if wanted:
            (store / object_path(md5)).parent.mkdir(parents=True)
            (store / object_path(md5)).write_text(json.dumps(entries))
    return md5


def write_grid(folder: Path, **model: str) -> Path:
    grid = {"name": "tiny", "experiment": "preflight", "dataset": {"path": "data/tiny_coco"},
            "model": {"weights": "yolov8n.pt", **model}, "train": {"epochs": 1, "imgsz": 64},
            "axes": {"lr0": [0.005, 0.01]}, "job": {"name_template": "train-{lr0}"}}
    path = folder / "grid.yaml"
    path.write_text(yaml.safe_dump(grid, sort_keys=False))
    return path


def test_ultralytics_caches_are_named_with_the_command_that_removes_them(tmp_path: Path) -> None:
    md5 = dvc_project(tmp_path)
    for name in ("train.cache", "val.cache"):
        (tmp_path / "data" / "tiny_coco" / "labels" / name).write_bytes(b"ultralytics")
    problem, _ = check_dataset("data/tiny_coco", root=tmp_path, md5=md5)
    assert problem is not None and problem.location == "dataset.path"
    assert "unexpected: labels/train.cache" in problem.message and "unexpected: labels/val.cache" in problem.message
    assert problem.message.endswith("restore the pinned files with: rm data/tiny_coco/labels/*.cache")


def test_changed_and_missing_files_are_restored_from_the_cache_or_the_remote(tmp_path: Path) -> None:
    md5 = dvc_project(tmp_path)
    dataset = tmp_path / "data" / "tiny_coco"
    (dataset / "labels" / "train" / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (dataset / "images" / "train" / "a.jpg").unlink()
    (dataset / "notes.txt").write_text("mine")
    problem, _ = check_dataset("data/tiny_coco", root=tmp_path, md5=md5)
    assert problem is not None
    assert "missing:    images/train/a.jpg" in problem.message and "modified:   labels/train/a.txt" in problem.message
    assert problem.message.endswith("rm data/tiny_coco/notes.txt && dvc checkout data/tiny_coco.dvc --force")
    listing = file_entries(path=dataset)
    assert repair_commands(folder="d", expected=None, actual=listing, in_cache=False) == ["dvc pull d.dvc --force"]


def test_a_matching_dataset_passes(tmp_path: Path) -> None:
    md5 = dvc_project(tmp_path)
    assert check_dataset("data/tiny_coco", root=tmp_path, md5=md5) == (None, None)


def test_a_missing_dataset_must_be_in_the_remote(tmp_path: Path) -> None:
    md5 = dvc_project(tmp_path, remote_has=False)
    os.rename(tmp_path / "data" / "tiny_coco", tmp_path / "elsewhere")
    problem, _ = check_dataset("data/tiny_coco", root=tmp_path, md5=md5)
    assert problem is not None and f"its pinned version {md5} is not in DVC remote 'local'" in problem.message
    assert "dvc push data/tiny_coco.dvc -r local" in problem.message
    remote = dvc_remote(tmp_path, env={})
    assert remote is not None and remote.url == str((tmp_path / ".remote").resolve())
    (tmp_path / ".remote" / object_path(md5)).parent.mkdir(parents=True)
    (tmp_path / ".remote" / object_path(md5)).write_text("[]")
    assert check_dataset("data/tiny_coco", root=tmp_path, md5=md5) == (None, None)


def test_weights(tmp_path: Path) -> None:
    problem, _ = check_weights("weights/best.pt", root=tmp_path, local=True)
    assert problem is not None and problem.location == "model.weights" and "no such weights file" in problem.message
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "best.pt").write_bytes(b"x")
    assert check_weights("weights/best.pt", root=tmp_path, local=True) == (None, None)
    assert check_weights("yolov8n.pt", root=tmp_path, local=True) == (None, None)  # the Job's to resolve
    assert check_weights("/nowhere/best.pt", root=tmp_path, local=False) == (None, None)  # the pod's path


def test_prepare_locates_every_problem_in_the_grid_file(tmp_path: Path) -> None:
    dvc_project(tmp_path)
    (tmp_path / "data" / "tiny_coco" / "labels" / "train.cache").write_bytes(b"x")
    grid = write_grid(tmp_path, weights="weights/missing.pt")
    with pytest.raises(InvalidInput) as refused:
        prepare(grid_path=grid, root=tmp_path, backend="local")
    assert [p.location for p in refused.value.problems] == [f"{grid}: dataset.path", f"{grid}: model.weights"]
    prepare(grid_path=grid, root=tmp_path)  # render: validation only


def test_submit_grid_refuses_ultralytics_caches_before_anything_starts(tmp_path: Path) -> None:
    dvc_project(tmp_path)
    (tmp_path / "data" / "tiny_coco" / "labels" / "train.cache").write_bytes(b"x")
    write_grid(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("MLFLOW_TRACKING_URI", None)
    done = subprocess.run([sys.executable, "-m", "controller", "--root", str(tmp_path), "submit-grid", "grid.yaml"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 2, done.stdout + done.stderr
    output = done.stdout + done.stderr
    assert "labels/train.cache" in output and "rm data/tiny_coco/labels/*.cache" in output
    assert not (tmp_path / ".tp4").exists()  # no grid state, no MLflow store, hence no run
