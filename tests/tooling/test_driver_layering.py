"""The driver's layering contracts (pyproject.toml: one-driver-two-stores, core-imports-nothing-above) hold
on the tree as it is and fail, naming the import, when a backend or the driver reaches where it must not."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.tooling.test_layering import CONTRACTS, add_import, copy_tree, lint_imports

DRIVER_CONTRACTS = ("one-driver-two-stores", "core-imports-nothing-above")


def test_the_driver_contracts_are_there_and_kept(tmp_path: Path) -> None:
    assert set(DRIVER_CONTRACTS) <= set(CONTRACTS)
    done = lint_imports(copy_tree(tmp_path), *DRIVER_CONTRACTS)
    assert done.returncode == 0, done.stdout + done.stderr
    assert all(f"{CONTRACTS[c]} KEPT" in done.stdout for c in DRIVER_CONTRACTS)


@pytest.mark.parametrize(("module_file", "statement", "chain", "contract_id"), [
    # the driver reaching into a store: it would no longer be the same for both
    ("controller/driving.py", "import controller.local.store", "controller.driving -> controller.local.store",
     "one-driver-two-stores"),
    # one backend using the other's store
    ("controller/cluster/store.py", "import controller.local.store",
     "controller.cluster.store -> controller.local.store", "one-driver-two-stores"),
    # the pure rules reaching up to the driver
    ("controller/core/reconciling.py", "import controller.driving", "controller.core.reconciling -> controller.driving",
     "one-driver-two-stores"),
    # the core taking the controller's errors instead of the contract's
    ("controller/core/expanding.py", "import controller.errors", "controller.core.expanding -> controller.errors",
     "core-imports-nothing-above"),
])
def test_a_forbidden_import_breaks_the_contract(tmp_path: Path, module_file: str, statement: str, chain: str,
                                                contract_id: str) -> None:
    tree = copy_tree(tmp_path)
    add_import(tree, module_file, statement)
    done = lint_imports(tree, contract_id)
    assert done.returncode != 0
    assert f"{CONTRACTS[contract_id]} BROKEN" in done.stdout, done.stdout
    assert chain in done.stdout, done.stdout
