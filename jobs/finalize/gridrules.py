"""The finalizer's view of a grid: what grid.json says about ranking and promotion (pure).

grid.json (contract.ARTIFACT_GRID_SPEC) holds {"spec": GridSpec.to_dict(), "points": [...]}:
the spec in grid.yaml's own shape, written by the controller (controller/tracking.py)
and read back here through the same model, contract.grid.GridSpec. Every problem
found is reported at once, as a GridSpecError (exit code 2).

A sampled search (search.mode random or tpe) and the confirm phase add points as
the grid runs: the controller records each on the parent run as a trial tag (contract.trial).
The grid's points are grid.json's and these trials, united by name. An axis that is
a distribution has no list of values: its values are those its points ran, sorted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from pydantic import ValidationError

import contract
from contract.grid import Constraint, GridSpec, problems_of
from contract.objective import sign
from contract.trial import trial_tags

__all__ = ["SEED_AXIS", "Constraint", "GridRules", "GridSpecError", "Point", "rules_from_grid_json"]

SEED_AXIS = "seed"


class GridSpecError(Exception):
    """grid.json is missing or does not say what the finalizer needs."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


@dataclass(frozen=True)
class Point:
    name: str
    spec_hash: str
    params: Mapping[str, Any]
    number: int | None = None  # the trial's number (0-based, the order it was asked in), when recorded
    phase: str | None = None  # contract.PHASE_SEARCH or PHASE_CONFIRM, when recorded as a trial


@dataclass(frozen=True)
class GridRules:
    """The validated grid (`spec`, whose flat views the ranking code reads: `spec.objective_metric`,
    `spec.registered_model`, ...) and its points, with what only the points tell: each axis's values run."""

    spec: GridSpec
    points: tuple[Point, ...]

    @cached_property
    def axes(self) -> Mapping[str, tuple[Any, ...]]:
        """Each axis's values: a list axis's own, in grid.yaml's order, then any other value its points ran
        (a confirm seed); a distribution's, the values its points ran, sorted. A seed the points carry
        without a seed axis (confirm runs of a grid whose seed is fixed) is an axis too."""
        axes: dict[str, tuple[Any, ...]] = {}
        for axis, values in self.spec.axes.items():
            ran = self.values_run(axis)
            if isinstance(values, Mapping):
                axes[axis] = ran
            else:
                axes[axis] = (*values, *(v for v in ran if v not in values))
        if SEED_AXIS not in axes and any(SEED_AXIS in p.params for p in self.points):
            axes[SEED_AXIS] = self.values_run(SEED_AXIS)
        return axes

    def values_run(self, axis: str) -> tuple[Any, ...]:
        """The distinct values of `axis` among the points, sorted (by type name, then value, when mixed)."""
        return sorted_values(p.params[axis] for p in self.points if axis in p.params)

    def distribution(self, axis: str) -> Mapping[str, Any] | None:
        """The axis's distribution ({kind: args}) when it is one, else None."""
        values = self.spec.axes.get(axis)
        return values if isinstance(values, Mapping) else None

    @property
    def sign(self) -> float:
        """+1 when higher objective is better, -1 otherwise (contract.objective)."""
        return sign(self.spec.objective_direction)

    @property
    def config_axes(self) -> tuple[str, ...]:
        """Every axis but the seed: the axes that define a configuration."""
        return tuple(a for a in self.axes if a != SEED_AXIS)


def sorted_values(values: Iterable[Any]) -> tuple[Any, ...]:
    distinct: list[Any] = []
    for value in values:
        if value not in distinct:
            distinct.append(value)
    try:
        return tuple(sorted(distinct))
    except TypeError:
        return tuple(sorted(distinct, key=lambda v: (type(v).__name__, repr(v))))


def rules_from_grid_json(document: Any, *, tags: Mapping[str, str] | None = None) -> GridRules:
    """Read grid.json's content, and the parent run's trial tags (`tags`: every tag of the parent run);
    raise GridSpecError listing every problem."""
    if not isinstance(document, Mapping):
        raise GridSpecError([f"{contract.ARTIFACT_GRID_SPEC}: must be a JSON object"])
    problems: list[str] = []
    spec: GridSpec | None = None
    raw = document.get("spec")
    if not isinstance(raw, Mapping):
        problems.append("spec: missing or not an object")
    else:
        try:
            spec = GridSpec.model_validate(dict(raw))
        except ValidationError as error:
            problems += [f"{p.location}: {p.message}" for p in problems_of(error, source="spec")]
    points = _merge(_points(document.get("points"), problems=problems), trials(tags or {}, problems=problems))
    if not points:
        problems.append("points: missing or empty, and no trial recorded on the parent run "
                        f"({contract.TAG_TRIAL_PREFIX}<point>)")
    if problems or spec is None:
        raise GridSpecError(problems)
    return GridRules(spec=spec, points=_with_fixed_seed(points, spec))


def _with_fixed_seed(points: tuple[Point, ...], spec: GridSpec) -> tuple[Point, ...]:
    """Confirm points carry a seed even where the seed is fixed in `train` (not an axis): the points without
    one ran with that fixed seed, and say so, so that every run of a configuration has its seed."""
    fixed = spec.train.get(SEED_AXIS)
    if SEED_AXIS in spec.axes or fixed is None or not any(SEED_AXIS in p.params for p in points):
        return points
    return tuple(p if SEED_AXIS in p.params else Point(name=p.name, spec_hash=p.spec_hash,
                                                        params={**p.params, SEED_AXIS: fixed},
                                                        number=p.number, phase=p.phase) for p in points)


def _points(raw: Any, *, problems: list[str]) -> tuple[Point, ...]:
    if raw is None or raw == []:
        return ()  # a TPE search starts with no point: its trials are tags
    if not isinstance(raw, list):
        problems.append("points: must be a list")
        return ()
    points = []
    for i, item in enumerate(raw):
        if not (isinstance(item, Mapping) and isinstance(item.get("name"), str)
                and isinstance(item.get("spec_hash"), str) and isinstance(item.get("params"), Mapping)):
            problems.append(f"points[{i}]: must be {{name, spec_hash, params}}, got {item!r}")
            continue
        points.append(Point(name=item["name"], spec_hash=item["spec_hash"], params=dict(item["params"])))
    return tuple(points)


def trials(tags: Mapping[str, str], *, problems: list[str]) -> tuple[Point, ...]:
    """The points recorded as trial tags on the parent run (contract.trial), by trial number."""
    found, bad = trial_tags(tags)
    problems += bad
    return tuple(Point(name=t.name, spec_hash=t.spec_hash, params=t.params, number=t.number, phase=t.phase)
                 for t in found)


def _merge(listed: tuple[Point, ...], recorded: tuple[Point, ...]) -> tuple[Point, ...]:
    """grid.json's points, in its order, with their trial number and phase when recorded; then the
    trials grid.json does not list, by number."""
    by_name = {p.name: p for p in recorded}
    merged = [Point(name=p.name, spec_hash=p.spec_hash, params=p.params,
                    number=by_name[p.name].number if p.name in by_name else None,
                    phase=by_name[p.name].phase if p.name in by_name else None) for p in listed]
    names = {p.name for p in listed}
    return (*merged, *(p for p in recorded if p.name not in names))
