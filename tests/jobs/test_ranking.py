"""Ranking, axis effects, warnings and gates on synthetic run tables (no MLflow, no training)."""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from jobs.finalize.champion import PairedComparison
from jobs.finalize.comparing import alternatives
from jobs.finalize.gates import decide
from jobs.finalize.gridrules import GridRules, GridSpecError, rules_from_grid_json
from jobs.finalize.ranking import Exclusion, rank
from jobs.finalize.records import ChampionInfo, RunRecord

LAB_AXES = {"imgsz": [320, 416], "lr0": [0.005, 0.01], "seed": [1, 42]}


def grid_document(*, axes: Mapping[str, list[Any]] | None = None, **spec: Any) -> dict[str, Any]:
    """grid.json in grid.yaml's shape (objective/gates/report sections), with every point of the axes."""
    axes = dict(axes or LAB_AXES)
    names = list(axes)
    points = [{"name": "train-" + "-".join(str(v) for v in values), "spec_hash": f"hash{i:02d}",
               "params": dict(zip(names, values, strict=True))}
              for i, values in enumerate(itertools.product(*axes.values()))]
    base = {"name": "tp4-lab", "experiment": "cv_yolo_tiny", "axes": axes,
            "dataset": {"path": "data/tiny_coco"}, "model": {"weights": "yolov8n.pt",
                                                             "registered_name": "tp4-person-detector"},
            "train": {"epochs": 3, "optimizer": "SGD"},
            "objective": {"metric": "mAP50-95", "direction": "maximize"},
            "constraints": [{"metric": "recall", "min": 0.2}],
            "gates": {"min_success_fraction": 0.75, "min_objective": 0.05, "champion_margin": 0.0},
            "report": {"language": "en"}}
    return {"spec": {**base, **spec}, "points": points}


def lab_rules(**spec: Any) -> GridRules:
    return rules_from_grid_json(grid_document(**spec))


Metrics = Callable[[Mapping[str, Any]], Mapping[str, float]]


def lab_metrics(params: Mapping[str, Any]) -> dict[str, float]:
    """imgsz helps a lot, lr0 a little, the seed adds a small wobble."""
    objective = 0.10 + (0.03 if params["imgsz"] == 416 else 0.0) + (0.01 if params["lr0"] == 0.01 else 0.0) \
        + (0.002 if params["seed"] == 42 else 0.0)
    return {"mAP50-95": objective, "mAP50": 2 * objective, "precision": 0.4, "recall": 0.5,
            "train_seconds": 10.0 + params["imgsz"] / 100, "inference_ms_per_image": params["imgsz"] / 20,
            "model_size_mb": 5.2}


def make_runs(rules: GridRules, metrics: Metrics = lab_metrics, *, status: Mapping[str, str] | None = None,
              weights_source: str = "pretrained") -> list[RunRecord]:
    status = status or {}
    return [RunRecord(point=p.name, params=p.params, status=status.get(p.name, "FINISHED"),
                      run_id=None if status.get(p.name) == "MISSING" else f"run-{p.name}",
                      metrics=metrics(p.params), weights_source=weights_source, start_time=1000 + i)
            for i, p in enumerate(rules.points)]


def test_configurations_are_ranked_on_their_seed_mean() -> None:
    rules = lab_rules()
    ranking = rank(runs=make_runs(rules), rules=rules)
    assert [c.label for c in ranking.ranked] == [
        "imgsz=416, lr0=0.01", "imgsz=416, lr0=0.005", "imgsz=320, lr0=0.01", "imgsz=320, lr0=0.005"]
    best = ranking.best
    assert best is not None and best.seeds == (1, 42)
    assert best.stat("mAP50-95").mean == pytest.approx(0.141)
    assert best.stat("mAP50-95").std == pytest.approx(math.sqrt(2 * 0.001 ** 2))
    assert ranking.candidate is not None and ranking.candidate.point == "train-416-0.01-42"
    assert ranking.n_success == 8 and not ranking.unranked


