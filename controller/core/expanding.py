"""Grid expansion: the cartesian product of the axes, as named, hashed points (pure).

The point type and the name rules are controller.core.points' (re-exported here, where callers import them)."""

from __future__ import annotations

import itertools

import contract
from contract.errors import InvalidInput
from contract.grid import GridSpec
from controller.core.points import (
    JOB_NAME,
    MAX_NAME_LENGTH,
    GridPoint,
    check_names,
    check_template,
    finalizer_name,
    format_value,
    point_spec,
    render_name,
)

__all__ = ["JOB_NAME", "MAX_NAME_LENGTH", "GridPoint", "check_names", "check_template", "expand", "finalizer_name",
           "format_value", "point_spec", "render_name"]


def expand(grid: GridSpec, *, dataset_md5: str) -> list[GridPoint]:
    """The points known before anything runs, in a stable order: one per combination of axis values
    (search.mode grid), the `trials` sampled points (random), none (tpe: asked as results come;
    controller.core.searching). InvalidInput when the name template gives invalid or duplicate names."""
    names = list(grid.axes)
    problems = check_template(grid.job.name_template, names)
    if problems:
        raise InvalidInput(problems)
    if grid.sampled:
        from controller.core import searching  # Optuna: imported by a search only

        preview = int(grid.search.trials or 0) if grid.search.mode == "random" else 1
        sampled = [p for _, p in searching.sample_points(grid, [], room=preview, dataset_md5=dataset_md5,
                                                          names=searching.Names())]
        check_names(grid, sampled)
        return sampled if grid.search.mode == "random" else []
    points = []
    for values in itertools.product(*(grid.axes[n] for n in names)):
        params = dict(zip(names, values, strict=True))
        points.append(GridPoint(
            name=render_name(grid.job.name_template, params),
            params=params,
            spec_hash=contract.spec_hash(point_spec(grid, params, dataset_md5=dataset_md5)),
        ))
    check_names(grid, points)
    return points
