"""What every point of a grid would fail on, checked once before any run or Job exists.

`check` looks at what each train Job checks first, from the controller's side:

- the local dataset folder against its pinned md5 (hashed as DVC does, contract.dvc_listing); when it
  differs, the message names the missing, modified and unexpected files and the commands that restore
  the pinned version (`rm <folder>/labels/*.cache` for ultralytics' label caches, `dvc checkout` or
  `dvc pull`);
- when the folder is absent (the Job would pull it), the pinned version's `.dir` object in the DVC
  remote the Jobs use (TP4_DVC_REMOTE / TP4_DVC_REMOTE_URL, else `core.remote` of .dvc/config): a
  local remote folder is looked at directly, an S3 remote with boto3 when S3 is configured here
  (AWS_ENDPOINT_URL or AWS_ACCESS_KEY_ID set), else skipped with a note;
- the weights: a local path must be a file; an `s3://` object must exist when S3 is configured here;
  a name (yolov8n.pt, yolov8n.yaml) is left to the Job.

The tracking server is probed by the executor itself before its parent run (controller.tracking.client).
Every refusal is `InvalidInput` (exit 2) naming the field or file; notes say what was not checked.
"""

from __future__ import annotations

import configparser
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import contract
from contract.dvc_listing import (
    Listing,
    differences,
    file_entries,
    listing_md5,
    object_path,
    parse_listing,
    repair_commands,
)
from contract.grid import GridSpec
from controller.errors import InvalidInput, Problem

S3_NOT_FOUND = {"404", "NoSuchKey", "NoSuchBucket"}


@dataclass(frozen=True)
class Remote:
    """The DVC remote the Jobs pull from: its name (for messages) and URL (a local folder is absolute)."""

    name: str
    url: str


def check(grid: GridSpec, *, root: Path, dataset_md5: str, backend: str) -> list[str]:
    """Refuse (InvalidInput) what every point would fail on; return notes on what was not checked.
    `backend` "local" checks the project's own dataset copy and weights path (the Jobs run in `root`);
    "kubernetes" only what the pods share with this machine (an s3:// weights object)."""
    problems: list[Problem] = []
    notes: list[str] = []
    if backend == "local":
        problem, note = check_dataset(grid.dataset_path, root=root, md5=dataset_md5)
        problems += [problem] if problem else []
        notes += [note] if note else []
    problem, note = check_weights(grid.weights, root=root, local=backend == "local")
    problems += [problem] if problem else []
    notes += [note] if note else []
    if problems:
        raise InvalidInput(problems)
    return notes


# --- dataset -----------------------------------------------------------------------------------------

def check_dataset(dataset_path: str, *, root: Path, md5: str) -> tuple[Problem | None, str | None]:
    """The local copy against its pin, or (absent) the pinned version in the DVC remote."""
    folder = root / dataset_path
    project = dvc_project(folder)
    if folder.is_dir():
        try:
            entries = file_entries(path=folder)
        except OSError as error:  # a file gone between the listing and its read: the folder is being replaced
            return Problem("dataset.path", f"dataset folder {dataset_path} changed while it was read "
                           f"({type(error).__name__}: {error}): is a `data build` (or `dvc checkout`) writing it? "
                           "submit again once it has ended"), None
        actual = listing_md5(entries=entries)
        if actual == md5:
            return None, None
        return Problem("dataset.path", mismatch_message(dataset_path, project=project, md5=md5, actual=actual,
                                                        entries=entries)), None
    if project is None:
        return Problem("dataset.path", f"dataset folder {dataset_path} is missing, and no DVC project (.dvc/) "
                       f"holds it to pull it from: build it (python -m controller data build) or restore it"), None
    remote = dvc_remote(project, env=os.environ)
    if remote is None:
        return Problem("dataset.path", f"dataset folder {dataset_path} is missing and no DVC remote is defined "
                       f"in {project / '.dvc' / 'config'} to pull it from (set core.remote or "
                       f"{contract.ENV_DVC_REMOTE_URL})"), None
    present = object_in_remote(remote, md5)
    if present is None:
        return None, (f"dataset {dataset_path} is missing here and will be pulled by each Job: "
                      f"its presence in remote {remote.name} ({remote.url}) was not checked (S3 not configured here)")
    if not present:
        return Problem("dataset.path", f"dataset folder {dataset_path} is missing, and its pinned version {md5} "
                       f"is not in DVC remote {remote.name!r} ({remote.url}): push it from a machine that has it "
                       f"(dvc push {dataset_path}.dvc -r {remote.name}) or pin a version the remote has"), None
    return None, None


def mismatch_message(folder: str, *, project: Path | None, md5: str, actual: str, entries: Listing) -> str:
    """Which files differ from the pin (when its listing is in the DVC cache or a local remote) and the repair."""
    expected = pinned_listing(project, md5) if project else None
    in_cache = project is not None and (dvc_cache(project) / object_path(md5)).is_file()
    lines = [f"dataset folder {folder} does not match its pinned version: md5 {actual}, expected {md5}"]
    if expected is not None:
        lines += differences(expected=expected, actual=entries)
    else:
        caches = [e["relpath"] for e in entries if e["relpath"].endswith(".cache")]
        lines += [f"  (the pinned file list is not at hand; ultralytics label caches found: {', '.join(caches)})"
                  if caches else "  (the pinned file list is not at hand: `dvc status` names the files)"]
    if any(e["relpath"].endswith(".cache") for e in entries):
        lines.append("  ultralytics writes labels/*.cache when it trains directly on the folder (the Jobs train "
                     "on a copy)")
    commands = repair_commands(folder=folder, expected=expected, actual=entries, in_cache=in_cache)
    lines.append("restore the pinned files with: " + " && ".join(commands))
    return "\n".join(lines)


