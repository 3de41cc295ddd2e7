"""The Grid CRD's openAPIV3Schema (charts/tp4/templates/grid-crd.yaml) as a JSON-schema validator.

Read without helm: the template's `{{ ... }}` lines only add labels and an
annotation. The conversion is the API server's for a create with
fieldValidation=Strict: an unknown field is an error unless the node
preserves unknown fields.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from tests.helpers.paths import REPO

CRD = REPO / "charts" / "tp4" / "templates" / "grid-crd.yaml"


def crd_definition(path: Path = CRD) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    text = "\n".join(line for line in path.read_text().splitlines() if "{{" not in line)
    return yaml.safe_load(text)


def as_json_schema(node: Any) -> Any:
    """The CRD's structural schema as the API server applies it to a create with fieldValidation=Strict
    (kubectl's default): an unknown field is an error unless x-kubernetes-preserve-unknown-fields."""
    if isinstance(node, list):
        return [as_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    schema = {key: as_json_schema(value) for key, value in node.items() if not key.startswith("x-kubernetes-")}
    if node.get("nullable"):
        schema.pop("nullable")
        if "type" in schema:
            schema["type"] = [schema["type"], "null"]
    if node.get("x-kubernetes-int-or-string"):
        schema.pop("type", None)
    if node.get("type") == "object" and "properties" in node and not node.get("x-kubernetes-preserve-unknown-fields"):
        schema["additionalProperties"] = False
    if node.get("format") == "int64":
        schema.pop("format")
    return schema


def grid_validator(path: Path = CRD) -> Callable[[dict[str, Any]], list[str]] | None:
    """errors(grid object) -> problems ("where: what"), or None when the chart has no CRD yet."""
    definition = crd_definition(path)
    if definition is None:
        return None
    (version,) = definition["spec"]["versions"]
    schema = as_json_schema(version["schema"]["openAPIV3Schema"])
    schema["properties"]["metadata"] = {"type": "object"}
    validator = jsonschema.Draft7Validator(schema, format_checker=jsonschema.FormatChecker())

    def errors(obj: dict[str, Any]) -> list[str]:
        return [f"{'.'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in validator.iter_errors(obj)]
    return errors
