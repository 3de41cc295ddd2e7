"""pydantic's errors in tp4's words and locations (`grid.yaml: axes.lr0[1]: must be > 0, got -1`)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any, get_args

from pydantic import BaseModel, ValidationError

from contract.errors import Problem
from contract.grid.limits import GRID_ARGUMENTS, RESERVED_ARGUMENTS


def describe(value: object) -> str:
    """A short, safe rendering of a bad value for a message (huge numbers and strings are summarised)."""
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "nothing (null)"
    if isinstance(value, int) and value.bit_length() > 64:
        return f"an integer of {value.bit_length()} bits"
    if isinstance(value, (dict, list)):
        return f"a {'mapping' if isinstance(value, dict) else 'list'}"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def did_you_mean(name: object, choices: Iterable[str], aliases: dict[str, str] | None = None) -> str:
    """' (did you mean x?)' for a misspelt `name` (an alias's target first), '' when nothing is close."""
    if aliases and name in aliases:
        return f" (did you mean {aliases[str(name)]}?)"
    close = difflib.get_close_matches(str(name), list(choices), n=3, cutoff=0.6)
    return f" (did you mean {', '.join(close)}?)" if close else ""


_KINDS = {"int_type": "an integer", "string_type": "a string", "float_type": "a number", "bool_type": "a boolean",
          "dict_type": "a mapping", "model_type": "a mapping", "model_attributes_type": "a mapping",
          "list_type": "a list"}


def location(loc: Iterable[str | int]) -> str:
    """('axes', 'lr0', 1) -> 'axes.lr0[1]'."""
    where = ""
    for part in loc:
        where += f"[{part}]" if isinstance(part, int) else (f".{part}" if where else str(part))
    return where


def _model_at(model: type[BaseModel], loc: tuple[str | int, ...]) -> type[BaseModel] | None:
    cls = model
    for part in loc:
        if isinstance(part, int):
            continue
        field = cls.model_fields.get(part)
        sub = _submodel(field.annotation) if field else None
        if sub is None:
            return None
        cls = sub
    return cls


def _submodel(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _submodel(arg)
        if found is not None:
            return found
    return None


def message(error: Any, *, model: type[BaseModel] | None = None) -> str:
    """One pydantic error (an item of ValidationError.errors()) in our words; `model`, the model validated,
    names the keys allowed where an unknown one is found."""
    kind, loc, value = error["type"], tuple(error["loc"]), error.get("input")
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        name = loc[-1]
        if loc[:1] in (("train",), ("axes",)) and len(loc) == 2:
            if name in RESERVED_ARGUMENTS:
                return "is set by the train Job itself and cannot be set in a grid"
            return "is not an ultralytics train argument" + did_you_mean(name, GRID_ARGUMENTS)
        section = _model_at(model, loc[:-1]) if model is not None else None
        allowed = sorted(section.model_fields) if section else []
        return f"unknown key{did_you_mean(name, allowed)} (allowed: {', '.join(allowed)})"
    if kind in _KINDS:
        return f"must be {_KINDS[kind]}, got {describe(value)}"
    if kind == "too_short":
        return "must be a non-empty list of values"
    if kind in ("literal_error", "enum"):
        return f"must be one of {error.get('ctx', {}).get('expected', '')}, got {describe(value)}"
    return str(error["msg"]).removeprefix("Value error, ")


def problems_of(error: ValidationError, *, source: str, prefix: str = "",
                model: type[BaseModel] | None = None) -> list[Problem]:
    """A pydantic ValidationError of `model` as our Problems, each located like `grid.yaml: axes.lr0[1]`."""
    found: list[Problem] = []
    for item in error.errors():
        loc = tuple(part for part in item["loc"] if not (isinstance(part, str) and part.startswith("function-")))
        if item["type"] in ("list_type", "too_short") and loc[:1] == ("axes",):
            said = "must be a non-empty list of values" + (
                f", got {describe(item.get('input'))}" if item["type"] == "list_type" else "")
        else:
            said = message(item, model=model)
        where = location(loc)
        where = f"{prefix}.{where}" if prefix and where else (prefix or where)
        problem = Problem(f"{source}: {where}" if where else source, said)
        if problem not in found:
            found.append(problem)
    return found


