"""`python -m controller --backend kubernetes ...` against the fake API server, through a kubeconfig:
submit-grid (--no-wait, and following the controller to the decision), status, logs, report, delete."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

import contract
from controller.cli import main
from controller.cluster import commands as cluster_commands
from controller.cluster.kube import GRIDS
from controller.cluster.resource import ANNOTATION_SUBMITTED_AT
from tests.helpers.cluster_harness import RunningController, job_names, run_job, small_spec
from tests.helpers.crd_schema import grid_validator
from tests.helpers.fake_kube import FakeKube
from tests.helpers.paths import REPO


@pytest.fixture
def kube() -> Iterator[FakeKube]:
    with FakeKube(grid_schema=grid_validator()) as server:
        yield server


@pytest.fixture
def project(tmp_path: Path, kube: FakeKube, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project folder: grid.yaml, the dataset's DVC pointer (no data), a kubeconfig for the fake server."""
    (tmp_path / "data").mkdir()
    shutil.copy(REPO / "data" / "tiny_coco.dvc", tmp_path / "data" / "tiny_coco.dvc")
    spec = small_spec()
    del spec["dataset"]["md5"]  # pinned by submit-grid from data/tiny_coco.dvc
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "fake",
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "me", "namespace": "default"}}],
        "clusters": [{"name": "fake", "cluster": {"server": kube.url}}],
        "users": [{"name": "me", "user": {"token": "t"}}],
    }
    (tmp_path / "kubeconfig").write_text(yaml.safe_dump(config))
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "kubeconfig"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cluster_commands, "POLL_SECONDS", 0.05)
    return tmp_path


def cli(*args: str) -> int:
    return main(["--kube", *args])


