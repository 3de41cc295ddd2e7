"""A fresh clone's `make demo`, as a student runs it (issues 19 and 22): the handout's 40/10/10 data set, the
lab grid, a decision line at the end whose words agree with the report's headline and its separation
analysis, and a clean `git status` afterwards.

The clone reuses this checkout's virtual environment (a symlink, excluded in the clone's .git/info/exclude,
never committed): `make demo` would otherwise install 7 GB again. Before it runs, the test checks with the
clone's own tools/venv_setup.py that the Makefile will find that environment up to date, so that nothing
is installed into, or removed from, the shared environment. The grid trains for real: 8 points, 3 epochs.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.paths import COCO128, REPO, SHARED

pytestmark = pytest.mark.slow

VENV = REPO / ".venv"


def git(folder: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=folder, check=True, capture_output=True, text=True).stdout


def venv_setup(clone: Path):  # noqa: ANN201 (a module loaded from the clone)
    spec = importlib.util.spec_from_file_location("clone_venv_setup", clone / "tools" / "venv_setup.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    if not COCO128.is_dir():
        pytest.fail(f"the local COCO128 copy is missing at {COCO128} (set TP4_SHARED)")
    clone = tmp_path_factory.mktemp("student") / "tp4"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
    (clone / ".venv").symlink_to(VENV, target_is_directory=True)
    with (clone / ".git" / "info" / "exclude").open("a") as exclude:
        exclude.write("/.venv\n")
    setup = venv_setup(clone)
    have = setup.venv_interpreter(clone / ".venv")
    step = setup.plan(want=have, have=have, stamp=setup.read_stamp(clone / ".venv"),
                      digest=setup.pinned_digest(clone / "pyproject.toml"), extras=())
    if step.recreate or step.install:
        pytest.fail(f"{VENV} is not up to date for this clone ({step.reason}): run `make setup-test` first")
    # a student's shell: no variable of this test run's make (make test) reaches the student's make
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MLFLOW_", "TP4_", "PYTHON")) and k not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS")}
    env["TP4_SHARED"] = str(SHARED)  # the Makefile's offline copies: COCO128 and the backbone
    done = subprocess.run(["make", "--no-print-directory", "demo"], cwd=clone, env=env, capture_output=True,
                          text=True, timeout=3000)
    return clone, done


def test_the_demo_builds_the_handouts_data_set(demo: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    clone, done = demo
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    card = json.loads((clone / "data" / "tiny_coco" / "card.json").read_text())
    assert {name: split["images"] for name, split in card["splits"].items()} == {"train": 40, "val": 10, "test": 10}


def test_the_demo_ends_with_the_decision_that_its_report_gives(
        demo: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    clone, done = demo
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    last = done.stdout.rstrip().splitlines()[-1]
    decision = json.loads((clone / "reports" / "tp4-lab" / "decision.json").read_text())
    verdict, separation = decision["decision"]["verdict"], decision["separation"]
    assert last.startswith(f"decision: {verdict} — {decision['candidate']['point']} ("), last
    assert last.endswith(" — reports/tp4-lab/decision.md"), last
    report = (clone / "reports" / "tp4-lab" / "decision.md").read_text()
    headline = next(line for line in report.splitlines() if line.startswith("**Décision"))
    assert ("OUI" if verdict == "YES" else "NON") in headline
    difference = separation["difference"]
    # the headline agrees with the separation analysis: what the interval says is what the words say
    if separation["headline"] == "separated":
        assert difference["low"] > 0 or difference["high"] < 0
        assert "separated from the runner-up" in last and "sous réserve" not in headline
        assert "Les données départagent" in report
    else:
        assert separation["headline"] == "not_separated"
        assert difference is None or difference["low"] <= 0 <= difference["high"]
        assert "cannot be separated" in last and f"tie rule: {separation['tie_rule']}" in last
        assert "ne peuvent pas être départagées" in report
        if verdict == "YES":  # never a YES unqualified while the data cannot tell
            assert "sous réserve" in headline and f"`{separation['tie_rule']}`" in headline
    seeds = re.search(r"\*\*(\d+) seeds par configuration\*\*", report)
    assert separation["seeds_needed"] is None or (seeds and int(seeds.group(1)) == separation["seeds_needed"])


def test_a_fresh_clone_is_clean_after_the_demo(demo: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    clone, done = demo
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert git(clone, "status", "--porcelain") == ""
    assert "dvc push" not in done.stdout + done.stderr
