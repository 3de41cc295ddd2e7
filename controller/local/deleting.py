"""`delete GRID` for a local grid: what `kubectl delete grid` does on a cluster, for .tp4/.

The grid's controller, when one runs it (its `submit-grid`, in another terminal), is asked to stop (SIGTERM:
it stops its Jobs and marks their runs KILLED, as for Ctrl-C); any attempt still running after that (a
controller killed earlier) is stopped; the grid's local state (.tp4/grids/<grid>/: state, lock, the Jobs'
logs) is removed. Kept: the decision report (reports/<grid>/) and the grid's MLflow runs, unless
`purge_runs` (then every run tagged with the grid is deleted, as `mlflow runs delete` does: restorable
from MLflow's UI or CLI until its garbage collection).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import psutil
from rich.console import Console

from controller import tracking
from controller.errors import InvalidInput, Problem
from controller.local import processes, sweeping
from controller.local.inspecting import known_grid, report_dir, shown_path
from controller.local.state import grid_dir, load_state

STOP_WAIT_SECONDS = 60.0  # how long the grid's controller gets to stop its Jobs and end its runs


def _stop_controller(root: Path, grid: str, console: Console) -> None:
    """Ask the controller that holds the grid's lock to stop (SIGTERM), and wait until it has released it."""
    holder = sweeping._read_holder(grid_dir(root, grid) / "lock")
    if holder.isdigit():
        try:
            psutil.Process(int(holder)).terminate()
            console.print(f"grid {grid}: its controller (pid {holder}) asked to stop", highlight=False)
        except psutil.Error:
            pass
    deadline = time.monotonic() + STOP_WAIT_SECONDS
    while sweeping.is_locked(root, grid):
        if time.monotonic() > deadline:
            raise InvalidInput([Problem(f"grid/{grid}", f"its controller (pid {holder or '?'}) did not stop within "
                                        f"{STOP_WAIT_SECONDS:g} s: stop it ({processes.stop_hint(holder)}) "
                                        "and delete again")])
        time.sleep(0.2)


def delete_local_grid(*, root: Path, grid: str, console: Console, purge_runs: bool) -> int:
    """Delete grid `grid` (a name or a grid file) of the project `root`; NotFound (exit 1) when it has none."""
    name = known_grid(root, grid)
    if sweeping.is_locked(root, name):
        _stop_controller(root, name, console)
    with sweeping.GridLock(root, name):
        state = load_state(root, name)
        orphans = sweeping.stop_orphans(state, grace_s=sweeping.STOP_GRACE_SECONDS)
        if orphans or purge_runs:
            mlflow = tracking.client(tracking.tracking_uri(root))
            experiment = tracking.check_experiment(mlflow, name=state.experiment) if state.experiment else None
            if experiment is not None:
                for run in tracking.running_runs(mlflow, experiment_id=experiment, grid=name):
                    tracking.end_run(mlflow, run.info.run_id, status="KILLED", reason=f"grid {name} deleted")
                if purge_runs:
                    purged = tracking.delete_grid_runs(mlflow, experiment_id=experiment, grid=name)
                    console.print(f"grid {name}: {purged} MLflow runs deleted (restorable until MLflow's gc)",
                                  highlight=False, soft_wrap=True)
    shutil.rmtree(grid_dir(root, name))
    kept = report_dir(root, name)
    runs = "" if purge_runs else f"; its MLflow runs stay (experiment {state.experiment}; --purge-runs deletes them)"
    report = f"; its report stays in {shown_path(kept)}" if kept.is_dir() else ""
    console.print(f"grid {name} deleted: its state and logs removed{report}{runs}", highlight=False, soft_wrap=True)
    return 0

