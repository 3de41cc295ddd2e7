"""The finalizer's MLflow adapter: read a grid's spec and runs back, the champion, and log the report.

MLflow is the only source of results. For each point of grid.json the newest
train run whose spec hash matches is kept, whichever submission produced it
(a resubmission re-runs only missing or failed points, under a new parent).
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mlflow.entities import Run, ViewType
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

import contract
from jobs.finalize.gridrules import GridRules, GridSpecError, rules_from_grid_json
from jobs.finalize.records import (
    MISSING,
    MISSING_ARTIFACTS,
    MISSING_RUN,
    MISSING_VERSION,
    MISSING_WEIGHTS,
    ChampionInfo,
    RunRecord,
)

CHAMPION, CHALLENGER = "champion", "challenger"
BEST_WEIGHTS = f"{contract.ARTIFACT_WEIGHTS_DIR}/best.pt"  # what the test split evaluates and the registry serves
PAGE = 500
NOT_FOUND = {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"}


class Skip(Exception):
    """A model cannot be evaluated or registered here (its weights are gone, the test split is unusable...);
    the message says why."""


def download_weights(*, client: MlflowClient, run_id: str, folder: Path) -> Path:
    """The run's weights/best.pt downloaded into `folder`; Skip when the run has none."""
    names = {f.path for f in client.list_artifacts(run_id, contract.ARTIFACT_WEIGHTS_DIR)}
    if BEST_WEIGHTS not in names:
        raise Skip(f"run {run_id} has no {BEST_WEIGHTS}")
    return Path(client.download_artifacts(run_id, BEST_WEIGHTS, str(folder)))


def load_rules(*, client: MlflowClient, parent_run_id: str) -> tuple[GridRules, Run]:
    """The parent run and its grid.json; GridSpecError when either is missing or unreadable."""
    try:
        parent = client.get_run(parent_run_id)
    except MlflowException as exc:
        if exc.error_code not in NOT_FOUND:
            raise
        raise GridSpecError([f"parent run {parent_run_id}: no such run ({exc.error_code})"]) from exc
    with tempfile.TemporaryDirectory() as folder:
        try:
            path = client.download_artifacts(parent_run_id, contract.ARTIFACT_GRID_SPEC, folder)
        except (MlflowException, OSError) as exc:
            problem = f"parent run {parent_run_id} has no {contract.ARTIFACT_GRID_SPEC} artifact: {exc}"
            raise GridSpecError([problem]) from exc
        try:
            document = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise GridSpecError([f"{contract.ARTIFACT_GRID_SPEC}: not valid JSON: {exc}"]) from exc
    spec = document.get("spec") if isinstance(document, dict) else None
    dataset = spec.get("dataset") if isinstance(spec, dict) else None
    if isinstance(dataset, dict) and document.get("dataset_md5") and not dataset.get("md5"):
        dataset["md5"] = document["dataset_md5"]  # the md5 the controller pinned at submission
    return rules_from_grid_json(document, tags=parent.data.tags), parent


def run_url(*, tracking_uri: str, experiment_id: str, run_id: str) -> str | None:
    """The run's page in the MLflow UI, when the tracking URI is the server's address."""
    if not tracking_uri.startswith(("http://", "https://")):
        return None
    return f"{tracking_uri.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


def search_all(*, client: MlflowClient, experiment_ids: list[str], query: str) -> Iterator[Run]:
    token = None
    while True:
        page = client.search_runs(experiment_ids, filter_string=query, run_view_type=ViewType.ACTIVE_ONLY,
                                  max_results=PAGE, order_by=["attributes.start_time DESC"], page_token=token)
        yield from page
        token = page.token
        if not token:
            return


def grid_experiment_ids(*, client: MlflowClient, rules: GridRules, parent: Run) -> list[str]:
    experiment = client.get_experiment_by_name(rules.spec.experiment) if rules.spec.experiment else None
    ids = {parent.info.experiment_id}
    if experiment is not None:
        ids.add(experiment.experiment_id)
    return sorted(ids)


def _attempt(run: Run) -> int:
    try:
        return int(run.data.tags.get(contract.TAG_ATTEMPT, "0"))
    except ValueError:
        return 0


def _age(run: Run) -> tuple[int, int]:
    return (run.info.start_time or 0, _attempt(run))


def fetch_runs(*, client: MlflowClient, rules: GridRules, parent: Run) -> list[RunRecord]:
    """One record per grid point, in grid.json order (then the recorded trials): its newest matching train
    run, or MISSING. A run matches on its spec hash; one that also carries the point's name is preferred
    (two trials of a sampled search may share their parameters, hence their hash)."""
    query = (f"tags.`{contract.TAG_GRID}` = '{_quote(rules.spec.name)}' "
             f"and tags.`{contract.TAG_ROLE}` = '{contract.ROLE_TRAIN}'")
    newest: dict[str, Run] = {}
    named: dict[tuple[str, str], Run] = {}
    for run in search_all(client=client, experiment_ids=grid_experiment_ids(client=client, rules=rules, parent=parent),
                          query=query):
        spec_hash = run.data.tags.get(contract.TAG_SPEC_HASH)
        if not spec_hash:
            continue
        if spec_hash not in newest or _age(run) > _age(newest[spec_hash]):
            newest[spec_hash] = run
        key = (run.data.tags.get(contract.TAG_POINT, ""), spec_hash)
        if key not in named or _age(run) > _age(named[key]):
            named[key] = run
    uri = client.tracking_uri
    return [record(point=p.name, params=p.params, run=named.get((p.name, p.spec_hash), newest.get(p.spec_hash)),
                   tracking_uri=uri, number=p.number, phase=p.phase) for p in rules.points]


