"""The Grid CRD in the chart is generated from the grid model (`make crd`), and agrees with it."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from contract.crd import CHART_PATH, crd_template
from contract.errors import InvalidInput
from contract.grid import GridSpec, parse_grid
from tests.helpers.crd_schema import grid_validator
from tests.helpers.gridfiles import lab_grid
from tests.helpers.paths import REPO


def test_the_charts_crd_is_the_generated_one() -> None:
    assert (REPO / CHART_PATH).read_text() == crd_template(), "the Grid CRD is out of date: run `make crd`"


def grid_object(spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "tp4.io/v1alpha1", "kind": "Grid", "metadata": {"name": spec.get("name", "x")}, "spec": spec}


def test_the_generated_schema_is_structural() -> None:
    definition = yaml.safe_load("\n".join(line for line in crd_template().splitlines() if "{{" not in line))
    problems = []

    def walk(node: dict[str, Any], path: str) -> None:
        if "$ref" in node or "$defs" in node or "default" in node:
            problems.append(f"{path}: $ref, $defs or default")
        if "type" not in node and not (node.get("x-kubernetes-int-or-string")
                                       or node.get("x-kubernetes-preserve-unknown-fields")):
            problems.append(f"{path}: no type")
        if "properties" in node and "additionalProperties" in node:
            problems.append(f"{path}: properties and additionalProperties together")
        for option in node.get("anyOf", []):
            if set(option) - {"type"} or not node.get("x-kubernetes-int-or-string"):
                problems.append(f"{path}: anyOf other than int-or-string")
        for key, child in (node.get("properties") or {}).items():
            walk(child, f"{path}.{key}")
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), dict):
                walk(node[key], f"{path}[{key}]")
    (version,) = definition["spec"]["versions"]
    walk(version["schema"]["openAPIV3Schema"], "")
    assert problems == []
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert set(spec["properties"]) == set(GridSpec.model_fields)
    assert spec["required"] == ["name", "dataset", "model", "axes"]


@pytest.mark.parametrize("spec", [
    lab_grid(),
    yaml.safe_load((REPO / "grid.yaml").read_text()),
    lab_grid(job={"resources": {"cpu": 2, "memory": "4Gi", "gpu": 1}, "parallelism": 1, "queue": "team-a",
                  "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}]},
             constraints=[{"metric": "recall", "min": 0.1, "max": 0.9}], objective={"metric": "mAP50"}),
])
def test_grids_the_model_accepts_the_crd_accepts(spec: dict[str, Any]) -> None:
    errors = grid_validator(REPO / CHART_PATH)
    assert errors is not None
    GridSpec.model_validate(spec)  # the model (the dataset check apart: it reads files)
    assert errors(grid_object(spec)) == []


@pytest.mark.parametrize(("change", "where"), [
    ({"objective": {"metric": "metrics/mAP50-95(B)"}}, "spec.objective.metric"),
    ({"constraints": [{"metric": "recall(B)", "min": 0.1}]}, "spec.constraints.0.metric"),
    ({"name": "Lab_Grid"}, "spec.name"),
    ({"job": {"parallelism": 0}}, "spec.job.parallelism"),
    ({"job": {"queue": "Team_A"}}, "spec.job.queue"),
    ({"gates": {"min_success_fraction": 2}}, "spec.gates.min_success_fraction"),
    ({"dataset": {"path": "data/tiny_coco", "md5": "abc"}}, "spec.dataset.md5"),
    ({"colour": "blue"}, "'colour' was unexpected"),
])
def test_grids_the_crd_refuses_the_model_refuses(change: dict[str, Any], where: str) -> None:
    spec = lab_grid(**change)
    errors = grid_validator(REPO / CHART_PATH)
    assert errors is not None
    assert any(where in error for error in errors(grid_object(spec))), errors(grid_object(spec))
    with pytest.raises(InvalidInput):
        parse_grid(spec, source="grid.yaml", base_dir=None)
