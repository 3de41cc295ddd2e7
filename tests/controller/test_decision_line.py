"""The one-line decision (`submit-grid`, `finalize`) and `report`'s summary, from decision.json files the
real finalizer (`python -m jobs.finalize`) writes on a real MLflow store, from runs logged with made-up
metrics (no training): a separated winner, a tie decided by the tie rule, a NO with its failed gate, and
a file from before `separation` existed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from contract.decision import DECISION_JSON, Decision, parse_decision, read_decision
from contract.errors import InvalidInput
from controller.core.summary import decision_line, decision_lines
from jobs.common.tracking import make_client
from tests.jobs.test_finalize import finalize, log_train_run, point_metrics, submit

pytestmark = pytest.mark.slow
REPORT = "reports/tiny-grid/decision.md"


def decided(tmp_path: Path, objective: dict[tuple[int, int], float], **overrides: Any) -> Decision:
    """The finalizer's decision.json for the 2 x 2 grid imgsz [64, 96] x seed [1, 2] whose runs scored
    `objective[(imgsz, seed)]` (mAP50-95) and took imgsz / 32 s to train."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = make_client(uri=uri)
    grid, points, experiment_id, parent_id = submit(client, tmp_path, **overrides)
    for point in points:
        imgsz, seed = point.params["imgsz"], point.params["seed"]
        log_train_run(client, experiment_id=experiment_id, parent_id=parent_id, grid=grid, point=point,
                      metrics={**point_metrics(point), "mAP50-95": objective[imgsz, seed], "train_seconds": imgsz / 32})
    done = finalize(uri, "--parent-run-id", parent_id, "--reports-dir", str(tmp_path / "reports"),
                    "--no-test-eval", "--no-register")
    assert done.returncode == 0, done.stderr
    return read_decision(tmp_path / "reports" / grid.name / DECISION_JSON)


def candidate_of(decision: Decision, configuration: str) -> str:
    """The candidate's point, which must be one of `configuration`'s seeds (e.g. train-96-0.01-)."""
    assert decision.candidate is not None and decision.candidate.point is not None
    assert decision.candidate.point.startswith(configuration), decision.candidate
    return decision.candidate.point


APART = {(64, 1): 0.101, (64, 2): 0.102, (96, 1): 0.301, (96, 2): 0.302}  # 0.2 apart, spread 0.0007
CLOSE = {(64, 1): 0.21, (64, 2): 0.24, (96, 1): 0.20, (96, 2): 0.26}  # means 0.225 and 0.23, spread 0.02-0.04


def test_a_separated_winner(tmp_path: Path) -> None:
    decision = decided(tmp_path, APART)
    assert decision.separation is not None and decision.separation.outcome == "winner"
    candidate = candidate_of(decision, "train-96-0.01-")
    assert decision_line(decision, report=REPORT) == (
        f"decision: YES — {candidate} (separated from the runner-up) — {REPORT}")
    assert f"{candidate}: separated from the runner-up" in decision_lines(decision)


def test_a_tie_says_so_and_names_the_tie_rule(tmp_path: Path) -> None:
    decision = decided(tmp_path, CLOSE, gates={"min_objective": 0.05, "tie": "cheaper"})
    assert decision.separation is not None and decision.separation.outcome == "tie"
    candidate = candidate_of(decision, "train-64-0.01-")  # the cheaper: imgsz 64 trains faster
    assert decision_line(decision, report=REPORT) == (
        f"decision: YES — {candidate} (cannot be separated from the runner-up; tie rule: cheaper) — {REPORT}")


def test_a_no_names_its_failed_gates(tmp_path: Path) -> None:
    decision = decided(tmp_path, APART, gates={"min_objective": 0.5})
    candidate = candidate_of(decision, "train-96-0.01-")
    assert decision_line(decision, report=REPORT) == (
        f"decision: NO — {candidate} (separated from the runner-up) — failed gates: min_objective — {REPORT}")


def test_a_file_without_separation_is_not_assessed(tmp_path: Path) -> None:
    decided(tmp_path, APART)
    raw = json.loads((tmp_path / "reports" / "tiny-grid" / DECISION_JSON).read_text())
    raw.pop("separation", None)  # as the finalizer wrote it before issue 19
    decision = parse_decision(raw, source="old decision.json")
    assert decision.separation is None
    assert decision_line(decision, report=REPORT) == (
        f"decision: YES — {candidate_of(decision, 'train-96-0.01-')} (separation not assessed) — {REPORT}")


def test_a_field_of_the_wrong_type_is_named(tmp_path: Path) -> None:
    path = tmp_path / DECISION_JSON
    path.write_text(json.dumps({"decision": {"verdict": "YES", "failed_gates": 3}}))
    with pytest.raises(InvalidInput, match=r"decision.json: decision.failed_gates"):
        read_decision(path)
    path.write_text("{not json")
    with pytest.raises(InvalidInput, match="not valid JSON"):
        read_decision(path)
