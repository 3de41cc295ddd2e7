"""grid.yaml: its schema, parsing and validation (pure, no I/O but reading the file).

Every problem is collected with its location and reported at once; nothing
is submitted when there is one. The schema is documented in docs/grid-schema.md.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from contract.errors import InvalidInput, Problem
from contract.train_args import TRAIN_ARGUMENTS

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
OPTIMIZERS = ("SGD", "Adam", "Adamax", "AdamW", "NAdam", "RAdam", "RMSProp", "MuSGD")
LANGUAGES = ("en", "fr")
DIRECTIONS = ("maximize", "minimize")
DEFAULT_NAME_TEMPLATE = "train-{imgsz}-{lr0}-{seed}"
DEFAULT_IMAGE = "tp4-trainer:0.1.0"
# Arguments the train Job owns itself: a grid may not set them.
RESERVED_ARGUMENTS = frozenset({"data", "model", "project", "name", "exist_ok", "resume", "mode", "task"})


@dataclass(frozen=True)
class Resources:
    cpu: str = "1"
    memory: str = "3Gi"
    gpu: int = 0


@dataclass(frozen=True)
class JobSettings:
    name_template: str = DEFAULT_NAME_TEMPLATE
    image: str = DEFAULT_IMAGE
    parallelism: int | None = None  # None: the CPU count (local) / no limit but the grid size (cluster)
    backoff_limit: int = 1
    active_deadline_seconds: int = 3600
    failure_budget: int | None = None  # failed points tolerated before no new Job is started
    ttl_seconds_after_finished: int = 86400
    resources: Resources = field(default_factory=Resources)
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: list[dict[str, Any]] = field(default_factory=list)
    queue: str | None = None  # Kueue LocalQueue name


@dataclass(frozen=True)
class Constraint:
    metric: str
    min: float | None = None
    max: float | None = None


@dataclass(frozen=True)
class GridSpec:
    name: str
    experiment: str
    dataset_path: str
    dataset_md5: str | None
    weights: str
    fallback_weights: str
    registered_model: str
    train: dict[str, Any]
    axes: dict[str, list[Any]]
    job: JobSettings
    objective_metric: str = "mAP50-95"
    objective_direction: str = "maximize"
    constraints: list[Constraint] = field(default_factory=list)
    min_success_fraction: float = 0.75
    min_objective: float = 0.0
    champion_margin: float = 0.0
    language: str = "en"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Reader:
    """Walks a parsed YAML mapping, collecting problems with their locations."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[Problem] = []

    def fail(self, where: str, message: str) -> None:
        self.problems.append(Problem(f"{self.source}: {where}" if where else self.source, message))

    def mapping(self, value: Any, where: str, allowed: set[str], required: set[str] = frozenset()) -> dict[str, Any]:
        if value is None:
            value = {}
        if not isinstance(value, dict):
            self.fail(where, f"must be a mapping, got {type(value).__name__}")
            return {}
        for key in sorted(set(value) - allowed, key=str):
            self.fail(_join(where, str(key)), f"unknown key (allowed: {', '.join(sorted(allowed))})")
        for key in sorted(required - set(value)):
            self.fail(_join(where, key), "is required")
        return value

    def typed(self, value: Any, where: str, kind: type | tuple[type, ...], check: Callable[[Any], str | None] | None = None) -> Any:
        if isinstance(value, bool) and bool not in _as_tuple(kind):
            self.fail(where, f"must be {_kind_name(kind)}, got a boolean")
            return None
        if not isinstance(value, kind):
            self.fail(where, f"must be {_kind_name(kind)}, got {value!r}")
            return None
        problem = check(value) if check else None
        if problem:
            self.fail(where, problem)
            return None
        return value


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _kind_name(kind: type | tuple[type, ...]) -> str:
    names = {int: "an integer", float: "a number", str: "a string", bool: "a boolean", list: "a list", dict: "a mapping"}
    return " or ".join(names.get(k, k.__name__) for k in _as_tuple(kind))


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _positive(value: float) -> str | None:
    return None if value > 0 and math.isfinite(value) else f"must be > 0, got {value}"


def _non_negative(value: float) -> str | None:
    return None if value >= 0 else f"must be >= 0, got {value}"


