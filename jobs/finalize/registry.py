"""The candidate as a servable model: a pyfunc LoggedModel on its run, registered, with aliases.

`challenger` always points at the candidate's version; `champion` moves to it
only on a YES, and the version it held before is recorded on the parent run
(tag tp4.previous_champion) and in the report. Registry stages are not used
(deprecated in MLflow 3). Re-finalizing the same grid reuses the version
already registered for the candidate's run instead of adding a new one.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import mlflow
from mlflow.tracking import MlflowClient

import contract
from jobs.common import model
from jobs.finalize.gridrules import GridRules
from jobs.finalize.records import RunRecord
from jobs.finalize.results import BEST_WEIGHTS, CHALLENGER, CHAMPION, Skip, aliases, download_weights


def existing_version(*, client: MlflowClient, name: str, run_id: str) -> str | None:
    versions = client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
    return str(max(int(v.version) for v in versions)) if versions else None


def log_and_register(*, client: MlflowClient, name: str, candidate: RunRecord) -> str:
    """Register the pyfunc model the candidate's train run logged (a run from before every train run
    logged one gets it now); the new version."""
    run_id = candidate.run_id or ""
    if model_id := model.run_model_id(client=client, run_id=run_id):
        version = mlflow.register_model(f"models:/{model_id}", name, tags={contract.TAG_POINT: candidate.point})
        return str(version.version)
    run = client.get_run(run_id)
    with tempfile.TemporaryDirectory() as folder:
        weights = download_weights(client=client, run_id=run_id, folder=Path(folder))
        _, version_name = model.log_model(client=client, run_id=run_id, weights=weights, point=candidate.point,
                                          imgsz=int(float(run.data.params.get("imgsz", 640))), registered_name=name)
    return version_name or ""


def tag_version(*, client: MlflowClient, rules: GridRules, candidate: RunRecord, version: str) -> None:
    tags = {contract.TAG_GRID: rules.spec.name, contract.TAG_POINT: candidate.point,
            contract.TAG_WEIGHTS_SOURCE: candidate.weights_source or "unknown"}
    for key, value in tags.items():
        client.set_model_version_tag(rules.spec.registered_model, version, key, value)


def register_candidate(*, client: MlflowClient, rules: GridRules, candidate: RunRecord, promote: bool,
                       parent_run_id: str) -> dict[str, Any]:
    name = rules.spec.registered_model
    before = aliases(client=client, name=name)
    previous = before.get(CHAMPION)
    try:
        version = existing_version(client=client, name=name, run_id=candidate.run_id or "")
        reused = version is not None
        version = version or log_and_register(client=client, name=name, candidate=candidate)
    except Skip as why:
        return {"name": name, "skipped": str(why), "error": None, "previous_champion": previous,
                "champion_moved": False, "version": None}
    tag_version(client=client, rules=rules, candidate=candidate, version=version)
    client.set_registered_model_alias(name, CHALLENGER, version)
    moved = promote and previous != version
    if moved:
        client.set_registered_model_alias(name, CHAMPION, version)
        client.set_tag(parent_run_id, contract.TAG_PREVIOUS_CHAMPION, previous or "none")
    return {"name": name, "version": version, "reused": reused, "previous_champion": previous,
            "champion_moved": moved, "champion": version if promote else previous, "error": None,
            "skipped": None, "model_uri": f"models:/{name}@{CHAMPION if promote else CHALLENGER}",
            "weights": BEST_WEIGHTS}
