"""What a local controller finds at start and repairs, on real processes and a real MLflow store (no training):
attempts a dead controller left running, runs whose process is gone, a moved project folder, names as paths."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

import contract
from contract.errors import InvalidInput
from controller import tracking
from controller.core.reconciling import JobPhase
from controller.local import processes, relocating, sweeping
from controller.local.kubelet import LocalKubelet
from controller.local.state import Attempt, GridState, JobRecord, grid_dir, load_state, safe_child, save_state

SLEEPER = "import time; print('up', flush=True); time.sleep(120)"


def manifest(code: str) -> dict:
    return {"spec": {"backoffLimit": 1, "template": {"spec": {"containers": [
        {"name": "train", "command": ["python", "-c", code], "args": [], "env": []}]}}}}


def job(name: str = "train-1", *, submission: str = "sub-a", code: str = SLEEPER) -> JobRecord:
    return JobRecord(name=name, grid="g", spec_hash="h", submission=submission, role="train", manifest=manifest(code))


def dead_process() -> processes.ProcessId:
    """The identity of a process that has ended (its pid may be reused later: the start time tells)."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.5)"])
    identity = processes.identify(child.pid)
    child.wait()
    assert identity is not None and not processes.alive(identity.pid, identity.started)
    return identity


def store(root: Path) -> MlflowClient:
    return MlflowClient(contract.embedded_tracking_uri(root))


def test_each_attempt_and_submission_gets_its_own_log(tmp_path: Path) -> None:
    kubelet = LocalKubelet(root=tmp_path, logs_dir=tmp_path / "logs", threads_per_job=1)
    first = job(code="print('first')")
    kubelet.start(first)
    kubelet.processes[first.name].wait()
    again = job(code="print('second')", submission="sub-b")  # a resubmission: attempts start at 1 again
    kubelet.start(again)
    kubelet.processes[again.name].wait()
    same = job(code="print('third')")  # even the same submission and attempt number: a new file
    kubelet.start(same)
    kubelet.processes[same.name].wait()
    logs = [Path(j.attempts[0].log) for j in (first, again, same)]
    assert len(set(logs)) == 3
    assert [p.read_text().strip() for p in logs] == ["first", "second", "third"]


def test_an_attempt_writes_its_temporary_files_in_the_project_and_they_go_with_it(tmp_path: Path) -> None:
    kubelet = LocalKubelet(root=tmp_path, logs_dir=tmp_path / "logs", threads_per_job=1)
    code = "import os, tempfile; print(tempfile.mkdtemp(prefix='tp4-train-'), flush=True); os._exit(9)"
    leaves = job(code=code)
    kubelet.start(leaves)
    deadline = time.time() + 30
    while not leaves.phase.terminal and time.time() < deadline:
        kubelet.poll(leaves)
        time.sleep(0.05)
    assert [a.exit_code for a in leaves.attempts] == [9, 9]  # backoffLimit 1: retried once
    for attempt in leaves.attempts:
        left = Path(Path(attempt.log).read_text().strip())
        assert left.is_relative_to(tmp_path / ".tp4" / "tmp") and not left.exists()


def test_an_attempt_left_running_is_stopped_not_duplicated(tmp_path: Path) -> None:
    kubelet = LocalKubelet(root=tmp_path, logs_dir=tmp_path / "logs", threads_per_job=1)
    running = job()
    kubelet.start(running)
    attempt = running.attempts[0]
    assert attempt.pid == kubelet.processes[running.name].pid and attempt.process_started
    save_state(tmp_path, GridState(grid="g", submission="sub-a", jobs={running.name: running}))
    # the controller "dies": a new one reads the state
    state = load_state(tmp_path, "g")
    assert processes.alive(attempt.pid, attempt.process_started)
    orphans = sweeping.stop_orphans(state, grace_s=5)
    kubelet.processes[running.name].wait(timeout=10)  # reap it (the test process is its parent)
    assert [(o.job, o.attempt, o.stopped) for o in orphans] == [("train-1", 1, True)]
    assert not processes.alive(attempt.pid, attempt.process_started)
    assert state.jobs["train-1"].phase is JobPhase.FAILED and state.jobs["train-1"].attempts[0].reason == "Orphaned"


def test_a_reused_pid_is_not_the_recorded_process() -> None:
    gone = dead_process()
    assert not processes.alive(gone.pid, gone.started)
    me = processes.myself()
    assert processes.alive(me.pid, me.started) and not processes.alive(me.pid, me.started - 10)
    assert processes.ProcessId.from_tag(me.tag()) == processes.ProcessId(me.host, me.pid, round(me.started, 3))


