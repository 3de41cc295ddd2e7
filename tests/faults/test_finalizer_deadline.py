"""The finalizer has a deadline of its own (issue 23): `job.finalizer_deadline_seconds`, not the train Jobs'
`active_deadline_seconds`; rendered into its manifest and honoured by the local kubelet as by Kubernetes."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import yaml

import contract
from contract.grid import DEFAULT_FINALIZER_DEADLINE_S, load_grid
from controller.core.reconciling import JobPhase
from controller.local.kubelet import LocalKubelet
from controller.local.state import JobRecord
from controller.submitting import render_grid
from tests.helpers.paths import REPO

EXAMPLE = REPO / "examples" / "confirm.yaml"


def rendered_jobs(tmp_path: Path, **job: int) -> list[dict]:
    spec = yaml.safe_load(EXAMPLE.read_text())
    spec["job"] = {**(spec.get("job") or {}), **job}
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return [d for d in yaml.safe_load_all(render_grid(grid_path=path, root=REPO)) if d and d["kind"] == "Job"]


def deadlines(jobs: list[dict]) -> dict[str, set[int]]:
    found: dict[str, set[int]] = {}
    for job in jobs:
        role = job["metadata"]["labels"][contract.LABEL_ROLE]
        found.setdefault(role, set()).add(job["spec"]["activeDeadlineSeconds"])
    return found


def test_the_finalizer_s_deadline_is_its_own_setting(tmp_path: Path) -> None:
    assert load_grid(EXAMPLE, base_dir=REPO).job.finalizer_deadline_seconds == DEFAULT_FINALIZER_DEADLINE_S
    found = deadlines(rendered_jobs(tmp_path, active_deadline_seconds=600, finalizer_deadline_seconds=7200))
    assert found == {contract.ROLE_TRAIN: {600}, contract.ROLE_FINALIZE: {7200}}


def test_the_local_kubelet_stops_a_finalizer_past_its_deadline(tmp_path: Path) -> None:
    [final] = [j for j in rendered_jobs(tmp_path, active_deadline_seconds=3600, finalizer_deadline_seconds=1)
               if j["metadata"]["labels"][contract.LABEL_ROLE] == contract.ROLE_FINALIZE]
    container = final["spec"]["template"]["spec"]["containers"][0]
    container["command"], container["args"] = [sys.executable, "-c", "import time; time.sleep(120)"], []
    kubelet = LocalKubelet(root=tmp_path, logs_dir=tmp_path / "logs", threads_per_job=1)
    record = JobRecord(name=final["metadata"]["name"], grid="g", spec_hash="h", submission="s",
                       role=contract.ROLE_FINALIZE, manifest=final)
    try:
        kubelet.start(record)
        waited = time.monotonic()
        while not kubelet.poll(record):
            assert time.monotonic() - waited < 60, "the finalizer outlived its deadline"
            time.sleep(0.2)
    finally:
        kubelet.stop_all({record.name: record}, reason="test over")
        kubelet.close()
    assert record.phase is JobPhase.FAILED and record.attempts[-1].reason == "DeadlineExceeded"
