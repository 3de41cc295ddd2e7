"""Figures of a finished local grid: its wall time beside the sum of its Jobs' times.

    python bench/grid_speedup.py [GRID] [--root PROJECT]     (after `make demo`: GRID=tp4-lab)

Prints, from the local executor's state (.tp4/grids/<grid>/state.json): the grid's
wall time (first start to last end), the sum of the train Jobs' wall times, the sum
of their train_seconds (MLflow), and the speed-up that parallel Jobs gave.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from controller.local.state import load_state


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("grid", nargs="?", default="tp4-lab")
    parser.add_argument("--root", type=Path, default=Path.cwd())
    args = parser.parse_args()
    state = load_state(args.root, args.grid)
    jobs = [j for j in state.jobs.values() if j.attempts and j.attempts[-1].finished]
    if not jobs:
        raise SystemExit(f"no finished Job in grid {args.grid} under {args.root}")
    train = [j for j in jobs if j.role == "train"]
    wall = max(j.attempts[-1].finished for j in jobs) - min(j.attempts[0].started for j in jobs)
    job_walls = sum(j.attempts[-1].finished - j.attempts[0].started for j in train)
    train_seconds = sum(j.metrics.get("train_seconds", 0.0) for j in train)
    print(f"grid {args.grid}: {len(train)} train Jobs + finalizer")
    print(f"  grid wall time (first start -> last end, finalizer included): {wall:7.1f} s")
    print(f"  sum of the train Jobs' wall times:                            {job_walls:7.1f} s")
    print(f"  sum of their train_seconds (MLflow):                          {train_seconds:7.1f} s")
    print(f"  speed-up of parallel Jobs (sum of Job walls / grid wall):     {job_walls / wall:7.2f}x")


if __name__ == "__main__":
    main()
