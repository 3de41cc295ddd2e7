"""Which finalizer failures are retried (exit 1) and which are not (exit 2: the Job's podFailurePolicy fails it)."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests
from mlflow.exceptions import MlflowException
from mlflow.protos import databricks_pb2

import contract
from jobs.common.errors import BadInput
from jobs.finalize.cli import exit_code
from jobs.finalize.finalizing import Failures, Outcome, deterministic
from jobs.finalize.gridrules import GridSpecError
from jobs.finalize.reporting import EvaluationStatus


def mlflow_error(message: str, code: str) -> MlflowException:
    """What the MLflow client raises when the server answers with `code`."""
    return MlflowException(message, error_code=getattr(databricks_pb2, code))


@pytest.mark.parametrize(("error", "expected"), [
    (BadInput("TP4_PARENT_RUN_ID: no such run"), True),
    (GridSpecError(["grid.json: not valid JSON"]), True),
    (mlflow_error("Run with id=abc not found", "RESOURCE_DOES_NOT_EXIST"), True),
    (mlflow_error("bad alias name", "INVALID_PARAMETER_VALUE"), True),
    (mlflow_error("no permission on the model", "PERMISSION_DENIED"), True),
    (mlflow_error("API request failed: connection refused", "INTERNAL_ERROR"), False),
    (mlflow_error("503 Service Unavailable", "TEMPORARILY_UNAVAILABLE"), False),
    (mlflow_error("429", "REQUEST_LIMIT_EXCEEDED"), False),
    (mlflow_error("two finalizers registered at once", "RESOURCE_ALREADY_EXISTS"), False),
    (requests.ConnectionError("connection refused"), False),
    (OSError("No space left on device"), False),
])
def test_only_failures_a_retry_cannot_change_are_deterministic(error: Exception, expected: bool) -> None:
    assert deterministic(error) is expected


def outcome(failures: Failures) -> Outcome:
    return Outcome(grid="g", verdict="NO", failed_gates=(), candidate=None, report_dir=Path("reports/g"),
                   test=EvaluationStatus(evaluated=False), registry=None, errors=tuple(failures.messages),
                   retryable=failures.retryable)


def test_the_exit_code_is_2_only_when_every_error_is_deterministic() -> None:
    assert exit_code(outcome(Failures())) == contract.EXIT_OK
    failures = Failures()
    failures.add("model registration failed: denied", mlflow_error("denied", "PERMISSION_DENIED"))
    assert exit_code(outcome(failures)) == contract.EXIT_BAD_INPUT
    failures.add("test evaluation failed: server gone", requests.ConnectionError("refused"))
    assert exit_code(outcome(failures)) == contract.EXIT_FAILED
