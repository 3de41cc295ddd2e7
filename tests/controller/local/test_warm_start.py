"""The local kubelet's warm start (controller.local.warm, jobs.warm_start), on real processes:
an attempt forked by the server is the Job's own process (its environment, working directory, log,
session, exit code, stop), Jobs it cannot serve start cold, a server that ends loses nothing that runs,
and a warm training gives the metrics a cold one gives."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

import contract
from controller.core.reconciling import JobPhase
from controller.local import warm
from controller.local.kubelet import LocalKubelet
from controller.local.state import JobRecord
from devstack.processes import free_port
from tests.controller.local.test_local_kubelet import wait_for

WARM_LINE = "tp4: warm start"

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="warm start serves Linux only")


def manifest(args: list[str], *, env: dict[str, str] | None = None, backoff: int = 0,
             module: str = "jobs.train") -> dict:
    return {"spec": {
        "backoffLimit": backoff, "activeDeadlineSeconds": 600,
        "podFailurePolicy": {"rules": [{"action": "FailJob", "onExitCodes": {
            "containerName": "train", "operator": "In", "values": [contract.EXIT_BAD_INPUT]}}]},
        "template": {"spec": {"containers": [{
            "name": "train", "command": ["python", "-m", module], "args": args,
            "env": [{"name": k, "value": v} for k, v in (env or {}).items()]}]}}}}


def new_job(name: str, args: list[str], **kwargs) -> JobRecord:
    return JobRecord(name=name, grid="g", spec_hash="h", submission="s", role="train",
                     manifest=manifest(args, **kwargs))


def unreachable_env(timeout_s: int) -> dict[str, str]:
    """A train Job that waits `timeout_s` for a tracking server nobody runs, then exits 1."""
    return {contract.ENV_TRACKING_URI: f"http://127.0.0.1:{free_port()}", "TP4_CONNECT_TIMEOUT_S": str(timeout_s)}


def log_of(job: JobRecord, attempt: int = -1) -> str:
    return Path(job.attempts[attempt].log).read_text(errors="replace")


def wait_for_text(job: JobRecord, text: str, *, timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while text not in log_of(job) and time.monotonic() < end:
        time.sleep(0.1)
    assert text in log_of(job), log_of(job)


@pytest.fixture(scope="module")
def kubelet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKubelet]:
    root = tmp_path_factory.mktemp("warm")
    kubelet = LocalKubelet(root=root, logs_dir=root / "logs", threads_per_job=1)
    yield kubelet
    kubelet.close()


def test_a_warm_attempt_is_the_jobs_own_process(kubelet: LocalKubelet) -> None:
    env = unreachable_env(timeout_s=5)
    job = new_job("train-env", ["--epochs", "1"], env=env)
    kubelet.start(job)
    attempt = job.attempts[-1]
    wait_for_text(job, WARM_LINE)  # the child prints it once it leads its own session
    process = psutil.Process(attempt.pid)
    assert kubelet.warm.server and process.ppid() == kubelet.warm.server.pid  # forked by the server, not us
    assert os.getsid(attempt.pid) == attempt.pid  # it leads a session (and process group) of its own
    assert Path(process.cwd()) == kubelet.root
    wait_for(job, kubelet)
    log = log_of(job)
    assert log.startswith(WARM_LINE), log
    assert env[contract.ENV_TRACKING_URI] in log  # the Job's environment, not the server's
    # tracking server still down after TP4_CONNECT_TIMEOUT_S: exit 1 (retryable), read from the server
    assert job.phase is JobPhase.FAILED and attempt.exit_code == contract.EXIT_FAILED
    assert attempt.reason == "BackoffLimitExceeded"
    assert not Path(kubelet.root, contract.EMBEDDED_DIR, "tmp", Path(attempt.log).stem).exists()


def test_bad_input_exits_2_and_fails_the_job_at_once(kubelet: LocalKubelet) -> None:
    job = wait_for(new_job("train-bad", ["--epochs", "three"], backoff=3), kubelet)
    assert job.phase is JobPhase.FAILED and len(job.attempts) == 1
    assert job.attempts[0].exit_code == contract.EXIT_BAD_INPUT and job.attempts[0].reason == "PodFailurePolicy"
    assert log_of(job).startswith(WARM_LINE) and "--epochs: invalid int value: 'three'" in log_of(job)


def test_stop_reaches_a_warm_attempt_and_its_group(kubelet: LocalKubelet) -> None:
    job = new_job("train-stop", [], env=unreachable_env(timeout_s=300))
    kubelet.start(job)
    wait_for_text(job, "127.0.0.1")  # waiting for the tracking server: its signal handlers are in place
    pid = job.attempts[-1].pid
    assert os.getpgid(pid) == pid and "jobs.train" in " ".join(psutil.Process(pid).cmdline())  # its own title
    assert kubelet.stop_all({job.name: job}, reason="Interrupted") == [job.name]
    assert job.phase is JobPhase.FAILED and job.attempts[-1].reason == "Interrupted"
    assert job.attempts[-1].exit_code == 128 + signal.SIGTERM  # jobs.common.termination's exit code
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_a_warm_attempt_killed_by_a_signal_exits_minus_the_signal(kubelet: LocalKubelet) -> None:
    job = new_job("train-killed", [], env=unreachable_env(timeout_s=300))
    kubelet.start(job)
    wait_for_text(job, "127.0.0.1")
    os.killpg(job.attempts[-1].pid, signal.SIGKILL)
    wait_for(job, kubelet, timeout=30)
    assert job.phase is JobPhase.FAILED and job.attempts[-1].exit_code == -signal.SIGKILL


def test_jobs_the_server_cannot_serve_start_cold(kubelet: LocalKubelet, monkeypatch: pytest.MonkeyPatch) -> None:
    # a variable read at import time that differs from the server's: cold
    other = new_job("train-import-env", ["--epochs", "x"], env={"YOLO_VERBOSE": "False"})
    # any other command: cold
    script = new_job("train-script", [])
    script.manifest["spec"]["template"]["spec"]["containers"][0]["command"] = ["python", "-c", "print('cold')"]
    for job in (other, script):
        wait_for(job, kubelet)
        assert not log_of(job).startswith(WARM_LINE), log_of(job)
    assert other.attempts[0].exit_code == contract.EXIT_BAD_INPUT and log_of(script).strip() == "cold"
    # turned off in the controller's environment: cold
    monkeypatch.setenv(contract.ENV_WARM_START, "0")
    off = wait_for(new_job("train-off", ["--epochs", "x"]), kubelet)
    assert not log_of(off).startswith(WARM_LINE) and off.attempts[0].exit_code == contract.EXIT_BAD_INPUT


def test_attempts_outlive_their_server_and_keep_their_exit_codes(tmp_path: Path) -> None:
    kubelet = LocalKubelet(root=tmp_path, logs_dir=tmp_path / "logs", threads_per_job=1)
    try:
        stopped = new_job("train-orphan", [], env=unreachable_env(timeout_s=300))
        killed = new_job("train-orphan-killed", [], env=unreachable_env(timeout_s=300))
        for job in (stopped, killed):
            kubelet.start(job)
            wait_for_text(job, "127.0.0.1")
        server = kubelet.warm.server
        assert server is not None
        server.kill()
        server.wait()
        time.sleep(0.5)
        assert not kubelet.poll(stopped) and stopped.phase is JobPhase.RUNNING  # still runs, watched by its pid
        # one ends by itself (SIGTERM: jobs.common.termination exits 143): its exit file tells
        os.killpg(stopped.attempts[-1].pid, signal.SIGTERM)
        wait_for(stopped, kubelet, timeout=30)
        assert stopped.phase is JobPhase.FAILED and stopped.attempts[-1].exit_code == 128 + signal.SIGTERM
        # one is killed: no exit status anywhere, a failure (retried within backoffLimit, here 0)
        os.killpg(killed.attempts[-1].pid, signal.SIGKILL)
        wait_for(killed, kubelet, timeout=30)
        assert killed.phase is JobPhase.FAILED and killed.attempts[-1].exit_code == warm.LOST_EXIT_CODE
        # later Jobs start cold
        again = wait_for(new_job("train-after", ["--epochs", "x"]), kubelet)
        assert not log_of(again).startswith(WARM_LINE) and again.attempts[0].exit_code == contract.EXIT_BAD_INPUT
    finally:
        kubelet.close()


def test_a_finalize_job_runs_warm(kubelet: LocalKubelet) -> None:
    job = wait_for(new_job("finalize-g", [], module="jobs.finalize", backoff=0), kubelet)
    # no parent run id: bad input, exit 2, from the forked finalizer
    assert log_of(job).startswith(WARM_LINE) and job.attempts[0].exit_code == contract.EXIT_BAD_INPUT
    assert "--parent-run-id" in log_of(job)


def test_server_refuses_modules_it_does_not_serve() -> None:
    assert warm.job_module([sys.executable, "-m", "jobs.train", "--epochs", "1"]) == "jobs.train"
    assert warm.job_module([sys.executable, "-m", "jobs.finalize"]) == "jobs.finalize"
    assert warm.job_module([sys.executable, "-m", "jobs.trainer"]) is None
    assert warm.job_module(["/usr/bin/python3", "-m", "jobs.train"]) is None  # not this interpreter
    assert warm.job_module([sys.executable, "-c", "jobs.train"]) is None
    assert warm.import_time_env({"YOLO_OFFLINE": "1", "OMP_NUM_THREADS": "2", "TP4_POINT": "p",
                                 "MLFLOW_TRACKING_URI": "x"}) == {"YOLO_OFFLINE": "1", "OMP_NUM_THREADS": "2"}
    assert warm.enabled({contract.ENV_WARM_START: "0"}) is False
    assert warm.enabled({contract.ENV_WARM_START: " Off"}) is False


@pytest.mark.slow
def test_a_warm_training_gives_the_metrics_of_a_cold_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Same point, same seed, one thread: the forked Job trains exactly as `python -m jobs.train` does."""
    from mlflow.tracking import MlflowClient

    from tests.helpers.paths import BACKBONE
    from tests.jobs.test_train_job import tiny_dvc_project

    project = tiny_dvc_project(tmp_path)
    uri = f"sqlite:///{project}/mlflow.db"
    args = ["--data", "data/tiny/data.yaml", "--model", str(BACKBONE), "--epochs", "1", "--imgsz", "160",
            "--batch", "4", "--seed", "1", "--arg", "nbs=4", "--arg", "warmup_epochs=0", "--arg", "workers=0"]
    kubelet = LocalKubelet(root=project, logs_dir=project / "logs", threads_per_job=1)
    try:
        warm_job = wait_for(new_job("warm", args, env={contract.ENV_TRACKING_URI: uri, contract.ENV_POINT: "warm"}),
                            kubelet, timeout=300)
        monkeypatch.setenv(contract.ENV_WARM_START, "0")
        cold_job = wait_for(new_job("cold", args, env={contract.ENV_TRACKING_URI: uri, contract.ENV_POINT: "cold"}),
                            kubelet, timeout=300)
    finally:
        kubelet.close()
    assert log_of(warm_job).startswith(WARM_LINE) and not log_of(cold_job).startswith(WARM_LINE)
    assert warm_job.phase is cold_job.phase is JobPhase.SUCCEEDED, log_of(warm_job)[-2000:] + log_of(cold_job)[-2000:]
    client = MlflowClient(tracking_uri=uri)
    runs = {r.data.tags[contract.TAG_POINT]: r for r in client.search_runs(
        [e.experiment_id for e in client.search_experiments()])}
    assert runs["warm"].info.status == runs["cold"].info.status == "FINISHED"
    final = {point: {name: runs[point].data.metrics[name] for name in contract.FINAL_METRICS} for point in runs}
    assert final["warm"] == final["cold"]
    for point in ("warm", "cold"):  # every output the lab asks for, both ways
        artifacts = {a.path for a in client.list_artifacts(runs[point].info.run_id)}
        assert {"weights", "results.csv"} <= artifacts, artifacts
