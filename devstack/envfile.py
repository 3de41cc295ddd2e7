"""The files a running stack leaves in its folder: the environment to export, the pids to stop,
and (in the private folder) the passwords a developer may need; all readable by their owner only."""

from __future__ import annotations

import json
import os
import shlex
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import contract
from devstack.private import PRIVATE_DIR, write_private

ENV_FILE, STATE_FILE, CREDENTIALS_FILE = "stack.env", "stack.json", "credentials.json"
DATA_DIR = "pgdata"


def export_lines(env: Mapping[str, str]) -> str:
    """`export NAME='value'` lines, for `eval "$(python -m devstack env)"` or `source .tp4/stack/stack.env`."""
    return "".join(f"export {name}={shlex.quote(value)}\n" for name, value in env.items())


def write_state(folder: Path, *, env: Mapping[str, str], pids: Mapping[str, int], info: Mapping[str, str],
                credentials: Mapping[str, str]) -> None:
    """stack.json (pids, addresses, the environment less its secrets), private/credentials.json
    (passwords a person may need: Postgres, the MLflow admin), then stack.env (the whole client
    environment), all 0600. `info` must hold no secret: `up` prints it."""
    public = {name: value for name, value in env.items() if name not in contract.SECRET_ENV}
    state = {"pids": dict(pids), "info": dict(info), "exports": public,
             "secret_names": sorted(set(env) - set(public))}
    write_private(path=folder / STATE_FILE, text=json.dumps(state, indent=1))
    write_private(path=folder / PRIVATE_DIR / CREDENTIALS_FILE, text=json.dumps(dict(credentials), indent=1))
    write_private(path=folder / ENV_FILE, text=export_lines(env))  # written last: its presence means "ready"


def read_state(folder: Path) -> dict[str, Any] | None:
    """stack.json: {"pids": {name: pid}, "info": {...}, "exports": {...}, "secret_names": [...]}, or None."""
    path = folder / STATE_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def clear_state(folder: Path) -> None:
    """Remove stack.env and stack.json: the stack is no longer "ready"."""
    for name in (ENV_FILE, STATE_FILE):
        (folder / name).unlink(missing_ok=True)


def discard(folder: Path) -> None:
    """Remove what holds data or secrets once the servers are stopped: the Postgres cluster
    (runs, users, password verifiers) and the private folder. The logs (redacted) stay."""
    clear_state(folder)
    for name in (DATA_DIR, PRIVATE_DIR):
        shutil.rmtree(folder / name, ignore_errors=True)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
