"""The local executor: a grid's submission driven (controller.driving) over the local Job store.

What is the local backend's own lives here: the grid's lock, the recovery of what a controller that
died left (its attempts stopped, its runs ended), signals, the live table, the state's snapshots.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import contract
from contract.grid import GridSpec
from controller import tracking
from controller.core.expanding import GridPoint, finalizer_name
from controller.core.reconciling import CONFIGURATION_ERROR, CONFIGURATION_FAILURE, GridPhase, JobPhase, is_up_to_date
from controller.core.rendering import RenderSettings
from controller.driving import JobStore, Step, Submission, desired_grid
from controller.errors import InvalidInput, NameClash, Problem
from controller.local import processes, relocating, sweeping
from controller.local.kubelet import LocalKubelet, remove_attempt_tmp
from controller.local.state import GridState, claim_job_names, grid_dir, job_owners, load_state, safe_child
from controller.local.store import LocalStore, observe
from controller.progress import ProgressView

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


def check_name_clashes(run: LocalRun, *, claim: bool = False) -> None:
    """NameClash when another grid of the project uses or claimed one of this submission's Job names. With
    `claim` (right before the submission begins, once every check passed: a refused submission writes
    nothing), the names are claimed for it under the project's names lock (two grids submitted together)."""
    names = [p.name for p in run.points] + [finalizer_name(run.grid)]
    if claim:
        clashes = claim_job_names(run.root, run.grid.name, names)
    else:
        owners = job_owners(run.root, skip=run.grid.name)
        clashes = {n: owners[n] for n in names if n in owners}
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
        self.store = LocalStore(root=run.root, state=self.state, kubelet=self.kubelet, mlflow=self.mlflow)
        self.jobs: JobStore = self.store  # what the driver acts through (the store itself, or a wrapper of it)
        self.submission: Submission | None = None
        self.notes: list[str] = []

    @property
    def experiment_id(self) -> str:
        return self.store.experiment_id

    def save(self, *, whole: bool = False) -> None:
        self.store.save(whole=whole)

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
        desired = desired_grid(self.run.grid, self.run.points, submission=self.state.submission,
                               parallelism=self.run.parallelism)
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
        self.store.experiment_id = tracking.ensure_experiment(self.mlflow, name=grid.experiment, root=self.run.root,
                                                              uri=self.uri)
        self.state.experiment = grid.experiment
        render = RenderSettings(tracking_uri=self.uri, backend="local",
                                extra_env={k: os.environ[k] for k in PASSED_THROUGH_ENV if k in os.environ})
        try:
            self.submission = Submission.begin(
                mlflow=self.mlflow, grid=grid, points=self.run.points, dataset_md5=self.run.dataset_md5,
                parallelism=self.run.parallelism, experiment_id=self.experiment_id, render=render, backend="local",
                process=processes.myself().tag(), previous=self.state.submission)
        except tracking.ParentRunFailed as failed:
            self.state.submission = failed.run_id
            raise
        self.state.submission = self.submission.parent_run_id
        for note in self.submission.notes:
            self.view.console.print(note, highlight=False, soft_wrap=True)
        self.view.points = [p.name for p in self.submission.points]
        self.save(whole=True)

    def step(self) -> Step:
        assert self.submission is not None, "begin() first"
        step = self.submission.step(self.jobs)
        self.view.points += [p.name for p in step.new_points]
        if step.exhausted and self.state.message != step.exhausted:  # said once: the search asks no more
            self.state.message = step.exhausted
            self.view.console.print(step.exhausted, highlight=False, soft_wrap=True)
        for decision in step.stops:
            self.state.message = (f"{decision.name}: stop requested at epoch {decision.epoch} "
                                  f"({decision.rule}, {decision.value:.4f})")
            self.view.console.print(self.state.message, highlight=False, soft_wrap=True)
        if step.conflicts:
            conflict = step.conflicts[0]
            raise NameClash(f"job {conflict.name} already belongs to grid {conflict.owner}")
        plan = step.plan
        self.state.phase, self.state.message = plan.phase.value, step.message
        if plan.reason == CONFIGURATION_ERROR:
            self.state.message += self.first_error()
        self.save()
        self.view.update(self.state)
        return step

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

    def advance(self) -> GridPhase | None:
        """One step; once the grid ended and no process is left, the parent run ended and the final phase."""
        assert self.submission is not None, "begin() first"
        step = self.step()
        if step.terminal and not self.kubelet.processes:
            self.save(whole=True)  # state.json alone is the whole state once the grid ended
            self.submission.end(step.plan.phase)
            return step.plan.phase
        return None

    def run_to_end(self, *, sleep: Callable[[float], None] = time.sleep) -> GridPhase:
        while (phase := self.advance()) is None:
            sleep(POLL_SECONDS)
        return phase

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
        check_name_clashes(run, claim=True)  # every check passed: claim the names, then begin
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
