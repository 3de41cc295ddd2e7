"""Record a core/v1 Event about an object (what `kubectl describe grid` shows under Events)."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any

from controller.cluster.kube.creating import create
from controller.cluster.kube.requesting import Api
from controller.cluster.kube.resources import EVENTS

COMPONENT = "tp4-controller"


def event_body(*, about: dict[str, Any], reason: str, message: str, warning: bool, now: datetime) -> dict[str, Any]:
    meta = about["metadata"]
    stamp = now.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": f"{meta['name']}.{uuid.uuid4().hex[:16]}", "namespace": meta.get("namespace")},
        "involvedObject": {"apiVersion": about["apiVersion"], "kind": about["kind"], "name": meta["name"],
                           "namespace": meta.get("namespace"), "uid": meta.get("uid"),
                           "resourceVersion": meta.get("resourceVersion")},
        "reason": reason, "message": message[:1024], "type": "Warning" if warning else "Normal",
        "source": {"component": COMPONENT}, "reportingComponent": COMPONENT,
        "firstTimestamp": stamp, "lastTimestamp": stamp, "count": 1,
    }


def record(api: Api, *, about: dict[str, Any], reason: str, message: str, warning: bool = False,
           now: datetime | None = None) -> dict[str, Any]:
    body = event_body(about=about, reason=reason, message=message, warning=warning, now=now or datetime.now(timezone.utc))
    return create(api, resource=EVENTS, body=body, namespace=about["metadata"].get("namespace"))
