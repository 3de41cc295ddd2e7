"""Leader election with a coordination.k8s.io/v1 Lease: one controller acts, any other waits.

The rules are client-go's (tools/leaderelection): a candidate takes the Lease
when nobody holds it, or when its holder has not renewed it for
leaseDurationSeconds *as observed by this candidate's own clock* (so clock
skew between machines does not matter); every write is a replace guarded by
the Lease's resourceVersion, so of two candidates at most one wins. The
leader renews every `retry_seconds`; when it could not renew for
`renew_seconds` it has lost the Lease and must stop acting at once. On a
clean stop it releases the Lease (holder cleared), so a waiting controller
takes over without waiting out the duration.

The official client's `kubernetes.leaderelection` is not used: it only
offers a ConfigMap lock, cannot be stopped, and calls sys.exit on bad input.
"""

from __future__ import annotations

import logging
import os
import platform
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from controller.cluster.kube import LEASES, UNREACHABLE, Conflict, Kube, NotFound

LEASE_NAME = "tp4-controller"
LEASE_SECONDS, RENEW_SECONDS, RETRY_SECONDS = 15, 10.0, 2.0  # client-go's defaults
log = logging.getLogger(__name__)


def identity() -> str:
    """This process, as the Lease's holderIdentity: the pod's name (its hostname) and a unique suffix."""
    return f"{platform.node()}_{os.getpid()}_{uuid.uuid4().hex[:8]}"


def micro_time(seconds: float) -> str:
    """A MicroTime as the API server writes it: RFC 3339 with microseconds, UTC."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElection:
    def __init__(self, kube: Kube, *, holder: str | None = None, name: str = LEASE_NAME,
                 lease_seconds: int = LEASE_SECONDS, renew_seconds: float = RENEW_SECONDS,
                 retry_seconds: float = RETRY_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        if not lease_seconds > renew_seconds > retry_seconds > 0:
            raise ValueError("leader election needs lease > renew > retry > 0 seconds")
        self.kube, self.holder, self.name = kube, holder or identity(), name
        self.lease_seconds, self.renew_seconds, self.retry_seconds = lease_seconds, renew_seconds, retry_seconds
        self.clock = clock
        self.observed: tuple[str, str] | None = None  # (holder, renewTime) last seen
        self.observed_at = 0.0  # when it was first seen so, by self.clock
        self.leading = threading.Event()
        self.lost = threading.Event()

    # -- one attempt -----------------------------------------------------------------------------

    def _spec(self, *, acquired: str, transitions: int) -> dict[str, Any]:
        return {"holderIdentity": self.holder, "leaseDurationSeconds": self.lease_seconds,
                "acquireTime": acquired, "renewTime": micro_time(time.time()), "leaseTransitions": transitions}

    def try_acquire_or_renew(self) -> bool:
        """One attempt to take or keep the Lease; False when another holds it or a write lost a race."""
        try:
            lease = self.kube.get(LEASES, self.name)
        except NotFound:
            body = {"apiVersion": LEASES.api_version, "kind": LEASES.kind,
                    "metadata": {"name": self.name, "namespace": self.kube.namespace},
                    "spec": self._spec(acquired=micro_time(time.time()), transitions=0)}
            try:
                self.kube.create(LEASES, body)
            except Conflict:
                return False  # another candidate created it first
            return True
        spec = lease.get("spec") or {}
        holder = str(spec.get("holderIdentity") or "")
        record = (holder, str(spec.get("renewTime") or ""))
        if record != self.observed:
            self.observed, self.observed_at = record, self.clock()
        duration = float(spec.get("leaseDurationSeconds") or self.lease_seconds)
        if holder and holder != self.holder and self.clock() < self.observed_at + duration:
            return False  # held, and renewed within its duration as far as this process has seen
        mine = holder == self.holder
        acquired = str(spec.get("acquireTime") or "") if mine else ""
        lease["spec"] = self._spec(acquired=acquired or micro_time(time.time()),
                                   transitions=int(spec.get("leaseTransitions") or 0) + (0 if mine else 1))
        try:
            self.kube.replace(LEASES, lease)
        except Conflict:
            return False  # changed meanwhile (another candidate, or the holder renewing)
        return True

    def _attempt(self) -> bool:
        try:
            return self.try_acquire_or_renew()
        except UNREACHABLE as error:
            log.warning("lease not reachable", extra={"lease": self.name, "error": str(error)})
            return False

    # -- the loops ---------------------------------------------------------------------------------

    def acquire(self, *, stop: threading.Event, beat: Callable[[], None] = lambda: None) -> bool:
        """Wait until this process holds the Lease (True) or `stop` is set (False)."""
        waiting_for = None
        while not stop.is_set():
            beat()
            if self._attempt():
                self.leading.set()
                log.info("leading", extra={"lease": self.name, "holder": self.holder})
                return True
            holder = self.observed[0] if self.observed else None
            if holder != waiting_for:
                waiting_for = holder
                log.info("standing by: another controller holds the lease",
                         extra={"lease": self.name, "leader": holder, "holder": self.holder})
            stop.wait(self.retry_seconds)
        return False

    def keep(self, *, stop: threading.Event, on_lost: Callable[[], None]) -> threading.Thread:
        """Renew the Lease in a thread until `stop`; when it cannot for renew_seconds, `lost` is set and
        `on_lost` called (the leader must stop acting: another may take over)."""

        def renew() -> None:
            last = self.clock()
            while not stop.wait(self.retry_seconds):
                if self._attempt():
                    last = self.clock()
                elif self.clock() - last >= self.renew_seconds:
                    self.leading.clear()
                    self.lost.set()
                    log.error("lost the lease", extra={"lease": self.name, "holder": self.holder})
                    on_lost()
                    return

        thread = threading.Thread(target=renew, daemon=True, name="lease-renewal")
        thread.start()
        return thread

    def release(self) -> None:
        """Give the Lease up (holder cleared) if this process still holds it, so another takes over at once."""
        if not self.leading.is_set():
            return
        self.leading.clear()
        try:
            lease = self.kube.get(LEASES, self.name)
            if (lease.get("spec") or {}).get("holderIdentity") == self.holder:
                now = micro_time(time.time())
                lease["spec"] = {**lease["spec"], "holderIdentity": "", "leaseDurationSeconds": 1,
                                 "acquireTime": now, "renewTime": now}
                self.kube.replace(LEASES, lease)
                log.info("released the lease", extra={"lease": self.name, "holder": self.holder})
        except (*UNREACHABLE, Conflict) as error:  # it expires by itself after lease_seconds
            log.warning("lease not released", extra={"lease": self.name, "error": str(error)})
