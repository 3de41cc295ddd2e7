"""Read objects: GET one, or list a collection by label selector."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from controller.cluster.kube.requesting import Api
from controller.cluster.kube.resources import Resource

PAGE = 500


@dataclass(frozen=True)
class Listing:
    items: list[dict[str, Any]]
    resource_version: str  # where a watch resumes from


def get(api: Api, *, resource: Resource, name: str, namespace: str | None = None) -> dict[str, Any]:
    """The object; NotFound (404) when there is none."""
    return api.call("GET", resource.item(namespace=namespace or api.namespace, name=name))


def list_objects(api: Api, *, resource: Resource, namespace: str | None = None,
                 label_selector: str | None = None) -> Listing:
    """Every object of the collection matching the selector, page by page (limit/continue)."""
    params: dict[str, str] = {"limit": str(PAGE)}
    if label_selector:
        params["labelSelector"] = label_selector
    items: list[dict[str, Any]] = []
    while True:
        page = api.call("GET", resource.collection(namespace=namespace or api.namespace), params=params)
        items += page.get("items") or []
        token = (page.get("metadata") or {}).get("continue")
        if not token:
            return Listing(items=items, resource_version=page["metadata"].get("resourceVersion", ""))
        params["continue"] = token
