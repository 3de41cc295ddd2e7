"""Render one batch/v1 Job manifest per grid point from controller/core/templates/*.j2 (pure).

A template is rendered and parsed once per Job settings (image, resources, deadlines, ...: what is the
same for every point), with placeholders for what each Job has of its own (name, labels, params, command,
args, env); each Job is then a copy of that skeleton with its own values filled in as data, and `to_yaml`
writes the manifests without PyYAML's pure-Python representer. Both give what rendering each Job's template
and parsing it back would (tests/controller/core/test_expanding_rendering.py compares them), about 10x
faster on 10,000 points (bench/p2_scale.py --only render).
"""

from __future__ import annotations

import functools
import gc
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import jinja2.utils
import yaml

import contract
from contract.grid import GridSpec, JobSettings
from contract.train_flags import TrainFlags
from controller.core.expanding import GridPoint, finalizer_name

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
# libyaml when PyYAML was built with it (same safe schema, about 10x faster on 10,000 manifests)
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
SAFE_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
PARENT_RUN_PLACEHOLDER = "<assigned at submission>"
# The pod's writable emptyDir (jobs/templates/_pod.yaml.j2): the image's /app is read-only,
# so a Job pulls its dataset there.
POD_WORKSPACE = "/workspace"


@dataclass(frozen=True)
class SecretRef:
    """An environment variable taken from a Kubernetes Secret (never a literal)."""

    env: str
    secret: str
    key: str


@dataclass(frozen=True)
class RenderSettings:
    """Where the Jobs report to: the same for every point of a submission."""

    tracking_uri: str
    backend: str  # "local" or "kubernetes"
    parent_run_id: str = PARENT_RUN_PLACEHOLDER
    extra_env: dict[str, str] = field(default_factory=dict)  # non-secret, e.g. AWS_ENDPOINT_URL
    secret_env: tuple[SecretRef, ...] = ()


@functools.cache  # one Environment: each template is compiled once, not once per Job
def _environment() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES_DIR), undefined=jinja2.StrictUndefined,
                              keep_trailing_newline=True, autoescape=False)


def labels(grid: GridSpec, *, role: str, point: str, spec_hash: str) -> dict[str, str]:
    return {
        contract.LABEL_GRID: grid.name,
        contract.LABEL_POINT: point,
        contract.LABEL_SPEC_HASH: spec_hash,
        contract.LABEL_ROLE: role,
        contract.LABEL_NAME: "tp4",
        contract.LABEL_COMPONENT: role,
        contract.LABEL_PART_OF: "tp4",
        contract.LABEL_MANAGED_BY: "tp4-controller",
        contract.LABEL_VERSION: contract.CODE_VERSION,
    }


def train_args(grid: GridSpec, point: GridPoint) -> list[str]:
    """The point's train Job flags (contract.train_flags, the Job's own decoder), readable in `kubectl describe`."""
    return TrainFlags(data=f"{grid.dataset_path}/data.yaml", model=grid.weights, fallback_model=grid.fallback_weights,
                      exp_name=grid.experiment, device="0" if grid.job.resources.gpu else "cpu",
                      arguments={**grid.train, **point.params}).to_argv()


def torch_threads(cpu: str) -> int:
    """Threads for a container with this CPU request ('500m' -> 1, '2' -> 2)."""
    cores = float(cpu[:-1]) / 1000 if cpu.endswith("m") else float(cpu)
    return max(1, math.floor(cores))


def job_env(grid: GridSpec, settings: RenderSettings, *, dataset_md5: str,
            point: GridPoint | None) -> list[dict[str, Any]]:
    values = {
        contract.ENV_TRACKING_URI: settings.tracking_uri,
        contract.ENV_EXPERIMENT: grid.experiment,
        contract.ENV_GRID: grid.name,
        contract.ENV_PARENT_RUN_ID: settings.parent_run_id,
        contract.ENV_DATASET_PATH: grid.dataset_path,
        contract.ENV_DATASET_MD5: dataset_md5,
        contract.ENV_BACKEND: settings.backend,
        contract.ENV_IMAGE: grid.job.image,
        contract.ENV_TORCH_THREADS: str(torch_threads(grid.job.resources.cpu)),
        "YOLO_CONFIG_DIR": "/tmp/ultralytics",
        **settings.extra_env,
    }
    if settings.backend == "kubernetes":
        values[contract.ENV_WORKSPACE] = POD_WORKSPACE
    if point is not None:
        values[contract.ENV_POINT] = point.name
        values[contract.ENV_SPEC_HASH] = point.spec_hash
        values[contract.ENV_PHASE] = point.phase
    env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in values.items()]
    env += [{"name": s.env, "valueFrom": {"secretKeyRef": {"name": s.secret, "key": s.key}}}
            for s in settings.secret_env]
    return env


