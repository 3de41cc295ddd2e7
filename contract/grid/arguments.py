"""ultralytics' train arguments as grid values: each argument's type, an axis's list or distribution, and the
train Job's own check of one flag (`argument_problem`)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Annotated, Any, get_args

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, ValidationError, WithJsonSchema, create_model
from pydantic_core import InitErrorDetails, PydanticCustomError

from contract.grid.limits import DISTRIBUTIONS, GRID_ARGUMENTS, MAX_IMGSZ, MAX_SEED, OPTIMIZERS, RESERVED_ARGUMENTS
from contract.grid.messages import did_you_mean, message
from contract.grid.scalars import Boolean, Fraction, Scalar, fail, integer, number
from contract.train_args import BOOL_ARGUMENTS, FLOAT_ARGUMENTS, FRACTION_ARGUMENTS, INT_ARGUMENTS, TRAIN_ARGUMENTS


def canonical_optimizer(value: object) -> str:
    """'sgd' -> 'SGD', 'rmsprop'/'RMSProp' -> 'RMSprop' (ultralytics matches names in any case);
    PydanticCustomError for 'auto' (it ignores lr0 and momentum) and unknown names."""
    if not isinstance(value, str):
        raise fail("string_type", "must be a string", value)
    for name in OPTIMIZERS:
        if value.lower() == name.lower():
            return name
    raise fail("optimizer", f"must be one of {', '.join(OPTIMIZERS)}, in any case (not 'auto': ultralytics' "
                "auto optimizer ignores lr0 and momentum)", value)


Optimizer = Annotated[str, PlainValidator(canonical_optimizer),
                      WithJsonSchema({"type": "string", "description": f"one of {', '.join(OPTIMIZERS)}, any case"})]

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
            raise fail("duplicate", "has duplicate values (after normalisation, e.g. 0 and 0.0)", values)
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


def check_train(value: dict[str, Any]) -> dict[str, Any]:
    return _in_order(value, TrainArguments.model_validate(value))


def check_axes(value: dict[str, Any]) -> dict[str, list[Any] | dict[str, Any]]:
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
        hint = did_you_mean(name, GRID_ARGUMENTS)
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
        raise _Located(fail("list_type", "must be a list", args), loc, args)
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
            raise _Located(fail("distribution", "must be an integer" if integral else "must be a number", bound),
                           (*loc, i), bound)
        if isinstance(bound, float) and not math.isfinite(bound):
            raise _Located(fail("distribution", "must be a finite number", bound), (*loc, i), bound)
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
        raise _Located(fail("distribution", "a log-uniform distribution needs low > 0", low), (*loc, 0), low)
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
        return value, "is not an ultralytics train argument" + did_you_mean(name, GRID_ARGUMENTS)
    try:
        checked = TrainArguments.model_validate({name: value})
    except ValidationError as error:
        return value, message(error.errors()[0])
    return getattr(checked, name), None

