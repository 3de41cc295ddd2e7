"""The DVC-tracked dataset: pin, fetch, verify.

The pinned version is the md5 of the dataset folder exactly as DVC 3 computes
it for `dvc add <folder>` (the `md5: <hex>.dir` of `<folder>.dvc`): the md5 of
the JSON list `[{"md5": <file md5>, "relpath": <posix path>}, ...]` sorted by
relpath (`json.dumps(..., sort_keys=True)`), plus the suffix ".dir". Folders
named .git, .hg and .dvc are skipped as DVC skips them; `.dvcignore` patterns
are not applied (keep the dataset folder free of ignored files).

A folder that is absent is pulled first with `dvc pull <folder>.dvc` from the
project's default DVC remote; an S3 remote takes its endpoint and keys from
the `AWS_*` environment variables, like any boto client.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

import contract
from jobs.errors import BadInput

SKIPPED_DIRS = frozenset({".git", ".hg", ".dvc"})
CHUNK = 1 << 20
MAX_NAMED = 10  # files named in a mismatch message


@dataclass(frozen=True)
class VerifiedDataset:
    path: Path
    md5: str
    nfiles: int
    pulled: bool


def file_md5(*, path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as stream:
        while chunk := stream.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def file_entries(*, path: Path) -> list[dict[str, str]]:
    """DVC's listing of a folder: one {"md5", "relpath"} per file, sorted by relpath."""
    entries = []
    for top, dirs, files in os.walk(path):
        dirs[:] = [d for d in dirs if d not in SKIPPED_DIRS]
        for name in files:
            file = Path(top) / name
            entries.append({"md5": file_md5(path=file), "relpath": file.relative_to(path).as_posix()})
    return sorted(entries, key=lambda entry: entry["relpath"])


def listing_md5(*, entries: list[dict[str, str]]) -> str:
    """The `.dir` md5 DVC gives a folder with this listing."""
    return hashlib.md5(json.dumps(entries, sort_keys=True).encode("utf-8")).hexdigest() + ".dir"


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


def pull(*, path: Path, md5: str) -> None:
    """`dvc pull <path>.dvc` from the default remote; BadInput naming the folder
    (and the files DVC could not get, when it names their md5) on failure."""
    dvcfile = dvc_file(path=path)
    root = dvc_root(path=path)
    if root is None or not dvcfile.is_file():
        raise BadInput(f"dataset folder {path} is missing and cannot be pulled: no {dvcfile} in a DVC project")
    print(f"dataset {path} is missing: dvc pull {dvcfile} ...", flush=True)
    target = str(dvcfile.resolve().relative_to(root))
    done = subprocess.run(
        [sys.executable, "-m", "dvc", "pull", target], cwd=root, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        output = (done.stdout + done.stderr).strip()
        failed = [e["relpath"] for e in pinned_listing(path=path, md5=md5) or [] if e["md5"] in output]
        named = "".join(f"\n  not fetched: {relpath}" for relpath in failed[:MAX_NAMED])
        raise BadInput(f"dataset folder {path} is missing and `dvc pull {target}` failed:{named}\n{output[-2000:]}")


def ensure_dataset(*, path: Path) -> VerifiedDataset:
    """Pull the folder if absent, then check it against the pinned md5.

    Raises BadInput naming the folder (and the differing files, when DVC's
    cache holds the pinned listing) on any mismatch.
    """
    expected = pinned_md5(path=path)
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
    if pinned is None:
        return head + f" (run `dvc status {dvc_file(path=path)}` / `dvc checkout` to see or restore it)"
    return head + "\n" + "\n".join(differences(expected=pinned, actual=entries))


def pinned_listing(*, path: Path, md5: str) -> list[dict[str, str]] | None:
    """The pinned `.dir` listing, from the DVC cache or else the default remote."""
    return cached_listing(path=path, md5=md5) or remote_listing(path=path, md5=md5)


def remote_listing(*, path: Path, md5: str) -> list[dict[str, str]] | None:
    """The pinned `.dir` listing read from the default DVC remote; None if unavailable.

    Only used to name files in an error message, hence best effort.
    """
    root = dvc_root(path=path)
    if root is None or not md5.endswith(".dir"):
        return None
    try:
        from dvc.repo import Repo

        with Repo(str(root)) as repo:
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


def differences(*, expected: list[dict[str, str]], actual: list[dict[str, str]]) -> list[str]:
    """Human lines naming missing, modified and unexpected files."""
    want = {e["relpath"]: e["md5"] for e in expected}
    have = {e["relpath"]: e["md5"] for e in actual}
    lines = [f"  missing:    {p}" for p in sorted(want.keys() - have.keys())]
    lines += [f"  modified:   {p}" for p in sorted(want.keys() & have.keys()) if want[p] != have[p]]
    lines += [f"  unexpected: {p}" for p in sorted(have.keys() - want.keys())]
    more = len(lines) - MAX_NAMED
    return lines[:MAX_NAMED] + ([f"  ... and {more} more"] if more > 0 else [])