def _render(template: str, context: dict[str, Any]) -> dict[str, Any]:
    """The template rendered with `context` and parsed back: the reference the fast path is tested against."""
    text = _environment().get_template(template).render(**context)
    manifest = yaml.load(text, Loader=SAFE_LOADER)
    if not isinstance(manifest, dict):
        raise TypeError(f"{template} rendered no manifest")  # a template bug, not bad input
    return manifest


# What each Job has of its own: a template may only print these whole, as `{{ value | tojson }}`.
PER_JOB = ("name", "labels", "params_json", "command", "args", "env")
_PLACEHOLDER = "@tp4-per-job:{}@"
Path_ = tuple[str | int, ...]


@dataclass(frozen=True)
class _Skeleton:
    text: str  # the manifest as JSON, placeholders in place of the per-Job values
    slots: tuple[tuple[str, Path_], ...]  # (per-Job value, where it goes)


def _find_slots(node: Any, path: Path_, slots: list[tuple[str, Path_]]) -> None:
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        if isinstance(value, str) and "@tp4-per-job:" in value:
            name = next((n for n in PER_JOB if value == _PLACEHOLDER.format(n)), None)
            if name is None:  # e.g. "{{ name }}-x": the value would not be the Job's own as data
                raise TypeError(f"a template prints a per-Job value inside another value at {[*path, key]}")
            slots.append((name, (*path, key)))
        else:
            _find_slots(value, (*path, key), slots)


_skeletons: dict[tuple[str, str], _Skeleton] = {}


def _skeleton(template: str, job: JobSettings) -> _Skeleton:
    """The template rendered once per Job settings (all of them, as JSON: the key), placeholders for the rest."""
    key = (template, job.model_dump_json())
    found = _skeletons.get(key)
    if found is None:
        manifest = _render(template, {"job": job, **{n: _PLACEHOLDER.format(n) for n in PER_JOB}})
        slots: list[tuple[str, Path_]] = []
        _find_slots(manifest, (), slots)
        if len(_skeletons) >= 64:
            _skeletons.clear()
        found = _skeletons[key] = _Skeleton(text=json.dumps(manifest), slots=tuple(slots))
    return found


def _as_rendered(value: Any) -> Any:
    """`value` as `{{ value | tojson }}` parsed back gives it: a fresh copy, keys sorted as tojson sorts them."""
    if type(value) is list and all(type(v) is str for v in value):
        return list(value)
    if type(value) is dict and all(type(k) is str and type(v) is str for k, v in value.items()):
        return dict(sorted(value.items()))
    if type(value) is list and all(type(v) is dict for v in value):
        return [_as_rendered(v) for v in value]  # env: each item on its own
    return json.loads(json.dumps(value, sort_keys=True))


def _fill(template: str, job: JobSettings, values: dict[str, Any]) -> dict[str, Any]:
    skeleton = _skeleton(template, job)
    manifest: dict[str, Any] = json.loads(skeleton.text)
    for name, path in skeleton.slots:
        parent: Any = manifest
        for key in path[:-1]:
            parent = parent[key]
        value = values[name]
        parent[path[-1]] = value if isinstance(value, str) else _as_rendered(value)
    return manifest


def _tojson(value: Any) -> str:
    """Jinja's `tojson` filter (sorted keys, <>&' escaped)."""
    return str(jinja2.utils.htmlsafe_json_dumps(value, sort_keys=True))


def _queue_labels(job: JobSettings) -> dict[str, str]:
    return {"kueue.x-k8s.io/queue-name": job.queue} if job.queue else {}


def render_train_job(grid: GridSpec, point: GridPoint, settings: RenderSettings, *, dataset_md5: str) -> dict[str, Any]:
    job_labels = {**labels(grid, role=contract.ROLE_TRAIN, point=point.name, spec_hash=point.spec_hash),
                  **_queue_labels(grid.job)}
    return _fill("train-job.yaml.j2", grid.job, {
        "name": point.name, "labels": job_labels, "params_json": _tojson(point.params),
        "command": ["python", "-m", "jobs.train"], "args": train_args(grid, point),
        "env": job_env(grid, settings, dataset_md5=dataset_md5, point=point),
    })


def finalizer_hash(grid: GridSpec) -> str:
    """The finalizer's identity: it must run again when anything in the grid changed."""
    return contract.spec_hash({"finalize": grid.to_dict(), "code_version": contract.CODE_VERSION})


