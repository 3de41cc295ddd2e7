"""`python -m controller run`: the reconcile loop, the same in the chart's Deployment and on a laptop.

Level-triggered: two watches (Grids; Jobs labelled with a grid) only say
*which* grid to look at; each reconcile reads the whole current state from
the mirrors and decides from it alone. Every grid is also reconciled every
`resync_seconds`, so nothing depends on an event being seen. Nothing is
reconciled before both mirrors have listed once (a restarted controller
sees every existing Job before it creates any). A failed reconcile is
retried with a per-grid backoff.

Only the holder of the Lease `tp4-controller` (controller/cluster/leader.py)
watches and acts; another `controller run` in the same namespace stands by
until the Lease is released or expires. At start and at every resync the
orphan sweep (controller/cluster/orphans.py) closes the MLflow runs of
submissions whose Grid is gone. Logs are JSON lines (controller/cluster/logs.py);
/healthz and /readyz (controller/cluster/health.py) serve the chart's probes.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

import contract
from controller.cluster.health import Health
from controller.cluster.informer import Mirror
from controller.cluster.jobs import slim
from controller.cluster.kube import GRIDS, JOBS, UNREACHABLE, Kube, label_selector
from controller.cluster.leader import LeaderElection
from controller.cluster.orphans import sweep
from controller.cluster.reconciler import GridController
from controller.cluster.settings import ClusterSettings

log = logging.getLogger(__name__)
RESYNC_SECONDS = 60.0
SYNC_TIMEOUT_SECONDS = 120.0
MAX_RETRY_SECONDS = 60.0


@dataclass
class WorkQueue:
    """Grid names to reconcile: each at most once in the queue, some not before a given time."""

    due: dict[str, float] = field(default_factory=dict)
    changed: threading.Condition = field(default_factory=threading.Condition)

    def add(self, name: str, *, delay: float = 0.0) -> None:
        with self.changed:
            when = time.monotonic() + delay
            self.due[name] = min(self.due.get(name, when), when)
            self.changed.notify()

    def take(self, *, timeout: float) -> str | None:
        """The next name due, waiting at most `timeout` seconds for one."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                now = time.monotonic()
                ready = [n for n, when in self.due.items() if when <= now]
                if ready:
                    name = min(ready, key=self.due.__getitem__)
                    del self.due[name]
                    return name
                wait = min([deadline] + list(self.due.values())) - now
                if now >= deadline:
                    return None
                self.changed.wait(max(0.01, wait))


def grids_of_job(old: dict[str, Any] | None, new: dict[str, Any] | None) -> set[str]:
    return {obj["metadata"].get("labels", {}).get(contract.LABEL_GRID, "") for obj in (old, new) if obj} - {""}


