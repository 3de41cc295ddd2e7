"""The local executor: a grid's Jobs as processes on this machine, driven by the reconciler."""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import contract
from controller import tracking
from controller.errors import NameClash
from controller.core.expanding import GridPoint, finalizer_name
from contract.grid import GridSpec
from controller.local.kubelet import LocalKubelet
from controller.local.state import GridState, JobRecord, grid_dir, job_owners, load_state, save_state
from controller.progress import ProgressView
from controller.core.reconciling import (Conflict, Create, Delete, DesiredGrid, DesiredJob, GridPhase, JobPhase,
                                    ObservedJob, Plan, is_up_to_date, reconcile)
from controller.core.rendering import RenderSettings, finalizer_hash, render_finalize_job, render_train_job

POLL_SECONDS = 0.5
# Non-secret S3 settings the Jobs need for the DVC remote; keys stay in the environment.
PASSED_THROUGH_ENV = (contract.ENV_S3_ENDPOINT, contract.ENV_S3_REGION)


@dataclass(frozen=True)
class LocalRun:
    grid: GridSpec
    points: list[GridPoint]
    dataset_md5: str
    root: Path
    parallelism: int


@dataclass(frozen=True)
class Outcome:
    phase: GridPhase
    state: GridState
    report: Path | None
    up_to_date: bool = False


def cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def default_parallelism(grid: GridSpec, requested: int | None) -> int:
    return requested or grid.job.parallelism or cpu_count()


def desired_grid(run: LocalRun, submission: str) -> DesiredGrid:
    return DesiredGrid(
        grid=run.grid.name, submission=submission,
        points=tuple(DesiredJob(p.name, p.spec_hash) for p in run.points),
        finalizer=DesiredJob(finalizer_name(run.grid), finalizer_hash(run.grid)),
        parallelism=run.parallelism, failure_budget=run.grid.job.failure_budget,
    )


def observe(state: GridState, *, owners: dict[str, str], names: list[str]) -> dict[str, ObservedJob]:
    """This grid's Jobs, plus the Jobs of other grids that use one of its names."""
    observed = {name: job.observed() for name, job in state.jobs.items()}
    for name in names:
        if name not in observed and owners.get(name, state.grid) != state.grid:
            observed[name] = ObservedJob(name=name, grid=owners[name], spec_hash="", submission="", phase=JobPhase.SUCCEEDED)
    return observed


def check_name_clashes(run: LocalRun) -> None:
    owners = job_owners(run.root)
    names = [p.name for p in run.points] + [finalizer_name(run.grid)]
    clashes = {n: owners[n] for n in names if owners.get(n, run.grid.name) != run.grid.name}
    if clashes:
        raise NameClash("; ".join(f"job {n} already belongs to grid {g}" for n, g in clashes.items()))


def mark_lost(state: GridState) -> None:
    """Jobs left running by a controller that died: their processes are gone."""
    for job in state.jobs.values():
        if not job.phase.terminal:
            job.phase = JobPhase.FAILED
            if job.attempts and job.attempts[-1].finished is None:
                job.attempts[-1].finished, job.attempts[-1].reason = time.time(), "Lost"


