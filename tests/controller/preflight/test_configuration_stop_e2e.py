"""End to end with the local executor: points that all fail with exit code 2 stop the grid."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from contract.dvc_listing import file_entries, listing_md5
from tests.helpers.paths import REPO

pytestmark = pytest.mark.slow


def test_a_configuration_error_in_every_point_stops_the_grid_without_a_finalizer(tmp_path: Path) -> None:
    dataset = tmp_path / "data" / "tiny_coco"
    (dataset / "images" / "train").mkdir(parents=True)
    (dataset / "data.yaml").write_text("path: .\ntrain: images/train\nval: images/train\nnames: {0: person}\n")
    md5 = listing_md5(entries=file_entries(path=dataset))
    grid = {"name": "stops", "experiment": "stops", "dataset": {"path": "data/tiny_coco", "md5": md5},
            # a model name the controller leaves to the Job, which refuses it (exit 2) in every point
            "model": {"weights": "no-such-architecture.yaml"},
            "train": {"epochs": 1, "imgsz": 64, "workers": 0}, "axes": {"lr0": [0.001, 0.002, 0.003, 0.004]},
            "job": {"name_template": "train-{lr0}"}}
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump(grid, sort_keys=False))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("MLFLOW_TRACKING_URI", None)
    done = subprocess.run([sys.executable, "-m", "controller", "--root", str(tmp_path), "submit-grid", "grid.yaml",
                           "--parallelism", "2"], cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env)
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "ConfigurationError" in output and "finalizer skipped" in output, output
    assert "no-such-architecture.yaml" in output, output  # the Job's own error line
    state = json.loads((tmp_path / ".tp4" / "grids" / "stops" / "state.json").read_text())
    # two at a time: one failure frees one slot (train-0.003 may start), the second stops the grid
    assert "train-0.004" not in state["jobs"] and len(state["jobs"]) <= 3, state["jobs"].keys()
    assert all(name.startswith("train-") for name in state["jobs"])  # no finalizer
    assert all(len(job["attempts"]) == 1 for job in state["jobs"].values())
