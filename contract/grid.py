"""grid.yaml: the one model of a grid (pydantic v2), its reading and its validation (pure but for reading the file).

`GridSpec` is the single source of truth for:
- the controller's validation (`load_grid`, `parse_grid`): every problem at once,
  each with its location (`grid.yaml: axes.lr0[1]: must be > 0, got -1`), as
  contract.errors.InvalidInput (exit code 2), before anything starts;
- the train Job's own flag checks (`argument_problem`, `canonical_optimizer`);
- the finalizer's rules: grid.json holds `GridSpec.to_dict()` (grid.yaml's own
  shape, defaults filled), read back with `GridSpec.model_validate`;
- the Grid CRD's openAPIV3Schema, generated from `GridSpec.model_json_schema()`
  by `make crd` (contract/crd.py).

Bounds live in one place: the scalar factories `number()`, `integer()` and
`text()` build a type that validates, says what is wrong in our words, and
states the same bound in the JSON schema; `ARGUMENT_TYPES` gives each
ultralytics train argument its type. docs/grid-schema.md describes the model.
"""

from __future__ import annotations

import difflib
import math
import re
import string
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    PlainValidator,
    ValidationError,
    WithJsonSchema,
    create_model,
    field_validator,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, InitErrorDetails, PydanticCustomError, core_schema

import contract
from contract.errors import InvalidInput, Problem
from contract.objective import Direction
from contract.train_args import BOOL_ARGUMENTS, FLOAT_ARGUMENTS, FRACTION_ARGUMENTS, INT_ARGUMENTS, TRAIN_ARGUMENTS

# --- names and limits -------------------------------------------------------------------------------
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
MAX_GRID_NAME = 40  # Job names are "<template>" and "finalize-<name>": both must stay within 63
OPTIMIZERS = ("SGD", "Adam", "Adamax", "AdamW", "NAdam", "RAdam", "RMSprop", "MuSGD")  # ultralytics' spelling
LANGUAGES = ("en", "fr")
DEFAULT_OPTIMIZER = "SGD"
DEFAULT_NAME_TEMPLATE = "train-{imgsz}-{lr0}-{seed}"  # the lab's; by default "train-" + every axis
DEFAULT_IMAGE = "tp4-trainer:0.1.0"
DEFAULT_FALLBACK = "yolov8n.yaml"
DEFAULT_FINALIZER_DEADLINE_S = 3600  # ranking, the test-split evaluation of one model, registration
# Arguments the train Job owns itself (or sets from job.resources): a grid may not set them.
RESERVED_ARGUMENTS = frozenset({"data", "model", "project", "name", "exist_ok", "resume", "mode", "task",
                                "device", "cfg"})
GRID_ARGUMENTS = TRAIN_ARGUMENTS - RESERVED_ARGUMENTS
MAX_IMGSZ = 4096
MAX_SEED = 2**32  # exclusive: numpy's seeds
MAX_FILE_BYTES = 1_000_000
MAX_DEPTH = 20  # nesting of YAML collections
MAX_ALIASES = 100
DEFAULT_MAX_POINTS = 10_000
DISTRIBUTIONS = ("uniform", "loguniform", "int", "choice")  # an axis of a sampled search (search.mode random/tpe)
# ultralytics' own column names (results.csv, its console) -> the name a train run logs.
ULTRALYTICS_METRICS = {
    "metrics/precision(B)": contract.METRIC_PRECISION, "metrics/recall(B)": contract.METRIC_RECALL,
    "metrics/mAP50(B)": contract.METRIC_MAP50, "metrics/mAP50-95(B)": contract.METRIC_MAP50_95,
    "fitness": contract.METRIC_MAP50_95, "map": contract.METRIC_MAP50_95, "map50": contract.METRIC_MAP50,
    "mp": contract.METRIC_PRECISION, "mr": contract.METRIC_RECALL,
}


# --- scalar types: validation, our message and the JSON schema from one definition -------------------

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


def _fail(kind: str, message: str, value: object) -> PydanticCustomError:
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
            raise _fail("number_type", "must be a number", value)
        try:
            as_float = float(value)
        except OverflowError:
            raise _fail("number_range", "must be a finite number", value) from None
        if not math.isfinite(as_float):
            raise _fail("number_range", "must be a finite number", value)
        problem = _bounds_problem(as_float, ge=ge, gt=gt, le=le, lt=lt)
        if problem:
            raise _fail("number_range", problem, value)
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
            raise _fail("int_type", "must be an integer", value)
        problem = _bounds_problem(value, ge=ge, gt=gt, le=le, lt=lt)
        if problem is None and multiple_of and value % multiple_of:
            problem = f"must be a positive multiple of {multiple_of}"
        if problem:
            raise _fail("int_range", problem, value)
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
            raise _fail("string_type", "must be a string", value)
        if len(value) < min_length:
            raise _fail("string_too_short", "must not be empty" if min_length == 1 else
                        f"must have at least {min_length} characters", value)
        if max_length is not None and len(value) > max_length:
            raise _fail("string_too_long", message or f"must have at most {max_length} characters", value)
        if compiled is not None and ("\n" in value or not compiled.fullmatch(value)):
            raise _fail("string_pattern_mismatch", message or f"must match {pattern}", value)
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
        raise _fail("bool_type", "must be a boolean (true or false)", value)
    return value


def _scalar(value: object) -> object:
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    if isinstance(value, float):
        raise _fail("number_range", "must be a finite number", value)
    raise _fail("scalar_type", "must be a scalar (a number, a string or a boolean)", value)


