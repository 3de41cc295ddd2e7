"""The pods of a Job's attempts, and the log of one of them (followed while it runs)."""

from __future__ import annotations

from typing import Any, Iterator

from controller.cluster.kube.reading import get, list_objects
from controller.cluster.kube.requesting import Api
from controller.cluster.kube.resources import JOBS, PODS, label_selector

# The Job controller labels its pods with the Job's uid (since Kubernetes 1.27; `controller-uid` before).
CONTROLLER_UID = "batch.kubernetes.io/controller-uid"
FOLLOW_READ_SECONDS = 3600.0


def attempts(api: Api, *, job: str) -> list[dict[str, Any]]:
    """The pods of the Job named `job` (this Job, not an earlier one of the same name), oldest first."""
    uid = get(api, resource=JOBS, name=job)["metadata"]["uid"]
    pods = list_objects(api, resource=PODS, label_selector=label_selector({CONTROLLER_UID: uid})).items
    return sorted(pods, key=lambda p: (p["metadata"].get("creationTimestamp") or "", p["metadata"]["name"]))


def log_lines(api: Api, *, pod: dict[str, Any], follow: bool) -> Iterator[bytes]:
    """The pod's log (its first container: a tp4 Job has one), line by line."""
    container = pod["spec"]["containers"][0]["name"]
    params = {"container": container, "follow": "true" if follow else "false"}
    path = PODS.item(namespace=pod["metadata"].get("namespace") or api.namespace, name=pod["metadata"]["name"],
                     subresource="log")
    yield from api.lines(path, params=params, read_timeout=FOLLOW_READ_SECONDS)
