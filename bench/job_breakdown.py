"""Where each train Job of a finished grid spent its time (the `phase/*` metrics its run logged).

    python bench/job_breakdown.py [GRID] [--root PROJECT]      (after `make demo`: GRID=tp4-lab)

Reads MLflow ($MLFLOW_TRACKING_URI, else the project's embedded store): the grid's newest
submission (parent run) and its train runs. Prints one row per point (seconds), the mean, and
the overhead beyond ultralytics' train() (phase/total_s - train_seconds). Exit 2 when the grid
has no train run logging phases.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path
from typing import Any

import contract

COLUMNS = (contract.METRIC_PHASE_STARTUP, contract.METRIC_PHASE_SETUP, contract.METRIC_PHASE_DATASET,
           contract.METRIC_PHASE_TRAIN, contract.METRIC_PHASE_EVAL, contract.METRIC_PHASE_ARTIFACTS,
           contract.METRIC_PHASE_TOTAL, contract.METRIC_TRAIN_SECONDS, contract.METRIC_FIRST_BATCH)


def short(name: str) -> str:
    return name.removeprefix(contract.PHASE_PREFIX).removesuffix("_s")


def train_runs(*, root: Path, grid: str) -> list[Any]:
    """The train runs of the grid's newest submission, by point name."""
    from mlflow.tracking import MlflowClient

    uri = os.environ.get(contract.ENV_TRACKING_URI) or contract.embedded_tracking_uri(root)
    client = MlflowClient(tracking_uri=uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    parents = client.search_runs(experiments, filter_string=f"tags.`{contract.TAG_GRID}` = '{grid}' and "
                                 f"tags.`{contract.TAG_ROLE}` = '{contract.ROLE_PARENT}'",
                                 order_by=["attributes.start_time DESC"], max_results=1)
    if not parents:
        return []
    parent = parents[0]
    runs = client.search_runs([parent.info.experiment_id],
                              filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}' and "
                              f"tags.`{contract.TAG_ROLE}` = '{contract.ROLE_TRAIN}'", max_results=10_000)
    newest: dict[str, Any] = {}
    for run in sorted(runs, key=lambda r: r.info.start_time):
        newest[run.data.tags.get(contract.TAG_POINT, run.info.run_id)] = run
    return [newest[k] for k in sorted(newest)]


def breakdown(runs: list[Any]) -> list[tuple[str, dict[str, float]]]:
    """[(point, {column: seconds})] for the runs that logged phases."""
    return [(r.data.tags.get(contract.TAG_POINT, r.info.run_id), {c: r.data.metrics[c] for c in COLUMNS
                                                                   if c in r.data.metrics})
            for r in runs if contract.METRIC_PHASE_TOTAL in r.data.metrics]


def print_table(rows: list[tuple[str, dict[str, float]]]) -> None:
    width = max(len(p) for p, _ in rows) + 2
    header = "point".ljust(width) + "".join(f"{short(c):>12}" for c in COLUMNS) + f"{'overhead':>10}"
    print(header)
    print("-" * len(header))

    def line(label: str, values: dict[str, float]) -> str:
        cells = "".join(f"{values[c]:12.2f}" if c in values else f"{'-':>12}" for c in COLUMNS)
        over = values.get(contract.METRIC_PHASE_TOTAL, 0.0) - values.get(contract.METRIC_TRAIN_SECONDS, 0.0)
        return label.ljust(width) + cells + f"{over:10.2f}"

    for point, values in rows:
        print(line(point, values))
    means = {c: statistics.fmean(v[c] for _, v in rows if c in v) for c in COLUMNS if any(c in v for _, v in rows)}
    print("-" * len(header))
    print(line("mean", means))
    print("overhead = phase/total_s - train_seconds: the Job's time outside ultralytics' train()")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("grid", nargs="?", default="tp4-lab")
    parser.add_argument("--root", type=Path, default=Path.cwd())
    args = parser.parse_args()
    rows = breakdown(train_runs(root=args.root, grid=args.grid))
    if not rows:
        print(f"grid {args.grid}: no train run with phase metrics under {args.root} "
              f"(run it first, e.g. make demo)", file=sys.stderr)
        return contract.EXIT_BAD_INPUT
    print(f"grid {args.grid}: {len(rows)} train Jobs, seconds per phase")
    print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