def test_ranking_does_not_depend_on_the_order_of_the_runs() -> None:
    rules = lab_rules()
    runs = make_runs(rules, lambda p: {"mAP50-95": 0.2, "recall": 0.5})  # every configuration ties
    shuffled = runs[:]
    random.Random(7).shuffle(shuffled)
    first, second = rank(runs=runs, rules=rules), rank(runs=shuffled, rules=rules)
    assert [c.label for c in first.configs] == [c.label for c in second.configs]
    assert first.candidate == second.candidate
    # a full tie falls back to the order of the axis values in grid.yaml, then the seeds'
    assert first.ranked[0].label == "imgsz=320, lr0=0.005" and first.candidate.params["seed"] == 1


def test_ties_prefer_more_seeds_then_a_smaller_seed_spread() -> None:
    rules = lab_rules(axes={"imgsz": [320, 416, 512], "seed": [1, 2, 3]})
    values = {(320, 1): 0.18, (320, 2): 0.20, (320, 3): 0.22,  # mean 0.2, three seeds, std 0.02
              (416, 1): 0.20, (416, 2): 0.20, (416, 3): 0.99,  # mean 0.2 once seed 3 failed, std 0
              (512, 1): 0.19, (512, 2): 0.20, (512, 3): 0.21}  # mean 0.2, three seeds, std 0.01
    runs = make_runs(rules, lambda p: {"mAP50-95": values[(p["imgsz"], p["seed"])], "recall": 0.5},
                     status={"train-416-3": "FAILED"})
    ranking = rank(runs=runs, rules=rules)
    assert [c.params["imgsz"] for c in ranking.ranked] == [512, 320, 416]
    assert [c.stat("mAP50-95").n for c in ranking.ranked] == [3, 3, 2]


def test_nan_objective_failed_killed_and_missing_runs_are_listed_never_ranked() -> None:
    rules = lab_rules()

    def metrics(p: Mapping[str, Any]) -> dict[str, float]:
        values = lab_metrics(p)
        if p["imgsz"] == 320 and p["lr0"] == 0.005 and p["seed"] == 1:
            values["mAP50-95"] = math.nan
        if p["imgsz"] == 416 and p["seed"] == 1:
            values["precision"] = math.nan  # a NaN in another metric does not unrank the run
        return values

    status = {"train-416-0.01-42": "FAILED", "train-320-0.01-1": "KILLED", "train-320-0.01-42": "MISSING"}
    ranking = rank(runs=make_runs(rules, metrics, status=status), rules=rules)
    reasons = {u.run.point: u.reason for u in ranking.unranked}
    assert reasons == {"train-320-0.005-1": "no_objective", "train-416-0.01-42": "failed",
                       "train-320-0.01-1": "killed", "train-320-0.01-42": "missing"}
    ranked_points = {r.point for c in ranking.configs for r in c.runs}
    assert ranked_points.isdisjoint(reasons)
    assert ranking.n_success == 4
    assert [c.label for c in ranking.ranked] == ["imgsz=416, lr0=0.01", "imgsz=416, lr0=0.005", "imgsz=320, lr0=0.005"]
    precision = ranking.best.stat("precision")
    assert math.isnan(precision.mean) and precision.n == 0  # its only run has a NaN precision
    assert ranking.ranked[1].stat("precision").n == 1
    codes = {f.code: f for f in ranking.flags}
    assert "unranked" in codes and "too_few_success" in codes and "single_seed" in codes
    decision = decide(ranking=ranking, candidate=ranking.candidate, champion=None)
    assert decision.verdict == "NO" and decision.failed == ("success_fraction",)


def test_one_seed_only_gives_no_spread_and_a_warning() -> None:
    axes = {"imgsz": [320, 416], "lr0": [0.005, 0.01]}
    rules = lab_rules(axes=axes)
    ranking = rank(runs=make_runs(rules, lambda p: lab_metrics({**p, "seed": 1})), rules=rules)
    assert all(math.isnan(c.stat("mAP50-95").std) for c in ranking.configs)
    assert math.isnan(ranking.seed_spread)
    assert {e.verdict for e in ranking.effects} == {"unknown_noise"}
    single = next(f for f in ranking.flags if f.code == "single_seed")
    assert len(single.data["configs"]) == 4


