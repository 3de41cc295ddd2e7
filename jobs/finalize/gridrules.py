"""The finalizer's view of a grid: what grid.json says about ranking and promotion (pure).

grid.json (contract.ARTIFACT_GRID_SPEC) holds {"spec": GridSpec.to_dict(), "points": [...]}:
the spec in grid.yaml's own shape, written by the controller (controller/tracking.py)
and read back here through the same model, contract.grid.GridSpec. Every problem
found is reported at once, as a GridSpecError (exit code 2).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

import contract
from contract.grid import Constraint, GridSpec, problems_of
from contract.objective import Direction, sign

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


@dataclass(frozen=True)
class GridRules:
    """The validated grid (`spec`) and its points, with the names the ranking code reads."""

    spec: GridSpec
    points: tuple[Point, ...]

    @property
    def name(self) -> str:
        return str(self.spec.name)

    @property
    def experiment(self) -> str:
        return str(self.spec.experiment)

    @property
    def axes(self) -> Mapping[str, tuple[Any, ...]]:
        return {axis: tuple(values) for axis, values in self.spec.axes.items()}

    @property
    def objective(self) -> str:
        return self.spec.objective_metric

    @property
    def direction(self) -> Direction:
        return self.spec.objective_direction

    @property
    def constraints(self) -> tuple[Constraint, ...]:
        return tuple(self.spec.constraints)

    @property
    def min_success_fraction(self) -> float:
        return self.spec.min_success_fraction

    @property
    def min_objective(self) -> float:
        return self.spec.min_objective

    @property
    def champion_margin(self) -> float:
        return self.spec.champion_margin

    @property
    def language(self) -> str:
        return self.spec.language

    @property
    def registered_name(self) -> str:
        return self.spec.registered_model

    @property
    def dataset_path(self) -> str:
        return self.spec.dataset_path

    @property
    def dataset_md5(self) -> str | None:
        return self.spec.dataset_md5

    @property
    def weights(self) -> str:
        return self.spec.weights

    @property
    def train(self) -> Mapping[str, Any]:
        return dict(self.spec.train)

    @property
    def sign(self) -> float:
        """+1 when higher objective is better, -1 otherwise (contract.objective)."""
        return sign(self.direction)

    @property
    def config_axes(self) -> tuple[str, ...]:
        """Every axis but the seed: the axes that define a configuration."""
        return tuple(a for a in self.axes if a != SEED_AXIS)


def rules_from_grid_json(document: Any) -> GridRules:
    """Read grid.json's content; raise GridSpecError listing every problem."""
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
    points = _points(document.get("points"), problems=problems)
    if problems or spec is None:
        raise GridSpecError(problems)
    return GridRules(spec=spec, points=points)


def _points(raw: Any, *, problems: list[str]) -> tuple[Point, ...]:
    if not isinstance(raw, list) or not raw:
        problems.append("points: missing or empty")
        return ()
    points = []
    for i, item in enumerate(raw):
        if not (isinstance(item, Mapping) and isinstance(item.get("name"), str)
                and isinstance(item.get("spec_hash"), str) and isinstance(item.get("params"), Mapping)):
            problems.append(f"points[{i}]: must be {{name, spec_hash, params}}, got {item!r}")
            continue
        points.append(Point(name=item["name"], spec_hash=item["spec_hash"], params=dict(item["params"])))
    return tuple(points)
