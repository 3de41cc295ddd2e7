"""The verbs behind `submit-grid`, `render` and `data build`."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

from rich.console import Console

from controller import tracking
from controller.dataset_pin import pinned_md5
from controller.core.expanding import GridPoint, expand
from contract.grid import GridSpec, load_grid
from controller.progress import ProgressView
from controller.core.reconciling import GridPhase
from controller.core.rendering import RenderSettings, render_all, to_yaml
from controller.local.executor import LocalRun, default_parallelism, run_grid_locally


def prepare(*, grid_path: Path, weights: str | None = None, root: Path | None = None) -> tuple[GridSpec, list[GridPoint], str]:
    """Validate a grid file and expand it; raises InvalidInput before anything starts.
    dataset.path is relative to the project folder `root` (default: the current directory),
    where the Jobs run."""
    root = root or Path.cwd()
    grid = load_grid(grid_path, base_dir=root)
    if weights:
        grid = dataclasses.replace(grid, weights=weights)
    dataset_md5 = pinned_md5(grid, base_dir=root)
    return grid, expand(grid, dataset_md5=dataset_md5), dataset_md5


def render_grid(*, grid_path: Path, root: Path) -> str:
    grid, points, dataset_md5 = prepare(grid_path=grid_path, root=root)
    settings = RenderSettings(tracking_uri=tracking.tracking_uri(root), backend="kubernetes")
    return to_yaml(render_all(grid, points, settings, dataset_md5=dataset_md5))


def submit_grid(*, grid_path: Path, root: Path, parallelism: int | None, weights: str | None,
                console: Console) -> int:
    grid, points, dataset_md5 = prepare(grid_path=grid_path, weights=weights, root=root)
    run = LocalRun(grid=grid, points=points, dataset_md5=dataset_md5, root=root,
                   parallelism=default_parallelism(grid, parallelism))
    console.print(f"grid [bold]{grid.name}[/]: {len(points)} points, {run.parallelism} at a time, "
                  f"tracking at {tracking.tracking_uri(root)}", highlight=False, soft_wrap=True)
    view = ProgressView(points=[p.name for p in points], metric=grid.objective_metric, console=console)
    outcome = run_grid_locally(run, view=view)
    if outcome.up_to_date:
        console.print("nothing to do: every point and the finalizer already succeeded with this spec", highlight=False)
    console.print(f"grid {grid.name}: {outcome.phase.value} ({outcome.state.message})", highlight=False)
    if outcome.report is not None:
        console.print(f"decision report: {outcome.report}", highlight=False)
    return 0 if outcome.phase is GridPhase.SUCCEEDED else 1


def build_dataset(*, source: str | None, out: Path, seed: int) -> int:
    """`python -m tinycoco build` in a child process: the controller never imports the dataset builder
    (its image does not ship it). Returns the builder's exit code (2: bad source, the previous dataset kept)."""
    command = [sys.executable, "-m", "tinycoco", "build", "--out", str(out), "--seed", str(seed)]
    if source:
        command += ["--source", source]
    return subprocess.run(command, check=False).returncode
