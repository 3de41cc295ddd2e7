"""The local state store: a snapshot (state.json) and a journal of the changes since, no process needed.

A save of a few changed Jobs costs what they weigh, not the grid; what load_state returns is always what
the last complete save recorded (a journal line cut by a writer that died is ignored); state.json alone is
the whole state after a whole save."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from controller.core.reconciling import JobPhase
from controller.local import state as store
from controller.local.state import (
    Attempt,
    GridState,
    JobRecord,
    job_names,
    job_owners,
    load_state,
    save_state,
    state_path,
)


def record(name: str, *, size: int = 10) -> JobRecord:
    manifest = {"spec": {"template": {"spec": {"containers": [{"name": "train", "args": ["x" * size]}]}}}}
    return JobRecord(name=name, grid="g", spec_hash="h", submission="s", role="train", manifest=manifest)


def grid(count: int, *, size: int = 10) -> GridState:
    return GridState(grid="g", submission="s", experiment="e", jobs={f"j{i}": record(f"j{i}", size=size)
                                                                     for i in range(count)})


def journals(root: Path) -> list[Path]:
    return sorted(state_path(root, "g").parent.glob("state.*.journal"))


def assert_same(loaded: GridState, state: GridState) -> None:
    assert loaded == state and list(loaded.jobs) == list(state.jobs)


def test_changes_go_to_the_journal_and_load_replays_them(tmp_path: Path) -> None:
    state = grid(3)
    save_state(tmp_path, state)
    snapshot = state_path(tmp_path, "g").read_text()
    state.jobs["j1"].phase = JobPhase.RUNNING
    state.jobs["j1"].attempts.append(Attempt(1, "j1.log", time.time(), pid=42, process_started=1.5))
    state.jobs["j3"] = record("j3")
    del state.jobs["j0"]
    state.phase, state.message = "Running", "1 running"
    save_state(tmp_path, state, changed=["j1", "j3", "j0"])
    assert state_path(tmp_path, "g").read_text() == snapshot and len(journals(tmp_path)) == 1
    assert_same(load_state(tmp_path, "g"), state)
    state.jobs["j1"].phase = JobPhase.SUCCEEDED
    state.jobs["j0"] = record("j0")  # removed, then back: last in order, as in the executor's dict
    save_state(tmp_path, state, changed={"j1", "j0"})
    assert_same(load_state(tmp_path, "g"), state)


def test_a_save_costs_the_changes_not_the_grid(tmp_path: Path) -> None:
    small, large = grid(10, size=2000), grid(1000, size=2000)
    costs = []
    for root, state in ((tmp_path / "small", small), (tmp_path / "large", large)):
        save_state(root, state)
        state.jobs["j5"].phase = JobPhase.SUCCEEDED
        costs.append(save_state(root, state, changed=["j5"]))
    assert costs[0] == costs[1] < 3000


def test_a_whole_save_leaves_state_json_complete_and_no_journal(tmp_path: Path) -> None:
    state = grid(2)
    save_state(tmp_path, state)
    state.jobs["j2"] = record("j2")
    save_state(tmp_path, state, changed=["j2"])
    save_state(tmp_path, state)
    assert journals(tmp_path) == []
    raw = json.loads(state_path(tmp_path, "g").read_text())
    assert list(raw["jobs"]) == ["j0", "j1", "j2"] and raw["jobs"]["j2"]["attempts"] == []


def test_the_journal_is_folded_into_a_new_snapshot_once_it_outgrows_it(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store, "MIN_JOURNAL_BYTES", 0)
    state = grid(4, size=500)
    save_state(tmp_path, state)
    first = state_path(tmp_path, "g").stat().st_ino
    snapshots = 0
    for step in range(40):
        state.message = f"step {step}"
        state.jobs[f"j{step % 4}"].metrics = {"m": float(step)}
        before = state_path(tmp_path, "g").stat().st_ino
        save_state(tmp_path, state, changed=[f"j{step % 4}"])
        snapshots += state_path(tmp_path, "g").stat().st_ino != before
        assert len(journals(tmp_path)) <= 1
        assert_same(load_state(tmp_path, "g"), state)
    assert state_path(tmp_path, "g").stat().st_ino != first and 5 <= snapshots <= 15


def test_a_journal_line_cut_by_a_writer_that_died_is_not_a_save(tmp_path: Path) -> None:
    state = grid(2)
    save_state(tmp_path, state)
    state.jobs["j0"].phase = JobPhase.RUNNING
    save_state(tmp_path, state, changed=["j0"])
    saved = load_state(tmp_path, "g")
    (journal,) = journals(tmp_path)
    line = json.dumps({"grid": {"phase": "Failed"}, "jobs": {"j1": None}})
    with open(journal, "a") as cut:
        cut.write(line[: len(line) // 2])  # killed mid-append
    assert_same(load_state(tmp_path, "g"), saved)
    # the next controller starts with a whole save: the cut line is gone with its journal
    restarted = load_state(tmp_path, "g")
    store._written.clear()  # a new process
    restarted.jobs["j1"].phase = JobPhase.RUNNING
    save_state(tmp_path, restarted, changed=["j1"])  # not this process's snapshot: a whole save
    assert journal not in journals(tmp_path)
    assert_same(load_state(tmp_path, "g"), restarted)


def test_a_snapshot_this_process_did_not_write_is_never_appended_to(tmp_path: Path) -> None:
    mine, theirs = grid(2), grid(3)
    save_state(tmp_path, mine)
    path = state_path(tmp_path, "g")
    saved = path.read_bytes()
    save_state(tmp_path / "other", theirs)
    path.write_bytes(state_path(tmp_path / "other", "g").read_bytes())  # e.g. a project copied over it
    mine.jobs["j0"].phase = JobPhase.FAILED
    save_state(tmp_path, mine, changed=["j0"])
    assert path.read_bytes() != saved
    assert_same(load_state(tmp_path, "g"), mine)


def test_a_state_json_without_journal_loads_as_before(tmp_path: Path) -> None:
    state = grid(2)
    save_state(tmp_path, state)
    raw = json.loads(state_path(tmp_path, "g").read_text())
    del raw["journal"]
    state_path(tmp_path, "g").write_text(json.dumps(raw))
    assert_same(load_state(tmp_path, "g"), state)


def test_job_names_and_owners_follow_the_journal(tmp_path: Path) -> None:
    state = grid(2)
    save_state(tmp_path, state)
    assert job_names(tmp_path, "g") == ["j0", "j1"]
    state.jobs["j2"] = record("j2")
    save_state(tmp_path, state, changed=["j2"])
    assert job_names(tmp_path, "g") == ["j0", "j1", "j2"]
    del state.jobs["j0"]
    save_state(tmp_path, state)
    assert job_names(tmp_path, "g") == ["j1", "j2"]
    other = GridState(grid="h", jobs={"k0": record("k0")})
    save_state(tmp_path, other)
    assert job_owners(tmp_path) == {"j1": "g", "j2": "g", "k0": "h"}
    assert job_owners(tmp_path, skip="g") == {"k0": "h"}