def dvc_project(folder: Path) -> Path | None:
    """The DVC project (a folder with .dvc/) holding `folder`, if any."""
    for parent in folder.resolve().parents:
        if (parent / ".dvc").is_dir():
            return parent
    return None


def dvc_config(project: Path) -> configparser.ConfigParser:
    """.dvc/config, then .dvc/config.local over it (DVC's INI files; sections like `'remote "s3"'`)."""
    config = configparser.ConfigParser(interpolation=None)
    config.read([project / ".dvc" / "config", project / ".dvc" / "config.local"])
    return config


def dvc_cache(project: Path) -> Path:
    """The project's DVC cache: `cache.dir` (relative to .dvc/) or .dvc/cache."""
    return (project / ".dvc" / dvc_config(project).get("cache", "dir", fallback="cache")).resolve()


def dvc_remote(project: Path, *, env: Any) -> Remote | None:
    """The remote a Job pulls from (jobs.common.dataset.remote_choice): TP4_DVC_REMOTE_URL, else the
    url of TP4_DVC_REMOTE or core.remote; a relative local url is relative to .dvc/."""
    config = dvc_config(project)
    name = env.get(contract.ENV_DVC_REMOTE) or config.get("core", "remote", fallback="")
    url = env.get(contract.ENV_DVC_REMOTE_URL) or (config.get(f"'remote \"{name}\"'", "url", fallback="")
                                                  if name else "")
    if not url:
        return None
    if "://" not in url and not Path(url).is_absolute():
        url = str((project / ".dvc" / url).resolve())
    return Remote(name=name or "tp4-env", url=url)


def object_in_remote(remote: Remote, md5: str) -> bool | None:
    """Whether the remote holds object `md5`; None when it cannot be told from here."""
    if "://" not in remote.url or remote.url.startswith("file://"):
        return (Path(remote.url.removeprefix("file://")) / object_path(md5)).is_file()
    if remote.url.startswith("s3://") and s3_configured():
        bucket, _, prefix = remote.url.removeprefix("s3://").partition("/")
        return s3_object_exists(bucket, "/".join(p for p in (prefix.strip("/"), object_path(md5)) if p))
    return None


def pinned_listing(project: Path, md5: str) -> Listing | None:
    """The pinned `.dir` listing from the DVC cache, else a local remote folder; None when neither has it."""
    places = [dvc_cache(project) / object_path(md5)]
    remote = dvc_remote(project, env=os.environ)
    if remote is not None and "://" not in remote.url:
        places.append(Path(remote.url) / object_path(md5))
    for place in places:
        if md5.endswith(".dir") and place.is_file():
            try:
                return parse_listing(place.read_bytes())
            except (ValueError, KeyError, TypeError):
                return None
    return None


# --- weights -----------------------------------------------------------------------------------------

def check_weights(weights: str, *, root: Path, local: bool) -> tuple[Problem | None, str | None]:
    """A local path (local backend) must be a file; an s3:// object must exist (when S3 is configured)."""
    if weights.startswith("s3://"):
        bucket, _, key = weights.removeprefix("s3://").partition("/")
        if not s3_configured():
            return None, f"model.weights {weights}: not checked here (S3 not configured), the Job downloads it"
        found = s3_object_exists(bucket, key)
        if found is False:
            return Problem("model.weights", f"{weights}: no such object in S3 bucket {bucket!r}"), None
        return None, None if found else f"model.weights {weights}: S3 did not answer, the Job checks it"
    if not local or _is_name(weights):
        return None, None
    path = Path(weights).expanduser()
    path = path if path.is_absolute() else root / path
    if not path.is_file():
        return Problem("model.weights", f"{weights}: no such weights file (looked at {path})"), None
    return None, None


def _is_name(weights: str) -> bool:
    """A name ultralytics resolves itself (yolov8n.pt, yolov8n.yaml): no folder in it."""
    return "/" not in weights and os.sep not in weights and not weights.startswith((".", "~"))


# --- S3 ----------------------------------------------------------------------------------------------

def s3_configured() -> bool:
    return bool(os.environ.get(contract.ENV_S3_ENDPOINT) or os.environ.get(contract.ENV_S3_ACCESS_KEY))


def s3_object_exists(bucket: str, key: str) -> bool | None:
    """head_object: True, False (404/no such bucket), None (any other answer, or no answer)."""
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    client = boto3.client("s3", endpoint_url=os.environ.get(contract.ENV_S3_ENDPOINT) or None,
                          config=Config(connect_timeout=5, read_timeout=10, retries={"max_attempts": 2}))
    try:
        client.head_object(Bucket=bucket, Key=key)
    except ClientError as error:
        code = str(error.response.get("Error", {}).get("Code", ""))
        return False if code in S3_NOT_FOUND else None
    except BotoCoreError:
        return None
    return True