def _imgsz(value: int) -> str | None:
    if value <= 0 or value % 32:
        return f"must be a positive multiple of 32 (the model's largest stride), got {value}"
    return None


def _fraction(value: float) -> str | None:
    return None if 0 <= value <= 1 else f"must be between 0 and 1, got {value}"


# Checks for training arguments whose bad values ultralytics would reject or misuse.
ARGUMENT_CHECKS: dict[str, tuple[type | tuple[type, ...], Callable[[Any], str | None] | None]] = {
    "imgsz": (int, _imgsz),
    "lr0": ((int, float), _positive),
    "lrf": ((int, float), _positive),
    "epochs": (int, _positive),
    "batch": (int, _positive),
    "nbs": (int, _positive),
    "seed": (int, _non_negative),
    "warmup_epochs": ((int, float), _non_negative),
    "momentum": ((int, float), _fraction),
    "weight_decay": ((int, float), _non_negative),
    "workers": (int, _non_negative),
    "patience": (int, _non_negative),
    "optimizer": (str, lambda v: None if v in OPTIMIZERS else f"must be one of {', '.join(OPTIMIZERS)} "
                  "(not 'auto': ultralytics' auto optimizer ignores lr0 and momentum)"),
}


def _check_argument(reader: _Reader, name: str, value: Any, where: str) -> Any:
    if name in ARGUMENT_CHECKS:
        kind, check = ARGUMENT_CHECKS[name]
        return reader.typed(value, where, kind, check)
    if not isinstance(value, (int, float, str, bool)) and value is not None:
        reader.fail(where, f"must be a scalar, got {value!r}")
        return None
    return value


def _check_argument_name(reader: _Reader, name: Any, where: str) -> bool:
    if name in RESERVED_ARGUMENTS:
        reader.fail(where, "is set by the train Job itself and cannot be set in a grid")
        return False
    if name not in TRAIN_ARGUMENTS:
        reader.fail(where, "is not an ultralytics train argument")
        return False
    return True


def _read_train(reader: _Reader, raw: Any) -> dict[str, Any]:
    train = reader.mapping(raw, "train", allowed=set(raw or {}) if isinstance(raw, dict) else set())
    checked: dict[str, Any] = {}
    for name, value in train.items():
        where = f"train.{name}"
        if _check_argument_name(reader, name, where):
            checked[name] = _check_argument(reader, name, value, where)
    checked.setdefault("optimizer", "SGD")
    return checked


def _read_axes(reader: _Reader, raw: Any, train: dict[str, Any]) -> dict[str, list[Any]]:
    axes = reader.mapping(raw, "axes", allowed=set(raw or {}) if isinstance(raw, dict) else set())
    if isinstance(raw, dict) and not raw:
        reader.fail("axes", "must declare at least one axis")
    checked: dict[str, list[Any]] = {}
    for name, values in axes.items():
        where = f"axes.{name}"
        if not _check_argument_name(reader, name, where):
            continue
        if name in train:
            reader.fail(where, f"is also fixed in train.{name}: set it in one place")
        if not isinstance(values, list) or not values:
            reader.fail(where, "must be a non-empty list of values")
            continue
        if len(set(map(repr, values))) != len(values):
            reader.fail(where, f"has duplicate values: {values}")
        checked[name] = [_check_argument(reader, name, v, f"{where}[{i}]") for i, v in enumerate(values)]
    return checked


def _read_resources(reader: _Reader, raw: Any) -> Resources:
    res = reader.mapping(raw, "job.resources", allowed={"cpu", "memory", "gpu"})
    cpu = reader.typed(str(res.get("cpu", "1")), "job.resources.cpu", str,
                       lambda v: None if re.fullmatch(r"\d+(\.\d+)?m?", v) else f"not a Kubernetes CPU quantity: {v!r}")
    memory = reader.typed(str(res.get("memory", "3Gi")), "job.resources.memory", str,
                          lambda v: None if re.fullmatch(r"\d+(\.\d+)?([KMGTPE]i?)?", v) else f"not a Kubernetes memory quantity: {v!r}")
    gpu = reader.typed(res.get("gpu", 0), "job.resources.gpu", int, _non_negative)
    return Resources(cpu=cpu or "1", memory=memory or "3Gi", gpu=gpu or 0)


