"""`finalize GRID`: run the finalizer of a grid's latest submission again, on this machine.

The finalize Job the controller rendered for that submission (kept in .tp4/grids/<grid>/state.json) is
started again through the local kubelet, as a Job deleted and created again would be on a cluster:
the same parent run, command and environment, a fresh count of attempts (its backoffLimit applies
anew; the earlier attempts' logs stay in the grid's logs folder). The finalizer reads the grid's rules
from the parent run (grid.json), so it decides with the rules of that submission: a changed grid file
is a new submission (`submit-grid`). Only the tracking URI is the one the controller would render
now, so that a moved or copied project's finalizer writes to its own store.
"""

from __future__ import annotations

import copy
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlflow.exceptions import MlflowException
from rich.console import Console

import contract
from controller import tracking
from controller.core.reconciling import GridPhase, JobPhase
from controller.errors import InvalidInput, Problem
from controller.local import sweeping
from controller.local.executor import POLL_SECONDS, cpu_count, relocate_store
from controller.local.inspecting import local_decision_line, shown_path
from controller.local.kubelet import LocalKubelet
from controller.local.processes import STOP_SIGNALS
from controller.local.state import GridState, JobRecord, grid_dir, known_grids, load_state, save_state
from controller.submitting import NoSubmission, NotFound


def finalizer_of(state: GridState) -> JobRecord:
    """The finalize Job of the state's latest submission; NotFound (exit 1) when it has none yet."""
    found = [job for job in state.jobs.values()
             if job.role == contract.ROLE_FINALIZE and job.submission == state.submission]
    if not found:
        raise NotFound(f"the latest submission of grid {state.grid!r} (parent run {state.submission}) has no "
                       f"finalize Job: its points did not all end ({state.phase}: {state.message or 'no message'}); "
                       "submit-grid runs the finalizer once they have")
    return found[0]


def with_tracking_uri(manifest: dict[str, Any], uri: str) -> dict[str, Any]:
    """A copy of a Job manifest whose container's MLFLOW_TRACKING_URI is `uri`."""
    manifest = copy.deepcopy(manifest)
    for container in manifest["spec"]["template"]["spec"]["containers"]:
        for item in container.get("env", []):
            if item.get("name") == contract.ENV_TRACKING_URI and "value" in item:
                item["value"] = uri
    return manifest


class _Stopped(KeyboardInterrupt):
    pass


def _stop(signum: int, frame: object) -> None:
    raise _Stopped(signal.Signals(signum).name)


def run_finalizer_again(*, root: Path, grid: str, console: Console,
                        sleep: Callable[[float], None] = time.sleep) -> int:
    """Start the finalize Job of `grid`'s latest submission again and wait for its end; print the
    decision line when it succeeds. 0 when it succeeded, 1 when it failed.

    NoSubmission (exit 1) for a grid never submitted in this project; NotFound (exit 1) when the latest
    submission has no finalize Job or its parent run is gone from MLflow; InvalidInput (exit 2) for a
    grid another controller is running. Ctrl-C, SIGTERM or SIGHUP stop the finalizer (its attempt
    marked Interrupted) and are raised again as KeyboardInterrupt."""
    directory = grid_dir(root, grid)  # InvalidInput for a name that is no plain folder name
    if grid not in known_grids(root):
        raise NoSubmission(grid, f"in {root} (no {directory})")
    for note in relocate_store(root):
        console.print(note, highlight=False, soft_wrap=True)
    uri = tracking.tracking_uri(root)
    with sweeping.GridLock(root, grid):
        state = load_state(root, grid)
        if not state.submission:
            raise NoSubmission(grid, f"in {root}")
        old = finalizer_of(state)
        mlflow = tracking.client(uri)
        try:
            parent = mlflow.get_run(state.submission)
        except MlflowException as error:
            raise NotFound(f"the parent run {state.submission} of grid {grid!r}'s latest submission is not in "
                           f"MLflow at {tracking.redact(uri)} ({error.error_code}): submit the grid again") from error
        for orphan in sweeping.stop_orphans(state):  # a controller that died mid-run left it running
            console.print(f"{orphan.job} attempt {orphan.attempt} was left running by a controller that died: "
                          "stopped", highlight=False, soft_wrap=True)
        job = JobRecord(name=old.name, grid=grid, spec_hash=old.spec_hash, submission=old.submission,
                        role=old.role, manifest=with_tracking_uri(old.manifest, uri))
        state.jobs[job.name] = job
        kubelet = LocalKubelet(root=root, logs_dir=directory / "logs", threads_per_job=cpu_count())
        previous = {sig: signal.signal(sig, _stop) for sig in STOP_SIGNALS}
        try:
            kubelet.start(job)
            state.phase, state.message = GridPhase.FINALIZING.value, "finalizer running again"
            save_state(root, state)
            console.print(f"grid {grid}: {job.name} runs again for submission {state.submission} "
                          f"(log: {shown_path(Path(job.attempts[-1].log))})", highlight=False, soft_wrap=True)
            while not job.phase.terminal:
                sleep(POLL_SECONDS)
                attempts = len(job.attempts)
                if kubelet.poll(job) or len(job.attempts) != attempts:  # ended, or retried
                    save_state(root, state)
        except KeyboardInterrupt:
            kubelet.stop(job, reason="Interrupted")
            state.phase, state.message = GridPhase.FAILED.value, "finalizer interrupted"
            save_state(root, state)
            raise
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            kubelet.close()
        succeeded = job.phase is JobPhase.SUCCEEDED
        state.phase = (GridPhase.SUCCEEDED if succeeded else GridPhase.FAILED).value
        state.message = "decision report written (finalizer run again)" if succeeded else "finalizer failed"
        save_state(root, state)
        status = "FINISHED" if succeeded else "FAILED"
        if parent.info.status != status:  # the submission's run says what its grid's phase says
            mlflow.set_terminated(state.submission, status=status)
    last = job.attempts[-1]
    console.print(f"{job.name}: {job.phase.value} (attempt {last.number}"
                  + (f", exit code {last.exit_code}, {last.reason}" if not succeeded else "") + ")",
                  highlight=False, soft_wrap=True)
    if not succeeded:
        console.print(f"its log: {shown_path(Path(last.log))}", highlight=False, soft_wrap=True)
        return 1
    line = local_decision_line(root, grid)
    if line is None:
        raise InvalidInput([Problem(f"reports/{grid}", "the finalizer succeeded but wrote no decision.json here")])
    console.print(line, highlight=False, soft_wrap=True)
    return 0
