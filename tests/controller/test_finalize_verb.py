"""`python -m controller finalize GRID`: the finalizer of a grid's latest submission run again.

Locally on a real one-point grid (the local executor, the embedded MLflow store, a real training of one
epoch); on a cluster against the fake API server with a real controller and MLflow store."""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from mlflow.tracking import MlflowClient

import contract
from controller.cli import main
from controller.cluster import commands as cluster_commands
from controller.cluster.kube import GRIDS
from controller.local.state import load_state
from tests.controller.local.test_submit_grid import controller, tiny_dataset, tiny_grid
from tests.helpers.cluster_harness import RunningController, run_job, small_spec
from tests.helpers.crd_schema import grid_validator
from tests.helpers.fake_kube import FakeKube
from tests.helpers.paths import REPO


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A project whose one-point grid `tiny` ran to its decision; submit-grid's stdout."""
    from tests.helpers.paths import COCO128

    folder = tmp_path_factory.mktemp("finalize")
    _, md5 = tiny_dataset(COCO128, folder)
    tiny_grid(folder, md5, axes={"lr0": [0.01]})
    submitted = controller(folder, "submit-grid", "grid.yaml")
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    return folder, submitted.stdout


@pytest.mark.slow
def test_submit_grid_ends_with_the_decision_line(finished: tuple[Path, str]) -> None:
    folder, stdout = finished
    decision = json.loads((folder / "reports" / "tiny" / "decision.json").read_text())
    lines = [line for line in stdout.splitlines() if line.strip()]
    assert lines[-1].startswith(f"decision: {decision['decision']['verdict']} — train-0.01 (")
    assert lines[-1].endswith(" — reports/tiny/decision.md")


@pytest.mark.slow
def test_finalize_runs_the_finalizer_of_the_latest_submission_again(finished: tuple[Path, str]) -> None:
    folder, _ = finished
    report = folder / "reports" / "tiny" / "decision.json"
    before = json.loads(report.read_text())
    state = load_state(folder, "tiny")
    first_log = state.jobs["finalize-tiny"].attempts[-1].log

    again = controller(folder, "finalize", "grid.yaml")

    assert again.returncode == 0, again.stdout + again.stderr
    after = json.loads(report.read_text())
    assert after["generated_at"] != before["generated_at"]  # written again
    assert after["parent_run_id"] == before["parent_run_id"] == state.submission  # by the same submission
    lines = [line for line in again.stdout.splitlines() if line.strip()]
    assert "finalize-tiny: Succeeded (attempt 1)" in lines
    assert lines[-1].startswith(f"decision: {after['decision']['verdict']} — train-0.01 (")
    assert lines[-1].endswith(" — reports/tiny/decision.md")
    rerun = load_state(folder, "tiny")
    job = rerun.jobs["finalize-tiny"]
    assert rerun.phase == "Succeeded" and rerun.submission == state.submission
    assert job.phase == "Succeeded" and job.attempts[-1].log != first_log and Path(first_log).is_file()
    assert Path(job.attempts[-1].log).stat().st_size > 0
    mlflow = MlflowClient(contract.embedded_tracking_uri(folder))
    parent = mlflow.get_run(state.submission)
    assert parent.info.status == "FINISHED"
    experiment = mlflow.get_experiment_by_name("tiny-e2e")
    assert experiment is not None
    parents = mlflow.search_runs([experiment.experiment_id],
                                 filter_string=f"tags.`{contract.TAG_ROLE}` = '{contract.ROLE_PARENT}'")
    assert len(parents) == 1  # no new submission


@pytest.mark.slow
def test_finalize_of_a_grid_never_submitted_or_of_a_bad_file(finished: tuple[Path, str], tmp_path: Path) -> None:
    folder, _ = finished
    never = controller(folder, "finalize", "never-ran")
    assert never.returncode == 1 and "no submission of grid 'never-ran'" in never.stderr
    other = tiny_grid(tmp_path, "0" * 32 + ".dir")
    spec = yaml.safe_load(other.read_text())
    (folder / "other.yaml").write_text(yaml.safe_dump({**spec, "name": "other"}))
    assert controller(folder, "finalize", "other.yaml").returncode == 1
    (folder / "bad.yaml").write_text(yaml.safe_dump({**spec, "axes": {"lr0": [-1]}}))
    bad = controller(folder, "finalize", "bad.yaml")
    assert bad.returncode == 2 and "bad.yaml" in bad.stderr and "axes.lr0[0]" in bad.stderr
    missing = controller(folder, "finalize", "missing.yaml")
    assert missing.returncode == 2 and "missing.yaml: no such grid file" in missing.stderr
    assert controller(folder, "finalize", "../escape").returncode == 2


