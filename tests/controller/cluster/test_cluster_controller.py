"""The reconcile loop drives Grids against the fake API server (real HTTP) and a real MLflow store:
Jobs up to parallelism, retries by the grid's rules, one finalizer, the final status, restarts,
resubmissions, name clashes, invalid specs, deleted grids."""

from __future__ import annotations

import time
from datetime import UTC
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

import contract
from controller.cluster import rbac
from controller.cluster.commands import upsert_grid
from controller.cluster.jobs import LABEL_SUBMISSION
from controller.cluster.kube import GRIDS
from controller.cluster.resource import grid_object
from tests.helpers.cluster_harness import (
    RunningController,
    connect,
    grid_status,
    job_names,
    run_job,
    small_spec,
    wait_until,
)
from tests.helpers.fake_kube import RESOURCES, FakeKube

POINTS = ["train-0.005-1", "train-0.005-2", "train-0.01-1", "train-0.01-2"]


def submit(kube: FakeKube, spec: dict, *, asked: str = "2026-01-01T00:00:00Z") -> dict:
    return connect(kube).create(GRIDS, grid_object(spec=spec, namespace="default", submitted_at=asked))


def job_posts(kube: FakeKube) -> list[str]:
    return [r.body["metadata"]["name"] for r in kube.sent("POST", "/jobs")]


VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


def verbs_used(kube: FakeKube) -> dict[tuple[str, str], set[str]]:
    """{(API group, resource): verbs} of every request the controller sent, as RBAC names them."""
    used: dict[tuple[str, str], set[str]] = {}
    for request in kube.requests:
        plural, _, name, sub = kube.route(request.path)
        group = RESOURCES[plural][0].rpartition("/")[0]
        verb = VERBS.get(request.method) or ("get" if name else "watch" if request.query.get("watch") else "list")
        used.setdefault((group, f"{plural}/{sub}" if sub else plural), set()).add(verb)
    return used


def assert_within_rbac(kube: FakeKube) -> None:
    """The chart's Role (controller/rbac.py) allows every call the controller made."""
    allowed = rbac.rules_by_resource()
    for key, verbs in verbs_used(kube).items():
        assert verbs <= allowed.get(key, frozenset()), (
            f"{key}: {sorted(verbs - allowed.get(key, frozenset()))} not in the Role"
        )


