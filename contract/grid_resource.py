"""The Grid custom resource's identity: its API group, version, kind and plural, for the CRD, the controller's
RBAC rules, its Kubernetes adapter and the manifests it writes (pure, no pydantic)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ResourceIdentity:
    """A namespaced custom resource's identity (group, version, kind, plural)."""

    group: str
    version: str
    kind: str
    plural: str

    @property
    def api_version(self) -> str:
        """`<group>/<version>`: a manifest's apiVersion."""
        return f"{self.group}/{self.version}"

    @property
    def name(self) -> str:
        """`<plural>.<group>`: the CustomResourceDefinition's name."""
        return f"{self.plural}.{self.group}"

    def is_kind_of(self, manifest: Mapping[str, Any]) -> bool:
        """Whether `manifest` (a Kubernetes object as JSON) is one of these: its apiVersion and kind."""
        return manifest.get("apiVersion") == self.api_version and manifest.get("kind") == self.kind


GRID = ResourceIdentity(group="tp4.io", version="v1alpha1", kind="Grid", plural="grids")
