"""The champion gate's statistics (jobs.finalize.champion) and its rule (gates.champion_gate), on made-up
per-image detections: no model, no server."""

from __future__ import annotations

import time

import numpy as np
import pytest

from jobs.finalize.champion import ImageStats, PairedComparison, box_metric, candidate_wins, paired_bootstrap
from jobs.finalize.gates import champion_gate
from jobs.finalize.ranking import rank
from jobs.finalize.records import ChampionInfo
from tests.jobs.test_ranking import lab_rules, make_runs

IOUS = 10


def image(*, boxes: int, found: int, false: int = 0, conf: float = 0.9, iou_steps: int = IOUS) -> ImageStats:
    """`boxes` labelled persons; `found` of them detected (matched at the first `iou_steps` IoU thresholds),
    plus `false` detections that match nothing."""
    tp = np.zeros((found + false, IOUS), dtype=bool)
    tp[:found, :iou_steps] = True
    confidences = np.concatenate([np.full(found, conf), np.full(false, conf / 2)])
    return ImageStats(tp=tp, conf=confidences, pred_cls=np.zeros(found + false), target_cls=np.zeros(boxes))


def split(stats: list[ImageStats]) -> dict[str, ImageStats]:
    return {f"images/test/{i:03d}.jpg": s for i, s in enumerate(stats)}


def test_a_metric_over_images_is_ultralytics_own() -> None:
    """box_metric on all images gives what ultralytics' DetMetrics reports when its validator fed it the
    same images."""
    from ultralytics.utils.metrics import DetMetrics

    rng = np.random.default_rng(3)
    stats = [image(boxes=int(rng.integers(1, 6)), found=int(rng.integers(0, 2)), false=int(rng.integers(0, 4)),
                   conf=float(rng.uniform(0.2, 0.9)), iou_steps=int(rng.integers(1, IOUS + 1))) for _ in range(10)]
    metrics = DetMetrics(names={0: "person"})
    for number, s in enumerate(stats):
        metrics.update_stats({"tp": s.tp, "conf": s.conf, "pred_cls": s.pred_cls, "target_cls": s.target_cls,
                              "target_img": np.unique(s.target_cls), "im_name": f"{number}.jpg"})
    metrics.process()
    assert box_metric(stats, "mAP50-95") == pytest.approx(metrics.box.map)
    assert box_metric(stats, "mAP50") == pytest.approx(metrics.box.map50)
    assert box_metric(stats, "precision") == pytest.approx(metrics.box.mp)
    assert box_metric(stats, "recall") == pytest.approx(metrics.box.mr)
    assert 0 < metrics.box.map < 1


def test_a_candidate_that_finds_every_box_is_separated_from_one_that_finds_none() -> None:
    names = [image(boxes=3, found=0, false=2) for _ in range(10)]
    candidate = split([image(boxes=3, found=3) for _ in range(10)])
    started = time.perf_counter()
    comparison = paired_bootstrap(candidate=candidate, champion=split(names), metric="mAP50-95")
    print(f"\n1000 paired resamples of 10 images: {time.perf_counter() - started:.2f} s")
    assert comparison.candidate == pytest.approx(1.0, abs=0.01) and comparison.champion == 0.0
    assert comparison.improvement == pytest.approx(1.0, abs=0.01)
    assert comparison.low > 0.9 and comparison.separated
    assert (comparison.n_images, comparison.n_boxes, comparison.resamples) == (10, 30, 1000)
    assert candidate_wins(comparison=comparison, margin=0.05)
    assert not candidate_wins(comparison=comparison, margin=1.0)  # a margin it cannot clear


def test_two_models_each_better_on_half_the_images_cannot_be_separated() -> None:
    candidate = split([image(boxes=3, found=3 if i < 5 else 0, false=0 if i < 5 else 2) for i in range(10)])
    champion = split([image(boxes=3, found=0 if i < 5 else 3, false=2 if i < 5 else 0) for i in range(10)])
    comparison = paired_bootstrap(candidate=candidate, champion=champion, metric="mAP50-95", confidence=0.95)
    assert abs(comparison.improvement) < 0.05
    assert comparison.low < 0 < comparison.high and not comparison.separated
    assert comparison.resolvable == pytest.approx((comparison.high - comparison.low) / 2)
    assert comparison.resolvable > 0.2  # 10 images cannot resolve small differences
    assert not candidate_wins(comparison=comparison, margin=0.0)  # not separable: the champion stays