def canonical_optimizer(value: object) -> str:
    """'sgd' -> 'SGD', 'rmsprop'/'RMSProp' -> 'RMSprop' (ultralytics matches names in any case);
    PydanticCustomError for 'auto' (it ignores lr0 and momentum) and unknown names."""
    if not isinstance(value, str):
        raise _fail("string_type", "must be a string", value)
    for name in OPTIMIZERS:
        if value.lower() == name.lower():
            return name
    raise _fail("optimizer", f"must be one of {', '.join(OPTIMIZERS)}, in any case (not 'auto': ultralytics' "
                "auto optimizer ignores lr0 and momentum)", value)


Boolean = Annotated[bool, PlainValidator(_boolean), WithJsonSchema({"type": "boolean"})]
Scalar = Annotated[Any, PlainValidator(_scalar), WithJsonSchema({"x-kubernetes-preserve-unknown-fields": True})]
Optimizer = Annotated[str, PlainValidator(canonical_optimizer),
                      WithJsonSchema({"type": "string", "description": f"one of {', '.join(OPTIMIZERS)}, any case"})]
Fraction = Annotated[float, number(ge=0, le=1)]

# Each train argument's type; the others get ultralytics' kind (FLOAT/FRACTION/INT/BOOL), or any scalar.
ARGUMENT_TYPES: dict[str, Any] = {
    "imgsz": Annotated[int, integer(ge=32, le=MAX_IMGSZ, multiple_of=32,
                                    description="pixels, a multiple of 32 (the model's largest stride)")],
    "lr0": Annotated[float, number(gt=0, le=1)], "lrf": Annotated[float, number(gt=0, le=1)],
    "epochs": Annotated[int, integer(gt=0, le=10_000)], "batch": Annotated[int, integer(gt=0, le=4096)],
    "nbs": Annotated[int, integer(gt=0, le=4096)], "seed": Annotated[int, integer(ge=0, lt=MAX_SEED)],
    "workers": Annotated[int, integer(ge=0, le=256)], "patience": Annotated[int, integer(ge=0)],
    "close_mosaic": Annotated[int, integer(ge=0)], "save_period": Annotated[int, integer(ge=-1)],
    "warmup_epochs": Annotated[float, number(ge=0, le=10_000)], "time": Annotated[float, number(gt=0)],
    "optimizer": Optimizer,
}


def argument_type(name: str) -> Any:
    """The type of train argument `name` (a key of contract.train_args.TRAIN_ARGUMENTS)."""
    if name in ARGUMENT_TYPES:
        return ARGUMENT_TYPES[name]
    if name in FRACTION_ARGUMENTS:
        return Fraction
    if name in FLOAT_ARGUMENTS:
        return Annotated[float, number()]
    if name in INT_ARGUMENTS:
        return Annotated[int, integer()]
    if name in BOOL_ARGUMENTS:
        return Boolean
    return Scalar


def _normalised(name: str, value: object) -> object:
    """The value as ultralytics sees it: 0 and 0.0 are one learning rate."""
    if name in FRACTION_ARGUMENTS | FLOAT_ARGUMENTS and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def _distinct(name: str) -> Callable[[list[Any]], list[Any]]:
    def check(values: list[Any]) -> list[Any]:
        seen = [(_normalised(name, v), type(v) is bool) for v in values]
        if len({repr(s) for s in seen}) != len(values):
            raise _fail("duplicate", "has duplicate values (after normalisation, e.g. 0 and 0.0)", values)
        return values
    return check


_STRICT = ConfigDict(extra="forbid", frozen=True)
_ARGUMENTS = sorted(GRID_ARGUMENTS)
TrainArguments: type[BaseModel] = create_model(  # type: ignore[call-overload]
    "TrainArguments", __config__=_STRICT,
    **{name: (argument_type(name), None) for name in _ARGUMENTS})
AxisValues: type[BaseModel] = create_model(  # type: ignore[call-overload]
    "AxisValues", __config__=_STRICT,
    **{name: (Annotated[list[argument_type(name)], Field(min_length=1)], None)  # type: ignore[misc]
       for name in _ARGUMENTS})


def _in_order(raw: dict[str, Any], checked: BaseModel) -> dict[str, Any]:
    """The validated values, in the order the grid gives them (axis order is expansion order)."""
    return {name: getattr(checked, name) for name in raw}


def _check_train(value: dict[str, Any]) -> dict[str, Any]:
    return _in_order(value, TrainArguments.model_validate(value))


def _check_axes(value: dict[str, Any]) -> dict[str, list[Any] | dict[str, Any]]:
    """Each axis: a list of values (every mode), or a distribution (`search.mode` random or tpe)."""
    lists = {name: values for name, values in value.items() if not isinstance(values, dict)}
    errors: list[InitErrorDetails] = []
    checked: dict[str, Any] = {}
    try:
        checked.update(_in_order(lists, AxisValues.model_validate(lists)))
    except ValidationError as error:
        if len(lists) == len(value):
            raise
        errors += [InitErrorDetails(type=PydanticCustomError(e["type"], e["msg"].replace("{", "(").replace("}", ")")),
                                    loc=tuple(e["loc"]), input=e.get("input")) for e in error.errors()]
    for name, values in checked.items():
        try:
            _distinct(name)(values)
        except PydanticCustomError as error:
            errors.append(InitErrorDetails(type=error, loc=(name,), input=values))
    for name, spec in value.items():
        if isinstance(spec, dict):
            try:
                checked[name] = _check_distribution(name, spec)
            except _Located as located:
                errors.append(InitErrorDetails(type=located.error, loc=(name, *located.loc), input=located.value))
    if errors:
        raise ValidationError.from_exception_data("axes", errors)
    return {name: checked[name] for name in value if name in checked}


class _Located(Exception):
    def __init__(self, error: PydanticCustomError, loc: tuple[str | int, ...], value: object) -> None:
        super().__init__(str(error))
        self.error, self.loc, self.value = error, loc, value


