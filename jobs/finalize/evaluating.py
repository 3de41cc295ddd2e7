"""The candidate's best.pt on the held-out test split (never used for training or selection).

The test metrics are logged on the candidate's run as `test_<metric>`. The
current champion, when it is another run, is evaluated on the very same test
images in the same finalizer run (not logged on its run), each image's
detections kept, and the two are compared with a paired bootstrap over the
images (jobs.finalize.champion), so that the champion gate compares like with
like, with its uncertainty. When the test split cannot be reached (no dataset,
no pinned version, no `test:` in data.yaml, no weights on the run) the step is
skipped and the report says why; a champion whose run or weights are gone is
marked missing; any other error while evaluating is raised.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from mlflow.entities import Metric
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

import contract
from jobs.common import dataset, mlflow_dataset
from jobs.common.errors import BadInput
from jobs.finalize.champion import DEFAULT_CONFIDENCE, ImageStats, is_box_metric, paired_bootstrap
from jobs.finalize.gridrules import GridRules
from jobs.finalize.ranking import Ranking
from jobs.finalize.records import (
    MISSING_ARTIFACTS,
    MISSING_RUN,
    MISSING_WEIGHTS,
    ChampionInfo,
    EvaluationStatus,
    RunRecord,
    not_compared,
)
from jobs.finalize.results import NOT_FOUND, Skip, download_weights

DATA_YAML = "data.yaml"


def verified_dataset(*, data_path: str | None, ranking: Ranking) -> tuple[dataset.VerifiedDataset, Path]:
    """The grid's dataset folder (pulled if absent), checked against the md5 pinned at submission, and its data.yaml."""
    given = data_path or ranking.rules.spec.dataset_path
    if not given:
        raise Skip("no dataset path in the grid")
    path = Path(given)
    folder = path.parent if path.suffix in (".yaml", ".yml") else path
    data_yaml = path if path.suffix in (".yaml", ".yml") else folder / DATA_YAML
    try:
        expected = ranking.rules.spec.dataset_md5 or dataset.pinned_md5(path=folder)
        folder = dataset.in_workspace(path=folder)
        data_yaml = folder / data_yaml.name
        pulled = not folder.is_dir()
        if pulled:
            dataset.pull(path=folder, md5=expected)
        entries = dataset.file_entries(path=folder)
    except BadInput as exc:
        raise Skip(f"dataset not usable: {exc}") from exc
    actual = dataset.listing_md5(entries=entries)
    if actual != expected:
        raise Skip(f"dataset {folder} is not the grid's version (md5 {actual}, expected {expected})")
    if not data_yaml.is_file() or "test" not in (yaml.safe_load(data_yaml.read_text()) or {}):
        raise Skip(f"{data_yaml} declares no test split")
    verified = dataset.VerifiedDataset(path=folder, md5=actual, nfiles=len(entries), pulled=pulled)
    return verified, data_yaml


def working_data_yaml(*, data_path: str | None, ranking: Ranking,
                      into: Path) -> tuple[dataset.VerifiedDataset, Path]:
    """The verified dataset, and data.yaml of a copy of it: ultralytics' label caches must not change the
    tracked folder's md5."""
    verified, data_yaml = verified_dataset(data_path=data_path, ranking=ranking)
    return verified, dataset.working_copy(dataset=verified, data_yaml=data_yaml, into=into)


@dataclass(frozen=True)
class SplitResult:
    """A model on the test split: the four final metrics prefixed test_, and each image's stats (by image path)."""

    metrics: dict[str, float]
    images: dict[str, ImageStats]


def per_image_validator(sink: dict[str, ImageStats]) -> type[Any]:
    """ultralytics' DetectionValidator, also keeping each image's stats in `sink` (image path -> ImageStats):
    update_metrics appends one entry per image of the batch to DetMetrics.stats, in the batch's order."""
    from ultralytics.models.yolo.detect import DetectionValidator

    class PerImageValidator(DetectionValidator):
        def update_metrics(self, preds: list[dict[str, Any]], batch: dict[str, Any]) -> None:
            super().update_metrics(preds, batch)
            stats = self.metrics.stats
            first = len(stats["tp"]) - len(preds)
            for offset, path in enumerate(batch["im_file"][:len(preds)]):
                row = first + offset
                sink[str(path)] = ImageStats(tp=stats["tp"][row], conf=stats["conf"][row],
                                             pred_cls=stats["pred_cls"][row], target_cls=stats["target_cls"][row])

    return PerImageValidator


def split_metrics(*, weights: Path, data_yaml: Path, imgsz: int, batch: int, workdir: Path) -> SplitResult:
    """ultralytics val(split='test') of `weights`: the four final metrics, prefixed test_, and per image."""
    from ultralytics import YOLO

    threads = os.environ.get(contract.ENV_TORCH_THREADS)
    if threads:
        import torch

        torch.set_num_threads(int(threads))
    images: dict[str, ImageStats] = {}
    result = YOLO(str(weights)).val(data=str(data_yaml), split="test", imgsz=imgsz, batch=batch, workers=0,
                                    plots=False, verbose=False, project=str(workdir), name="test", exist_ok=True,
                                    validator=per_image_validator(images))
    box = result.box
    values = {contract.METRIC_PRECISION: box.mp, contract.METRIC_RECALL: box.mr,
              contract.METRIC_MAP50: box.map50, contract.METRIC_MAP50_95: box.map}
    return SplitResult(metrics={contract.TEST_PREFIX + name: float(value) for name, value in values.items()},
                       images=images)


