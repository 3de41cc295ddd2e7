"""Create or update the project's virtual environment for one install set, saying what it does.

    python3.12 tools/venv_setup.py [--venv .venv] [--extra test]

Run by the interpreter the environment is to be built on (the Makefile finds one: PYTHON, else the
environment's own, else python3.11, python3.12, python3.13, python3). Standard library only: it runs
before anything is installed.

The install sets: the demo set is pyproject's `dependencies` (what `make demo`, `make ui` and the Jobs
need); `--extra test` adds the test tools (the `test` extra: pytest, the real servers, lint).

The stamp `<venv>/.installed` (JSON) records the interpreter (its minor version and the real path of
its executable), a digest of the pinned set (requires-python, dependencies and every extra in
pyproject.toml) and the extras installed. Then:

- no environment, or one whose interpreter is gone or is not this one (another path or another minor
  version): it is removed and made anew with this interpreter;
- no stamp (never installed, or an install that was interrupted), another pinned set, or a missing
  extra: `pip install -e .[extras]`, with pip's own output, after one line saying what and how big;
- otherwise nothing is done and nothing printed.

A patch release of the same interpreter (3.11.7 -> 3.11.9 at the same path) keeps the environment:
the ABI of a minor version is stable. Exit codes: pip's when it fails (nothing recorded: the next run
tries again), 2 when the test tools are asked for on a Python they publish no wheels for.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import stat
import subprocess
import sys
import time
import tomllib
import venv
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STAMP_NAME = ".installed"

# The test extra resolves on these only: pgserver 0.1.4 (the tests' embedded PostgreSQL) publishes
# wheels for CPython up to 3.12. tests/tooling/test_install.py resolves the test set for each of them.
TEST_PYTHONS = ("3.11", "3.12")

# What an install costs on Linux x86_64, Python 3.11 (measured in a fresh clone: the wheels pip fetched,
# `du -sh .venv`; README.md, "Start here"). macOS and Windows download far less: their torch wheel has no
# CUDA libraries (about 0.6 GB in all, estimated from the wheel sizes).
SIZES = {
    (): "about 3.4 GB to download (2.4 GB of it CUDA libraries, 0.55 GB torch), 6.9 GiB on disk",
    ("test",): "about 3.5 GB to download, 7.3 GiB on disk",
}
TEST_TOOLS_ADDED = "about 0.1 GB more to download, 0.4 GiB more on disk"


@dataclass(frozen=True)
class Interpreter:
    """An interpreter as the stamp records it: `minor` "3.12", `version` "3.12.1", `executable` a real path."""

    minor: str
    version: str
    executable: str


@dataclass(frozen=True)
class Plan:
    """What to do: `recreate` the environment first, then `install` the `extras` (of which `added` are new
    to an environment kept); `reason` says why."""

    recreate: bool
    install: bool
    extras: tuple[str, ...]
    reason: str
    added: tuple[str, ...] = ()


def current_interpreter() -> Interpreter:
    """This process's base interpreter (the one a venv it runs from was made with)."""
    base = getattr(sys, "_base_executable", sys.executable)
    return Interpreter(minor=f"{sys.version_info.major}.{sys.version_info.minor}", version=platform.python_version(),
                       executable=os.path.realpath(base))