def _argument_value(name: str, value: object, loc: tuple[str | int, ...]) -> Any:
    """One value of train argument `name`, checked as a grid value (canonical) or _Located."""
    canonical, problem = argument_problem(name, value)
    if problem:
        raise _Located(PydanticCustomError("distribution", problem), loc, value)
    return canonical


def _check_distribution(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    """{uniform: [a, b]} | {loguniform: [a, b]} | {int: [a, b] or [a, b, step]} | {choice: [...]}:
    the sampled values are valid values of the argument (bounds checked as grid values)."""
    if name not in GRID_ARGUMENTS:
        hint = _did_you_mean(name, GRID_ARGUMENTS)
        raise _Located(PydanticCustomError("distribution", "{name} is not an ultralytics train argument that a grid "
                                           "may set{hint}", {"name": name, "hint": hint}), (), spec)
    if len(spec) != 1 or next(iter(spec)) not in DISTRIBUTIONS:
        example = "{loguniform: [0.001, 0.1]}"
        raise _Located(PydanticCustomError("distribution", "must be a list of values or one distribution: "
                                           "{kinds}, e.g. {example}",
                                           {"kinds": ", ".join(DISTRIBUTIONS), "example": example}), (), spec)
    kind, args = next(iter(spec.items()))
    loc: tuple[str | int, ...] = (kind,)
    if not isinstance(args, list):
        raise _Located(_fail("list_type", "must be a list", args), loc, args)
    if kind == "choice":
        if not args:
            raise _Located(PydanticCustomError("distribution", "must be a non-empty list of values"), loc, args)
        values = [_argument_value(name, v, (*loc, i)) for i, v in enumerate(args)]
        try:
            _distinct(name)(values)
        except PydanticCustomError as error:
            raise _Located(error, loc, args) from None
        return {kind: values}
    integral = kind == "int"
    if len(args) not in ((2, 3) if integral else (2,)):
        shape = "[low, high] or [low, high, step]" if integral else "[low, high]"
        raise _Located(PydanticCustomError("distribution", f"must be {shape}"), loc, args)
    for i, bound in enumerate(args):
        if isinstance(bound, bool) or not isinstance(bound, int if integral else (int, float)):
            raise _Located(_fail("distribution", "must be an integer" if integral else "must be a number", bound),
                           (*loc, i), bound)
        if isinstance(bound, float) and not math.isfinite(bound):
            raise _Located(_fail("distribution", "must be a finite number", bound), (*loc, i), bound)
    kind_ok = get_args(argument_type(name))[:1] == ((int,) if integral else (float,))
    if not kind_ok:
        what = "an integer" if integral else "a real-valued"
        raise _Located(PydanticCustomError("distribution", "{name} is not {what} argument: use "
                                           "{other} or choice", {"name": name, "what": what,
                                                                 "other": "uniform/loguniform" if integral else "int"}),
                       loc, args)
    low, high = args[0], args[1]
    if not low < high:
        raise _Located(PydanticCustomError("distribution", "low {low} must be < high {high}",
                                           {"low": low, "high": high}), loc, args)
    if kind == "loguniform" and low <= 0:
        raise _Located(_fail("distribution", "a log-uniform distribution needs low > 0", low), (*loc, 0), low)
    step = args[2] if integral and len(args) == 3 else 1
    if integral and (step <= 0 or (high - low) % step):
        raise _Located(PydanticCustomError("distribution", "step {step} must be > 0 and divide high - low ({span})",
                                           {"step": step, "span": high - low}), loc, args)
    _argument_value(name, low, (*loc, 0))
    _argument_value(name, high, (*loc, 1))
    if integral:  # every value low + k * step must be valid, e.g. imgsz: low and step multiples of 32
        try:
            _argument_value(name, low + step, (*loc, 2) if len(args) == 3 else loc)
        except _Located as located:
            if len(args) == 3:
                raise
            raise _Located(PydanticCustomError(
                "distribution", "without a step every integer from {low} to {high} is sampled, and {value} is "
                "not a valid {name}: give a step, e.g. [{low}, {high}, 32]",
                {"low": low, "high": high, "value": low + 1, "name": name}), loc, args) from located
    return {kind: [float(low), float(high)] if not integral else list(args)}


def argument_problem(name: str, value: object) -> tuple[object, str | None]:
    """Check one train argument as a grid would: (the canonical value, None) or (value, what is wrong).
    Used by the train Job for its own flags."""
    if name in RESERVED_ARGUMENTS:
        return value, "is set by the train Job itself and cannot be set in a grid"
    if name not in TRAIN_ARGUMENTS:
        return value, "is not an ultralytics train argument" + _did_you_mean(name, GRID_ARGUMENTS)
    try:
        checked = TrainArguments.model_validate({name: value})
    except ValidationError as error:
        return value, _message(error.errors()[0])
    return getattr(checked, name), None


def _did_you_mean(name: object, choices: Iterable[str], aliases: dict[str, str] | None = None) -> str:
    if aliases and name in aliases:
        return f" (did you mean {aliases[str(name)]}?)"
    close = difflib.get_close_matches(str(name), list(choices), n=3, cutoff=0.6)
    return f" (did you mean {', '.join(close)}?)" if close else ""


def _metric(value: object) -> str:
    if not isinstance(value, str):
        raise _fail("string_type", "must be a string", value)
    if value not in contract.TRAIN_RUN_METRICS:
        hint = _did_you_mean(value, contract.TRAIN_RUN_METRICS, ULTRALYTICS_METRICS)
        raise PydanticCustomError("unknown_metric", "{name} is not a metric a train run logs (one of {known}){hint}",
                                  {"name": repr(value), "known": ", ".join(contract.TRAIN_RUN_METRICS), "hint": hint})
    return value


# Per-epoch series an early-stopping rule may read (contract.EPOCH_PREFIX + ultralytics' validation columns),
# and which way is better.
EPOCH_METRICS: dict[str, Direction] = {
    **{contract.EPOCH_PREFIX + name: "maximize" for name in contract.FINAL_METRICS},
    **{contract.EPOCH_PREFIX + f"val_{loss}_loss": "minimize" for loss in ("box", "cls", "dfl")},
}


def _epoch_metric(value: object) -> str:
    if not isinstance(value, str):
        raise _fail("string_type", "must be a string", value)
    if value not in EPOCH_METRICS:
        raise PydanticCustomError("unknown_metric", "{name} is not a per-epoch metric a train run logs (one of "
                                  "{known}){hint}", {"name": repr(value), "known": ", ".join(EPOCH_METRICS),
                                                     "hint": _did_you_mean(value, EPOCH_METRICS)})
    return value


Metric = Annotated[str, PlainValidator(_metric),
                   WithJsonSchema({"type": "string", "enum": list(contract.TRAIN_RUN_METRICS)})]


def _quantity(pattern: str, what: str) -> Check:
    def check(value: object) -> str:
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str) or not re.fullmatch(pattern, value):
            raise _fail("quantity", f"not a Kubernetes {what} quantity", value)
        return value
    return Check(check, {"anyOf": [{"type": "integer"}, {"type": "string", "pattern": pattern}],
                         "x-kubernetes-int-or-string": True})


