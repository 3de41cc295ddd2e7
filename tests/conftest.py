"""Shared fixtures: paths, the real COCO128 copy, an isolated project folder."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.paths import BACKBONE, COCO128, REPO, SHARED  # noqa: F401


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """No test reaches the Ultralytics servers or writes the user's settings."""
    monkeypatch.setenv("YOLO_OFFLINE", "true")
    monkeypatch.setenv("YOLO_CONFIG_DIR", str(tmp_path_factory.mktemp("ultralytics-config")))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


@pytest.fixture(autouse=True)
def _no_tracking_uri_leaks() -> Iterator[None]:
    """mlflow.set_tracking_uri() (which tp4's model and registry code calls in-process) also sets the
    MLFLOW_TRACKING_URI environment variable: after a test, neither may reach the next one, whose
    module-scoped fixtures (a grid run in a subprocess) start before its function-scoped ones."""
    yield
    if "mlflow" in sys.modules:
        sys.modules["mlflow"].set_tracking_uri(None)
    os.environ.pop("MLFLOW_TRACKING_URI", None)


@pytest.fixture
def coco128() -> Path:
    if not COCO128.is_dir():
        pytest.fail(f"the local COCO128 copy is missing at {COCO128} (set TP4_SHARED)")
    return COCO128
