"""One configuration, one training (controller/core/searching.py): random and TPE search never ask a point
that is already asked, trained or in flight (the same spec hash), a discrete space with as many trials as
points trains each point once, and a search that can find no new point stops and says why."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from contract.grid import GridSpec, parse_grid
from controller.core import searching
from controller.core.expanding import expand
from controller.core.searching import Names, TrialRecord, ask_points, confirm_points, sample_points, search_done
from tests.helpers.gridfiles import MD5, lab_grid

SMALL: dict[str, list[Any]] = {"imgsz": [160, 192], "lr0": [0.005, 0.01]}
THREE_BY_THREE: dict[str, list[Any]] = {"imgsz": [160, 192, 224], "lr0": [0.005, 0.01, 0.02]}


def spec(axes: dict[str, Any], **search: Any) -> GridSpec:
    return parse_grid(lab_grid(name="r", axes=axes, search=search, job={"name_template": "r-{imgsz}-{lr0}"}),
                      source="grid.yaml", base_dir=None)


def product(axes: dict[str, list[Any]]) -> list[tuple[Any, ...]]:
    return sorted(itertools.product(*axes.values()))


def configurations(params: list[dict[str, Any]], axes: dict[str, list[Any]]) -> list[tuple[Any, ...]]:
    return sorted(tuple(p[axis] for axis in axes) for p in params)


def test_the_issues_random_search_trains_the_four_points_of_its_space_once_each() -> None:
    # issue 19: imgsz 192 / lr0 0.005 was trained twice (r-192-0.005 and r-192-0.005-t3), 192 / 0.01 never
    points = expand(spec(SMALL, mode="random", trials=4, seed=248), dataset_md5=MD5)
    assert configurations([p.params for p in points], SMALL) == product(SMALL)
    assert {"imgsz": 192, "lr0": 0.01} in [p.params for p in points]
    assert len({p.spec_hash for p in points}) == 4
    assert sorted(p.name for p in points) == ["r-160-0.005", "r-160-0.01", "r-192-0.005", "r-192-0.01"]


def test_a_random_search_with_as_many_trials_as_points_asks_each_point_once() -> None:
    repeated = []  # before: 26 of these 300 seeds trained a point twice
    for seed in range(300):
        points = expand(spec(THREE_BY_THREE, mode="random", trials=9, seed=seed), dataset_md5=MD5)
        if configurations([p.params for p in points], THREE_BY_THREE) != product(THREE_BY_THREE):
            repeated.append(seed)
    assert repeated == []


def objective(params: dict[str, Any]) -> float:
    """A smooth objective with one best point (TPE then keeps proposing it)."""
    return 0.05 - abs(params["lr0"] - 0.01) - abs(params["imgsz"] - 192) / 10_000


def tpe_search(seed: int, *, parallelism: int) -> list[TrialRecord]:
    """A whole TPE search as a controller runs it: `parallelism` points in flight, the oldest ends, one is asked."""
    grid = spec(THREE_BY_THREE, mode="tpe", trials=9, seed=seed)
    names = Names()
    history = [TrialRecord(p.name, n, p.params, status="running")
               for n, p in sample_points(grid, [], room=parallelism, dataset_md5=MD5, names=names)]
    while any(t.status == "running" for t in history):
        oldest = next(i for i, t in enumerate(history) if t.status == "running")
        trial = history[oldest]
        history[oldest] = TrialRecord(trial.name, trial.number, trial.params, status="complete",
                                      values=(objective(trial.params),))
        history += [TrialRecord(p.name, n, p.params, status="running")
                    for n, p in sample_points(grid, history, room=1, dataset_md5=MD5, names=names)]
    return history


@pytest.mark.parametrize(("parallelism", "seeds"), [(1, 300), (3, 100)])
def test_a_tpe_search_with_as_many_trials_as_points_asks_each_point_once(parallelism: int, seeds: int) -> None:
    repeated = []  # before: every one of these searches trained a point twice (TPE keeps proposing its best)
    for seed in range(seeds):
        history = tpe_search(seed, parallelism=parallelism)
        if configurations([t.params for t in history], THREE_BY_THREE) != product(THREE_BY_THREE):
            repeated.append(seed)
    assert repeated == []


def test_a_point_in_flight_or_trained_in_any_phase_is_never_asked_again() -> None:
    grid = spec(SMALL, mode="tpe", trials=4, seed=1)
    history = [TrialRecord("a", 0, {"imgsz": 160, "lr0": 0.005}, status="complete", values=(0.02,)),
               TrialRecord("b", 1, {"imgsz": 160, "lr0": 0.01}, status="running"),
               TrialRecord("c", 2, {"imgsz": 192, "lr0": 0.005}, status="failed")]
    asked = ask_points(grid, history, room=4, dataset_md5=MD5, names=Names({"a", "b", "c"}))
    assert [(n, p.params) for n, p in asked.points] == [(3, {"imgsz": 192, "lr0": 0.01})]
    assert asked.exhausted is None  # the budget is spent, the space was not short of it


def test_a_repeated_float_is_refused_too() -> None:
    grid = spec({"imgsz": [160], "lr0": {"loguniform": [0.001, 0.1]}}, mode="random", trials=2, seed=3)
    first = sample_points(grid, [], room=1, dataset_md5=MD5, names=Names())[0][1].params
    # a re-run already holding the exact point trial 0's sampler gives (numbered before it: it is asked first)
    known = [TrialRecord("known", -1, first, phase="confirm", status="complete", values=(0.02,))]
    asked = ask_points(grid, known, room=1, dataset_md5=MD5, names=Names({"known"}))
    assert [n for n, _ in asked.points] == [0]
    assert asked.points[0][1].params["lr0"] != first["lr0"] and 0.001 <= asked.points[0][1].params["lr0"] <= 0.1


def exhausting_history() -> list[TrialRecord]:
    """Three search points and a confirm re-run that holds the fourth point of the 2x2 space."""
    done = [{"imgsz": 160, "lr0": 0.005}, {"imgsz": 160, "lr0": 0.01}, {"imgsz": 192, "lr0": 0.005}]
    history = [TrialRecord(f"p{n}", n, p, status="complete", values=(0.01 * (n + 1),)) for n, p in enumerate(done)]
    return history + [TrialRecord("r-192-0.01-s7", 3, {"imgsz": 192, "lr0": 0.01}, phase="confirm",
                                  status="complete", values=(0.05,))]


@pytest.mark.parametrize("mode", ["random", "tpe"])
def test_an_exhausted_discrete_space_stops_the_search_and_says_why(mode: str) -> None:
    grid = spec(SMALL, mode=mode, trials=4, seed=2)
    history = exhausting_history()
    asked = ask_points(grid, history, room=2, dataset_md5=MD5, names=Names({t.name for t in history}))
    assert asked.points == []
    assert asked.exhausted == ("every one of the 4 points of the search space is already asked: the search "
                               "stops at 3 of its 4 trials rather than train a point twice")
    assert not search_done(grid, history)  # without the verdict, the fourth trial would be awaited forever
    assert search_done(grid, history, exhausted=True)


def test_an_exhausted_search_is_confirmed_on_what_it_ran() -> None:
    grid = parse_grid(lab_grid(name="r", axes={**SMALL, "seed": [7]}, search={"mode": "tpe", "trials": 4, "seed": 2},
                               job={"name_template": "r-{imgsz}-{lr0}"}, confirm={"top": 2, "seeds": [8]}),
                      source="grid.yaml", base_dir=None)
    history = [TrialRecord(t.name, t.number, {**t.params, "seed": 7}, phase=t.phase, status=t.status,
                           values=t.values) for t in exhausting_history()]
    names = Names({t.name for t in history})
    assert confirm_points(grid, history, dataset_md5=MD5, names=names) == []
    confirm = confirm_points(grid, history, dataset_md5=MD5, names=names, exhausted=True)
    assert [p.params for _, p in confirm] == [{"imgsz": 192, "lr0": 0.005, "seed": 8},
                                              {"imgsz": 160, "lr0": 0.01, "seed": 8}]


def test_a_space_too_large_to_enumerate_stops_after_its_reasks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(searching, "ENUMERABLE", 3)  # the 2x2 space counts as too large to list
    grid = spec(SMALL, mode="random", trials=4, seed=2)
    history = exhausting_history()
    asked = ask_points(grid, history, room=1, dataset_md5=MD5, names=Names())
    assert asked.points == []
    assert asked.exhausted is not None and asked.exhausted.startswith(
        f"{searching.MAX_REASKS + 1} asks for trial 4 gave only points already asked (a 4-point space)")
