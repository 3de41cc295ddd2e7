"""A local mirror of a collection, kept by list + watch (what client-go calls an informer).

List once, then watch from the list's resourceVersion; resume each ended
stream from the last version seen (bookmarks included); on 410 Gone list
again and report what changed meanwhile; on any other error wait (backoff up
to 30 s) and resume. `on_change(old, new)` is called for every change, with
None for a side that does not exist.
"""

from __future__ import annotations

import copy
import sys
import threading
from typing import Any, Callable

import requests

from controller.cluster.kube.errors import ApiError, Gone
from controller.cluster.kube.reading import list_objects
from controller.cluster.kube.requesting import Api
from controller.cluster.kube.resources import Resource
from controller.cluster.kube.watching import WATCH_SECONDS, watch

Object = dict[str, Any]
OnChange = Callable[[Object | None, Object | None], None]
FIRST_BACKOFF, MAX_BACKOFF = 0.5, 30.0


class Mirror:
    def __init__(self, api: Api, *, resource: Resource, on_change: OnChange, label_selector: str | None = None,
                 watch_seconds: int = WATCH_SECONDS) -> None:
        self.api, self.resource, self.on_change = api, resource, on_change
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
        listing = list_objects(self.api, resource=self.resource, label_selector=self.label_selector)
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
        for event in watch(self.api, resource=self.resource, resource_version=self.resource_version,
                           label_selector=self.label_selector, timeout_seconds=self.watch_seconds):
            self.apply(event.type, event.object)

    def apply(self, kind: str, obj: Object) -> None:
        version = str(obj.get("metadata", {}).get("resourceVersion") or "")
        if kind == "BOOKMARK":
            self.resource_version = version or self.resource_version
            return
        name = obj["metadata"]["name"]
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
                self.objects[name] = copy.deepcopy(obj)

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
            except (ApiError, requests.RequestException, ValueError) as error:
                print(f"watch {self.resource.plural}: {type(error).__name__}: {error}; retrying in {backoff:.1f} s",
                      file=sys.stderr, flush=True)
                stop.wait(backoff)
                backoff = min(MAX_BACKOFF, backoff * 2)


def _older(obj: Object, than: Object | None) -> bool:
    """An etcd-backed API server's resourceVersions are revisions, integers that only grow; any
    other form is opaque and never called older."""
    if than is None:
        return False
    mine, theirs = (str(o["metadata"].get("resourceVersion", "")) for o in (obj, than))
    return mine.isdigit() and theirs.isdigit() and int(mine) < int(theirs)