def pinned_digest(pyproject: Path) -> str:
    """sha256 (hex) of what decides the installed packages: requires-python, dependencies, every extra."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    pinned = {key: project.get(key) for key in ("requires-python", "dependencies", "optional-dependencies")}
    return hashlib.sha256(json.dumps(pinned, sort_keys=True).encode()).hexdigest()


def venv_python(venv_dir: Path) -> Path:
    return venv_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def venv_interpreter(venv_dir: Path) -> Interpreter | None:
    """The interpreter `venv_dir` was made with, from its pyvenv.cfg; None when there is no environment
    or its interpreter is gone (a dangling bin/python)."""
    config = venv_dir / "pyvenv.cfg"
    if not config.is_file() or not venv_python(venv_dir).exists():
        return None
    values = {}
    for line in config.read_text(encoding="utf-8").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip()
    version = values.get("version") or values.get("version_info", "")
    executable = values.get("executable")
    if not version or not executable:  # made by a Python older than 3.11: not one of ours
        return None
    return Interpreter(minor=".".join(version.split(".")[:2]), version=version,
                       executable=os.path.realpath(executable))


def read_stamp(venv_dir: Path) -> dict[str, object] | None:
    """The stamp's content; None when absent or not ours (an empty file from an older Makefile)."""
    try:
        stamp = json.loads((venv_dir / STAMP_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return stamp if isinstance(stamp, dict) else None


def plan(*, want: Interpreter, have: Interpreter | None, stamp: dict[str, object] | None, digest: str,
         extras: tuple[str, ...]) -> Plan:
    """Pure: what to do for an environment made with `have` (None: none usable) holding `stamp`, when
    `want` and the pinned set `digest` with `extras` are asked for."""
    if have is None:
        return Plan(True, True, extras, "no environment yet (or its interpreter is gone)")
    if (have.minor, have.executable) != (want.minor, want.executable):
        return Plan(True, True, extras, f"the environment was made by Python {have.version} ({have.executable}); "
                                        f"it is replaced by one on Python {want.version} ({want.executable})")
    if stamp is None:
        return Plan(False, True, extras, "nothing recorded as installed yet (a first or an interrupted install)")
    recorded = stamp.get("extras")
    installed = tuple(str(e) for e in recorded) if isinstance(recorded, list) else ()
    union = tuple(sorted(set(installed) | set(extras)))
    if stamp.get("python") != want.minor or stamp.get("executable") != want.executable:
        return Plan(True, True, union, "the stamp names another interpreter")
    if stamp.get("pins") != digest:
        return Plan(False, True, union, "the pinned set in pyproject.toml changed")
    added = tuple(sorted(set(extras) - set(installed)))
    if added:
        return Plan(False, True, union, "adding the " + ", ".join(added) + " extra", added)
    return Plan(False, False, union, "up to date")


def describe(extras: tuple[str, ...]) -> str:
    return "the demo set" + ("" if not extras else " and the test tools" if extras == ("test",)
                             else " with the extras " + ", ".join(extras))


def cost(step: Plan) -> str:
    """What `step` will download and take, in words (Linux figures, SIZES)."""
    if step.recreate:
        return f"{SIZES.get(step.extras, SIZES[('test',)])} on Linux, less on macOS and Windows (no CUDA libraries)"
    if step.added == ("test",):
        return TEST_TOOLS_ADDED
    return "only what is missing or changed is downloaded"


def size_on_disk(folder: Path) -> int:
    """Bytes the regular files under `folder` take on disk, as `du` counts them (allocated blocks where the
    OS reports them, else their sizes); symlinks not followed."""
    total = 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            info = os.lstat(os.path.join(root, name))
            if stat.S_ISREG(info.st_mode):
                blocks = getattr(info, "st_blocks", None)
                total += blocks * 512 if blocks is not None else info.st_size
    return total


def refusal(minor: str, extras: tuple[str, ...], venv_dir: Path) -> str | None:
    """Why `extras` cannot be installed on Python `minor` (a message naming what to do), or None."""
    if "test" in extras and minor not in TEST_PYTHONS:
        return (f"tp4: the test tools need Python {' or '.join(TEST_PYTHONS)}: pgserver 0.1.4 (the tests' embedded "
                f"PostgreSQL) publishes no wheel for Python {minor}. The demo runs on {minor}; for the tests: "
                f"make test PYTHON=python{TEST_PYTHONS[-1]} (this replaces {venv_dir})")
    return None


def run(venv_dir: Path, extras: tuple[str, ...]) -> int:
    want = current_interpreter()
    refused = refusal(want.minor, extras, venv_dir)
    if refused:
        print(refused, file=sys.stderr)
        return 2
    digest = pinned_digest(REPO / "pyproject.toml")
    step = plan(want=want, have=venv_interpreter(venv_dir), stamp=read_stamp(venv_dir), digest=digest, extras=extras)
    if not step.install:
        return 0
    started = time.monotonic()
    python = venv_python(venv_dir)
    print(f"tp4: {step.reason}.", flush=True)
    if step.recreate:
        if venv_dir.exists():
            shutil.rmtree(venv_dir)
        print(f"tp4: creating {venv_dir} with Python {want.version} ({want.executable})", flush=True)
        venv.EnvBuilder(with_pip=True, symlinks=os.name != "nt").create(venv_dir)
        if subprocess.call([str(python), "-m", "pip", "install", "--upgrade", "pip"]) != 0:
            return 1
    target = "." + (f"[{','.join(step.extras)}]" if step.extras else "")
    print(f"tp4: installing {describe(step.extras)} into {venv_dir} (pip install -e '{target}'): "
          f"{cost(step)}. pip's progress follows; its longest silence is 'Installing collected packages' "
          "(2 to 3 minutes of unpacking torch and its libraries on a first install).", flush=True)
    code = subprocess.call([str(python), "-m", "pip", "install", "-e", target], cwd=REPO)
    if code != 0:
        print(f"tp4: pip failed (exit {code}, above); nothing recorded: the next make tries again.", file=sys.stderr)
        return code
    stamp = {"python": want.minor, "python_version": want.version, "executable": want.executable,
             "pins": digest, "extras": list(step.extras)}
    (venv_dir / STAMP_NAME).write_text(json.dumps(stamp, indent=2) + "\n", encoding="utf-8")
    minutes, seconds = divmod(round(time.monotonic() - started), 60)
    print(f"tp4: {venv_dir} ready in {minutes} min {seconds:02d} s, {size_on_disk(venv_dir) / 2**30:.1f} GiB on disk "
          f"(Python {want.version}; {describe(step.extras)}).", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--venv", type=Path, default=REPO / ".venv", help="the environment's folder (.venv)")
    parser.add_argument("--extra", action="append", default=[], choices=["test"],
                        help="an extra of pyproject.toml to install besides the demo set (repeatable)")
    args = parser.parse_args(argv)
    return run(args.venv, tuple(sorted(set(args.extra))))


if __name__ == "__main__":
    sys.exit(main())