CpuQuantity = Annotated[str, _quantity(r"^\d+(\.\d+)?m?$", "CPU")]
MemoryQuantity = Annotated[str, _quantity(r"^\d+(\.\d+)?([KMGTPE]i?)?$", "memory")]


# --- the model --------------------------------------------------------------------------------------

class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _empty_if_none(value: object) -> object:
    return {} if value is None else value


class Dataset(_Section):
    path: Annotated[str, text(min_length=1, description="DVC-tracked folder, relative to the project folder.")]
    md5: Annotated[str, text(pattern=r"^[0-9a-f]{32}(\.dir)?$",
              message="must be a DVC md5 (32 hex digits, optionally '.dir')",
              description='Pinned DVC md5 (32 hex digits, optionally ".dir").')] | None = None


class Weights(_Section):
    weights: Annotated[str, text(min_length=1,
                  description="A name, a path, an s3:// URI, or an architecture .yaml.")]
    fallback: Annotated[str, text(min_length=1)] = DEFAULT_FALLBACK
    registered_name: Annotated[str, text(min_length=1)] | None = None

    @field_validator("weights", "fallback")
    @classmethod
    def _s3_uri_names_an_object(cls, value: str) -> str:
        if value.startswith("s3://"):
            bucket, _, key = value.removeprefix("s3://").partition("/")
            if not bucket or not key or key.endswith("/"):
                raise _fail("s3_uri", "must name an object: s3://<bucket>/<key>", value)
        return value


class Resources(_Section):
    cpu: CpuQuantity = "1"
    memory: MemoryQuantity = "3Gi"
    gpu: Annotated[int, integer(ge=0, le=64)] = 0


class Toleration(_Section):
    key: Annotated[str, text()] | None = None
    operator: Literal["Exists", "Equal"] | None = None
    value: Annotated[str, text()] | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    tolerationSeconds: Annotated[int, integer()] | None = None  # noqa: N815 (Kubernetes' name)


def _tolerations(value: list[Toleration]) -> list[dict[str, Any]]:
    return [t.model_dump(exclude_none=True) for t in value]


class JobSettings(_Section):
    name_template: Annotated[str, text(min_length=1, max_length=200,
                        description='Job name from the axis values, e.g. "train-{imgsz}-{lr0}-{seed}".'
                        )] = DEFAULT_NAME_TEMPLATE
    image: Annotated[str, text(min_length=1)] = DEFAULT_IMAGE
    parallelism: Annotated[int, integer(gt=0)] | None = None  # None: the CPU count / the grid size
    backoff_limit: Annotated[int, integer(ge=0, le=100)] = 1
    active_deadline_seconds: Annotated[int, integer(gt=0, description="each train Job's deadline, from its start")
                                       ] = 3600
    finalizer_deadline_seconds: Annotated[int, integer(gt=0, description="the finalizer Job's own deadline, from "
                                                       "its start (it ranks every run: a large grid needs more)")
                                          ] = DEFAULT_FINALIZER_DEADLINE_S
    failure_budget: Annotated[int, integer(ge=0)] | None = None  # failed points tolerated
    ttl_seconds_after_finished: Annotated[int, integer(ge=0)] = 86400
    resources: Annotated[Resources, BeforeValidator(_empty_if_none)] = Resources()
    node_selector: Annotated[dict[str, Annotated[str, text()]], BeforeValidator(_empty_if_none)] = {}
    tolerations: Annotated[list[dict[str, Any]], BeforeValidator(_empty_if_none),
                           PlainValidator(lambda v: _tolerations(_TOLERATIONS.validate_python(v))),
                           WithJsonSchema({"type": "array", "items": Toleration.model_json_schema()})] = []
    queue: Annotated[str, text(pattern=DNS_LABEL, max_length=63,
                message="must be a Kueue LocalQueue name (a lowercase DNS label)",
                description="Kueue LocalQueue; the Jobs are created suspended.")] | None = None

    @field_validator("name_template")
    @classmethod
    def _template_fields(cls, value: str) -> str:
        try:
            parsed = list(string.Formatter().parse(value))
        except ValueError as error:
            raise _fail("template", f"is not a valid template ({error})", value) from None
        for _, field, spec, conversion in parsed:
            if field is not None and (spec or conversion or not field.isidentifier()):
                raise _fail("template", "may only hold plain {axis} fields (no format spec, conversion or index)",
                            value)
        return value