def test_submit_grid_no_wait_writes_the_grid_with_its_dataset_pinned(
    project: Path, kube: FakeKube, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli("submit-grid", "grid.yaml", "--no-wait") == 0
    assert "grid lab submitted to namespace default (generation 1)" in capsys.readouterr().out
    (post,) = kube.sent("POST", "/grids")
    assert post.path == "/apis/tp4.io/v1alpha1/namespaces/default/grids" and post.authorization == "Bearer t"
    pinned = yaml.safe_load((project / "data" / "tiny_coco.dvc").read_text())["outs"][0]["md5"]
    assert post.body["spec"]["dataset"]["md5"] == pinned and post.body["metadata"]["name"] == "lab"
    assert ANNOTATION_SUBMITTED_AT in post.body["metadata"]["annotations"] and kube.refusals == []

    # a clock behind the controller's: the new request is still later than the current submission
    api = cluster_commands.open_api(kubeconfig=None, context=None, namespace=None)
    api.patch_status(GRIDS, "lab", {"startTime": "2999-01-01T00:00:00Z", "parentRunId": "p"})
    # a namespace alone means the cluster (the Makefile's `kind-e2e` form)
    assert main(["submit-grid", "grid.yaml", "--namespace", "default", "--no-wait", "--parallelism", "3"]) == 0
    (put,) = kube.sent("PUT", "/grids/lab")
    assert put.body["metadata"]["annotations"][ANNOTATION_SUBMITTED_AT] == "2999-01-01T00:00:01Z"
    assert put.body["spec"]["job"]["parallelism"] == 3 and put.body["metadata"]["resourceVersion"]
    assert kube.find("grids", "lab")["metadata"]["generation"] == 2


def test_submit_grid_refuses_an_invalid_grid_before_writing_anything(
    project: Path, kube: FakeKube, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = yaml.safe_load((project / "grid.yaml").read_text())
    spec["axes"]["imgsz"] = [300]
    (project / "grid.yaml").write_text(yaml.safe_dump(spec))
    assert cli("submit-grid", "grid.yaml", "--no-wait") == 2
    assert "axes.imgsz[0]" in capsys.readouterr().err and kube.sent("POST") == [] and kube.sent("PUT") == []


def kubelet(kube: FakeKube, mlflow: MlflowClient, stop: threading.Event) -> None:
    """Runs every Job the controller creates to success, as the cluster and the jobs' code would."""
    while not stop.wait(0.05):
        for job in kube.all("jobs"):
            if not (job.get("status") or {}).get("startTime"):
                name = job["metadata"]["name"]
                _, lr0, seed = name.split("-") if name.startswith("train-") else ("", "0", "0")
                run_job(kube, mlflow, name, value=float(lr0) + int(seed) / 1000)


def test_submit_grid_follows_the_cluster_to_the_decision(
    project: Path, kube: FakeKube, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)  # the cluster's MLflow as seen from here (port-forward)
    stop = threading.Event()
    with RunningController(kube, uri=uri, root=tmp_path):
        threading.Thread(target=kubelet, args=(kube, MlflowClient(uri), stop), daemon=True).start()
        try:
            assert cli("submit-grid", "grid.yaml") == 0
        finally:
            stop.set()
    out = capsys.readouterr().out
    assert "train-0.01-2: Succeeded (attempt 1) mAP50-95=0.0120" in out  # the live view, one line per change
    assert "finalize-lab: Succeeded" in out
    assert "grid lab: Succeeded (decision report written)" in out and "decision: YES" in out
    assert "points: 4 succeeded, 0 failed, 0 running, 0 pending of 4" in out
    assert "best so far: train-0.01-2 mAP50-95=0.0120" in out
    assert kube.refusals == []

    assert cli("status", "lab") == 0
    table = capsys.readouterr().out
    assert all(name in table for name in job_names(kube)) and "report: runs:/" in table

    assert cli("report", "grid.yaml") == 0
    report = capsys.readouterr().out
    assert "grid lab: decision YES" in report and "/report/decision.md" in report

    assert cli("logs", "train-0.005-1") == 0
    assert capsys.readouterr().out.splitlines() == ["training train-0.005-1", "done"]


def test_logs_follow_a_running_pod_and_name_bad_jobs(
    project: Path, kube: FakeKube, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.controller.cluster.test_kube_adapter import job as a_job

    kube.put_object("jobs", {**a_job("train-1"), "status": {}})
    assert cli("logs", "train-1") == 1  # no pod: nothing to read, as kubectl's NotFound
    assert "has no pod yet" in capsys.readouterr().err
    first = kube.start_job("train-1", log=["try 1"])
    kube.finish_job("train-1", succeeded=False, retry=True)
    latest = [p["metadata"]["name"] for p in kube.pods_of("train-1") if p["metadata"]["name"] != first][0]
    kube.write_log(latest, "try 2 epoch 1")
    threading.Timer(0.3, lambda: kube.write_log(latest, "try 2 epoch 2", done=True)).start()
    assert cli("logs", "train-1", "-f") == 0
    assert capsys.readouterr().out.splitlines() == ["try 2 epoch 1", "try 2 epoch 2"]
    assert cli("logs", "train-1", "--attempt", "1") == 0
    assert capsys.readouterr().out.splitlines() == ["try 1", "error"]
    assert cli("logs", "train-1", "--attempt", "3") == 2
    assert cli("logs", "job/nope") == 1  # a missing object: 1, as kubectl's
    assert "no job named 'nope' in namespace default" in capsys.readouterr().err


def test_report_without_mlflow_and_delete(project: Path, kube: FakeKube, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli("submit-grid", "grid.yaml", "--no-wait") == 0
    assert cli("report", "lab") == 1  # no decision yet: not found
    api = cluster_commands.open_api(kubeconfig=None, context=None, namespace=None)
    api.patch_status(
        GRIDS,
        "lab",
        {"phase": "Succeeded", "decision": "NO", "report": {"runId": "r1", "artifactPath": "report/decision.md"}},
    )
    capsys.readouterr()
    assert cli("report", "lab") == 0
    out = capsys.readouterr().out
    assert "decision: NO" in out and "runs:/r1/report/decision.md" in out and "MLFLOW_TRACKING_URI" in out

    assert cli("delete", "lab") == 0
    assert kube.sent("DELETE", "/grids/lab")[0].body["propagationPolicy"] == "Background"
    assert cli("delete", "lab") == 1 and cli("status", "lab") == 1
    assert "no grid named 'lab' in namespace default" in capsys.readouterr().err


def test_cluster_verbs_need_the_cluster_and_local_ones_stay_local(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["delete", "lab"]) == 1  # a local grid that does not exist
    assert "no grid named 'lab'" in capsys.readouterr().err
    monkeypatch.delenv(contract.ENV_TRACKING_URI, raising=False)
    assert main(["run"]) == 2  # the controller needs the MLflow server's URL (the chart's ConfigMap)
    assert "MLFLOW_TRACKING_URI" in capsys.readouterr().err
    assert main(["--kube", "render", "grid.yaml"]) == 0  # rendering needs no cluster
    assert "kind: Job" in capsys.readouterr().out


def test_the_run_command_is_the_reconcile_loop_and_stops_on_sigterm(
    project: Path, kube: FakeKube, tmp_path: Path
) -> None:
    """`python -m controller run` as the chart's Deployment starts it: a process, the settings from the
    environment (the ConfigMap's variables), the health endpoint the probes ask, JSON-lines logs, the
    Lease taken and released, stopped by SIGTERM when the pod stops."""
    import json
    import os
    import signal
    import socket
    import subprocess
    import sys
    import time
    import urllib.error
    import urllib.request

    from tests.controller.cluster.test_cluster_controller import submit
    from tests.helpers.cluster_harness import grid_status, wait_until

    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]

    def probe(path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
                return answer.status, answer.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()
        except OSError:
            return 0, ""

    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "TP4_JOBS_TRACKING_URI": "http://tp4-mlflow:5000",
        "TP4_S3_SECRET_NAME": "tp4-s3",
        "TP4_TRAINER_IMAGE": "registry.local/tp4-trainer:1",
        "TP4_NAMESPACE": "default",
        "PYTHONPATH": str(REPO),
        "TP4_HEALTH_PORT": str(port),
    }
    controller = subprocess.Popen(
        [sys.executable, "-m", "controller", "run"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        submit(kube, small_spec())
        wait_until(lambda: len(job_names(kube)) == 2 or controller.poll() is not None, seconds=60, what="the Jobs")
        assert controller.poll() is None, controller.stdout.read() if controller.stdout else ""
        job = kube.find("jobs", job_names(kube)[0])
        assert job["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.local/tp4-trainer:1"
        assert wait_until(lambda: grid_status(kube).get("parentRunId"))
        assert probe("/healthz")[0] == 200 and probe("/readyz") == (200, "ok: leading\n")
        assert probe("/nope")[0] == 404
        lease = kube.find("leases", "tp4-controller")
        assert lease is not None and lease["spec"]["holderIdentity"]
    finally:
        controller.send_signal(signal.SIGTERM)
        start = time.monotonic()
        output, _ = controller.communicate(timeout=30)
    assert controller.returncode == 0 and time.monotonic() - start < 30, output
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    events = [(line["logger"], line["event"]) for line in lines]
    assert ("controller.cluster.loop", "watching grids and jobs") in events, output
    assert ("controller.cluster.loop", "stopped") in events and ("controller.cluster.leader", "leading") in events
    submitted = next(line for line in lines if line.get("reason") == "Submitted")
    assert submitted["grid"] == "lab" and submitted["level"] == "INFO" and submitted["time"].endswith("Z")
    created = [line["point"] for line in lines if line["event"] == "job created"]
    assert sorted(created) == job_names(kube) and all(line["grid"] == "lab" for line in lines if "point" in line)
    assert (kube.find("leases", "tp4-controller") or {})["spec"]["holderIdentity"] == ""  # released at SIGTERM
    assert probe("/healthz") == (0, "")  # the endpoint ended with the process


def test_an_unreachable_api_server_is_reported_not_raised(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    config = yaml.safe_load((project / "kubeconfig").read_text())
    config["clusters"][0]["cluster"]["server"] = f"http://127.0.0.1:{port}"
    (project / "kubeconfig").write_text(yaml.safe_dump(config))
    assert cli("status") == 2
    assert f"the API server http://127.0.0.1:{port}: " in capsys.readouterr().err
