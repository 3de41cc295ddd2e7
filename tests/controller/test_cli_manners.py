"""The CLI's kubectl manners, through real `python -m controller` processes on one tiny local grid (one point,
one epoch, trained once for the module): -o json|yaml|wide|name, `logs job/NAME`, `logs --attempt` of an
earlier submission, --version, names whole in a narrow pipe, exit codes (1 not found, 2 bad input), warnings
in words, `delete` of a local grid, and a train Job's log free of MLflow's noise."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

import contract
from contract.warning_words import warning_sentence
from controller.core.reconciling import JobPhase
from controller.core.state import Attempt, GridState, JobRecord
from controller.local.inspecting import record_current, shown_jobs
from controller.local.state import save_state
from tests.controller.local.test_submit_grid import tiny_dataset, tiny_grid
from tests.helpers.paths import COCO128

POINT = "train-0.01-a-name-long-enough-to-be-cut"
MLFLOW_NOISE = ("Failed to log model config as params", "Changing param values is not allowed",
                "Downloading artifacts")
MLFLOW_USER_WARNINGS = ("Type hint used in the model's predict function", "Failed to infer signature from type hint",
                        "An input example was not provided")


def run(folder: Path, *args: str, columns: int | None = None) -> subprocess.CompletedProcess[str]:
    env = os.environ.copy()
    if columns is not None:
        env["COLUMNS"] = str(columns)
    return subprocess.run([sys.executable, "-m", "controller", "--root", str(folder), *args], cwd=folder,
                          capture_output=True, text=True, timeout=900, env=env)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("manners")
    _, md5 = tiny_dataset(COCO128, folder)
    tiny_grid(folder, md5, axes={"lr0": [0.01]}, job={"name_template": POINT.replace("0.01", "{lr0}")})
    first = run(folder, "submit-grid", "grid.yaml")
    assert first.returncode == 0, first.stdout + first.stderr
    # a second submission that trains nothing: only the finalizer's rules changed, so it runs again
    grid = yaml.safe_load((folder / "grid.yaml").read_text())
    grid["gates"]["min_success_fraction"] = 0.4
    (folder / "grid.yaml").write_text(yaml.safe_dump(grid, sort_keys=False))
    second = run(folder, "submit-grid", "grid.yaml")
    assert second.returncode == 0, second.stdout + second.stderr
    return folder


def mlflow_client(folder: Path) -> MlflowClient:
    return MlflowClient(contract.embedded_tracking_uri(folder))


def table(text: str) -> tuple[list[str], list[list[str]]]:
    """A piped status table: its title line, then columns three spaces apart (cells hold no such run)."""
    lines = text.rstrip("\n").splitlines()[1:]
    split = [re.split(r" {3,}", line.strip()) for line in lines]
    return split[0], split[1:]


@pytest.mark.slow
def test_status_json_and_yaml_parse_and_carry_every_column_of_the_table(project: Path) -> None:
    shown = run(project, "status", "tiny")
    assert shown.returncode == 0, shown.stderr
    header, rows = table(shown.stdout)
    assert header == ["job", "phase", "attempts", "duration", contract.METRIC_MAP50_95]
    for output, parse in (("json", json.loads), ("yaml", yaml.safe_load)):
        result = run(project, "status", "tiny", "-o", output)
        assert result.returncode == 0, result.stderr
        document = parse(result.stdout)
        assert document["grid"] == "tiny" and document["columns"] == header
        assert [r["job"] for r in document["jobs"]] == [row[0] for row in rows] == [POINT, "finalize-tiny"]
        for row, cells in zip(document["jobs"], rows, strict=True):
            assert set(header) <= row.keys()
            assert [row["phase"], str(row["attempts"]), row["duration"]] == cells[1:4]
        assert float(rows[0][4]) == pytest.approx(document["jobs"][0][contract.METRIC_MAP50_95], abs=5e-5)
    every = json.loads(run(project, "status", "-o", "json").stdout)
    assert every["kind"] == "List" and [g["grid"] for g in every["items"]] == ["tiny"]


@pytest.mark.slow
def test_name_output_feeds_logs_in_kubectls_form(project: Path) -> None:
    names = run(project, "status", "tiny", "-o", "name").stdout.split()
    assert names == [f"job/{POINT}", "job/finalize-tiny"]
    plain, prefixed = run(project, "logs", POINT), run(project, "logs", names[0])
    assert plain.returncode == prefixed.returncode == 0 and prefixed.stdout == plain.stdout
    assert "FINISHED" in prefixed.stdout
    rendered = run(project, "render", "grid.yaml", "-o", "name")
    assert rendered.stdout.split() == names
    manifests = json.loads(run(project, "render", "grid.yaml", "-o", "json").stdout)
    assert [m["metadata"]["name"] for m in manifests["items"]] == [POINT, "finalize-tiny"]
    assert POINT in run(project, "render", "grid.yaml", "-o", "wide").stdout


@pytest.mark.slow
def test_logs_reaches_an_attempt_of_an_earlier_submission(project: Path) -> None:
    logs = sorted((project / ".tp4" / "grids" / "tiny" / "logs").glob("finalize-tiny.*.log"),
                  key=lambda p: p.stat().st_mtime)
    assert len(logs) == 2  # one per submission
    first, latest = run(project, "logs", "job/finalize-tiny", "--attempt", "1"), run(project, "logs", "finalize-tiny")
    assert first.returncode == latest.returncode == 0
    assert first.stdout == logs[0].read_text() and latest.stdout == logs[1].read_text()
    assert run(project, "logs", "finalize-tiny", "--attempt", "2").stdout == latest.stdout
    beyond = run(project, "logs", "finalize-tiny", "--attempt", "3")
    assert beyond.returncode == 2 and "attempts 1..2" in beyond.stderr


@pytest.mark.slow
def test_a_narrow_pipe_never_cuts_a_name(project: Path) -> None:
    for args in (("status", "tiny"), ("status", "tiny", "-o", "wide"), ("status",)):
        result = run(project, *args, columns=60)
        assert result.returncode == 0, result.stderr
        assert POINT in result.stdout and "…" not in result.stdout, result.stdout
        assert not set("│┃━─┏┓┗┛") & set(result.stdout), result.stdout


@pytest.mark.slow
def test_version_and_exit_codes(project: Path) -> None:
    version = run(project, "--version")
    assert version.returncode == 0 and version.stdout.strip() == f"tp4 {contract.CODE_VERSION}"
    for args in (("status", "nope"), ("logs", "nope"), ("logs", "job/nope"), ("report", "nope"), ("delete", "nope")):
        result = run(project, *args)
        assert result.returncode == 1, (args, result.stderr)
        assert "nope" in result.stderr
    bad: list[tuple[str, ...]] = [("status", "-o", "xml"), ("logs", POINT, "--attempt", "0"),
                                  ("submit-grid", "missing.yaml"), ("no-such-verb",)]
    for args in bad:
        assert run(project, *args).returncode == 2, args


@pytest.mark.slow
def test_report_says_its_warnings_in_words(project: Path) -> None:
    decision = json.loads((project / "reports" / "tiny" / "decision.json").read_text())
    assert decision["flags"], "a one-point grid has warnings (too few points, one seed)"
    report = run(project, "report", "tiny")
    assert report.returncode == 0, report.stderr
    warnings = [line for line in report.stdout.splitlines() if line.startswith("warning: ")]
    assert warnings
    for flag, line in zip(decision["flags"], warnings, strict=False):
        assert "_" not in flag["code"] or flag["code"] not in line, line
        assert line == f"warning: {warning_sentence(flag['code'], flag['data'])}"


@pytest.mark.slow
def test_parent_runs_of_two_submissions_are_told_apart(project: Path) -> None:
    mlflow = mlflow_client(project)
    experiment = mlflow.get_experiment_by_name("tiny-e2e")
    parents = mlflow.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"],
                                 filter_string=f"tags.`{contract.TAG_ROLE}` = '{contract.ROLE_PARENT}'")
    assert [p.info.run_name for p in parents] == ["grid-tiny #1", "grid-tiny #2"]


@pytest.mark.slow
def test_a_train_run_logs_what_a_person_compares_and_its_log_no_mlflow_noise(project: Path) -> None:
    mlflow = mlflow_client(project)
    experiment = mlflow.get_experiment_by_name("tiny-e2e")
    (train,) = mlflow.search_runs([experiment.experiment_id],
                                  filter_string=f"tags.`{contract.TAG_ROLE}` = '{contract.ROLE_TRAIN}'")
    params = train.data.params
    asked = {"epochs", "imgsz", "lr0", "batch", "seed", "optimizer", "device", "nbs", "warmup_epochs", "workers"}
    assert asked <= params.keys() and len(params) < 25, sorted(params)
    assert params["lr0"] == "0.01" and params["conf"] == "0.25"  # conf: the served model's, logged by MLflow
    pointer = train.data.tags["tp4.ultralytics_args"]
    effective = yaml.safe_load(Path(mlflow.download_artifacts(train.info.run_id, pointer)).read_text())
    assert effective["lr0_effective"] == 0.01 and effective["optimizer_class"] == "SGD" and "mosaic" in effective
    (log,) = (project / ".tp4" / "grids" / "tiny" / "logs").glob(f"{POINT}.*.log")
    text = log.read_text(errors="replace")
    assert "FINISHED" in text
    for noise in MLFLOW_NOISE:
        assert noise not in text, noise


@pytest.mark.slow
def test_a_train_jobs_log_has_no_mlflow_user_warnings(project: Path) -> None:
    (log,) = (project / ".tp4" / "grids" / "tiny" / "logs").glob(f"{POINT}.*.log")
    text = log.read_text(errors="replace")
    assert not [w for w in MLFLOW_USER_WARNINGS if w in text]


@pytest.mark.slow
def test_delete_a_local_grid_keeps_its_report_and_runs_unless_asked(project: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(project, copy)
    kept = run(copy, "delete", "tiny")
    assert kept.returncode == 0, kept.stderr
    assert not (copy / ".tp4" / "grids" / "tiny").exists() and (copy / "reports" / "tiny" / "decision.md").is_file()
    experiment = mlflow_client(copy).get_experiment_by_name("tiny-e2e").experiment_id
    runs = len(mlflow_client(copy).search_runs([experiment]))
    assert runs >= 3  # 2 parents and the point, kept
    assert run(copy, "status", "tiny").returncode == 1 and run(copy, "delete", "tiny").returncode == 1
    purged = run(copy, "delete", "tiny", "--purge-runs")
    assert purged.returncode == 1  # already gone: nothing to purge through it
    copy = tmp_path / "another-copy"  # another store: the one above stays open in this process
    shutil.copytree(project, copy)
    purged = run(copy, "delete", "grid.yaml", "--purge-runs")
    assert purged.returncode == 0, purged.stderr
    assert mlflow_client(copy).search_runs([experiment]) == []
    assert (copy / "reports" / "tiny" / "decision.md").is_file()
    assert f"{runs} MLflow runs deleted" in purged.stdout


def test_status_hides_the_points_an_earlier_submission_left(tmp_path: Path) -> None:
    def job(name: str, submission: str, role: str = contract.ROLE_TRAIN) -> JobRecord:
        return JobRecord(name=name, grid="g", spec_hash="h", submission=submission, role=role, manifest={},
                         phase=JobPhase.SUCCEEDED, attempts=[Attempt(number=1, log="", started=0.0, finished=1.0)])

    state = GridState(grid="g", submission="new", jobs={
        "train-a": job("train-a", "old"), "train-b": job("train-b", "old"),  # a kept, b left by the old spec
        "train-c": job("train-c", "new"), "finalize-g": job("finalize-g", "old", contract.ROLE_FINALIZE)})
    save_state(tmp_path, state)
    assert shown_jobs(tmp_path, state, show_obsolete=False) == (sorted(state.jobs, key=lambda n: (
        n.startswith("finalize"), n)), frozenset(), 0)  # no record of the submission's points: all shown
    record_current(tmp_path, state, points=["train-a", "train-c", "train-d"])
    rows, obsolete, hidden = shown_jobs(tmp_path, state, show_obsolete=False)
    assert rows == ["train-a", "train-c", "train-d"] and hidden == 2  # train-d: not created yet (Waiting)
    assert obsolete == {"train-b", "finalize-g"}
    rows, obsolete, hidden = shown_jobs(tmp_path, state, show_obsolete=True)
    assert rows == ["train-a", "train-b", "train-c", "train-d", "finalize-g"] and hidden == 0
    state.submission = "newer"  # a submission that has not recorded its points yet: nothing is hidden
    assert shown_jobs(tmp_path, state, show_obsolete=False)[1:] == (frozenset(), 0)


def test_warnings_in_words_for_every_code_and_a_code_unknown_here() -> None:
    sentence = warning_sentence("axis_no_effect", {"axis": "lr0", "axis_values": [0.005, 0.01],
                                                   "optimizer_hint": True, "optimizer": "SGD"})
    assert sentence.startswith("lr0 changed nothing: runs that differ only in lr0 (0.005, 0.01)")
    assert "axis_no_effect" not in sentence and "axis_values" not in sentence
    assert warning_sentence("too_few_success", {"n_success": 1, "n_points": 1, "fraction": 1.0, "required": 0.5,
                                                "n_stopped": 0}).startswith("too few successful points: 1 of 1")
    assert warning_sentence("newer_code", {"x": 1}) == "newer_code (x=1)"
    assert warning_sentence("scratch", {"points": None}) == "scratch (points=None)"  # a bad shape never raises
