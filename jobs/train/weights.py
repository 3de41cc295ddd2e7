"""Resolve `--model` into something ultralytics can load, and say where it came from.

- `s3://bucket/key`: downloaded with boto3 (endpoint `AWS_ENDPOINT_URL`, keys
  and region from the usual `AWS_*` variables) -> weights_source "s3";
- an architecture `.yaml` (a path or an ultralytics name such as
  `yolov8n.yaml`): trained from scratch -> "scratch";
- a path to an existing file -> "path"; a path that does not exist -> BadInput;
- an ultralytics asset name (`yolov8n.pt`): taken from ultralytics' weights
  cache or downloaded by ultralytics -> "pretrained"; when that is impossible
  (offline: YOLO_OFFLINE=true or no network) the job falls back to
  `--fallback-model` (an architecture .yaml) with a visible WARNING -> "scratch".
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import contract
from jobs.common.errors import BadInput

ARCHITECTURE_SUFFIXES = (".yaml", ".yml")
# S3 answers that retrying cannot change; others (5xx, throttling) propagate as failures.
BAD_S3_CODES = {"404", "403", "NoSuchKey", "NoSuchBucket", "AccessDenied", "InvalidAccessKeyId",
                "SignatureDoesNotMatch"}
TRUE = {"1", "true", "yes", "on", "y", "t"}


@dataclass(frozen=True)
class Weights:
    spec: str  # what was asked for (--model)
    model: str  # what YOLO() loads: a local weights file or an architecture .yaml
    source: str  # one of contract.WEIGHTS_SOURCES


def resolve_weights(*, spec: str, fallback: str, workdir: Path) -> Weights:
    """Resolve `spec`; `workdir` receives downloads from S3."""
    fallback_model = architecture(name=fallback, flag="--fallback-model")
    if spec.startswith("s3://"):
        return Weights(spec=spec, model=str(download_s3(uri=spec, folder=workdir)), source="s3")
    if spec.endswith(ARCHITECTURE_SUFFIXES):
        return Weights(spec=spec, model=architecture(name=spec, flag="--model"), source="scratch")
    if not _is_bare_name(spec):
        path = Path(spec).expanduser()
        if not path.is_file():
            raise BadInput(f"--model {spec}: no such weights file")
        return Weights(spec=spec, model=str(path), source="path")
    if (local := pretrained(name=spec)) is not None:
        return Weights(spec=spec, model=local, source="pretrained")
    print(
        f"WARNING: pretrained weights {spec!r} cannot be fetched (offline?): training {fallback!r} FROM SCRATCH; "
        f"expect near-zero metrics. Pass --model <path to weights> to use local pretrained weights.",
        file=sys.stderr,
        flush=True,
    )
    return Weights(spec=spec, model=fallback_model, source="scratch")


def _is_bare_name(spec: str) -> bool:
    return "/" not in spec and os.sep not in spec and not spec.startswith((".", "~"))


def architecture(*, name: str, flag: str) -> str:
    """A model .yaml as a path ultralytics can build, or BadInput naming the flag."""
    if not name.endswith(ARCHITECTURE_SUFFIXES):
        raise BadInput(f"{flag} {name}: an architecture file must end in .yaml")
    from ultralytics.nn.tasks import yaml_model_load

    try:
        yaml_model_load(name)  # resolves names like yolov8n.yaml (yolov8.yaml at scale n) as YOLO() will
    except FileNotFoundError as exc:
        raise BadInput(f"{flag} {name}: no such architecture file (neither a path nor an ultralytics model)") from exc
    return name


def offline() -> bool:
    """YOLO_OFFLINE=true, or ultralytics found no network when imported."""
    if os.environ.get("YOLO_OFFLINE", "").lower() in TRUE:
        return True
    from ultralytics.utils import ONLINE

    return not ONLINE


def pretrained(*, name: str) -> str | None:
    """The local file of an ultralytics asset, downloading it when online; None if unavailable."""
    from ultralytics.utils import SETTINGS
    from ultralytics.utils.checks import check_yolov5u_filename
    from ultralytics.utils.downloads import GITHUB_ASSETS_NAMES, attempt_download_asset

    asset = check_yolov5u_filename(name, verbose=False)
    if asset not in GITHUB_ASSETS_NAMES:
        raise BadInput(f"--model {name}: neither a file nor a known ultralytics weights name")
    cached = Path(SETTINGS["weights_dir"]) / asset
    for candidate in (Path(asset), cached):
        if candidate.is_file():
            return str(candidate)
    if offline():
        return None
    try:
        local = Path(attempt_download_asset(cached))
    except Exception as exc:  # any download failure means: fall back
        print(f"WARNING: download of {asset} failed: {exc}", file=sys.stderr, flush=True)
        return None
    return str(local) if local.is_file() else None


def download_s3(*, uri: str, folder: Path) -> Path:
    """Download `s3://bucket/key` into `folder` with the AWS_* environment."""
    import boto3
    from botocore.exceptions import ClientError, NoCredentialsError

    parts = urlsplit(uri)
    bucket, key = parts.netloc, parts.path.lstrip("/")
    if not bucket or not key:
        raise BadInput(f"--model {uri}: expected s3://bucket/key")
    target = folder / Path(key).name
    target.parent.mkdir(parents=True, exist_ok=True)
    client = boto3.client("s3", endpoint_url=os.environ.get(contract.ENV_S3_ENDPOINT) or None)
    try:
        client.download_file(bucket, key, str(target))
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "?")
        if code not in BAD_S3_CODES:
            raise
        raise BadInput(f"--model {uri}: cannot download ({code})") from exc
    except NoCredentialsError as exc:
        raise BadInput(f"--model {uri}: no S3 credentials ({contract.ENV_S3_ACCESS_KEY} unset)") from exc
    return target
