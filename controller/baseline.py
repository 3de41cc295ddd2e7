"""`python -m controller baseline [grid.yaml]`: the lab's baseline run (handout step 5), comparable with the grid's.

One train Job, `python -m jobs.train` (the module every grid point runs), in the foreground of this process, with:

- the grid's recipe: its `train:` section (epochs, batch, optimizer, nbs, warmup_epochs, workers...), read through
  the grid model (contract.grid, by controller.submitting.prepare) and turned into flags by the function that
  writes every grid point's (controller.core.rendering.train_args); imgsz, lr0 and seed come from the command line,
  else from the `train:` section, else the handout's values (contract.BASELINE_DEFAULTS); --epochs overrides;
- the weights the lab grid gets: --weights, else the shared COCO-pretrained backbone (controller.demo.lab_weights,
  the rule of `controller demo`), else the grid's model.weights;
- the grid's dataset (its pinned md5), experiment and tracking store, and the threads one grid Job gets here;
- its run tagged tp4.grid=<grid>, tp4.role=baseline and tp4.spec_hash=<the hash a grid point with the same values
  has>, named baseline-<imgsz>-<lr0>-<seed>: in the grid's experiment beside its runs, with the same metric names,
  and never counted as a grid point (the finalizer, a search and the orphan sweep collect tp4.role=train runs only).

Exit codes: the train Job's (0 run FINISHED; 2 bad input, the grid's included, before any run; 1 failure;
128+N killed by signal N).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

import contract
from contract.errors import InvalidInput, Problem
from contract.grid import GridSpec, argument_problem

# Seconds a Job interrupted by Ctrl-C (which reaches it too) gets to mark its run KILLED before it is killed.
INTERRUPT_GRACE_S = 60.0


@dataclass(frozen=True)
class Baseline:
    """The baseline's train Job, as it will run."""

    name: str  # the run's name: baseline-<imgsz>-<lr0>-<seed>
    params: dict[str, Any]  # its values beside the grid's `train:` section (imgsz, lr0, seed; epochs if given)
    spec_hash: str  # what a grid point with the same values hashes to (controller.core.expanding.point_spec)
    args: list[str]  # the flags of `python -m jobs.train`
    same_as: str | None  # the grid point with the same spec, if there is one
    unset_axes: tuple[str, ...]  # axes the baseline leaves to the train Job's defaults


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The verb's arguments (controller/cli.py adds them to its `baseline` command)."""
    parser.add_argument("grid", nargs="?", type=Path, default=Path("grid.yaml"),
                        help="the grid whose recipe, weights and experiment the baseline uses (default: grid.yaml)")
    defaults = contract.BASELINE_DEFAULTS
    parser.add_argument("--imgsz", type=int, help=f"image size (default: the grid's train.imgsz, else "
                        f"{defaults['imgsz']})")
    parser.add_argument("--lr0", type=float, help=f"initial learning rate (default: the grid's train.lr0, else "
                        f"{defaults['lr0']})")
    parser.add_argument("--seed", type=int, help=f"seed (default: the grid's train.seed, else {defaults['seed']})")
    parser.add_argument("--epochs", type=int, help="epochs (default: the grid's train.epochs)")
    parser.add_argument("--weights", help="override model.weights (default: ../shared's COCO-pretrained backbone "
                        "when present, as `controller demo` does, else the grid's model.weights)")


def command(args: argparse.Namespace, *, root: Path, console: Console) -> int:
    """`python -m controller baseline`, from add_arguments' parsed arguments."""
    grid = args.grid if args.grid.is_absolute() else root / args.grid
    given = {"imgsz": args.imgsz, "lr0": args.lr0, "seed": args.seed, "epochs": args.epochs}
    return run_baseline(root=root, grid_path=grid, weights=args.weights, given=given, console=console)


def baseline_params(grid: GridSpec, given: dict[str, Any]) -> dict[str, Any]:
    """The baseline's values beside the grid's `train:` section: imgsz, lr0 and seed from `given` (None: not
    given), else the section's, else contract.BASELINE_DEFAULTS; epochs when given. InvalidInput (exit 2)
    naming each flag whose value a grid would refuse."""
    params: dict[str, Any] = {}
    problems = []
    for name, value in given.items():
        if value is None:
            if name in contract.BASELINE_DEFAULTS:
                params[name] = grid.train.get(name, contract.BASELINE_DEFAULTS[name])
            continue
        checked, problem = argument_problem(name, value)
        if problem:
            problems.append(Problem(f"--{name} {value}", problem))
        params[name] = checked
    if problems:
        raise InvalidInput(problems)
    return params


