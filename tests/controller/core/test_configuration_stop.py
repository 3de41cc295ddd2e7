"""A failure retrying cannot fix stops there: a grid whose points all fail with exit code 2 starts no
more points and skips its finalizer; a finalizer that exits 2 is not retried."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from contract.grid import load_grid
from controller.core.reconciling import (
    CONFIGURATION_ERROR,
    CONFIGURATION_FAILURE,
    Create,
    GridPhase,
    JobPhase,
    ObservedJob,
    reconcile,
)
from controller.core.rendering import RenderSettings, render_finalize_job
from controller.local.kubelet import LocalKubelet, fail_job_exit_codes
from controller.local.state import JobRecord
from tests.controller.core.test_reconciling import desired, job, observed
from tests.helpers.gridfiles import MD5, lab_grid, write_grid


def config_failed(name: str) -> ObservedJob:
    return ObservedJob(name=name, grid="lab", spec_hash="hash" + name.split("-")[-1], submission="run2",
                       phase=JobPhase.FAILED, failure_reason=CONFIGURATION_FAILURE)


def test_two_configuration_failures_start_nothing_more_and_skip_the_finalizer() -> None:
    plan = reconcile(desired(), observed(config_failed("train-0"), config_failed("train-1")))
    assert plan.actions == [] and plan.phase is GridPhase.FAILED and plan.reason == CONFIGURATION_ERROR
    assert plan.counts.skipped == 2 and plan.message.startswith(f"{CONFIGURATION_ERROR}: train-0, train-1 failed")
    assert plan.message.endswith("finalizer skipped")


def test_running_points_end_first_and_one_success_lifts_the_stop() -> None:
    running = reconcile(desired(), observed(config_failed("train-0"), config_failed("train-1"),
                                            job("train-2", JobPhase.RUNNING)))
    assert running.actions == [] and running.phase is GridPhase.RUNNING and CONFIGURATION_ERROR in running.message
    lifted = reconcile(desired(), observed(config_failed("train-0"), config_failed("train-1"),
                                           job("train-2", JobPhase.SUCCEEDED)))
    assert lifted.actions == [Create("train-3")] and lifted.reason == ""


def test_one_failure_or_other_failures_do_not_stop_a_grid() -> None:
    assert reconcile(desired(), observed(config_failed("train-0"))).creates == [Create("train-1"), Create("train-2")]
    crashed = observed(job("train-0", JobPhase.FAILED), job("train-1", JobPhase.FAILED))  # e.g. out of memory
    assert reconcile(desired(), crashed).creates == [Create("train-2"), Create("train-3")]


def test_a_one_point_grid_stops_on_its_configuration_error() -> None:
    plan = reconcile(desired(points=desired().points[:1]), observed(config_failed("train-0")))
    assert plan.phase is GridPhase.FAILED and plan.actions == [] and plan.reason == CONFIGURATION_ERROR


def test_the_finalizer_job_fails_at_once_on_exit_code_2(tmp_path: Path) -> None:
    grid = load_grid(write_grid(tmp_path, lab_grid()))
    manifest = render_finalize_job(grid, RenderSettings(tracking_uri="http://mlflow:5000", backend="local"),
                                   dataset_md5=MD5)
    assert fail_job_exit_codes(manifest) == {2} and manifest["spec"]["backoffLimit"] >= 1
    container = manifest["spec"]["template"]["spec"]["containers"][0]
    container["command"], container["args"] = [sys.executable, "-c", "raise SystemExit(2)"], []
    record = JobRecord(name="finalize-lab", grid="lab", spec_hash="f", submission="s", role="finalize",
                       manifest=manifest)
    kubelet = LocalKubelet(root=tmp_path, logs_dir=tmp_path / "logs", threads_per_job=1)
    kubelet.start(record)
    end = time.time() + 30
    while not record.phase.terminal and time.time() < end:
        kubelet.poll(record)
        time.sleep(0.05)
    assert record.phase is JobPhase.FAILED and len(record.attempts) == 1
    assert record.observed().failure_reason == CONFIGURATION_FAILURE
