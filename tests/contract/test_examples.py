"""Every grid file under examples/ is valid: for the controller (grid.yaml's model), for the Grid CRD, and it
renders the Jobs it starts with."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from contract.grid import load_grid
from controller.submitting import render_grid
from tests.helpers.crd_schema import grid_validator
from tests.helpers.paths import REPO

EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))


def test_there_is_an_example_for_each_search_mode_and_feature() -> None:
    specs = [yaml.safe_load(path.read_text()) for path in EXAMPLES]
    modes = {(spec.get("search") or {}).get("mode", "grid") for spec in specs}
    assert modes == {"grid", "random", "tpe"}
    assert any("early_stopping" in spec for spec in specs) and any("confirm" in spec for spec in specs)
    assert any((spec.get("objective") or {}).get("second") for spec in specs)
    listed = (REPO / "examples" / "README.md").read_text()
    assert all(path.name in listed for path in EXAMPLES)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_the_example_is_valid_and_renders(path: Path) -> None:
    grid = load_grid(path, base_dir=REPO)
    spec = yaml.safe_load(path.read_text())
    spec["dataset"]["md5"] = "0123456789abcdef0123456789abcdef.dir"  # a Grid resource pins it
    validate = grid_validator()
    assert validate is not None
    assert validate({"apiVersion": "tp4.io/v1alpha1", "kind": "Grid", "metadata": {"name": grid.name},
                     "spec": spec}) == []
    jobs = [d for d in yaml.safe_load_all(render_grid(grid_path=path, root=REPO)) if d and d["kind"] == "Job"]
    assert len(jobs) >= 2  # at least one point and the finalizer
