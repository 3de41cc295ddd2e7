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

One module per concern, each importing only those listed before it:
limits (names, limits, defaults), messages (pydantic's errors in our words), scalars (the scalar
types), arguments (ultralytics' train arguments as grid values), metrics (metric names),
quantities (Kubernetes quantities), sections (one model per section), rules (cross-field rules),
spec (GridSpec and its one flattened view), yaml_reader (the YAML loader), loading (parse, load).
This package hands their names on: `from contract.grid import GridSpec` is the way in.
"""

from contract.grid.arguments import (
    ARGUMENT_TYPES,
    AxisValues,
    Optimizer,
    TrainArguments,
    argument_problem,
    argument_type,
    canonical_optimizer,
)
from contract.grid.limits import (
    DEFAULT_FALLBACK,
    DEFAULT_FINALIZER_DEADLINE_S,
    DEFAULT_IMAGE,
    DEFAULT_MAX_POINTS,
    DEFAULT_NAME_TEMPLATE,
    DEFAULT_OPTIMIZER,
    DISTRIBUTIONS,
    DNS_LABEL,
    GRID_ARGUMENTS,
    LANGUAGES,
    MAX_ALIASES,
    MAX_DEPTH,
    MAX_FILE_BYTES,
    MAX_GRID_NAME,
    MAX_IMGSZ,
    MAX_SEED,
    OPTIMIZERS,
    RESERVED_ARGUMENTS,
)
from contract.grid.loading import load_grid, parse_grid, problems_of
from contract.grid.messages import describe, location
from contract.grid.metrics import EPOCH_METRICS, ULTRALYTICS_METRICS, EpochMetric, Metric
from contract.grid.quantities import CpuQuantity, MemoryQuantity
from contract.grid.rules import cross_field_problems
from contract.grid.scalars import Boolean, Check, Fraction, Scalar, integer, number, text
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
    Resources,
    Search,
    SecondObjective,
    Toleration,
    TrainSection,
    Weights,
)
from contract.grid.spec import TOP_KEYS, GridSpec
from contract.grid.yaml_reader import (
    EXPONENT_FLOAT,
    YAML_BOOL,
    YAML_FLOAT,
    YAML_INT,
    YAML_STR,
    GridLoader,
    parse_yaml,
    read_as_written,
    read_yaml,
)

__all__ = [
    "ARGUMENT_TYPES", "DEFAULT_FALLBACK", "DEFAULT_FINALIZER_DEADLINE_S", "DEFAULT_IMAGE", "DEFAULT_MAX_POINTS",
    "DEFAULT_NAME_TEMPLATE", "DEFAULT_OPTIMIZER", "DISTRIBUTIONS", "DNS_LABEL", "EPOCH_METRICS", "EXPONENT_FLOAT",
    "GRID_ARGUMENTS", "LANGUAGES", "MAX_ALIASES", "MAX_DEPTH", "MAX_FILE_BYTES", "MAX_GRID_NAME", "MAX_IMGSZ",
    "MAX_SEED", "OPTIMIZERS", "RESERVED_ARGUMENTS", "TOP_KEYS", "ULTRALYTICS_METRICS", "YAML_BOOL", "YAML_FLOAT",
    "YAML_INT", "YAML_STR", "AxesSection", "AxisValues", "Boolean", "Check", "Confirm", "Constraint", "CpuQuantity",
    "Dataset", "EarlyStopping", "EpochMetric", "Fraction", "Gates", "GridLoader", "GridSpec", "JobSettings",
    "MemoryQuantity", "Metric", "Objective", "Optimizer", "Report", "Resources", "Scalar", "Search",
    "SecondObjective", "Toleration", "TrainArguments", "TrainSection", "Weights", "argument_problem",
    "argument_type", "canonical_optimizer", "cross_field_problems", "describe", "integer", "load_grid", "location",
    "number", "parse_grid", "parse_yaml", "problems_of", "read_as_written", "read_yaml", "text",
]