def test_sweep_ends_the_runs_whose_process_is_gone(tmp_path: Path) -> None:
    mlflow = store(tmp_path)
    experiment = mlflow.create_experiment("e", artifact_location=contract.embedded_artifact_location(tmp_path, "e"))
    gone, me = dead_process(), processes.myself()

    def parent(process: str) -> str:
        tags = {contract.TAG_ROLE: contract.ROLE_PARENT, contract.TAG_GRID: "g", tracking.TAG_PROCESS: process}
        return mlflow.create_run(experiment, tags=tags).info.run_id

    def train(parent_id: str, point: str, attempt: int) -> str:
        tags = {contract.TAG_ROLE: contract.ROLE_TRAIN, contract.TAG_GRID: "g", contract.TAG_POINT: point,
                contract.TAG_ATTEMPT: str(attempt), "mlflow.parentRunId": parent_id}
        return mlflow.create_run(experiment, tags=tags).info.run_id

    dead_parent, live_parent = parent(gone.tag()), parent(me.tag())
    other_host = parent(processes.ProcessId("elsewhere", gone.pid, gone.started).tag())
    dead_train = train(dead_parent, "train-1", 1)
    live_train = train(live_parent, "train-2", 1)
    gone_train = train(live_parent, "train-3", 1)
    state = GridState(grid="g", submission=live_parent, experiment="e", jobs={
        "train-2": job("train-2", submission=live_parent), "train-3": job("train-3", submission=live_parent)})
    state.jobs["train-2"].attempts.append(Attempt(1, "x.log", time.time(), pid=me.pid, process_started=me.started))
    state.jobs["train-3"].attempts.append(Attempt(1, "y.log", time.time(), pid=gone.pid, process_started=gone.started))
    save_state(tmp_path, state)

    closed = sweeping.sweep(mlflow, tmp_path)

    assert sorted(c.run_id for c in closed) == sorted([dead_parent, dead_train, gone_train])
    every = (dead_parent, live_parent, other_host, dead_train, live_train, gone_train)
    status = {run_id: mlflow.get_run(run_id) for run_id in every}
    assert [status[r].info.status for r in (dead_parent, dead_train, gone_train)] == ["FAILED"] * 3
    assert [status[r].info.status for r in (live_parent, other_host, live_train)] == ["RUNNING"] * 3
    assert f"controller process {gone.pid}" in status[dead_parent].data.tags[contract.TAG_CLOSED_BY]
    assert f"job process {gone.pid}" in status[gone_train].data.tags[contract.TAG_CLOSED_BY]
    assert sweeping.sweep(mlflow, tmp_path) == []  # nothing twice


def test_one_controller_per_grid(tmp_path: Path) -> None:
    with sweeping.GridLock(tmp_path, "g"):
        with pytest.raises(InvalidInput, match="being run by another controller"):
            with sweeping.GridLock(tmp_path, "g"):
                pass
    with sweeping.GridLock(tmp_path, "g"):  # released
        pass


@pytest.mark.parametrize("name", ["..", ".", "a/b", "../../etc", ""])
def test_a_name_is_never_used_as_a_path_unchecked(tmp_path: Path, name: str) -> None:
    with pytest.raises(InvalidInput):
        safe_child(tmp_path, name)
    with pytest.raises(InvalidInput):
        grid_dir(tmp_path, name)


def test_experiment_names_stay_under_the_artifact_root(tmp_path: Path) -> None:
    for name in ("../../outside", "/etc", "a b/c", "..", "ok-name.v2"):
        location = contract.artifact_location(contract.embedded_tracking_uri(tmp_path), name)
        assert location is not None
        assert location.startswith((tmp_path / ".tp4" / "mlartifacts").resolve().as_uri() + "/"), (name, location)
        assert "/.." not in location.removeprefix("file://")
    assert contract.artifact_folder("ok-name.v2") == "ok-name.v2"
    assert contract.artifact_folder("../x") != contract.artifact_folder("/x")


def test_a_deleted_experiment_is_named_with_both_ways_out(tmp_path: Path) -> None:
    mlflow = store(tmp_path)
    location = contract.embedded_artifact_location(tmp_path, "gone")
    experiment = mlflow.create_experiment("gone", artifact_location=location)
    run = mlflow.create_run(experiment).info.run_id
    mlflow.set_terminated(run)
    assert tracking.missing_runs(mlflow, {"p": run}) == []
    mlflow.delete_experiment(experiment)
    with pytest.raises(InvalidInput) as error:
        tracking.check_experiment(mlflow, name="gone")
    message = str(error.value)
    assert "'gone'" in message and f"mlflow experiments restore --experiment-id {experiment}" in message
    assert "another `experiment:`" in message
    assert tracking.missing_runs(mlflow, {"p": run, "q": "0" * 32}) == ["p", "q"]


def test_a_moved_or_copied_store_points_into_its_own_folder(tmp_path: Path) -> None:
    first = tmp_path / "first"
    mlflow = store(first)
    experiment = mlflow.create_experiment("e", artifact_location=contract.embedded_artifact_location(first, "e"))
    run = mlflow.create_run(experiment).info.run_id
    (tmp_path / "model.txt").write_text("weights")
    mlflow.log_artifact(run, str(tmp_path / "model.txt"), "model")
    mlflow.set_terminated(run)
    mlflow.create_registered_model("m")
    mlflow.create_model_version("m", f"runs:/{run}/model", run_id=run)
    mlflow.create_model_version("m", mlflow.get_run(run).info.artifact_uri + "/model", run_id=run)
    copy = tmp_path / "copy"
    shutil.copytree(first, copy)
    before = (first / ".tp4" / "mlflow.db").read_bytes()

    note = relocating.relocate(copy)

    assert note and str(first) in note and str(copy) in note
    assert relocating.relocate(copy) is None  # done once
    assert (first / ".tp4" / "mlflow.db").read_bytes() == before  # the original is untouched
    moved = store(copy)
    own = (copy / ".tp4" / "mlartifacts").resolve().as_uri()
    assert moved.get_experiment(experiment).artifact_location.startswith(own)
    assert moved.get_run(run).info.artifact_uri.startswith(own)
    assert all(v.source.startswith(("runs:/", own)) for v in moved.search_model_versions("name = 'm'"))
    (first / ".tp4" / "mlartifacts").rename(tmp_path / "gone")  # nothing is read from the first folder
    downloaded = moved.download_artifacts(run, "model/model.txt", str(tmp_path))
    assert Path(downloaded).read_text() == "weights"