def _quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace("'", "\\'")


def record(*, point: str, params: Any, run: Run | None, tracking_uri: str, number: int | None = None,
           phase: str | None = None) -> RunRecord:
    if run is None:
        return RunRecord(point=point, params=params, status=MISSING, number=number, phase=phase)
    tags = run.data.tags
    return RunRecord(
        point=point, params=params, status=run.info.status, run_id=run.info.run_id,
        metrics=dict(run.data.metrics), logged_params=dict(run.data.params),
        weights_source=tags.get(contract.TAG_WEIGHTS_SOURCE), weights=tags.get(contract.TAG_WEIGHTS),
        start_time=run.info.start_time or 0,
        url=run_url(tracking_uri=tracking_uri, experiment_id=run.info.experiment_id, run_id=run.info.run_id),
        stopped_at=stopped_epoch(tags.get(contract.TAG_STOPPED_EARLY)), phase=tags.get(contract.TAG_PHASE) or phase,
        number=number)


def stopped_epoch(tag: str | None) -> int | None:
    """TAG_STOPPED_EARLY's epoch; 0 when the tag is there but unreadable (the run still stopped early)."""
    if tag is None:
        return None
    try:
        return int(float(tag))
    except ValueError:
        return 0


def aliases(*, client: MlflowClient, name: str) -> dict[str, str]:
    """The registered model's aliases ({} when the model is not registered yet)."""
    try:
        model = client.get_registered_model(name)
    except MlflowException as exc:
        if exc.error_code in NOT_FOUND:
            return {}
        raise
    return {alias: str(version) for alias, version in (model.aliases or {}).items()}


def fetch_champion(*, client: MlflowClient, name: str) -> ChampionInfo | None:
    """The version holding the `champion` alias, with its run's metrics (val and test_*); None without one.

    The registry's state is checked, not assumed: when the version, its run (deleted, garbage-collected),
    the run's artifacts (moved, removed) or its weights/best.pt are gone, the ChampionInfo says which
    (`missing`) and the decision proceeds as with no champion. Other MLflow errors (server unreachable,
    permission denied) are raised."""
    version = aliases(client=client, name=name).get(CHAMPION)
    if version is None:
        return None
    found = ChampionInfo(version=version, run_id=None, model=name, alias=CHAMPION)
    try:
        model_version = client.get_model_version(name, version)
    except MlflowException as exc:
        if exc.error_code not in NOT_FOUND:
            raise
        return dataclasses.replace(found, missing=MISSING_VERSION, detail=f"no such version ({exc.error_code})")
    run_id = model_version.run_id
    if not run_id:
        return dataclasses.replace(found, missing=MISSING_RUN, detail="the version names no run")
    found = dataclasses.replace(found, run_id=run_id)
    try:
        run = client.get_run(run_id)
    except MlflowException as exc:
        if exc.error_code not in NOT_FOUND:
            raise
        return dataclasses.replace(found, missing=MISSING_RUN, detail=f"no such run ({exc.error_code})")
    found = dataclasses.replace(found, metrics=dict(run.data.metrics), dataset_md5=run.data.tags.get(
        contract.TAG_DATASET_MD5))
    if run.info.lifecycle_stage == "deleted":
        return dataclasses.replace(found, missing=MISSING_RUN, detail="the run is deleted")
    missing = missing_weights(client=client, run_id=run_id)
    return dataclasses.replace(found, missing=missing[0], detail=missing[1]) if missing else found


def missing_weights(*, client: MlflowClient, run_id: str) -> tuple[str, str] | None:
    """("artifacts" | "weights", how it shows) when the run's weights/best.pt is not in its artifact store."""
    try:
        if not client.list_artifacts(run_id):
            return MISSING_ARTIFACTS, "the run's artifact location lists nothing"
        names = {f.path for f in client.list_artifacts(run_id, contract.ARTIFACT_WEIGHTS_DIR)}
    except FileNotFoundError as exc:
        return MISSING_ARTIFACTS, f"artifact location not found ({exc})"
    except MlflowException as exc:
        if exc.error_code not in NOT_FOUND:
            raise
        return MISSING_ARTIFACTS, f"artifact location not found ({exc.error_code})"
    return None if BEST_WEIGHTS in names else (MISSING_WEIGHTS, f"no {BEST_WEIGHTS} among the run's artifacts")


def log_report(*, client: MlflowClient, parent_run_id: str, directory: Path, verdict: str) -> None:
    """The report folder under report/ on the parent run, and the decision as its tag."""
    client.log_artifacts(parent_run_id, str(directory), artifact_path=contract.ARTIFACT_REPORT_DIR)
    client.set_tag(parent_run_id, contract.TAG_DECISION, verdict)


def has_artifact(*, client: MlflowClient, run_id: str, path: str) -> bool:
    folder, _, name = path.rpartition("/")
    return any(f.path == path for f in client.list_artifacts(run_id, folder or None)) if name else False
