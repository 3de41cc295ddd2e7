"""Watch a collection from a resourceVersion: the events of one stream, until the server ends it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterator

from controller.cluster.kube.errors import from_status
from controller.cluster.kube.requesting import Api
from controller.cluster.kube.resources import Resource

WATCH_SECONDS = 300  # the server closes the stream after this; the caller resumes from the last version


@dataclass(frozen=True)
class Event:
    type: str  # ADDED, MODIFIED, DELETED, BOOKMARK
    object: dict[str, Any]

    @property
    def resource_version(self) -> str:
        return str((self.object.get("metadata") or {}).get("resourceVersion") or "")


def watch(api: Api, *, resource: Resource, resource_version: str, namespace: str | None = None,
          label_selector: str | None = None, timeout_seconds: int = WATCH_SECONDS) -> Iterator[Event]:
    """The changes after `resource_version`. An ERROR event raises its ApiError: Gone (410) when
    that version has been compacted away, and the caller must list again."""
    params = {"watch": "true", "resourceVersion": resource_version, "allowWatchBookmarks": "true",
              "timeoutSeconds": str(timeout_seconds)}
    if label_selector:
        params["labelSelector"] = label_selector
    path = resource.collection(namespace=namespace or api.namespace)
    for line in api.lines(path, params=params, read_timeout=timeout_seconds + 30):
        if not line.strip():
            continue
        event = json.loads(line)
        if event.get("type") == "ERROR":
            raise from_status(code=500, status=event.get("object"))
        yield Event(type=event["type"], object=event["object"])
