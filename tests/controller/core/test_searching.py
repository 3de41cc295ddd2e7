"""Search beyond a grid (controller/core/searching.py): distributions, seeded sampling, names, pruner
decisions on synthetic curves, the confirm phase."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from contract.errors import InvalidInput
from contract.grid import GridSpec, parse_grid
from controller.core.expanding import JOB_NAME, expand
from controller.core.reconciling import DesiredGrid, DesiredJob, GridPhase, reconcile
from controller.core.searching import (
    Names,
    TrialRecord,
    confirm_points,
    distributions,
    name_value,
    sample_points,
    search_done,
    startup_trials,
    stop_decisions,
    top_configurations,
    trial_seed,
)
from tests.helpers.gridfiles import MD5, lab_grid


def grid(**changes: Any) -> GridSpec:
    return parse_grid(lab_grid(**changes), source="grid.yaml", base_dir=None)


def tpe(**changes: Any) -> GridSpec:
    settings: dict[str, Any] = {
        "search": {"mode": "tpe", "trials": 8, "seed": 5},
        "axes": {"lr0": {"loguniform": [0.001, 0.1]}, "imgsz": {"int": [320, 416, 32]}, "seed": [1, 42]},
    }
    settings.update(changes)
    return grid(**settings)


def finished(point_params: list[dict[str, Any]], values: list[float], *, start: int = 0) -> list[TrialRecord]:
    return [TrialRecord(f"t{start + i}", start + i, params, status="complete", values=(value,),
                        curve=tuple((100.0 * (start + i) + e, e, value * e / 3) for e in (1, 2, 3)),
                        started=100.0 * (start + i), ended=100.0 * (start + i) + 4)
            for i, (params, value) in enumerate(zip(point_params, values, strict=True))]


# --- the search space -------------------------------------------------------------------------------------

def test_each_axis_becomes_optunas_distribution() -> None:
    space = distributions(tpe(axes={"lr0": {"loguniform": [0.001, 0.1]}, "imgsz": {"int": [320, 416, 32]},
                                    "momentum": {"uniform": [0.8, 0.95]}, "optimizer": {"choice": ["sgd", "AdamW"]},
                                    "seed": [1, 42]},
                                train={"epochs": 3, "batch": 8, "nbs": 8, "warmup_epochs": 0}))
    assert space["lr0"] == FloatDistribution(0.001, 0.1, log=True)
    assert space["imgsz"] == IntDistribution(320, 416, step=32)
    assert space["momentum"] == FloatDistribution(0.8, 0.95)
    assert space["optimizer"] == CategoricalDistribution(["SGD", "AdamW"])
    assert space["seed"] == CategoricalDistribution([1, 42])


def test_sampled_values_stay_inside_their_distributions_and_are_valid_arguments() -> None:
    spec = tpe(search={"mode": "random", "trials": 30, "seed": 1})
    points = expand(spec, dataset_md5=MD5)
    assert len(points) == 30
    for point in points:
        assert 0.001 <= point.params["lr0"] <= 0.1
        assert point.params["imgsz"] in (320, 352, 384, 416)
        assert point.params["seed"] in (1, 42)
        assert type(point.params["imgsz"]) is int and type(point.params["seed"]) is int
        assert JOB_NAME.fullmatch(point.name) and len(point.name) <= 63
    assert len({p.name for p in points}) == 30


def test_the_same_grid_file_samples_the_same_points_and_another_seed_others() -> None:
    first = expand(tpe(search={"mode": "random", "trials": 6, "seed": 1}), dataset_md5=MD5)
    again = expand(tpe(search={"mode": "random", "trials": 6, "seed": 1}), dataset_md5=MD5)
    other = expand(tpe(search={"mode": "random", "trials": 6, "seed": 2}), dataset_md5=MD5)
    assert [p.params for p in first] == [p.params for p in again]
    assert [p.spec_hash for p in first] == [p.spec_hash for p in again]
    # nearby seeds share no point (a seed + number scheme would shift one search onto the other)
    assert not {p.params["lr0"] for p in first} & {p.params["lr0"] for p in other}
    assert trial_seed(1, 1) != trial_seed(2, 0)


def test_tpe_knows_no_point_before_it_runs_and_asks_as_room_frees() -> None:
    spec = tpe()
    assert expand(spec, dataset_md5=MD5) == []
    names = Names()
    asked = sample_points(spec, [], room=3, dataset_md5=MD5, names=names)
    assert [n for n, _ in asked] == [0, 1, 2]
    assert sample_points(spec, [], room=0, dataset_md5=MD5, names=Names()) == []


def test_a_restarted_search_asks_the_same_next_point_and_never_past_the_budget() -> None:
    spec = tpe(search={"mode": "tpe", "trials": 5, "seed": 3, "startup_trials": 2})
    first = sample_points(spec, [], room=2, dataset_md5=MD5, names=Names())
    history = finished([p.params for _, p in first], [0.3, 0.1])
    # two controllers (one restarted) given the same history from MLflow ask the same trials
    one = sample_points(spec, history, room=2, dataset_md5=MD5, names=Names({"t0", "t1"}))
    two = sample_points(spec, history, room=2, dataset_md5=MD5, names=Names({"t0", "t1"}))
    assert [(n, p.params) for n, p in one] == [(n, p.params) for n, p in two]
    assert [n for n, _ in one] == [2, 3]  # numbering continues: no trial repeated, none lost
    running = history + [TrialRecord(p.name, n, p.params, status="running") for n, p in one]
    last = sample_points(spec, running, room=5, dataset_md5=MD5, names=Names())
    assert [n for n, _ in last] == [4]  # the budget: 5 trials in all


def test_tpe_uses_the_results_it_is_given() -> None:
    spec = tpe(axes={"lr0": {"loguniform": [0.0001, 0.1]}}, search={"mode": "tpe", "trials": 40, "seed": 0,
                                                                     "startup_trials": 10})
    # objective peaks at lr0 = 0.01: after 20 results, TPE's proposals concentrate near it
    import math
    params = [p.params for _, p in sample_points(spec, [], room=20, dataset_md5=MD5, names=Names())]
    values = [1 - abs(math.log10(p["lr0"]) + 2) / 2 for p in params]
    history = finished(params, values)
    proposals = [p.params["lr0"] for _, p in sample_points(spec, history, room=10, dataset_md5=MD5, names=Names())]
    near = sum(0.002 <= lr <= 0.05 for lr in proposals)
    assert near >= 6, proposals


def test_startup_trials_default_to_a_quarter_of_the_budget() -> None:
    assert startup_trials(tpe(search={"mode": "tpe", "trials": 8})) == 2
    assert startup_trials(tpe(search={"mode": "tpe", "trials": 100})) == 10
    assert startup_trials(tpe(search={"mode": "tpe", "trials": 8, "startup_trials": 5})) == 5


# --- names --------------------------------------------------------------------------------------------------

def test_sampled_floats_are_rounded_in_names_never_in_values() -> None:
    assert name_value(0.0123456789) == "0.0123"
    assert name_value(1e-05) == "1e-05"
    point = sample_points(tpe(), [], room=1, dataset_md5=MD5, names=Names())[0][1]
    assert len(repr(point.params["lr0"])) > 8  # the value keeps every digit
    assert name_value(point.params["lr0"]) in point.name


def test_name_collisions_are_resolved_by_trial_number() -> None:
    names = Names()
    assert names.give("train-0.01", "-t3") == "train-0.01"
    assert names.give("train-0.01", "-t7") == "train-0.01-t7"
    assert names.give("x" * 70, "-t8") == "x" * 63  # cut to a Job name's length
    assert names.give("x" * 70, "-t9") == "x" * 60 + "-t9"
    # a confirm point: its seed, then its trial number, then a counter: never a name given before
    assert names.give("c-0.01", "-s2", "-t9") == "c-0.01"
    assert names.give("c-0.01", "-s2", "-t10") == "c-0.01-s2"
    assert names.give("c-0.01", "-s2", "-t11") == "c-0.01-s2-t11"
    assert names.give("c-0.01", "-s2", "-t11") == "c-0.01-s2-t11-2"


def test_names_are_made_valid_kubernetes_names() -> None:
    names = Names()
    assert name_value(1034.5) == "1.03e+03"
    assert names.give("train-1.03e+03", "-t1") == "train-1.03e03"  # no '+' in a Job name
    assert names.give("-0.5-Train_x", "-t2") == "0.5-train-x"
    assert names.give("--", "-t3") == "trial"
    for name in names.taken:
        assert JOB_NAME.fullmatch(name)


def test_confirm_points_of_configurations_that_round_alike_get_distinct_names() -> None:
    spec = grid(axes={"lr0": [0.0100001, 0.0100002], "seed": [1]}, job={"name_template": "c-{lr0}"},
                search={"mode": "grid"}, confirm={"top": 2, "seeds": [2]})
    history = finished([{"lr0": 0.0100001, "seed": 1}, {"lr0": 0.0100002, "seed": 1}], [0.5, 0.4])
    names = Names({"c-0.0100001", "c-0.0100002"})
    confirm = [p.name for _, p in confirm_points(spec, history, dataset_md5=MD5, names=names)]
    assert len(set(confirm)) == 2


def test_a_discrete_space_is_not_sampled_twice_at_the_same_point() -> None:
    spec = tpe(axes={"imgsz": [320, 416], "lr0": {"choice": [0.005, 0.01]}},
               search={"mode": "random", "trials": 4, "seed": 0})
    points = expand(spec, dataset_md5=MD5)
    assert len({repr(sorted(p.params.items())) for p in points}) == 4


# --- early stopping ---------------------------------------------------------------------------------------

def curve(values: list[float], *, start: float) -> tuple[tuple[float, int, float], ...]:
    return tuple((start + e, e + 1, v) for e, v in enumerate(values))


def test_the_median_rule_stops_a_running_point_below_the_median_of_finished_ones() -> None:
    spec = tpe(early_stopping={"rule": "median", "min_epochs": 2})
    done = [TrialRecord(f"t{i}", i, {"lr0": 0.01, "imgsz": 320, "seed": 1}, status="complete", values=(v,),
                        curve=curve([v / 3, v / 2, v], start=10.0 * i), ended=10.0 * i + 5)
            for i, v in enumerate([0.30, 0.40])]
    bad = TrialRecord("bad", 2, {"lr0": 0.05, "imgsz": 320, "seed": 1}, status="running",
                      curve=curve([0.01, 0.02], start=100))
    good = TrialRecord("good", 3, {"lr0": 0.02, "imgsz": 320, "seed": 1}, status="running",
                       curve=curve([0.2, 0.3], start=100))
    early = TrialRecord("early", 4, {"lr0": 0.03, "imgsz": 320, "seed": 1}, status="running",
                        curve=curve([0.0], start=100))
    decisions = stop_decisions(spec, [*done, bad, good, early])
    assert [(d.name, d.epoch, d.rule) for d in decisions] == [("bad", 2, "median")]
    # once asked, never asked again; a finished point is never stopped
    asked = TrialRecord("bad", 2, bad.params, status="running", curve=bad.curve, stop_requested=True)
    assert stop_decisions(spec, [*done, asked, good]) == []


def test_the_median_rule_waits_for_its_startup_trials() -> None:
    spec = tpe(early_stopping={"rule": "median", "min_epochs": 1, "startup_trials": 3})
    done = [TrialRecord(f"t{i}", i, {}, status="complete", values=(0.3,), curve=curve([0.3], start=i), ended=i + 1)
            for i in range(2)]
    bad = TrialRecord("bad", 2, {}, status="running", curve=curve([0.0], start=50))
    assert stop_decisions(spec, [*done, bad]) == []


def test_history_is_replayed_in_time_order() -> None:
    """A point that finished after the running one reported its epoch was not there to compare with."""
    spec = tpe(early_stopping={"rule": "median", "min_epochs": 1})
    late = TrialRecord("late", 0, {}, status="complete", values=(0.5,), curve=curve([0.5], start=199),
                       ended=200.2)
    running = TrialRecord("run", 1, {}, status="running", curve=curve([0.1], start=100))
    assert stop_decisions(spec, [late, running]) == []
    running_later = TrialRecord("run", 1, {}, status="running", curve=curve([0.1], start=200.5))
    assert [d.name for d in stop_decisions(spec, [late, running_later])] == ["run"]


def test_successive_halving_keeps_the_top_of_each_rung() -> None:
    spec = tpe(early_stopping={"rule": "successive_halving", "min_epochs": 1, "reduction_factor": 2})
    first = TrialRecord("a", 0, {}, status="complete", values=(0.5,), curve=curve([0.5, 0.6], start=0), ended=5)
    second = TrialRecord("b", 1, {}, status="complete", values=(0.4,), curve=curve([0.4, 0.5], start=10), ended=15)
    worse = TrialRecord("c", 2, {}, status="running", curve=curve([0.1], start=20))
    better = TrialRecord("d", 3, {}, status="running", curve=curve([0.9], start=21))
    assert [d.name for d in stop_decisions(spec, [first, second, worse, better])] == ["c"]


def test_the_threshold_rule_and_a_loss_metric() -> None:
    spec = tpe(early_stopping={"rule": "threshold", "metric": "epoch/val_box_loss", "threshold": 2.0,
                               "min_epochs": 1})
    high = TrialRecord("high", 0, {}, status="running", curve=curve([2.5], start=0))
    low = TrialRecord("low", 1, {}, status="running", curve=curve([1.5], start=0))
    assert [d.name for d in stop_decisions(spec, [high, low])] == ["high"]


def test_no_rule_no_decision_and_confirm_points_are_never_stopped() -> None:
    assert stop_decisions(tpe(), [TrialRecord("x", 0, {}, status="running", curve=curve([0.0], start=0))]) == []
    spec = tpe(early_stopping={"rule": "threshold", "threshold": 0.5})
    repeat = TrialRecord("r", 0, {}, phase="confirm", status="running", curve=curve([0.0], start=0))
    assert stop_decisions(spec, [repeat]) == []


# --- the confirm phase ----------------------------------------------------------------------------------

def confirm_grid(**changes: Any) -> GridSpec:
    return grid(axes={"lr0": [0.005, 0.01, 0.02], "seed": [1]}, job={"name_template": "train-{lr0}-{seed}"},
                confirm={"top": 2, "seeds": [1, 2, 3]}, **changes)


def test_confirm_reruns_the_top_configurations_with_the_seeds_not_run_yet() -> None:
    spec = confirm_grid()
    points = expand(spec, dataset_md5=MD5)
    history = finished([p.params for p in points], [0.2, 0.5, 0.4])
    assert top_configurations(spec, history, top=2) == [{"lr0": 0.01}, {"lr0": 0.02}]
    names = Names({p.name for p in points})
    confirm = confirm_points(spec, history, dataset_md5=MD5, names=names)
    assert [(n, p.params) for n, p in confirm] == [
        (3, {"lr0": 0.01, "seed": 2}), (4, {"lr0": 0.01, "seed": 3}),
        (5, {"lr0": 0.02, "seed": 2}), (6, {"lr0": 0.02, "seed": 3})]
    assert [p.name for _, p in confirm] == ["train-0.01-2", "train-0.01-3", "train-0.02-2", "train-0.02-3"]
    recorded = history + [TrialRecord(p.name, n, p.params, phase="confirm") for n, p in confirm]
    assert confirm_points(spec, recorded, dataset_md5=MD5, names=names) == []  # once


def test_confirm_waits_for_the_search_and_ignores_failed_and_stopped_points() -> None:
    spec = confirm_grid()
    points = expand(spec, dataset_md5=MD5)
    history = finished([p.params for p in points], [0.2, 0.5, 0.4])
    running = [*history[:2], TrialRecord("t2", 2, points[2].params, status="running")]
    assert not search_done(spec, running)
    assert confirm_points(spec, running, dataset_md5=MD5, names=Names()) == []
    stopped = [history[0], TrialRecord("t1", 1, points[1].params, status="stopped", values=(0.9,)),
               TrialRecord("t2", 2, points[2].params, status="failed")]
    assert top_configurations(spec, stopped, top=2) == [{"lr0": 0.005}]


def test_confirm_names_without_a_seed_field_get_the_seed() -> None:
    spec = grid(axes={"lr0": [0.005, 0.01]}, train={"epochs": 1, "seed": 1}, job={"name_template": "train-{lr0}"},
                confirm={"top": 2, "seeds": [2]})
    points = expand(spec, dataset_md5=MD5)
    history = finished([p.params for p in points], [0.2, 0.5])
    confirm = confirm_points(spec, history, dataset_md5=MD5, names=Names({p.name for p in points}))
    assert [p.name for _, p in confirm] == ["train-0.01-s2", "train-0.005-s2"]


# --- the reconciler waits for a search ------------------------------------------------------------------

def test_a_pending_search_is_not_finalized() -> None:
    desired = DesiredGrid(grid="g", submission="s", points=(), finalizer=DesiredJob("finalize-g", "h"),
                          parallelism=2, pending=True)
    plan = reconcile(desired, {})
    assert plan.phase is GridPhase.RUNNING and not plan.creates and "searching" in plan.message
    plan = reconcile(DesiredGrid(**{**desired.__dict__, "pending": False}), {})
    assert plan.phase is GridPhase.FINALIZING


# --- the grid model ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("changes", "expected"), [
    ({"axes": {"lr0": {"loguniform": [0.001, 0.1]}}}, "axes.lr0: a distribution needs search.mode random or tpe"),
    ({"search": {"mode": "tpe"}}, "search.trials: is required by search.mode tpe"),
    ({"search": {"mode": "grid", "trials": 3}}, "search.trials: is for search.mode random or tpe"),
    ({"search": {"mode": "tpe", "trials": 4}, "axes": {"imgsz": {"int": [320, 416, 30]}}},
     "axes.imgsz.int: step 30 must be > 0 and divide"),
    ({"search": {"mode": "tpe", "trials": 4}, "axes": {"imgsz": {"int": [320, 400]}}},
     "axes.imgsz.int[1]: must be a positive multiple of 32"),
    ({"search": {"mode": "tpe", "trials": 4}, "axes": {"lr0": {"loguniform": [0, 0.1]}}}, "needs low > 0"),
    ({"search": {"mode": "tpe", "trials": 4}, "axes": {"lr0": {"uniform": [0.1, 0.01]}}},
     "low 0.1 must be < high 0.01"),
    ({"search": {"mode": "tpe", "trials": 4}, "axes": {"lr0": {"uniform": [0.01, 2]}}},
     "axes.lr0.uniform[1]: must be <= 1"),
    ({"search": {"mode": "tpe", "trials": 4}, "axes": {"lr0": {"gauss": [0, 1]}}},
     "must be a list of values or one distribution"),
    ({"search": {"mode": "tpe", "trials": 4}, "axes": {"seed": {"uniform": [1, 2]}}},
     "seed is not a real-valued argument"),
    ({"search": {"mode": "tpe", "trials": 4}, "axes": {"lr0": {"int": [1, 2]}}}, "lr0 is not an integer argument"),
    ({"search": {"mode": "tpe", "trials": 4}, "axes": {"imgsz": {"choice": [320, 33]}}},
     "axes.imgsz.choice[1]: must be a positive multiple"),
    ({"early_stopping": {"rule": "median", "metric": "epoch/map"}}, "did you mean epoch/mAP50"),
    ({"early_stopping": {"rule": "threshold"}}, "threshold is required by rule threshold"),
    ({"early_stopping": {"rule": "median", "min_epochs": 0}}, "early_stopping.min_epochs: must be >= 1"),
    ({"confirm": {"seeds": [1, 2, 1]}}, "confirm.seeds: has duplicate seeds: [1]"),
    ({"search": {"mode": "tpe", "trials": 4}, "axes": {"imgsz": {"int": [320, 416]}}},
     "axes.imgsz.int: without a step every integer from 320 to 416 is sampled, and 321 is not a valid imgsz"),
    ({"search": {"mode": "tpe", "trials": 4}, "axes": {"lr0": {"uniform": [0.001, float("nan")]}}},
     "axes.lr0.uniform[1]: must be a finite number"),
    ({"search": {"mode": "random", "trials": 5}, "axes": {"imgsz": [320, 416], "lr0": {"choice": [0.01, 0.02]}}},
     "search.trials: 5 is more than the 4 distinct points of these axes"),
    ({"search": {"mode": "random", "trials": 4, "startup_trials": 2}, "axes": {"lr0": {"uniform": [0.01, 0.02]}}},
     "search.startup_trials: is for search.mode tpe"),
    ({"search": {"mode": "tpe", "trials": 4, "startup_trials": 5}, "axes": {"lr0": {"uniform": [0.01, 0.02]}}},
     "search.startup_trials: 5 is more than search.trials (4)"),
    ({"early_stopping": {"rule": "median", "min_epochs": 3}},
     "early_stopping.min_epochs: 3 is not below train.epochs (3): no point could ever be stopped"),
    ({"search": "tpe"}, "search: must be a mapping"),
    ({"confirm": {"seeds": [1], "top": 1}}, "confirm.top: must be between 2 and 20"),
    ({"confirm": {"seeds": [1], "tie": "coin"}}, "confirm.tie: must be one of"),
    ({"objective": {"second": {"metric": "mAP50-95"}}}, "second.metric must differ"),
])
def test_bad_search_settings_are_refused_by_name(changes: dict[str, Any], expected: str) -> None:
    with pytest.raises(InvalidInput) as error:
        parse_grid(lab_grid(**changes), source="grid.yaml", base_dir=None)
    assert expected in str(error.value)


def test_points_count_trials_and_confirm_runs_against_the_limit(tmp_path: Path) -> None:
    spec = tpe(search={"mode": "tpe", "trials": 8}, confirm={"top": 2, "seeds": [2, 3]})
    assert spec.n_points == 12
    with pytest.raises(InvalidInput, match=r"search.trials: gives 12 points, with confirm's 4 re-runs, more than "
                       r"the limit of 10"):
        parse_grid(lab_grid(search={"mode": "tpe", "trials": 8}, confirm={"top": 2, "seeds": [2, 3]}),
                   source="grid.yaml", base_dir=None, max_points=10)


def test_tpe_with_two_objectives_samples_from_both_values() -> None:
    spec = tpe(search={"mode": "tpe", "trials": 6, "seed": 2, "startup_trials": 2},
               objective={"metric": "mAP50-95", "second": {"metric": "inference_ms_per_image"}})
    first = sample_points(spec, [], room=3, dataset_md5=MD5, names=Names())
    history = [TrialRecord(p.name, n, p.params, status="complete", values=(0.1 * (n + 1), 10.0 - n))
               for n, p in first]
    more = sample_points(spec, history, room=2, dataset_md5=MD5, names=Names({p.name for _, p in first}))
    assert [n for n, _ in more] == [3, 4]
    assert all(0.001 <= p.params["lr0"] <= 0.1 for _, p in more)
