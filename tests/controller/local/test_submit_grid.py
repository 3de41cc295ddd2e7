"""End to end: a tiny grid through `submit-grid` with the local executor and the embedded MLflow store."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

import contract
from tests.helpers.paths import BACKBONE

pytestmark = pytest.mark.slow


def tiny_dataset(coco128: Path, folder: Path) -> tuple[Path, str]:
    from jobs.common.dataset import directory_md5
    from tinycoco import build

    out = folder / "data" / "tiny_coco"
    build(source=str(coco128), out_dir=out, seed=0, split=(8, 4, 4))
    return out, directory_md5(path=out)


def tiny_grid(folder: Path, md5: str, **changes) -> Path:
    grid = {
        "name": "tiny",
        "experiment": "tiny-e2e",
        "dataset": {"path": "data/tiny_coco", "md5": md5},
        "model": {"weights": str(BACKBONE), "registered_name": "tiny-person"},
        "train": {"epochs": 1, "batch": 4, "nbs": 4, "warmup_epochs": 0, "workers": 0, "imgsz": 64, "seed": 1},
        "axes": {"lr0": [0.005, 0.01]},
        "job": {"name_template": "train-{lr0}"},
        "gates": {"min_objective": 0.0, "min_success_fraction": 0.5},
        **changes,
    }
    path = folder / "grid.yaml"
    path.write_text(yaml.safe_dump(grid, sort_keys=False))
    return path


def controller(folder: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "controller", "--root", str(folder), *args],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=os.environ.copy(),
    )


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.helpers.paths import COCO128

    folder = tmp_path_factory.mktemp("project")
    _, md5 = tiny_dataset(COCO128, folder)
    tiny_grid(folder, md5)
    return folder


@pytest.fixture(scope="module")
def submitted(project: Path) -> subprocess.CompletedProcess[str]:
    return controller(project, "submit-grid", "grid.yaml", "--parallelism", "2")


def mlflow_client(folder: Path) -> MlflowClient:
    return MlflowClient(contract.embedded_tracking_uri(folder))


def test_grid_runs_to_a_decision_report(project: Path, submitted: subprocess.CompletedProcess[str]) -> None:
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    assert "train-0.005: Succeeded" in submitted.stdout and "train-0.01: Succeeded" in submitted.stdout
    report = project / "reports" / "tiny" / "decision.md"
    last = submitted.stdout.rstrip().splitlines()[-1]
    assert last.startswith("decision: ") and last.endswith(" — reports/tiny/decision.md"), last
    assert report.read_text().strip() and (project / "reports" / "tiny" / "runs.csv").is_file()


def test_runs_params_metrics_and_artifacts_are_in_mlflow(
    project: Path, submitted: subprocess.CompletedProcess[str]
) -> None:
    mlflow = mlflow_client(project)
    experiment = mlflow.get_experiment_by_name("tiny-e2e")
    runs = mlflow.search_runs([experiment.experiment_id], filter_string=f"tags.`{contract.TAG_ROLE}` = 'train'")
    assert sorted(r.data.tags[contract.TAG_POINT] for r in runs) == ["train-0.005", "train-0.01"]
    parents = mlflow.search_runs([experiment.experiment_id], filter_string=f"tags.`{contract.TAG_ROLE}` = 'parent'")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    for run in runs:
        assert run.info.status == "FINISHED"
        assert run.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        assert run.data.params["lr0"] in ("0.005", "0.01") and run.data.params["optimizer"] == "SGD"
        assert run.data.tags[contract.TAG_WEIGHTS_SOURCE] == "path"
        for metric in contract.FINAL_METRICS:
            assert metric in run.data.metrics
        history = mlflow.get_metric_history(run.info.run_id, f"{contract.EPOCH_PREFIX}{contract.METRIC_MAP50_95}")
        assert [m.step for m in history] == [1]
        artifacts = {a.path for a in mlflow.list_artifacts(run.info.run_id, "weights")}
        assert artifacts == {"weights/best.pt", "weights/last.pt"}
        plots = {a.path for a in mlflow.list_artifacts(run.info.run_id, "plots")}
        assert "plots/results.png" in plots
    reports = {a.path for a in mlflow.list_artifacts(parents[0].info.run_id, contract.ARTIFACT_REPORT_DIR)}
    assert f"{contract.ARTIFACT_REPORT_DIR}/decision.md" in reports
    assert f"{contract.ARTIFACT_REPORT_DIR}/runs.csv" in reports


def test_status_logs_and_resubmission(project: Path, submitted: subprocess.CompletedProcess[str]) -> None:
    status = controller(project, "status", "tiny")
    assert status.returncode == 0 and status.stdout.count("Succeeded") >= 3, status.stdout
    logs = controller(project, "logs", "train-0.01")
    assert logs.returncode == 0 and "mAP50" in logs.stdout
    again = controller(project, "submit-grid", "grid.yaml")
    assert again.returncode == 0 and "nothing to do" in again.stdout
    experiment = mlflow_client(project).get_experiment_by_name("tiny-e2e")
    assert len(mlflow_client(project).search_runs([experiment.experiment_id])) == 3  # the parent and the 2 points


def test_bad_grid_starts_nothing(project: Path, submitted: subprocess.CompletedProcess[str], tmp_path: Path) -> None:
    folder = tmp_path / "bad"
    shutil.copytree(project / "data", folder / "data")
    bad = tiny_grid(folder, "0" * 32 + ".dir", axes={"lr0": [0.01, -1], "imgsz": [100]})
    result = controller(folder, "submit-grid", str(bad))
    assert result.returncode == 2
    assert "axes.lr0[1]" in result.stderr and "axes.imgsz[0]" in result.stderr
    assert not (folder / ".tp4").exists()


def test_ctrl_c_kills_children_and_marks_runs_killed(
    project: Path, submitted: subprocess.CompletedProcess[str], tmp_path: Path
) -> None:
    folder = tmp_path / "interrupted"
    shutil.copytree(project / "data", folder / "data")
    grid = yaml.safe_load((project / "grid.yaml").read_text())
    grid["name"], grid["experiment"] = "interrupted", "interrupted-e2e"
    grid["train"]["epochs"] = 1000  # no point can finish before the interrupt, however small the data set
    (folder / "grid.yaml").write_text(yaml.safe_dump(grid))
    process = subprocess.Popen(
        [sys.executable, "-m", "controller", "--root", str(folder), "submit-grid", "grid.yaml"],
        cwd=folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    # the store is opened once the controller has created it (state.json is written after its parent run):
    # two processes creating one SQLite store at once race on its tables
    mlflow, experiment = None, None
    deadline = time.time() + 180
    while time.time() < deadline:
        time.sleep(1)
        if mlflow is None and (folder / ".tp4" / "grids" / "interrupted" / "state.json").exists():
            mlflow = mlflow_client(folder)
        experiment = mlflow.get_experiment_by_name("interrupted-e2e") if mlflow else None
        trains = f"tags.`{contract.TAG_ROLE}` = 'train'"
        if experiment and len(mlflow.search_runs([experiment.experiment_id], filter_string=trains)) == 2:
            break
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 130, output
    assert mlflow is not None and experiment is not None, output
    runs = mlflow.search_runs([experiment.experiment_id])
    seen = [(r.data.tags.get(contract.TAG_ROLE), r.info.status) for r in runs]
    assert runs and all(r.info.status == "KILLED" for r in runs), seen


def test_report_prints_the_decision_from_the_folder_or_from_mlflow(
    project: Path, submitted: subprocess.CompletedProcess[str]
) -> None:
    local = controller(project, "report", "tiny")
    assert local.returncode == 0, local.stdout + local.stderr
    assert "grid tiny: decision" in local.stdout and "candidate: train-0." in local.stdout
    assert "report: reports/tiny/decision.md" in local.stdout  # relative to where the command runs
    moved = project.parent / "reports-elsewhere"
    shutil.move(project / "reports", moved)
    try:
        remote = controller(project, "report", "tiny")
    finally:
        shutil.move(moved, project / "reports")
    assert remote.returncode == 0, remote.stdout + remote.stderr
    assert remote.stdout.splitlines()[0] == local.stdout.splitlines()[0]
    assert "runs:/" in remote.stdout and "/report/decision.md" in remote.stdout
    unknown = controller(project, "report", "no-such-grid")
    assert unknown.returncode == 1 and "no decision report for 'no-such-grid'" in unknown.stderr
