"""The install a student follows: the Pythons the pinned set resolves for, the Makefile's interpreter
finding and its help, the environment's rebuild rules (tools/venv_setup.py).

The resolution tests ask PyPI (uv's resolver, nothing installed: pip cannot resolve for another Python
while a dependency, antlr4-python3-runtime, publishes only an sdist). The Makefile tests run the real
`make` with a PATH of the test's own and never build an environment (`make -n`, `make help`).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import requests
from packaging.specifiers import SpecifierSet

from tests.helpers.paths import REPO

PYPI = "https://pypi.org/simple"
UV = Path(sys.executable).parent / "uv"
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
# Where a student's laptop is: Linux x86_64 (as CI), Windows x86_64, macOS on Apple silicon (torch 2.14
# publishes macOS wheels for arm64 and macOS 14 only).
PLATFORMS = {"linux": ("x86_64-manylinux_2_28", {}),
             "windows": ("x86_64-pc-windows-msvc", {}),
             "macos": ("aarch64-apple-darwin", {"MACOSX_DEPLOYMENT_TARGET": "14.0"})}
CANDIDATE_MINORS = [f"3.{minor}" for minor in range(8, 16)]


def load_venv_setup() -> ModuleType:
    spec = importlib.util.spec_from_file_location("venv_setup", REPO / "tools" / "venv_setup.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["venv_setup"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


venv_setup = load_venv_setup()


def supported_pythons() -> list[str]:
    """The minor versions requires-python admits, among 3.8 to 3.15."""
    spec = SpecifierSet(PROJECT["requires-python"])
    return [minor for minor in CANDIDATE_MINORS if f"{minor}.0" in spec]


def make_variable(name: str) -> str:
    """A variable of the Makefile as make expands it (no target run)."""
    done = subprocess.run(["make", "-s", "--no-print-directory", f"--eval=print-var: ; @echo $({name})", "print-var"],
                          cwd=REPO, capture_output=True, text=True, timeout=60, check=True)
    return done.stdout.strip()


@pytest.fixture(scope="module")
def pypi() -> str:
    try:
        requests.head(f"{PYPI}/pip/", timeout=15).raise_for_status()
    except requests.RequestException as error:
        pytest.skip(f"PyPI is unreachable from here ({error}): the pinned set cannot be resolved")
    return PYPI


DEMO_SET = tuple(PROJECT["dependencies"])
TEST_SET = DEMO_SET + tuple(PROJECT["optional-dependencies"]["test"])
# (install set, Python, platform): the demo set everywhere a student may be, the test set where make test runs.
Case = tuple[tuple[str, ...], str, str]
CASES: list[Case] = [(DEMO_SET, python, platform)
                     for python in supported_pythons() for platform in sorted(PLATFORMS)] + [
    (TEST_SET, python, "linux") for python in venv_setup.TEST_PYTHONS]


def resolve(requirements: tuple[str, ...], python: str, platform: str, index: str,
            folder: Path) -> subprocess.CompletedProcess[str]:
    """`uv pip compile` of `requirements` for CPython `python` on `platform` (a key of PLATFORMS) against
    `index` only (uv's own cache; nothing installed); the resolved set on stdout, uv's reasons on stderr."""
    target, extra_env = PLATFORMS[platform]
    requirements_in = folder / f"{len(requirements)}-{platform}-{python}.in"
    requirements_in.write_text("\n".join(requirements) + "\n")
    env = {key: value for key, value in os.environ.items() if not key.startswith("UV_")}
    return subprocess.run([str(UV), "pip", "compile", "--quiet", "--no-config", "--no-header", "--default-index", index,
                           "--python-version", python, "--python-platform", target, str(requirements_in)],
                          env={**env, **extra_env}, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def resolved(pypi: str, tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[int, str, str], str]:
    """Every case of CASES resolved, four at a time (each takes 3 to 20 s, mostly waiting on the index):
    (size of the set, Python, platform) -> the resolved set; fails with uv's explanation for any that
    does not resolve."""
    folder = tmp_path_factory.mktemp("resolve")
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = pool.map(lambda case: resolve(case[0], case[1], case[2], pypi, folder), CASES)
        done = dict(zip(CASES, results, strict=True))
    failed = [f"{'test' if reqs is TEST_SET else 'demo'} set, Python {python} on {platform}:\n{result.stderr}"
              for (reqs, python, platform), result in done.items() if result.returncode != 0]
    assert not failed, "the pinned set does not resolve for\n" + "\n".join(failed)
    return {(len(reqs), python, platform): result.stdout for (reqs, python, platform), result in done.items()}


def test_requires_python_names_the_three_supported_versions_and_the_makefile_agrees() -> None:
    assert supported_pythons() == ["3.11", "3.12", "3.13"]
    assert make_variable("SUPPORTED_PYTHONS").split() == supported_pythons()
    assert set(venv_setup.TEST_PYTHONS) <= set(supported_pythons())


def pinned_lines(requirements: tuple[str, ...]) -> set[str]:
    """`name==version` of each pin, lower case, extras dropped (as uv writes the resolved set)."""
    return {re.sub(r"\[.*\]", "", pin).lower() for pin in requirements}


@pytest.mark.parametrize("platform", sorted(PLATFORMS))
@pytest.mark.parametrize("python", supported_pythons())
def test_the_demo_set_resolves_for_every_supported_python(python: str, platform: str,
                                                           resolved: dict[tuple[int, str, str], str]) -> None:
    lines = {line.split()[0].lower() for line in resolved[len(DEMO_SET), python, platform].splitlines()
             if line and not line.startswith(" ")}
    assert pinned_lines(DEMO_SET) <= lines


@pytest.mark.parametrize("python", venv_setup.TEST_PYTHONS)
def test_the_test_set_resolves_for_the_pythons_make_test_accepts(python: str,
                                                                 resolved: dict[tuple[int, str, str], str]) -> None:
    lines = {line.split()[0].lower() for line in resolved[len(TEST_SET), python, "linux"].splitlines()
             if line and not line.startswith(" ")}
    assert pinned_lines(TEST_SET) <= lines


# --- the Makefile: interpreter finding and help, with a PATH of the test's own ---------------------------


TOOLS = ("make", "grep", "awk", "sed", "basename", "dirname", "cat", "env", "tr", "uname")  # what the recipes call


def fake_path(folder: Path, **programs: str) -> str:
    """A PATH holding the usual tools (no Python) and `programs` (name -> shell script body, or `@/path`
    for a symlink) only."""
    folder.mkdir(parents=True, exist_ok=True)
    for tool in TOOLS:
        found = shutil.which(tool)
        assert found is not None, tool
        (folder / tool).symlink_to(found)
    for name, body in programs.items():
        if body.startswith("@"):
            (folder / name).symlink_to(body[1:])
        else:
            (folder / name).write_text(f"#!/bin/sh\n{body}\n")
            (folder / name).chmod(0o755)
    return str(folder)


def run_make(*args: str, path: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """`make args` in the project with `path` as PATH, PYTHON unset, and an environment folder that does
    not exist (so the project's own .venv is no candidate)."""
    env = {key: value for key, value in os.environ.items() if key not in {"PYTHON", "PORT", "UI_PORT", "MAKEFLAGS"}}
    env["PATH"] = path
    return subprocess.run(["make", "--no-print-directory", f"VENV={tmp_path / 'no-venv'}", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)


def test_without_a_suitable_python_make_demo_says_which_versions_and_how_to_get_one(tmp_path: Path) -> None:
    shim = 'echo "pyenv: $(basename "$0"): command not found" >&2; exit 127'  # a pyenv shim of a missing version
    path = fake_path(tmp_path / "bin", python3="exit 1", **{"python3.12": shim})
    done = run_make("-n", "demo", path=path, tmp_path=tmp_path)
    assert done.returncode == 2
    output = done.stdout + done.stderr
    assert "tp4 needs Python 3.11, 3.12 or 3.13, and none was found" in output
    for way in ("pyenv install", "apt install", "brew install", "python.org", "PYTHON="):
        assert way in output
    assert "command not found" not in output and "Error 127" not in output
    assert output.count("tp4 needs Python") == 1
    assert not (tmp_path / "no-venv").exists()


def test_an_unsuitable_python_named_by_the_user_is_refused_by_name(tmp_path: Path) -> None:
    path = fake_path(tmp_path / "bin", python3="exit 1")
    done = run_make("-n", "demo", "PYTHON=python3.9", path=path, tmp_path=tmp_path)
    assert done.returncode == 2
    assert "tp4 needs Python 3.11, 3.12 or 3.13, and PYTHON=python3.9 does not run" in done.stdout + done.stderr


def test_a_broken_shim_is_skipped_and_the_first_working_candidate_is_used(tmp_path: Path) -> None:
    shim = 'echo "pyenv: python3.11: command not found" >&2; exit 127'
    path = fake_path(tmp_path / "bin", **{"python3.11": shim, "python3.12": f"@{sys.executable}"})
    done = run_make("help", path=path, tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr
    line = next(line for line in done.stdout.splitlines() if line.split()[:1] == ["PYTHON"])
    assert line.split()[1] == "python3.12"
    assert "(Python 3.1" in line
    planned = run_make("-n", "demo", path=path, tmp_path=tmp_path)
    assert planned.returncode == 0, planned.stderr
    assert f'"python3.12" tools/venv_setup.py --venv {tmp_path / "no-venv"}' in planned.stdout


def test_help_shows_the_values_and_names_the_variables(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    (shared / "datasets" / "coco128").mkdir(parents=True)
    (shared / "weights").mkdir()
    (shared / "weights" / "yolov5nu-coco-backbone.pt").write_bytes(b"")
    env = {key: value for key, value in os.environ.items() if key not in {"PYTHON", "SHARED", "COCO128", "WEIGHTS"}}
    done = subprocess.run(["make", "--no-print-directory", "help"], cwd=REPO, capture_output=True, text=True,
                          env={**env, "TP4_SHARED": str(shared)}, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "$(" not in done.stdout
    values = {line.split()[0]: line.split(maxsplit=1)[1] for line in done.stdout.split("Variables")[1].splitlines()[1:]
              if line.strip()}
    assert {"PYTHON", "GRID", "WEIGHTS", "COCO128", "UI_PORT"} <= set(values)
    assert values["COCO128"] == str(shared / "datasets" / "coco128")
    assert values["WEIGHTS"] == str(shared / "weights" / "yolov5nu-coco-backbone.pt")
    assert values["GRID"] == "grid.yaml"
    assert values["UI_PORT"].split()[0] == "5000"


def test_make_ui_takes_port_as_an_alias_and_refuses_two_different_ports(tmp_path: Path) -> None:
    path = fake_path(tmp_path / "bin", **{"python3.11": f"@{sys.executable}"})
    alias = run_make("-n", "ui", "PORT=5001", path=path, tmp_path=tmp_path)
    assert alias.returncode == 0, alias.stderr
    assert "-m controller ui --port 5001" in alias.stdout
    clash = run_make("-n", "ui", "PORT=5001", "UI_PORT=5002", path=path, tmp_path=tmp_path)
    assert clash.returncode == 2
    assert "PORT=5001 and UI_PORT=5002 disagree" in clash.stderr


# --- tools/venv_setup.py: when the environment is rebuilt, updated or left alone (no environment made) -----


def interpreter(minor: str = "3.11", executable: str = "/opt/python3.11/bin/python3.11", patch: str = "7") -> Any:
    return venv_setup.Interpreter(minor=minor, version=f"{minor}.{patch}", executable=executable)


def stamp_of(interp: Any, digest: str = "d1", extras: tuple[str, ...] = ()) -> dict[str, object]:
    return {"python": interp.minor, "python_version": interp.version, "executable": interp.executable,
            "pins": digest, "extras": list(extras)}


def test_an_environment_made_by_another_python_is_replaced() -> None:
    want = interpreter("3.11")
    have = interpreter("3.12", "/opt/python3.12/bin/python3.12")
    step = venv_setup.plan(want=want, have=have, stamp=stamp_of(have), digest="d1", extras=())
    assert (step.recreate, step.install) == (True, True)
    assert "made by Python 3.12.7" in step.reason


def test_no_usable_environment_is_made_and_an_interrupted_install_is_redone() -> None:
    want = interpreter()
    assert venv_setup.plan(want=want, have=None, stamp=None, digest="d1", extras=()).recreate
    resumed = venv_setup.plan(want=want, have=want, stamp=None, digest="d1", extras=())
    assert (resumed.recreate, resumed.install) == (False, True)


def test_a_changed_pinned_set_reinstalls_what_was_there_without_rebuilding() -> None:
    want = interpreter()
    step = venv_setup.plan(want=want, have=want, stamp=stamp_of(want, "old", ("test",)), digest="new", extras=())
    assert (step.recreate, step.install, step.extras) == (False, True, ("test",))


def test_the_test_tools_are_added_and_an_up_to_date_environment_is_left_alone() -> None:
    want = interpreter()
    added = venv_setup.plan(want=want, have=want, stamp=stamp_of(want), digest="d1", extras=("test",))
    assert (added.recreate, added.install, added.extras) == (False, True, ("test",))
    demo_after_test = venv_setup.plan(want=want, have=want, stamp=stamp_of(want, extras=("test",)), digest="d1",
                                      extras=())
    assert not demo_after_test.install
    patch_release = venv_setup.plan(want=interpreter(patch="9"), have=want, stamp=stamp_of(want), digest="d1",
                                    extras=())
    assert not patch_release.install


def test_the_stamp_and_pyvenv_cfg_are_read_as_written(tmp_path: Path) -> None:
    folder = tmp_path / "env"
    (folder / "bin").mkdir(parents=True)
    (folder / "bin" / "python").symlink_to(sys.executable)
    (folder / "pyvenv.cfg").write_text(f"home = /x\nversion = 3.12.1\nexecutable = {sys.executable}\n")
    assert venv_setup.venv_interpreter(folder) == venv_setup.Interpreter("3.12", "3.12.1", os.path.realpath(
        sys.executable))
    (folder / ".installed").write_text("")  # what the Makefile before the stamp wrote
    assert venv_setup.read_stamp(folder) is None
    (folder / "bin" / "python").unlink()
    (folder / "bin" / "python").symlink_to(tmp_path / "gone")
    assert venv_setup.venv_interpreter(folder) is None


def test_the_pinned_digest_follows_the_pins(tmp_path: Path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\nname = "x"\nrequires-python = ">=3.11"\ndependencies = ["a==1"]\n')
    before = venv_setup.pinned_digest(pyproject)
    pyproject.write_text('[project]\nname = "x"\nrequires-python = ">=3.11"\ndependencies = ["a==2"]\n')
    assert venv_setup.pinned_digest(pyproject) != before


def test_the_test_tools_are_refused_on_a_python_they_publish_no_wheels_for() -> None:
    message = venv_setup.refusal("3.13", ("test",), Path(".venv"))
    assert message is not None and "pgserver 0.1.4" in message and "make test PYTHON=python3.12" in message
    assert venv_setup.refusal("3.13", (), Path(".venv")) is None
    assert all(venv_setup.refusal(minor, ("test",), Path(".venv")) is None for minor in venv_setup.TEST_PYTHONS)
