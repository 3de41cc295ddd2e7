"""Patch an object or its status subresource with a JSON merge patch (RFC 7386)."""

from __future__ import annotations

from typing import Any

from controller.cluster.kube.requesting import STRICT, MERGE_PATCH, Api
from controller.cluster.kube.resources import Resource


def patch(api: Api, *, resource: Resource, name: str, body: dict[str, Any], namespace: str | None = None,
          subresource: str | None = None) -> dict[str, Any]:
    """The patched object. A merge patch replaces lists whole and deletes keys set to None."""
    path = resource.item(namespace=namespace or api.namespace, name=name, subresource=subresource)
    return api.call("PATCH", path, body=body, content_type=MERGE_PATCH, params=STRICT)


def patch_status(api: Api, *, resource: Resource, name: str, status: dict[str, Any],
                 namespace: str | None = None) -> dict[str, Any]:
    """Merge `status` into the object's status (the /status subresource: the spec is never touched)."""
    return patch(api, resource=resource, name=name, body={"status": status}, namespace=namespace,
                 subresource="status")
