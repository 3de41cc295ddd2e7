"""Create an object: POST to its collection."""

from __future__ import annotations

from typing import Any

from controller.cluster.kube.requesting import STRICT, Api
from controller.cluster.kube.resources import Resource


def create(api: Api, *, resource: Resource, body: dict[str, Any], namespace: str | None = None) -> dict[str, Any]:
    """The created object; Conflict (409, AlreadyExists) when the name is taken, Invalid (422) when refused."""
    return api.call("POST", resource.collection(namespace=namespace or api.namespace), body=body, params=STRICT)
