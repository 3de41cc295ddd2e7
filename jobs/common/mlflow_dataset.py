"""The DVC-pinned dataset as an MLflow dataset input of a run (what the UI's Dataset column and lineage show).

name: the dataset folder's name (`tiny_coco`); digest: the DVC md5 (`66099f…ca46.dir`, 36 characters, the
column's limit); source: where the pinned version lives, the DVC remote's object for that md5 when a
remote is configured (`s3://tp4-dvc/files/md5/66/099f….dir`, `file:///…/.tp4/dvc-remote/files/md5/…`),
else the local folder; profile: the dataset card's summary (classes, seed, images and boxes per split);
context: the split the run used it for (`train` for a train run: its train and val splits; `test` for
the finalizer's evaluation). Runs are then found with `mlflow.search_runs(filter_string=
"dataset.digest = '<md5>'")`.
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlflow.data.dataset_source import DatasetSource
from mlflow.data.dataset_source_registry import resolve_dataset_source
from mlflow.data.meta_dataset import MetaDataset
from mlflow.entities import DatasetInput, InputTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

CONTEXT_TAG = "mlflow.data.context"  # MLflow's own input tag for the context


class DvcDataset(MetaDataset):
    """A MetaDataset (no rows loaded: MLflow records name, digest, source and profile) with a profile."""

    def __init__(self, *, source: DatasetSource, name: str, digest: str, profile: dict[str, Any]) -> None:
        super().__init__(source=source, name=name, digest=digest)
        self._profile = profile

    @property
    def profile(self) -> dict[str, Any]:
        return self._profile

    def to_dict(self) -> dict[str, str]:
        config = super().to_dict()
        config["profile"] = json.dumps(self._profile, sort_keys=True)
        return config


def dvc_project(*starts: Path) -> Path | None:
    """The DVC project (a folder holding `.dvc/`) that is or contains the first of `starts` that has one:
    the dataset's own folder first (a pulled copy in TP4_WORKSPACE has none), then the Job's folder."""
    for start in starts:
        for folder in (start.resolve(), *start.resolve().parents):
            if (folder / ".dvc").is_dir():
                return folder
    return None


def object_uri(*, remote_url: str, md5: str) -> str:
    """The DVC 3 object of `md5` under a remote: `<remote>/files/md5/<2 hex>/<rest>`."""
    return f"{remote_url.rstrip('/')}/files/md5/{md5[:2]}/{md5[2:]}"


def remote_choice_url(env: Mapping[str, str]) -> str | None:
    from jobs.common.dataset import remote_choice

    return remote_choice(env=env).url


def remote_url(*, project: Path | None, env: Mapping[str, str]) -> str | None:
    """The URL of the DVC remote a Job pulls from (TP4_DVC_REMOTE/_URL, else core.remote of
    `<project>/.dvc/config`) as an absolute URI; None without one. DVC's own config reader resolves
    a local remote's relative path."""
    from dvc.config import Config

    from jobs.common.dataset import remote_choice

    choice = remote_choice(env=env)
    url = choice.url
    if url is None and project is not None and (project / ".dvc").is_dir():
        config = Config(dvc_dir=str(project / ".dvc"))
        name = choice.name or config["core"].get("remote")
        url = (config["remote"].get(name) or {}).get("url") if name else None
    if not url:
        return None
    return str(url) if "://" in str(url) else Path(url).resolve().as_uri()


def card_profile(*, folder: Path) -> dict[str, Any]:
    """classes, seed and per-split image/box counts from the dataset card (card.json), {} without one."""
    path = folder / "card.json"
    if not path.is_file():
        return {}
    card = json.loads(path.read_text())
    splits = {name: {k: split.get(k) for k in ("images", "boxes")}
              for name, split in (card.get("splits") or {}).items()}
    return {"classes": card.get("classes"), "seed": card.get("seed"), "splits": splits}


def dvc_dataset(*, folder: Path, md5: str, source_uri: str | None) -> DvcDataset:
    """The dataset pinned at `md5`, read from `folder` (the verified copy), found at `source_uri`."""
    with warnings.catch_warnings():  # file:// matches MLflow's local source twice ("multiple ways"): same class
        warnings.simplefilter("ignore", UserWarning)
        source = resolve_dataset_source(source_uri or folder.resolve().as_uri())
    return DvcDataset(source=source, name=folder.name, digest=md5, profile=card_profile(folder=folder))


def source_uri(*, project: Path | None, md5: str, env: Mapping[str, str]) -> str | None:
    """Where the pinned version lives: the remote's object for `md5` in the DVC project `project` (the
    one holding the dataset; None: none), None without a remote."""
    if project is None and not remote_choice_url(env):
        return None
    url = remote_url(project=project, env=env)
    return object_uri(remote_url=url, md5=md5) if url else None


def log_dataset_input(*, client: MlflowClient, run_id: str, dataset: DvcDataset, context: str,
                      tries: int = 5) -> None:
    """Record `dataset` as an input of run `run_id` used for `context` (train, test, ...).

    Points of one grid log the same dataset at the same moment: a store that creates the dataset's row
    for one of them refuses the other's insert (SQLite: UNIQUE constraint failed: datasets...); the
    next try finds the row and only links it, so a refusal is tried again (`tries` times in all)."""
    entity = dataset._to_mlflow_entity()
    inputs = [DatasetInput(dataset=entity, tags=[InputTag(key=CONTEXT_TAG, value=context)])]
    for attempt in range(1, tries + 1):
        try:
            client.log_inputs(run_id, datasets=inputs)
            return
        except MlflowException as error:
            text = str(error)
            if attempt == tries or not ("UNIQUE constraint" in text or "already exists" in text
                                        or "duplicate key" in text):
                raise
            time.sleep(0.2 * attempt)