# --- on a cluster: the fake API server, a real controller and a real MLflow store ---------------------------


@pytest.fixture
def cluster_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, FakeKube]]:
    """grid.yaml, the dataset's DVC pointer (no data), a kubeconfig for the fake server, MLflow reachable."""
    with FakeKube(grid_schema=grid_validator()) as kube:
        (tmp_path / "data").mkdir()
        shutil.copy(REPO / "data" / "tiny_coco.dvc", tmp_path / "data" / "tiny_coco.dvc")
        spec = small_spec()
        del spec["dataset"]["md5"]
        (tmp_path / "grid.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
        monkeypatch.setenv("KUBECONFIG", str(kube.kubeconfig(tmp_path / "kubeconfig")))
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
        monkeypatch.chdir(tmp_path)
        monkeypatch.setattr(cluster_commands, "POLL_SECONDS", 0.05)
        yield tmp_path, kube


def found(kube: FakeKube, plural: str, name: str) -> dict[str, Any]:
    obj = kube.find(plural, name)
    assert obj is not None, f"{plural}/{name}"
    return obj


def cluster_kubelet(kube: FakeKube, mlflow: MlflowClient, stop: threading.Event, verdicts: list[str]) -> None:
    """Runs every Job not started yet to success; each finalizer decides the next of `verdicts`."""
    while not stop.wait(0.05):
        for job in kube.all("jobs"):
            if not (job.get("status") or {}).get("startTime"):
                name = job["metadata"]["name"]
                verdict = verdicts.pop(0) if name.startswith("finalize-") else "YES"
                run_job(kube, mlflow, name, value=0.01, verdict=verdict)


def test_finalize_on_a_cluster_creates_the_finalize_job_again(
    cluster_project: tuple[Path, FakeKube], capsys: pytest.CaptureFixture[str]
) -> None:
    folder, kube = cluster_project
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    stop = threading.Event()
    with RunningController(kube, uri=uri, root=folder):
        threading.Thread(target=cluster_kubelet, args=(kube, MlflowClient(uri), stop, ["YES", "NO"]),
                         daemon=True).start()
        try:
            assert main(["--kube", "submit-grid", "grid.yaml"]) == 0
            submitted = capsys.readouterr().out
            parent = found(kube, "grids", "lab")["status"]["parentRunId"]
            assert submitted.rstrip().splitlines()[-1] == (
                f"decision: YES — no candidate — runs:/{parent}/{contract.ARTIFACT_REPORT_DIR}/decision.md")
            first = found(kube, "jobs", "finalize-lab")["metadata"]["uid"]

            assert main(["--kube", "finalize", "lab"]) == 0
        finally:
            stop.set()
    out = capsys.readouterr().out.rstrip().splitlines()
    assert out[0] == f"job finalize-lab created again in namespace default for submission {parent}"
    assert "finalize-lab: Succeeded" in out
    assert out[-1] == f"decision: NO — no candidate — runs:/{parent}/{contract.ARTIFACT_REPORT_DIR}/decision.md"
    again = found(kube, "jobs", "finalize-lab")
    assert again["metadata"]["uid"] != first and again["metadata"]["labels"][contract.LABEL_SUBMISSION] == parent
    assert again["metadata"]["ownerReferences"][0]["name"] == "lab" and kube.refusals == []
    assert found(kube, "grids", "lab")["status"]["decision"] == "YES"  # a finished submission's status stays


def test_finalize_on_a_cluster_refuses_what_it_cannot_run_again(
    cluster_project: tuple[Path, FakeKube], capsys: pytest.CaptureFixture[str]
) -> None:
    folder, kube = cluster_project
    assert main(["--kube", "finalize", "lab"]) == 1
    assert "no submission of grid 'lab' in namespace default" in capsys.readouterr().err
    assert main(["--kube", "submit-grid", "grid.yaml", "--no-wait"]) == 0
    assert main(["--kube", "finalize", "grid.yaml"]) == 1  # written, not taken up by a controller yet
    assert "has not taken it up yet" in capsys.readouterr().err
    api = cluster_commands.open_api(kubeconfig=None, context=None, namespace=None)
    api.patch_status(GRIDS, "lab", {"phase": "Running", "parentRunId": "p"})
    assert main(["--kube", "finalize", "lab"]) == 2
    assert "is Running" in capsys.readouterr().err
    api.patch_status(GRIDS, "lab", {"phase": "Succeeded"})
    assert main(["--kube", "finalize", "lab"]) == 1  # its finalize Job is gone (ttlSecondsAfterFinished)
    assert "is not in namespace default" in capsys.readouterr().err
    assert main(["--kube", "finalize", "nope.yaml"]) == 2
