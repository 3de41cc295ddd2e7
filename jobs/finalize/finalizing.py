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

from mlflow.tracking import MlflowClient

from jobs.common import tracking
from jobs.finalize import plotting, reporting, results
from jobs.finalize.gates import Decision, decide
from jobs.finalize.ranking import Ranking, rank
from jobs.finalize.records import ChampionInfo, RunRecord
from jobs.finalize.reporting import EvaluationStatus, ReportInputs


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


def finalize(*, client: MlflowClient, options: Options) -> Outcome:
    tracking.wait_for_server(uri=client.tracking_uri)  # a server still starting is waited for, bounded
    rules, parent = results.load_rules(client=client, parent_run_id=options.parent_run_id)
    ranking = rank(runs=results.fetch_runs(client=client, rules=rules, parent=parent), rules=rules)
    errors: list[str] = []
    candidate, champion, test = evaluate(client=client, ranking=ranking, options=options, errors=errors)
    decision = decide(ranking=ranking, candidate=candidate, champion=champion)
    registry = register(client=client, ranking=ranking, candidate=candidate, decision=decision,
                        options=options, errors=errors)
    directory = options.reports_dir / rules.name
    plots = plotting.write_plots(ranking=ranking, directory=directory)
    data = reporting.report_data(ReportInputs(
        ranking=ranking, decision=decision, candidate=candidate, champion=champion,
        parent_run_id=options.parent_run_id, generated_at=datetime.now(UTC).isoformat(timespec="seconds"),
        test=test, registry=registry, plots=plots, tracking_uri=_public_uri(client.tracking_uri), errors=errors))
    reporting.write_report(directory=directory, data=data, markdown=reporting.render_markdown(data=data),
                           csv_text=reporting.runs_csv(ranking))
    results.log_report(client=client, parent_run_id=options.parent_run_id, directory=directory,
                       verdict=decision.verdict)
    return Outcome(grid=rules.name, verdict=decision.verdict, failed_gates=decision.failed, candidate=candidate,
                   report_dir=directory, test=test, registry=registry, errors=tuple(errors))


def _public_uri(uri: str) -> str:
    return tracking.redact_uri(uri)


def evaluate(*, client: MlflowClient, ranking: Ranking, options: Options,
             errors: list[str]) -> tuple[RunRecord | None, ChampionInfo | None, EvaluationStatus]:
    """The candidate (and the champion, for a fair comparison) on the held-out test split."""
    candidate = ranking.candidate
    champion = results.fetch_champion(client=client, name=ranking.rules.registered_name)
    if candidate is None:
        return None, champion, EvaluationStatus(evaluated=False, reason="no candidate")
    if not options.evaluate_test:
        return candidate, champion, EvaluationStatus(evaluated=False, reason="disabled (--no-test-eval)")
    from jobs.finalize import evaluating  # ultralytics is imported only when a model is evaluated

    try:
        return evaluating.evaluate_on_test(client=client, ranking=ranking, candidate=candidate,
                                           champion=champion, data_path=options.data_path)
    except Exception as exc:  # the report must still say what happened
        errors.append(f"test evaluation failed: {exc}")
        return candidate, champion, EvaluationStatus(evaluated=False, reason=f"failed: {exc}")


def register(*, client: MlflowClient, ranking: Ranking, candidate: RunRecord | None, decision: Decision,
             options: Options, errors: list[str]) -> Mapping[str, Any] | None:
    if candidate is None or not options.register:
        return None
    from jobs.finalize import registry  # pyfunc logging pulls in heavier modules

    try:
        return registry.register_candidate(client=client, rules=ranking.rules, candidate=candidate,
                                           promote=decision.promote, parent_run_id=options.parent_run_id)
    except Exception as exc:
        errors.append(f"model registration failed: {exc}")
        return {"error": str(exc)}


def with_metrics(run: RunRecord, metrics: Mapping[str, float]) -> RunRecord:
    return dataclasses.replace(run, metrics={**run.metrics, **metrics})