def test_an_axis_that_changed_nothing_is_flagged() -> None:
    rules = lab_rules()
    runs = make_runs(rules, lambda p: lab_metrics({**p, "lr0": 0.005}))  # lr0 ignored, as with optimizer=auto
    ranking = rank(runs=runs, rules=rules)
    effects = {e.axis: e for e in ranking.effects}
    assert effects["lr0"].identical is True and effects["lr0"].verdict == "identical"
    assert effects["lr0"].spread == 0.0
    assert effects["imgsz"].identical is False and effects["imgsz"].verdict == "beyond_noise"
    assert effects["imgsz"].spread == pytest.approx(0.03)
    assert effects["imgsz"].ratio == pytest.approx(0.03 / ranking.seed_spread)
    flag = next(f for f in ranking.flags if f.code == "axis_no_effect")
    assert flag.data["axis"] == "lr0" and flag.data["optimizer_hint"] is True
    assert not any(f.code == "axis_no_effect" and f.data["axis"] == "imgsz" for f in ranking.flags)


def test_a_single_valued_axis_has_no_effect_to_measure() -> None:
    rules = lab_rules(axes={"imgsz": [320, 416], "lr0": [0.01], "seed": [1, 42]})
    ranking = rank(runs=make_runs(rules), rules=rules)
    lr0 = next(e for e in ranking.effects if e.axis == "lr0")
    assert lr0.verdict == "single_value" and math.isnan(lr0.spread) and lr0.identical is None
    assert not any(f.code == "axis_no_effect" for f in ranking.flags)
    assert [c.label for c in ranking.ranked] == ["imgsz=416, lr0=0.01", "imgsz=320, lr0=0.01"]


def test_seed_spread_decides_whether_an_axis_effect_is_noise() -> None:
    rules = lab_rules()

    def metrics(p: Mapping[str, Any]) -> dict[str, float]:
        values = lab_metrics(p)
        values["mAP50-95"] += 0.05 if p["seed"] == 42 else 0.0  # seeds differ more than lr0 does
        return values

    effects = {e.axis: e for e in rank(runs=make_runs(rules, metrics), rules=rules).effects}
    assert effects["lr0"].verdict == "within_noise" and effects["imgsz"].verdict == "within_noise"
    assert effects["lr0"].best_value == 0.01


def test_a_constraint_excludes_the_best_configuration_with_its_reason() -> None:
    rules = lab_rules()

    def metrics(p: Mapping[str, Any]) -> dict[str, float]:
        values = lab_metrics(p)
        if p["imgsz"] == 416 and p["lr0"] == 0.01:
            values["recall"] = 0.1  # the best mAP, but it misses people
        return values

    ranking = rank(runs=make_runs(rules, metrics), rules=rules)
    excluded = [c for c in ranking.configs if c.exclusions]
    assert [c.label for c in excluded] == ["imgsz=416, lr0=0.01"]
    assert excluded[0].rank is None
    assert excluded[0].exclusions == (Exclusion(metric="recall", bound="min", limit=0.2, value=pytest.approx(0.1)),)
    assert ranking.best.label == "imgsz=416, lr0=0.005"
    assert ranking.candidate.point == "train-416-0.005-42"
    first_alternative = alternatives(ranking)[0]
    assert first_alternative.config.label == "imgsz=416, lr0=0.01"  # the trade-off comes first
    assert [d.metric for d in first_alternative.pros] == ["mAP50", "mAP50-95"]
    assert "recall" in [d.metric for d in first_alternative.cons]