def test_a_grid_runs_to_its_decision(kube: FakeKube, uri: str, mlflow: MlflowClient, tmp_path: Path) -> None:
    with RunningController(kube, uri=uri, root=tmp_path):
        submit(kube, small_spec())
        wait_until(lambda: len(job_names(kube)) == 2, what="2 Jobs (parallelism)")
        status = wait_until(lambda: grid_status(kube).get("counts") and grid_status(kube), what="a status")
        parent = mlflow.get_run(status["parentRunId"])
        assert parent.data.tags[contract.TAG_BACKEND] == "kubernetes" and parent.info.status == "RUNNING"
        assert status["phase"] == "Pending" and status["counts"]["pending"] == 4
        first, second = job_names(kube)
        for job in kube.all("jobs"):
            assert job["metadata"]["ownerReferences"][0]["uid"] == kube.find("grids", "lab")["metadata"]["uid"]
            assert job["metadata"]["labels"][LABEL_SUBMISSION] == status["parentRunId"]
            assert job["spec"]["ttlSecondsAfterFinished"] == 3600

        kube.start_job(first)
        wait_until(lambda: grid_status(kube).get("phase") == "Running" and grid_status(kube)["counts"]["running"] == 1)
        kube.expire_watches()  # the controller lists again and goes on
        run_job(kube, MlflowClient(uri), first, value=0.20)
        wait_until(lambda: len(job_names(kube)) == 3, what="a third Job once one ended")
        wait_until(lambda: grid_status(kube).get("best", {}).get("point") == first, what="the best point so far")

        kube.start_job(second)
        kube.finish_job(second, succeeded=False, retry=True)  # an attempt failed: the Job retries (backoffLimit)
        kube.finish_job(second, succeeded=False, reason="BackoffLimitExceeded")  # and gives up
        wait_until(lambda: len(job_names(kube)) == 4, what="the fourth Job")
        for name in sorted(set(POINTS) - {first, second}):
            run_job(kube, mlflow, name, value={"train-0.01-1": 0.35, "train-0.01-2": 0.10}[name])
        wait_until(lambda: "finalize-lab" in job_names(kube), what="the finalizer")
        finalizing = wait_until(lambda: grid_status(kube).get("phase") == "Finalizing" and grid_status(kube))
        assert finalizing["counts"] == {"total": 4, "pending": 0, "running": 0, "succeeded": 3, "failed": 1}
        assert finalizing["best"]["point"] == "train-0.01-1" and finalizing["best"]["value"] == pytest.approx(0.35)

        run_job(kube, mlflow, "finalize-lab")
        final = wait_until(
            lambda: grid_status(kube).get("phase") == "Succeeded" and grid_status(kube), what="Succeeded"
        )
        patches = len(kube.sent("PATCH"))
        time.sleep(1.5)  # three resyncs: nothing more to do, nothing written
        assert len(kube.sent("PATCH")) == patches and len(job_posts(kube)) == 5
        for name in job_names(kube):  # ttlSecondsAfterFinished: the TTL controller deletes the finished Jobs
            kube.remove("jobs", "default", name)
        time.sleep(1.5)
        assert len(job_posts(kube)) == 5 and grid_status(kube) == final  # a finished submission is final

    assert sorted(job_posts(kube)) == sorted(POINTS + ["finalize-lab"])  # each Job once, the finalizer once
    assert final["decision"] == "YES" and final["report"] == {
        "runId": final["parentRunId"],
        "artifactPath": "report/decision.md",
    }
    assert final["observedGeneration"] == 1 and final["completionTime"] >= final["startTime"]
    assert {c["type"]: (c["status"], c["reason"]) for c in final["conditions"]} == {
        "Valid": ("True", "SpecValid"),
        "NamesAvailable": ("True", "NamesFree"),
        "Progressing": ("False", "Succeeded"),
    }
    assert mlflow.get_run(final["parentRunId"]).info.status == "FINISHED"
    assert kube.refusals == []  # every Job and Event valid for Kubernetes 1.35, every status valid for the CRD
    reasons = [e["reason"] for e in kube.all("events")]
    assert {"Submitted", "Running", "FinalizerCreated", "Succeeded"} <= set(reasons)
    assert all(p.path.endswith("/grids/lab/status") for p in kube.sent("PATCH"))
    kube.requests = [
        r for r in kube.requests if not (r.method == "POST" and r.path.endswith("/grids"))
    ]  # the test's own
    assert_within_rbac(kube)


def test_a_restarted_controller_creates_nothing_twice(
    kube: FakeKube, uri: str, mlflow: MlflowClient, tmp_path: Path
) -> None:
    with RunningController(kube, uri=uri, root=tmp_path):
        submit(kube, small_spec())
        wait_until(lambda: len(job_names(kube)) == 2)
        parent = wait_until(lambda: grid_status(kube).get("parentRunId"))
    running = job_names(kube)
    run_job(kube, mlflow, running[0])  # while no controller runs
    with RunningController(kube, uri=uri, root=tmp_path):
        wait_until(lambda: len(job_names(kube)) == 3, what="the restarted controller's next Job")
        time.sleep(1.0)
        assert len(job_posts(kube)) == 3 and grid_status(kube)["parentRunId"] == parent
    posts = job_posts(kube)
    assert len(set(posts)) == 3 and set(posts[:2]) == set(running)  # the restart created only the next point


