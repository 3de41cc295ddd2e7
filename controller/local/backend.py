"""The embedded default: grids run as local processes under the project folder (.tp4/)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from contract.errors import InvalidInput, Problem
from contract.grid import DEFAULT_MAX_POINTS
from controller import tracking
from controller.core.reconciling import GridPhase
from controller.core.state import GridState
from controller.local import inspecting
from controller.local.executor import LocalRun, default_parallelism, run_grid_locally
from controller.progress import ProgressView
from controller.submitting import grid_name, prepare


class RecordingView(ProgressView):
    """The progress view that also records the submission's points for `status` (inspecting.record_current)."""

    def __init__(self, *, root: Path, points: list[str], metric: str, console: Console) -> None:
        super().__init__(points=points, metric=metric, console=console)
        self.root = root

    def update(self, state: GridState) -> None:
        inspecting.record_current(self.root, state, points=self.points)
        super().update(state)


@dataclass
class LocalBackend:
    """controller.backend.Backend for the project folder `root`."""

    root: Path
    name: str = "local"

    def submit_grid(self, *, grid_path: Path, weights: str | None, parallelism: int | None, wait: bool,
                    console: Console, max_points: int = DEFAULT_MAX_POINTS) -> int:
        if not wait:
            raise InvalidInput([Problem("--no-wait", "is for a cluster (--backend kubernetes): a local grid runs "
                                        "in this process")])
        notes: list[str] = []
        grid, points, dataset_md5 = prepare(grid_path=grid_path, weights=weights, root=self.root,
                                            max_points=max_points, backend="local", notes=notes)
        for note in notes:
            console.print(f"note: {note}", highlight=False, soft_wrap=True)
        run = LocalRun(grid=grid, points=points, dataset_md5=dataset_md5, root=self.root,
                       parallelism=default_parallelism(grid, parallelism))
        what = f"{len(points)} points" if grid.search.mode != "tpe" else f"a TPE search of {grid.search.trials} trials"
        console.print(f"grid [bold]{grid.name}[/]: {what}, {run.parallelism} at a time, "
                      f"tracking at {tracking.tracking_uri(self.root)}", highlight=False, soft_wrap=True)
        view = RecordingView(root=self.root, points=[p.name for p in points], metric=grid.objective_metric,
                             console=console)
        outcome = run_grid_locally(run, view=view)
        if outcome.up_to_date:
            console.print("nothing to do: every point and the finalizer already succeeded with this spec",
                          highlight=False)
        console.print(f"grid {grid.name}: {outcome.phase.value} ({outcome.state.message})", highlight=False)
        if outcome.report is not None and (line := inspecting.local_decision_line(self.root, grid.name)):
            console.print(line, highlight=False, soft_wrap=True)
        return 0 if outcome.phase is GridPhase.SUCCEEDED else 1

    def finalize_grid(self, *, grid: str, wait: bool, console: Console) -> int:
        """Run the finalizer of the grid's latest submission again (controller.local.refinalizing); it runs in
        this process, so `wait` must be True."""
        from controller.local.refinalizing import run_finalizer_again

        if not wait:
            raise InvalidInput([Problem("--no-wait", "is for a cluster (--backend kubernetes): a local finalizer "
                                        "runs in this process")])

        return run_finalizer_again(root=self.root, grid=grid_name(grid), console=console)

    def show_status(self, *, grid: str | None, console: Console, output: str | None = None,
                    show_obsolete: bool = False) -> int:
        return inspecting.show_status(root=self.root, grid=grid, console=console, output=output,
                                      show_obsolete=show_obsolete)

    def show_logs(self, *, job: str, follow: bool, attempt: int | None) -> int:
        return inspecting.show_logs(root=self.root, job=job, follow=follow, attempt=attempt)

    def show_report(self, *, grid: str, console: Console) -> int:
        return inspecting.show_report(root=self.root, grid=grid, console=console)

    def delete_grid(self, *, grid: str, console: Console, purge_runs: bool = False) -> int:
        from controller.local.deleting import delete_local_grid

        return delete_local_grid(root=self.root, grid=grid, console=console, purge_runs=purge_runs)

    def run_controller(self) -> int:
        raise InvalidInput([Problem("run", "is the cluster's reconcile loop: give --backend kubernetes "
                                    "(or -n/--kubeconfig/--context)")])
