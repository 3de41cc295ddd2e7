"""The grid's cross-field rules: what no single field shows (an argument set twice, a search setting that
would do nothing, a gate no metric value can meet), as (location, error, value) triples."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from pydantic_core import PydanticCustomError

import contract
from contract.grid.sections import Confirm, EarlyStopping, Gates, Objective, Search

Located = tuple[tuple[str | int, ...], PydanticCustomError, object]


class GridFacts(Protocol):
    """The sections the cross-field rules read (a GridSpec)."""

    @property
    def train(self) -> Mapping[str, Any]: ...
    @property
    def axes(self) -> Mapping[str, Any]: ...
    @property
    def search(self) -> Search: ...
    @property
    def early_stopping(self) -> EarlyStopping | None: ...
    @property
    def confirm(self) -> Confirm | None: ...
    @property
    def objective(self) -> Objective: ...
    @property
    def gates(self) -> Gates: ...
    @property
    def sampled(self) -> bool: ...


def cross_field_problems(grid: GridFacts) -> list[Located]:
    """What no single field shows: an argument set twice, a gate no metric value can pass."""
    problems: list[Located] = []
    for name in grid.axes:
        if name in grid.train:
            problems.append((("axes", name), PydanticCustomError(
                "twice", "is also fixed in train.{name}: set it in one place", {"name": name}), grid.axes[name]))
    problems += _search_problems(grid)
    low, high = contract.METRIC_RANGES[grid.objective.metric]
    threshold = float(grid.gates.min_objective)
    maximize = grid.objective.direction == "maximize"
    if (maximize and threshold > high) or (not maximize and threshold < low):
        problems.append((("gates", "min_objective"), PydanticCustomError(
            "gate", "{metric} is in [{low}, {high}]: a gate at {value} can never be met",
            {"metric": grid.objective.metric, "low": low, "high": high, "value": threshold}), threshold))
    return problems


def _search_problems(grid: GridFacts) -> list[Located]:
    problems: list[Located] = []
    mode = grid.search.mode
    if mode == "grid":
        for name, values in grid.axes.items():
            if isinstance(values, dict):
                problems.append((("axes", name), PydanticCustomError(
                    "distribution", "a distribution needs search.mode random or tpe (a grid enumerates lists of "
                    "values)"), values))
        if grid.search.trials is not None:
            problems.append((("search", "trials"), PydanticCustomError(
                "search", "is for search.mode random or tpe (a grid's points are its axes' product)"),
                grid.search.trials))
    elif grid.search.trials is None:
        problems.append((("search", "trials"), PydanticCustomError(
            "search", "is required by search.mode {mode}: how many points to sample", {"mode": mode}), None))
    if grid.confirm is not None and "seed" in grid.axes and isinstance(grid.axes["seed"], dict):
        problems.append((("axes", "seed"), PydanticCustomError(
            "confirm", "is sampled, and confirm re-runs configurations with other seeds: fix the seed in train "
            "or give a list"), None))
    problems += _ignored_settings(grid)
    space = _discrete_size(grid)
    if grid.sampled and space is not None and int(grid.search.trials or 0) > space:
        problems.append((("search", "trials"), PydanticCustomError(
            "search", "{trials} is more than the {space} distinct points of these axes: lower it, or use "
            "search.mode grid", {"trials": grid.search.trials, "space": space}), grid.search.trials))
    return problems


def _discrete_size(grid: GridFacts) -> int | None:
    """The number of distinct points of axes that are all lists, choices or int ranges; None otherwise."""
    size = 1
    for axis in grid.axes.values():
        if isinstance(axis, list):
            size *= len(axis)
            continue
        kind, args = next(iter(axis.items()))
        if kind == "choice":
            size *= len(args)
        elif kind == "int":
            size *= (int(args[1]) - int(args[0])) // (int(args[2]) if len(args) == 3 else 1) + 1
        else:
            return None
    return size


def _ignored_settings(grid: GridFacts) -> list[Located]:
    """Settings that would do nothing here: refused, so that nobody believes they act."""
    problems: list[Located] = []
    search, rule = grid.search, grid.early_stopping
    if search.startup_trials is not None and search.mode != "tpe":
        problems.append((("search", "startup_trials"), PydanticCustomError(
            "search", "is for search.mode tpe (random start-up points before TPE models the results)"),
            search.startup_trials))
    elif search.startup_trials is not None and search.trials is not None and search.startup_trials > search.trials:
        problems.append((("search", "startup_trials"), PydanticCustomError(
            "search", "{startup} is more than search.trials ({trials}): TPE would never model anything",
            {"startup": search.startup_trials, "trials": search.trials}), search.startup_trials))
    epochs = grid.train.get("epochs")
    if rule is not None and isinstance(epochs, int) and "epochs" not in grid.axes and rule.min_epochs >= epochs:
        problems.append((("early_stopping", "min_epochs"), PydanticCustomError(
            "early_stopping", "{min} is not below train.epochs ({epochs}): no point could ever be stopped",
            {"min": rule.min_epochs, "epochs": epochs}), rule.min_epochs))
    return problems

