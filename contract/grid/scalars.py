"""Scalar types: validation, tp4's message and the JSON schema, from one definition each.

`number()`, `integer()` and `text()` build a type that validates, says what is wrong in our words and
states the same bound in the JSON schema (the Grid CRD's).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler, PlainValidator, WithJsonSchema
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError, core_schema

from contract.grid.messages import describe


def fail(kind: str, message: str, value: object) -> PydanticCustomError:
    return PydanticCustomError(kind, message + ", got {got}", {"got": describe(value)})


def _bounds_problem(value: float, *, ge: float | None, gt: float | None, le: float | None,
                    lt: float | None) -> str | None:
    if ge is not None and le is not None and not ge <= value <= le:
        return f"must be between {ge:g} and {le:g}"
    if gt is not None and not value > gt:
        return f"must be > {gt:g}"
    if ge is not None and not value >= ge:
        return f"must be >= {ge:g}"
    if lt is not None and not value < lt:
        return f"must be < {lt:g}"
    if le is not None and not value <= le:
        return f"must be <= {le:g}"
    return None


def _bounds_schema(*, ge: float | None, gt: float | None, le: float | None, lt: float | None) -> dict[str, Any]:
    schema: dict[str, Any] = {}
    for key, bound in (("minimum", ge), ("exclusiveMinimum", gt), ("maximum", le), ("exclusiveMaximum", lt)):
        if bound is not None:
            schema[key] = bound
    return schema


@dataclass(frozen=True, eq=False)  # hashed by identity: Annotated metadata must be hashable
class Check:
    """Annotated metadata: validation in our words (`validate`) and the same rule as JSON schema (`schema`)."""

    validate: Callable[[Any], Any]
    schema: dict[str, Any]

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.no_info_plain_validator_function(self.validate)

    def __get_pydantic_json_schema__(self, schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        return dict(self.schema)


def number(*, ge: float | None = None, gt: float | None = None, le: float | None = None, lt: float | None = None,
           description: str | None = None) -> Check:
    """A finite number (an int stays an int: 0 and 0.0 name the same value but keep the spelling given)."""
    def check(value: object) -> float | int:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise fail("number_type", "must be a number", value)
        try:
            as_float = float(value)
        except OverflowError:
            raise fail("number_range", "must be a finite number", value) from None
        if not math.isfinite(as_float):
            raise fail("number_range", "must be a finite number", value)
        problem = _bounds_problem(as_float, ge=ge, gt=gt, le=le, lt=lt)
        if problem:
            raise fail("number_range", problem, value)
        return value
    schema = {"type": "number", **_bounds_schema(ge=ge, gt=gt, le=le, lt=lt)}
    if description:
        schema["description"] = description
    return Check(check, schema)


def integer(*, ge: int | None = None, gt: int | None = None, le: int | None = None, lt: int | None = None,
            multiple_of: int | None = None, description: str | None = None) -> Check:
    """An integer (not a boolean, not a float, not a string of digits)."""
    def check(value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise fail("int_type", "must be an integer", value)
        problem = _bounds_problem(value, ge=ge, gt=gt, le=le, lt=lt)
        if problem is None and multiple_of and value % multiple_of:
            problem = f"must be a positive multiple of {multiple_of}"
        if problem:
            raise fail("int_range", problem, value)
        return value
    schema: dict[str, Any] = {"type": "integer", **_bounds_schema(ge=ge, gt=gt, le=le, lt=lt)}
    if multiple_of:
        schema["multipleOf"] = multiple_of
    if description:
        schema["description"] = description
    return Check(check, schema)


def text(*, pattern: str | None = None, message: str | None = None, min_length: int = 0,
         max_length: int | None = None, description: str | None = None) -> Check:
    """A string; `pattern` must match the whole string (a trailing newline does not match `$`)."""
    compiled = re.compile(pattern) if pattern else None

    def check(value: object) -> str:
        if not isinstance(value, str):
            raise fail("string_type", "must be a string", value)
        if len(value) < min_length:
            raise fail("string_too_short", "must not be empty" if min_length == 1 else
                        f"must have at least {min_length} characters", value)
        if max_length is not None and len(value) > max_length:
            raise fail("string_too_long", message or f"must have at most {max_length} characters", value)
        if compiled is not None and ("\n" in value or not compiled.fullmatch(value)):
            raise fail("string_pattern_mismatch", message or f"must match {pattern}", value)
        return value
    schema: dict[str, Any] = {"type": "string"}
    if min_length:
        schema["minLength"] = min_length
    if max_length is not None:
        schema["maxLength"] = max_length
    if pattern:
        schema["pattern"] = pattern
    if description:
        schema["description"] = description
    return Check(check, schema)


def _boolean(value: object) -> bool:
    if not isinstance(value, bool):
        raise fail("bool_type", "must be a boolean (true or false)", value)
    return value


def _scalar(value: object) -> object:
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    if isinstance(value, float):
        raise fail("number_range", "must be a finite number", value)
    raise fail("scalar_type", "must be a scalar (a number, a string or a boolean)", value)


Boolean = Annotated[bool, PlainValidator(_boolean), WithJsonSchema({"type": "boolean"})]
Scalar = Annotated[Any, PlainValidator(_scalar), WithJsonSchema({"x-kubernetes-preserve-unknown-fields": True})]
Fraction = Annotated[float, number(ge=0, le=1)]