def _read_job(reader: _Reader, raw: Any) -> JobSettings:
    allowed = {f for f in JobSettings.__dataclass_fields__}
    job = reader.mapping(raw, "job", allowed=allowed)
    defaults = JobSettings()
    int_fields = {"backoff_limit": _non_negative, "active_deadline_seconds": _positive,
                  "ttl_seconds_after_finished": _non_negative}
    values: dict[str, Any] = {}
    for name, check in int_fields.items():
        values[name] = reader.typed(job.get(name, getattr(defaults, name)), f"job.{name}", int, check)
    for name, check in {"parallelism": _positive, "failure_budget": _non_negative}.items():
        if job.get(name) is not None:
            values[name] = reader.typed(job[name], f"job.{name}", int, check)
    for name in ("name_template", "image", "queue"):
        if job.get(name) is not None:
            values[name] = reader.typed(job[name], f"job.{name}", str)
    node_selector = reader.mapping(job.get("node_selector"), "job.node_selector", allowed=set(job.get("node_selector") or {}))
    for key, value in node_selector.items():
        reader.typed(value, f"job.node_selector.{key}", str)
    tolerations = job.get("tolerations") or []
    if not isinstance(tolerations, list) or not all(isinstance(t, dict) for t in tolerations):
        reader.fail("job.tolerations", "must be a list of mappings (Kubernetes tolerations)")
        tolerations = []
    values = {k: v for k, v in values.items() if v is not None}
    return JobSettings(**values, resources=_read_resources(reader, job.get("resources")),
                       node_selector=dict(node_selector), tolerations=tolerations)


def _read_constraints(reader: _Reader, raw: Any) -> list[Constraint]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        reader.fail("constraints", "must be a list of {metric, min|max}")
        return []
    constraints = []
    for i, item in enumerate(raw):
        where = f"constraints[{i}]"
        entry = reader.mapping(item, where, allowed={"metric", "min", "max"}, required={"metric"})
        if entry and "min" not in entry and "max" not in entry:
            reader.fail(where, "needs min or max")
        metric = reader.typed(entry.get("metric", ""), f"{where}.metric", str) if "metric" in entry else None
        bounds = {k: reader.typed(entry[k], f"{where}.{k}", (int, float)) for k in ("min", "max") if k in entry}
        if metric:
            constraints.append(Constraint(metric=metric, **{k: float(v) for k, v in bounds.items() if v is not None}))
    return constraints


def _read_top(reader: _Reader, raw: dict[str, Any]) -> dict[str, Any]:
    name = reader.typed(raw.get("name"), "name", str,
                        lambda v: None if DNS_LABEL.match(v) and len(v) <= 40 else
                        "must be a lowercase DNS label (a-z, 0-9, '-') of at most 40 characters") if "name" in raw else None
    dataset = reader.mapping(raw.get("dataset"), "dataset", allowed={"path", "md5"}, required={"path"})
    model = reader.mapping(raw.get("model"), "model", allowed={"weights", "fallback", "registered_name"}, required={"weights"})
    objective = reader.mapping(raw.get("objective"), "objective", allowed={"metric", "direction"})
    gates = reader.mapping(raw.get("gates"), "gates", allowed={"min_success_fraction", "min_objective", "champion_margin"})
    report = reader.mapping(raw.get("report"), "report", allowed={"language"})
    return {"name": name, "dataset": dataset, "model": model, "objective": objective, "gates": gates, "report": report}


TOP_KEYS = {"name", "experiment", "dataset", "model", "train", "axes", "job", "objective", "constraints", "gates", "report"}


