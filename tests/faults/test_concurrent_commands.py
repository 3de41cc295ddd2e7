"""Two tp4 commands at once in one project (issue 23), including the very first in a new project: each ends in
a true state with a message, never a traceback. MLflow creates and migrates the embedded SQLite store on first
use; without the store's lock (contract.sqlite_store_lock), four processes opening a new store at once fail
with "duplicate column name" or alembic's "Online migration expected to match one row".

Cheap: the commands that do not train (`status`, `report`, `logs`, `render`, the store's opening), started
together from a fresh project state, three times."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.faults import drills

pytestmark = pytest.mark.slow
COMMANDS = [["status", "lab"], ["report", "lab"], ["logs", "lab", "train-0.01"], ["render", "grid.yaml"],
            ["status", "other"]]


@pytest.mark.parametrize("round_", range(3))
def test_commands_started_together_in_a_new_project_each_end_with_a_message(
        dataset: tuple[Path, str], tmp_path: Path, round_: int) -> None:
    project = drills.new_project(dataset[0], tmp_path / "project", dataset[1], name="lab")
    processes = [subprocess.Popen([sys.executable, "-m", "controller", "--root", str(project), *args], cwd=project,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=drills.env())
                 for args in COMMANDS]
    results = [(args, p.wait(timeout=300), *p.communicate()) for args, p in zip(COMMANDS, processes, strict=True)]
    for args, code, out, err in results:
        assert "Traceback" not in out + err, (args, out, err)
        assert code in (0, 2), (args, code, out, err)
        assert (out + err).strip(), args  # a message, whatever the state
    assert [code for args, code, *_ in results if args[0] == "render"] == [0]
    assert (project / ".tp4" / "mlflow.db").is_file()


@pytest.mark.parametrize("round_", range(3))
def test_processes_opening_a_new_store_together_all_open_it(tmp_path: Path, round_: int) -> None:
    uri = f"sqlite:///{tmp_path / 'fresh' / 'mlflow.db'}"
    code = ("import sys; from controller.tracking import client; c = client(sys.argv[1]); "
            "print(len(c.search_experiments()))")
    processes = [subprocess.Popen([sys.executable, "-c", code, uri], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True) for _ in range(4)]
    for process in processes:
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0 and out.strip() == "1", err  # the Default experiment, once