def test_resubmissions_retry_failed_points_and_an_unchanged_finished_grid_does_nothing(
    kube: FakeKube, uri: str, mlflow: MlflowClient, tmp_path: Path
) -> None:
    from datetime import datetime

    api = connect(kube)
    clock = lambda: datetime.now(UTC)  # noqa: E731
    with RunningController(kube, uri=uri, root=tmp_path):
        upsert_grid(api, spec=small_spec(job={"name_template": "train-{lr0}-{seed}"}), now=clock)  # every point at once
        wait_until(lambda: len(job_names(kube)) == 4)
        first = wait_until(lambda: grid_status(kube).get("parentRunId"))
        for name in POINTS:
            run_job(kube, mlflow, name, succeed=name != "train-0.01-2")
        wait_until(lambda: "finalize-lab" in job_names(kube))
        run_job(kube, mlflow, "finalize-lab", verdict="NO")
        wait_until(lambda: grid_status(kube).get("phase") == "Succeeded")

        upsert_grid(api, spec=small_spec(job={"name_template": "train-{lr0}-{seed}"}), now=clock)  # the same spec again
        second = wait_until(lambda: grid_status(kube).get("parentRunId") != first and grid_status(kube)["parentRunId"])
        retried = wait_until(
            lambda: (
                (j := kube.find("jobs", "train-0.01-2")) and j["metadata"]["labels"][LABEL_SUBMISSION] == second and j
            )
        )
        assert [r.path.rsplit("/", 1)[1] for r in kube.sent("DELETE")] == ["train-0.01-2"]
        assert kube.sent("DELETE")[0].body["propagationPolicy"] == "Background"
        assert kube.find("jobs", "train-0.005-1")["metadata"]["labels"][LABEL_SUBMISSION] == first  # kept
        run_job(kube, mlflow, retried["metadata"]["name"], value=0.5)
        wait_until(
            lambda: (j := kube.find("jobs", "finalize-lab")) and j["metadata"]["labels"][LABEL_SUBMISSION] == second,
            what="the finalizer of the new submission",
        )
        run_job(kube, mlflow, "finalize-lab")
        done = wait_until(
            lambda: (
                grid_status(kube).get("phase") == "Succeeded"
                and grid_status(kube).get("decision") == "YES"
                and grid_status(kube)
            )
        )
        assert done["best"]["point"] == "train-0.01-2" and mlflow.get_run(first).info.status == "FINISHED"

        posts = len(job_posts(kube))
        upsert_grid(api, spec=small_spec(job={"name_template": "train-{lr0}-{seed}"}), now=clock)  # unchanged and done
        up = wait_until(
            lambda: grid_status(kube)["startTime"] > done["startTime"] and grid_status(kube), what="up to date"
        )
        time.sleep(1.0)
        assert up["parentRunId"] == second and up["phase"] == "Succeeded" and len(job_posts(kube)) == posts
        assert next(c for c in up["conditions"] if c["type"] == "Progressing")["reason"] == "UpToDate"
        runs = mlflow.search_runs(
            [mlflow.get_experiment_by_name("lab-exp").experiment_id],
            filter_string=f"tags.`{contract.TAG_ROLE}` = 'parent'",
        )
        assert len(runs) == 2

        upsert_grid(
            api, spec=small_spec(job={"name_template": "train-{lr0}-{seed}"}, gates={"min_objective": 0.3}), now=clock
        )
        wait_until(
            lambda: (
                (j := kube.find("jobs", "finalize-lab"))
                and j["metadata"]["labels"][LABEL_SUBMISSION] not in (first, second)
            ),
            what="a changed gate re-runs the finalizer only",
        )
        assert len(job_posts(kube)) == posts + 1 and kube.find("grids", "lab")["metadata"]["generation"] == 2
    assert kube.refusals == []


