"""The cluster's pure rules: Job status -> phase, observed state from Job JSON, the Grid's spec with the
chart's defaults, and a status whose size does not grow with the number of points."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import kubernetes_validate
import pytest
import yaml

import contract
from controller.cluster.jobs import LABEL_SUBMISSION, attempts, failure_reason, job_phase, observe, owned, slim
from controller.cluster.reconciler import desired_grid, start_time, submission_requested
from controller.cluster.resource import ANNOTATION_SUBMITTED_AT, grid_object, read_grid
from controller.cluster.settings import ClusterSettings, settings_from_env
from controller.cluster.status import Outcome, grid_status, invalid_status, merge_patch, up_to_date_status
from controller.cluster.view import grid_state, summary_lines
from controller.core.reconciling import Conflict, Counts, GridPhase, JobPhase, ObservedJob, Plan, reconcile
from controller.core.rendering import render_train_job
from controller.errors import InvalidInput
from tests.helpers.crd_schema import grid_validator
from tests.helpers.paths import REPO

MD5 = "c56034fdae7ce88dc7ada7678b985028.dir"
PARENT = "a" * 32
NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
SETTINGS = ClusterSettings(
    tracking_uri="http://127.0.0.1:5000",
    jobs_tracking_uri="http://tp4-mlflow:5000",
    trainer_image="registry.local/tp4-trainer:abc",
    job_ttl_seconds=600,
    gpu_image="registry.local/tp4-trainer:abc-cuda",
    gpu_node_selector={"gpu": "yes"},
    gpu_tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
)


def lab_spec(**changes: Any) -> dict[str, Any]:
    spec = yaml.safe_load((REPO / "grid.yaml").read_text())
    spec["dataset"]["md5"] = MD5
    for key, value in changes.items():
        spec[key] = value
    return spec


def lab_grid(spec: dict[str, Any] | None = None, **meta: Any) -> dict[str, Any]:
    obj = grid_object(spec=spec or lab_spec(), namespace="tp4", submitted_at="2026-03-01T11:00:00Z")
    obj["metadata"].update(uid="0b6f0e4e-0000-4000-8000-000000000001", generation=1, resourceVersion="7", **meta)
    return obj


def a_job(
    name: str = "train-320-0.005-1", *, status: dict[str, Any] | None = None, suspend: bool = False
) -> dict[str, Any]:
    cluster = read_grid(lab_grid(), settings=SETTINGS)
    point = next(p for p in cluster.points if p.name == name)
    manifest = render_train_job(cluster.spec, point, SETTINGS.render_settings(parent_run_id=PARENT), dataset_md5=MD5)
    job = owned(manifest, grid=lab_grid(), submission=PARENT)
    job["spec"]["suspend"] = suspend or job["spec"].get("suspend", False)
    job["metadata"].update(uid="1", resourceVersion="9", creationTimestamp="2026-03-01T11:00:01Z")
    job["status"] = status or {}
    return job


def condition(type_: str, reason: str = "") -> dict[str, Any]:
    return {"type": type_, "status": "True", "reason": reason, "lastTransitionTime": "2026-03-01T11:10:00Z"}


@pytest.mark.parametrize(
    ("status", "suspend", "phase"),
    [
        ({}, False, JobPhase.PENDING),  # just created
        ({"active": 1, "ready": 0, "startTime": "2026-03-01T11:00:02Z"}, False, JobPhase.PENDING),  # pulling the image
        ({"active": 1, "ready": 1}, False, JobPhase.RUNNING),
        ({"active": 1}, False, JobPhase.RUNNING),  # a cluster without the `ready` field
        ({}, True, JobPhase.PENDING),  # Kueue holds it
        ({"active": 0, "failed": 1, "ready": 0}, False, JobPhase.PENDING),  # between two attempts
        ({"failed": 1, "conditions": [condition("FailureTarget", "PodFailurePolicy")]}, False, JobPhase.PENDING),
        (
            {"succeeded": 1, "conditions": [condition("SuccessCriteriaMet"), condition("Complete")]},
            False,
            JobPhase.SUCCEEDED,
        ),
        (
            {"failed": 2, "conditions": [condition("FailureTarget"), condition("Failed", "BackoffLimitExceeded")]},
            False,
            JobPhase.FAILED,
        ),
        ({"failed": 1, "conditions": [condition("Failed", "DeadlineExceeded")]}, True, JobPhase.FAILED),
    ],
)
def test_job_phase_from_the_jobs_status(status: dict[str, Any], suspend: bool, phase: JobPhase) -> None:
    job = a_job(status=status, suspend=suspend)
    assert job_phase(job) is phase and job_phase(slim(job)) is phase  # the controller's mirror keeps slim(job)


def test_a_slim_job_is_what_the_reconciler_reads_of_it_and_small() -> None:
    job = a_job(status={"failed": 2, "active": 1, "ready": 0, "startTime": "2026-03-01T11:00:02Z",
                        "conditions": [condition("Failed", "PodFailurePolicy")]})
    kept = slim(job)
    for read in (failure_reason, attempts, job_phase):
        assert read(kept) == read(job)
    assert observe([kept], grid="tp4-lab", names=[]) == observe([job], grid="tp4-lab", names=[])
    assert kept["metadata"]["labels"] == {k: v for k, v in job["metadata"]["labels"].items() if k.startswith("tp4.io/")}
    assert kept["metadata"]["resourceVersion"] == "9"
    assert "template" not in kept.get("spec", {}) and len(json.dumps(kept)) < len(json.dumps(job)) / 5
    kept["metadata"]["labels"]["x"] = "y"
    kept["status"]["conditions"][0]["reason"] = "changed"
    assert "x" not in job["metadata"]["labels"] and failure_reason(job) == "PodFailurePolicy"  # nothing shared


def test_failure_reason_and_attempts() -> None:
    job = a_job(status={"failed": 2, "active": 0, "conditions": [condition("Failed", "PodFailurePolicy")]})
    assert failure_reason(job) == "PodFailurePolicy" and attempts(job) == 2
    assert failure_reason(a_job(status={"active": 1})) == "" and attempts(a_job()) == 0


def test_created_jobs_are_owned_labelled_and_valid_kubernetes_1_35() -> None:
    job = a_job()
    job.pop("status")
    for key in ("uid", "resourceVersion", "creationTimestamp"):
        job["metadata"].pop(key)
    kubernetes_validate.validate(job, "1.35.0", strict=True)
    assert job["metadata"]["labels"][LABEL_SUBMISSION] == PARENT
    assert job["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "tp4.io/v1alpha1",
            "kind": "Grid",
            "name": "tp4-lab",
            "uid": lab_grid()["metadata"]["uid"],
            "controller": True,
            "blockOwnerDeletion": False,
        }
    ]
    assert job["spec"]["ttlSecondsAfterFinished"] == 600 and "podFailurePolicy" in job["spec"]
    pod = job["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == "registry.local/tp4-trainer:abc"
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    assert env[contract.ENV_TRACKING_URI]["value"] == "http://tp4-mlflow:5000"
    assert env[contract.ENV_PARENT_RUN_ID]["value"] == PARENT


def test_observed_state_from_job_json() -> None:
    mine = a_job(status={"active": 1, "ready": 1})
    other = a_job("train-416-0.01-42", status={"succeeded": 1, "conditions": [condition("Complete")]})
    other["metadata"]["labels"][contract.LABEL_GRID] = "someone-else"
    unrelated = copy.deepcopy(other)
    unrelated["metadata"]["name"] = "train-9999"
    observed = observe([mine, other, unrelated], grid="tp4-lab", names=["train-320-0.005-1", "train-416-0.01-42"])
    assert observed == {
        "train-320-0.005-1": ObservedJob(
            name="train-320-0.005-1",
            grid="tp4-lab",
            spec_hash=mine["metadata"]["labels"][contract.LABEL_SPEC_HASH],
            submission=PARENT,
            phase=JobPhase.RUNNING,
        ),
        "train-416-0.01-42": ObservedJob(
            name="train-416-0.01-42",
            grid="someone-else",
            spec_hash=other["metadata"]["labels"][contract.LABEL_SPEC_HASH],
            submission=PARENT,
            phase=JobPhase.SUCCEEDED,
        ),
    }
    cluster = read_grid(lab_grid(), settings=SETTINGS)
    plan = reconcile(desired_grid(cluster, PARENT), observed)
    assert Conflict("train-416-0.01-42", "someone-else") in plan.conflicts


def test_the_grid_spec_gets_the_charts_defaults_only_where_it_is_silent() -> None:
    cluster = read_grid(lab_grid(), settings=SETTINGS)
    assert cluster.spec.job.image == SETTINGS.trainer_image and cluster.spec.job.ttl_seconds_after_finished == 600
    assert cluster.parallelism == len(cluster.points) == 8 and cluster.dataset_md5 == MD5
    spec = lab_spec(
        job={
            "image": "mine:1",
            "ttl_seconds_after_finished": 5,
            "parallelism": 2,
            "resources": {"cpu": "2", "memory": "8Gi", "gpu": 1},
        }
    )
    gpu = read_grid(lab_grid(spec), settings=SETTINGS)
    assert (gpu.spec.job.image, gpu.spec.job.ttl_seconds_after_finished, gpu.parallelism) == ("mine:1", 5, 2)
    assert gpu.spec.job.node_selector == {"gpu": "yes"} and gpu.spec.job.tolerations == SETTINGS.gpu_tolerations
    del spec["job"]["image"]
    assert read_grid(lab_grid(spec), settings=SETTINGS).spec.job.image == SETTINGS.gpu_image
    # the image is part of the spec hash: the chart's image changes every point
    other = read_grid(lab_grid(), settings=ClusterSettings(tracking_uri="http://x", jobs_tracking_uri="http://x"))
    assert other.points[0].spec_hash != cluster.points[0].spec_hash


def test_a_grid_resource_needs_its_dataset_pinned_and_its_own_name() -> None:
    spec = lab_spec()
    del spec["dataset"]["md5"]
    with pytest.raises(InvalidInput, match="dataset.md5: is required in a Grid resource"):
        read_grid(lab_grid(spec), settings=SETTINGS)
    renamed = lab_grid()
    renamed["metadata"]["name"] = "elsewhere"
    with pytest.raises(InvalidInput, match="must equal metadata.name"):
        read_grid(renamed, settings=SETTINGS)
    with pytest.raises(InvalidInput, match="axes.imgsz"):
        read_grid(lab_grid(lab_spec(axes={"imgsz": [300]})), settings=SETTINGS)


def plan_for(points: int, *, running: int, succeeded: int, failed: int) -> Plan:
    counts = Counts(
        total=points, succeeded=succeeded, failed=failed, running=running, waiting=points - running - succeeded - failed
    )
    return Plan(
        actions=[], phase=GridPhase.RUNNING, counts=counts, message=f"{succeeded + failed}/{points} points done"
    )


def status_for(points: int) -> dict[str, Any]:
    names = {f"train-{i}": f"h{i}" for i in range(points)}
    observed = {
        n: ObservedJob(name=n, grid="g", spec_hash=h, submission=PARENT, phase=JobPhase.RUNNING)
        for n, h in list(names.items())[:2]
    }
    conflicts = [Conflict(f"train-{i}", "other") for i in range(points // 2)]
    outcome = Outcome(
        generation=3,
        submission=PARENT,
        start_time="2026-03-01T11:00:00Z",
        conflicts=conflicts,
        best={"point": "train-1", "metric": "mAP50-95", "value": 0.25, "runId": "b" * 32},
    )
    return grid_status(
        {},
        plan=plan_for(points, running=2, succeeded=1, failed=points // 2),
        observed=observed,
        grid="g",
        points=names,
        outcome=outcome,
        now=NOW,
    )


def test_status_size_does_not_grow_with_the_number_of_points() -> None:
    sizes = [len(json.dumps(status_for(points))) for points in (100, 1000, 10000)]
    assert max(sizes) - min(sizes) <= 12 and max(sizes) < 2048  # a few more digits in the counts, nothing else
    large = status_for(8000)
    assert large["counts"]["total"] == 8000 and large["counts"]["failed"] == 4000
    conflicts = next(c for c in large["conditions"] if c["type"] == "NamesAvailable")
    assert conflicts["status"] == "False" and conflicts["message"].endswith("and 3995 more")
    errors = grid_validator()
    assert errors is not None and errors({**lab_grid(), "status": large}) == []


def test_status_phase_conditions_and_transition_times() -> None:
    first = status_for(8)
    assert first["phase"] == "Running" and first["observedGeneration"] == 3
    nothing_started = grid_status(
        {},
        plan=plan_for(8, running=2, succeeded=0, failed=0),
        observed={},
        grid="g",
        points={},
        outcome=Outcome(generation=1, submission=PARENT, start_time=""),
        now=NOW,
    )
    assert nothing_started["phase"] == "Pending" and nothing_started["counts"]["pending"] == 8
    later = grid_status(
        first,
        plan=plan_for(8, running=2, succeeded=1, failed=4),
        observed={},
        grid="g",
        points={},
        outcome=Outcome(generation=3, submission=PARENT, start_time=""),
        now=NOW + timedelta(hours=1),
    )
    times = {c["type"]: c["lastTransitionTime"] for c in later["conditions"]}
    assert times["Progressing"] == "2026-03-01T12:00:00Z"  # still True: unchanged
    assert times["NamesAvailable"] == "2026-03-01T13:00:00Z"  # flipped to True
    done = Plan(
        actions=[], phase=GridPhase.SUCCEEDED, counts=Counts(total=8, succeeded=8), message="decision report written"
    )
    final = grid_status(
        later,
        plan=done,
        observed={},
        grid="g",
        points={},
        now=NOW,
        outcome=Outcome(
            generation=3,
            submission=PARENT,
            start_time="",
            decision="YES",
            report={"runId": PARENT, "artifactPath": "report/decision.md"},
        ),
    )
    assert final["completionTime"] == "2026-03-01T12:00:00Z" and final["decision"] == "YES"
    progressing = next(c for c in final["conditions"] if c["type"] == "Progressing")
    assert (progressing["status"], progressing["reason"]) == ("False", "Succeeded")
    invalid = invalid_status(
        final, generation=4, message="grid/g: axes.imgsz[0]: must be a positive multiple of 32", now=NOW
    )
    assert invalid["phase"] == "Failed" and invalid["conditions"][0]["reason"] == "InvalidSpec"
    assert grid_validator()({**lab_grid(), "status": final}) == []  # type: ignore[misc]


def test_merge_patch_deletes_what_is_gone_and_nothing_when_unchanged() -> None:
    old = {
        "phase": "Succeeded",
        "best": {"point": "a", "value": 1.0, "runId": "r"},
        "decision": "YES",
        "conditions": [1],
    }
    new = {"phase": "Pending", "best": {"point": "b", "value": 1.0}, "conditions": [1]}
    assert merge_patch(old, new) == {"phase": "Pending", "best": {"point": "b", "runId": None}, "decision": None}
    assert merge_patch(new, copy.deepcopy(new)) == {}


def test_a_submission_is_requested_by_a_new_grid_a_new_spec_or_a_later_annotation() -> None:
    grid = lab_grid()
    assert submission_requested(grid)
    grid["status"] = {"parentRunId": PARENT, "observedGeneration": 1, "startTime": "2026-03-01T11:00:00Z"}
    assert not submission_requested(grid)
    assert submission_requested({**grid, "metadata": {**grid["metadata"], "generation": 2}})
    grid["metadata"]["annotations"][ANNOTATION_SUBMITTED_AT] = "2026-03-01T11:00:01Z"
    assert submission_requested(grid)
    # an asker whose clock runs ahead: the submission starts "when asked", so one request starts one submission
    assert start_time(grid, NOW - timedelta(hours=2)) == "2026-03-01T11:00:01Z"
    assert start_time(grid, NOW) == "2026-03-01T12:00:00Z"
    up = up_to_date_status(grid["status"], generation=1, start_time=start_time(grid, NOW), now=NOW)
    assert not submission_requested({**grid, "status": up}) and up["phase"] == "Succeeded"


def test_the_grid_object_validates_against_the_crd() -> None:
    errors = grid_validator()
    assert errors is not None
    assert errors(lab_grid()) == []
    wrong = lab_grid()
    wrong["spec"]["job"]["parallelism"] = 0
    assert any("job.parallelism" in e for e in errors(wrong))


def test_the_view_of_a_cluster_grid() -> None:
    grid = lab_grid()
    grid["status"] = status_for(8)
    jobs = [
        a_job(
            status={
                "failed": 2,
                "conditions": [condition("Failed", "BackoffLimitExceeded")],
                "startTime": "2026-03-01T11:00:02Z",
            }
        )
    ]
    state = grid_state(grid, jobs, metrics={"train-320-0.005-1": {"mAP50-95": 0.1}})
    job = state.jobs["train-320-0.005-1"]
    assert job.phase is JobPhase.FAILED and len(job.attempts) == 2 and job.attempts[-1].reason == "BackoffLimitExceeded"
    assert job.finished is not None and job.started is not None and job.metrics == {"mAP50-95": 0.1}
    assert "job train-0 belongs to grid other" in state.message
    lines = summary_lines(grid)
    assert lines[1] == "points: 1 succeeded, 4 failed, 2 running, 1 pending of 8"
    assert lines[2].startswith("best so far: train-1 mAP50-95=0.2500")


def test_settings_from_the_charts_configmap_variables() -> None:
    env = {
        "MLFLOW_TRACKING_URI": "http://tp4-mlflow:5000",
        "AWS_ENDPOINT_URL": "http://tp4-minio:9000",
        "AWS_DEFAULT_REGION": "us-east-1",
        "TP4_S3_SECRET_NAME": "tp4-s3",
        "TP4_MLFLOW_AUTH_SECRET_NAME": "",
        "TP4_DVC_REMOTE_URL": "s3://tp4-dvc",
        "TP4_TRAINER_IMAGE": "tp4-trainer:0.1.0",
        "TP4_JOB_TTL_SECONDS": "86400",
        "TP4_GPU_ENABLED": "false",
        "TP4_REPORTS_BUCKET": "tp4-reports",
    }
    settings = settings_from_env(env)
    assert settings.jobs_tracking_uri == settings.tracking_uri == "http://tp4-mlflow:5000"
    assert [(r.env, r.secret, r.key) for r in settings.secret_env] == [
        ("AWS_ACCESS_KEY_ID", "tp4-s3", "AWS_ACCESS_KEY_ID"),
        ("AWS_SECRET_ACCESS_KEY", "tp4-s3", "AWS_SECRET_ACCESS_KEY"),
    ]
    assert settings.extra_env == {
        "AWS_ENDPOINT_URL": "http://tp4-minio:9000",
        "AWS_DEFAULT_REGION": "us-east-1",
        "TP4_DVC_REMOTE_URL": "s3://tp4-dvc",
    }
    assert settings.job_ttl_seconds == 86400 and settings.gpu_image is None
    auth = settings_from_env(
        {
            **env,
            "TP4_MLFLOW_AUTH_SECRET_NAME": "tp4-mlflow-auth",
            "TP4_GPU_ENABLED": "true",
            "TP4_GPU_TRAINER_IMAGE": "t:cuda",
            "TP4_GPU_NODE_SELECTOR": '{"a": "b"}',
            "TP4_JOBS_TRACKING_URI": "http://in-cluster:5000",
        }
    )
    assert [r.env for r in auth.secret_env][2:] == ["MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"]
    assert (auth.gpu_image, auth.gpu_node_selector, auth.jobs_tracking_uri) == (
        "t:cuda",
        {"a": "b"},
        "http://in-cluster:5000",
    )
    with pytest.raises(InvalidInput, match="http"):
        settings_from_env({})


def test_a_queued_grid_gives_suspended_jobs_with_kueues_label_pending_until_released() -> None:
    spec = lab_spec(job={"queue": "team-a", "resources": {"cpu": "2", "memory": "4Gi", "gpu": 1}})
    cluster = read_grid(lab_grid(spec), settings=SETTINGS)
    point = cluster.points[0]
    job = owned(
        render_train_job(cluster.spec, point, SETTINGS.render_settings(parent_run_id=PARENT), dataset_md5=MD5),
        grid=lab_grid(spec),
        submission=PARENT,
    )
    kubernetes_validate.validate(job, "1.35.0", strict=True)
    assert job["spec"]["suspend"] is True and job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"
    pod = job["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert pod["nodeSelector"] == {"gpu": "yes"} and pod["tolerations"] == SETTINGS.gpu_tolerations
    assert job_phase({**job, "status": {}}) is JobPhase.PENDING
    released = {**job, "spec": {**job["spec"], "suspend": False}, "status": {"active": 1, "ready": 1}}
    assert job_phase(released) is JobPhase.RUNNING


def test_following_ends_once_the_controller_took_up_the_request_or_refused_the_spec() -> None:
    from controller.cluster.commands import answered

    asked = datetime(2026, 3, 1, 11, 0, 0, tzinfo=UTC)
    grid = lab_grid()
    assert not answered(grid, asked=asked, generation=1)  # no status yet
    grid["status"] = {"observedGeneration": 1, "startTime": "2026-03-01T10:00:00Z", "phase": "Succeeded"}
    assert not answered(grid, asked=asked, generation=1)  # the previous submission's status
    grid["status"]["startTime"] = "2026-03-01T11:00:00Z"
    assert answered(grid, asked=asked, generation=1) and not answered(grid, asked=asked, generation=2)
    refused = invalid_status({}, generation=2, message="bad", now=NOW)
    assert answered({**grid, "status": refused}, asked=asked, generation=2)
