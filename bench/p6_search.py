"""P6: search beyond a grid on the lab set: the 8-point lab grid, a TPE search with the same 8-trial budget,
and the same TPE search with median early stopping, each repeated; best objective and compute used.

    python bench/p6_search.py [--repetitions 3] [--weights PATH] [--modes grid,tpe,tpe-median]

Each run is a real `python -m controller submit-grid` of its own grid (finalizer included), one after the
other. For each: the best mAP50-95 of a completed (not stopped) train run, and the compute used, the sum of
the train runs' train_seconds (stopped ones included). Printed as ratios to the grid of the same repetition;
the grid's seed spread (mean |seed 1 - seed 42| of one configuration) says what "the same best objective"
means on 10 validation images. Target: TPE with median stopping finds the same best objective within the
seed spread for at most 0.6x the grid's compute.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import yaml  # noqa: E402

import contract  # noqa: E402
from bench.job_breakdown import train_runs  # noqa: E402
from bench.measure import PYTHON, REPO, Figure, machine, run_child, table  # noqa: E402

SHARED_WEIGHTS = REPO.parent / "shared" / "weights" / "yolov5nu-coco-backbone.pt"
MODES = ("grid", "tpe", "tpe-median")


def grid_file(mode: str, repetition: int) -> dict[str, Any]:
    """The lab grid (grid.yaml), or a TPE search over the same region with the same budget."""
    spec = yaml.safe_load((REPO / "grid.yaml").read_text())
    name = f"tp4-bench-p6-{mode}-r{repetition}"
    spec.update(name=name, experiment=name)
    spec["model"] = {**spec["model"], "registered_name": f"{name}-detector"}
    spec["gates"] = {**spec.get("gates", {}), "min_objective": 0.0}
    prefix = {"grid": "g", "tpe": "t", "tpe-median": "m"}[mode] + str(repetition)
    spec["job"] = {**spec["job"], "name_template": prefix + "-{imgsz}-{lr0}-{seed}"}
    if mode != "grid":
        axes = spec["axes"]
        spec["axes"] = {"imgsz": {"choice": axes["imgsz"]},
                        "lr0": {"loguniform": [min(axes["lr0"]), max(axes["lr0"])]}, "seed": axes["seed"]}
        spec["search"] = {"mode": "tpe", "trials": 8, "seed": repetition, "startup_trials": 2}
        spec["job"]["parallelism"] = 2
    if mode == "tpe-median":
        spec["early_stopping"] = {"rule": "median", "metric": "epoch/mAP50-95", "min_epochs": 1,
                                  "startup_trials": 2}
    return spec


def measure(mode: str, repetition: int, *, weights: str, folder: Path) -> dict[str, Any]:
    spec = grid_file(mode, repetition)
    path = folder / f"{spec['name']}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    started = time.perf_counter()
    child = run_child([PYTHON, "-m", "controller", "submit-grid", str(path), "--weights", weights],
                      stdout_to=folder / f"{spec['name']}.log")
    wall = time.perf_counter() - started
    if child.returncode != 0:
        raise SystemExit(f"{spec['name']}: submit-grid exited {child.returncode}: {child.output[-2000:]}")
    runs = train_runs(root=REPO, grid=spec["name"])
    completed = [r for r in runs if contract.TAG_STOPPED_EARLY not in r.data.tags
                 and contract.METRIC_MAP50_95 in r.data.metrics]
    by_config: dict[tuple[str, str], list[float]] = {}
    for run in completed:
        key = (run.data.params.get("imgsz", ""), run.data.params.get("lr0", ""))
        by_config.setdefault(key, []).append(run.data.metrics[contract.METRIC_MAP50_95])
    spreads = [max(v) - min(v) for v in by_config.values() if len(v) > 1]
    result = {
        "mode": mode, "repetition": repetition, "wall": wall,
        "best": max((r.data.metrics[contract.METRIC_MAP50_95] for r in completed), default=float("nan")),
        "compute": sum(r.data.metrics.get(contract.METRIC_TRAIN_SECONDS, 0.0) for r in runs),
        "stopped": sum(contract.TAG_STOPPED_EARLY in r.data.tags for r in runs), "trials": len(runs),
        "spread": statistics.fmean(spreads) if spreads else None,
    }
    print(f"{spec['name']}: {result}", file=sys.stderr, flush=True)
    return result


def figures(results: list[dict[str, Any]]) -> list[Figure]:
    found: list[Figure] = []
    grids = {r["repetition"]: r for r in results if r["mode"] == "grid"}
    spreads = [r["spread"] for r in grids.values() if r["spread"] is not None]
    spread = statistics.fmean(spreads) if spreads else None
    for mode in ("tpe", "tpe-median"):
        pairs = [(r, grids[r["repetition"]]) for r in results if r["mode"] == mode and r["repetition"] in grids]
        if not pairs:
            continue
        gap = statistics.fmean(r["best"] - g["best"] for r, g in pairs)
        compute = statistics.fmean(r["compute"] / g["compute"] for r, g in pairs)
        stopped = sum(r["stopped"] for r, _ in pairs)
        within = spread is not None and gap >= -spread
        found.append(Figure("P6", f"{mode}: best mAP50-95 - grid's best (mean of {len(pairs)})", gap, "",
                            f">= -{spread:.3f} (seed spread)" if spread is not None else "within seed spread",
                            within if spread is not None else None,
                            ", ".join(f"{r['best']:.3f} vs {g['best']:.3f}" for r, g in pairs)))
        found.append(Figure("P6", f"{mode}: compute / grid's compute (sum of train_seconds)", compute, "",
                            "<= 0.6" if mode == "tpe-median" else "(budget equal)",
                            compute <= 0.6 if mode == "tpe-median" else None,
                            f"{stopped} of {sum(r['trials'] for r, _ in pairs)} trials stopped early"))
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--weights", default=str(SHARED_WEIGHTS) if SHARED_WEIGHTS.exists() else "yolov8n.pt")
    parser.add_argument("--modes", default=",".join(MODES))
    args = parser.parse_args()
    modes = [m for m in args.modes.split(",") if m]
    results = []
    with tempfile.TemporaryDirectory(prefix="tp4-bench-p6-") as tmp:
        for repetition in range(1, args.repetitions + 1):
            for mode in modes:
                results.append(measure(mode, repetition, weights=args.weights, folder=Path(tmp)))
    print(f"\nP6 search, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {machine()}\n")
    print("| repetition | mode | trials | stopped | best mAP50-95 | compute (s) | wall (s) |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['repetition']} | {r['mode']} | {r['trials']} | {r['stopped']} | {r['best']:.4f} | "
              f"{r['compute']:.0f} | {r['wall']:.0f} |")
    print()
    print(table(figures(results)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
