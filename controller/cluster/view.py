"""A Grid and its Jobs as the progress view's GridState: the same table as a local run (pure)."""

from __future__ import annotations

import copy
from typing import Any

import contract
from controller.cluster.jobs import LABEL_SUBMISSION, attempts, failure_reason, job_phase, labels
from controller.cluster.status import parse_time
from controller.core.state import Attempt, GridState, JobRecord


def _seconds(text: str | None) -> float | None:
    moment = parse_time(text)
    return moment.timestamp() if moment else None


def job_record(job: dict[str, Any], *, metrics: dict[str, float] | None = None) -> JobRecord:
    """A Job as the view shows it: phase, attempts (its pods), duration, the objective when known."""
    found, status = labels(job), job.get("status") or {}
    phase = job_phase(job)
    started, finished = _seconds(status.get("startTime")), _seconds(status.get("completionTime"))
    if phase.terminal and finished is None:  # a failed Job has no completionTime: its Failed condition's time
        finished = _seconds(next((c.get("lastTransitionTime") for c in status.get("conditions") or []
                                  if c.get("type") == "Failed"), None))
    count = attempts(job)
    tries = [Attempt(number=i + 1, log="", started=started or 0.0) for i in range(count)]
    if tries and phase.terminal:
        tries[-1].finished, tries[-1].reason = finished, failure_reason(job)
    return JobRecord(name=job["metadata"]["name"], grid=found.get(contract.LABEL_GRID, ""),
                    spec_hash=found.get(contract.LABEL_SPEC_HASH, ""), submission=found.get(LABEL_SUBMISSION, ""),
                    role=found.get(contract.LABEL_ROLE, ""), manifest={}, phase=phase, attempts=tries,
                    metrics=dict(metrics or {}))


def current_jobs(grid: dict[str, Any], jobs: list[dict[str, Any]]) -> frozenset[str] | None:
    """The Jobs of the Grid's current spec and submission: the points its spec expands to, and every Job the
    latest submission (status.parentRunId) created (a search's points, its finalizer). None when the spec
    cannot be read here (every Job then counts as current)."""
    from contract.grid import parse_grid
    from controller.core.expanding import expand

    try:
        spec = parse_grid(copy.deepcopy(grid.get("spec") or {}), source=f"grid/{grid['metadata']['name']}",
                          base_dir=None)
        points = {p.name for p in expand(spec, dataset_md5=str(spec.dataset_md5))}
    except Exception:  # a spec this version cannot read (a newer CRD): show every Job
        return None
    submission = (grid.get("status") or {}).get("parentRunId", "")
    created = {j["metadata"]["name"] for j in jobs if submission and labels(j).get(LABEL_SUBMISSION) == submission}
    return frozenset(points | created)


def progressing_message(grid: dict[str, Any]) -> str:
    conditions = (grid.get("status") or {}).get("conditions") or []
    problems = [c["message"] for c in conditions
                if c.get("type") in ("Valid", "NamesAvailable") and c.get("status") == "False"]
    progress = [c["message"] for c in conditions if c.get("type") == "Progressing"]
    return "; ".join(problems + progress)


def grid_state(grid: dict[str, Any], jobs: list[dict[str, Any]], *,
               metrics: dict[str, dict[str, float]] | None = None) -> GridState:
    status = grid.get("status") or {}
    metrics = metrics or {}
    return GridState(grid=grid["metadata"]["name"], submission=status.get("parentRunId", ""),
                     experiment=(grid.get("spec") or {}).get("experiment", ""),
                     phase=status.get("phase", "Pending"), message=progressing_message(grid),
                     jobs={j["metadata"]["name"]: job_record(j, metrics=metrics.get(j["metadata"]["name"]))
                           for j in jobs})


def summary_lines(grid: dict[str, Any]) -> list[str]:
    """What the Grid's status says beyond the table: counts, best point, decision, report."""
    status = grid.get("status") or {}
    name, counts = grid["metadata"]["name"], status.get("counts") or {}
    lines = [f"grid {name}: {status.get('phase', 'Pending')}"
             + (f" ({progressing_message(grid)})" if progressing_message(grid) else "")]
    if counts:
        lines.append("points: " + ", ".join(f"{counts.get(k, 0)} {k}"
                                            for k in ("succeeded", "failed", "running", "pending"))
                     + f" of {counts.get('total', 0)}")
    if best := status.get("best"):
        lines.append(f"best so far: {best['point']} {best['metric']}={best['value']:.4f} (run {best['runId']})")
    if status.get("decision"):
        lines.append(f"decision: {status['decision']}")
    if report := status.get("report"):
        lines.append(f"report: runs:/{report['runId']}/{report['artifactPath']}")
    return lines