class SecondObjective(_Section):
    """A second objective (a cost, usually): the report shows the Pareto front of both objectives, and the
    candidate is the best `metric` among the front's points within `tolerance` of the best first objective."""

    metric: Metric
    direction: Direction = "minimize"
    tolerance: Annotated[float, number(ge=0, description="absolute, in the first objective's unit")] = 0.0


class Objective(_Section):
    metric: Metric = contract.METRIC_MAP50_95
    direction: Direction = "maximize"
    second: SecondObjective | None = None

    @model_validator(mode="after")
    def _two_metrics(self) -> Objective:
        if self.second is not None and self.second.metric == self.metric:
            raise PydanticCustomError("objective", "second.metric must differ from metric ({metric})",
                                      {"metric": self.metric})
        return self


class Constraint(_Section):
    """A bound on a metric's seed mean: a configuration outside it is excluded from the ranking."""

    metric: Metric
    min: Annotated[float, number()] | None = None
    max: Annotated[float, number()] | None = None

    @model_validator(mode="after")
    def _possible(self) -> Constraint:
        low, high = contract.METRIC_RANGES[self.metric]
        if self.min is None and self.max is None:
            raise PydanticCustomError("constraint", "needs min or max")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise PydanticCustomError("constraint", "min {min} > max {max}: no value can meet it",
                                      {"min": self.min, "max": self.max})
        if (self.min is not None and self.min > high) or (self.max is not None and self.max < low):
            raise PydanticCustomError("constraint", "{metric} is in [{low}, {high}]: this bound can never hold",
                                      {"metric": self.metric, "low": low, "high": high})
        return self

    def violation(self, value: float | None) -> str | None:
        """'min' or 'max' when `value` breaks this bound ('min' also when it is missing: None or NaN)."""
        if value is None or math.isnan(value):
            return "min" if self.min is not None else "max"
        if self.min is not None and value < self.min:
            return "min"
        if self.max is not None and value > self.max:
            return "max"
        return None

    def limit(self, bound: str) -> float:
        """The bound named 'min' or 'max'."""
        limit = self.min if bound == "min" else self.max
        assert limit is not None
        return float(limit)


class Search(_Section):
    """How points are chosen: `grid` (the cartesian product of the axes' lists), `random` (`trials` points
    sampled from the axes, seeded) or `tpe` (Optuna's TPE sampler, `trials` points asked as earlier ones end)."""

    mode: Literal["grid", "random", "tpe"] = "grid"
    trials: Annotated[int, integer(gt=0, description="points to sample (random, tpe)")] | None = None
    seed: Annotated[int, integer(ge=0, lt=MAX_SEED, description="the sampler's seed")] = 0
    startup_trials: Annotated[int, integer(ge=1, description="tpe: random points before TPE models the "
                                           "results; default a quarter of trials, 2 to 10")] | None = None


class EarlyStopping(_Section):
    """Stop hopeless running points from the per-epoch metrics they log to MLflow, by Optuna's pruner of `rule`:
    median (worse than the median of finished points at the same epoch), successive_halving (not in the top
    1/reduction_factor of its rung), threshold (worse than `threshold`). Never before `min_epochs`."""

    rule: Literal["median", "successive_halving", "threshold"]
    metric: Annotated[str, PlainValidator(lambda v: _epoch_metric(v)),
                      WithJsonSchema({"type": "string", "enum": list(EPOCH_METRICS)})] = "epoch/mAP50-95"
    min_epochs: Annotated[int, integer(ge=1)] = 1
    startup_trials: Annotated[int, integer(ge=0, description="median: points that must finish first")] = 1
    reduction_factor: Annotated[int, integer(ge=2, le=100)] = 3
    threshold: Annotated[float, number()] | None = None
    grace_seconds: Annotated[int, integer(gt=0, description="a stopped point's Job is deleted if it has not "
                                          "ended this long after the request")] = 600

    @model_validator(mode="after")
    def _threshold(self) -> EarlyStopping:
        if (self.rule == "threshold") != (self.threshold is not None):
            raise PydanticCustomError("early_stopping", "threshold is required by rule threshold, and only by it")
        return self

    @property
    def direction(self) -> Direction:
        return EPOCH_METRICS[self.metric]


class Confirm(_Section):
    """After the search, re-run the `top` configurations with each of `seeds` (seeds already run are not run
    again) and decide on the repeats: a mean with a `confidence` interval per configuration, and whether the
    two best differ beyond the noise. When they cannot be separated, `tie` decides: the cheaper
    (lower mean train_seconds), the faster (lower mean inference_ms_per_image), or no promotion."""

    top: Annotated[int, integer(ge=2, le=20)] = 2
    seeds: Annotated[list[Annotated[int, integer(ge=0, lt=MAX_SEED)]], Field(min_length=1)]
    confidence: Annotated[float, number(ge=0.5, lt=1)] = 0.95
    tie: Literal["cheaper", "faster", "no"] = "no"

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, value: list[int]) -> list[int]:
        twice = sorted({seed for seed in value if value.count(seed) > 1})
        if twice:
            raise PydanticCustomError("duplicate", "has duplicate seeds: {twice}", {"twice": twice})
        return value


class Gates(_Section):
    """Promotion gates. `confidence` is the level of every interval the decision rests on (the separation of the two
    best configurations over their seeds, the candidate against the champion on the test images); `tie` decides when
    the two best configurations cannot be separated on this data: keep the `best` mean (the headline says the data
    cannot tell), the `cheaper` (lower mean train_seconds), the `faster` (lower mean inference_ms_per_image), or `no`
    promotion. With `confirm:`, its own `confidence` and `tie` apply instead."""

    min_success_fraction: Fraction = 0.75
    min_objective: Annotated[float, number()] = 0.0
    champion_margin: Annotated[float, number(ge=0)] = 0.0
    confidence: Annotated[float, number(ge=0.5, lt=1)] = 0.95
    tie: Literal["best", "cheaper", "faster", "no"] = "best"