def test_a_missing_constraint_metric_excludes_too() -> None:
    # model_size_mb is a metric train runs log; these runs lack it (an older trainer, a failed measurement)
    rules = lab_rules(constraints=[{"metric": "inference_ms_per_image", "max": 18.0},
                                   {"metric": "model_size_mb", "max": 1}])

    def without_size(params: Mapping[str, Any]) -> dict[str, float]:
        return {k: v for k, v in lab_metrics(params).items() if k != "model_size_mb"}
    ranking = rank(runs=make_runs(rules, without_size), rules=rules)
    assert not ranking.ranked and ranking.candidate is None
    reasons = {(e.metric, e.bound) for c in ranking.configs for e in c.exclusions}
    assert reasons == {("inference_ms_per_image", "max"), ("model_size_mb", "max")}
    assert any(math.isnan(e.value) for c in ranking.configs for e in c.exclusions if e.metric == "model_size_mb")
    assert any(f.code == "all_excluded" for f in ranking.flags)
    decision = decide(ranking=ranking, candidate=None, champion=None)
    assert decision.verdict == "NO" and decision.failed == ("candidate",)
    assert decision.gate("candidate").data["reason"] == "all_excluded"


def test_gates_pass_without_a_champion() -> None:
    rules = lab_rules()
    ranking = rank(runs=make_runs(rules), rules=rules)
    decision = decide(ranking=ranking, candidate=ranking.candidate, champion=None)
    assert decision.verdict == "YES" and decision.failed == ()
    assert decision.gate("champion").data["status"] == "none"


def test_an_existing_better_champion_blocks_the_promotion() -> None:
    """The champion measured better on the same test images (paired interval below 0) keeps its alias."""
    rules = lab_rules()
    ranking = rank(runs=make_runs(rules), rules=rules)
    comparison = PairedComparison(metric="mAP50-95", candidate=0.12, champion=0.3, improvement=-0.18, low=-0.25,
                                  high=-0.11, confidence=0.95, resamples=1000, n_images=10, n_boxes=61)
    champion = ChampionInfo(version="3", run_id="old-run", metrics={"test_mAP50-95": 0.99}, comparison=comparison)
    decision = decide(ranking=ranking, candidate=ranking.candidate, champion=champion)
    assert decision.verdict == "NO" and decision.failed == ("champion",)
    gate = decision.gate("champion").data
    assert gate["basis"] == "test" and gate["champion_value"] == 0.3 and gate["candidate_value"] == 0.12
    assert (gate["n_images"], gate["n_boxes"]) == (10, 61)


def test_champion_margin_and_comparison_basis() -> None:
    """Keep the champion unless the interval's lower bound exceeds the margin; never a number stored elsewhere."""
    rules = lab_rules(gates={"min_success_fraction": 0.75, "min_objective": 0.05, "champion_margin": 0.02})
    ranking = rank(runs=make_runs(rules), rules=rules)
    candidate = ranking.candidate

    def compared(low: float, high: float) -> ChampionInfo:
        return ChampionInfo(version="1", run_id="old", comparison=PairedComparison(
            metric="mAP50-95", candidate=0.15, champion=0.15 - (low + high) / 2, improvement=(low + high) / 2,
            low=low, high=high, confidence=0.95, resamples=1000, n_images=10, n_boxes=61))

    assert decide(ranking=ranking, candidate=candidate, champion=compared(0.01, 0.05)).failed == ("champion",)
    assert decide(ranking=ranking, candidate=candidate, champion=compared(-0.01, 0.09)).failed == ("champion",)
    assert decide(ranking=ranking, candidate=candidate, champion=compared(0.03, 0.06)).verdict == "YES"
    itself = ChampionInfo(version="2", run_id=candidate.run_id, metrics={"mAP50-95": 0.9})
    assert decide(ranking=ranking, candidate=candidate, champion=itself).gate("champion").data["status"] == "same_run"
    stored_only = ChampionInfo(version="1", run_id="old", metrics={"mAP50-95": 0.01, "test_mAP50-95": 0.01})
    decision = decide(ranking=ranking, candidate=candidate, champion=stored_only)
    assert decision.failed == ("champion",) and decision.gate("champion").data["status"] == "not_comparable"


