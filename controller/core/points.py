"""A grid point: its name (a Kubernetes Job name), its parameters and its spec hash; the rules of names (pure).

The value types both the expansion (controller.core.expanding) and the search (controller.core.searching)
build on: neither imports the other for them."""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from typing import Any

import contract
from contract.errors import InvalidInput, Problem
from contract.grid import GridSpec

# A Job name is a DNS-1123 subdomain; it is also a label value (tp4.io/point,
# job-name), which caps it at 63 characters.
# Dot-separated DNS labels (so no '..'), matched whole (a trailing newline does not pass).
JOB_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
MAX_NAME_LENGTH = 63


@dataclass(frozen=True)
class GridPoint:
    name: str
    params: dict[str, Any]  # the axis values of this point
    spec_hash: str
    phase: str = contract.PHASE_SEARCH  # or contract.PHASE_CONFIRM: a re-run of a top configuration

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "spec_hash": self.spec_hash, "params": self.params}


def format_value(value: Any) -> str:
    """How an axis value appears in a Job name: 0.01 -> '0.01', True -> 'true', 'AdamW' -> 'adamw'
    (Job names are lowercase)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return repr(value)
    return str(value).lower()


def point_spec(grid: GridSpec, params: dict[str, Any], *, dataset_md5: str) -> dict[str, Any]:
    """Everything that determines a point's result: its hash changes when any of it does."""
    return {
        "train": {**grid.train, **params},
        "weights": grid.weights,
        "fallback_weights": grid.fallback_weights,
        "dataset": {"path": grid.dataset_path, "md5": dataset_md5},
        "image": grid.job.image,
        "code_version": contract.CODE_VERSION,
    }


def finalizer_name(grid: GridSpec) -> str:
    return f"finalize-{grid.name}"


def render_name(template: str, params: dict[str, Any]) -> str:
    return template.format(**{k: format_value(v) for k, v in params.items()})


def check_template(template: str, axes: list[str]) -> list[Problem]:
    fields = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    unknown = sorted(fields - set(axes))
    problems = [Problem("job.name_template", f"refers to {', '.join(unknown)}, which is not an axis "
                        f"(axes: {', '.join(axes)})")] if unknown else []
    return problems


def check_names(grid: GridSpec, points: list[GridPoint]) -> None:
    """Refuse a name template that gives invalid or duplicate Job names."""
    problems: list[Problem] = []
    seen: dict[str, GridPoint] = {}
    for point in points:
        if len(point.name) > MAX_NAME_LENGTH or not JOB_NAME.fullmatch(point.name):
            problems.append(Problem("job.name_template", f"gives {point.name!r}, not a valid Kubernetes Job name "
                                    f"(lowercase a-z, 0-9, '-', '.', at most {MAX_NAME_LENGTH} characters)"))
        elif point.name in seen:
            problems.append(Problem("job.name_template", f"gives {point.name!r} for both {seen[point.name].params} "
                                    f"and {point.params}: add the missing axes to the template"))
        seen.setdefault(point.name, point)
    finalizer = finalizer_name(grid)
    if finalizer in seen:
        problems.append(Problem("job.name_template", f"gives {finalizer!r}, the name of the finalizer Job"))
    if problems:
        raise InvalidInput(problems)
