"""The DVC-tracked dataset: pin, fetch, verify.

The pinned version is the md5 of the dataset folder exactly as DVC 3 computes
it for `dvc add <folder>` (the `md5: <hex>.dir` of `<folder>.dvc`): the md5 of
the JSON list `[{"md5": <file md5>, "relpath": <posix path>}, ...]` sorted by
relpath (`json.dumps(..., sort_keys=True)`), plus the suffix ".dir". Folders
named .git, .hg and .dvc are skipped as DVC skips them; `.dvcignore` patterns
are not applied (keep the dataset folder free of ignored files).

A folder that is absent is pulled first (`dvc pull <folder>.dvc`, through
DVC's Python API) from the remote that the environment selects, as a
Kubernetes Job receives it:

- `TP4_DVC_REMOTE`: the name of a remote in `.dvc/config` (e.g. `s3`);
  unset, DVC's default remote (`core.remote`);
- `TP4_DVC_REMOTE_URL`: the remote's URL (e.g. `s3://team-tp4-dvc`),
  overriding the named remote's `url`, or alone, an ad-hoc remote;
- an S3 remote takes its endpoint (`AWS_ENDPOINT_URL`; `http://` for a
  local endpoint: no TLS), region (`AWS_DEFAULT_REGION`) and keys
  (`AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`) from the environment, like
  any boto client. A down endpoint is waited for (jobs.common.connecting).

The pull needs neither a git checkout (a pod has none) nor a DVC cache: it
runs with `core.no_scm` and fills the project's cache from the remote.

A pull that fails is classified (`pull_fault`) from the exception DVC raises and the
exceptions its loggers report per object, the outermost known one deciding:
- bad input (`BadInput`, exit 2), what no retry can fix: an object missing from the
  remote (`FileNotFoundError`, DVC's "Missing cache files" warning, `CheckoutError`), a
  corrupt `.dir` listing (`ObjectFormatError`), access refused (`PermissionError`:
  keys or bucket policy), DVC's configuration and argument errors;
- transient (`retrying.Transient`): throttling (`503 SlowDown`, s3fs's `OSError`
  EBUSY "Please reduce your request rate."), other 5xx, resets, time-outs
  (`retrying.transient_reason`): the whole pull is tried again, `retrying.DEFAULT_BACKOFF`,
  then `retrying.GaveUp` (exit 1);
- anything else: `PullFailed` at once (exit 1), not bad input.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from filelock import FileLock

import contract
from contract.dvc_listing import (  # noqa: F401  (re-exported: the jobs' names for them)
    MAX_NAMED,
    SKIPPED_DIRS,
    differences,
    file_entries,
    file_md5,
    listing_md5,
    repair_commands,
)
from jobs.common import connecting, retrying
from jobs.common.errors import BadInput

ENV_DVC_REMOTE = contract.ENV_DVC_REMOTE
ENV_DVC_REMOTE_URL = contract.ENV_DVC_REMOTE_URL
URL_ONLY_REMOTE = "tp4-env"  # the name given to a remote that only TP4_DVC_REMOTE_URL defines
DVC_LOGGERS = ("dvc", "dvc_data", "dvc_objects")
LOCK_NAME = "tp4-dataset.lock"  # in .dvc/tmp, which DVC keeps out of git
# dvc_data/index/fetch.py: _log_missing, the warning naming objects in neither the cache nor the remote
MISSING_WARNING = "Some of the cache files do not exist neither locally nor on remote"


@dataclass(frozen=True)
class VerifiedDataset:
    path: Path
    md5: str
    nfiles: int
    pulled: bool


def directory_md5(*, path: Path) -> str:
    """The md5 `dvc add <path>` records for a folder."""
    return listing_md5(entries=file_entries(path=path))


def dvc_file(*, path: Path) -> Path:
    """`data/tiny_coco` -> `data/tiny_coco.dvc`."""
    return path.with_name(path.name + ".dvc")


def pinned_md5(*, path: Path) -> str:
    """TP4_DATASET_MD5 when set, else the md5 recorded in `<path>.dvc`."""
    if md5 := os.environ.get(contract.ENV_DATASET_MD5):
        return md5
    dvcfile = dvc_file(path=path)
    if not dvcfile.is_file():
        raise BadInput(f"dataset {path} is not pinned: no {dvcfile} and {contract.ENV_DATASET_MD5} is not set")
    outs = (yaml.safe_load(dvcfile.read_text()) or {}).get("outs") or []
    for out in outs:
        if Path(str(out.get("path", ""))).name == path.name and out.get("md5"):
            return str(out["md5"])
    raise BadInput(f"{dvcfile}: no md5 for output {path.name!r}")


def dvc_root(*, path: Path) -> Path | None:
    """The DVC project (folder with `.dvc/`) holding `path`, if any."""
    for folder in path.resolve().parents:
        if (folder / ".dvc").is_dir():
            return folder
    return None


@dataclass(frozen=True)
class RemoteChoice:
    """Which DVC remote to pull from: a name (None: the default remote) and an optional URL override."""

    name: str | None
    url: str | None

    def describe(self) -> str:
        named = f"remote {self.name!r}" if self.name else "the default remote"
        return named + (f" at {self.url}" if self.url else "")


def remote_choice(*, env: Mapping[str, str]) -> RemoteChoice:
    name, url = env.get(ENV_DVC_REMOTE) or None, env.get(ENV_DVC_REMOTE_URL) or None
    return RemoteChoice(name=name or (URL_ONLY_REMOTE if url else None), url=url)


@contextmanager
def open_repo(*, root: Path, remote: RemoteChoice) -> Iterator[Any]:
    """The DVC project at `root`, its default remote set to `remote`, without git."""
    from dvc.repo import Repo

    with Repo(str(root), config={"core": {"no_scm": True}}, remote=remote.name,
              remote_config={"url": remote.url} if remote.url else None) as repo:
        yield repo


def remote_settings(*, repo: Any, remote: RemoteChoice) -> dict[str, Any] | None:
    """The chosen remote's configuration, None when it is not defined."""
    name = remote.name or repo.config["core"].get("remote")
    settings = repo.config["remote"].get(name) if name else None
    return dict(settings) if settings and settings.get("url") else None