class ClusterController:
    """The lease, the mirrors, the queue and the reconciler, wired together."""

    def __init__(self, *, api: Kube, mlflow: MlflowClient, settings: ClusterSettings, root: Path,
                 resync_seconds: float = RESYNC_SECONDS, watch_seconds: int = 300,
                 election: LeaderElection | None = None, health: Health | None = None) -> None:
        self.api, self.mlflow = api, mlflow
        self.queue = WorkQueue()
        # one client for all: its urllib3 pool gives each watch stream a connection of its own
        self.grids = Mirror(api, resource=GRIDS, on_change=self.grid_changed, watch_seconds=watch_seconds)
        # of each Job only what the reconciler reads (controller/cluster/jobs.py, slim)
        self.jobs = Mirror(api, resource=JOBS, label_selector=label_selector({contract.LABEL_GRID: None}),
                           on_change=self.job_changed, watch_seconds=watch_seconds, keep=slim)
        self.reconciler = GridController(api=api, grids=self.grids, jobs=self.jobs, mlflow=mlflow,
                                         settings=settings, root=root)
        self.reconciler.requeue = lambda name, delay: self.queue.add(name, delay=delay)
        self.election = election or LeaderElection(api)
        self.health = health or Health()
        self.resync_seconds = resync_seconds
        self.failures: dict[str, int] = {}
        self.reconciles = 0
        self.swept: list[str] = []
        self.halted = threading.Event()  # set when this process stops acting (stopped, or the Lease lost)

    def grid_changed(self, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        if self.halted.is_set():
            return  # a watch event that arrives after the stop: another controller may be acting already
        if new is not None:
            self.queue.add(new["metadata"]["name"])
        elif old is not None:
            try:
                self.reconciler.grid_deleted(old)
            except Exception as error:  # in the watch's thread: it must go on (the next sweep closes the runs)
                log.warning("grid deleted; its runs not ended yet",
                            extra={"grid": old["metadata"]["name"], "error": f"{type(error).__name__}: {error}"})

    def job_changed(self, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        for grid in grids_of_job(old, new):
            self.queue.add(grid)

    def start(self, *, stop: threading.Event) -> None:
        for mirror in (self.grids, self.jobs):
            threading.Thread(target=mirror.run, kwargs={"stop": stop}, daemon=True,
                             name=f"watch-{mirror.resource.plural}").start()
        for mirror in (self.grids, self.jobs):
            if not mirror.synced.wait(SYNC_TIMEOUT_SECONDS):
                raise TimeoutError(f"could not list {mirror.resource.plural} within {SYNC_TIMEOUT_SECONDS:g} s")

    def reconcile(self, name: str) -> None:
        try:
            self.reconciler.reconcile(name)
            self.failures.pop(name, None)
        except Exception as error:  # one grid's trouble never stops the others: retried with a backoff
            failures = self.failures[name] = self.failures.get(name, 0) + 1
            delay = min(MAX_RETRY_SECONDS, 0.5 * 2 ** failures)
            expected = isinstance(error, (*UNREACHABLE, MlflowException, OSError))
            log.warning("reconcile failed; retrying", exc_info=not expected,
                        extra={"grid": name, "error": f"{type(error).__name__}: {error}", "retry_s": delay})
            self.reconciler.experiments.clear()
            self.queue.add(name, delay=delay)
        self.reconciles += 1

    def sweep(self) -> None:
        """Close the runs of submissions whose Grid is gone (controller/cluster/orphans.py)."""
        try:
            self.swept += sweep(self.mlflow, namespace=self.api.namespace, grids=self.grids.snapshot())
        except (MlflowException, OSError) as error:  # tried again at the next resync
            log.warning("orphan sweep failed", extra={"error": f"{type(error).__name__}: {error}"})

    def run(self, *, stop: threading.Event) -> int:
        """Wait for the lease, then reconcile until `stop` (0) or until the lease is lost (1: the
        process must end, another controller may be acting already)."""
        self.health.beat("standby")
        if not self.election.acquire(stop=stop, beat=self.health.beat):
            self.health.beat("stopped")
            return 0
        halt = self.halted  # the watches and the loop stop on `stop` or when the lease is lost
        halt.clear()
        threading.Thread(target=_link, args=(stop, halt), daemon=True, name="stop-link").start()
        self.election.keep(stop=halt, on_lost=halt.set)
        try:
            self.health.beat("syncing")
            self.start(stop=halt)
            self.health.beat("leading")
            log.info("watching grids and jobs", extra={"namespace": self.api.namespace,
                                                       "holder": self.election.holder})
            next_resync = 0.0
            while not stop.is_set() and not halt.is_set():
                self.health.beat()
                if time.monotonic() >= next_resync:
                    self.sweep()  # at start, then with every resync of all grids
                    for name in self.grids.snapshot():
                        self.queue.add(name)
                    next_resync = time.monotonic() + self.resync_seconds
                due = self.queue.take(timeout=min(1.0, max(0.0, next_resync - time.monotonic())))
                if due is not None and not self.election.lost.is_set():
                    self.reconcile(due)
        finally:
            halt.set()
            self.election.release()
            self.health.beat("stopped")
        return 1 if self.election.lost.is_set() else 0


def _link(stop: threading.Event, halt: threading.Event) -> None:
    """Set `halt` as soon as `stop` is set (until `halt` is set otherwise)."""
    while not halt.is_set():
        if stop.wait(0.05):
            halt.set()


def run_until_signalled(controller: ClusterController) -> int:
    """Run until SIGTERM (the Deployment's pod stopping) or Ctrl-C; 1 when the lease was lost."""
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    code = 0
    try:
        code = controller.run(stop=stop)
    except KeyboardInterrupt:
        stop.set()
    finally:
        signal.signal(signal.SIGTERM, previous)
    log.info("stopped", extra={"exit_code": code})
    return code
