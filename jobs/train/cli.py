"""`python -m jobs.train`: train one YOLO grid point and log it to MLflow.

Environment (names in contract.py): MLFLOW_TRACKING_URI (default: the
embedded SQLite store, see jobs.common.tracking.default_tracking_uri),
MLFLOW_TRACKING_USERNAME/PASSWORD, TP4_EXPERIMENT (else --exp-name),
TP4_PARENT_RUN_ID (child run of it), TP4_GRID, TP4_POINT, TP4_SPEC_HASH,
TP4_ATTEMPT, TP4_IMAGE, TP4_BACKEND (tags), TP4_ROLE (the run's tp4.role: train,
the default, or baseline: `python -m controller baseline` sets it and the run is
named baseline-<imgsz>-<lr0>-<seed>), TP4_DATASET_PATH (default folder
for --data), TP4_DATASET_MD5 (else `<dataset>.dvc`), TP4_TORCH_THREADS, and
the AWS_* variables for S3 weights and the DVC remote.

Exit codes: 0 run FINISHED with its final metrics; 2 bad input (nothing
retried); 128+N killed by signal N (run KILLED); 1 any other failure.
"""

from __future__ import annotations

import argparse
import os
import sys

import contract
from contract import train_flags
from jobs.common.errors import BadInput
from jobs.train.options import TrainOptions, parse_extra


def default_data() -> str:
    folder = os.environ.get(contract.ENV_DATASET_PATH) or "data/tiny_coco"
    return f"{folder.rstrip('/')}/data.yaml"


def parser() -> argparse.ArgumentParser:
    """The train Job's flags (contract.train_flags: the controller writes them with the same module)."""
    return train_flags.parser(prog="python -m jobs.train", description=__doc__.split("\n\n")[0], data=default_data())


def options_from(argv: list[str] | None = None) -> TrainOptions:
    """Parse argv (argparse exits 2 on malformed flags); BadInput for bad --arg pairs."""
    a = parser().parse_args(argv)
    return TrainOptions(data=a.data, model=a.model, fallback_model=a.fallback_model, epochs=a.epochs,
                        imgsz=a.imgsz, lr0=a.lr0, batch=a.batch, seed=a.seed, optimizer=a.optimizer,
                        exp_name=a.exp_name, device=a.device, extra=parse_extra(pairs=a.arg))


def main(argv: list[str] | None = None) -> int:
    try:
        options = options_from(argv)
    except BadInput as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return contract.EXIT_BAD_INPUT
    from jobs.train.job import run_train_job

    return run_train_job(options=options)


if __name__ == "__main__":
    sys.exit(main())