def undefined_remote(*, root: Path, remote: RemoteChoice) -> str:
    named = f"{ENV_DVC_REMOTE}={remote.name}" if remote.name else "no default remote (core.remote)"
    return f"{named} is not defined in {root / '.dvc' / 'config'}"


def wait_for_remote(*, settings: Mapping[str, Any]) -> None:
    """An S3 remote on an explicit endpoint (MinIO, moto) may still be starting."""
    endpoint = settings.get("endpointurl") or os.environ.get(contract.ENV_S3_ENDPOINT)
    url = str(settings["url"])
    if url.startswith("s3://") and endpoint:
        connecting.wait_for_s3(endpoint=endpoint, bucket=url.removeprefix("s3://").split("/", 1)[0])


class MessageOnly(logging.Formatter):
    """`LEVEL: message (cause)`, without the tracebacks DVC attaches to its errors."""

    def format(self, record: logging.LogRecord) -> str:
        cause = record.exc_info[1] if record.exc_info else None
        return f"{record.levelname}: {record.getMessage()}" + (f" ({str(cause)[:200]})" if cause else "")


class DvcLog(logging.StreamHandler):
    """DVC's warnings and errors as text, and the exceptions they carry (one per object DVC failed to get)."""

    def __init__(self) -> None:
        super().__init__(io.StringIO())
        self.setLevel(logging.WARNING)
        self.setFormatter(MessageOnly())
        self.exceptions: list[BaseException] = []
        self.missing = False  # DVC said that objects exist neither in the cache nor in the remote

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and record.exc_info[1] is not None:
            self.exceptions.append(record.exc_info[1])
        if str(record.msg).startswith(MISSING_WARNING):
            self.missing = True
        super().emit(record)

    def getvalue(self) -> str:
        return self.stream.getvalue()


@contextmanager
def captured_dvc_log() -> Iterator[DvcLog]:
    """DVC's warnings and errors (they name the objects it could not fetch), for the error message
    and for `pull_fault`."""
    handler = DvcLog()
    loggers = [logging.getLogger(name) for name in DVC_LOGGERS]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        yield handler
    finally:
        for logger in loggers:
            logger.removeHandler(handler)


class PullFailed(RuntimeError):
    """A pull failed in a way that is neither known to be transient nor bad input: exit code 1."""


TRANSIENT, BAD = "transient", "bad input"


def pull_fault(*, exc: BaseException, log: DvcLog) -> tuple[str | None, str]:
    """(TRANSIENT, BAD or None, why) for a failed pull: the exception DVC raised and those it logged.

    Each exception is judged by the first link of its cause/context chain that is known (bad input
    before transient within one link); an object missing in the remote makes the whole pull bad input,
    otherwise one transient fault makes it transient."""
    if log.missing:
        return BAD, "objects missing in the remote"
    verdicts = [_verdict(e) for e in [exc, *log.exceptions]]
    for kind in (BAD, TRANSIENT):
        for verdict, why in verdicts:
            if verdict == kind:
                return kind, why
    return None, f"{type(exc).__name__}: {str(exc)[:300]}"


def _verdict(exc: BaseException) -> tuple[str | None, str]:
    for link in retrying.chain(exc):
        if why := _bad_reason(link):
            return BAD, why
        if why := retrying.transient_reason(link):
            return TRANSIENT, why
    return None, ""


