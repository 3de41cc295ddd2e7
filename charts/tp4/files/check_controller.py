"""helm test: the controller's ServiceAccount may do exactly what controller/rbac.py lists.

Runs in the tp4-controller image under the controller's ServiceAccount. For each
rule of controller.cluster.rbac.CONTROLLER_RULES it asks the API server (a
SelfSubjectAccessReview, which every authenticated user may create) whether
each verb is allowed; then it checks a few things the controller must NOT be
able to do; and that the Grid resource is served (GET .../grids).
Standard library only (the controller image has no kubernetes client yet).
"""

from __future__ import annotations

import json
import os
import ssl
import sys
import urllib.error
import urllib.request
from pathlib import Path

from controller.cluster.rbac import CONTROLLER_RULES, GRID_GROUP, GRID_PLURAL, GRID_VERSION

ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
# (group, resource, verb) the controller must be refused
FORBIDDEN = [("", "secrets", "get"), ("", "secrets", "list"), ("", "pods", "create"), ("", "pods", "delete"),
             (GRID_GROUP, GRID_PLURAL, "delete"), (GRID_GROUP, GRID_PLURAL, "update"), ("batch", "jobs", "update"),
             ("rbac.authorization.k8s.io", "roles", "create"), ("apps", "deployments", "get")]


def _api(method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ["KUBERNETES_SERVICE_PORT"]
    if ":" in host:
        host = f"[{host}]"
    context = ssl.create_default_context(cafile=str(ACCOUNT / "ca.crt"))
    request = urllib.request.Request(f"https://{host}:{port}{path}", method=method,
                                     data=json.dumps(body).encode() if body is not None else None)
    request.add_header("Authorization", f"Bearer {(ACCOUNT / 'token').read_text().strip()}")
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, context=context, timeout=15) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def allowed(namespace: str, group: str, resource: str, verb: str) -> bool:
    resource, _, subresource = resource.partition("/")
    attributes = {"namespace": namespace, "group": group, "resource": resource, "verb": verb}
    if subresource:
        attributes["subresource"] = subresource
    review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
              "spec": {"resourceAttributes": attributes}}
    status, answer = _api("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", review)
    if status != 201:
        raise SystemExit(f"FAIL SelfSubjectAccessReview: HTTP {status} {answer}")
    return bool(answer.get("status", {}).get("allowed"))


def main() -> int:
    namespace = (ACCOUNT / "namespace").read_text().strip()
    problems = []
    for rule in CONTROLLER_RULES:
        for verb in sorted(rule.verbs):
            if not allowed(namespace, rule.api_group, rule.resource, verb):
                problems.append(f"refused but needed: {verb} {rule.resource} ({rule.api_group or 'core'})")
    for group, resource, verb in FORBIDDEN:
        if allowed(namespace, group, resource, verb):
            problems.append(f"allowed but not needed: {verb} {resource} ({group or 'core'})")
    status, answer = _api("GET", f"/apis/{GRID_GROUP}/{GRID_VERSION}/namespaces/{namespace}/{GRID_PLURAL}")
    if status != 200:
        problems.append(f"GET {GRID_PLURAL}.{GRID_GROUP}: HTTP {status} {answer.get('message', '')}")
    for problem in problems:
        print(f"FAIL {problem}", file=sys.stderr)
    if not problems:
        print(f"ok: the controller may do exactly its {len(CONTROLLER_RULES)} rules in {namespace}; Grids are served")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
