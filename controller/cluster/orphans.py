"""Runs left RUNNING by submissions whose Grid is gone: found in MLflow and closed (KILLED, with the reason).

A Grid deleted while the controller is down (or while another controller led)
leaves its parent run, and the train runs of the pods the garbage collector
killed, RUNNING for ever: no watch event will tell anyone. The sweep asks
MLflow instead: every RUNNING parent run that a Kubernetes controller of this
namespace started (tags tp4.role=parent, tp4.backend=kubernetes,
tp4.namespace=<namespace>) and that is no longer the current submission of
an existing Grid is closed, with its RUNNING child runs. The reason is the
tag contract.TAG_CLOSED_BY. Parent runs of other namespaces are never touched.
"""

from __future__ import annotations

import logging
from typing import Any

from mlflow.tracking import MlflowClient

import contract

BACKEND = "kubernetes"
RUNNING = "RUNNING"
log = logging.getLogger(__name__)


def close_submission(mlflow: MlflowClient, parent_run_id: str, *, reason: str, status: str = "KILLED") -> int:
    """End the RUNNING child runs of `parent_run_id` and the parent itself with `status`, each tagged with
    `reason`; the number of runs ended (0 when all had ended already)."""
    parent = mlflow.get_run(parent_run_id)
    query = f"tags.mlflow.parentRunId = '{parent_run_id}' and attributes.status = '{RUNNING}'"
    runs = [*mlflow.search_runs([parent.info.experiment_id], filter_string=query, max_results=5000)]
    runs += [parent] if parent.info.status == RUNNING else []
    for run in runs:
        mlflow.set_tag(run.info.run_id, contract.TAG_CLOSED_BY, reason[:5000])
        mlflow.set_terminated(run.info.run_id, status=status)
    return len(runs)


def orphaned_parent_runs(mlflow: MlflowClient, *, namespace: str, grids: dict[str, dict[str, Any]]) -> list[Any]:
    """The RUNNING parent runs of this namespace that no Grid in `grids` (name -> object) holds as its
    current submission (status.parentRunId)."""
    current = {(name, (grid.get("status") or {}).get("parentRunId")) for name, grid in grids.items()}
    query = (f"tags.`{contract.TAG_ROLE}` = '{contract.ROLE_PARENT}' and tags.`{contract.TAG_BACKEND}` = '{BACKEND}' "
             f"and tags.`{contract.TAG_NAMESPACE}` = '{namespace}' and attributes.status = '{RUNNING}'")
    experiments = [e.experiment_id for e in mlflow.search_experiments()]
    found = mlflow.search_runs(experiments, filter_string=query, max_results=5000) if experiments else []
    return [run for run in found if (run.data.tags.get(contract.TAG_GRID), run.info.run_id) not in current]


def sweep(mlflow: MlflowClient, *, namespace: str, grids: dict[str, dict[str, Any]]) -> list[str]:
    """Close every orphaned parent run of this namespace and its children; their ids."""
    closed = []
    for run in orphaned_parent_runs(mlflow, namespace=namespace, grids=grids):
        name = run.data.tags.get(contract.TAG_GRID, "")
        reason = (f"controller sweep: grid {name} no longer exists in namespace {namespace}" if name not in grids
                  else f"controller sweep: grid {name} has a newer submission")
        ended = close_submission(mlflow, run.info.run_id, reason=reason)
        log.info("orphaned submission closed", extra={"grid": name, "run": run.info.run_id, "runs_ended": ended,
                                                      "reason": reason})
        closed.append(run.info.run_id)
    return closed
