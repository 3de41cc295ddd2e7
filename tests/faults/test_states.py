"""Issue 10's other cases, reproduced as described: a deleted experiment, a setup that fails after the
parent run exists, a project folder copied elsewhere, `make clean` in a clone. No training here except
the shared finished project's one point."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

import contract
from tests.faults import drills
from tests.helpers.paths import REPO


@pytest.mark.slow
def test_a_deleted_experiment_is_an_error_before_anything_starts(copy_of_finished: Path,
                                                                  dataset: tuple[Path, str]) -> None:
    folder = copy_of_finished
    mlflow = drills.client(folder)
    assert drills.controller(folder, "submit-grid", "grid.yaml").returncode == 0  # relocates the copied store
    experiment = mlflow.get_experiment_by_name("done-e")
    before = len(drills.runs(mlflow, "done-e"))
    state_before = (folder / ".tp4" / "grids" / "done" / "state.json").read_text()
    mlflow.delete_experiment(experiment.experiment_id)

    unchanged = drills.controller(folder, "submit-grid", "grid.yaml")
    drills.write_grid(folder, dataset[1], name="done", axes={"lr0": [0.02]})
    changed = drills.controller(folder, "submit-grid", "grid.yaml")

    for result in (unchanged, changed):
        assert result.returncode == 2, result.stdout + result.stderr
        assert "nothing to do" not in result.stdout and "Traceback" not in result.stderr
        message = " ".join(result.stderr.split())
        assert "'done-e'" in message
        assert f"mlflow experiments restore --experiment-id {experiment.experiment_id}" in message
        assert "choose another `experiment:`" in message
    mlflow.restore_experiment(experiment.experiment_id)
    assert len(drills.runs(mlflow, "done-e")) == before  # nothing started
    assert (folder / ".tp4" / "grids" / "done" / "state.json").read_text() == state_before


@pytest.mark.slow
def test_nothing_to_do_only_when_the_runs_relied_on_are_there(copy_of_finished: Path) -> None:
    folder = copy_of_finished
    assert "nothing to do" in drills.controller(folder, "submit-grid", "grid.yaml").stdout
    mlflow = drills.client(folder)
    parent = drills.runs(mlflow, "done-e", contract.ROLE_PARENT)[-1]
    mlflow.delete_run(parent.info.run_id)  # the report's run is gone: the grid is not done
    again = drills.controller(folder, "submit-grid", "grid.yaml")
    assert again.returncode == 0 and "nothing to do" not in again.stdout, again.stdout + again.stderr
    assert "runs missing from MLflow, run again: parent run" in again.stdout
    parents = [p for p in drills.runs(mlflow, "done-e", contract.ROLE_PARENT) if p.info.run_id != parent.info.run_id]
    assert parents[-1].info.status == "FINISHED" and contract.TAG_DECISION in parents[-1].data.tags


def test_a_setup_failure_after_the_parent_run_exists_ends_it_failed(dataset: tuple[Path, str], tmp_path: Path) -> None:
    folder = drills.new_project(dataset[0], tmp_path / "project", dataset[1], name="setup")
    (folder / "blocked").write_text("a file where the artifact folder should be")
    mlflow = drills.client(folder)
    mlflow.create_experiment("setup-e", artifact_location=(folder / "blocked" / "artifacts").as_uri())

    result = drills.controller(folder, "submit-grid", "grid.yaml")

    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    parent = drills.runs(mlflow, "setup-e", contract.ROLE_PARENT)
    assert [p.info.status for p in parent] == ["FAILED"]
    message = " ".join(result.stderr.split())
    assert f"its parent run {parent[0].info.run_id} was ended FAILED" in message and "blocked" in message
    assert parent[0].data.tags[contract.TAG_CLOSED_BY].startswith("setup failed:")
    assert not drills.runs(mlflow, "setup-e", contract.ROLE_TRAIN)


@pytest.mark.slow
def test_a_copied_project_reads_and_writes_its_own_store_only(finished: Path, tmp_path: Path) -> None:
    copy = tmp_path / "elsewhere" / "copy"
    shutil.copytree(finished, copy)
    original_db = (finished / ".tp4" / "mlflow.db").read_bytes()
    shutil.rmtree(copy / "reports")  # the report must come from the copied store

    report = drills.controller(copy, "report", "done")

    assert report.returncode == 0, report.stdout + report.stderr
    assert f"moved or copied from {finished} to {copy}" in " ".join(report.stderr.split())
    assert "grid done: decision" in report.stdout and "runs:/" in report.stdout
    again = drills.controller(copy, "submit-grid", "grid.yaml")
    assert again.returncode == 0 and "nothing to do" in again.stdout, again.stdout + again.stderr
    logs = drills.controller(copy, "logs", drills.POINT)
    assert logs.returncode == 0 and "mAP50" in logs.stdout
    mlflow = drills.client(copy)
    own = (copy / ".tp4" / "mlartifacts").resolve().as_uri()
    assert mlflow.get_experiment_by_name("done-e").artifact_location.startswith(own)
    assert all(r.info.artifact_uri.startswith(own) for r in drills.runs(mlflow, "done-e"))
    versions = mlflow.search_model_versions("name = 'done-person'")
    sources = [v.source for v in versions]
    assert sources and all(s.startswith(("runs:/", "models:/", own)) for s in sources), sources
    assert (finished / ".tp4" / "mlflow.db").read_bytes() == original_db  # nothing written outside the copy


def test_make_clean_keeps_every_tracked_file(tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", "--local", str(REPO), str(clone)], check=True)
    (clone / "reports" / "lab").mkdir()
    (clone / "reports" / "lab" / "decision.md").write_text("generated")
    (clone / ".tp4" / "grids" / "lab").mkdir(parents=True)
    (clone / ".tp4" / "mlflow.db").write_text("")
    templates = sorted(p.name for p in (clone / "reports" / "templates").iterdir())
    assert templates

    subprocess.run(["make", "clean"], cwd=clone, check=True, capture_output=True)

    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=clone, check=True,
                            capture_output=True, text=True).stdout
    assert status == "", status
    assert sorted(p.name for p in (clone / "reports" / "templates").iterdir()) == templates
    assert not (clone / "reports" / "lab").exists() and not (clone / ".tp4" / "grids").exists()
    assert not (clone / ".tp4" / "mlflow.db").exists()
