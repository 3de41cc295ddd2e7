"""Render one batch/v1 Job manifest per grid point from jobs/templates/*.j2 (pure)."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import yaml

import contract
from contract.grid import GridSpec, JobSettings
from controller.core.expanding import GridPoint, finalizer_name

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
# libyaml when PyYAML was built with it (same safe schema, about 10x faster on 10,000 manifests)
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
SAFE_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
# Train flags with a name of their own (the lab's flags); any other argument goes as --arg KEY=VALUE.
NAMED_FLAGS = ("epochs", "imgsz", "lr0", "batch", "seed", "optimizer")
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


def _flag_value(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def train_args(grid: GridSpec, point: GridPoint) -> list[str]:
    """The point's hyperparameters as flags, readable in `kubectl describe`."""
    arguments = {**grid.train, **point.params}
    args = ["--data", f"{grid.dataset_path}/data.yaml", "--model", grid.weights,
            "--fallback-model", grid.fallback_weights, "--exp-name", grid.experiment,
            "--device", "0" if grid.job.resources.gpu else "cpu"]
    for name in NAMED_FLAGS:
        if name in arguments:
            args += [f"--{name.replace('_', '-')}", _flag_value(arguments[name])]
    for name in sorted(set(arguments) - set(NAMED_FLAGS)):
        args += ["--arg", f"{name}={_flag_value(arguments[name])}"]
    return args


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
    text = _environment().get_template(template).render(**context)
    manifest = yaml.load(text, Loader=SAFE_LOADER)
    if not isinstance(manifest, dict):
        raise TypeError(f"{template} rendered no manifest")  # a template bug, not bad input
    return manifest


def _queue_labels(job: JobSettings) -> dict[str, str]:
    return {"kueue.x-k8s.io/queue-name": job.queue} if job.queue else {}


def render_train_job(grid: GridSpec, point: GridPoint, settings: RenderSettings, *, dataset_md5: str) -> dict[str, Any]:
    job_labels = {**labels(grid, role=contract.ROLE_TRAIN, point=point.name, spec_hash=point.spec_hash),
                  **_queue_labels(grid.job)}
    return _render("train-job.yaml.j2", {
        "name": point.name, "labels": job_labels, "params": point.params, "job": grid.job,
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
    return _render("finalize-job.yaml.j2", {
        "name": name, "labels": job_labels, "job": job,
        "command": ["python", "-m", "jobs.finalize"], "args": ["--reports-dir", "reports"],
        "env": job_env(grid, settings, dataset_md5=dataset_md5, point=None),
    })


def render_all(grid: GridSpec, points: list[GridPoint], settings: RenderSettings, *,
               dataset_md5: str) -> list[dict[str, Any]]:
    manifests = [render_train_job(grid, p, settings, dataset_md5=dataset_md5) for p in points]
    return manifests + [render_finalize_job(grid, settings, dataset_md5=dataset_md5)]


def to_yaml(manifests: list[dict[str, Any]]) -> str:
    return yaml.dump_all(manifests, Dumper=SAFE_DUMPER, sort_keys=False)
