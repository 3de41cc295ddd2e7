"""Fault drills of the cluster controller against the fake API server (real HTTP) and a real MLflow store:
a Grid deleted while the controller is down, two controllers at once, a lost Lease, the health endpoint,
the log lines."""

from __future__ import annotations

import io
import json
import logging
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

import contract
from controller.cluster import logs
from controller.cluster.health import Health, serve
from controller.cluster.kube import GRIDS
from controller.cluster.leader import LeaderElection, micro_time
from tests.controller.cluster.test_cluster_controller import submit
from tests.helpers.cluster_harness import (
    RunningController,
    connect,
    grid_status,
    job_names,
    run_job,
    small_spec,
    wait_until,
)
from tests.helpers.fake_kube import FakeKube


def running_train_run(mlflow: MlflowClient, *, parent: str, point: str) -> str:
    """A train run whose pod was killed mid-epoch: it never ended itself."""
    experiment = mlflow.get_run(parent).info.experiment_id
    return mlflow.create_run(
        experiment,
        tags={
            "mlflow.parentRunId": parent,
            contract.TAG_GRID: "lab",
            contract.TAG_POINT: point,
            contract.TAG_ROLE: contract.ROLE_TRAIN,
        },
    ).info.run_id


def test_drill_a_grid_deleted_while_the_controller_is_down_has_its_runs_closed_at_the_next_start(
    kube: FakeKube, uri: str, mlflow: MlflowClient, tmp_path: Path
) -> None:
    with RunningController(kube, uri=uri, root=tmp_path, name="controller-a"):
        submit(kube, small_spec())
        wait_until(lambda: len(job_names(kube)) == 2)
        parent = wait_until(lambda: grid_status(kube).get("parentRunId"))
    assert mlflow.get_run(parent).data.tags[contract.TAG_NAMESPACE] == "default"
    child = running_train_run(mlflow, parent=parent, point=job_names(kube)[0])
    experiment = mlflow.get_run(parent).info.experiment_id
    elsewhere = mlflow.create_run(
        experiment,
        tags={  # the same grid name in another namespace: not ours
            contract.TAG_ROLE: contract.ROLE_PARENT,
            contract.TAG_BACKEND: "kubernetes",
            contract.TAG_GRID: "lab",
            contract.TAG_NAMESPACE: "other",
        },
    ).info.run_id

    connect(kube).delete(GRIDS, "lab")  # nobody watches: no event will ever tell
    assert job_names(kube) == [] and mlflow.get_run(parent).info.status == "RUNNING"

    with RunningController(kube, uri=uri, root=tmp_path, name="controller-b") as restarted:
        wait_until(lambda: mlflow.get_run(parent).info.status == "KILLED", what="the orphaned parent run closed")
        wait_until(lambda: restarted.controller.swept == [parent], what="the sweep's report")
    closed = mlflow.get_run(parent)
    assert (
        closed.info.end_time
        and "grid lab no longer exists in namespace default" in closed.data.tags[contract.TAG_CLOSED_BY]
    )
    assert mlflow.get_run(child).info.status == "KILLED"
    assert mlflow.get_run(child).data.tags[contract.TAG_CLOSED_BY] == closed.data.tags[contract.TAG_CLOSED_BY]
    assert mlflow.get_run(elsewhere).info.status == "RUNNING"


def test_drill_a_grid_deleted_while_the_controller_runs_closes_its_runs_too(
    kube: FakeKube, uri: str, mlflow: MlflowClient, tmp_path: Path
) -> None:
    with RunningController(kube, uri=uri, root=tmp_path) as running:
        submit(kube, small_spec())
        wait_until(lambda: len(job_names(kube)) == 2)
        parent = wait_until(lambda: grid_status(kube).get("parentRunId"))
        child = running_train_run(mlflow, parent=parent, point=job_names(kube)[0])
        running.api.delete(GRIDS, "lab")
        wait_until(lambda: mlflow.get_run(child).info.status == "KILLED", what="the train run KILLED")
    assert mlflow.get_run(parent).info.status == "KILLED"
    assert mlflow.get_run(parent).data.tags[contract.TAG_CLOSED_BY] == "grid lab deleted"