def _bad_reason(exc: BaseException) -> str | None:
    from dvc.config import ConfigError
    from dvc.exceptions import CheckoutError, InvalidArgumentError
    from dvc_objects.errors import ObjectFormatError

    if isinstance(exc, (FileNotFoundError, PermissionError, ObjectFormatError, CheckoutError, ConfigError,
                        InvalidArgumentError)):
        return f"{type(exc).__name__}: {str(exc)[:300]}"
    return None


def pull(*, path: Path, md5: str, backoff: retrying.Backoff = retrying.DEFAULT_BACKOFF) -> None:
    """`dvc pull <path>.dvc` from the chosen remote, retried on transient faults (see the module's doc).

    Raises BadInput naming the folder (and the files DVC could not get, when it names their md5)
    when no retry can help, `retrying.GaveUp` when transient faults outlast `backoff`, `PullFailed`
    for any other failure."""
    dvcfile = dvc_file(path=path)
    root = dvc_root(path=path)
    if root is None or not dvcfile.is_file():
        raise BadInput(f"dataset folder {path} is missing and cannot be pulled: no {dvcfile} in a DVC project")
    remote = remote_choice(env=os.environ)
    print(f"dataset {path} is missing: dvc pull {dvcfile} from {remote.describe()} ...", flush=True)
    retrying.retry(what=f"dvc pull {dvcfile.name} from {remote.describe()}", backoff=backoff,
                   call=lambda: _pull_once(path=path, md5=md5, root=root, remote=remote))


def _pull_once(*, path: Path, md5: str, root: Path, remote: RemoteChoice) -> None:
    dvcfile = dvc_file(path=path)
    with captured_dvc_log() as log, open_repo(root=root, remote=remote) as repo:
        settings = remote_settings(repo=repo, remote=remote)
        if settings is None:
            raise BadInput(f"dataset folder {path} is missing and cannot be pulled: "
                           + undefined_remote(root=root, remote=remote))
        wait_for_remote(settings=settings)
        try:
            repo.pull(targets=[str(dvcfile.resolve())])
        except Exception as exc:  # DVC's errors have no common base worth more than this: classified below
            _forget_collected(repo=repo)
            kind, why = pull_fault(exc=exc, log=log)
            if kind == TRANSIENT:
                raise retrying.Transient(why) from exc
            output = f"{log.getvalue().strip()}\n{type(exc).__name__}: {exc}".strip()
            message = _pull_failure(path=path, md5=md5, remote=remote, output=output)
            if kind == BAD:
                raise BadInput(message) from exc
            raise PullFailed(message) from exc


def _forget_collected(*, repo: Any) -> None:
    """Drop the index DVC keeps of what a fetch collected (in its site cache, shared by every pull of this
    project on this machine): a fetch that failed while loading the `.dir` listing leaves it incomplete,
    and the next pull would trust it, fetch nothing and fail its checkout as if objects were missing.
    DVC drops it the same way after a fetch that transferred files."""
    try:
        repo.drop_data_index()
    except Exception as exc:  # the pull's own failure is what the caller reports
        print(f"WARNING: could not drop DVC's data index: {type(exc).__name__}: {exc}", file=sys.stderr)


def _pull_failure(*, path: Path, md5: str, remote: RemoteChoice, output: str) -> str:
    failed = [e["relpath"] for e in pinned_listing(path=path, md5=md5) or [] if e["md5"] in output]
    named = "".join(f"\n  not fetched: {relpath}" for relpath in failed[:MAX_NAMED])
    return (f"dataset folder {path} is missing and `dvc pull {dvc_file(path=path).name}` from "
            f"{remote.describe()} failed:{named}\n{output[-2000:]}")


def _lock_file(*, path: Path) -> FileLock | None:
    root = dvc_root(path=path)
    if root is None:
        return None
    lock_path = root / ".dvc" / "tmp" / LOCK_NAME
    try:
        lock_path.parent.mkdir(exist_ok=True)
        with lock_path.open("a"):  # a file this process may write: the lock needs one
            pass
    except OSError:  # a read-only project: nothing can be pulled into it anyway
        return None
    # An OS lock (flock, LockFileEx) that dies with its holder, never a soft lock (a marker file
    # that a killed Job would leave behind); kept on disk on release, as DVC's tmp files are.
    return FileLock(lock_path, fallback_to_soft=False, preserve_lock_file=True)


@contextmanager
def project_lock(*, path: Path) -> Iterator[None]:
    """One pull at a time per DVC project: the local executor runs several Jobs in one
    project folder, and a Job must neither pull beside another nor verify a half-pulled
    folder. (Pods have a folder each.)"""
    lock = _lock_file(path=path)
    if lock is None:
        yield
        return
    with lock:  # blocks until the lock is free
        yield


