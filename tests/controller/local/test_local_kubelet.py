"""The local kubelet's Job rules, on real processes: retries, podFailurePolicy, deadlines, stop."""

from __future__ import annotations

import time
from pathlib import Path

from controller.core.reconciling import JobPhase
from controller.local.kubelet import LocalKubelet, fail_job_exit_codes, process_command, process_env
from controller.local.state import GridState, JobRecord, load_state, save_state


def manifest(code: str, *, backoff: int = 1, deadline: int = 60) -> dict:
    return {
        "spec": {
            "backoffLimit": backoff,
            "activeDeadlineSeconds": deadline,
            "podFailurePolicy": {
                "rules": [
                    {"action": "FailJob", "onExitCodes": {"containerName": "train", "operator": "In", "values": [2]}}
                ]
            },
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "train",
                            "command": ["python", "-c", code],
                            "args": [],
                            "env": [
                                {"name": "GREETING", "value": "hello"},
                                {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
                            ],
                        }
                    ]
                }
            },
        }
    }


def wait_for(job: JobRecord, kubelet: LocalKubelet, *, timeout: float = 120) -> JobRecord:
    """The Job started (unless it was) and run to its end, or `timeout` seconds."""
    if not job.attempts:
        kubelet.start(job)
    end = time.monotonic() + timeout
    while not job.phase.terminal and time.monotonic() < end:
        kubelet.poll(job)
        time.sleep(0.05)
    return job


def run(tmp_path: Path, job: JobRecord, *, timeout: float = 30) -> JobRecord:
    kubelet = LocalKubelet(root=tmp_path, logs_dir=tmp_path / "logs", threads_per_job=1)
    return wait_for(job, kubelet, timeout=timeout)


def new_job(code: str, **kwargs) -> JobRecord:
    return JobRecord(
        name="train-1", grid="g", spec_hash="h", submission="s", role="train", manifest=manifest(code, **kwargs)
    )


def test_success_with_env_and_one_log_per_attempt(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TOKEN", "from-the-controller-environment")
    code = "import os; print(os.environ['GREETING'], os.environ['TOKEN'], os.environ['TP4_ATTEMPT'])"
    job = run(tmp_path, new_job(code))
    assert job.phase is JobPhase.SUCCEEDED and len(job.attempts) == 1
    assert Path(job.attempts[0].log).read_text().strip() == "hello from-the-controller-environment 1"


def test_failures_are_retried_up_to_backoff_limit(tmp_path: Path) -> None:
    job = run(tmp_path, new_job("import sys; sys.exit(3)", backoff=2))
    assert job.phase is JobPhase.FAILED and len(job.attempts) == 3
    assert [a.exit_code for a in job.attempts] == [3, 3, 3] and job.attempts[-1].reason == "BackoffLimitExceeded"
    assert len(list((tmp_path / "logs").glob("train-1.*.log"))) == 3


def test_retry_can_succeed(tmp_path: Path) -> None:
    marker = tmp_path / "once"
    code = (
        f"import pathlib, sys; p = pathlib.Path({str(marker)!r}); ok = p.exists(); p.touch(); sys.exit(0 if ok else 1)"
    )
    job = run(tmp_path, new_job(code, backoff=1))
    assert job.phase is JobPhase.SUCCEEDED and [a.exit_code for a in job.attempts] == [1, 0]


def test_configuration_errors_fail_at_once(tmp_path: Path) -> None:
    job = run(tmp_path, new_job("import sys; sys.exit(2)", backoff=5))
    assert job.phase is JobPhase.FAILED and len(job.attempts) == 1 and job.attempts[0].reason == "PodFailurePolicy"


def test_active_deadline_kills_the_job(tmp_path: Path) -> None:
    job = run(tmp_path, new_job("import time; time.sleep(60)", deadline=1, backoff=3))
    assert job.phase is JobPhase.FAILED and job.attempts[-1].reason == "DeadlineExceeded" and len(job.attempts) == 1


def test_stop_terminates_the_process_group(tmp_path: Path) -> None:
    code = (
        "import signal, sys, time; signal.signal(signal.SIGTERM, lambda *a: sys.exit(143)); "
        "print('up', flush=True); time.sleep(60)"
    )
    job = new_job(code)
    kubelet = LocalKubelet(root=tmp_path, logs_dir=tmp_path / "logs", threads_per_job=1)
    kubelet.start(job)
    log, deadline = Path(job.attempts[-1].log), time.monotonic() + 60
    while "up" not in (log.read_text() if log.exists() else "") and time.monotonic() < deadline:
        time.sleep(0.1)  # its SIGTERM handler is installed once it printed "up" (a loaded machine: seconds)
    stopped = kubelet.stop_all({job.name: job}, reason="Interrupted")
    assert stopped == ["train-1"] and job.phase is JobPhase.FAILED
    assert job.attempts[-1].exit_code == 143 and job.attempts[-1].reason == "Interrupted"


def test_state_round_trips(tmp_path: Path) -> None:
    job = run(tmp_path, new_job("pass"))
    save_state(tmp_path, GridState(grid="g", submission="s", jobs={job.name: job}))
    loaded = load_state(tmp_path, "g")
    assert loaded.jobs["train-1"].phase is JobPhase.SUCCEEDED and loaded.jobs["train-1"].attempts == job.attempts


def test_manifest_helpers() -> None:
    m = manifest("pass")
    assert fail_job_exit_codes(m) == {2}
    assert process_command(m)[1:] == ["-c", "pass"]
    env = process_env(m, base={"PATH": "/bin"}, overrides={"X": "1"})
    assert env == {"PATH": "/bin", "GREETING": "hello", "X": "1"}


def test_what_the_kubelet_sets_in_place_of_the_manifest_is_said_in_the_log(tmp_path: Path) -> None:
    """The manifest is the cluster's: its CPU request's torch threads and the container's /tmp settings folder
    are replaced by this machine's (local_settings), and the attempt's log says which, never silently."""
    job = new_job("import os; print('threads', os.environ['TP4_TORCH_THREADS'], os.environ['YOLO_CONFIG_DIR'])")
    env = job.manifest["spec"]["template"]["spec"]["containers"][0]["env"]
    env += [{"name": "TP4_TORCH_THREADS", "value": "7"}, {"name": "YOLO_CONFIG_DIR", "value": "/tmp/ultralytics"}]
    done = run(tmp_path, job)
    assert done.phase is JobPhase.SUCCEEDED
    log = Path(done.attempts[-1].log).read_text().splitlines()
    ours = str(tmp_path / ".tp4" / "ultralytics")
    assert log[0] == (f"tp4 local kubelet: TP4_TORCH_THREADS=7 -> 1, YOLO_CONFIG_DIR=/tmp/ultralytics -> {ours} "
                      "(controller/local/kubelet.py: local_settings)")
    assert f"threads 1 {ours}" in log
