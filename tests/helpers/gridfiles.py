"""Grid files for tests: the lab grid's shape, written where a test wants it."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

MD5 = "0123456789abcdef0123456789abcdef.dir"

LAB_GRID: dict[str, Any] = {
    "name": "lab",
    "dataset": {"path": "data/tiny_coco", "md5": MD5},
    "model": {"weights": "yolov8n.pt"},
    "train": {"epochs": 3, "batch": 8, "optimizer": "SGD", "nbs": 8, "warmup_epochs": 0},
    "axes": {"imgsz": [320, 416], "lr0": [0.005, 0.01], "seed": [1, 42]},
}


def lab_grid(**changes: Any) -> dict[str, Any]:
    grid = copy.deepcopy(LAB_GRID)
    grid.update(changes)
    return grid


def write_grid(folder: Path, grid: dict[str, Any], *, with_dataset: bool = True) -> Path:
    if with_dataset:
        (folder / "data" / "tiny_coco").mkdir(parents=True, exist_ok=True)
    path = folder / "grid.yaml"
    path.write_text(yaml.safe_dump(grid, sort_keys=False))
    return path