def plan(grid: GridSpec, given: dict[str, Any], *, dataset_md5: str, points: list[Any]) -> Baseline:
    """The baseline of `grid` (weights already chosen) with the `given` values; `points`: the grid's own
    (controller.core.expanding.GridPoint), to name the one it equals. Pure."""
    from controller.core.expanding import GridPoint, format_value, point_spec
    from controller.core.rendering import train_args

    params = baseline_params(grid, given)
    spec_hash = contract.spec_hash(point_spec(grid, params, dataset_md5=dataset_md5))
    name = "-".join([contract.ROLE_BASELINE, *(format_value(params[n]) for n in contract.BASELINE_DEFAULTS)])
    point = GridPoint(name=name, params=params, spec_hash=spec_hash)
    same_as = next((p.name for p in points if p.spec_hash == spec_hash), None)
    unset = tuple(axis for axis in grid.axes if axis not in params and axis not in grid.train)
    return Baseline(name=name, params=params, spec_hash=spec_hash, args=train_args(grid, point), same_as=same_as,
                    unset_axes=unset)


def job_environment(grid: GridSpec, baseline: Baseline, *, root: Path, uri: str, dataset_md5: str) -> dict[str, str]:
    """The baseline Job's environment: this process's, then what a local grid Job of `grid` gets (rendering's
    job_env, outside any point and parent run), then its role and spec hash."""
    from controller.core.rendering import RenderSettings, job_env
    from controller.local.executor import PASSED_THROUGH_ENV, cpu_count, default_parallelism

    settings = RenderSettings(tracking_uri=uri, backend="local", parent_run_id="",
                              extra_env={k: os.environ[k] for k in PASSED_THROUGH_ENV if k in os.environ})
    rendered = {item["name"]: item["value"] for item in job_env(grid, settings, dataset_md5=dataset_md5, point=None)}
    rendered.pop(contract.ENV_PARENT_RUN_ID)  # no parent: the run sits in the experiment beside the grid's runs
    rendered.pop(contract.ENV_IMAGE)  # a local process runs in no image
    # As controller.local.kubelet.LocalKubelet.base_env: the threads of one Job of this grid run here at its
    # default parallelism (train_seconds stays comparable), ultralytics' settings under the project.
    threads = str(max(1, cpu_count() // default_parallelism(grid, None)))
    local = {contract.ENV_TORCH_THREADS: threads, "OMP_NUM_THREADS": threads, "PYTHONUNBUFFERED": "1",
             "YOLO_CONFIG_DIR": str(root / contract.EMBEDDED_DIR / "ultralytics")}
    role = {contract.ENV_ROLE: contract.ROLE_BASELINE, contract.ENV_SPEC_HASH: baseline.spec_hash}
    inherited = {k: v for k, v in os.environ.items() if k not in (contract.ENV_POINT, contract.ENV_PHASE,
                                                                   contract.ENV_ATTEMPT, contract.ENV_PARENT_RUN_ID)}
    return {**inherited, **rendered, **local, **role}


def run_baseline(*, root: Path, grid_path: Path, weights: str | None, given: dict[str, Any],
                 console: Console) -> int:
    """Validate the grid and the values (InvalidInput, exit 2, before anything runs), run the baseline's train
    Job in the project folder `root`, and return its exit code. `given`: imgsz, lr0, seed, epochs (None: not
    given)."""
    from controller import tracking
    from controller.demo import lab_weights
    from controller.submitting import prepare

    notes: list[str] = []
    grid, points, dataset_md5 = prepare(grid_path=grid_path, weights=lab_weights(root, weights), root=root,
                                        backend="local", notes=notes)
    baseline = plan(grid, given, dataset_md5=dataset_md5, points=points)
    uri = tracking.tracking_uri(root)
    env = job_environment(grid, baseline, root=root, uri=uri, dataset_md5=dataset_md5)
    for note in notes:
        console.print(f"note: {note}", highlight=False, soft_wrap=True)
    recipe = " ".join(f"{k}={v}" for k, v in {**grid.train, **baseline.params}.items())
    console.print(f"baseline [bold]{baseline.name}[/] of grid {grid.name}: {recipe}, weights {grid.weights}; "
                  f"experiment {grid.experiment} at {uri}",
                  highlight=False, soft_wrap=True)
    for axis in baseline.unset_axes:
        console.print(f"note: axis {axis}: not set by the baseline, the train Job's default applies",
                      highlight=False, soft_wrap=True)
    code = run_job([sys.executable, "-m", "jobs.train", *baseline.args], root=root, env=env)
    if code == contract.EXIT_OK:
        same = f"; same configuration as grid point {baseline.same_as}" if baseline.same_as else ""
        console.print(f"baseline run {baseline.name} in experiment {grid.experiment}, beside grid {grid.name}'s "
                      f"runs (tp4.role={contract.ROLE_BASELINE}: not a grid point{same})",
                      highlight=False, soft_wrap=True)
    return code


def run_job(job: list[str], *, root: Path, env: dict[str, str]) -> int:
    """Run the Job in the foreground; its exit code (128+N when killed by signal N). On Ctrl-C (which the Job
    receives too) it gets INTERRUPT_GRACE_S to end its run KILLED, then KeyboardInterrupt goes on."""
    process = subprocess.Popen(job, cwd=root, env=env, stdin=subprocess.DEVNULL)
    try:
        code = process.wait()
    except KeyboardInterrupt:
        try:
            process.wait(timeout=INTERRUPT_GRACE_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        raise
    return 128 - code if code < 0 else code
