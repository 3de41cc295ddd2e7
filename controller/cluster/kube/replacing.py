"""Replace an object: PUT the whole of it, guarded by its resourceVersion."""

from __future__ import annotations

from typing import Any

from controller.cluster.kube.requesting import STRICT, Api
from controller.cluster.kube.resources import Resource


def replace(api: Api, *, resource: Resource, body: dict[str, Any], namespace: str | None = None) -> dict[str, Any]:
    """The stored object; Conflict (409) when metadata.resourceVersion is no longer the current one."""
    name = body["metadata"]["name"]
    return api.call("PUT", resource.item(namespace=namespace or api.namespace, name=name), body=body, params=STRICT)
