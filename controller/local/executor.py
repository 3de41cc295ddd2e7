"""The local executor: a grid's Jobs as processes on this machine, driven by the reconciler."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from mlflow.exceptions import MlflowException

import contract
from contract.grid import GridSpec
from controller import tracking
from controller.core.expanding import GridPoint, finalizer_name
from controller.core.reconciling import (
    CONFIGURATION_ERROR,
    CONFIGURATION_FAILURE,
    Conflict,
    Create,
    Delete,
    DesiredGrid,
    DesiredJob,
    GridPhase,
    JobPhase,
    ObservedJob,
    Plan,
    is_up_to_date,
    reconcile,
)
from controller.core.rendering import RenderSettings, finalizer_hash, render_finalize_job, render_train_job
from controller.errors import InvalidInput, NameClash, Problem
from controller.local import processes, relocating, sweeping
from controller.local.kubelet import LocalKubelet, remove_attempt_tmp
from controller.local.state import GridState, JobRecord, grid_dir, job_owners, load_state, safe_child, save_state
from controller.progress import ProgressView
from controller.searching import Search, Trial, recorded_trials

POLL_SECONDS = 0.5
# What a look at a search may meet when the tracking server is away: the grid goes on, the search waits.
SEARCH_READ_ERRORS = (MlflowException, OSError, requests.RequestException)
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


def desired_grid(run: LocalRun, submission: str, *, points: list[GridPoint] | None = None,
                 pending: bool = False) -> DesiredGrid:
    """`points`: the points known now (a search adds some as it goes; default: the run's own);
    `pending`: the search will still add points."""
    return DesiredGrid(
        grid=run.grid.name, submission=submission,
        points=tuple(DesiredJob(p.name, p.spec_hash) for p in (run.points if points is None else points)),
        finalizer=DesiredJob(finalizer_name(run.grid), finalizer_hash(run.grid)),
        parallelism=run.parallelism, failure_budget=run.grid.job.failure_budget, pending=pending,
    )


def observe(state: GridState, *, owners: dict[str, str], names: list[str]) -> dict[str, ObservedJob]:
    """This grid's Jobs, plus the Jobs of other grids that use one of its names."""
    observed = {name: job.observed() for name, job in state.jobs.items()}
    for name in names:
        if name not in observed and owners.get(name, state.grid) != state.grid:
            observed[name] = ObservedJob(name=name, grid=owners[name], spec_hash="", submission="",
                                         phase=JobPhase.SUCCEEDED)
    return observed


def check_name_clashes(run: LocalRun) -> None:
    owners = job_owners(run.root)
    names = [p.name for p in run.points] + [finalizer_name(run.grid)]
    clashes = {n: owners[n] for n in names if owners.get(n, run.grid.name) != run.grid.name}
    if clashes:
        raise NameClash("; ".join(f"job {n} already belongs to grid {g}" for n, g in clashes.items()))


class LocalExecutor:
    """Runs one submission of a grid to its end. The caller holds the grid's lock
    (sweeping.GridLock): what the state shows as running was left by a controller that died."""

    def __init__(self, run: LocalRun, *, uri: str, view: ProgressView) -> None:
        self.run = run
        self.uri = uri
        self.view = view
        self.mlflow = tracking.client(uri)
        self.state = load_state(run.root, run.grid.name)
        self.kubelet = LocalKubelet(root=run.root, logs_dir=grid_dir(run.root, run.grid.name) / "logs",
                                    threads_per_job=max(1, cpu_count() // run.parallelism))
        self.experiment_id = ""
        self.settings: RenderSettings | None = None
        self.notes: list[str] = []
        self.points = list(run.points)  # a search (controller.searching) adds points as it asks for them
        self.search: Search | None = None
        self.pending = False  # the search will still add points
        self.budget_spent = False
        self.changed: set[str] = set()  # Jobs added, changed or removed since the last save

    def save(self, *, whole: bool = False) -> None:
        """Record the state: the Jobs that changed since the last save (a journal line), or `whole`
        (a new snapshot: at the start and the end of a submission, controller.local.state)."""
        save_state(self.run.root, self.state, changed=None if whole else self.changed)
        self.changed.clear()

    def check_experiment(self) -> None:
        """A deleted experiment, the grid's or the one its recorded runs live in: `InvalidInput` (exit 2)."""
        tracking.check_experiment(self.mlflow, name=self.run.grid.experiment)
        if self.state.experiment and self.state.experiment != self.run.grid.experiment:
            tracking.check_experiment(self.mlflow, name=self.state.experiment)

    def recover(self) -> None:
        """What a controller that died left: stop its live attempts (never two trainings of one point),
        then end every run of this project whose process is gone."""
        for orphan in sweeping.stop_orphans(self.state):
            remove_attempt_tmp(self.run.root, self.state.jobs[orphan.job].attempts[-1])
            what = f"stopped (pid {orphan.pid})" if orphan.stopped else "found gone"
            self.notes.append(f"{orphan.job} attempt {orphan.attempt} was left running by a controller that died: "
                              f"{what}")
        self.save(whole=True)
        for closed in sweeping.sweep(self.mlflow, self.run.root):
            self.notes.append(f"run {closed.run_id} ({closed.grid} {closed.point or closed.role}) was RUNNING: "
                              f"ended FAILED, {closed.reason}")

    def relied_on(self) -> dict[str, str]:
        """The MLflow runs a "nothing to do" answer relies on: the submission's parent run
        (it holds the report) and each train Job's FINISHED run."""
        runs = {"parent run": self.state.submission} if self.state.submission else {}
        for job in self.state.jobs.values():
            if job.role == contract.ROLE_TRAIN and job.phase is JobPhase.SUCCEEDED:
                runs[job.name] = job.run_id or ""
        return runs

    def up_to_date(self) -> bool:
        """True when every point and the finalizer succeeded with this spec and the runs they
        produced are really in MLflow (FINISHED, in an active experiment); Jobs whose run is
        missing are forgotten here, so that the submission runs them again."""
        desired = desired_grid(self.run, self.state.submission)
        if not is_up_to_date(desired, observe(self.state, owners={}, names=[])):
            return False
        runs = self.relied_on()
        missing = tracking.missing_runs(self.mlflow, {k: v for k, v in runs.items() if v})
        missing += [k for k, v in runs.items() if not v]
        if not missing:
            return True
        for name in missing:
            self.state.jobs.pop(name, None)
        if "parent run" in missing:
            self.state.jobs.pop(finalizer_name(self.run.grid), None)
        self.notes.append(f"runs missing from MLflow, run again: {', '.join(sorted(missing))}")
        return False

    def begin(self) -> None:
        self.kubelet.warm.prepare()  # the Jobs' imports load while the parent run is created
        grid = self.run.grid
        self.experiment_id = tracking.ensure_experiment(self.mlflow, name=grid.experiment, root=self.run.root,
                                                        uri=self.uri)
        self.state.experiment = grid.experiment
        try:
            parent = tracking.start_parent_run(self.mlflow, grid=grid, points=self.run.points,
                                               experiment_id=self.experiment_id, backend="local",
                                               dataset_md5=self.run.dataset_md5, process=processes.myself().tag())
        except tracking.ParentRunFailed as failed:
            self.state.submission = failed.run_id
            raise
        previous = self.state.submission
        self.state.submission = parent
        if grid.sampled or grid.early_stopping is not None or grid.confirm is not None:
            self.start_search(previous)
        self.settings = RenderSettings(tracking_uri=self.uri, backend="local", parent_run_id=parent,
                                       extra_env={k: os.environ[k] for k in PASSED_THROUGH_ENV if k in os.environ})
        self.save(whole=True)

    def start_search(self, previous: str) -> None:
        """Record the search's points on the new parent run, with the trials the previous submission of
        this grid asked (a controller restarted mid-search neither repeats nor loses one)."""
        carried: list[Trial] = []
        if previous:
            try:
                carried = recorded_trials(self.mlflow, previous)
            except Exception as error:  # a parent run deleted since: start afresh
                self.notes.append(f"could not read the previous submission's trials: {error}")
        self.search = Search(self.mlflow, self.run.grid, self.experiment_id, self.state.submission,
                             self.run.dataset_md5)
        self.search.start(self.points, carried=tuple(carried))
        self.points = self.search.points
        self.view.points = [p.name for p in self.points]
        self.pending = True  # until the first look at the search says otherwise

    def look_at_search(self, *, changed: bool) -> None:
        """Ask, stop and confirm (controller.searching): every POLL_SECONDS, or at once when a Job changed."""
        if self.search is None or not self.search.due(force=changed):
            return
        jobs, submission = self.state.jobs, self.state.submission
        # a Job failed in an earlier submission is retried by this one: in flight, not a failed trial
        live = {p.name for p in self.points if p.name not in jobs or not jobs[p.name].phase.terminal
                or (jobs[p.name].phase is JobPhase.FAILED and jobs[p.name].submission != submission)}
        failed = {n for n, j in jobs.items() if j.phase is JobPhase.FAILED and j.submission == submission}
        try:
            tick = self.search.tick(room=self.run.parallelism - len(live), live=live, failed=failed,
                                    budget_spent=self.budget_spent)
        except SEARCH_READ_ERRORS as error:  # the tracking server away a moment: look again at the next poll
            self.pending = True
            self.state.message = f"search not updated: {type(error).__name__}: {error}"[:500]
            return
        self.points += tick.new
        self.view.points += [p.name for p in tick.new]
        self.pending = tick.pending
        if tick.exhausted and self.state.message != tick.exhausted:  # said once: the search asks no more
            self.state.message = tick.exhausted
            self.view.console.print(tick.exhausted, highlight=False, soft_wrap=True)
        for decision in tick.stops:
            self.state.message = (f"{decision.name}: stop requested at epoch {decision.epoch} "
                                  f"({decision.rule}, {decision.value:.4f})")
            self.view.console.print(self.state.message, highlight=False, soft_wrap=True)
        for name in tick.overdue:
            job = self.state.jobs.get(name)
            if job is not None and not job.phase.terminal:
                self.kubelet.stop(job, reason="StopRequestIgnored")
                self.changed.add(name)

    def manifest(self, create: Create) -> tuple[dict[str, Any], str, str]:
        assert self.settings is not None
        if create.finalizer:
            manifest = render_finalize_job(self.run.grid, self.settings, dataset_md5=self.run.dataset_md5)
            return manifest, finalizer_hash(self.run.grid), contract.ROLE_FINALIZE
        point = next(p for p in self.points if p.name == create.name)
        manifest = render_train_job(self.run.grid, point, self.settings, dataset_md5=self.run.dataset_md5)
        return manifest, point.spec_hash, contract.ROLE_TRAIN

    def apply(self, plan: Plan) -> None:
        for action in plan.actions:
            if isinstance(action, Delete):
                job = self.state.jobs.pop(action.name)
                self.kubelet.stop(job, reason="Deleted")
                self.changed.add(action.name)
            elif isinstance(action, Create):
                manifest, spec_hash, role = self.manifest(action)
                job = JobRecord(name=action.name, grid=self.run.grid.name, spec_hash=spec_hash,
                               submission=self.state.submission, role=role, manifest=manifest)
                self.state.jobs[action.name] = job
                self.kubelet.start(job)
                self.changed.add(action.name)
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

    def close_ended_attempts(self, job: JobRecord, before: int) -> None:
        """An attempt that ended without ending its run (killed, or the tracking server was down
        when it failed): end the run FAILED now; a failure here is left to the next start's sweep."""
        ended = [a for a in job.attempts[max(0, before - 1):] if a.finished is not None and a.exit_code != 0]
        if job.role != contract.ROLE_TRAIN or not ended:
            return
        try:
            for run in tracking.runs_of_point(self.mlflow, experiment_id=self.experiment_id,
                                              parent_run_id=self.state.submission, point=job.name):
                attempt = next((a for a in ended if str(a.number) == run.data.tags.get(contract.TAG_ATTEMPT)), None)
                if attempt is not None and run.info.status == tracking.RUNNING:
                    tracking.end_run(self.mlflow, run.info.run_id, status="FAILED",
                                     reason=f"job process {attempt.pid} exited with code {attempt.exit_code}")
        except Exception as error:  # the tracking server may be down: the next start sweeps it
            self.state.message = f"could not close the run of {job.name}: {error}"

    def step(self) -> Plan:
        any_changed = False
        for job in self.state.jobs.values():
            before = len(job.attempts)
            changed = self.kubelet.poll(job)
            if changed or len(job.attempts) != before:
                self.close_ended_attempts(job, before)
                self.changed.add(job.name)
            if changed:
                self.collect_metrics(job)
            any_changed |= changed
        self.look_at_search(changed=any_changed)
        desired = desired_grid(self.run, self.state.submission, points=self.points, pending=self.pending)
        plan = reconcile(desired, observe(self.state, owners=job_owners(self.run.root, skip=self.state.grid),
                                          names=[p.name for p in self.points]))
        self.budget_spent = bool(plan.counts.skipped) or plan.reason == CONFIGURATION_ERROR
        self.apply(plan)
        self.state.phase, self.state.message = plan.phase.value, plan.message
        if plan.reason == CONFIGURATION_ERROR:
            self.state.message += self.first_error()
        self.save()
        self.view.update(self.state)
        return plan

    def first_error(self) -> str:
        """The last `error:` line of a point that failed with a configuration error (its log), or ""."""
        for job in self.state.jobs.values():
            if job.phase is JobPhase.FAILED and job.attempts and job.attempts[-1].reason == CONFIGURATION_FAILURE:
                try:
                    lines = Path(job.attempts[-1].log).read_text(errors="replace").splitlines()
                except OSError:
                    continue
                errors = [line.strip() for line in lines if line.strip().lower().startswith("error")]
                if errors:
                    return f"\n{job.name}: {errors[-1][:500]}"
        return ""

    def run_to_end(self, *, sleep: Callable[[float], None] = time.sleep) -> GridPhase:
        while True:
            plan = self.step()
            if plan.phase in (GridPhase.SUCCEEDED, GridPhase.FAILED) and not self.kubelet.processes:
                status = "FINISHED" if plan.phase is GridPhase.SUCCEEDED else "FAILED"
                self.save(whole=True)  # state.json alone is the whole state once the grid ended
                tracking.end_run(self.mlflow, self.state.submission, status=status)
                return plan.phase
            sleep(POLL_SECONDS)

    def interrupt(self, reason: str = "interrupted") -> None:
        """Ctrl-C, SIGTERM or SIGHUP: stop the children, mark their runs and the parent run KILLED."""
        stopped = self.kubelet.stop_all(self.state.jobs, reason="Interrupted")
        self.state.phase, self.state.message = GridPhase.FAILED.value, reason
        self.save(whole=True)
        try:
            self.view.update(self.state)
        except OSError:  # the terminal is gone (SIGHUP)
            pass
        if self.state.submission:
            tracking.kill_open_runs(self.mlflow, experiment_id=self.experiment_id,
                                    parent_run_id=self.state.submission, points=stopped)
            tracking.end_run(self.mlflow, self.state.submission, status="KILLED", reason=reason)

    def fail(self, error: BaseException) -> tuple[str, bool]:
        """A failure of the controller itself once the submission began: stop the children and end
        the parent run FAILED with the reason; returns that reason, and whether the parent run is
        ended (False: the tracking server could not be reached, the next start's sweep ends it)."""
        reason = str(error) if isinstance(error, tracking.ParentRunFailed) else f"{type(error).__name__}: {error}"
        stopped = self.kubelet.stop_all(self.state.jobs, reason="ControllerFailed")
        self.state.phase, self.state.message = GridPhase.FAILED.value, f"controller failed: {reason}"
        self.save(whole=True)
        if not self.state.submission:
            return reason, True
        try:
            tracking.kill_open_runs(self.mlflow, experiment_id=self.experiment_id,
                                    parent_run_id=self.state.submission, points=stopped)
            tracking.end_run(self.mlflow, self.state.submission, status="FAILED", reason=reason[:5000])
        except Exception:  # the next start's sweep ends it
            return reason, False
        return reason, True


def report_path(root: Path, grid: GridSpec) -> Path:
    return safe_child(root / "reports", grid.name) / "decision.md"


class _Signalled(KeyboardInterrupt):
    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_interrupt(signum: int, frame: object) -> None:
    raise _Signalled(signum)


# SIGHUP (a closed terminal, a dropped ssh session) is handled as SIGTERM: the Jobs run in
# sessions of their own and would go on training without a controller (Windows: SIGBREAK).
STOP_SIGNALS = processes.STOP_SIGNALS


def run_grid_locally(run: LocalRun, *, view: ProgressView) -> Outcome:
    """Submit a validated grid to the local executor and wait for its end.

    Before anything starts: the grid's lock (one controller per grid), the experiment (deleted:
    `InvalidInput`), the attempts a dead controller left (stopped) and the runs whose process is
    gone (ended FAILED). A failure after the parent run exists ends it FAILED and is reported as
    `InvalidInput` naming the failure; SIGINT, SIGTERM and SIGHUP end it KILLED (KeyboardInterrupt)."""
    check_name_clashes(run)
    for note in relocate_store(run.root):
        view.console.print(note, highlight=False, soft_wrap=True)
    with sweeping.GridLock(run.root, run.grid.name):
        executor = LocalExecutor(run, uri=tracking.tracking_uri(run.root), view=view)
        executor.check_experiment()
        executor.recover()
        up_to_date = executor.up_to_date()
        for note in executor.notes:
            view.console.print(note, highlight=False, soft_wrap=True)
        if up_to_date:
            return Outcome(phase=GridPhase.SUCCEEDED, state=executor.state, report=report_path(run.root, run.grid),
                           up_to_date=True)
        previous = {sig: signal.signal(sig, _raise_interrupt) for sig in STOP_SIGNALS}
        try:
            executor.begin()
            with view:
                phase = executor.run_to_end()
        except _Signalled as stop:
            executor.interrupt(f"stopped by {signal.Signals(stop.signum).name}")
            raise
        except KeyboardInterrupt:
            executor.interrupt("interrupted (SIGINT)")
            raise
        except InvalidInput:
            executor.fail(RuntimeError("bad input found after the submission began"))
            raise
        except Exception as error:
            reason, ended = executor.fail(error)
            parent = executor.state.submission
            problem = f"grid {run.grid.name} failed: {reason}" + (
                "" if not parent else f"; its parent run {parent} was ended FAILED" if ended else
                f"; its parent run {parent} could not be ended now: the next submit-grid ends it")
            raise InvalidInput([Problem("submit-grid", problem)]) from error
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            executor.kubelet.close()
    report = report_path(run.root, run.grid)
    return Outcome(phase=phase, state=executor.state, report=report if report.exists() else None)


def relocate_store(root: Path) -> list[str]:
    """The embedded store of a moved or copied project, repaired (controller.local.relocating)."""
    if os.environ.get(contract.ENV_TRACKING_URI):
        return []
    note = relocating.relocate(root)
    return [note] if note else []