def render_finalize_job(grid: GridSpec, settings: RenderSettings, *, dataset_md5: str) -> dict[str, Any]:
    # The finalizer evaluates one model on the test split: no GPU, no GPU node.
    job = grid.job.model_copy(update={"resources": grid.job.resources.model_copy(update={"gpu": 0}),
                                      "node_selector": {}, "tolerations": []})
    name = finalizer_name(grid)
    job_labels = {**labels(grid, role=contract.ROLE_FINALIZE, point=name, spec_hash=finalizer_hash(grid)),
                  **_queue_labels(job)}
    return _fill("finalize-job.yaml.j2", job, {
        "name": name, "labels": job_labels, "params_json": "",
        "command": ["python", "-m", "jobs.finalize"], "args": ["--reports-dir", "reports"],
        "env": job_env(grid, settings, dataset_md5=dataset_md5, point=None),
    })


def render_all(grid: GridSpec, points: list[GridPoint], settings: RenderSettings, *,
               dataset_md5: str) -> list[dict[str, Any]]:
    # 10,000 manifests are millions of new dicts and lists, none of them part of a reference cycle: the
    # cyclic garbage collector, walking them again while they are built, is paused meanwhile (measured:
    # about 10 % of `render`'s CPU time on 10,000 points).
    collecting = gc.isenabled()
    gc.disable()
    try:
        manifests = [render_train_job(grid, p, settings, dataset_md5=dataset_md5) for p in points]
        return manifests + [render_finalize_job(grid, settings, dataset_md5=dataset_md5)]
    finally:
        if collecting:
            gc.enable()


# --- YAML out ---------------------------------------------------------------------------------------------
# Block style as PyYAML writes it; a string is plain when no YAML 1.1 or 1.2 reader can take it for anything
# but that string, else double-quoted as JSON writes it (JSON's escapes are YAML's). A manifest holding
# anything else (a type of its own, a character outside the BMP, DEL) is written by PyYAML.

_PLAIN = re.compile(r"(?:[A-Za-z_/]|--?[A-Za-z])[A-Za-z0-9_./=:-]*(?<!:)")
_NOT_PLAIN = frozenset("y Y n N yes Yes YES no No NO true True TRUE false False FALSE on On ON off Off OFF "
                       "null Null NULL".split())
_QUOTABLE = re.compile(r"[\x7f\U00010000-\U0010ffff]")


class _Unsupported(Exception):
    pass


def _scalar(value: Any, cache: dict[Any, str]) -> str:
    if type(value) is str:  # noqa: E721 (a subclass of str is written by PyYAML)
        text = cache.get(value)
        if text is None:
            if _PLAIN.fullmatch(value) and value not in _NOT_PLAIN:
                text = value
            elif _QUOTABLE.search(value):
                raise _Unsupported(value)
            else:
                text = json.dumps(value)
            cache[value] = text
        return text
    if value is None:
        return "null"
    if value is True or value is False:
        return "true" if value else "false"
    if type(value) is int:
        return str(value)
    if type(value) is float and math.isfinite(value):
        text = repr(value)
        return text if "." in text else text.replace("e", ".0e")  # 1e-05 -> 1.0e-05 (YAML 1.1 needs the dot)
    if value == {} or value == []:
        return "{}" if isinstance(value, dict) else "[]"
    raise _Unsupported(value)


def _mapping(node: dict[Any, Any], indent: str, lines: list[str], cache: dict[Any, str]) -> None:
    for key, value in node.items():
        if type(key) is not str:
            raise _Unsupported(key)
        head = f"{indent}{_scalar(key, cache)}:"
        if value and type(value) is dict:
            lines.append(head)
            _mapping(value, indent + "  ", lines, cache)
        elif value and type(value) is list:
            lines.append(head)
            _sequence(value, indent, lines, cache)  # PyYAML does not indent a sequence in a mapping
        else:
            lines.append(f"{head} {_scalar(value, cache)}")


def _sequence(node: list[Any], indent: str, lines: list[str], cache: dict[Any, str]) -> None:
    for item in node:
        if item and type(item) is dict:
            first = len(lines)
            _mapping(item, indent + "  ", lines, cache)
            lines[first] = f"{indent}- {lines[first][len(indent) + 2:]}"
        elif item and type(item) is list:
            lines.append(f"{indent}-")
            _sequence(item, indent + "  ", lines, cache)
        else:
            lines.append(f"{indent}- {_scalar(item, cache)}")


def _document(manifest: dict[str, Any], cache: dict[Any, str]) -> str:
    try:
        if type(manifest) is not dict or not manifest:
            raise _Unsupported(manifest)
        lines: list[str] = []
        _mapping(manifest, "", lines, cache)
        return "\n".join(lines) + "\n"
    except _Unsupported:
        return yaml.dump(manifest, Dumper=SAFE_DUMPER, sort_keys=False)


def to_yaml(manifests: list[dict[str, Any]]) -> str:
    """The manifests as a YAML stream (what yaml.dump_all writes, read back the same, without its cost)."""
    cache: dict[Any, str] = {}
    return "---\n".join(_document(m, cache) for m in manifests)