class LocalExecutor:
    """Runs one submission of a grid to its end."""

    def __init__(self, run: LocalRun, *, uri: str, view: ProgressView) -> None:
        self.run = run
        self.uri = uri
        self.view = view
        self.mlflow = tracking.client(uri)
        self.state = load_state(run.root, run.grid.name)
        mark_lost(self.state)
        self.kubelet = LocalKubelet(root=run.root, logs_dir=grid_dir(run.root, run.grid.name) / "logs",
                                    threads_per_job=max(1, cpu_count() // run.parallelism))
        self.experiment_id = ""
        self.settings: RenderSettings | None = None

    def up_to_date(self) -> bool:
        desired = desired_grid(self.run, self.state.submission)
        return is_up_to_date(desired, observe(self.state, owners={}, names=[]))

    def begin(self) -> None:
        grid = self.run.grid
        self.experiment_id = tracking.ensure_experiment(self.mlflow, name=grid.experiment, root=self.run.root, uri=self.uri)
        parent = tracking.start_parent_run(self.mlflow, grid=grid, points=self.run.points,
                                           experiment_id=self.experiment_id, backend="local",
                                           dataset_md5=self.run.dataset_md5)
        self.state.submission, self.state.experiment = parent, grid.experiment
        self.settings = RenderSettings(tracking_uri=self.uri, backend="local", parent_run_id=parent,
                                       extra_env={k: os.environ[k] for k in PASSED_THROUGH_ENV if k in os.environ})
        save_state(self.run.root, self.state)

    def manifest(self, create: Create) -> tuple[dict[str, Any], str, str]:
        assert self.settings is not None
        if create.finalizer:
            manifest = render_finalize_job(self.run.grid, self.settings, dataset_md5=self.run.dataset_md5)
            return manifest, finalizer_hash(self.run.grid), contract.ROLE_FINALIZE
        point = next(p for p in self.run.points if p.name == create.name)
        manifest = render_train_job(self.run.grid, point, self.settings, dataset_md5=self.run.dataset_md5)
        return manifest, point.spec_hash, contract.ROLE_TRAIN

    def apply(self, plan: Plan) -> None:
        for action in plan.actions:
            if isinstance(action, Delete):
                job = self.state.jobs.pop(action.name)
                self.kubelet.stop(job, reason="Deleted")
            elif isinstance(action, Create):
                manifest, spec_hash, role = self.manifest(action)
                job = JobRecord(name=action.name, grid=self.run.grid.name, spec_hash=spec_hash,
                               submission=self.state.submission, role=role, manifest=manifest)
                self.state.jobs[action.name] = job
                self.kubelet.start(job)
            elif isinstance(action, Conflict):
                raise NameClash(f"job {action.name} already belongs to grid {action.owner}")

    def collect_metrics(self, job: JobRecord) -> None:
        if job.role != contract.ROLE_TRAIN or job.phase is not JobPhase.SUCCEEDED:
            return
        try:
            job.run_id, job.metrics = tracking.final_metrics(
                self.mlflow, experiment_id=self.experiment_id, parent_run_id=self.state.submission, point=job.name)
        except Exception as error:  # a status read must never stop the grid
            self.state.message = f"could not read metrics of {job.name}: {error}"

    def step(self) -> Plan:
        for job in self.state.jobs.values():
            if self.kubelet.poll(job):
                self.collect_metrics(job)
        desired = desired_grid(self.run, self.state.submission)
        plan = reconcile(desired, observe(self.state, owners=job_owners(self.run.root),
                                          names=[p.name for p in self.run.points]))
        self.apply(plan)
        self.state.phase, self.state.message = plan.phase.value, plan.message
        save_state(self.run.root, self.state)
        self.view.update(self.state)
        return plan

    def run_to_end(self, *, sleep: Callable[[float], None] = time.sleep) -> GridPhase:
        while True:
            plan = self.step()
            if plan.phase in (GridPhase.SUCCEEDED, GridPhase.FAILED) and not self.kubelet.processes:
                status = "FINISHED" if plan.phase is GridPhase.SUCCEEDED else "FAILED"
                tracking.end_run(self.mlflow, self.state.submission, status=status)
                return plan.phase
            sleep(POLL_SECONDS)

    def interrupt(self) -> None:
        """Ctrl-C: stop the children, mark their runs and the parent run KILLED."""
        stopped = self.kubelet.stop_all(self.state.jobs, reason="Interrupted")
        self.state.phase, self.state.message = GridPhase.FAILED.value, "interrupted"
        save_state(self.run.root, self.state)
        self.view.update(self.state)
        if self.state.submission:
            tracking.kill_open_runs(self.mlflow, experiment_id=self.experiment_id,
                                    parent_run_id=self.state.submission, points=stopped)
            tracking.end_run(self.mlflow, self.state.submission, status="KILLED")


def report_path(root: Path, grid: GridSpec) -> Path:
    return root / "reports" / grid.name / "decision.md"


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run_grid_locally(run: LocalRun, *, view: ProgressView) -> Outcome:
    """Submit a validated grid to the local executor and wait for its end."""
    check_name_clashes(run)
    executor = LocalExecutor(run, uri=tracking.tracking_uri(run.root), view=view)
    if executor.up_to_date():
        return Outcome(phase=GridPhase.SUCCEEDED, state=executor.state, report=report_path(run.root, run.grid),
                       up_to_date=True)
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        executor.begin()
        with view:
            phase = executor.run_to_end()
    except KeyboardInterrupt:
        executor.interrupt()
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
    report = report_path(run.root, run.grid)
    return Outcome(phase=phase, state=executor.state, report=report if report.exists() else None)
