"""The committed dvc.lock is what `dvc repro` would write for the code in the tree (issue 22: a fresh clone's
`make data` rewrote the `tinycoco` dependency's md5 in dvc.lock and left `git status` dirty).

DVC computes each stage's lock entry itself (`Stage.save_deps`, then `dvc.stage.serialize.to_lockfile`, what
`dvc repro` writes), on a copy of the files a fresh clone has; no command runs and nothing is fetched.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.helpers.paths import REPO

_DVC_FILES = ("dvc.yaml", "dvc.lock", ".dvcignore", ".dvc")


def fresh_copy(tmp: Path) -> Path:
    """The files of the DVC project and of every stage dependency as a fresh clone has them (git's view:
    tracked, and untracked but not ignored), in `tmp/project`."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    deps = sorted({str(dep) for stage in stages.values() for dep in stage.get("deps", [])})
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", *_DVC_FILES, *deps],
        cwd=REPO, check=True, capture_output=True,
    ).stdout.decode().split("\0")
    project = tmp / "project"
    for relative in filter(None, listed):
        if (REPO / relative).is_file():
            (project / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / relative, project / relative)
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    return project


def lock_as_dvc_computes_it(project: Path) -> dict[str, Any]:
    """stage name -> the dvc.lock entry `dvc repro` would write for it now (cmd, deps with md5, size, nfiles)."""
    from dvc.repo import Repo
    from dvc.stage.serialize import to_lockfile

    entries: dict[str, Any] = {}
    with Repo(str(project)) as repo:
        for stage in repo.index.stages:
            if stage.cmd is None:  # a .dvc file (data/tiny_coco.dvc): not in dvc.lock
                continue
            stage.save_deps()
            entries |= to_lockfile(stage)
    return entries


def lock_drift(project: Path) -> list[str]:
    """What differs between `project`'s dvc.lock and what DVC computes: one line per stage and field."""
    recorded = (yaml.safe_load((project / "dvc.lock").read_text()) or {}).get("stages", {})
    computed = lock_as_dvc_computes_it(project)
    drift = []
    for name in sorted(recorded.keys() | computed.keys()):
        was, now = recorded.get(name, {}), computed.get(name, {})
        for field in sorted(was.keys() | now.keys()):
            if was.get(field) != now.get(field):
                drift.append(f"stage {name}, {field}: dvc.lock has {was.get(field)!r}, "
                             f"the tree gives {now.get(field)!r}")
    return drift


def test_the_committed_lock_matches_the_code_it_hashes(tmp_path: Path) -> None:
    drift = lock_drift(fresh_copy(tmp_path))
    assert drift == [], (
        "dvc.lock is stale; rebuild with the venv on PATH: "
        "TP4_COCO128_SOURCE=../shared/datasets/coco128 dvc repro, then commit dvc.lock\n" + "\n".join(drift)
    )


def test_a_change_to_the_builder_or_its_command_is_caught(tmp_path: Path) -> None:
    project = fresh_copy(tmp_path)
    with (project / "tinycoco" / "errors.py").open("a") as file:
        file.write("# a change the lock does not know\n")
    assert [line.split(":")[0] for line in lock_drift(project)] == ["stage tiny_coco, deps"]

    dvc_yaml = project / "dvc.yaml"
    dvc_yaml.write_text(dvc_yaml.read_text().replace("--seed ", "--seed 1"))
    assert [line.split(":")[0] for line in lock_drift(project)] == ["stage tiny_coco, cmd", "stage tiny_coco, deps"]