class Report(_Section):
    language: Literal["en", "fr"] = "en"


_TOLERATIONS: Any = None  # set below (a TypeAdapter needs Toleration defined)

TrainSection = Annotated[dict[str, Any], BeforeValidator(_empty_if_none), PlainValidator(
    lambda v: _check_train(_mapping(v))), WithJsonSchema({
        "type": "object", "x-kubernetes-preserve-unknown-fields": True,
        "description": "Fixed ultralytics train arguments (scalars), e.g. epochs, batch, optimizer."})]
AxesSection = Annotated[dict[str, Any], PlainValidator(lambda v: _check_axes(_axes_mapping(v))), WithJsonSchema({
    "type": "object", "minProperties": 1,
    "description": "Axes: each a non-empty list of values of an ultralytics train argument (search.mode grid, "
                   "random, tpe) or a distribution (random, tpe): {uniform: [a, b]}, {loguniform: [a, b]}, "
                   "{int: [a, b, step]}, {choice: [...]}.",
    "additionalProperties": {"x-kubernetes-preserve-unknown-fields": True}})]


def _mapping(value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail("dict_type", "must be a mapping", value)
    return value


def _axes_mapping(value: object) -> dict[str, Any]:
    if value is None or value == {}:
        raise PydanticCustomError("axes", "must declare at least one axis")
    return _mapping(value)


class GridSpec(_Section):
    """A validated grid.yaml, defaults filled. grid.json stores `to_dict()`; `model_validate` reads it back."""

    name: Annotated[str, text(pattern=DNS_LABEL, max_length=MAX_GRID_NAME,
               message=f"must be a lowercase DNS label (a-z, 0-9, '-') of at most {MAX_GRID_NAME} characters",
               description="Lowercase DNS label; labels the Jobs and names reports/<name>/.")]
    experiment: Annotated[str, text(min_length=1, max_length=250,
                     description="MLflow experiment, by default the grid name.")] = ""  # filled by _defaults
    dataset: Dataset
    model: Weights
    train: TrainSection = {}
    axes: AxesSection
    job: Annotated[JobSettings, BeforeValidator(_empty_if_none)] = JobSettings()
    search: Annotated[Search, BeforeValidator(_empty_if_none)] = Search()
    early_stopping: EarlyStopping | None = None
    confirm: Confirm | None = None
    objective: Annotated[Objective, BeforeValidator(_empty_if_none)] = Objective()
    constraints: Annotated[list[Constraint], BeforeValidator(lambda v: [] if v is None else v)] = []
    gates: Annotated[Gates, BeforeValidator(_empty_if_none)] = Gates()
    report: Annotated[Report, BeforeValidator(_empty_if_none)] = Report()

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=(),
                              json_schema_extra={"description": "The content of a grid.yaml file "
                                                                "(docs/grid-schema.md)."})

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data: Any) -> Any:
        """Defaults that depend on other fields, applied only where the grid sets nothing."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        name = data.get("name")
        if "experiment" not in data and isinstance(name, str):
            data["experiment"] = name
        model = data.get("model")
        if isinstance(model, dict) and "registered_name" not in model and isinstance(name, str):
            data["model"] = {**model, "registered_name": f"{name}-model"}
        train, axes = data.get("train"), data.get("axes")
        job = data.get("job")
        job = {} if job is None else job
        if isinstance(job, dict) and "name_template" not in job and isinstance(axes, dict) and axes \
                and all(isinstance(axis, str) for axis in axes):
            data["job"] = {**job, "name_template": "train-" + "-".join(f"{{{axis}}}" for axis in axes)}
        train = {} if train is None else train
        optimizer_axis = isinstance(axes, dict) and "optimizer" in axes
        if isinstance(train, dict) and "optimizer" not in train and not optimizer_axis:
            data["train"] = {**train, "optimizer": DEFAULT_OPTIMIZER}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> GridSpec:
        errors = [InitErrorDetails(type=error, loc=loc, input=value)
                  for loc, error, value in cross_field_problems(self)]
        if errors:
            raise ValidationError.from_exception_data("GridSpec", errors)
        return self

    # -- flat views, for the code that renders and ranks ------------------------------------------------
    @property
    def dataset_path(self) -> str:
        return str(self.dataset.path)

    @property
    def dataset_md5(self) -> str | None:
        return self.dataset.md5

    @property
    def weights(self) -> str:
        return str(self.model.weights)

    @property
    def fallback_weights(self) -> str:
        return str(self.model.fallback)

    @property
    def registered_model(self) -> str:
        return str(self.model.registered_name or f"{self.name}-model")

    @property
    def objective_metric(self) -> str:
        return self.objective.metric

    @property
    def objective_direction(self) -> Direction:
        return self.objective.direction

    @property
    def min_success_fraction(self) -> float:
        return float(self.gates.min_success_fraction)

    @property
    def min_objective(self) -> float:
        return float(self.gates.min_objective)

    @property
    def champion_margin(self) -> float:
        return float(self.gates.champion_margin)

    @property
    def language(self) -> str:
        return self.report.language

    @property
    def n_points(self) -> int:
        """The number of train points at most: the product of the axes' lengths (grid) or the trials
        (random, tpe), plus the confirmation runs (confirm.top x confirm.seeds)."""
        return self.n_searched + (self.confirm.top * len(self.confirm.seeds) if self.confirm else 0)

    @property
    def n_searched(self) -> int:
        """The points of the search itself: the axes' product (grid), or `search.trials`."""
        if self.search.mode == "grid":
            return math.prod(len(values) for values in self.axes.values())
        return int(self.search.trials or 0)

    @property
    def sampled(self) -> bool:
        """True when points are sampled (search.mode random or tpe), not enumerated."""
        return self.search.mode != "grid"

    def to_dict(self) -> dict[str, Any]:
        """grid.yaml's own shape, defaults filled, JSON-ready: what grid.json's "spec" holds."""
        return self.model_dump(mode="json")

    def with_weights(self, weights: str) -> GridSpec:
        return self.model_copy(update={"model": self.model.model_copy(update={"weights": weights})})

    def with_job(self, **changes: Any) -> GridSpec:
        """A copy with job settings replaced (values already valid: node_selector, tolerations, image...)."""
        return self.model_copy(update={"job": self.job.model_copy(update=changes)})