def test_minimum_objective_and_candidate_constraints_are_gates() -> None:
    rules = lab_rules(gates={"min_objective": 0.5})
    ranking = rank(runs=make_runs(rules), rules=rules)
    assert decide(ranking=ranking, candidate=ranking.candidate, champion=None).failed == ("min_objective",)
    # the configuration's mean meets recall >= 0.2, but the candidate run is judged on its own test recall
    rules = lab_rules()
    ranking = rank(runs=make_runs(rules), rules=rules)
    tested = ranking.candidate.__class__(**{**vars(ranking.candidate),
                                            "metrics": {**ranking.candidate.metrics, "test_recall": 0.1}})
    decision = decide(ranking=ranking, candidate=tested, champion=None)
    assert decision.failed == ("constraints",)
    assert decision.gate("constraints").data["checks"][0]["basis"] == "test"


def test_minimised_objective() -> None:
    rules = lab_rules(objective={"metric": "inference_ms_per_image", "direction": "minimize"}, constraints=[],
                      gates={"min_objective": 100.0})
    ranking = rank(runs=make_runs(rules), rules=rules)
    assert ranking.best.params["imgsz"] == 320
    decision = decide(ranking=ranking, candidate=ranking.candidate, champion=None)
    assert decision.verdict == "YES"  # 16 ms <= a ceiling of 100 ms


def test_scratch_runs_are_flagged() -> None:
    rules = lab_rules()
    ranking = rank(runs=make_runs(rules, weights_source="scratch"), rules=rules)
    flag = next(f for f in ranking.flags if f.code == "scratch")
    assert flag.data["n"] == 8


def test_the_controllers_spec_is_read_back_through_the_grid_model() -> None:
    """One shape: grid.json's spec is GridSpec.to_dict() (grid.yaml's shape, defaults filled), as the controller
    writes it."""
    from contract.grid import GridSpec

    document = grid_document()
    spec = dict(document["spec"], objective={"metric": "mAP50"}, constraints=[{"metric": "recall", "min": 0.3}],
                gates={"min_success_fraction": 0.5, "min_objective": 0.1, "champion_margin": 0.01},
                report={"language": "fr"}, model={"weights": "yolov8n.pt", "registered_name": "flat-model"},
                dataset={"path": "data/tiny_coco", "md5": "0" * 32 + ".dir"})
    stored = GridSpec.model_validate(spec).to_dict()
    rules = rules_from_grid_json({"spec": stored, "points": document["points"]})
    spec_ = rules.spec
    assert (spec_.objective_metric, spec_.objective_direction, spec_.language, spec_.registered_model,
            spec_.min_success_fraction) == \
        ("mAP50", "maximize", "fr", "flat-model", 0.5)
    assert rules.spec.constraints[0].min == 0.3 and rules.spec.constraints[0].max is None
    assert rules.spec.dataset_md5 == "0" * 32 + ".dir" and rules.config_axes == ("imgsz", "lr0")
    assert rules_from_grid_json({"spec": stored, "points": document["points"]}).spec.to_dict() == stored


def test_the_old_flat_shape_is_refused() -> None:
    document = grid_document()
    flat = {"name": "tp4-lab", "dataset_path": "data/tiny_coco", "weights": "yolov8n.pt", "axes": LAB_AXES,
            "objective_metric": "mAP50"}
    with pytest.raises(GridSpecError, match="dataset_path: unknown key"):
        rules_from_grid_json({"spec": flat, "points": document["points"]})


def test_an_unknown_metric_in_grid_json_is_refused_with_a_suggestion() -> None:
    with pytest.raises(GridSpecError, match=r"spec: objective.metric: .*did you mean mAP50-95"):
        lab_rules(objective={"metric": "metrics/mAP50-95(B)"})


def test_a_bad_spec_lists_every_problem() -> None:
    document = grid_document(objective={"direction": "sideways"}, constraints=[{"metric": "recall"}],
                             report={"language": "de"})
    document["points"] = []
    with pytest.raises(GridSpecError) as caught:
        rules_from_grid_json(document)
    text = str(caught.value)
    for expected in ("direction", "constraints[0]", "language", "points"):
        assert expected in text
    with pytest.raises(GridSpecError):
        rules_from_grid_json(["not", "an", "object"])
