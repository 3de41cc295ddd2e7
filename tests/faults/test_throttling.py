"""The throttling drill (issue 23): an S3 store that answers `503 SlowDown` to object downloads for a
while is a transient fault, retried inside the Job, never "a configuration error every point would hit".

The production-like stack (devstack: MLflow on Postgres, moto's S3 with IAM), the dataset pushed to its
DVC remote, and a project without the dataset, as a fresh pod has it; the Jobs reach S3 through
`ThrottlingProxy`. `AWS_MAX_ATTEMPTS=1` (botocore's own variable) turns botocore's retries off, so
that s3fs's (5 tries, about 2 s) and the Job's (`jobs.common.retrying`) are what absorb the refusals:
the drill stays short, and the Job's retry is what is tested (without it, 40 refusals fail the pull).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import contract
from devstack import Stack
from devstack.stack import ADMIN
from jobs.common import tracking
from tests.faults.throttling import ThrottlingProxy
from tests.helpers.stackfixtures import (
    DATASET,
    TINY_TRAIN,
    controller,
    fresh_project,
    push_copy,
    s3_object_key,
    stack_env,
    train_job,
)

pytestmark = pytest.mark.slow
STACK_AUTH = False
REFUSALS = 40  # more than one pull's tries absorb (s3fs: 5 per read), fewer than the Job's 5 tries do
FEWER_RETRIES = {"AWS_MAX_ATTEMPTS": "1"}


def throttled_env(stack: Stack, proxy: ThrottlingProxy, **extra: str) -> dict[str, str]:
    return stack_env(stack, AWS_ENDPOINT_URL=proxy.endpoint, **FEWER_RETRIES, **extra)


def test_a_grid_pulled_through_a_throttled_store_completes_each_point_trained_once(
        stack: Stack, published: Path, tmp_path: Path) -> None:
    project = fresh_project(published, tmp_path / "project", train={**TINY_TRAIN, "imgsz": 160})
    assert stack.s3 is not None
    with ThrottlingProxy(stack.s3.endpoint, refusals=REFUSALS) as proxy:
        done = controller(project, "submit-grid", "grid.yaml", "--parallelism", "2",
                          env=throttled_env(stack, proxy))
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert len(proxy.refused) == REFUSALS  # the store did throttle the pull, every refusal was met
    assert "ConfigurationError" not in output
    logs = {log.name: log.read_text() for log in (project / contract.EMBEDDED_DIR / "grids" / "tiny" / "logs").glob(
        "*.log") if not log.name.startswith("warm-start")}
    attempts = sorted(logs)
    assert all(name.endswith(".1.log") for name in attempts), attempts  # no Job needed a second attempt
    pulled = [text for text in logs.values() if "is missing: dvc pull" in text]
    assert len(pulled) == 1, attempts  # one pull per project folder; the other Job verified its bytes
    assert "Please reduce your request rate." in pulled[0] and "transient fault" in pulled[0], pulled[0]
    mlflow = tracking.make_client(uri=stack.tracking_uri)
    experiment = mlflow.get_experiment_by_name("tiny-stack")
    assert experiment is not None
    runs = mlflow.search_runs([experiment.experiment_id], filter_string=f"tags.`{contract.TAG_ROLE}` = 'train'")
    assert sorted(run.data.tags[contract.TAG_POINT] for run in runs) == ["train-0.005", "train-0.01"]
    assert {run.info.status for run in runs} == {"FINISHED"}
    state = json.loads((project / contract.EMBEDDED_DIR / "grids" / "tiny" / "state.json").read_text())
    assert state["phase"] == "Succeeded", state


def test_a_store_throttling_past_every_retry_is_exit_1_not_bad_input(
        stack: Stack, published: Path, tmp_path: Path) -> None:
    project = fresh_project(published, tmp_path / "project")
    assert stack.s3 is not None
    with ThrottlingProxy(stack.s3.endpoint, refusals=10_000) as proxy:
        done = train_job(project, "--exp-name", "faults-throttled", env=throttled_env(stack, proxy))
    assert done.returncode == contract.EXIT_FAILED, done.stdout + done.stderr
    assert "failed 5 times with a transient fault" in done.stderr
    assert "Please reduce your request rate." in done.stderr
    assert len(re.findall(r"; try \d of 5 in ", done.stderr)) == 4  # 4 retries after the first try
    assert not (project / DATASET).exists()


def test_a_corrupt_listing_in_the_remote_is_bad_input_at_once(
        stack: Stack, published: Path, tmp_path: Path) -> None:
    url = push_copy(published, stack=stack, prefix="corrupt-listing")
    pointer = (published / f"{DATASET}.dvc").read_text()
    md5 = next(line.split()[-1] for line in pointer.splitlines() if "md5:" in line)
    assert stack.s3 is not None
    stack.s3.client(principal=ADMIN).put_object(Bucket=stack.config.dvc_bucket, Body=b"[{not json",
                                                Key=s3_object_key(md5, prefix="corrupt-listing"))
    project = fresh_project(published, tmp_path / "project")
    done = train_job(project, "--exp-name", "faults-corrupt-listing", env=stack_env(stack, TP4_DVC_REMOTE_URL=url))
    assert done.returncode == contract.EXIT_BAD_INPUT, done.stdout + done.stderr
    assert "is corrupted" in done.stderr and "transient fault" not in done.stderr
