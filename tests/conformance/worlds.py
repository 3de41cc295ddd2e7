"""The two Job stores a conformance scenario runs against, behind one small face (`World`).

- `LocalWorld`: the local executor in this process (controller.local.executor.LocalExecutor), its Jobs
  real processes of the local kubelet, its state store in a project folder.
- `ClusterWorld`: the cluster reconciler (controller.cluster.reconciler.GridController) against the fake
  API server over real HTTP (tests/helpers/fake_kube.py), its mirrors listed before each reconcile; the
  fake server's Jobs are run by `FakeClusterKubelet` as real processes too, with the Job controller's
  rules (backoffLimit, the podFailurePolicy's exit code 2, activeDeadlineSeconds, a deleted Job's pod
  killed).

Both run the very manifests the driver renders, with one change made on the way into the store
(`FakeTraining`): the container runs tests/conformance/fake_job.py instead of training YOLO. Both use
one MLflow store reached through a folder link (`TrackingLink`) that a scenario can take away and
give back: the tracking server away, for the controller and the Jobs alike.
"""

from __future__ import annotations

import copy
import io
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from mlflow.tracking import MlflowClient
from rich.console import Console

import contract
from contract.grid import parse_grid
from controller.cluster.informer import Mirror
from controller.cluster.jobs import job_phase, slim
from controller.cluster.kube import GRIDS, JOBS, label_selector
from controller.cluster.reconciler import GridController
from controller.cluster.resource import grid_object
from controller.core.expanding import expand
from controller.core.reconciling import Conflict, ObservedJob
from controller.driving import JobStore
from controller.local.executor import LocalExecutor, LocalRun, default_parallelism
from controller.local.kubelet import fail_job_exit_codes, process_command
from controller.progress import ProgressView
from tests.conformance.fake_job import SCRIPT_ENV
from tests.helpers.cluster_harness import connect, settings
from tests.helpers.fake_kube import FakeKube
from tests.helpers.paths import REPO

MD5 = "c56034fdae7ce88dc7ada7678b985028.dir"
STEP_SECONDS = 0.2  # between two steps of a world (the local executor polls every 0.5 s)


def fake_command(manifest: dict[str, Any], role: str) -> dict[str, Any]:
    """The manifest with its container running fake_job (the same env, labels, limits and policies)."""
    changed = copy.deepcopy(manifest)
    container = changed["spec"]["template"]["spec"]["containers"][0]
    container["command"] = ["python", "-m", "tests.conformance.fake_job", role]
    container["args"] = []
    return changed


class FakeTraining:
    """A Job store whose Jobs run fake_job: creates go to `store` with the command changed, the rest as is."""

    def __init__(self, store: JobStore) -> None:
        self.store = store

    def observe(self, names: Iterable[str]) -> dict[str, ObservedJob]:
        return self.store.observe(names)

    def create(self, name: str, manifest: dict[str, Any], *, role: str, spec_hash: str,
               submission: str) -> Conflict | None:
        return self.store.create(name, fake_command(manifest, role), role=role, spec_hash=spec_hash,
                                 submission=submission)

    def delete(self, name: str, *, reason: str) -> None:
        self.store.delete(name, reason=reason)

    def cut_deadline(self, name: str) -> None:
        self.store.cut_deadline(name)


class TrackingLink:
    """One SQLite MLflow store, reached as `<folder>/link/mlflow.db` where `link` is a symbolic link to the
    store's folder: `away()` removes the link (every open fails, as a server that is down), `back()`
    restores it. MLflow's SQLAlchemy store opens a connection per session (NullPool) for this."""

    def __init__(self, folder: Path, *, template: Path | None = None) -> None:
        """`template`: an empty store's file to start from (its tables already created: migrating a new
        store costs seconds)."""
        self.store = folder / "store"
        self.store.mkdir(parents=True)
        if template is not None:
            shutil.copyfile(template, self.store / "mlflow.db")
        self.link = folder / "link"
        self.back()
        self.uri = f"sqlite:///{self.link / 'mlflow.db'}"

    def away(self) -> None:
        self.link.unlink()

    def back(self) -> None:
        if not self.link.exists():
            self.link.symlink_to(self.store, target_is_directory=True)


class World(Protocol):
    name: str
    mlflow: MlflowClient

    def submit(self, spec: dict[str, Any]) -> None: ...
    def step(self) -> None: ...
    def status(self) -> tuple[str, str]: ...
    def ended(self) -> bool: ...
    def job_names(self) -> list[str]: ...
    def job_running(self, name: str) -> bool: ...
    def delete_job(self, name: str) -> None: ...
    def restart(self) -> None: ...
    def close(self) -> None: ...


