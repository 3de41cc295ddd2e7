"""What every backend does with a grid file before it runs (validate, pin the dataset, expand), `render`,
and `data build`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import contract
from contract.errors import InvalidInput, Problem
from contract.grid import DEFAULT_MAX_POINTS, GridSpec, load_grid
from controller import preflight
from controller.core.expanding import GridPoint, expand
from controller.core.rendering import RenderSettings, render_all, to_yaml
from controller.credentials import refuse_credentials_in_uri
from controller.dataset_pin import pinned_md5


def prepare(*, grid_path: Path, weights: str | None = None, root: Path | None = None,
            max_points: int = DEFAULT_MAX_POINTS, backend: str | None = None,
            notes: list[str] | None = None) -> tuple[GridSpec, list[GridPoint], str]:
    """Validate a grid file and expand it; raises InvalidInput before anything starts.
    dataset.path is relative to the project folder `root` (default: the current directory),
    where the Jobs run; a grid of more than `max_points` points is refused.
    With `backend` ("local" or "kubernetes"), what every point would fail on is checked too
    (controller.preflight: the dataset against its pin or in the DVC remote, the weights); what
    could not be checked is appended to `notes`."""
    root = root or Path.cwd()
    refuse_credentials_in_uri(os.environ.get(contract.ENV_TRACKING_URI) or "")  # before any message could echo it
    grid = load_grid(grid_path, base_dir=root, max_points=max_points)
    if weights:  # given on the command line: relative to where the command runs
        grid = grid.with_weights(resolve_path(weights, written_in=Path.cwd(), root=root))
    elif (resolved := resolve_path(grid.weights, written_in=grid_path.resolve().parent, root=root)) != grid.weights:
        grid = grid.with_weights(resolved)  # written in the grid file: relative to the file's folder
    dataset_md5 = pinned_md5(grid, base_dir=root)
    try:
        points = expand(grid, dataset_md5=dataset_md5)
    except InvalidInput as error:  # the name template's problems, located in the file too
        raise InvalidInput([Problem(f"{grid_path}: {p.location}", p.message) for p in error.problems]) from error
    if backend is not None:
        try:
            found = preflight.check(grid, root=root, dataset_md5=dataset_md5, backend=backend)
        except InvalidInput as error:
            raise InvalidInput([Problem(f"{grid_path}: {p.location}", p.message) for p in error.problems]) from error
        if notes is not None:
            notes += found
    return grid, points, dataset_md5


def resolve_path(spec: str, *, written_in: Path, root: Path) -> str:
    """A relative local path in configuration, resolved against the folder it was written in, as the Jobs
    (which run in the project folder `root`) must see it: relative to `root` when inside it, else absolute.
    URIs, absolute paths and names that are no file there (e.g. `yolov8n.pt`, which ultralytics knows)
    are returned unchanged."""
    if "://" in spec or Path(spec).is_absolute():
        return spec
    candidate = (written_in / spec).resolve()
    if not candidate.exists():
        return spec
    try:
        return str(candidate.relative_to(root.resolve()))
    except ValueError:
        return str(candidate)


def render_grid(*, grid_path: Path, root: Path, max_points: int = DEFAULT_MAX_POINTS) -> str:
    """The Jobs a submission starts with, as YAML: every point of a grid or a random search; the first
    points a TPE search asks (job.parallelism, else its start-up trials: the rest depend on results)."""
    grid, points, dataset_md5 = prepare(grid_path=grid_path, root=root, max_points=max_points)
    if grid.search.mode == "tpe":
        from controller.core import searching  # Optuna and numpy: imported by a search only

        first = grid.job.parallelism or searching.startup_trials(grid)
        points = [p for _, p in searching.sample_points(grid, [], room=first, dataset_md5=dataset_md5,
                                                        names=searching.Names())]
    from controller import tracking  # MLflow is imported only once the grid is valid: bad input is refused fast

    settings = RenderSettings(tracking_uri=tracking.tracking_uri(root), backend="kubernetes")
    return to_yaml(render_all(grid, points, settings, dataset_md5=dataset_md5))


def build_dataset(*, source: str | None, out: Path, seed: int | None) -> int:
    """`python -m tinycoco build` in a child process: the controller never imports the dataset builder
    (its image does not ship it). Returns the builder's exit code (2: bad source, the previous dataset kept)."""
    command = [sys.executable, "-m", "tinycoco", "build", "--out", str(out),
               *(["--seed", str(seed)] if seed is not None else [])]
    if source:
        command += ["--source", source]
    return subprocess.run(command, check=False).returncode


class NotFound(Exception):
    """What a verb acts on does not exist (yet): exit code 1, as kubectl's for a missing object
    (bad input, exit code 2, is contract.errors.InvalidInput)."""


class NoSubmission(NotFound):
    """A verb about a grid's submission (`finalize`) named a grid never submitted where it looks
    (this project, a namespace)."""

    def __init__(self, grid: str, where: str) -> None:
        self.grid, self.where = grid, where
        super().__init__(f"no submission of grid {grid!r} {where}")


def grid_name(value: str) -> str:
    """A grid given by name, or by the grid file that names it; a .yaml/.yml name that is no file, or
    a grid file that is not valid, is InvalidInput (exit 2) naming the file."""
    path = Path(value)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise InvalidInput([Problem(value, "no such grid file (give a grid file, or a grid's name)")])
        return load_grid(path).name
    return value
