"""The finalizer's flow: read the grid back from MLflow, decide, report, register.

Each step is a function of the previous ones' results; the I/O lives in
jobs.finalize.results (MLflow), jobs.finalize.evaluating (the test split), jobs.finalize.registry (the
model registry), jobs.finalize.plotting and jobs.finalize.reporting (files).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from jobs.common import mlflow_dataset, tracking
from jobs.common.errors import BadInput
from jobs.finalize import plotting, reporting, results
from jobs.finalize.gates import Decision, decide
from jobs.finalize.gridrules import GridRules, GridSpecError
from jobs.finalize.ranking import Ranking, rank
from jobs.finalize.records import ChampionInfo, EvaluationStatus, RunRecord, not_compared
from jobs.finalize.reporting import ReportInputs


@dataclass(frozen=True)
class Options:
    parent_run_id: str
    reports_dir: Path
    evaluate_test: bool = True
    register: bool = True
    data_path: str | None = None  # the dataset folder (holding data.yaml); default: the grid's


@dataclass(frozen=True)
class Outcome:
    grid: str
    verdict: str
    failed_gates: tuple[str, ...]
    candidate: RunRecord | None
    report_dir: Path
    test: EvaluationStatus
    registry: Mapping[str, Any] | None
    errors: tuple[str, ...] = field(default_factory=tuple)
    retryable: bool = False  # some error may pass on a retry (else every error is deterministic)


# MLflow error codes a retry cannot change: the request, the credentials or the store's state is wrong.
# A server unreachable, timing out or failing answers INTERNAL_ERROR, TEMPORARILY_UNAVAILABLE (5xx) and
# the like, REQUEST_LIMIT_EXCEEDED (429): those may pass on a retry, as may RESOURCE_ALREADY_EXISTS (a race).
DETERMINISTIC_MLFLOW_CODES = frozenset({"INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST", "BAD_REQUEST",
                                        "PERMISSION_DENIED", "UNAUTHENTICATED"})


def deterministic(exc: BaseException) -> bool:
    """Whether running the finalizer again cannot help (exit 2): a bad grid spec or input, or an MLflow error
    that names a bad request, bad credentials or a missing resource. Anything else may be transient (exit 1)."""
    if isinstance(exc, (BadInput, GridSpecError)):
        return True
    return isinstance(exc, MlflowException) and exc.error_code in DETERMINISTIC_MLFLOW_CODES


@dataclass
class Failures:
    """What failed after the grid was read (the report is still written), and whether a retry may help."""

    messages: list[str] = field(default_factory=list)
    retryable: bool = False

    def add(self, message: str, exc: BaseException) -> None:
        self.messages.append(message)
        self.retryable = self.retryable or not deterministic(exc)


def finalize(*, client: MlflowClient, options: Options) -> Outcome:
    tracking.wait_for_server(uri=client.tracking_uri)  # a server still starting is waited for, bounded
    rules, parent = results.load_rules(client=client, parent_run_id=options.parent_run_id)
    ranking = rank(runs=results.fetch_runs(client=client, rules=rules, parent=parent), rules=rules)
    errors = Failures()
    candidate, champion, test = evaluate(client=client, ranking=ranking, options=options, errors=errors)
    decision = decide(ranking=ranking, candidate=candidate, champion=champion)
    registry = register(client=client, ranking=ranking, candidate=candidate, decision=decision,
                        options=options, errors=errors)
    directory = options.reports_dir / rules.spec.name
    plots = plotting.write_plots(ranking=ranking, directory=directory)
    data = reporting.report_data(ReportInputs(
        ranking=ranking, decision=decision, candidate=candidate, champion=champion,
        parent_run_id=options.parent_run_id, generated_at=datetime.now(UTC).isoformat(timespec="seconds"),
        test=test, registry=registry, plots=plots, tracking_uri=_public_uri(client.tracking_uri),
        errors=errors.messages, dataset=_dataset_card(options=options, rules=rules)))
    reporting.write_report(directory=directory, data=data, markdown=reporting.render_markdown(data=data),
                           csv_text=reporting.runs_csv(ranking))
    results.log_report(client=client, parent_run_id=options.parent_run_id, directory=directory,
                       verdict=decision.verdict)
    return Outcome(grid=rules.spec.name, verdict=decision.verdict, failed_gates=decision.failed, candidate=candidate,
                   report_dir=directory, test=test, registry=registry, errors=tuple(errors.messages),
                   retryable=errors.retryable)


def _public_uri(uri: str) -> str:
    return tracking.redact_uri(uri)


def evaluate(*, client: MlflowClient, ranking: Ranking, options: Options,
             errors: Failures) -> tuple[RunRecord | None, ChampionInfo | None, EvaluationStatus]:
    """The candidate (and the champion, for a fair comparison) on the held-out test split."""
    candidate = ranking.candidate
    champion = results.fetch_champion(client=client, name=ranking.rules.spec.registered_model)
    if candidate is None:
        return None, champion, EvaluationStatus(evaluated=False, reason="no candidate")
    if not options.evaluate_test:
        return candidate, not_compared(champion, "test_not_evaluated"), EvaluationStatus(
            evaluated=False, reason="disabled (--no-test-eval)")
    from jobs.finalize import evaluating  # ultralytics is imported only when a model is evaluated

    try:
        return evaluating.evaluate_on_test(client=client, ranking=ranking, candidate=candidate,
                                           champion=champion, data_path=options.data_path)
    except Exception as exc:  # the report must still say what happened
        errors.add(f"test evaluation failed: {exc}", exc)
        return candidate, not_compared(champion, "test_evaluation_failed"), EvaluationStatus(
            evaluated=False, reason=f"failed: {exc}")



def register(*, client: MlflowClient, ranking: Ranking, candidate: RunRecord | None, decision: Decision,
             options: Options, errors: Failures) -> Mapping[str, Any] | None:
    if candidate is None or not options.register:
        return None
    from jobs.finalize import registry  # pyfunc logging pulls in heavier modules

    try:
        return registry.register_candidate(client=client, rules=ranking.rules, candidate=candidate,
                                           promote=decision.promote, parent_run_id=options.parent_run_id)
    except Exception as exc:
        errors.add(f"model registration failed: {exc}", exc)
        return {"error": str(exc)}


def with_metrics(run: RunRecord, metrics: Mapping[str, float]) -> RunRecord:
    return dataclasses.replace(run, metrics={**run.metrics, **metrics})


def _dataset_card(*, options: Options, rules: GridRules) -> dict[str, Any]:
    """The dataset card's split sizes for the report's metric-scale paragraph; {} where the folder has none (a
    cluster finalizer that did not pull the dataset)."""
    path = Path(options.data_path or rules.spec.dataset_path or ".")
    folder = path.parent if path.suffix in (".yaml", ".yml") else path
    try:
        return mlflow_dataset.card_profile(folder=folder)
    except (OSError, ValueError):
        return {}
