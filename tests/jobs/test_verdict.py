"""The confirm verdict (jobs/finalize/verdict.py) on synthetic runs: intervals, the winner, the tie rules."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from scipy import stats

from jobs.finalize.gates import decide
from jobs.finalize.gridrules import rules_from_grid_json
from jobs.finalize.ranking import Ranking, rank
from jobs.finalize.records import RunRecord
from jobs.finalize.reporting import EvaluationStatus, ReportInputs, render_markdown, report_data
from jobs.finalize.verdict import ALONE, INSUFFICIENT, TIE, WINNER, t_interval, welch_interval
from tests.jobs.test_ranking import grid_document

SIZES = (320, 416, 512)


def confirm_ranking(objectives: Mapping[int, Sequence[float]], *, tie: str = "no", confidence: float = 0.95,
                    costs: Mapping[int, float] | None = None, latency: Mapping[int, float] | None = None,
                    direction: str = "maximize", language: str = "en") -> Ranking:
    """One configuration per imgsz; its runs are seeds 1, 2, 3... with the objective values given (the other
    points have no run). train_seconds and inference_ms_per_image per imgsz from `costs` and `latency`."""
    seeds = list(range(1, 1 + max(len(v) for v in objectives.values())))
    document = grid_document(axes={"imgsz": list(SIZES), "seed": seeds}, constraints=[],
                             objective={"metric": "mAP50-95", "direction": direction},
                             gates={"min_success_fraction": 0.0, "min_objective": 0.0 if direction == "maximize"
                                    else 1.0},
                             confirm={"top": 2, "seeds": seeds, "confidence": confidence, "tie": tie},
                             report={"language": language})
    rules = rules_from_grid_json(document)
    runs = []
    for point in rules.points:
        imgsz, seed = point.params["imgsz"], point.params["seed"]
        values = objectives.get(imgsz, ())
        if seed > len(values):
            runs.append(RunRecord(point=point.name, params=point.params))
            continue
        metrics = {"mAP50-95": values[seed - 1], "recall": 0.5,
                   "train_seconds": (costs or {}).get(imgsz, 10.0),
                   "inference_ms_per_image": (latency or {}).get(imgsz, 5.0)}
        runs.append(RunRecord(point=point.name, params=point.params, status="FINISHED", run_id=f"run-{point.name}",
                              metrics=metrics, weights_source="pretrained"))
    return rank(runs=runs, rules=rules)


def config_of_candidate(ranking: Ranking) -> int:
    assert ranking.candidate is not None
    return int(ranking.candidate.params["imgsz"])


def test_the_student_interval_of_a_mean() -> None:
    mean, std, low, high = t_interval([0.30, 0.31, 0.32], 0.95)
    half = stats.t.ppf(0.975, 2) * 0.01 / math.sqrt(3)
    assert (mean, std) == pytest.approx((0.31, 0.01))
    assert (low, high) == pytest.approx((0.31 - half, 0.31 + half))
    assert half == pytest.approx(0.024841, abs=1e-6)
    one = t_interval([0.4], 0.95)
    assert one[0] == 0.4 and all(math.isnan(v) for v in one[1:])


def test_welch_matches_scipy() -> None:
    a, b = [0.30, 0.33, 0.31, 0.35], [0.20, 0.29, 0.22]
    difference = welch_interval(a, b, 0.9)
    expected = stats.ttest_ind(a, b, equal_var=False).confidence_interval(confidence_level=0.9)
    assert difference.value == pytest.approx(sum(a) / 4 - sum(b) / 3)
    assert (difference.low, difference.high) == pytest.approx((expected.low, expected.high))
    assert difference.excludes_zero
    exact = welch_interval([0.3, 0.3], [0.2, 0.2], 0.95)  # no spread at all: the difference is exact
    assert (exact.low, exact.high) == pytest.approx((0.1, 0.1)) and exact.excludes_zero
    with pytest.raises(ValueError):
        welch_interval([0.3], [0.2, 0.25], 0.95)


def test_a_clear_winner_is_named_and_promoted() -> None:
    ranking = confirm_ranking({512: [0.30, 0.31, 0.32], 416: [0.20, 0.21, 0.22], 320: [0.10, 0.11, 0.12]})
    verdict = ranking.verdict
    assert verdict is not None and verdict.outcome == WINNER and verdict.separated
    assert [r.config.params["imgsz"] for r in verdict.rows] == [512, 416, 320]
    assert verdict.first is not None and verdict.first.n == 3
    assert (verdict.first.low, verdict.first.high) == pytest.approx((0.31 - 0.024841, 0.31 + 0.024841), abs=1e-6)
    assert verdict.difference is not None and verdict.difference.value == pytest.approx(0.1)
    assert verdict.difference.low > 0
    assert config_of_candidate(ranking) == 512 and ranking.candidate.params["seed"] == 3
    decision = decide(ranking=ranking, candidate=ranking.candidate, champion=None)
    assert decision.promote and decision.gate("confirm").data["outcome"] == WINNER


def test_a_tie_goes_to_the_cheaper_configuration() -> None:
    ranking = confirm_ranking({512: [0.30, 0.20, 0.25], 416: [0.26, 0.22, 0.24], 320: [0.10, 0.11, 0.12]},
                              tie="cheaper", costs={512: 40.0, 416: 25.0})
    verdict = ranking.verdict
    assert verdict is not None and verdict.outcome == TIE and not verdict.separated
    assert verdict.difference is not None and verdict.difference.low < 0 < verdict.difference.high
    assert verdict.tie_metric == "train_seconds" and verdict.tie_values == (40.0, 25.0)
    assert ranking.best is not None and ranking.best.params["imgsz"] == 512  # the better mean...
    assert config_of_candidate(ranking) == 416  # ...but the cheaper one is promoted
    assert decide(ranking=ranking, candidate=ranking.candidate, champion=None).promote


def test_a_tie_goes_to_the_faster_configuration() -> None:
    objectives = {512: [0.30, 0.20, 0.25], 416: [0.26, 0.22, 0.24]}
    faster = confirm_ranking(objectives, tie="faster", costs={512: 40.0, 416: 25.0}, latency={512: 3.0, 416: 7.0})
    assert faster.verdict is not None and faster.verdict.tie_metric == "inference_ms_per_image"
    assert config_of_candidate(faster) == 512
    # equal costs: the better mean is kept
    even = confirm_ranking(objectives, tie="faster", latency={512: 5.0, 416: 5.0})
    assert config_of_candidate(even) == 512


def test_a_tie_with_rule_no_is_a_no() -> None:
    ranking = confirm_ranking({512: [0.30, 0.20, 0.25], 416: [0.26, 0.22, 0.24]}, tie="no")
    verdict = ranking.verdict
    assert verdict is not None and verdict.outcome == TIE and verdict.chosen is None and verdict.reason == TIE
    assert config_of_candidate(ranking) == 512  # still shown (and registered as challenger), not promoted
    decision = decide(ranking=ranking, candidate=ranking.candidate, champion=None)
    assert decision.failed == ("confirm",)
    for language, words in (("en", "cannot be separated on this data"), ("fr", "ne peuvent pas être départagées")):
        markdown = render(confirm_ranking({512: [0.30, 0.20, 0.25], 416: [0.26, 0.22, 0.24]}, language=language))
        assert words in markdown and "`no`" in markdown
        assert ("no promotion" if language == "en" else "pas de promotion") in markdown


def test_a_configuration_with_one_run_is_listed_never_judged() -> None:
    ranking = confirm_ranking({320: [0.90], 512: [0.30, 0.31, 0.32], 416: [0.20, 0.21, 0.22]})
    verdict = ranking.verdict
    assert verdict is not None and [c.params["imgsz"] for c in verdict.single] == [320]
    assert 320 not in [r.config.params["imgsz"] for r in verdict.rows]
    assert ranking.best is not None and ranking.best.params["imgsz"] == 320  # rank 1 on one lucky run
    assert verdict.outcome == WINNER and config_of_candidate(ranking) == 512
    markdown = render(ranking)
    assert "Not judged (one run only): imgsz=320" in markdown


def test_one_configuration_with_repeats_is_alone_none_is_insufficient() -> None:
    alone = confirm_ranking({512: [0.30, 0.31], 416: [0.40]})
    assert alone.verdict is not None and alone.verdict.outcome == ALONE
    assert config_of_candidate(alone) == 512
    assert decide(ranking=alone, candidate=alone.candidate, champion=None).promote
    none = confirm_ranking({512: [0.30], 416: [0.40]})
    assert none.verdict is not None and none.verdict.outcome == INSUFFICIENT and none.verdict.first is None
    assert config_of_candidate(none) == 416  # the best ranked one is shown
    assert decide(ranking=none, candidate=none.candidate, champion=None).failed == ("confirm",)


def test_minimizing_the_best_is_the_lowest_mean() -> None:
    ranking = confirm_ranking({512: [0.30, 0.31, 0.32], 416: [0.20, 0.21, 0.22]}, direction="minimize")
    verdict = ranking.verdict
    assert verdict is not None and verdict.outcome == WINNER and verdict.first is not None
    assert verdict.first.config.params["imgsz"] == 416
    assert verdict.difference is not None and verdict.difference.value == pytest.approx(-0.1)
    assert verdict.difference.high < 0


def render(ranking: Ranking) -> str:
    decision = decide(ranking=ranking, candidate=ranking.candidate, champion=None)
    data = report_data(ReportInputs(ranking=ranking, decision=decision, candidate=ranking.candidate, champion=None,
                                    parent_run_id="p", generated_at="2026-01-01T00:00:00+00:00",
                                    test=EvaluationStatus(evaluated=False, reason="synthetic")))
    markdown = render_markdown(data=data)
    assert "{{" not in markdown and "{%" not in markdown
    return markdown


@pytest.mark.parametrize("language", ["en", "fr"])
def test_the_report_shows_the_table_the_difference_and_the_verdict(language: str) -> None:
    ranking = confirm_ranking({512: [0.30, 0.31, 0.32], 416: [0.20, 0.21, 0.22]}, language=language)
    markdown = render(ranking)
    heading = "## Confirmation — " + ("is the best" if language == "en" else "la meilleure")
    start = markdown.index(heading)
    assert start < markdown.index("## 2. ")
    section = markdown[start:markdown.index("## 2. ")]
    assert "| imgsz=512 | 3 | 0.3100 | [0.2852, 0.3348] |" in section
    assert "0.1000" in section and ("Welch interval [" if language == "en" else "intervalle de Welch à 95 % [") \
        in section
    assert ("is the named winner" if language == "en" else "est désignée gagnante") in section
    decision = markdown[markdown.index("## 5. "):]
    assert "| confirm |" in decision


def test_decision_json_holds_the_verdict() -> None:
    ranking = confirm_ranking({512: [0.30, 0.20, 0.25], 416: [0.26, 0.22, 0.24]}, tie="cheaper",
                              costs={512: 40.0, 416: 25.0})
    decision = decide(ranking=ranking, candidate=ranking.candidate, champion=None)
    data: dict[str, Any] = report_data(ReportInputs(
        ranking=ranking, decision=decision, candidate=ranking.candidate, champion=None, parent_run_id="p",
        generated_at="2026-01-01T00:00:00+00:00"))
    confirm = data["confirm"]
    assert confirm["outcome"] == "tie" and confirm["chosen"] == "imgsz=416" and confirm["tie_settled_by"] == "metric"
    assert [r["label"] for r in confirm["rows"]] == ["imgsz=512", "imgsz=416"]
    assert confirm["difference"]["low"] < 0 < confirm["difference"]["high"]
    assert data["candidate"]["configuration"] == "imgsz=416"
