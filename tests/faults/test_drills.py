"""Fault drills on the local executor, each asserting the final states in MLflow and in the executor's
state: a training killed with -9, the controller killed with -9 then resubmitted, SIGHUP to
submit-grid, the MLflow server stopping mid-run (back in time, and not back in time).

One point, 1 epoch, imgsz 160: each drill trains one to three times on 8 images."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

import contract
from tests.faults import drills
from tests.faults.drills import POINT

pytestmark = pytest.mark.slow


def no_run_left_running(found: list) -> None:
    assert found and all(r.info.status != "RUNNING" for r in found), drills.statuses(found)


def test_kill_9_a_training_mid_epoch(dataset: tuple[Path, str], tmp_path: Path) -> None:
    folder = drills.new_project(dataset[0], tmp_path, dataset[1], name="kill-train")
    process = drills.start_controller(folder)
    mlflow, first, pid = drills.training_started(folder, "kill-train", process=process)
    drills.wait_for("epoch 1 to start", lambda: drills.in_first_epoch(folder, "kill-train"), every=0.05,
                    process=process)
    assert drills.alive(pid)
    os.kill(pid, signal.SIGKILL)
    assert process.wait(timeout=900) == 0, drills.output(folder)

    job = drills.state(folder, "kill-train").jobs[POINT]
    assert job.phase.value == "Succeeded" and [a.exit_code for a in job.attempts] == [-9, 0]
    trains = drills.runs(mlflow, "kill-train-e", contract.ROLE_TRAIN)
    assert drills.statuses(trains) == [("train", "1", "FAILED"), ("train", "2", "FINISHED")]
    assert trains[0].info.run_id == first.info.run_id
    assert f"job process {pid} exited with code -9" in trains[0].data.tags[contract.TAG_CLOSED_BY]
    parents = drills.runs(mlflow, "kill-train-e", contract.ROLE_PARENT)
    assert drills.statuses(parents) == [("parent", "", "FINISHED")]
    assert (folder / "reports" / "kill-train" / "decision.md").is_file()
    assert not any((folder / ".tp4" / "tmp").iterdir())  # the killed attempt's temporary files removed


def test_kill_9_the_controller_then_submit_again(dataset: tuple[Path, str], tmp_path: Path) -> None:
    # 10 epochs: the orphan must still train while the second controller starts (about 12 s here)
    folder = drills.new_project(dataset[0], tmp_path, dataset[1], name="kill-ctl", train={**drills.TRAIN, "epochs": 10})
    process = drills.start_controller(folder)
    mlflow, orphan_run, orphan = drills.training_started(folder, "kill-ctl", process=process)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert drills.alive(orphan)  # the training lives on in its own session

    again = drills.controller(folder, "submit-grid", "grid.yaml")

    assert again.returncode == 0, again.stdout + again.stderr
    assert f"{POINT} attempt 1 was left running by a controller that died: stopped (pid {orphan})" in again.stdout
    assert not drills.alive(orphan)
    found = drills.runs(mlflow, "kill-ctl-e")
    no_run_left_running(found)
    trains = drills.runs(mlflow, "kill-ctl-e", contract.ROLE_TRAIN)
    # KILLED by the job itself on the SIGTERM it got; FAILED by the sweep, had it needed SIGKILL
    assert trains[0].info.status in ("KILLED", "FAILED"), drills.statuses(trains)
    assert trains[1].info.status == "FINISHED", drills.statuses(trains)
    assert trains[0].info.run_id == orphan_run.info.run_id
    assert trains[0].info.end_time <= trains[1].info.start_time  # never two trainings of the point at once
    parents = drills.runs(mlflow, "kill-ctl-e", contract.ROLE_PARENT)
    assert [p.info.status for p in parents] == ["FAILED", "FINISHED"]
    assert "controller process" in parents[0].data.tags[contract.TAG_CLOSED_BY]
    job = drills.state(folder, "kill-ctl").jobs[POINT]
    assert job.phase.value == "Succeeded"
    logs = sorted((folder / ".tp4" / "grids" / "kill-ctl" / "logs").glob(f"{POINT}.*.log"))
    assert len(logs) == 2 and all(log.stat().st_size for log in logs)  # one per attempt and submission
    assert not any((folder / ".tp4" / "tmp").iterdir())


def test_sighup_stops_the_grid_as_sigterm_and_a_resubmission_starts_one_training(
        dataset: tuple[Path, str], tmp_path: Path) -> None:
    """Issue 10's closed terminal: the training lived on, the parent stayed RUNNING, a resubmission
    started a second training beside the first and overwrote <job>.1.log."""
    folder = drills.new_project(dataset[0], tmp_path, dataset[1], name="hangup")
    process = drills.start_controller(folder)
    mlflow, first, training = drills.training_started(folder, "hangup", process=process)
    process.send_signal(signal.SIGHUP)
    assert process.wait(timeout=120) == 130, drills.output(folder)

    assert not drills.alive(training)
    stopped = drills.runs(mlflow, "hangup-e")
    assert sorted(s for _, _, s in drills.statuses(stopped)) == ["KILLED", "KILLED"], drills.statuses(stopped)
    parent = next(r for r in stopped if r.data.tags[contract.TAG_ROLE] == contract.ROLE_PARENT)
    assert parent.data.tags[contract.TAG_CLOSED_BY] == "stopped by SIGHUP" and parent.info.end_time
    first_log = Path(drills.state(folder, "hangup").jobs[POINT].attempts[0].log)
    kept = first_log.read_text()
    assert first.info.run_id in kept

    again = drills.controller(folder, "submit-grid", "grid.yaml")

    assert again.returncode == 0, again.stdout + again.stderr
    assert "left running" not in again.stdout  # nothing was: SIGHUP stopped it
    no_run_left_running(drills.runs(mlflow, "hangup-e"))
    trains = drills.runs(mlflow, "hangup-e", contract.ROLE_TRAIN)
    assert [t.info.status for t in trains] == ["KILLED", "FINISHED"]
    assert first_log.read_text() == kept  # not overwritten
    second_log = Path(drills.state(folder, "hangup").jobs[POINT].attempts[0].log)
    assert second_log != first_log and trains[1].info.run_id in second_log.read_text()


@pytest.fixture
def server(tmp_path: Path):
    folder = tmp_path / "server"
    folder.mkdir()
    running = drills.PlainMlflowServer(folder)
    running.start()
    yield running
    running.stop()


def test_mlflow_server_stops_mid_run_and_comes_back(dataset: tuple[Path, str], tmp_path: Path,
                                                    server: drills.PlainMlflowServer) -> None:
    folder = drills.new_project(dataset[0], tmp_path / "project", dataset[1], name="blip")
    settings = {contract.ENV_TRACKING_URI: server.url, "TP4_CONNECT_TIMEOUT_S": "120"}
    process = drills.start_controller(folder, extra_env=settings)
    mlflow, _, _ = drills.training_started(folder, "blip", process=process, uri=server.url)
    server.stop()
    time.sleep(5)
    server.start()
    assert process.wait(timeout=900) == 0, drills.output(folder)

    found = drills.runs(mlflow, "blip-e")
    no_run_left_running(found)
    assert drills.runs(mlflow, "blip-e", contract.ROLE_PARENT)[0].info.status == "FINISHED"
    assert drills.runs(mlflow, "blip-e", contract.ROLE_TRAIN)[-1].info.status == "FINISHED"
    assert drills.state(folder, "blip").jobs[POINT].phase.value == "Succeeded"


def test_mlflow_server_gone_past_the_timeout_then_the_next_start_closes_the_runs(
        dataset: tuple[Path, str], tmp_path: Path, server: drills.PlainMlflowServer) -> None:
    folder = drills.new_project(dataset[0], tmp_path / "project", dataset[1], name="outage")
    settings = {contract.ENV_TRACKING_URI: server.url, "TP4_CONNECT_TIMEOUT_S": "5",
                "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}
    process = drills.start_controller(folder, extra_env=settings)
    mlflow, _, _ = drills.training_started(folder, "outage", process=process, uri=server.url)
    server.stop()
    code = process.wait(timeout=600)

    out = drills.output(folder)
    assert code != 0 and "Traceback" not in out, out
    job = drills.state(folder, "outage").jobs[POINT]
    assert job.phase.value == "Failed" and [a.exit_code for a in job.attempts] == [1, 1]
    log = Path(job.attempts[-1].log).read_text()  # the retry waited TP4_CONNECT_TIMEOUT_S, then said so
    assert "did not answer within 5 s" in log and server.url.split("//")[1] in log, log

    server.start()
    assert sorted(s for _, _, s in drills.statuses(drills.runs(mlflow, "outage-e"))) == ["RUNNING", "RUNNING"]
    again = drills.controller(folder, "submit-grid", "grid.yaml", extra_env=settings | {"TP4_CONNECT_TIMEOUT_S": "60"})
    assert again.returncode == 0, again.stdout + again.stderr
    assert "was RUNNING: ended FAILED" in again.stdout
    found = drills.runs(mlflow, "outage-e")
    no_run_left_running(found)
    closed = [r for r in found if contract.TAG_CLOSED_BY in r.data.tags]
    assert sorted(r.data.tags[contract.TAG_ROLE] for r in closed) == ["parent", "train"]
    assert all(r.info.status == "FAILED" for r in closed)
