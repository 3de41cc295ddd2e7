"""`python -m controller demo`: the whole lab without make or bash (Windows' PowerShell and CMD included).

Builds data/tiny_coco through its DVC stage when it is missing, runs the lab grid (grid.yaml) with the
local backend, and ends with the decision line (the verdict, the candidate, the report's path). Offline
machines: a `../shared` folder beside the project that holds COCO128 and the COCO-pretrained backbone is
used as `make demo` uses it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from rich.console import Console

from contract.errors import InvalidInput, Problem
from controller.backend import open_backend

SOURCE_ENV = "TP4_COCO128_SOURCE"  # read by the dataset builder (tinycoco.source)
SHARED_COCO128 = Path("datasets") / "coco128"
SHARED_WEIGHTS = Path("weights") / "yolov5nu-coco-backbone.pt"


def shared_folder(root: Path) -> Path:
    """The local copies' folder: $TP4_SHARED, else ../shared beside the project."""
    return Path(os.environ.get("TP4_SHARED") or root.parent / "shared")


def lab_weights(root: Path, weights: str | None) -> str | None:
    """The weights the lab's verbs (demo, baseline) give the grid in place of its model.weights: `weights` when
    asked for, else the shared COCO-pretrained backbone ($TP4_SHARED or ../shared:
    weights/yolov5nu-coco-backbone.pt) when that file is there, else None (the grid's own model.weights).
    `make demo` and `make baseline` pass the Makefile's WEIGHTS, the same file found by the same rule."""
    if weights is not None:
        return weights
    backbone = shared_folder(root) / SHARED_WEIGHTS
    return str(backbone) if backbone.is_file() else None


def build_dataset_stage(*, root: Path, source: str | None, console: Console) -> None:
    """`dvc repro` of the tiny_coco stage (python -m tinycoco build, then dvc add), in a child process.

    Raises InvalidInput (exit 2) when the stage fails: the builder's message names the cause."""
    env = dict(os.environ)
    if source:
        env[SOURCE_ENV] = source
    # dvc.yaml's commands call `python`: the interpreter running this verb (the project's venv).
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    console.print(f"building data/tiny_coco (dvc repro) from {env.get(SOURCE_ENV) or 'the official coco128.zip'}",
                  highlight=False, soft_wrap=True)
    done = subprocess.run([sys.executable, "-m", "dvc", "repro", "tiny_coco"], cwd=root, env=env, check=False)
    if done.returncode != 0:
        raise InvalidInput([Problem("data/tiny_coco", f"the dataset stage failed (dvc repro exit {done.returncode}); "
                                    "its output above says why")])


def run_demo(*, root: Path, grid: Path, source: str | None, weights: str | None, console: Console) -> int:
    """Build the dataset if missing, run `grid` locally (which ends with the decision line); the grid's exit
    code."""
    shared = shared_folder(root)
    if source is None and (shared / SHARED_COCO128).is_dir():
        source = str(shared / SHARED_COCO128)
    weights = lab_weights(root, weights)
    if not (root / "data" / "tiny_coco" / "data.yaml").is_file():
        build_dataset_stage(root=root, source=source, console=console)
    backend = open_backend(kind="local", root=root)
    # submit_grid ends with the decision line (YES/NO, the candidate, separated or not, the report's path)
    return backend.submit_grid(grid_path=grid, weights=weights, parallelism=None, wait=True, console=console)
