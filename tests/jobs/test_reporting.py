"""The decision report in both languages, decision.json, runs.csv and the plots (no MLflow)."""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from jobs.finalize import plotting
from jobs.finalize.gates import decide
from jobs.finalize.ranking import Ranking, rank
from jobs.finalize.records import ChampionInfo
from jobs.finalize.reporting import EvaluationStatus, ReportInputs, render_markdown, report_data, runs_csv, write_report
from tests.jobs.test_ranking import lab_metrics, lab_rules, make_runs

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SECTIONS = {
    "en": ["# Promotion decision", "## 1. Objective and constraints", "## 2. Promoted candidate",
           "## 3. Alternatives — pros and cons", "## 4. Risks and mitigations", "## 5. Decision",
           "## 6. Next steps", "**Short term**", "**Medium term**", "**Long term**",
           "## Appendix A — configurations (mean ± std over seeds)", "## Appendix B — what each axis did",
           "## Appendix C — warnings", "## Appendix D — plots and files"],
    "fr": ["# Décision de promotion", "## 1. Objectifs et contraintes", "## 2. Candidat promu",
           "## 3. Arguments pour et contre — alternatives", "## 4. Risques et mitigations",
           "## 5. Décision finale", "## 6. Étapes suivantes", "**Court terme**", "**Moyen terme**",
           "**Long terme**", "## Annexe A — configurations (moyenne ± écart-type sur les seeds)",
           "## Annexe B — effet de chaque axe", "## Annexe C — avertissements",
           "## Annexe D — graphiques et fichiers"],
}


def lab_ranking(*, language: str = "en", metrics: Any = lab_metrics, **runs_options: Any) -> Ranking:
    rules = lab_rules(report={"language": language})
    return rank(runs=make_runs(rules, metrics, **runs_options), rules=rules)


def build(ranking: Ranking, *, champion: ChampionInfo | None = None, plots: tuple[str, ...] = (),
          registry: Mapping[str, Any] | None = None) -> dict[str, Any]:
    decision = decide(ranking=ranking, candidate=ranking.candidate, champion=champion)
    return report_data(ReportInputs(
        ranking=ranking, decision=decision, candidate=ranking.candidate, champion=champion,
        parent_run_id="parent123", generated_at="2025-01-01T00:00:00+00:00", plots=plots, registry=registry,
        test=EvaluationStatus(evaluated=False, reason="no dataset here")))


def section(markdown: str, heading: str) -> str:
    """The text under `heading`, up to the next heading of the same or a higher level."""
    level = heading.split(" ")[0]
    start = markdown.index(heading)
    following = re.search(rf"^#{{1,{len(level)}}} ", markdown[start + len(heading):], flags=re.MULTILINE)
    return markdown[start:start + len(heading) + following.start()] if following else markdown[start:]


@pytest.mark.parametrize("language", ["en", "fr"])
def test_the_report_has_every_section_of_the_lab_template(language: str) -> None:
    ranking = lab_ranking(language=language, metrics=lambda p: lab_metrics({**p, "lr0": 0.005}))
    markdown = render_markdown(data=build(ranking, plots=("plots/objective_by_configuration.png",)))
    positions = [markdown.index(heading) for heading in SECTIONS[language]]
    assert positions == sorted(positions), "sections out of order"
    candidate = ranking.candidate
    promoted = section(markdown, SECTIONS[language][2])
    assert candidate.run_id in promoted and "imgsz=416" in promoted and "0.1320" in promoted
    alternatives = section(markdown, SECTIONS[language][3])
    assert alternatives.count("### ") == 3 and "➖" in alternatives
    risks = section(markdown, SECTIONS[language][4])
    assert len([line for line in risks.splitlines() if line.startswith("| ") and "---" not in line]) == 5  # header + 4
    decision = section(markdown, SECTIONS[language][5])
    assert ("YES ✅" if language == "en" else "OUI ✅") in decision
    gates = ("success_fraction", "candidate", "constraints", "min_objective", "champion")
    assert all(gate in decision for gate in gates)
    configurations = section(markdown, SECTIONS[language][10])
    assert "0.1310 ± 0.0014" in configurations  # mean ± std of the best configuration
    warnings = section(markdown, SECTIONS[language][12])
    assert "lr0" in warnings and ("changed nothing" if language == "en" else "n'a rien changé") in warnings
    assert "![plots/objective_by_configuration.png](plots/objective_by_configuration.png)" in markdown
    assert "{{" not in markdown and "{%" not in markdown


@pytest.mark.parametrize("language", ["en", "fr"])
def test_a_no_names_the_failed_gates_and_what_would_change_it(language: str) -> None:
    ranking = lab_ranking(language=language)
    champion = ChampionInfo(version="7", run_id="older", metrics={"mAP50-95": 0.4})
    markdown = render_markdown(data=build(ranking, champion=champion))
    decision = section(markdown, SECTIONS[language][5])
    assert ("NO ❌" if language == "en" else "NON ❌") in decision
    assert "champion" in decision and "0.4000" in decision and "v7" in decision
    assert ("What would change the answer" if language == "en" else "Ce qui changerait la réponse") in decision