def test_drill_two_controllers_only_one_acts_and_the_other_takes_over_when_it_stops(
    kube: FakeKube, uri: str, mlflow: MlflowClient, tmp_path: Path
) -> None:
    first = RunningController(kube, uri=uri, root=tmp_path, name="controller-a").__enter__()
    wait_until(lambda: first.election.leading.is_set(), what="the first controller leading")
    second = RunningController(kube, uri=uri, root=tmp_path, name="controller-b").__enter__()
    try:
        submit(kube, small_spec())
        wait_until(lambda: len(job_names(kube)) == 2)
        time.sleep(1.5)  # several resyncs of the leader, several lease attempts of the other
        assert not second.election.leading.is_set() and second.health.ready() == (False, "standby")
        assert first.health.ready() == (True, "leading") and second.health.live()[0]
        assert {r.path.split("/")[-2] for r in second.requests()} == {"leases"}  # it only asked for the Lease
        assert {r.method for r in second.requests()} == {"GET"}
        assert len(first.requests("POST", "/jobs")) == 2 and second.controller.reconciles == 0

        first.stop()  # releases the Lease: the other takes over at once, and goes on with the grid
        assert first.exit_code == 0
        wait_until(lambda: second.election.leading.is_set(), what="the second controller leading")
        for name in job_names(kube):
            run_job(kube, mlflow, name)
        wait_until(lambda: len(job_names(kube)) == 4, what="the next points, by the new leader")
        assert len(second.requests("POST", "/jobs")) == 2 and len(first.requests("POST", "/jobs")) == 2
        assert sorted(r.body["metadata"]["name"] for r in kube.sent("POST", "/jobs")) == job_names(kube)  # no duplicate
        lease = kube.find("leases", "tp4-controller")
        assert lease is not None and lease["spec"]["holderIdentity"] == "controller-b"
        assert lease["spec"]["leaseTransitions"] == 1
    finally:
        second.stop()
        if first.thread.is_alive():
            first.stop()


def test_drill_a_leader_that_loses_its_lease_stops_acting(kube: FakeKube, uri: str, tmp_path: Path) -> None:
    with RunningController(kube, uri=uri, root=tmp_path, name="controller-a") as running:
        wait_until(lambda: running.health.ready()[0], what="leading")

        def taken(lease: dict) -> None:  # another holder, as after a network partition
            lease["spec"].update(holderIdentity="intruder", renewTime=micro_time(time.time()), leaseDurationSeconds=60)

        kube._change("leases", "tp4-controller", taken)
        wait_until(lambda: not running.thread.is_alive(), seconds=10, what="the controller stopping")
        assert running.exit_code == 1 and running.election.lost.is_set()
        submit(kube, small_spec())
        time.sleep(0.5)
        assert running.requests("POST", "/jobs") == [] and job_names(kube) == []
    assert (kube.find("leases", "tp4-controller") or {})["spec"]["holderIdentity"] == "intruder"  # not released


def test_a_lease_held_but_not_renewed_is_taken_over_after_its_duration(kube: FakeKube) -> None:
    api = connect(kube)
    now = [0.0]
    first = LeaderElection(api, holder="a", lease_seconds=5, renew_seconds=3, retry_seconds=1, clock=lambda: now[0])
    second = LeaderElection(api, holder="b", lease_seconds=5, renew_seconds=3, retry_seconds=1, clock=lambda: now[0])
    assert first.try_acquire_or_renew() and not second.try_acquire_or_renew()
    now[0] = 4.0
    assert not second.try_acquire_or_renew()  # within the duration, as b observed it
    now[0] = 5.5
    assert second.try_acquire_or_renew()  # a never renewed: b takes it
    assert not first.try_acquire_or_renew()  # a sees b's new record and waits in turn
    with pytest.raises(ValueError):
        LeaderElection(api, lease_seconds=2, renew_seconds=3, retry_seconds=1)


def test_the_health_endpoint_answers_the_probes() -> None:
    health = Health(stale_seconds=0.5)
    server = serve(health, port=0, host="127.0.0.1")
    port = server.server_address[1]

    def get(path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
                return answer.status, answer.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    try:
        health.beat("standby")
        assert get("/healthz")[0] == 200 and get("/readyz") == (503, "not ok: standby\n")
        health.beat("leading")
        assert get("/readyz") == (200, "ok: leading\n")
        time.sleep(0.6)  # the loop stuck: no tick for stale_seconds
        status, text = get("/healthz")
        assert status == 503 and text.startswith("not ok: leading, last tick")
    finally:
        server.shutdown()
        server.server_close()


def test_log_lines_are_json_with_the_grid_and_point_as_fields() -> None:
    stream = io.StringIO()
    handler = logs.configure(stream=stream)
    try:
        logging.getLogger("controller.cluster.reconciler").info("job created", extra={"grid": "lab", "point": "p-1"})
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            logging.getLogger("controller.cluster.loop").warning(
                "reconcile failed", exc_info=True, extra={"grid": "lab"}
            )
    finally:
        logging.getLogger("controller").removeHandler(handler)
        logging.getLogger("kubernetes").removeHandler(handler)
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert {k: first[k] for k in ("level", "logger", "event", "grid", "point")} == {
        "level": "INFO",
        "logger": "controller.cluster.reconciler",
        "event": "job created",
        "grid": "lab",
        "point": "p-1",
    }
    assert second["level"] == "WARNING" and "RuntimeError: boom" in second["traceback"]
