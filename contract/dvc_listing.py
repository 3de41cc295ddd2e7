"""DVC 3's md5 of a dataset folder, shared by the controller's preflight and the jobs' verification.

The pinned version of a folder is the md5 of the JSON list
`[{"md5": <file md5>, "relpath": <posix path>}, ...]` sorted by relpath
(`json.dumps(..., sort_keys=True)`), plus the suffix ".dir" (the `md5:` of
`<folder>.dvc`). Folders named .git, .hg and .dvc are skipped as DVC skips them.
In a DVC 3 cache or remote, an object with md5 `ab12...` lives at `files/md5/ab/12...`.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

SKIPPED_DIRS = frozenset({".git", ".hg", ".dvc"})
CHUNK = 1 << 20
MAX_NAMED = 10  # files named in a mismatch message
Listing = list[dict[str, str]]  # [{"md5": hex, "relpath": posix path}], sorted by relpath


def file_md5(*, path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as stream:
        while chunk := stream.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def file_entries(*, path: Path) -> Listing:
    """DVC's listing of a folder: one {"md5", "relpath"} per file, sorted by relpath."""
    entries = []
    for top, dirs, files in os.walk(path):
        dirs[:] = [d for d in dirs if d not in SKIPPED_DIRS]
        for name in files:
            file = Path(top) / name
            entries.append({"md5": file_md5(path=file), "relpath": file.relative_to(path).as_posix()})
    return sorted(entries, key=lambda entry: entry["relpath"])


def listing_md5(*, entries: Listing) -> str:
    """The `.dir` md5 DVC gives a folder with this listing."""
    return hashlib.md5(json.dumps(entries, sort_keys=True).encode("utf-8")).hexdigest() + ".dir"


def object_path(md5: str) -> str:
    """Where DVC 3 keeps the object `md5` under a cache or remote root: `files/md5/ab/cdef...`."""
    return f"files/md5/{md5[:2]}/{md5[2:]}"


def parse_listing(raw: str | bytes) -> Listing:
    """A `.dir` object's JSON, reduced to md5 and relpath."""
    return [{"md5": e["md5"], "relpath": e["relpath"]} for e in json.loads(raw)]


def diff(*, expected: Listing, actual: Listing) -> tuple[list[str], list[str], list[str]]:
    """(missing, modified, unexpected) relpaths, each sorted."""
    want = {e["relpath"]: e["md5"] for e in expected}
    have = {e["relpath"]: e["md5"] for e in actual}
    return (sorted(want.keys() - have.keys()), sorted(p for p in want.keys() & have.keys() if want[p] != have[p]),
            sorted(have.keys() - want.keys()))


def differences(*, expected: Listing, actual: Listing) -> list[str]:
    """Human lines naming missing, modified and unexpected files (at most MAX_NAMED, then a count)."""
    missing, modified, unexpected = diff(expected=expected, actual=actual)
    lines = [f"  missing:    {p}" for p in missing]
    lines += [f"  modified:   {p}" for p in modified]
    lines += [f"  unexpected: {p}" for p in unexpected]
    more = len(lines) - MAX_NAMED
    return lines[:MAX_NAMED] + ([f"  ... and {more} more"] if more > 0 else [])


def repair_commands(*, folder: str, expected: Listing | None, actual: Listing, in_cache: bool) -> list[str]:
    """Shell commands that make `folder` (as the user types it, e.g. `data/tiny_coco`) its pinned version
    again. `expected` is the pinned listing when known; `in_cache`: the pinned version is in the local DVC
    cache (`dvc checkout` restores it; otherwise `dvc pull` fetches it from the remote first).

    Files ultralytics writes beside its labels (`labels/*.cache`, after training directly on the folder)
    are removed with `rm <folder>/<dir>/*.cache`; other unexpected files are named one by one."""
    restore = f"dvc checkout {folder}.dvc" if in_cache else f"dvc pull {folder}.dvc"
    if expected is None:  # the pinned listing is unknown: remove what is surely not data, then restore
        caches = sorted({_glob_of(e["relpath"]) for e in actual if e["relpath"].endswith(".cache")})
        return [f"rm {folder}/{glob}" for glob in caches] + [f"{restore} --force"]
    missing, modified, unexpected = diff(expected=expected, actual=actual)
    commands = sorted({f"rm {folder}/{_glob_of(p)}" for p in unexpected if p.endswith(".cache")})
    others = [p for p in unexpected if not p.endswith(".cache")]
    if others:
        named = " ".join(f"{folder}/{p}" for p in others[:MAX_NAMED])
        commands.append(f"rm {named}" + (" ..." if len(others) > MAX_NAMED else ""))
    if missing or modified:
        commands.append(f"{restore} --force")
    return commands


def _glob_of(relpath: str) -> str:
    parent = relpath.rpartition("/")[0]
    return f"{parent}/*.cache" if parent else "*.cache"
