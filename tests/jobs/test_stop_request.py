"""Early stopping reaching the train Job through MLflow: the controller tags a RUNNING train run
contract.TAG_STOP_REQUESTED; the Job ends training after the epoch it reads it at, logs its final metrics and
artifacts, tags the run contract.TAG_STOPPED_EARLY and ends it FINISHED.

Real components only: a SQLite MLflow store in a temporary folder, `python -m jobs.train` as a process.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import contract
from jobs.common import tracking
from jobs.train import training
from jobs.train.job import MlflowRecorder
from tests.jobs.test_train_job import BACKBONE, TINY_ARGS, job_env, start_job, tiny_dvc_project

EXPERIMENT = "tp4-stop"
# An epoch of the tiny training takes about half a second here: the test sets the tag within one epoch of
# seeing epoch 1, so the Job stops after epoch 2; the epochs beyond 3 are slack for a loaded machine (they are
# never trained when the stop works).
EPOCHS = 5


@pytest.fixture
def store(tmp_path: Path):
    client = tracking.make_client(uri=f"sqlite:///{tmp_path}/mlflow.db")
    return client, tracking.ensure_experiment(client=client, name=EXPERIMENT)


def test_the_stop_check_reads_the_runs_tag(store) -> None:
    client, experiment_id = store
    run_id = client.create_run(experiment_id).info.run_id
    recorder = MlflowRecorder(client=client, run_id=run_id)
    assert training.stop_requested(recorder=recorder) is False
    client.set_tag(run_id, contract.TAG_STOP_REQUESTED, "1")
    assert training.stop_requested(recorder=recorder) is True


def test_a_failed_read_of_the_tag_keeps_training(store, capsys: pytest.CaptureFixture) -> None:
    client, _ = store
    recorder = MlflowRecorder(client=client, run_id="0" * 32)  # no such run: MLflow's get_run raises
    with pytest.raises(Exception, match="0" * 32):
        recorder.stop_requested()
    assert training.stop_requested(recorder=recorder) is False
    assert "asking again next epoch" in capsys.readouterr().err


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_dvc_project(tmp_path_factory.mktemp("stop-project"))


def wait_for_epoch_one(*, client, job, timeout: float = 240) -> str:
    """The run's id once its first epoch's metrics are logged (polled often: the next epoch is short)."""
    deadline = time.monotonic() + timeout
    run_id = None
    while time.monotonic() < deadline:
        assert job.poll() is None, "the job ended before its first epoch was seen"
        if run_id is None:
            found = client.get_experiment_by_name(EXPERIMENT)
            runs = client.search_runs([found.experiment_id]) if found else []
            run_id = runs[0].info.run_id if runs else None
        if run_id is not None:
            run = client.get_run(run_id)
            if f"{contract.EPOCH_PREFIX}mAP50-95" in run.data.metrics:
                assert run.info.status == "RUNNING"
                return run_id
        time.sleep(0.05)
    raise AssertionError("no epoch logged in time")


@pytest.mark.slow
def test_a_stop_request_ends_the_training_cleanly(project: Path, tmp_path: Path) -> None:
    env = job_env(project)
    client = tracking.make_client(uri=env[contract.ENV_TRACKING_URI])
    argv = ["--model", str(BACKBONE), "--exp-name", EXPERIMENT, *TINY_ARGS, "--epochs", str(EPOCHS)]
    job = start_job(project, argv, env)
    try:
        run_id = wait_for_epoch_one(client=client, job=job)
        client.set_tag(run_id, contract.TAG_STOP_REQUESTED, "1")  # as the controller does, deciding at epoch 1
        code = job.wait(timeout=300)
    finally:
        if job.poll() is None:
            job.kill()
    log = (project / "job.log").read_text(errors="replace")
    assert code == contract.EXIT_OK, log[-3000:]
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    stopped = int(run.data.tags[contract.TAG_STOPPED_EARLY])
    assert 1 <= stopped < EPOCHS, log[-3000:]
    metrics = run.data.metrics
    assert metrics[contract.METRIC_EPOCHS] == stopped
    assert [m.step for m in client.get_metric_history(run_id, f"{contract.EPOCH_PREFIX}mAP50-95")] == list(
        range(1, stopped + 1))
    for name in contract.FINAL_METRICS:
        assert 0.0 <= metrics[name] <= 1.0
    for name in contract.TRAIN_RUN_METRICS:
        assert name in metrics
    weights = {a.path for a in client.list_artifacts(run_id, contract.ARTIFACT_WEIGHTS_DIR)}
    assert weights == {"weights/best.pt", "weights/last.pt"}
    csv = Path(client.download_artifacts(run_id, contract.ARTIFACT_RESULTS_CSV, str(tmp_path)))
    assert len(csv.read_text().splitlines()) == 1 + stopped  # ultralytics' end-of-training work was done
    plots = {a.path for a in client.list_artifacts(run_id, contract.ARTIFACT_PLOTS_DIR)}
    assert f"{contract.ARTIFACT_PLOTS_DIR}/results.png" in plots
