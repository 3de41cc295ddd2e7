"""The finalizer's view of a grid: what grid.json says about ranking and promotion (pure).

grid.json (contract.ARTIFACT_GRID_SPEC) holds {"spec": ..., "points": [...]}.
The spec is accepted in two shapes, so that the finalizer does not depend on
how the controller serialises it:
- grid.yaml's own shape: `objective: {metric, direction}`, `gates: {...}`,
  `report: {language}`, `model: {registered_name}`;
- the controller's flat GridSpec dict: `objective_metric`, `objective_direction`,
  `min_success_fraction`, ..., `language`, `registered_model`.
Every problem found is reported at once, as a GridSpecError (exit code 2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import contract

SEED_AXIS = "seed"
DIRECTIONS = ("maximize", "minimize")
LANGUAGES = ("en", "fr")


class GridSpecError(Exception):
    """grid.json is missing or does not say what the finalizer needs."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


@dataclass(frozen=True)
class Constraint:
    metric: str
    min: float | None = None
    max: float | None = None

    def violation(self, value: float) -> str | None:
        """'min' or 'max' when `value` breaks this bound ('min' also when it is missing)."""
        if value is None or math.isnan(value):
            return "min" if self.min is not None else "max"
        if self.min is not None and value < self.min:
            return "min"
        if self.max is not None and value > self.max:
            return "max"
        return None

    def limit(self, bound: str) -> float:
        return self.min if bound == "min" else self.max  # type: ignore[return-value]


@dataclass(frozen=True)
class Point:
    name: str
    spec_hash: str
    params: Mapping[str, Any]


@dataclass(frozen=True)
class GridRules:
    name: str
    experiment: str
    axes: Mapping[str, tuple[Any, ...]]
    points: tuple[Point, ...]
    objective: str = contract.METRIC_MAP50_95
    direction: str = "maximize"
    constraints: tuple[Constraint, ...] = ()
    min_success_fraction: float = 0.75
    min_objective: float = 0.0
    champion_margin: float = 0.0
    language: str = "en"
    registered_name: str = ""
    dataset_path: str | None = None
    dataset_md5: str | None = None
    weights: str | None = None
    train: Mapping[str, Any] = field(default_factory=dict)

    @property
    def sign(self) -> float:
        """+1 when higher objective is better, -1 otherwise."""
        return 1.0 if self.direction == "maximize" else -1.0

    @property
    def config_axes(self) -> tuple[str, ...]:
        """Every axis but the seed: the axes that define a configuration."""
        return tuple(a for a in self.axes if a != SEED_AXIS)


def rules_from_grid_json(document: Any) -> GridRules:
    """Read grid.json's content; raise GridSpecError listing every problem."""
    problems: list[str] = []
    if not isinstance(document, Mapping):
        raise GridSpecError([f"{contract.ARTIFACT_GRID_SPEC}: must be a JSON object"])
    spec = document.get("spec")
    if not isinstance(spec, Mapping):
        problems.append("spec: missing or not an object")
        spec = {}
    points = _points(document.get("points"), problems=problems)
    values = _spec_values(spec, problems=problems)
    if problems:
        raise GridSpecError(problems)
    return GridRules(points=points, **values)


def _nested(spec: Mapping[str, Any], *, section: str, key: str, flat: str) -> Any:
    inner = spec.get(section)
    if isinstance(inner, Mapping) and inner.get(key) is not None:
        return inner[key]
    return spec.get(flat)


def _spec_values(spec: Mapping[str, Any], *, problems: list[str]) -> dict[str, Any]:
    name = spec.get("name")
    if not isinstance(name, str) or not name:
        problems.append("spec.name: missing")
    axes = _axes(spec.get("axes"), problems=problems)
    direction = _nested(spec, section="objective", key="direction", flat="objective_direction") or "maximize"
    if direction not in DIRECTIONS:
        problems.append(f"spec.objective.direction: must be one of {DIRECTIONS}, got {direction!r}")
    language = _nested(spec, section="report", key="language", flat="language") or "en"
    if language not in LANGUAGES:
        problems.append(f"spec.report.language: must be one of {LANGUAGES}, got {language!r}")
    dataset = spec.get("dataset") if isinstance(spec.get("dataset"), Mapping) else {}
    return {
        "name": name or "",
        "experiment": spec.get("experiment") or name or "",
        "axes": axes,
        "objective": str(_nested(spec, section="objective", key="metric", flat="objective_metric")
                         or contract.METRIC_MAP50_95),
        "direction": direction,
        "constraints": _constraints(spec.get("constraints"), problems=problems),
        "min_success_fraction": _number(spec, key="min_success_fraction", default=0.75, problems=problems),
        "min_objective": _number(spec, key="min_objective", default=0.0, problems=problems),
        "champion_margin": _number(spec, key="champion_margin", default=0.0, problems=problems),
        "language": language,
        "registered_name": str(_nested(spec, section="model", key="registered_name", flat="registered_model")
                               or f"{name}-model"),
        "dataset_path": dataset.get("path") or spec.get("dataset_path"),
        "dataset_md5": dataset.get("md5") or spec.get("dataset_md5"),
        "weights": _nested(spec, section="model", key="weights", flat="weights"),
        "train": dict(spec.get("train") or {}),
    }


def _number(spec: Mapping[str, Any], *, key: str, default: float, problems: list[str]) -> float:
    value = _nested(spec, section="gates", key=key, flat=key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        problems.append(f"spec.gates.{key}: must be a number, got {value!r}")
        return default
    return float(value)


def _axes(raw: Any, *, problems: list[str]) -> dict[str, tuple[Any, ...]]:
    if not isinstance(raw, Mapping) or not raw:
        problems.append("spec.axes: missing or empty")
        return {}
    axes = {}
    for axis, values in raw.items():
        if not isinstance(values, list) or not values:
            problems.append(f"spec.axes.{axis}: must be a non-empty list")
            continue
        axes[str(axis)] = tuple(values)
    return axes


def _constraints(raw: Any, *, problems: list[str]) -> tuple[Constraint, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        problems.append("spec.constraints: must be a list of {metric, min|max}")
        return ()
    constraints = []
    for i, item in enumerate(raw):
        bounds = {k: item.get(k) for k in ("min", "max")} if isinstance(item, Mapping) else {}
        bounds = {k: v for k, v in bounds.items() if v is not None}
        metric = item.get("metric") if isinstance(item, Mapping) else None
        if not isinstance(metric, str) or not bounds or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in bounds.values()):
            problems.append(f"spec.constraints[{i}]: must be {{metric, min|max}} with numeric bounds, got {item!r}")
            continue
        constraints.append(Constraint(metric=metric, **{k: float(v) for k, v in bounds.items()}))
    return tuple(constraints)


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
