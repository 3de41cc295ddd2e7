"""The files a running stack leaves in its folder: the environment to export, and the pids to stop."""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path
from typing import Mapping

from devstack.mlflow_server import write_private

ENV_FILE, STATE_FILE = "stack.env", "stack.json"


def export_lines(env: Mapping[str, str]) -> str:
    """`export NAME='value'` lines, for `eval "$(python -m devstack env)"` or `source .tp4/stack/stack.env`."""
    return "".join(f"export {name}={shlex.quote(value)}\n" for name, value in env.items())


def write_state(folder: Path, *, env: Mapping[str, str], pids: Mapping[str, int], info: Mapping[str, str]) -> None:
    write_private(path=folder / STATE_FILE, text=json.dumps({"pids": dict(pids), "info": dict(info)}, indent=1))
    write_private(path=folder / ENV_FILE, text=export_lines(env))  # written last: its presence means "ready"


def read_state(folder: Path) -> dict[str, dict[str, object]] | None:
    path = folder / STATE_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def clear_state(folder: Path) -> None:
    for name in (ENV_FILE, STATE_FILE):
        (folder / name).unlink(missing_ok=True)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