def in_workspace(*, path: Path) -> Path:
    """Where a dataset folder is pulled to: beside its DVC pointer, or, when
    TP4_WORKSPACE is set (a pod whose project folder is read-only), in a copy of
    the DVC project's skeleton (config and pointer) under that writable folder."""
    workspace = os.environ.get(contract.ENV_WORKSPACE)
    root = dvc_root(path=path)
    if not workspace or path.is_dir() or root is None:
        return path
    relative = path.resolve().relative_to(root)
    target = Path(workspace).resolve() / relative
    (target.parent).mkdir(parents=True, exist_ok=True)
    shutil.copy2(dvc_file(path=path), dvc_file(path=target))
    skeleton = Path(workspace).resolve() / ".dvc"
    skeleton.mkdir(exist_ok=True)
    for name in ("config", "config.local"):
        if (root / ".dvc" / name).is_file():
            shutil.copy2(root / ".dvc" / name, skeleton / name)
    return target


def ensure_dataset(*, path: Path) -> VerifiedDataset:
    """Pull the folder if absent, then check it against the pinned md5.

    Raises BadInput naming the folder (and the differing files, when DVC's
    cache holds the pinned listing) on any mismatch.
    """
    expected = pinned_md5(path=path)
    path = in_workspace(path=path)
    with project_lock(path=path):
        pulled = not path.is_dir()
        if pulled:
            pull(path=path, md5=expected)
    if not path.is_dir():
        raise BadInput(f"dataset folder {path} is missing")
    entries = file_entries(path=path)
    actual = listing_md5(entries=entries)
    if actual != expected:
        raise BadInput(_mismatch_message(path=path, expected=expected, actual=actual, entries=entries))
    return VerifiedDataset(path=path, md5=actual, nfiles=len(entries), pulled=pulled)


def working_copy(*, dataset: VerifiedDataset, data_yaml: Path, into: Path) -> Path:
    """Copy the verified folder into `into` and return its data.yaml, re-rooted there.

    Training reads exactly the bytes that were verified, and ultralytics'
    label caches (`labels/*.cache`) land in the copy, never in the
    DVC-tracked folder (they would change its md5).
    """
    copy = shutil.copytree(dataset.path, into / dataset.path.name)
    spec = yaml.safe_load(data_yaml.read_text()) or {}
    if not isinstance(spec, dict):
        raise BadInput(f"{data_yaml}: not a YAML mapping")
    spec["path"] = str(copy)
    target = copy / data_yaml.relative_to(dataset.path)
    target.write_text(yaml.safe_dump(spec, sort_keys=False))
    return target


def _mismatch_message(*, path: Path, expected: str, actual: str, entries: list[dict[str, str]]) -> str:
    head = f"dataset folder {path} does not match its pinned version: md5 {actual}, expected {expected}"
    pinned = pinned_listing(path=path, md5=expected)
    in_cache = cached_listing(path=path, md5=expected) is not None
    repair = "\nrestore the pinned files with: " + " && ".join(
        repair_commands(folder=str(path), expected=pinned, actual=entries, in_cache=in_cache))
    if pinned is None:
        return head + f" (run `dvc status {dvc_file(path=path)}` to see it)" + repair
    return head + "\n" + "\n".join(differences(expected=pinned, actual=entries)) + repair


def pinned_listing(*, path: Path, md5: str) -> list[dict[str, str]] | None:
    """The pinned `.dir` listing, from the DVC cache or else the default remote."""
    return cached_listing(path=path, md5=md5) or remote_listing(path=path, md5=md5)


def remote_listing(*, path: Path, md5: str) -> list[dict[str, str]] | None:
    """The pinned `.dir` listing read from the chosen DVC remote; None if unavailable.

    Only used to name files in an error message, hence best effort.
    """
    root = dvc_root(path=path)
    if root is None or not md5.endswith(".dir"):
        return None
    try:
        with open_repo(root=root, remote=remote_choice(env=os.environ)) as repo:
            odb = repo.cloud.get_remote_odb()
            raw = odb.fs.cat_file(odb.oid_to_path(md5))
        return [{"md5": e["md5"], "relpath": e["relpath"]} for e in json.loads(raw)]
    except Exception:
        return None


def cached_listing(*, path: Path, md5: str) -> list[dict[str, str]] | None:
    """The pinned `.dir` listing from the project's DVC cache (default location), if there."""
    root = dvc_root(path=path)
    if root is None or not md5.endswith(".dir"):
        return None
    manifest = root / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]
    if not manifest.is_file():
        return None
    return [{"md5": e["md5"], "relpath": e["relpath"]} for e in json.loads(manifest.read_text())]
