"""What a Grid's status shows of results, read from MLflow (the only source of results)."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

from mlflow.tracking import MlflowClient

import contract
from contract.decision import DECISION_JSON, DECISION_MD, Decision, read_decision
from contract.objective import Direction, better

PAGE, MAX_PAGES = 200, 5
REPORT_MD = f"{contract.ARTIFACT_REPORT_DIR}/{DECISION_MD}"


def best_point(mlflow: MlflowClient, *, experiment_id: str, grid: str, metric: str, direction: Direction,
               hashes: dict[str, str]) -> dict[str, Any] | None:
    """The best FINISHED train run of the grid whose spec hash is a current point's (`hashes`: hash -> point),
    whichever submission ran it, as {point, metric, value, runId}. "Best" is contract.objective's, as in
    the finalizer's ranking; among tied values the first in MLflow's order (newest first) wins."""
    query = (f"tags.`{contract.TAG_GRID}` = '{grid}' and tags.`{contract.TAG_ROLE}` = '{contract.ROLE_TRAIN}' "
             "and attributes.status = 'FINISHED'")
    order = [f"metrics.`{metric}` {'DESC' if direction == 'maximize' else 'ASC'}", "attributes.start_time DESC"]
    token = None
    best: dict[str, Any] | None = None
    for _ in range(MAX_PAGES):
        page = mlflow.search_runs([experiment_id], filter_string=query, order_by=order, max_results=PAGE,
                                  page_token=token)
        for run in page:
            value = run.data.metrics.get(metric)
            point = hashes.get(run.data.tags.get(contract.TAG_SPEC_HASH, ""))
            if point is None or value is None or not math.isfinite(value):
                continue
            if best is not None and not better(value, best["value"], direction):
                return best  # sorted by the metric: nothing later can be better
            best = {"point": point, "metric": metric, "value": float(value), "runId": run.info.run_id}
        token = page.token
        if not token:
            return best
    return best


def decision(mlflow: MlflowClient, *, parent_run_id: str) -> tuple[str | None, dict[str, str] | None]:
    """The finalizer's verdict (tag tp4.decision on the parent run) and where its report is."""
    verdict = mlflow.get_run(parent_run_id).data.tags.get(contract.TAG_DECISION)
    if verdict not in ("YES", "NO"):
        return None, None
    return verdict, {"runId": parent_run_id, "artifactPath": REPORT_MD}


def report_document(mlflow: MlflowClient, *, run_id: str) -> Decision:
    """decision.json, the finalizer's summary of its report, from the parent run's artifacts
    (contract.decision: InvalidInput when a field the controller reads has the wrong type)."""
    with tempfile.TemporaryDirectory() as folder:
        path = mlflow.download_artifacts(run_id, f"{contract.ARTIFACT_REPORT_DIR}/{DECISION_JSON}", folder)
        return read_decision(Path(path))
