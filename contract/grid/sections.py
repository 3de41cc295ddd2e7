"""The sections of grid.yaml, one model each (dataset, model, job, search, early_stopping, confirm,
objective, constraints, gates, report), and the train/axes mappings of ultralytics arguments."""

from __future__ import annotations

import math
import string
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    TypeAdapter,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

import contract
from contract.grid.arguments import check_axes, check_train
from contract.grid.limits import (
    DEFAULT_FALLBACK,
    DEFAULT_FINALIZER_DEADLINE_S,
    DEFAULT_IMAGE,
    DEFAULT_NAME_TEMPLATE,
    DNS_LABEL,
    MAX_SEED,
)
from contract.grid.metrics import EPOCH_METRICS, EpochMetric, Metric
from contract.grid.quantities import CpuQuantity, MemoryQuantity
from contract.grid.scalars import Fraction, fail, integer, number, text
from contract.objective import Direction


class Section(BaseModel):
    """A section of grid.yaml: unknown keys refused, values frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def empty_if_none(value: object) -> object:
    """A section left empty in YAML (`job:` alone, read as null) is the section with its defaults."""
    return {} if value is None else value


class Dataset(Section):
    path: Annotated[str, text(min_length=1, description="DVC-tracked folder, relative to the project folder.")]
    md5: Annotated[str, text(pattern=r"^[0-9a-f]{32}(\.dir)?$",
              message="must be a DVC md5 (32 hex digits, optionally '.dir')",
              description='Pinned DVC md5 (32 hex digits, optionally ".dir").')] | None = None


class Weights(Section):
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
                raise fail("s3_uri", "must name an object: s3://<bucket>/<key>", value)
        return value


class Resources(Section):
    cpu: CpuQuantity = "1"
    memory: MemoryQuantity = "3Gi"
    gpu: Annotated[int, integer(ge=0, le=64)] = 0


class Toleration(Section):
    key: Annotated[str, text()] | None = None
    operator: Literal["Exists", "Equal"] | None = None
    value: Annotated[str, text()] | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    tolerationSeconds: Annotated[int, integer()] | None = None  # noqa: N815 (Kubernetes' name)


_TOLERATIONS = TypeAdapter(list[Toleration])


def _tolerations(value: list[Toleration]) -> list[dict[str, Any]]:
    return [t.model_dump(exclude_none=True) for t in value]


class JobSettings(Section):
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
    resources: Annotated[Resources, BeforeValidator(empty_if_none)] = Resources()
    node_selector: Annotated[dict[str, Annotated[str, text()]], BeforeValidator(empty_if_none)] = {}
    tolerations: Annotated[list[dict[str, Any]], BeforeValidator(empty_if_none),
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
            raise fail("template", f"is not a valid template ({error})", value) from None
        for _, field, spec, conversion in parsed:
            if field is not None and (spec or conversion or not field.isidentifier()):
                raise fail("template", "may only hold plain {axis} fields (no format spec, conversion or index)",
                            value)
        return value


class SecondObjective(Section):
    """A second objective (a cost, usually): the report shows the Pareto front of both objectives, and the
    candidate is the best `metric` among the front's points within `tolerance` of the best first objective."""

    metric: Metric
    direction: Direction = "minimize"
    tolerance: Annotated[float, number(ge=0, description="absolute, in the first objective's unit")] = 0.0


class Objective(Section):
    metric: Metric = contract.METRIC_MAP50_95
    direction: Direction = "maximize"
    second: SecondObjective | None = None

    @model_validator(mode="after")
    def _two_metrics(self) -> Objective:
        if self.second is not None and self.second.metric == self.metric:
            raise PydanticCustomError("objective", "second.metric must differ from metric ({metric})",
                                      {"metric": self.metric})
        return self


class Constraint(Section):
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


class Search(Section):
    """How points are chosen: `grid` (the cartesian product of the axes' lists), `random` (`trials` points
    sampled from the axes, seeded) or `tpe` (Optuna's TPE sampler, `trials` points asked as earlier ones end)."""

    mode: Literal["grid", "random", "tpe"] = "grid"
    trials: Annotated[int, integer(gt=0, description="points to sample (random, tpe)")] | None = None
    seed: Annotated[int, integer(ge=0, lt=MAX_SEED, description="the sampler's seed")] = 0
    startup_trials: Annotated[int, integer(ge=1, description="tpe: random points before TPE models the "
                                           "results; default a quarter of trials, 2 to 10")] | None = None


class EarlyStopping(Section):
    """Stop hopeless running points from the per-epoch metrics they log to MLflow, by Optuna's pruner of `rule`:
    median (worse than the median of finished points at the same epoch), successive_halving (not in the top
    1/reduction_factor of its rung), threshold (worse than `threshold`). Never before `min_epochs`."""

    rule: Literal["median", "successive_halving", "threshold"]
    metric: EpochMetric = "epoch/mAP50-95"
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


class Confirm(Section):
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


class Gates(Section):
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


class Report(Section):
    language: Literal["en", "fr"] = "en"


TrainSection = Annotated[dict[str, Any], BeforeValidator(empty_if_none), PlainValidator(
    lambda v: check_train(_mapping(v))), WithJsonSchema({
        "type": "object", "x-kubernetes-preserve-unknown-fields": True,
        "description": "Fixed ultralytics train arguments (scalars), e.g. epochs, batch, optimizer."})]
AxesSection = Annotated[dict[str, Any], PlainValidator(lambda v: check_axes(_axes_mapping(v))), WithJsonSchema({
    "type": "object", "minProperties": 1,
    "description": "Axes: each a non-empty list of values of an ultralytics train argument (search.mode grid, "
                   "random, tpe) or a distribution (random, tpe): {uniform: [a, b]}, {loguniform: [a, b]}, "
                   "{int: [a, b, step]}, {choice: [...]}.",
    "additionalProperties": {"x-kubernetes-preserve-unknown-fields": True}})]


def _mapping(value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise fail("dict_type", "must be a mapping", value)
    return value


def _axes_mapping(value: object) -> dict[str, Any]:
    if value is None or value == {}:
        raise PydanticCustomError("axes", "must declare at least one axis")
    return _mapping(value)