def test_the_resampling_is_paired_and_deterministic() -> None:
    """The same images are drawn for both models: two equal models differ by exactly 0 in every resample,
    however much the metric itself moves between resamples."""
    rng = np.random.default_rng(5)
    stats = split([image(boxes=int(rng.integers(1, 5)), found=int(rng.integers(0, 2)), false=int(rng.integers(0, 3)),
                         conf=float(rng.uniform(0.1, 0.9))) for _ in range(10)])
    same = paired_bootstrap(candidate=stats, champion=dict(stats), metric="mAP50")
    assert (same.low, same.high, same.improvement) == (0.0, 0.0, 0.0)
    worse = {k: image(boxes=s.n_boxes, found=0, false=1) for k, s in stats.items()}
    first = paired_bootstrap(candidate=stats, champion=worse, metric="mAP50", resamples=200, seed=7)
    again = paired_bootstrap(candidate=stats, champion=worse, metric="mAP50", resamples=200, seed=7)
    assert first == again and first.low < first.improvement < first.high
    narrower = paired_bootstrap(candidate=stats, champion=worse, metric="mAP50", resamples=200, seed=7,
                                confidence=0.5)
    assert first.low < narrower.low and narrower.high < first.high


def test_a_bootstrap_refuses_different_images_or_a_metric_not_on_the_test_images() -> None:
    stats = split([image(boxes=2, found=1)] * 3)
    with pytest.raises(ValueError, match="same images"):
        paired_bootstrap(candidate=stats, champion=dict(list(stats.items())[:2]), metric="mAP50-95")
    with pytest.raises(ValueError, match="train_seconds"):
        paired_bootstrap(candidate=stats, champion=stats, metric="train_seconds")


def comparison(*, improvement: float, low: float, high: float) -> PairedComparison:
    return PairedComparison(metric="mAP50-95", candidate=0.3 + improvement, champion=0.3, improvement=improvement,
                            low=low, high=high, confidence=0.95, resamples=1000, n_images=10, n_boxes=30)


def test_the_gate_keeps_the_champion_unless_the_candidate_is_better_with_the_stated_confidence() -> None:
    rules = lab_rules(gates={"min_success_fraction": 0.75, "min_objective": 0.05, "champion_margin": 0.01})
    ranking = rank(runs=make_runs(rules), rules=rules)
    candidate = ranking.candidate
    base = ChampionInfo(version="3", run_id="old-run", model="lab-model", metrics={"mAP50-95": 0.01})

    clear = champion_gate(ranking=ranking, candidate=candidate, champion=ChampionInfo(
        **{**vars(base), "comparison": comparison(improvement=0.05, low=0.02, high=0.08)}))
    assert clear.passed and clear.data["status"] == "compared" and clear.data["basis"] == "test"
    assert clear.data["separated"] and clear.data["rule"] == "low_above_margin"
    assert {k: clear.data[k] for k in ("n_images", "n_boxes", "resamples", "confidence", "margin")} == \
        {"n_images": 10, "n_boxes": 30, "resamples": 1000, "confidence": 0.95, "margin": 0.01}
    assert clear.data["resolvable"] == pytest.approx(0.03)

    # ahead, separated from 0, but not by more than the margin with the stated confidence
    short = champion_gate(ranking=ranking, candidate=candidate, champion=ChampionInfo(
        **{**vars(base), "comparison": comparison(improvement=0.03, low=0.005, high=0.06)}))
    assert not short.passed and short.data["separated"]
    noise = champion_gate(ranking=ranking, candidate=candidate, champion=ChampionInfo(
        **{**vars(base), "comparison": comparison(improvement=-0.03, low=-0.09, high=0.04)}))
    assert not noise.passed and not noise.data["separated"] and noise.data["improvement"] == -0.03

    # the champion's stored val metric (another run, another split) is never compared with
    stored = champion_gate(ranking=ranking, candidate=candidate, champion=base)
    assert not stored.passed and stored.data["status"] == "not_comparable" and stored.data["reason"] == "not_evaluated"


def test_a_champion_that_is_gone_is_as_no_champion_with_a_note() -> None:
    rules = lab_rules()
    ranking = rank(runs=make_runs(rules), rules=rules)
    gone = ChampionInfo(version="4", run_id="a" * 32, model="lab-model", missing="run",
                        detail="no such run (RESOURCE_DOES_NOT_EXIST)")
    gate = champion_gate(ranking=ranking, candidate=ranking.candidate, champion=gone)
    assert gate.passed and gate.data["status"] == "unavailable" and gate.data["missing"] == "run"
    note = gate.data["note"]
    assert "lab-model" in note and "@champion" in note and "version 4" in note and "run" in note and "a" * 32 in note
    weights = ChampionInfo(version="4", run_id="b" * 32, model="lab-model", missing="weights",
                           detail="no weights/best.pt among the run's artifacts")
    assert "weights" in champion_gate(ranking=ranking, candidate=ranking.candidate, champion=weights).data["note"]