def parse_grid(raw: Any, *, source: str, base_dir: Path | None) -> GridSpec:
    """Validate a parsed grid.yaml; raise InvalidInput listing every problem.

    `base_dir` is the grid file's folder; None for a Grid resource, whose Jobs
    pull the dataset from the DVC remote: its md5 must then be pinned."""
    reader = _Reader(source)
    raw = reader.mapping(raw, "", allowed=TOP_KEYS, required={"name", "dataset", "model", "axes"})
    top = _read_top(reader, raw)
    train = _read_train(reader, raw.get("train"))
    axes = _read_axes(reader, raw.get("axes"), train)
    job = _read_job(reader, raw.get("job"))
    constraints = _read_constraints(reader, raw.get("constraints"))
    dataset, model, objective, gates, report = (top[k] for k in ("dataset", "model", "objective", "gates", "report"))
    _check_dataset(reader, dataset, base_dir)
    values = {
        "experiment": _optional(reader, raw, "experiment", str),
        "weights": _optional(reader, model, "weights", str, where="model.weights"),
        "fallback_weights": _optional(reader, model, "fallback", str, where="model.fallback") or "yolov8n.yaml",
        "registered_model": _optional(reader, model, "registered_name", str, where="model.registered_name"),
        "objective_metric": _optional(reader, objective, "metric", str, where="objective.metric") or "mAP50-95",
        "objective_direction": _optional(reader, objective, "direction", str, where="objective.direction",
                                         check=lambda v: None if v in DIRECTIONS else f"must be one of {DIRECTIONS}") or "maximize",
        "min_success_fraction": _optional(reader, gates, "min_success_fraction", (int, float), where="gates.min_success_fraction", check=_fraction),
        "min_objective": _optional(reader, gates, "min_objective", (int, float), where="gates.min_objective"),
        "champion_margin": _optional(reader, gates, "champion_margin", (int, float), where="gates.champion_margin"),
        "language": _optional(reader, report, "language", str, where="report.language",
                              check=lambda v: None if v in LANGUAGES else f"must be one of {LANGUAGES}") or "en",
    }
    if reader.problems:
        raise InvalidInput(reader.problems)
    name = top["name"]
    return GridSpec(
        name=name, experiment=values["experiment"] or name,
        dataset_path=dataset["path"], dataset_md5=dataset.get("md5"),
        weights=values["weights"], fallback_weights=values["fallback_weights"],
        registered_model=values["registered_model"] or f"{name}-model",
        train=train, axes=axes, job=job,
        objective_metric=values["objective_metric"], objective_direction=values["objective_direction"],
        constraints=constraints,
        min_success_fraction=float(_default(values["min_success_fraction"], 0.75)),
        min_objective=float(_default(values["min_objective"], 0.0)),
        champion_margin=float(_default(values["champion_margin"], 0.0)),
        language=values["language"],
    )


def _default(value: Any, default: Any) -> Any:
    return default if value is None else value


def _optional(reader: _Reader, mapping: dict[str, Any], key: str, kind: type | tuple[type, ...], *,
              where: str | None = None, check: Callable[[Any], str | None] | None = None) -> Any:
    if mapping.get(key) is None:
        return None
    return reader.typed(mapping[key], where or key, kind, check)


def _check_dataset(reader: _Reader, dataset: dict[str, Any], base_dir: Path | None) -> None:
    path = dataset.get("path")
    if not isinstance(path, str):
        if path is not None:
            reader.fail("dataset.path", f"must be a string, got {path!r}")
        return
    md5 = dataset.get("md5")
    if base_dir is None:
        if md5 is None:
            reader.fail("dataset.md5", "is required in a Grid resource (no <path>.dvc to read it from): "
                        "submit with `python -m controller --backend kubernetes submit-grid`, which pins it")
    else:
        folder = base_dir / path
        pointer = folder.with_name(folder.name + ".dvc")
        if not folder.is_dir() and not pointer.is_file():
            reader.fail("dataset.path", f"no dataset at {folder} and no DVC pointer {pointer} "
                        "(build it with `python -m controller data build`)")
    if md5 is not None and not (isinstance(md5, str) and re.fullmatch(r"[0-9a-f]{32}(\.dir)?", md5)):
        reader.fail("dataset.md5", f"must be a DVC md5 (32 hex digits, optionally '.dir'), got {md5!r}")


def load_grid(path: Path, *, base_dir: Path | None = None) -> GridSpec:
    """Read and validate a grid file; dataset.path is relative to `base_dir`, the
    project folder the Jobs run in (default: the grid file's folder)."""
    try:
        text = path.read_text()
    except OSError as error:
        raise InvalidInput([Problem(str(path), f"cannot read: {error.strerror}")]) from error
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise InvalidInput([Problem(where, f"not valid YAML: {getattr(error, 'problem', error)}")]) from error
    return parse_grid(raw, source=str(path), base_dir=base_dir or path.resolve().parent)