def test_a_name_used_by_another_grid_is_refused_with_a_condition(kube: FakeKube, uri: str, tmp_path: Path) -> None:
    spec = small_spec(axes={"lr0": [0.01]}, job={"name_template": "train-{lr0}"})
    with RunningController(kube, uri=uri, root=tmp_path) as running:
        submit(kube, spec)
        wait_until(lambda: job_names(kube) == ["train-0.01"])
        submit(kube, {**spec, "name": "copy", "experiment": "copy-exp"})
        status = wait_until(lambda: grid_status(kube, "copy").get("conditions") and grid_status(kube, "copy"))
        clash = next(c for c in status["conditions"] if c["type"] == "NamesAvailable")
        assert (clash["status"], clash["reason"]) == ("False", "NameConflict")
        assert clash["message"] == "job train-0.01 belongs to grid lab"
        wait_until(lambda: any(e["reason"] == "NameConflict" and e["type"] == "Warning" for e in kube.all("events")))
        assert (
            job_names(kube) == ["train-0.01"]
            and kube.find("jobs", "train-0.01")["metadata"]["labels"]["tp4.io/grid"] == "lab"
        )
        assert status["phase"] == "Pending" and status["counts"]["pending"] == 1  # held: no finalizer without the point
        running.api.delete(GRIDS, "lab")  # the name is free again: the grid goes on
        wait_until(
            lambda: (j := kube.find("jobs", "train-0.01")) and j["metadata"]["labels"]["tp4.io/grid"] == "copy",
            what="the freed name taken by the waiting grid",
        )
        freed = wait_until(
            lambda: grid_status(kube, "copy")["conditions"][1]["status"] == "True" and grid_status(kube, "copy")
        )
        assert freed["conditions"][1]["reason"] == "NamesFree"


def test_an_invalid_spec_fails_the_grid_with_every_problem(kube: FakeKube, uri: str, tmp_path: Path) -> None:
    with RunningController(kube, uri=uri, root=tmp_path):
        submit(kube, small_spec(axes={"imgsz": [300, 320], "lr0": [-1]}))  # the CRD cannot tell; the parser can
        status = wait_until(lambda: grid_status(kube).get("phase") and grid_status(kube))
        assert status["phase"] == "Failed" and job_names(kube) == []
        valid = next(c for c in status["conditions"] if c["type"] == "Valid")
        assert (
            valid["reason"] == "InvalidSpec"
            and "axes.imgsz[0]" in valid["message"]
            and "axes.lr0[0]" in valid["message"]
        )


def test_deleting_a_grid_deletes_its_jobs_and_kills_its_parent_run(
    kube: FakeKube, uri: str, mlflow: MlflowClient, tmp_path: Path
) -> None:
    with RunningController(kube, uri=uri, root=tmp_path) as running:
        submit(kube, small_spec())
        wait_until(lambda: len(job_names(kube)) == 2)
        parent = wait_until(lambda: grid_status(kube).get("parentRunId"))
        running.api.delete(GRIDS, "lab")
        wait_until(lambda: job_names(kube) == [], what="the garbage collector")  # owner references
        wait_until(lambda: mlflow.get_run(parent).info.status == "KILLED", what="the parent run KILLED")


def test_a_name_held_by_a_job_tp4_did_not_create_is_a_conflict(kube: FakeKube, uri: str, tmp_path: Path) -> None:
    from tests.controller.cluster.test_kube_adapter import job as foreign_job

    stranger = foreign_job("train-0.01")
    del stranger["metadata"]["labels"]["tp4.io/grid"]  # no tp4 label: the controller's watch does not see it
    kube.put_object("jobs", stranger)
    with RunningController(kube, uri=uri, root=tmp_path):
        submit(kube, small_spec(axes={"lr0": [0.01]}, job={"name_template": "train-{lr0}"}))
        status = wait_until(
            lambda: (s := grid_status(kube)).get("conditions") and s["conditions"][1]["status"] == "False" and s
        )
        assert status["conditions"][1]["message"] == "job train-0.01 belongs to grid (a Job that tp4 did not create)"
        assert status["phase"] == "Pending" and "finalize-lab" not in job_names(kube)
    kube.requests = [r for r in kube.requests if not (r.method == "POST" and r.path.endswith("/grids"))]
    assert ("batch", "jobs") in verbs_used(kube) and "get" in verbs_used(kube)[("batch", "jobs")]
    assert_within_rbac(kube)
