"""Fixtures of the cluster controller's tests: the fake API server (real HTTP) and a real MLflow store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.helpers.crd_schema import grid_validator
from tests.helpers.fake_kube import FakeKube


@pytest.fixture
def kube() -> Iterator[FakeKube]:
    """The fake API server, validating Grids against the chart's CRD (a test module may define its own)."""
    with FakeKube(grid_schema=grid_validator()) as server:
        yield server


@pytest.fixture
def uri(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


@pytest.fixture
def mlflow(uri: str) -> MlflowClient:
    return MlflowClient(tracking_uri=uri)
