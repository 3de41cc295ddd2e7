"""The Grid CustomResourceDefinition, generated from the grid model (pure).

`make crd` (tools/generate_crd.py) writes `crd_template()` to
charts/tp4/templates/grid-crd.yaml; tests/contract/test_crd.py fails when the
chart's file differs. The spec's schema is `GridSpec.model_json_schema()` made
structural, as the API server requires: $refs inlined, no defaults (the
controller applies them, the API server must not), `anyOf` with null as
`nullable`, integer-or-number as `number`, other unions of scalars as
`x-kubernetes-preserve-unknown-fields`, and OpenAPI v3.0's boolean
`exclusiveMinimum`. The status schema is the controller's own (controller/cluster/status.py).
"""

from __future__ import annotations

from typing import Any

import yaml

from contract.grid import GridSpec
from contract.grid_resource import GRID

GROUP, VERSION, KIND, PLURAL = GRID.group, GRID.version, GRID.kind, GRID.plural
CHART_PATH = "charts/tp4/templates/grid-crd.yaml"
_DROPPED = ("title", "default", "examples")


def structural(node: Any, defs: dict[str, Any]) -> Any:
    """One JSON-schema node as a Kubernetes structural schema node."""
    if isinstance(node, list):
        return [structural(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    if "$ref" in node:
        target = defs[node.pop("$ref").rsplit("/", 1)[-1]]
        node = {**target, **node}
    if node.get("x-kubernetes-int-or-string"):
        return {key: value for key, value in node.items() if key in ("description", "x-kubernetes-int-or-string")} | {
            "anyOf": [{"type": "integer"}, {"type": "string"}]}
    if "anyOf" in node:
        node = _union(node, defs)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROPPED or key == "$defs":
            continue
        if key == "properties":
            out[key] = {name: structural(child, defs) for name, child in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            out[key] = structural(value, defs)
        elif key == "additionalProperties" and value is False:
            continue  # the API server refuses unknown fields already (fieldValidation=Strict) or prunes them
        elif key == "const":
            out["enum"] = [value]
        else:
            out[key] = value
    for bound, plain, step in (("exclusiveMinimum", "minimum", 1), ("exclusiveMaximum", "maximum", -1)):
        value = out.get(bound)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            del out[bound]
            if out.get("type") == "integer":
                out[plain] = int(value) + step  # > 0 is >= 1: plain bounds read the same everywhere
            else:
                out[plain], out[bound] = value, True  # OpenAPI v3.0's form
    if "enum" in out:
        out.pop("nullable", None)  # the API server checks null against the enum: leave such a field out instead
    if out.get("type") == "object" and "properties" not in out and "additionalProperties" not in out:
        out["x-kubernetes-preserve-unknown-fields"] = True
    return out


def _union(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    options = [structural(option, defs) for option in node.pop("anyOf")]
    nullable = any(option.get("type") == "null" for option in options)
    options = [option for option in options if option.get("type") != "null"]
    if nullable:
        node["nullable"] = True
    if len(options) == 1:
        return {**options[0], **node}
    if options and {option.get("type") for option in options} <= {"integer", "number"}:
        return {"type": "number", **node}
    node.pop("nullable", None)
    return {**node, "x-kubernetes-preserve-unknown-fields": True}


def spec_schema() -> dict[str, Any]:
    """The Grid's spec: grid.yaml's schema, from contract.grid.GridSpec."""
    schema = GridSpec.model_json_schema(mode="validation")
    return structural(schema, schema.get("$defs", {}))  # type: ignore[no-any-return]


def _condition() -> dict[str, Any]:
    return {"type": "object", "required": ["type", "status", "lastTransitionTime", "reason", "message"],
            "properties": {
                "type": {"type": "string", "maxLength": 316},
                "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
                "observedGeneration": {"type": "integer", "format": "int64", "minimum": 0},
                "lastTransitionTime": {"type": "string", "format": "date-time"},
                "reason": {"type": "string", "maxLength": 1024},
                "message": {"type": "string", "maxLength": 32768}}}


def status_schema() -> dict[str, Any]:
    """What the controller writes in status (controller/cluster/status.py); its size does not grow with the points."""
    strings = {"type": "string"}
    return {
        "type": "object",
        "description": "Progress and result. Its size does not grow with the number of points "
                       "(per-point state lives on the Jobs' labels and in MLflow).",
        "properties": {
            "observedGeneration": {"type": "integer", "format": "int64"},
            "phase": {"type": "string", "enum": ["Pending", "Running", "Finalizing", "Succeeded", "Failed"]},
            "counts": {"type": "object", "properties": {
                key: {"type": "integer"} for key in ("total", "pending", "running", "succeeded", "failed")}},
            "best": {"type": "object", "properties": {
                "point": strings, "metric": strings, "value": {"type": "number"}, "runId": strings}},
            "decision": {"type": "string", "enum": ["YES", "NO"]},
            "parentRunId": strings,
            "report": {"type": "object", "properties": {"runId": strings, "artifactPath": strings}},
            "startTime": {"type": "string", "format": "date-time"},
            "completionTime": {"type": "string", "format": "date-time"},
            "conditions": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"],
                           "items": _condition()},
        },
    }


def _columns() -> list[dict[str, Any]]:
    return [
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
        {"name": "Succeeded", "type": "integer", "jsonPath": ".status.counts.succeeded"},
        {"name": "Failed", "type": "integer", "jsonPath": ".status.counts.failed"},
        {"name": "Total", "type": "integer", "jsonPath": ".status.counts.total"},
        {"name": "Best", "type": "string", "description": "the best point so far", "jsonPath": ".status.best.point"},
        {"name": "Objective", "type": "number", "description": "the best point's objective metric",
         "jsonPath": ".status.best.value"},
        {"name": "Decision", "type": "string", "priority": 1, "jsonPath": ".status.decision"},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]


def crd_spec() -> dict[str, Any]:
    """The CustomResourceDefinition's spec."""
    return {
        "group": GROUP, "scope": "Namespaced",
        "names": {"kind": KIND, "listKind": f"{KIND}List", "plural": PLURAL, "singular": KIND.lower(),
                  "categories": ["tp4"]},
        "versions": [{
            "name": VERSION, "served": True, "storage": True, "subresources": {"status": {}},
            "additionalPrinterColumns": _columns(),
            "schema": {"openAPIV3Schema": {
                "type": "object",
                "description": "A grid of YOLO trainings: one Job per point of the cartesian product of spec.axes, "
                               "then one finalizer Job that ranks the runs and writes the decision report. The "
                               "controller validates the spec fully (contract/grid.py) and reports problems in "
                               "status.conditions.",
                "required": ["spec"],
                "properties": {"apiVersion": {"type": "string"}, "kind": {"type": "string"},
                               "metadata": {"type": "object"}, "spec": spec_schema(), "status": status_schema()},
            }},
        }],
    }


_HEADER = """\
{{- /* The Grid custom resource: its spec is grid.yaml (docs/grid-schema.md); its status stays small. */ -}}
{{- /* GENERATED by `make crd` (tools/generate_crd.py, contract/crd.py) from contract/grid.py: do not edit. */ -}}
{{- if .Values.crds.install }}
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: %s.%s
  labels:
    {{- include "tp4.labels" (dict "root" $ "component" "controller") | nindent 4 }}
  {{- if .Values.crds.keep }}
  annotations:
    # uninstalling the release must not delete every Grid of the cluster
    helm.sh/resource-policy: keep
  {{- end }}
"""


class _Dumper(yaml.SafeDumper):
    """No anchors and aliases: every node written out."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def crd_template() -> str:
    """The chart's templates/grid-crd.yaml, byte for byte."""
    body = yaml.dump({"spec": crd_spec()}, Dumper=_Dumper, sort_keys=False, width=120, allow_unicode=True)
    return _HEADER % (PLURAL, GROUP) + body + "{{- end }}\n"