def run_until(world: World, predicate: Callable[[], Any], *, seconds: float = 60.0, what: str = "") -> Any:
    """Step `world` until `predicate()` is true; its value."""
    deadline = time.monotonic() + seconds
    while True:
        world.step()
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"{world.name}: {what or 'condition'} not met in {seconds} s: " \
                                            f"{world.status()}"
        time.sleep(STEP_SECONDS)


class LocalWorld:
    """The local executor, stepped by the scenario (what run_grid_locally's loop does, in this process)."""

    name = "local"

    def __init__(self, folder: Path, tracking: TrackingLink) -> None:
        self.root = folder / "project"
        self.root.mkdir()
        self.uri = tracking.uri
        self.mlflow = MlflowClient(tracking.uri)
        self.executor: LocalExecutor | None = None
        self.phase: str | None = None  # once the submission ended
        self.up_to_date = False
        self.spec: dict[str, Any] = {}

    def submit(self, spec: dict[str, Any]) -> None:
        self.close()
        self.spec = copy.deepcopy(spec)
        grid = parse_grid(copy.deepcopy(spec), source="grid.yaml", base_dir=None)
        md5 = str(grid.dataset_md5)
        points = expand(grid, dataset_md5=md5)
        run = LocalRun(grid=grid, points=points, dataset_md5=md5, root=self.root,
                       parallelism=default_parallelism(grid, None))
        view = ProgressView(points=[p.name for p in points], metric=contract.METRIC_MAP50_95,
                            console=Console(file=io.StringIO()))
        executor = LocalExecutor(run, uri=self.uri, view=view)
        executor.jobs = FakeTraining(executor.store)
        self.executor, self.phase = executor, None
        executor.check_experiment()
        executor.recover()
        self.up_to_date = executor.up_to_date()
        if self.up_to_date:
            self.phase = "Succeeded"
            return
        executor.begin()

    def step(self) -> None:
        if self.executor is not None and self.phase is None:
            ended = self.executor.advance()
            self.phase = ended.value if ended is not None else None

    def status(self) -> tuple[str, str]:
        assert self.executor is not None
        return self.executor.state.phase, self.executor.state.message

    def ended(self) -> bool:
        return self.phase is not None

    def job_names(self) -> list[str]:
        return sorted(self.executor.state.jobs) if self.executor else []

    def job_running(self, name: str) -> bool:
        return self.executor is not None and name in self.executor.kubelet.processes

    def delete_job(self, name: str) -> None:
        """A person deletes the Job (kubectl delete job): its process stopped, its record gone."""
        assert self.executor is not None
        self.executor.store.delete(name, reason="deleted by a person")
        self.executor.save()

    def restart(self) -> None:
        """The controller process dies and a new one starts on the same grid: the new one finds the
        attempts the dead one left, stops them (never two trainings of one point) and runs the grid on."""
        assert self.executor is not None
        self.executor.kubelet.close()
        self.executor.kubelet.processes.clear()  # the dead controller's children, now no one's
        self.submit(self.spec)

    def close(self) -> None:
        if self.executor is not None:
            self.executor.kubelet.stop_all(self.executor.state.jobs, reason="Interrupted")
            self.executor.kubelet.close()


