"""What the controller puts into the Jobs it creates on a cluster, from its environment.

The chart's ConfigMap (charts/tp4/templates/controller.yaml) fills these
variables; a controller run from a laptop (`python -m controller run`) reads
the same ones. Only Secret *names* are read: the Jobs take the values with
secretKeyRef, the controller never sees them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import contract
from controller.core.rendering import RenderSettings, SecretRef
from controller.credentials import refuse_credentials_in_uri
from controller.errors import InvalidInput, Problem

ENV_JOBS_TRACKING_URI = "TP4_JOBS_TRACKING_URI"  # the Jobs' MLflow URL when it differs from the controller's
ENV_S3_SECRET = "TP4_S3_SECRET_NAME"
ENV_MLFLOW_AUTH_SECRET = "TP4_MLFLOW_AUTH_SECRET_NAME"
ENV_DVC_REMOTE_URL = contract.ENV_DVC_REMOTE_URL
ENV_TRAINER_IMAGE = "TP4_TRAINER_IMAGE"
ENV_JOB_TTL = "TP4_JOB_TTL_SECONDS"
ENV_GPU_ENABLED = "TP4_GPU_ENABLED"
ENV_GPU_IMAGE = "TP4_GPU_TRAINER_IMAGE"
ENV_GPU_NODE_SELECTOR = "TP4_GPU_NODE_SELECTOR"
ENV_GPU_TOLERATIONS = "TP4_GPU_TOLERATIONS"
ENV_NAMESPACE = "TP4_NAMESPACE"
ENV_HEALTH_PORT = "TP4_HEALTH_PORT"  # /healthz and /readyz for the chart's probes; unset: no endpoint
PASSED_TO_JOBS = (contract.ENV_S3_ENDPOINT, contract.ENV_S3_REGION, ENV_DVC_REMOTE_URL)


@dataclass(frozen=True)
class ClusterSettings:
    tracking_uri: str  # where the controller itself reaches MLflow
    jobs_tracking_uri: str  # where the Jobs reach it (the in-cluster Service)
    extra_env: dict[str, str] = field(default_factory=dict)
    secret_env: tuple[SecretRef, ...] = ()
    trainer_image: str | None = None  # for grids that name no job.image
    job_ttl_seconds: int | None = None  # for grids that set no job.ttl_seconds_after_finished
    gpu_image: str | None = None
    gpu_node_selector: dict[str, str] = field(default_factory=dict)
    gpu_tolerations: list[dict[str, Any]] = field(default_factory=list)

    def render_settings(self, *, parent_run_id: str) -> RenderSettings:
        return RenderSettings(tracking_uri=self.jobs_tracking_uri, backend="kubernetes", parent_run_id=parent_run_id,
                              extra_env=dict(self.extra_env), secret_env=self.secret_env)


def _secret_refs(env: Mapping[str, str]) -> tuple[SecretRef, ...]:
    """Keys named after the variables they fill, as the chart's Secrets have them."""
    refs: tuple[SecretRef, ...] = ()
    if s3 := env.get(ENV_S3_SECRET):
        refs += tuple(SecretRef(name, s3, name) for name in (contract.ENV_S3_ACCESS_KEY, contract.ENV_S3_SECRET_KEY))
    if auth := env.get(ENV_MLFLOW_AUTH_SECRET):
        refs += tuple(SecretRef(name, auth, name)
                      for name in (contract.ENV_TRACKING_USERNAME, contract.ENV_TRACKING_PASSWORD))
    return refs


def _json(env: Mapping[str, str], name: str, default: Any) -> Any:
    try:
        return json.loads(env[name]) if env.get(name) else default
    except ValueError as error:
        raise InvalidInput([Problem(name, f"not JSON: {error}")]) from error


def _int(env: Mapping[str, str], name: str) -> int | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    if not raw.isdigit():
        raise InvalidInput([Problem(name, f"expected a number of seconds, got {raw!r}")])
    return int(raw)


def settings_from_env(env: Mapping[str, str] | None = None) -> ClusterSettings:
    env = os.environ if env is None else env
    uri = env.get(contract.ENV_TRACKING_URI, "")
    jobs_uri = env.get(ENV_JOBS_TRACKING_URI) or uri
    refuse_credentials_in_uri(uri)  # before any message could echo them
    refuse_credentials_in_uri(jobs_uri, variable=ENV_JOBS_TRACKING_URI)
    if not uri or not jobs_uri.startswith(("http://", "https://")):
        raise InvalidInput([Problem(contract.ENV_TRACKING_URI, "the Jobs on a cluster need the MLflow server's "
                                    f"http(s) URL, got {jobs_uri!r} (the chart's ConfigMap sets "
                                    f"{contract.ENV_TRACKING_URI}; "
                                    f"a controller that reaches MLflow otherwise sets {ENV_JOBS_TRACKING_URI} too)")])
    gpu = env.get(ENV_GPU_ENABLED, "").lower() == "true"
    return ClusterSettings(
        tracking_uri=uri, jobs_tracking_uri=jobs_uri,
        extra_env={k: env[k] for k in PASSED_TO_JOBS if env.get(k)}, secret_env=_secret_refs(env),
        trainer_image=env.get(ENV_TRAINER_IMAGE) or None, job_ttl_seconds=_int(env, ENV_JOB_TTL),
        gpu_image=(env.get(ENV_GPU_IMAGE) or None) if gpu else None,
        gpu_node_selector=_json(env, ENV_GPU_NODE_SELECTOR, {}) if gpu else {},
        gpu_tolerations=_json(env, ENV_GPU_TOLERATIONS, []) if gpu else [],
    )


def health_port(env: Mapping[str, str] | None = None) -> int | None:
    """The health endpoint's port from $TP4_HEALTH_PORT (0: any free port), None when unset."""
    env = os.environ if env is None else env
    raw = env.get(ENV_HEALTH_PORT, "").strip()
    if not raw:
        return None
    if not raw.isdigit() or int(raw) > 65535:
        raise InvalidInput([Problem(ENV_HEALTH_PORT, f"expected a TCP port (0-65535), got {raw!r}")])
    return int(raw)
