"""The local executor's state store: what Kubernetes' API server keeps for the cluster.

Per grid under .tp4/grids/<grid>/: state.json, the whole state written atomically, and the journal of
the changes made since (below), so a restarted controller sees which Jobs exist and how they ended, and
a save costs what changed, not the whole grid.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from filelock import FileLock

import contract
from contract.errors import InvalidInput, Problem
from controller.core.reconciling import JobPhase
from controller.core.state import Attempt, GridState, JobRecord

__all__ = ["Attempt", "GridState", "JobRecord", "grid_dir", "state_path", "load_state", "save_state",
           "known_grids", "job_names", "job_owners", "claim_job_names", "safe_child"]


def safe_child(base: Path, name: str) -> Path:
    """`base / name` when `name` is one plain path component that stays inside `base`
    (a grid, Job or file name from grid.yaml is never used as a path unchecked);
    `InvalidInput` (exit 2) naming the value otherwise."""
    path = base / name
    plain = bool(name) and name not in (".", "..") and "/" not in name and "\\" not in name and "\0" not in name
    if not plain or path.resolve().parent != base.resolve():
        raise InvalidInput([Problem("name", f"{name!r} cannot name a file or folder under {base}: "
                                            "use letters, digits and '-' only")])
    return path


def grid_dir(root: Path, grid: str) -> Path:
    return safe_child(root / contract.EMBEDDED_DIR / "grids", grid)


def state_path(root: Path, grid: str) -> Path:
    return grid_dir(root, grid) / "state.json"


# --- the store: a snapshot and a journal of the changes since --------------------------------------------
#
# state.json is the whole state (what it always was: the grid's fields and `jobs`, one JSON line per Job),
# written atomically (a temporary file, then os.replace), plus `"journal": "<id>"`, the journal of changes
# made since: state.<id>.journal, one JSON line per save, {"grid": the grid's fields, "jobs": {name: the
# Job's record, or null when it was removed}}, the Jobs that changed only. A line is appended whole or, when
# its writer dies mid-line, ignored by load_state: a save is all or nothing, as a snapshot's replace is.
# When the journal outgrows the snapshot, the next save writes a new snapshot (with a new journal id) and
# removes the old journal: the bytes written over a grid grow linearly with the changes (bench/p2_scale.py),
# not with changes x Jobs. A controller writes a snapshot when it starts, begins and ends a submission, so
# state.json alone is the whole state whenever no controller runs the grid (unless one was killed).

_JOURNAL_KEY = "journal"
_JOURNAL_ID = re.compile(r"[0-9a-f]{32}")
MIN_JOURNAL_BYTES = 64 * 1024  # a journal smaller than this is never compacted


def _journal_path(directory: Path, journal: str) -> Path:
    return directory / f"state.{journal}.journal"


def _signature(path: Path) -> tuple[int, int, int] | None:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_ino, stat.st_mtime_ns, stat.st_size


@dataclass
class _Written:
    """What this process last wrote for a grid: the snapshot (its file's signature) and its journal."""

    snapshot: tuple[int, int, int] | None
    snapshot_bytes: int
    journal: str
    journal_bytes: int = 0


_written: dict[Path, _Written] = {}


@dataclass
class _Read:
    raw: dict[str, Any]  # the snapshot's data with its journal replayed ({} when there is no state)
    snapshot: tuple[int, int, int] | None  # the snapshot file's signature before it was read
    journal: str | None = None
    journal_bytes: int = 0  # how much of the journal was read


def _read(path: Path) -> _Read:
    """The snapshot's data with its journal replayed; a snapshot replaced while it was read (a writer
    compacting) is read again."""
    for _ in range(10):
        before = _signature(path)
        if before is None:
            return _Read({}, None)
        raw = json.loads(path.read_bytes())
        journal = raw.pop(_JOURNAL_KEY, None)
        if not isinstance(journal, str) or not _JOURNAL_ID.fullmatch(journal):
            return _Read(raw, before)
        try:
            data = _journal_path(path.parent, journal).read_bytes()
        except FileNotFoundError:
            if _signature(path) != before:
                continue  # compacted meanwhile: its journal is in the new snapshot
            data = b""  # nothing changed since the snapshot
        for line in data.split(b"\n"):
            try:
                change = json.loads(line)
            except ValueError:
                continue  # empty, or the last line of a writer that died while appending it: never saved
            raw.update(change["grid"])
            for name, job in change["jobs"].items():
                if job is None:
                    raw["jobs"].pop(name, None)
                else:
                    raw["jobs"][name] = job
        return _Read(raw, before, journal, len(data))
    raise OSError(f"{path}: replaced on every read (is a controller writing it in a loop?)")


def load_state(root: Path, grid: str) -> GridState:
    raw = _read(state_path(root, grid)).raw
    if not raw:
        return GridState(grid=grid)
    jobs = {}
    for name, job in raw.pop("jobs").items():
        attempts = [Attempt(**a) for a in job.pop("attempts")]
        jobs[name] = JobRecord(**{**job, "phase": JobPhase(job["phase"]), "attempts": attempts})
    return GridState(**raw, jobs=jobs)


def _job_data(job: JobRecord) -> dict[str, Any]:
    """A JobRecord as JSON-ready data, its manifest shared, not copied (asdict deep-copies every manifest)."""
    data = {f.name: getattr(job, f.name) for f in fields(job)}
    return {**data, "phase": JobPhase(job.phase).value, "attempts": [asdict(a) for a in job.attempts]}


def _head(state: GridState) -> dict[str, Any]:
    return {f.name: getattr(state, f.name) for f in fields(state) if f.name != "jobs"}


def save_state(root: Path, state: GridState, *, changed: Iterable[str] | None = None) -> int:
    """Record the state; the bytes written.

    `changed`: the names of the Jobs added, changed or removed since this process last saved this grid:
    one journal line with them and the grid's own fields (O(changes)). None, or when this process did not
    write the snapshot on disk, or when the journal has outgrown the snapshot: the whole state, atomically
    (O(Jobs))."""
    path = state_path(root, state.grid)
    written = _written.get(path)
    if changed is not None and written is not None and _signature(path) == written.snapshot \
            and written.journal_bytes < max(written.snapshot_bytes, MIN_JOURNAL_BYTES):
        names = list(dict.fromkeys(changed))
        line = json.dumps({"grid": _head(state), "jobs": {
            name: _job_data(state.jobs[name]) if name in state.jobs else None for name in names}}) + "\n"
        try:
            with open(_journal_path(path.parent, written.journal), "a", encoding="utf-8") as journal:
                journal.write(line)
        except BaseException:
            _written.pop(path, None)  # a line may be cut: the next save writes a snapshot
            raise
        written.journal_bytes += len(line)
        return len(line)
    return _save_snapshot(path, state)


def _save_snapshot(path: Path, state: GridState) -> int:
    _written.pop(path, None)
    path.parent.mkdir(parents=True, exist_ok=True)
    journal = uuid.uuid4().hex
    head = {**_head(state), _JOURNAL_KEY: journal}
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as handle:
        handle.write(json.dumps(head)[:-1] + ', "jobs": {\n')
        handle.write(",\n".join(f"{json.dumps(name)}: {json.dumps(_job_data(job))}"
                                 for name, job in state.jobs.items()))
        handle.write("\n}}\n")
        size = handle.tell()
    os.replace(handle.name, path)
    for old in path.parent.glob("state.*.journal"):  # the previous journal, now in the snapshot
        if old.name != _journal_path(path.parent, journal).name:
            try:
                old.unlink()
            except OSError:  # open by a reader on Windows: the next snapshot removes it
                pass
    _written[path] = _Written(snapshot=_signature(path), snapshot_bytes=size, journal=journal)
    return size


def known_grids(root: Path) -> list[str]:
    base = root / contract.EMBEDDED_DIR / "grids"
    return sorted(p.parent.name for p in base.glob("*/state.json")) if base.exists() else []


_names: dict[Path, tuple[_Read, list[str]]] = {}


def job_names(root: Path, grid: str) -> list[str]:
    """The names of a grid's Jobs, read again only when its snapshot was replaced or its journal grew."""
    path = state_path(root, grid)
    cached = _names.get(path)
    if cached is not None:
        read, names = cached
        journal = _signature(_journal_path(path.parent, read.journal)) if read.journal else None
        if _signature(path) == read.snapshot and (journal[2] if journal else 0) == read.journal_bytes:
            return names
    read = _read(path)
    names = list(read.raw.get("jobs", {}))
    read.raw = {}  # only its signatures are kept
    _names[path] = (read, names)
    return names


CLAIMS_FILE = "claims.json"  # the Job names a grid's latest submission will use (claim_job_names)
NAMES_LOCK = ".names.lock"  # beside the grids' folders: one name check at a time in a project


def job_owners(root: Path, *, skip: str | None = None) -> dict[str, str]:
    """Job name -> the grid that uses it, across every grid of this project (but `skip`): the Jobs in its
    state, and the names its latest submission claimed before creating them."""
    owners: dict[str, str] = {}
    base = root / contract.EMBEDDED_DIR / "grids"
    claimed = sorted(p.parent.name for p in base.glob(f"*/{CLAIMS_FILE}")) if base.exists() else []
    for grid in sorted({*known_grids(root), *claimed}):
        if grid != skip:
            for name in [*job_names(root, grid), *_claims(grid_dir(root, grid) / CLAIMS_FILE)]:
                owners.setdefault(name, grid)
    return owners


def _claims(path: Path) -> list[str]:
    try:
        names = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    return [str(n) for n in names] if isinstance(names, list) else []


def claim_job_names(root: Path, grid: str, names: list[str]) -> dict[str, str]:
    """Under the project's names lock, the names of `names` another grid already uses or claimed ({name:
    grid}); when none, `names` are recorded as `grid`'s claim (atomically) before it creates any Job, so two
    grids submitted at the same moment cannot both take one name."""
    base = root / contract.EMBEDDED_DIR / "grids"
    base.mkdir(parents=True, exist_ok=True)
    with FileLock(base / NAMES_LOCK, timeout=60):
        owners = job_owners(root, skip=grid)
        clashes = {n: owners[n] for n in names if n in owners}
        if not clashes:
            folder = grid_dir(root, grid)
            folder.mkdir(parents=True, exist_ok=True)
            partial = folder / f".{CLAIMS_FILE}.tmp"
            partial.write_text(json.dumps(sorted(set(names))))
            os.replace(partial, folder / CLAIMS_FILE)
        return clashes
