"""The layering contracts of pyproject.toml ([tool.importlinter]) fail when a forbidden import appears.

Each test copies the packages and pyproject.toml to a temporary folder, optionally adds one forbidden
import, and runs the real `lint-imports` there (the copy comes first on its path, so the installed
project is not what it reads).
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.helpers.paths import REPO

PACKAGES = ("contract", "controller", "jobs", "tinycoco", "devstack")
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
CONTRACTS: dict[str, str] = {  # id -> name, as lint-imports prints it
    contract["id"]: contract["name"]
    for contract in tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
}


def copy_tree(destination: Path) -> Path:
    """The packages, tracking_probe.py and pyproject.toml under `destination` (no caches)."""
    for package in PACKAGES:
        shutil.copytree(REPO / package, destination / package, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("tracking_probe.py", "pyproject.toml"):
        shutil.copy2(REPO / name, destination / name)
    return destination


def lint_imports(tree: Path, *contract_ids: str) -> subprocess.CompletedProcess[str]:
    """`lint-imports` run in `tree` with its pyproject.toml, limited to `contract_ids` when given."""
    env = {**os.environ, "PYTHONPATH": str(tree), "COLUMNS": "500"}  # wide: contract names on one line
    selection = [arg for contract_id in contract_ids for arg in ("--contract", contract_id)]
    return subprocess.run([str(LINT_IMPORTS), "--no-logo", "--no-cache", *selection],
                          cwd=tree, env=env, capture_output=True, text=True, timeout=120)


def add_import(tree: Path, module_file: str, statement: str) -> None:
    path = tree / module_file
    path.write_text(path.read_text() + f"\n{statement}\n")


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_tree(tmp_path_factory.mktemp("pristine"))


def test_the_documented_contracts_are_there() -> None:
    assert set(CONTRACTS) >= {"controller-no-ml", "controller-no-jobs-no-dataset-builder",
                              "jobs-no-kubernetes-no-controller", "contract-is-a-leaf", "core-is-pure",
                              "backends-independent", "jobs-common-imports-no-job", "finalize-layers",
                              "one-driver-two-stores", "core-imports-nothing-above"}


@pytest.mark.parametrize("contract_id", sorted(CONTRACTS))
def test_the_unmodified_tree_keeps_the_contract(pristine: Path, contract_id: str) -> None:
    done = lint_imports(pristine, contract_id)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{CONTRACTS[contract_id]} KEPT" in done.stdout


@pytest.mark.parametrize(("module_file", "statement", "chain", "contract_id"), [
    ("controller/core/expanding.py", "import torch", "controller.core.expanding -> torch", "controller-no-ml"),
    ("controller/core/rendering.py", "import subprocess", "controller.core.rendering -> subprocess", "core-is-pure"),
    ("controller/core/state.py", "from controller.local import state", "controller.core.state -> controller.local",
     "core-is-pure"),
    ("controller/errors.py", "import tinycoco.building", "controller.errors -> tinycoco.building",
     "controller-no-jobs-no-dataset-builder"),
    ("jobs/common/errors.py", "import kubernetes", "jobs.common.errors -> kubernetes",
     "jobs-no-kubernetes-no-controller"),
    ("contract/errors.py", "import jobs.common.errors", "contract.errors -> jobs.common.errors",
     "contract-is-a-leaf"),
    ("controller/local/state.py", "import controller.cluster.status",
     "controller.local.state -> controller.cluster.status", "backends-independent"),
    ("jobs/common/errors.py", "import jobs.train.options", "jobs.common.errors -> jobs.train.options",
     "jobs-common-imports-no-job"),
    ("jobs/common/tracking.py", "import jobs.finalize.records", "jobs.common.tracking -> jobs.finalize.records",
     "jobs-common-imports-no-job"),
    # a value type reaching back up to the behaviour that produces it: the circle ranking <-> flags of old
    ("jobs/finalize/flags.py", "import jobs.finalize.ranking", "jobs.finalize.flags -> jobs.finalize.ranking",
     "finalize-layers"),
    ("jobs/finalize/records.py", "import jobs.finalize.reporting", "jobs.finalize.records -> jobs.finalize.reporting",
     "finalize-layers"),
    # two modules of one layer stay independent
    ("jobs/finalize/gates.py", "import jobs.finalize.plotting", "jobs.finalize.gates -> jobs.finalize.plotting",
     "finalize-layers"),
])
def test_a_forbidden_import_breaks_its_contract(tmp_path: Path, module_file: str, statement: str, chain: str,
                                                contract_id: str) -> None:
    tree = copy_tree(tmp_path)
    add_import(tree, module_file, statement)
    done = lint_imports(tree)
    assert done.returncode != 0, done.stdout
    assert f"{CONTRACTS[contract_id]} BROKEN" in done.stdout
    assert chain in done.stdout


# tracking_probe.py is a module, which import-linter does not take as a root package: its rule
# (the same as contract's) is checked here, on its import statements.
TRACKING_PROBE_FORBIDDEN = {"controller", "jobs", "tinycoco", "devstack", "torch", "torchvision", "ultralytics",
                            "kubernetes"}


def top_level_imports(source: str) -> set[str]:
    """The top-level package of every import statement in `source` (relative imports excluded)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


def test_tracking_probe_imports_neither_half_nor_the_ml_or_kubernetes_stacks() -> None:
    assert top_level_imports((REPO / "tracking_probe.py").read_text()) & TRACKING_PROBE_FORBIDDEN == set()


def test_the_tracking_probe_check_sees_a_forbidden_import_inside_a_function() -> None:
    source = (REPO / "tracking_probe.py").read_text() + "\n\ndef f() -> None:\n    from jobs.common import errors\n"
    assert top_level_imports(source) & TRACKING_PROBE_FORBIDDEN == {"jobs"}