def test_risks_are_fitted_to_the_grid() -> None:
    scratch = build(lab_ranking(weights_source="scratch"))
    codes = [r["code"] for r in scratch["risks"]]
    assert len(codes) == 4 and codes[0] == "scratch_weights"
    assert "pretraining_overlap" not in codes
    pretrained = [r["code"] for r in build(lab_ranking())["risks"]]
    assert len(pretrained) == 4 and "scratch_weights" not in pretrained
    assert "untested" in pretrained and "pretraining_overlap" in pretrained


def test_decision_json_is_strict_json_with_the_whole_analysis(tmp_path: Path) -> None:
    ranking = lab_ranking(status={"train-320-0.01-42": "FAILED"})
    data = build(ranking, registry={"name": "m", "version": "2", "champion_moved": True, "previous_champion": "1"})
    markdown = render_markdown(data=data)
    files = write_report(directory=tmp_path / "tp4-lab", data=data, markdown=markdown, csv_text=runs_csv(ranking))
    assert [f.name for f in files] == ["decision.md", "decision.json", "runs.csv"]

    def no_constant(name: str) -> None:
        raise AssertionError(f"{name} in decision.json")

    loaded = json.loads((tmp_path / "tp4-lab" / "decision.json").read_text(), parse_constant=no_constant)
    assert loaded["decision"]["verdict"] == "YES" and loaded["candidate"]["run_id"] == ranking.candidate.run_id
    single = next(c for c in loaded["configs"] if c["label"] == "imgsz=320, lr0=0.01")
    assert single["n"] == 1 and single["stats"]["mAP50-95"]["std"] is None
    assert loaded["unranked"] == [{"point": "train-320-0.01-42", "run_id": "run-train-320-0.01-42",
                                   "status": "FAILED", "reason": "failed", "url": None}]
    assert {e["axis"] for e in loaded["effects"]} == {"imgsz", "lr0"}
    assert "version 2" in markdown and "previous champion: version 1" in markdown


def test_runs_csv_has_every_point_once() -> None:
    ranking = lab_ranking(status={"train-320-0.01-42": "FAILED", "train-320-0.01-1": "MISSING"})
    rows = list(csv.DictReader(io.StringIO(runs_csv(ranking))))
    assert [r["point"] for r in rows] == [p.name for p in ranking.rules.points]
    by_point = {r["point"]: r for r in rows}
    assert by_point["train-320-0.01-42"]["unranked_reason"] == "failed"
    assert by_point["train-320-0.01-1"]["run_id"] == "" and by_point["train-320-0.01-1"]["status"] == "MISSING"
    assert by_point[ranking.candidate.point]["candidate"] == "yes"
    assert by_point[ranking.candidate.point]["config_rank"] == "1"
    assert math.isclose(float(by_point["train-416-0.01-42"]["mAP50-95"]), 0.142)


def test_plots_are_valid_pngs(tmp_path: Path) -> None:
    ranking = lab_ranking(status={"train-320-0.01-42": "FAILED"})
    written = plotting.write_plots(ranking=ranking, directory=tmp_path)
    assert written == ["plots/objective_by_configuration.png", "plots/metrics_vs_imgsz.png",
                       "plots/metrics_vs_lr0.png", "plots/metrics_vs_seed.png"]
    for relative in written:
        path = tmp_path / relative
        assert path.read_bytes()[:8] == PNG_SIGNATURE
        with Image.open(path) as image:
            image.verify()
        with Image.open(path) as image:
            assert image.format == "PNG" and image.size[0] > 300 and image.size[1] > 200


def test_no_successful_run_still_gives_a_report() -> None:
    ranking = lab_ranking(status={p: "FAILED" for p in [p.name for p in lab_rules().points]})
    data = build(ranking)
    assert data["candidate"] is None and data["decision"]["failed_gates"] == ["success_fraction", "candidate"]
    for language in ("en", "fr"):
        markdown = render_markdown(data={**data, "language": language})
        assert all(heading in markdown for heading in SECTIONS[language])
    assert plotting.write_plots(ranking=ranking, directory=Path("/nonexistent")) == []


def test_a_candidate_with_test_metrics_keeps_its_configuration() -> None:
    import dataclasses

    ranking = lab_ranking()
    evaluated = dataclasses.replace(ranking.candidate, metrics={**ranking.candidate.metrics, "test_mAP50-95": 0.2})
    decision = decide(ranking=ranking, candidate=evaluated, champion=None)
    data = report_data(ReportInputs(
        ranking=ranking, decision=decision, candidate=evaluated, champion=None, parent_run_id="p",
        generated_at="2025-01-01T00:00:00+00:00", plots=(), registry=None,
        test=EvaluationStatus(evaluated=True, reason="")))
    assert data["candidate"]["configuration"] == "imgsz=416, lr0=0.01"
    assert data["candidate"]["metrics"]["mAP50-95"]["config"] is not None
