"""Delete an object, its dependents by the garbage collector."""

from __future__ import annotations

from typing import Any, Literal

from controller.cluster.kube.errors import NotFound
from controller.cluster.kube.requesting import Api
from controller.cluster.kube.resources import Resource

Propagation = Literal["Background", "Foreground", "Orphan"]


def delete(api: Api, *, resource: Resource, name: str, namespace: str | None = None,
           propagation: Propagation = "Background", missing_ok: bool = True) -> bool:
    """True when it was deleted now; False when it was already gone (NotFound unless missing_ok).

    Background: the object goes at once and the garbage collector removes its
    dependents (a Job's pods, a Grid's Jobs) afterwards."""
    body: dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": propagation}
    try:
        api.call("DELETE", resource.item(namespace=namespace or api.namespace, name=name), body=body)
    except NotFound:
        if not missing_ok:
            raise
        return False
    return True
