"""Fixtures and helpers for tests against the production-like stack (devstack).

One stack per test module (`stack`, module-scoped): a module sets
`STACK_AUTH = True` for MLflow's basic-auth app. Import the fixtures into the
test module: `from tests.helpers.stackfixtures import published, stack  # noqa: F401`.

`published` is a project whose tiny dataset (8/4/4 COCO128 person images)
was `dvc add`ed and `dvc push -r s3`ed to the stack's S3 remote, with the
committed .dvc/config; `fresh_project` copies what a fresh pod has: the code
comes from the installed package, the folder holds .dvc/config,
data/tiny_coco.dvc and grid.yaml, and neither the dataset nor a DVC cache.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

import contract
from devstack import Stack, StackConfig, running_stack
from tests.helpers.paths import BACKBONE, COCO128, REPO

DATASET = "data/tiny_coco"
CLIENT_PREFIXES = ("TP4_", "MLFLOW_", "AWS_")
TINY_TRAIN = {"epochs": 1, "batch": 4, "nbs": 4, "warmup_epochs": 0, "workers": 0, "imgsz": 64, "seed": 1}


@contextmanager
def stack_folder() -> Iterator[Path]:
    """A stack's folder outside pytest's temporary root: as root, Postgres runs as the user `pgserver`,
    which must traverse the folders above its data, and every pytest session that starts (another
    engineer's, beside this one) makes /tmp/pytest-of-<user> 0700 again, and may prune old sessions."""
    folder = Path(tempfile.mkdtemp(prefix="tp4-stack-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def stack(request: pytest.FixtureRequest) -> Iterator[Stack]:
    auth = bool(getattr(request.module, "STACK_AUTH", False))
    started = time.monotonic()
    with stack_folder() as folder, running_stack(StackConfig(folder=folder, auth=auth)) as running:
        print(f"\nstack up in {time.monotonic() - started:.1f} s (auth={auth})")
        yield running


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any tracking, S3 or tp4 setting, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(CLIENT_PREFIXES) and k != "PYTEST_CURRENT_TEST"}
    return env | {"YOLO_OFFLINE": "true"} | extra


def stack_env(stack: Stack, **extra: str) -> dict[str, str]:
    """A job's or the controller's environment: only what the stack hands clients."""
    return clean_env(**{**stack.client_env(), **extra})


def run(argv: list[str], *, cwd: Path, env: dict[str, str], timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def dvc(*args: str, cwd: Path, env: dict[str, str]) -> str:
    done = run([sys.executable, "-m", "dvc", *args], cwd=cwd, env=env, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def project_skeleton(folder: Path, *, for_cli: bool = False) -> Path:
    """The committed DVC configuration and no git, as in a pod. The DVC command line needs
    git or `no_scm` (config.local); the jobs need neither."""
    (folder / ".dvc").mkdir(parents=True)
    shutil.copy(REPO / ".dvc" / "config", folder / ".dvc" / "config")
    shutil.copy(REPO / ".dvcignore", folder / ".dvcignore")
    if for_cli:
        (folder / ".dvc" / "config.local").write_text("[core]\n    no_scm = true\n")
    return folder


@pytest.fixture(scope="module")
def published(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tinycoco import build

    folder = project_skeleton(tmp_path_factory.mktemp("publisher"), for_cli=True)
    build(source=str(COCO128), out_dir=folder / DATASET, seed=0, split=(8, 4, 4))
    env = stack_env(stack)
    dvc("add", "-q", DATASET, cwd=folder, env=env)
    dvc("push", "-q", "-r", "s3", cwd=folder, env=env)
    return folder


def push_copy(published: Path, *, stack: Stack, prefix: str) -> str:
    """The dataset pushed again under s3://<dvc bucket>/<prefix>: a remote a test may break alone."""
    url = f"s3://{stack.config.dvc_bucket}/{prefix}"
    env = stack_env(stack)
    dvc("remote", "add", "--local", "-f", prefix, url, cwd=published, env=env)
    dvc("push", "-q", "-r", prefix, cwd=published, env=env)
    return url


def fresh_project(published: Path, folder: Path, **grid_changes: Any) -> Path:
    project_skeleton(folder)
    (folder / "data").mkdir()
    shutil.copy(published / f"{DATASET}.dvc", folder / f"{DATASET}.dvc")
    write_grid(folder, **grid_changes)
    return folder


def write_grid(folder: Path, **changes: Any) -> Path:
    grid = {
        "name": "tiny", "experiment": "tiny-stack",
        "dataset": {"path": DATASET},  # the md5 comes from data/tiny_coco.dvc
        "model": {"weights": str(BACKBONE), "registered_name": "tiny-person"},
        "train": dict(TINY_TRAIN),
        "axes": {"lr0": [0.005, 0.01]},
        "job": {"name_template": "train-{lr0}"},
        "gates": {"min_objective": 0.0, "min_success_fraction": 0.5},
        **changes,
    }
    path = folder / "grid.yaml"
    path.write_text(yaml.safe_dump(grid, sort_keys=False))
    return path


def controller(project: Path, *args: str, env: dict[str, str],
               timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, "-m", "controller", "--root", str(project), *args], cwd=project, env=env,
               timeout=timeout)


def train_job(project: Path, *args: str, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """`python -m jobs.train` on the tiny settings, as a Job runs it."""
    flags = ["--data", f"{DATASET}/data.yaml", "--model", str(BACKBONE), "--epochs", "1", "--imgsz", "64",
             "--batch", "4", "--arg", "nbs=4", "--arg", "warmup_epochs=0", "--arg", "workers=0"]
    return run([sys.executable, "-m", "jobs.train", *flags, *args], cwd=project, env=env, timeout=timeout)


@dataclass(frozen=True)
class GridRun:
    project: Path
    done: subprocess.CompletedProcess[str]
    seconds: float
    env: dict[str, str]
    # `ps -ww -eo args` of every process, sampled while it ran (-ww: ps cuts lines at 80 columns without a terminal)
    command_lines: list[str] = field(default_factory=list)

    def job_log(self, job: str) -> str:
        """The log of the Job's first attempt (named <job>.<submission>.<attempt>.log)."""
        [log] = (self.project / contract.EMBEDDED_DIR / "grids" / "tiny" / "logs").glob(f"{job}.*.1.log")
        return log.read_text()


def command_lines() -> list[str]:
    """The command line of every process on the machine, as any local user sees them."""
    return subprocess.run(["ps", "-ww", "-eo", "args"], capture_output=True, text=True, check=True).stdout.splitlines()


def local_state(project: Path) -> list[str]:
    """What the local executor recorded under .tp4/grids: state, logs (a grid's lock file aside,
    which a controller takes before it checks anything)."""
    grids = project / contract.EMBEDDED_DIR / "grids"
    return sorted(p.relative_to(grids).as_posix() for p in grids.rglob("*") if p.is_file() and p.name != "lock")


def submit_grid(stack: Stack, published: Path, folder: Path) -> GridRun:
    """The tiny grid through `submit-grid` with the local executor, against the stack; timed. Every
    process's command line is sampled each second meanwhile (the stack, the controller, the Jobs)."""
    project = fresh_project(published, folder)
    env = stack_env(stack)
    seen: set[str] = set()
    finished = threading.Event()

    def sample() -> None:
        while not finished.wait(1.0):
            seen.update(command_lines())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.monotonic()
    try:
        done = controller(project, "submit-grid", "grid.yaml", "--parallelism", "2", env=env)
    finally:
        finished.set()
        sampler.join()
    seconds = time.monotonic() - started
    print(f"\nsubmit-grid (2 points, 1 epoch, imgsz 64, finalizer) against the stack: {seconds:.1f} s")
    return GridRun(project=project, done=done, seconds=seconds, env=env, command_lines=sorted(seen))


def s3_object_key(md5: str, *, prefix: str = "") -> str:
    """Where DVC 3 keeps a file of this md5 in a remote."""
    return f"{prefix}{'/' if prefix else ''}files/md5/{md5[:2]}/{md5[2:]}"


def postgres_rows(stack: Stack, query: str, *params: Any) -> list[tuple[Any, ...]]:
    assert stack.postgres is not None
    connection = stack.postgres.connect("mlflow")
    try:
        with connection.cursor() as cursor:
            cursor.execute(query, params)
            return list(cursor.fetchall())
    finally:
        connection.close()
