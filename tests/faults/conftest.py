"""The fault drills' shared inputs: the tiny dataset (built once), one finished one-point project, and the
production-like stack with the dataset pushed to its S3 remote (`stack`, `published`: one per module that asks)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.controller.local.test_submit_grid import tiny_dataset
from tests.faults import drills
from tests.helpers.paths import COCO128
from tests.helpers.stackfixtures import published, stack  # noqa: F401 (the stack drills: test_throttling.py)


@pytest.fixture(scope="session")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """(folder of data/tiny_coco, its md5)."""
    if not COCO128.is_dir():
        pytest.fail(f"the local COCO128 copy is missing at {COCO128} (set TP4_SHARED)")
    return tiny_dataset(COCO128, tmp_path_factory.mktemp("dataset"))


@pytest.fixture(scope="session")
def finished(dataset: tuple[Path, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project whose one-point grid `done` ran to its decision report (never modified: copy it)."""
    folder = drills.new_project(dataset[0], tmp_path_factory.mktemp("finished"), dataset[1], name="done")
    result = drills.controller(folder, "submit-grid", "grid.yaml")
    assert result.returncode == 0, result.stdout + result.stderr
    return folder


@pytest.fixture
def copy_of_finished(finished: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "copied-project"
    shutil.copytree(finished, folder)
    return folder
