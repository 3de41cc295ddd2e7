"""Two objectives (jobs/finalize/pareto.py): the front, the tolerance rule, constraints, the report and plot."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from jobs.finalize import plotting
from jobs.finalize.gates import decide
from jobs.finalize.gridrules import rules_from_grid_json
from jobs.finalize.pareto import dominates, pareto_front
from jobs.finalize.ranking import Ranking, rank
from jobs.finalize.records import RunRecord
from jobs.finalize.reporting import EvaluationStatus, ReportInputs, render_markdown, report_data
from tests.jobs.test_ranking import grid_document

MAX, MIN = 1.0, -1.0
# imgsz -> (mAP50-95, train_seconds, recall): bigger is better and dearer
CONFIGS = {320: (0.30, 10.0, 0.5), 416: (0.32, 20.0, 0.5), 512: (0.33, 40.0, 0.5), 640: (0.31, 45.0, 0.5)}


def two_objective_ranking(*, tolerance: float, configs: Mapping[int, tuple[float, float, float]] = CONFIGS,
                          language: str = "en", seeds: int = 1, **spec: Any) -> Ranking:
    """`seeds` runs per configuration (seed i adds 0.001 x i to the objective), the second objective
    train_seconds (minimised)."""
    axes: dict[str, list[Any]] = {"imgsz": list(configs), **({"seed": list(range(1, seeds + 1))} if seeds > 1 else {})}
    document = grid_document(axes=axes, report={"language": language},
                             objective={"metric": "mAP50-95", "direction": "maximize",
                                        "second": {"metric": "train_seconds", "tolerance": tolerance}}, **spec)
    rules = rules_from_grid_json(document)
    runs = []
    for p in rules.points:
        objective, seconds, recall = configs[p.params["imgsz"]]
        runs.append(RunRecord(point=p.name, params=p.params, status="FINISHED", run_id=f"run-{p.name}",
                              metrics={"mAP50-95": objective + 0.001 * p.params.get("seed", 0),
                                       "train_seconds": seconds, "recall": recall}, weights_source="pretrained"))
    return rank(runs=runs, rules=rules)


def chosen_imgsz(ranking: Ranking) -> int:
    assert ranking.candidate is not None
    return int(ranking.candidate.params["imgsz"])


def test_dominance_and_the_front() -> None:
    assert dominates((0.5, 10), (0.4, 30), signs=(MAX, MIN))
    assert not dominates((0.5, 10), (0.5, 10), signs=(MAX, MIN))  # equal points do not dominate each other
    assert not dominates((0.6, 20), (0.5, 10), signs=(MAX, MIN))  # a trade-off
    values = [(0.5, 10.0), (0.6, 20.0), (0.4, 30.0), (0.6, 20.0), (math.nan, 1.0), (0.7, math.inf)]
    assert pareto_front(values, signs=(MAX, MIN)) == [0, 1, 3]
    assert pareto_front(values[:4], signs=(MAX, MAX)) == [1, 2, 3]  # both maximised
    assert pareto_front([], signs=(MAX, MIN)) == []


def test_the_rule_takes_the_best_second_within_the_tolerance() -> None:
    exact = two_objective_ranking(tolerance=0.0)
    pareto = exact.pareto
    assert pareto is not None
    assert [p.config.params["imgsz"] for p in pareto.front] == [512, 416, 320]  # 640 is dominated by 512
    assert pareto.best_first == pytest.approx(0.33)
    assert chosen_imgsz(exact) == 512
    assert chosen_imgsz(two_objective_ranking(tolerance=0.01)) == 416  # 0.32 is within 0.01 of 0.33
    assert chosen_imgsz(two_objective_ranking(tolerance=0.02)) == 416  # 0.30 is not within 0.02
    assert chosen_imgsz(two_objective_ranking(tolerance=0.05)) == 320
    within = {p.config.params["imgsz"] for p in two_objective_ranking(tolerance=0.02).pareto.points if p.within}
    assert within == {512, 416}
    assert two_objective_ranking(tolerance=0.0).best.params["imgsz"] == 512  # the ranking itself is unchanged


def test_constraints_still_apply() -> None:
    configs = {**CONFIGS, 320: (0.30, 10.0, 0.1)}  # the cheapest breaks recall >= 0.2
    ranking = two_objective_ranking(tolerance=0.05, configs=configs)
    pareto = ranking.pareto
    assert pareto is not None
    cheap = next(p for p in pareto.points if p.config.params["imgsz"] == 320)
    assert not cheap.eligible and not cheap.on_front
    assert chosen_imgsz(ranking) == 416
    assert decide(ranking=ranking, candidate=ranking.candidate, champion=None).promote


def test_a_second_metric_never_logged_falls_back_to_the_ranking() -> None:
    configs = {k: (v[0], math.nan, v[2]) for k, v in CONFIGS.items()}
    ranking = two_objective_ranking(tolerance=0.05, configs=configs)
    assert ranking.pareto is not None and ranking.pareto.chosen is None and not ranking.pareto.front
    assert chosen_imgsz(ranking) == 512


def test_the_confirm_verdict_takes_precedence() -> None:
    ranking = two_objective_ranking(tolerance=0.05, seeds=2, confirm={"seeds": [1, 2], "tie": "no"})
    assert ranking.pareto is not None and ranking.pareto.chosen is not None
    assert ranking.pareto.chosen.params["imgsz"] == 320  # the Pareto rule's pick...
    assert ranking.verdict is not None and ranking.verdict.outcome == "winner"
    assert chosen_imgsz(ranking) == 512  # ...gives way to the confirmed winner
    assert decide(ranking=ranking, candidate=ranking.candidate, champion=None).promote
    # one run per configuration: no verdict, no promotion; the Pareto pick is the candidate shown
    single = two_objective_ranking(tolerance=0.05, confirm={"seeds": [1, 2], "tie": "no"})
    assert single.verdict is not None and single.verdict.outcome == "insufficient"
    assert chosen_imgsz(single) == 320
    assert decide(ranking=single, candidate=single.candidate, champion=None).failed == ("confirm",)


@pytest.mark.parametrize("language", ["en", "fr"])
def test_the_report_states_the_rule_and_marks_the_candidate(language: str, tmp_path: Path) -> None:
    ranking = two_objective_ranking(tolerance=0.02, language=language)
    plots = plotting.write_plots(ranking=ranking, directory=tmp_path)
    assert plots[-1] == "plots/pareto_front.png"
    with Image.open(tmp_path / plots[-1]) as image:
        assert image.format == "PNG" and image.size[0] > 300
    decision = decide(ranking=ranking, candidate=ranking.candidate, champion=None)
    data = report_data(ReportInputs(ranking=ranking, decision=decision, candidate=ranking.candidate, champion=None,
                                    parent_run_id="p", generated_at="2026-01-01T00:00:00+00:00", plots=plots,
                                    test=EvaluationStatus(evaluated=False, reason="synthetic")))
    assert data["pareto"]["front"] == ["imgsz=512", "imgsz=416", "imgsz=320"]
    assert data["pareto"]["chosen"] == "imgsz=416" and data["pareto"]["plots"] == ["plots/pareto_front.png"]
    markdown = render_markdown(data=data)
    assert "{{" not in markdown and "{%" not in markdown
    heading = "## Two objectives — mAP50-95 and train_seconds" if language == "en" else \
        "## Deux objectifs — mAP50-95 et train_seconds"
    section = markdown[markdown.index(heading):markdown.index("## 2. ")]
    candidate = "candidate" if language == "en" else "candidat"
    assert f"| imgsz=416 ← {candidate} | 0.3200 | 20.00 | ✅ | ✅ |" in section
    assert "| imgsz=640 | 0.3100 | 45.00 | — | — |" in section
    assert ("within 0.0200 of the best on the front (0.3300)" if language == "en"
            else "à moins de 0.0200 du meilleur du front (0.3300)") in section
    assert "![plots/pareto_front.png](plots/pareto_front.png)" in section
