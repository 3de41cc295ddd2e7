"""A local mirror of a collection, kept by list + watch (what client-go calls an informer).

List once, then watch from the list's resourceVersion with bookmarks; resume
each ended stream from the last version seen; on 410 Gone list again and
report what changed meanwhile; on any other error wait (back-off doubling up
to 30 s) and resume. `on_change(old, new)` is called for every change, with
None for a side that does not exist. `keep` (client-go's transform function)
is what the mirror stores of each object, e.g. only the fields its readers
use: a controller of 10,000 Jobs then holds kilobytes a Job, not their pod
templates. The HTTP is the official client's
(controller/cluster/kube.py); only this bookkeeping is ours.
"""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Callable
from typing import Any

import urllib3

from controller.cluster.kube import WATCH_SECONDS, ApiError, Gone, Kube, Resource

Object = dict[str, Any]
Keep = Callable[[Object], Object]
OnChange = Callable[[Object | None, Object | None], None]
FIRST_BACKOFF, MAX_BACKOFF = 0.5, 30.0
log = logging.getLogger(__name__)


class Mirror:
    def __init__(self, kube: Kube, *, resource: Resource, on_change: OnChange, label_selector: str | None = None,
                 watch_seconds: int = WATCH_SECONDS, keep: Keep | None = None) -> None:
        self.kube, self.resource, self.on_change = kube, resource, on_change
        self.keep = keep
        self.label_selector, self.watch_seconds = label_selector, watch_seconds
        self.objects: dict[str, Object] = {}
        self.resource_version = ""
        self.lock = threading.Lock()
        self.synced = threading.Event()
        self.relists = 0

    def snapshot(self) -> dict[str, Object]:
        with self.lock:
            return dict(self.objects)

    def get(self, name: str) -> Object | None:
        with self.lock:
            return self.objects.get(name)

    def relist(self) -> None:
        listing = self.kube.list_objects(self.resource, selector=self.label_selector, keep=self.keep)
        fresh = {item["metadata"]["name"]: item for item in listing.items}
        with self.lock:
            old, self.objects, self.resource_version = self.objects, fresh, listing.resource_version
        self.relists += 1
        for name in sorted(set(old) | set(fresh)):
            if old.get(name) != fresh.get(name):
                self.on_change(old.get(name), fresh.get(name))
        self.synced.set()

    def watch_once(self) -> None:
        """Follow one watch stream to its end, applying its events."""
        for kind, obj in self.kube.watch(self.resource, resource_version=self.resource_version,
                                         selector=self.label_selector, timeout_seconds=self.watch_seconds):
            self.apply(kind, obj)

    def apply(self, kind: str, obj: Object) -> None:
        version = str(obj.get("metadata", {}).get("resourceVersion") or "")
        if kind == "BOOKMARK":
            self.resource_version = version or self.resource_version
            return
        name, obj = obj["metadata"]["name"], self._kept(obj)
        with self.lock:
            old = self.objects.get(name)
            if kind == "DELETED":
                self.objects.pop(name, None)
            else:
                self.objects[name] = obj
            self.resource_version = version or self.resource_version
        self.on_change(old, None if kind == "DELETED" else obj)

    def remember(self, obj: Object) -> None:
        """What this process just wrote, before its watch event arrives (so a reconcile running
        in between does not act on the older copy), unless the watch already brought a newer one."""
        with self.lock:
            name = obj["metadata"]["name"]
            if not _older(obj, self.objects.get(name)):
                # a copy: the caller keeps its object (keep builds new dicts)
                self.objects[name] = self.keep(obj) if self.keep else copy.deepcopy(obj)

    def _kept(self, obj: Object) -> Object:
        """What is stored of an object this mirror alone holds (one just decoded from the server)."""
        return self.keep(obj) if self.keep else obj

    def forget(self, name: str) -> None:
        with self.lock:
            self.objects.pop(name, None)

    def run(self, *, stop: threading.Event) -> None:
        """List, then watch until `stop` is set."""
        backoff, listed = FIRST_BACKOFF, False
        while not stop.is_set():
            try:
                if not listed:
                    self.relist()
                    listed = True
                self.watch_once()
                backoff = FIRST_BACKOFF
            except Gone:
                listed = False  # the version expired: list again at once
            except (ApiError, urllib3.exceptions.HTTPError, OSError, ValueError) as error:
                log.warning("watch failed; retrying", extra={"resource": self.resource.plural,
                                                             "error": f"{type(error).__name__}: {error}",
                                                             "retry_s": round(backoff, 1)})
                stop.wait(backoff)
                backoff = min(MAX_BACKOFF, backoff * 2)


def _older(obj: Object, than: Object | None) -> bool:
    """An etcd-backed API server's resourceVersions are revisions, integers that only grow; any
    other form is opaque and never called older."""
    if than is None:
        return False
    mine, theirs = (str(o["metadata"].get("resourceVersion", "")) for o in (obj, than))
    return mine.isdigit() and theirs.isdigit() and int(mine) < int(theirs)