def _int_param(*, params: dict[str, str] | None, name: str, default: int) -> int:
    try:
        return int(float((params or {}).get(name, default)))
    except ValueError:
        return default


def evaluate_run(*, client: MlflowClient, run_id: str, params: dict[str, str], data_yaml: Path) -> SplitResult:
    with tempfile.TemporaryDirectory() as folder:
        weights = download_weights(client=client, run_id=run_id, folder=Path(folder))
        imgsz = _int_param(params=params, name="imgsz", default=640)
        batch = _int_param(params=params, name="batch", default=8)
        return split_metrics(weights=weights, data_yaml=data_yaml, imgsz=imgsz, batch=batch, workdir=Path(folder))


def confidence(rules: GridRules) -> float:
    """gates.confidence: the level of the champion comparison's interval."""
    return float(getattr(getattr(rules.spec, "gates", None), "confidence", DEFAULT_CONFIDENCE))


def log_test_metrics(*, client: MlflowClient, run_id: str, metrics: dict[str, float]) -> None:
    now = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric(name, value, now, 0) for name, value in metrics.items()])


def evaluate_champion(*, client: MlflowClient, champion: ChampionInfo | None, candidate: RunRecord,
                      ours: SplitResult, data_yaml: Path, rules: GridRules) -> tuple[ChampionInfo | None, bool]:
    """The champion's best.pt on the same test images as the candidate (`ours`), and the paired comparison of
    the objective; (champion, whether it was evaluated). A champion whose run or weights went missing since
    results.fetch_champion checked is marked so (the gate then passes as with no champion)."""
    if champion is None or champion.missing or not champion.run_id or champion.run_id == candidate.run_id:
        return champion, False
    if not is_box_metric(rules.spec.objective_metric):
        return dataclasses.replace(champion, not_compared="objective_not_box_metric"), False
    try:
        params = dict(client.get_run(champion.run_id).data.params)
    except MlflowException as exc:
        if exc.error_code not in NOT_FOUND:
            raise
        return dataclasses.replace(champion, missing=MISSING_RUN, detail=f"no such run ({exc.error_code})"), False
    try:
        theirs = evaluate_run(client=client, run_id=champion.run_id, params=params, data_yaml=data_yaml)
    except Skip as why:
        return dataclasses.replace(champion, missing=MISSING_WEIGHTS, detail=str(why)), False
    except FileNotFoundError as exc:
        return dataclasses.replace(champion, missing=MISSING_ARTIFACTS, detail=str(exc)), False
    except MlflowException as exc:
        if exc.error_code not in NOT_FOUND:
            raise
        return dataclasses.replace(champion, missing=MISSING_ARTIFACTS, detail=f"{exc.error_code}: {exc}"), False
    comparison = paired_bootstrap(candidate=ours.images, champion=theirs.images, metric=rules.spec.objective_metric,
                                  sign=rules.sign, confidence=confidence(rules))
    return dataclasses.replace(champion, metrics={**champion.metrics, **theirs.metrics}, comparison=comparison), True


def log_test_input(*, client: MlflowClient, run_id: str, verified: dataset.VerifiedDataset) -> None:
    """The dataset the test metrics come from, as an input of the candidate's run in the `test` context."""
    project = mlflow_dataset.dvc_project(verified.path, Path.cwd())
    uri = mlflow_dataset.source_uri(project=project, md5=verified.md5, env=os.environ)
    mlflow_dataset.log_dataset_input(client=client, run_id=run_id, context="test", dataset=mlflow_dataset.dvc_dataset(
        folder=verified.path, md5=verified.md5, source_uri=uri))


def evaluate_on_test(*, client: MlflowClient, ranking: Ranking, candidate: RunRecord, champion: ChampionInfo | None,
                     data_path: str | None) -> tuple[RunRecord, ChampionInfo | None, EvaluationStatus]:
    params = dict(candidate.logged_params) or {k: str(v) for k, v in candidate.params.items()}
    with tempfile.TemporaryDirectory() as folder:
        try:
            verified, data_yaml = working_data_yaml(data_path=data_path, ranking=ranking, into=Path(folder))
            ours = evaluate_run(client=client, run_id=candidate.run_id or "", params=params, data_yaml=data_yaml)
        except Skip as why:
            return candidate, not_compared(champion, "test_not_evaluated"), EvaluationStatus(evaluated=False,
                                                                                               reason=str(why))
        log_test_metrics(client=client, run_id=candidate.run_id or "", metrics=ours.metrics)
        log_test_input(client=client, run_id=candidate.run_id or "", verified=verified)
        candidate = dataclasses.replace(candidate, metrics={**candidate.metrics, **ours.metrics})
        champion, champion_done = evaluate_champion(client=client, champion=champion, candidate=candidate, ours=ours,
                                                    data_yaml=data_yaml, rules=ranking.rules)
    return candidate, champion, EvaluationStatus(evaluated=True, champion_evaluated=champion_done)

