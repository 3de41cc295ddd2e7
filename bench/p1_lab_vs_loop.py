"""P1: the lab grid against the same 8 trainings as a bare in-process ultralytics loop, back to back.

    python bench/p1_lab_vs_loop.py [--weights PATH] [--skip-loop SECONDS]

1. the loop: one process, the 8 points of grid.yaml one after another, torch on every core,
   ultralytics' plots on, no tracking (its integrations off through a temporary settings folder);
2. the grid: `python -m controller submit-grid` of grid.yaml renamed (a grid of its own, its local state
   removed first, so that it runs afresh), finalizer included. TP4_WARM_START=0 in the environment
   measures it with every Job started cold.
Prints the ratio grid wall / loop wall (target <= 0.75 on 2 cores), the train-Job overhead beyond
train() per point (phase/total_s - train_seconds, target <= 2 s on CPU), and the overhead ratio Ray
Tune publishes for itself: grid wall / (sum of train_seconds / cores) (target <= 1.15).
--skip-loop SECONDS reuses a loop time measured before (the loop alone takes minutes).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import yaml  # noqa: E402

import contract  # noqa: E402
from bench.job_breakdown import train_runs  # noqa: E402
from bench.measure import PYTHON, REPO, Figure, run_child, table  # noqa: E402

GRID_NAME = "tp4-bench-p1"
SHARED_WEIGHTS = REPO.parent / "shared" / "weights" / "yolov5nu-coco-backbone.pt"

LOOP = r"""
import itertools, json, sys, time
import torch
from ultralytics import YOLO, settings
settings.update({k: False for k in ("mlflow", "wandb", "tensorboard", "clearml", "comet", "dvc", "neptune",
                                     "raytune", "hub") if k in settings})
spec, weights, project, data = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[5]
axes, train = spec["axes"], spec["train"]
torch.set_num_threads(int(sys.argv[4]))
started = time.perf_counter()
for values in itertools.product(*axes.values()):
    args = {**train, **dict(zip(axes, values))}
    YOLO(weights).train(data=data, project=project, name="p", exist_ok=True, device="cpu",
                        plots=True, verbose=False, **args)
print(json.dumps({"seconds": time.perf_counter() - started}))
"""


def loop_seconds(spec: dict, weights: str, folder: Path) -> float:
    env = {**os.environ, "YOLO_CONFIG_DIR": str(folder / "yolo"), "YOLO_OFFLINE": "true",
           "YOLO_AUTOINSTALL": "false"}
    out = folder / "loop.json"
    # A copy, as the Jobs train on: ultralytics writes labels/*.cache into the folder it trains on, and
    # the DVC-tracked folder would no longer match its pinned md5.
    data = folder / "tiny_coco"
    shutil.copytree(REPO / spec["dataset"]["path"], data)
    child = run_child([PYTHON, "-c", LOOP, json.dumps(spec), weights, str(folder / "loop"),
                       str(os.cpu_count() or 1), str(data / "data.yaml")], env=env, stdout_to=out)
    if child.returncode != 0:
        raise SystemExit(f"the bare loop failed: {child.output[-2000:]}")
    return float(json.loads(out.read_text().strip().splitlines()[-1])["seconds"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default=str(SHARED_WEIGHTS) if SHARED_WEIGHTS.exists() else "yolov8n.pt")
    parser.add_argument("--skip-loop", type=float, default=None)
    args = parser.parse_args()
    spec = yaml.safe_load((REPO / "grid.yaml").read_text())
    points = len(list(itertools.product(*spec["axes"].values())))
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="tp4-bench-p1-") as tmp:
        folder = Path(tmp)
        loop = args.skip_loop if args.skip_loop is not None else loop_seconds(spec, args.weights, folder)
        print(f"bare loop: {loop:.1f} s", file=sys.stderr, flush=True)
        grid = {**spec, "name": GRID_NAME, "experiment": GRID_NAME,
                "model": {**spec["model"], "registered_name": f"{GRID_NAME}-detector"},
                "job": {**spec["job"], "name_template": "p1-" + spec["job"]["name_template"]}}  # Job names are unique
        (folder / "grid.yaml").write_text(yaml.safe_dump(grid))
        # The bench's own grid runs afresh each time: an unchanged grid that succeeded would be skipped.
        shutil.rmtree(REPO / contract.EMBEDDED_DIR / "grids" / GRID_NAME, ignore_errors=True)
        started = time.perf_counter()
        child = run_child([PYTHON, "-m", "controller", "submit-grid", str(folder / "grid.yaml"), "--weights",
                           args.weights], stdout_to=folder / "grid.log")
        wall = time.perf_counter() - started
    if child.returncode != 0:
        raise SystemExit(f"submit-grid exited {child.returncode}: {child.output[-2000:]}")
    runs = train_runs(root=REPO, grid=GRID_NAME)
    train_seconds = [r.data.metrics.get(contract.METRIC_TRAIN_SECONDS, 0.0) for r in runs]
    overheads = [r.data.metrics[contract.METRIC_PHASE_TOTAL] - r.data.metrics[contract.METRIC_TRAIN_SECONDS]
                 for r in runs if contract.METRIC_PHASE_TOTAL in r.data.metrics]
    ray = wall / (sum(train_seconds) / cores)
    figures = [
        Figure("P1", f"lab grid wall / bare loop wall ({points} trainings)", wall / loop, "", "<= 0.75",
               wall / loop <= 0.75, f"grid {wall:.0f} s (finalizer included), loop {loop:.0f} s"),
        Figure("P1", "train-Job overhead beyond train(), mean per point", statistics.fmean(overheads), "s", "<= 2",
               statistics.fmean(overheads) <= 2, f"max {max(overheads):.1f} s"),
        Figure("P1", "grid wall / (sum of train_seconds / cores)", ray, "", "<= 1.15", ray <= 1.15,
               f"{sum(train_seconds):.0f} s of train_seconds, {cores} cores"),
    ]
    from controller.local.warm import enabled

    warm = "on" if enabled() else f"off ({contract.ENV_WARM_START}, or not Linux)"
    print(f"grid {GRID_NAME}, warm start {warm}; per-phase breakdown: python bench/job_breakdown.py {GRID_NAME}")
    print(table(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