class FakeClusterKubelet:
    """The Job controller and kubelet of the fake API server: each Job's pod is a real process running
    the Job's container command with its env (the tracking URI the manifest names)."""

    def __init__(self, kube: FakeKube, *, extra_env: dict[str, str]) -> None:
        self.kube, self.extra_env = kube, extra_env
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.uids: dict[str, str] = {}

    def run(self) -> None:
        jobs = {j["metadata"]["name"]: j for j in self.kube.all("jobs")}
        for name in list(self.processes):  # a deleted Job's pod goes with it
            if name not in jobs or jobs[name]["metadata"]["uid"] != self.uids[name]:
                self._kill(name)
        for name, job in jobs.items():
            process = self.processes.get(name)
            if process is None:
                if job_phase(job).terminal or (job.get("status") or {}).get("active"):
                    continue
                self._start(job)
                continue
            deadline = job["spec"].get("activeDeadlineSeconds")
            started = (job.get("status") or {}).get("startTime")
            if deadline and started and process.poll() is None and \
                    time.time() - datetime.strptime(started, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp() \
                    > deadline:
                self._kill(name)
                self.kube.finish_job(name, succeeded=False, reason="DeadlineExceeded")
                continue
            code = process.poll()
            if code is None:
                continue
            del self.processes[name]
            failed = int((job.get("status") or {}).get("failed") or 0)
            if code == 0:
                self.kube.finish_job(name)
            elif code in fail_job_exit_codes(job):
                self.kube.finish_job(name, succeeded=False, reason="PodFailurePolicy")
            elif failed + 1 <= job["spec"].get("backoffLimit", 6):
                self.kube.finish_job(name, succeeded=False, retry=True)  # and a new pod
                self._start(self.kube.find("jobs", name) or job, pod=False)
            else:
                self.kube.finish_job(name, succeeded=False, reason="BackoffLimitExceeded")

    def _start(self, job: dict[str, Any], *, pod: bool = True) -> None:
        name = job["metadata"]["name"]
        if pod:
            self.kube.start_job(name)
        status = job.get("status") or {}
        attempt = int(status.get("failed") or 0) + int(status.get("succeeded") or 0) + 1
        container = job["spec"]["template"]["spec"]["containers"][0]
        env = {**os.environ, **{e["name"]: e["value"] for e in container.get("env", []) if "value" in e},
               **self.extra_env, contract.ENV_ATTEMPT: str(attempt)}
        self.processes[name] = subprocess.Popen(process_command(job), env=env, cwd=REPO, stdout=subprocess.DEVNULL,
                                                stderr=subprocess.DEVNULL)
        self.uids[name] = job["metadata"]["uid"]

    def _kill(self, name: str) -> None:
        process = self.processes.pop(name)
        process.kill()
        process.wait()

    def close(self) -> None:
        for name in list(self.processes):
            self._kill(name)


class ClusterWorld:
    """`python -m controller run`'s reconciler against the fake API server, one reconcile per step."""

    name = "cluster"

    def __init__(self, folder: Path, tracking: TrackingLink, kube: FakeKube) -> None:
        self.kube, self.root, self.uri = kube, folder, tracking.uri
        self.mlflow = MlflowClient(tracking.uri)
        self.settings = replace(settings(tracking.uri), jobs_tracking_uri=tracking.uri)
        self.kubelet = FakeClusterKubelet(kube, extra_env={"PYTHONPATH": str(REPO)})
        self.grid = ""
        self.start_controller()

    def start_controller(self) -> None:
        api = connect(self.kube)
        self.api = api
        self.grids = Mirror(api, resource=GRIDS, on_change=lambda old, new: None)
        self.jobs = Mirror(api, resource=JOBS, label_selector=label_selector({contract.LABEL_GRID: None}), keep=slim,
                           on_change=lambda old, new: None)
        controller = GridController(api=api, grids=self.grids, jobs=self.jobs, mlflow=self.mlflow,
                                    settings=self.settings, root=self.root)
        plain = controller.job_store
        controller.job_store = lambda grid: FakeTraining(plain(grid))  # type: ignore[method-assign]
        self.controller = controller

    def submit(self, spec: dict[str, Any]) -> None:
        """`submit-grid`: the Grid created, or its spec replaced, with a new submitted-at annotation."""
        self.grid = spec["name"]
        current = self.kube.find("grids", self.grid)
        if current is not None:
            time.sleep(1.05)  # RFC 3339 to the second: a resubmission is later than the submission it follows
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = grid_object(spec=copy.deepcopy(spec), namespace="default", submitted_at=stamp)
        if current is None:
            self.api.create(GRIDS, body)
        else:
            body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            self.api.replace(GRIDS, body)

    def step(self) -> None:
        self.kubelet.run()
        self.grids.relist()
        self.jobs.relist()
        self.controller.reconcile(self.grid)

    def _status(self) -> dict[str, Any]:
        return (self.kube.find("grids", self.grid) or {}).get("status") or {}

    def status(self) -> tuple[str, str]:
        status = self._status()
        message = next((c["message"] for c in status.get("conditions", []) if c["type"] == "Progressing"), "")
        return status.get("phase", ""), message

    def ended(self) -> bool:
        return self.status()[0] in ("Succeeded", "Failed") and not self.kubelet.processes

    def job_names(self) -> list[str]:
        return sorted(j["metadata"]["name"] for j in self.kube.all("jobs")
                      if j["metadata"]["labels"].get(contract.LABEL_GRID) == self.grid)

    def job_running(self, name: str) -> bool:
        return name in self.kubelet.processes

    def delete_job(self, name: str) -> None:
        """A person deletes the Job (kubectl delete job): the API server removes it, its pod goes."""
        self.kube.remove("jobs", "default", name)

    def restart(self) -> None:
        """The controller's pod is replaced: a new process, new mirrors, nothing remembered; the Jobs run on."""
        self.start_controller()

    def close(self) -> None:
        self.kubelet.close()


__all__ = ["MD5", "SCRIPT_ENV", "ClusterWorld", "LocalWorld", "TrackingLink", "World", "run_until"]
