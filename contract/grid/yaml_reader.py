"""The grid file's YAML: bounded (size, nesting, aliases, duplicate keys), `1e-3` read as a number, and string
fields read as written (`tie: no` is "no")."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from contract.errors import InvalidInput, Problem
from contract.grid.arguments import AxisValues, TrainArguments
from contract.grid.limits import MAX_ALIASES, MAX_DEPTH, MAX_FILE_BYTES
from contract.grid.spec import GridSpec

YAML_STR, YAML_BOOL, YAML_INT, YAML_FLOAT = (f"tag:yaml.org,2002:{t}" for t in ("str", "bool", "int", "float"))
# YAML 1.2's float without a dot ("1e-3", "5E4"): YAML 1.1, hence PyYAML, reads it as a string
EXPONENT_FLOAT = re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$")


class GridLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses duplicate keys, deep nesting and many aliases (an alias bomb), and reads
    `1e-3` as the number YAML 1.2 (and a person) reads, not YAML 1.1's string."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._aliases = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise yaml.composer.ComposerError(None, None, f"more than {MAX_ALIASES} aliases",
                                                  self.get_mark())
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise yaml.composer.ComposerError(None, None, f"nested more than {MAX_DEPTH} levels deep",
                                                  self.get_mark())
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                first = seen.get(key)
            except TypeError:
                continue  # an unhashable key: SafeLoader reports it
            if first is not None:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first at line {first.line + 1})", key_node.start_mark)
            seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


GridLoader.add_implicit_resolver(YAML_FLOAT, EXPONENT_FLOAT, list("-+0123456789"))


# --- YAML 1.1 reads some words and numbers as what a person did not mean: read them as written ---------
# In a field whose type is a string (an enum such as confirm.tie, gates.tie, search.mode, or free text such as
# experiment), an unquoted `no`, `yes`, `on`, `off` (YAML 1.1 booleans), or `1.10`, `0755` (numbers) is the text
# as written, as anyone reading the file reads it: `tie: no` is "no". Elsewhere YAML's reading stands (`amp: no`
# is false). Which fields are strings comes from the model's JSON schema, the one definition of every field.

def _string_schema(schema: dict[str, Any]) -> bool:
    if schema.get("type") == "string":
        return True
    if "enum" in schema:
        return all(isinstance(v, str) for v in schema["enum"])
    alternatives: list[dict[str, Any]] = schema.get("anyOf") or []
    return bool(alternatives) and all(_string_schema(a) for a in alternatives)


def _resolved(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """The schema itself: $ref followed, a nullable anyOf reduced to its other member."""
    while True:
        if "$ref" in schema:
            schema = defs[schema["$ref"].rsplit("/", 1)[-1]]
        elif len(schema.get("allOf", [])) == 1:
            schema = schema["allOf"][0]
        elif "anyOf" in schema:
            others = [a for a in schema["anyOf"] if a.get("type") != "null"]
            if len(others) != 1:
                return {"anyOf": [_resolved(a, defs) for a in others]}
            schema = others[0]
        else:
            return schema


_SCHEMAS: dict[str, Any] = {}


def _grid_schemas() -> dict[str, Any]:
    """GridSpec's JSON schema, with the train arguments' and the axes' own (computed once)."""
    if not _SCHEMAS:
        _SCHEMAS.update(grid=GridSpec.model_json_schema(), train=TrainArguments.model_json_schema(),
                        axes=AxisValues.model_json_schema())
    return _SCHEMAS


def read_as_written(node: yaml.Node | None) -> list[str]:
    """Retag, in place, the plain scalars that YAML 1.1 resolved to a boolean or a number in a field whose type
    is a string, so that they are constructed as the text written. Returns their locations (for tests)."""
    schemas = _grid_schemas()
    changed: list[str] = []

    def walk(node: yaml.Node, schema: dict[str, Any], defs: dict[str, Any], where: str) -> None:
        schema = _resolved(schema, defs)
        if isinstance(node, yaml.ScalarNode):
            if node.style is None and node.tag in (YAML_BOOL, YAML_INT, YAML_FLOAT) and _string_schema(schema):
                node.tag = YAML_STR
                changed.append(where)
        elif isinstance(node, yaml.MappingNode):
            properties, extra = schema.get("properties", {}), schema.get("additionalProperties")
            for key, value in node.value:
                if not isinstance(key, yaml.ScalarNode):
                    continue
                if not where and key.value in ("train", "axes"):
                    walk(value, schemas[key.value], schemas[key.value].get("$defs", {}), key.value)
                elif key.value in properties or isinstance(extra, dict):
                    walk(value, properties.get(key.value, extra), defs, f"{where}.{key.value}" if where else key.value)
        elif isinstance(node, yaml.SequenceNode) and isinstance(schema.get("items"), dict):
            for index, item in enumerate(node.value):
                walk(item, schema["items"], defs, f"{where}[{index}]")

    if node is not None:
        walk(node, schemas["grid"], schemas["grid"].get("$defs", {}), "")
    return changed


def read_yaml(path: Path) -> Any:
    """The file's YAML document, bounded (size, nesting, aliases, duplicate keys), string fields read as written
    (`read_as_written`); InvalidInput when unreadable."""
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise InvalidInput([Problem(str(path), f"is {size} bytes, more than a grid file needs "
                                        f"(limit {MAX_FILE_BYTES})")])
        content = path.read_bytes().decode("utf-8")
    except OSError as error:
        raise InvalidInput([Problem(str(path), f"cannot read: {error.strerror}")]) from error
    except UnicodeDecodeError as error:
        raise InvalidInput([Problem(str(path), f"is not UTF-8 text (byte {error.start})")]) from error
    return parse_yaml(content, source=str(path))


def parse_yaml(content: str, *, source: str) -> Any:
    """A grid file's text as `read_yaml` reads it; `source` names it in errors."""
    loader = GridLoader(content)
    try:
        node = loader.get_single_node()
        read_as_written(node)
        return loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        raise InvalidInput([Problem(where, f"not valid YAML: {getattr(error, 'problem', error)}")]) from error
    except (RecursionError, ValueError) as error:
        raise InvalidInput([Problem(source, f"not a grid file YAML can read: {error}")]) from error
    finally:
        loader.dispose()