def cross_field_problems(grid: GridSpec) -> list[tuple[tuple[str | int, ...], PydanticCustomError, object]]:
    """What no single field shows: an argument set twice, a gate no metric value can pass."""
    problems: list[tuple[tuple[str | int, ...], PydanticCustomError, object]] = []
    for name in grid.axes:
        if name in grid.train:
            problems.append((("axes", name), PydanticCustomError(
                "twice", "is also fixed in train.{name}: set it in one place", {"name": name}), grid.axes[name]))
    problems += _search_problems(grid)
    low, high = contract.METRIC_RANGES[grid.objective.metric]
    threshold = float(grid.gates.min_objective)
    maximize = grid.objective.direction == "maximize"
    if (maximize and threshold > high) or (not maximize and threshold < low):
        problems.append((("gates", "min_objective"), PydanticCustomError(
            "gate", "{metric} is in [{low}, {high}]: a gate at {value} can never be met",
            {"metric": grid.objective.metric, "low": low, "high": high, "value": threshold}), threshold))
    return problems


def _search_problems(grid: GridSpec) -> list[tuple[tuple[str | int, ...], PydanticCustomError, object]]:
    problems: list[tuple[tuple[str | int, ...], PydanticCustomError, object]] = []
    mode = grid.search.mode
    if mode == "grid":
        for name, values in grid.axes.items():
            if isinstance(values, dict):
                problems.append((("axes", name), PydanticCustomError(
                    "distribution", "a distribution needs search.mode random or tpe (a grid enumerates lists of "
                    "values)"), values))
        if grid.search.trials is not None:
            problems.append((("search", "trials"), PydanticCustomError(
                "search", "is for search.mode random or tpe (a grid's points are its axes' product)"),
                grid.search.trials))
    elif grid.search.trials is None:
        problems.append((("search", "trials"), PydanticCustomError(
            "search", "is required by search.mode {mode}: how many points to sample", {"mode": mode}), None))
    if grid.confirm is not None and "seed" in grid.axes and isinstance(grid.axes["seed"], dict):
        problems.append((("axes", "seed"), PydanticCustomError(
            "confirm", "is sampled, and confirm re-runs configurations with other seeds: fix the seed in train "
            "or give a list"), None))
    problems += _ignored_settings(grid)
    space = _discrete_size(grid)
    if grid.sampled and space is not None and int(grid.search.trials or 0) > space:
        problems.append((("search", "trials"), PydanticCustomError(
            "search", "{trials} is more than the {space} distinct points of these axes: lower it, or use "
            "search.mode grid", {"trials": grid.search.trials, "space": space}), grid.search.trials))
    return problems


def _discrete_size(grid: GridSpec) -> int | None:
    """The number of distinct points of axes that are all lists, choices or int ranges; None otherwise."""
    size = 1
    for axis in grid.axes.values():
        if isinstance(axis, list):
            size *= len(axis)
            continue
        kind, args = next(iter(axis.items()))
        if kind == "choice":
            size *= len(args)
        elif kind == "int":
            size *= (int(args[1]) - int(args[0])) // (int(args[2]) if len(args) == 3 else 1) + 1
        else:
            return None
    return size


def _ignored_settings(grid: GridSpec) -> list[tuple[tuple[str | int, ...], PydanticCustomError, object]]:
    """Settings that would do nothing here: refused, so that nobody believes they act."""
    problems: list[tuple[tuple[str | int, ...], PydanticCustomError, object]] = []
    search, rule = grid.search, grid.early_stopping
    if search.startup_trials is not None and search.mode != "tpe":
        problems.append((("search", "startup_trials"), PydanticCustomError(
            "search", "is for search.mode tpe (random start-up points before TPE models the results)"),
            search.startup_trials))
    elif search.startup_trials is not None and search.trials is not None and search.startup_trials > search.trials:
        problems.append((("search", "startup_trials"), PydanticCustomError(
            "search", "{startup} is more than search.trials ({trials}): TPE would never model anything",
            {"startup": search.startup_trials, "trials": search.trials}), search.startup_trials))
    epochs = grid.train.get("epochs")
    if rule is not None and isinstance(epochs, int) and "epochs" not in grid.axes and rule.min_epochs >= epochs:
        problems.append((("early_stopping", "min_epochs"), PydanticCustomError(
            "early_stopping", "{min} is not below train.epochs ({epochs}): no point could ever be stopped",
            {"min": rule.min_epochs, "epochs": epochs}), rule.min_epochs))
    return problems


from pydantic import TypeAdapter  # noqa: E402  (needs Toleration)

_TOLERATIONS = TypeAdapter(list[Toleration])
TOP_KEYS = frozenset(GridSpec.model_fields)


# --- errors: pydantic's, in our words and locations --------------------------------------------------

_KINDS = {"int_type": "an integer", "string_type": "a string", "float_type": "a number", "bool_type": "a boolean",
          "dict_type": "a mapping", "model_type": "a mapping", "model_attributes_type": "a mapping",
          "list_type": "a list"}


