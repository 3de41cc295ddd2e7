"""GridSpec: a whole validated grid.yaml, defaults filled, and its one flattened view for the code that renders,
searches and ranks (`dataset_path`, `objective_metric`, `registered_model`, ...)."""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import BeforeValidator, ConfigDict, ValidationError, model_validator
from pydantic_core import InitErrorDetails

from contract.grid.limits import DEFAULT_OPTIMIZER, DNS_LABEL, MAX_GRID_NAME
from contract.grid.rules import cross_field_problems
from contract.grid.scalars import text
from contract.grid.sections import (
    AxesSection,
    Confirm,
    Constraint,
    Dataset,
    EarlyStopping,
    Gates,
    JobSettings,
    Objective,
    Report,
    Search,
    Section,
    TrainSection,
    Weights,
    empty_if_none,
)
from contract.objective import Direction


class GridSpec(Section):
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
    job: Annotated[JobSettings, BeforeValidator(empty_if_none)] = JobSettings()
    search: Annotated[Search, BeforeValidator(empty_if_none)] = Search()
    early_stopping: EarlyStopping | None = None
    confirm: Confirm | None = None
    objective: Annotated[Objective, BeforeValidator(empty_if_none)] = Objective()
    constraints: Annotated[list[Constraint], BeforeValidator(lambda v: [] if v is None else v)] = []
    gates: Annotated[Gates, BeforeValidator(empty_if_none)] = Gates()
    report: Annotated[Report, BeforeValidator(empty_if_none)] = Report()

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


TOP_KEYS = frozenset(GridSpec.model_fields)
