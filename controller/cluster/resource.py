"""The Grid custom resource (tp4.io/v1alpha1): its spec is grid.yaml, read by the same parser (pure).

On a cluster the Grid alone determines the points: the dataset md5 is pinned
in spec.dataset.md5 (the CLI pins it at submission from <path>.dvc), and the
chart's defaults fill what the grid leaves out (the trainer image, the Jobs'
time to live, a GPU point's image, nodeSelector and tolerations).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import contract
from contract.grid import GridSpec, parse_grid
from controller.cluster import rbac
from controller.cluster.settings import ClusterSettings
from controller.core.expanding import GridPoint, expand
from controller.errors import InvalidInput, Problem

API_VERSION = f"{rbac.GRID_GROUP}/{rbac.GRID_VERSION}"
# Set by `submit-grid` at every submission (the API server's clock): a request to run the grid
# again, even unchanged (failed points are retried), when it is later than status.startTime.
ANNOTATION_SUBMITTED_AT = contract.ANNOTATION_SUBMITTED_AT


@dataclass(frozen=True)
class ClusterGrid:
    spec: GridSpec
    points: list[GridPoint]
    dataset_md5: str
    parallelism: int


def grid_object(*, spec: dict[str, Any], namespace: str, submitted_at: str) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": rbac.GRID_KIND,
            "metadata": {"name": spec["name"], "namespace": namespace,
                         "annotations": {ANNOTATION_SUBMITTED_AT: submitted_at}},
            "spec": spec}


def _with_cluster_defaults(grid: GridSpec, raw_job: dict[str, Any], settings: ClusterSettings) -> GridSpec:
    job = grid.job
    gpu = job.resources.gpu > 0
    changes: dict[str, Any] = {}
    if "image" not in raw_job and (image := (settings.gpu_image if gpu else None) or settings.trainer_image):
        changes["image"] = image
    if "ttl_seconds_after_finished" not in raw_job and settings.job_ttl_seconds is not None:
        changes["ttl_seconds_after_finished"] = settings.job_ttl_seconds
    if gpu and not job.node_selector and settings.gpu_node_selector:
        changes["node_selector"] = dict(settings.gpu_node_selector)
    if gpu and not job.tolerations and settings.gpu_tolerations:
        changes["tolerations"] = copy.deepcopy(settings.gpu_tolerations)
    return grid.with_job(**changes) if changes else grid


def read_grid(obj: dict[str, Any], *, settings: ClusterSettings) -> ClusterGrid:
    """The Grid's spec validated like grid.yaml, expanded into points; InvalidInput listing every problem."""
    name = obj["metadata"]["name"]
    raw = obj.get("spec") or {}
    grid = parse_grid(copy.deepcopy(raw), source=f"grid/{name}", base_dir=None)
    if grid.name != name:
        raise InvalidInput([Problem(f"grid/{name}: spec.name", f"is {grid.name!r}: it must equal metadata.name")])
    grid = _with_cluster_defaults(grid, raw.get("job") or {}, settings)
    md5 = str(grid.dataset_md5)
    points = expand(grid, dataset_md5=md5)
    return ClusterGrid(spec=grid, points=points, dataset_md5=md5, parallelism=default_parallelism(grid, len(points)))


def default_parallelism(grid: GridSpec, n_points: int) -> int:
    """job.parallelism, else every point at once; a TPE search: its random start-up trials at once
    (more would be asked before any result could guide them)."""
    if grid.job.parallelism:
        return int(grid.job.parallelism)
    if grid.search.mode == "tpe":
        from controller.core.searching import startup_trials  # Optuna: imported by a search only

        return startup_trials(grid)
    return max(1, n_points)