def location(loc: Iterable[str | int]) -> str:
    """('axes', 'lr0', 1) -> 'axes.lr0[1]'."""
    where = ""
    for part in loc:
        where += f"[{part}]" if isinstance(part, int) else (f".{part}" if where else str(part))
    return where


def _model_at(loc: tuple[str | int, ...]) -> type[BaseModel] | None:
    cls: type[BaseModel] = GridSpec
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


def _message(error: Any) -> str:
    kind, loc, value = error["type"], tuple(error["loc"]), error.get("input")
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        name = loc[-1]
        if loc[:1] in (("train",), ("axes",)) and len(loc) == 2:
            if name in RESERVED_ARGUMENTS:
                return "is set by the train Job itself and cannot be set in a grid"
            return "is not an ultralytics train argument" + _did_you_mean(name, GRID_ARGUMENTS)
        model = _model_at(loc[:-1])
        allowed = sorted(model.model_fields) if model else []
        return f"unknown key{_did_you_mean(name, allowed)} (allowed: {', '.join(allowed)})"
    if kind in _KINDS:
        return f"must be {_KINDS[kind]}, got {describe(value)}"
    if kind == "too_short":
        return "must be a non-empty list of values"
    if kind in ("literal_error", "enum"):
        return f"must be one of {error.get('ctx', {}).get('expected', '')}, got {describe(value)}"
    message = str(error["msg"])
    return message.removeprefix("Value error, ")


def problems_of(error: ValidationError, *, source: str, prefix: str = "") -> list[Problem]:
    """A pydantic ValidationError as our Problems, each located like `grid.yaml: axes.lr0[1]`."""
    found: list[Problem] = []
    for item in error.errors():
        loc = tuple(part for part in item["loc"] if not (isinstance(part, str) and part.startswith("function-")))
        if item["type"] in ("list_type", "too_short") and loc[:1] == ("axes",):
            message = "must be a non-empty list of values" + (
                f", got {describe(item.get('input'))}" if item["type"] == "list_type" else "")
        else:
            message = _message(item)
        where = location(loc)
        where = f"{prefix}.{where}" if prefix and where else (prefix or where)
        problem = Problem(f"{source}: {where}" if where else source, message)
        if problem not in found:
            found.append(problem)
    return found


# --- reading --------------------------------------------------------------------------------------------

def parse_grid(raw: Any, *, source: str, base_dir: Path | None, max_points: int = DEFAULT_MAX_POINTS) -> GridSpec:
    """Validate a parsed grid.yaml; raise InvalidInput listing every problem.

    `base_dir` is the project folder the Jobs run in (dataset.path is relative to it); None for a
    Grid resource, whose Jobs pull the dataset from the DVC remote: its md5 must then be pinned.
    `max_points` bounds the number of train points (each is a Job)."""
    problems: list[Problem] = []
    grid: GridSpec | None = None
    if not isinstance(raw, dict):
        raise InvalidInput([Problem(source, f"must be a mapping (a grid.yaml document), got {describe(raw)}")])
    try:
        grid = GridSpec.model_validate(raw)
    except ValidationError as error:
        problems += problems_of(error, source=source)
        problems += _cross_field_problems_of_raw(raw, source=source, known=problems)
    problems += _dataset_problems(raw.get("dataset"), base_dir=base_dir, source=source)
    if grid is not None and grid.n_points > max_points:
        where = "search.trials" if grid.sampled else "axes"
        extra = f", with confirm's {grid.n_points - grid.n_searched} re-runs" if grid.confirm else ""
        problems.append(Problem(f"{source}: {where}", f"gives {grid.n_points} points{extra}, more than the limit "
                                f"of {max_points} (raise it with --max-points if the cluster can take them)"))
    if problems or grid is None:
        raise InvalidInput(problems)
    return grid


def _cross_field_problems_of_raw(raw: dict[str, Any], *, source: str, known: list[Problem]) -> list[Problem]:
    """The 'set twice' problem even when another field is wrong (pydantic runs cross-field checks last)."""
    train, axes = raw.get("train") or {}, raw.get("axes") or {}
    if not isinstance(train, dict) or not isinstance(axes, dict):
        return []
    found = [Problem(f"{source}: axes.{name}", f"is also fixed in train.{name}: set it in one place")
             for name in axes if name in train]
    return [p for p in found if p not in known]


def _dataset_problems(dataset: Any, *, base_dir: Path | None, source: str) -> list[Problem]:
    if not isinstance(dataset, dict) or not isinstance(dataset.get("path"), str) or not dataset["path"]:
        return []
    path, md5 = dataset["path"], dataset.get("md5")
    if Path(path).is_absolute() or ".." in Path(path).parts:
        return [Problem(f"{source}: dataset.path", f"must be a path inside the project folder, got {path!r}")]
    if base_dir is None:
        if md5 is None:
            return [Problem(f"{source}: dataset.md5", "is required in a Grid resource (no <path>.dvc to read it "
                            "from): submit with `python -m controller --backend kubernetes submit-grid`, "
                            "which pins it")]
        return []
    folder = base_dir / path
    pointer = folder.with_name(folder.name + ".dvc")
    if not folder.is_dir() and not pointer.is_file():
        return [Problem(f"{source}: dataset.path", f"no dataset at {folder} and no DVC pointer {pointer} "
                        "(build it with `python -m controller data build`)")]
    return []


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


def load_grid(path: Path, *, base_dir: Path | None = None, max_points: int = DEFAULT_MAX_POINTS) -> GridSpec:
    """Read and validate a grid file; dataset.path is relative to `base_dir`, the
    project folder the Jobs run in (default: the grid file's folder). InvalidInput listing every problem."""
    raw = read_yaml(path)
    return parse_grid(raw, source=str(path), base_dir=base_dir or path.resolve().parent, max_points=max_points)
