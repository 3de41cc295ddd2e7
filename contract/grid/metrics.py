"""The metric names a grid may use: a train run's final metrics (objective, constraints, gates) and its
per-epoch series (early stopping), with ultralytics' own spellings as hints."""

from __future__ import annotations

from typing import Annotated

from pydantic import PlainValidator, WithJsonSchema
from pydantic_core import PydanticCustomError

import contract
from contract.grid.messages import did_you_mean
from contract.grid.scalars import fail
from contract.objective import Direction

# ultralytics' own column names (results.csv, its console) -> the name a train run logs.
ULTRALYTICS_METRICS = {
    "metrics/precision(B)": contract.METRIC_PRECISION, "metrics/recall(B)": contract.METRIC_RECALL,
    "metrics/mAP50(B)": contract.METRIC_MAP50, "metrics/mAP50-95(B)": contract.METRIC_MAP50_95,
    "fitness": contract.METRIC_MAP50_95, "map": contract.METRIC_MAP50_95, "map50": contract.METRIC_MAP50,
    "mp": contract.METRIC_PRECISION, "mr": contract.METRIC_RECALL,
}


def _metric(value: object) -> str:
    if not isinstance(value, str):
        raise fail("string_type", "must be a string", value)
    if value not in contract.TRAIN_RUN_METRICS:
        hint = did_you_mean(value, contract.TRAIN_RUN_METRICS, ULTRALYTICS_METRICS)
        raise PydanticCustomError("unknown_metric", "{name} is not a metric a train run logs (one of {known}){hint}",
                                  {"name": repr(value), "known": ", ".join(contract.TRAIN_RUN_METRICS), "hint": hint})
    return value


# Per-epoch series an early-stopping rule may read (contract.EPOCH_PREFIX + ultralytics' validation columns),
# and which way is better.
EPOCH_METRICS: dict[str, Direction] = {
    **{contract.EPOCH_PREFIX + name: "maximize" for name in contract.FINAL_METRICS},
    **{contract.EPOCH_PREFIX + f"val_{loss}_loss": "minimize" for loss in ("box", "cls", "dfl")},
}


def epoch_metric(value: object) -> str:
    if not isinstance(value, str):
        raise fail("string_type", "must be a string", value)
    if value not in EPOCH_METRICS:
        raise PydanticCustomError("unknown_metric", "{name} is not a per-epoch metric a train run logs (one of "
                                  "{known}){hint}", {"name": repr(value), "known": ", ".join(EPOCH_METRICS),
                                                     "hint": did_you_mean(value, EPOCH_METRICS)})
    return value


Metric = Annotated[str, PlainValidator(_metric),
                   WithJsonSchema({"type": "string", "enum": list(contract.TRAIN_RUN_METRICS)})]
EpochMetric = Annotated[str, PlainValidator(lambda v: epoch_metric(v)),
                        WithJsonSchema({"type": "string", "enum": list(EPOCH_METRICS)})]
