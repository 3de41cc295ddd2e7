"""Property: any mutation of the lab grid is valid, or refused as InvalidInput with located problems (issue 11).

Never a traceback, never an unlocated message, always quickly; a valid grid expands into Jobs or is refused
the same way (its name template).
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contract.errors import InvalidInput
from contract.grid import parse_grid
from controller.core.expanding import expand
from tests.helpers.gridfiles import MD5, lab_grid

VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=20)
    | st.sampled_from(["SGD", "sgd", "auto", "mAP50-95", "metrics/recall(B)", "recall", "320", "lab\n", "{lr0",
                       "train-{imgsz}", "Exists", "NoSchedule", "3Gi", "lots", ""]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8)


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            found += paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += paths(value, (*prefix, index))
    return found


def full_lab_grid() -> dict[str, Any]:
    return lab_grid(job={"name_template": "train-{imgsz}-{lr0}-{seed}", "resources": {"cpu": "1", "gpu": 0},
                         "tolerations": [{"key": "gpu", "operator": "Exists"}]},
                    objective={"metric": "mAP50-95"}, constraints=[{"metric": "recall", "min": 0.1}],
                    gates={"min_objective": 0.01}, report={"language": "en"})


@st.composite
def mutated_grids(draw: st.DrawFn) -> dict[str, Any]:
    grid = full_lab_grid()
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        path = draw(st.sampled_from(paths(grid)[1:]))
        parent = grid
        for part in path[:-1]:
            parent = parent[part]
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "delete" and isinstance(parent, dict):
            del parent[path[-1]]
        elif action == "add" and isinstance(parent, dict):
            parent[draw(st.text(max_size=10))] = draw(VALUES)
        else:
            parent[path[-1]] = draw(VALUES)
    return grid


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(grid=mutated_grids())
def test_a_mutated_lab_grid_is_valid_or_refused_with_locations(tmp_path: Path, grid: dict[str, Any]) -> None:
    (tmp_path / "data" / "tiny_coco").mkdir(parents=True, exist_ok=True)
    raw = copy.deepcopy(grid)
    started = time.monotonic()
    try:
        spec = parse_grid(raw, source="grid.yaml", base_dir=tmp_path)
        expand(spec, dataset_md5=MD5)
    except InvalidInput as error:
        assert error.problems
        for problem in error.problems:
            assert problem.location.startswith("grid.yaml") or problem.location.startswith("job."), problem
            assert problem.message and "Traceback" not in problem.message
    assert time.monotonic() - started < 2.0
