"""The embedded store after the project folder was moved or copied.

MLflow's SQLite store keeps absolute `file://` artifact locations (per
experiment, run, logged model and model version). After `mv project elsewhere`
they name a folder that no longer exists; after `cp -r project copy` they name
the *original* project's artifacts, so the copy would read, and write, outside
its own folder. `relocate(root)` finds locations under another project's
`.tp4/mlartifacts/` and rewrites them to this project's, in `.tp4/mlflow.db`
only (a copy made with the store is self-contained: its artifacts are under
its own `.tp4/mlartifacts`). Nothing outside the project is read or written.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import contract

ARTIFACTS = "/" + contract.EMBEDDED_DIR + "/mlartifacts"
# Every column of MLflow's SQLite schema that holds an artifact location.
LOCATION_COLUMNS = (("experiments", "artifact_location"), ("runs", "artifact_uri"),
                    ("logged_models", "artifact_location"), ("model_versions", "source"),
                    ("model_versions", "storage_location"))


def store_path(root: Path) -> Path:
    return root / contract.EMBEDDED_DIR / "mlflow.db"


def _prefix(root: Path) -> str:
    return (root / contract.EMBEDDED_DIR / "mlartifacts").resolve().as_uri()


def foreign_prefixes(db: sqlite3.Connection, root: Path) -> set[str]:
    """`file://<other project>/.tp4/mlartifacts` prefixes the store's experiments use."""
    own = _prefix(root)
    found = set()
    for (location,) in db.execute("select artifact_location from experiments"):
        if location and location.startswith("file://") and ARTIFACTS + "/" in location:
            prefix = location[: location.index(ARTIFACTS + "/") + len(ARTIFACTS)]
            if prefix != own:
                found.add(prefix)
    return found


def relocate(root: Path) -> str | None:
    """Rewrite the embedded store's artifact locations that point into another project folder
    (this one's former place) to this project's `.tp4/mlartifacts`. Returns a one-line account of
    what was done, None when there was nothing to do (no store, or no foreign location)."""
    from controller.tracking import store_lock  # MLflow: imported by the commands that open the store only

    path = store_path(root)
    if not path.is_file():
        return None
    # Under the store's lock: another tp4 command may be creating this store now (the very first commands
    # of a new project), and a store without its tables yet has nothing to relocate.
    with store_lock(contract.embedded_tracking_uri(root)), closing(sqlite3.connect(path, timeout=30)) as db:
        tables = {name for (name,) in db.execute("select name from sqlite_master where type='table'")}
        if "experiments" not in tables:
            return None
        old = foreign_prefixes(db, root)
        if not old:
            return None
        new = _prefix(root)
        changed = 0
        with db:
            for prefix in sorted(old):
                for table, column in LOCATION_COLUMNS:
                    if table not in tables:
                        continue
                    cursor = db.execute(
                        f"update {table} set {column} = ? || substr({column}, ?) where substr({column}, 1, ?) = ?",
                        (new, len(prefix) + 1, len(prefix), prefix))
                    changed += cursor.rowcount
    places = ", ".join(p.removeprefix("file://").removesuffix(ARTIFACTS) for p in sorted(old))
    return (f"the project folder was moved or copied from {places} to {root}: {changed} artifact locations "
            f"in {path} now point into {root / contract.EMBEDDED_DIR / 'mlartifacts'}")


def local_log(root: Path, recorded: str, *, logs_dir: Path) -> Path:
    """An attempt's log as recorded (an absolute path), or the same file under this project's
    `logs_dir` when the project folder has moved since."""
    path = Path(recorded)
    if path.is_file() or not (logs_dir / path.name).is_file():
        return path
    return logs_dir / path.name
