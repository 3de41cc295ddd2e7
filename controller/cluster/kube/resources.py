"""The resources the controller touches, and their REST paths (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from controller.cluster import rbac


@dataclass(frozen=True)
class Resource:
    group: str  # "" for the core group
    version: str
    plural: str
    kind: str

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def collection(self, *, namespace: str) -> str:
        prefix = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        return f"{prefix}/namespaces/{quote(namespace, safe='')}/{self.plural}"

    def item(self, *, namespace: str, name: str, subresource: str | None = None) -> str:
        path = f"{self.collection(namespace=namespace)}/{quote(name, safe='')}"
        return f"{path}/{subresource}" if subresource else path


JOBS = Resource("batch", "v1", "jobs", "Job")
PODS = Resource("", "v1", "pods", "Pod")
EVENTS = Resource("", "v1", "events", "Event")
GRIDS = Resource(rbac.GRID_GROUP, rbac.GRID_VERSION, rbac.GRID_PLURAL, rbac.GRID_KIND)


def label_selector(labels: dict[str, str | None]) -> str:
    """{"a": "x", "b": None} -> "a=x,b": equality, or existence for None."""
    return ",".join(key if value is None else f"{key}={value}" for key, value in sorted(labels.items()))
