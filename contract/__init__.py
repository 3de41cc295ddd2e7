"""The contract between the control plane (`controller`) and the Jobs (`jobs`).

Both halves import this package and nothing else of each other. Here: environment-variable
names, Job label keys, MLflow tag/metric names, the spec hash and the embedded store's
places. Each fact with a shape has a module of its own, its one encoder and decoder:
grid.yaml (contract.grid), the train Job's flags (contract.train_flags), a search's trial
tag (contract.trial), decision.json (contract.decision), the warm-start messages
(contract.warm_start), the Grid resource's identity (contract.grid_resource), the rule on
credentials in a tracking URI (contract.credentials). It imports neither torch nor the
kubernetes client.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

CODE_VERSION = "0.1.0"

# --- environment variables a Job receives -----------------------------------
ENV_TRACKING_URI = "MLFLOW_TRACKING_URI"
ENV_TRACKING_USERNAME = "MLFLOW_TRACKING_USERNAME"
ENV_TRACKING_PASSWORD = "MLFLOW_TRACKING_PASSWORD"
ENV_EXPERIMENT = "TP4_EXPERIMENT"
ENV_GRID = "TP4_GRID"
ENV_PARENT_RUN_ID = "TP4_PARENT_RUN_ID"
ENV_POINT = "TP4_POINT"
ENV_SPEC_HASH = "TP4_SPEC_HASH"
ENV_ATTEMPT = "TP4_ATTEMPT"
ENV_PHASE = "TP4_PHASE"  # "search" or "confirm": the train run's TAG_PHASE
ENV_DATASET_PATH = "TP4_DATASET_PATH"
ENV_DATASET_MD5 = "TP4_DATASET_MD5"
ENV_BACKEND = "TP4_BACKEND"  # "local" or "kubernetes"
ENV_IMAGE = "TP4_IMAGE"
ENV_REPORTS_DIR = "TP4_REPORTS_DIR"
ENV_TORCH_THREADS = "TP4_TORCH_THREADS"
# A writable folder for the dataset when the project folder is read-only (a pod: /workspace).
ENV_WORKSPACE = "TP4_WORKSPACE"
ENV_S3_ENDPOINT = "AWS_ENDPOINT_URL"
ENV_S3_REGION = "AWS_DEFAULT_REGION"
ENV_S3_ACCESS_KEY = "AWS_ACCESS_KEY_ID"
ENV_S3_SECRET_KEY = "AWS_SECRET_ACCESS_KEY"
ENV_DVC_REMOTE = "TP4_DVC_REMOTE"  # a remote name from .dvc/config (e.g. "s3"); default: core.remote
ENV_DVC_REMOTE_URL = "TP4_DVC_REMOTE_URL"  # overrides that remote's URL (the chart sets s3://<bucket>)

# Environment variables whose values are secrets: never rendered as literals,
# never logged, always redacted.
SECRET_ENV = frozenset({ENV_TRACKING_PASSWORD, ENV_S3_SECRET_KEY, ENV_S3_ACCESS_KEY})

# --- labels on every Job (and its pods) --------------------------------------
LABEL_GRID = "tp4.io/grid"
LABEL_POINT = "tp4.io/point"
LABEL_SPEC_HASH = "tp4.io/spec-hash"
LABEL_ROLE = "tp4.io/role"  # "train" or "finalize"
LABEL_SUBMISSION = "tp4.io/submission"  # the submission (MLflow parent run id) that created the Job
ANNOTATION_SUBMITTED_AT = "tp4.io/submitted-at"  # on a Grid: set by submit-grid, asks for a new submission
LABEL_NAME = "app.kubernetes.io/name"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_PART_OF = "app.kubernetes.io/part-of"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_VERSION = "app.kubernetes.io/version"
ROLE_TRAIN = "train"
ROLE_FINALIZE = "finalize"

# --- MLflow tags ---------------------------------------------------------------
TAG_GRID = "tp4.grid"
TAG_POINT = "tp4.point"
TAG_SPEC_HASH = "tp4.spec_hash"
TAG_ROLE = "tp4.role"  # "parent", "train" or "finalize"
TAG_ATTEMPT = "tp4.attempt"
TAG_DATASET_MD5 = "tp4.dataset_md5"
TAG_CODE_VERSION = "tp4.code_version"
TAG_IMAGE = "tp4.image"  # only when the Job ran in a container image (a pod): its image reference
TAG_HOST_CPU = "tp4.host.cpu"  # the CPU model the Job ran on
TAG_HOST_GPU = "tp4.host.gpu"  # the GPU it trained on ("none": CPU only)
TAG_TORCH_THREADS = "tp4.torch_threads"  # torch's intra-op threads during training
TAG_BACKEND = "tp4.backend"
TAG_WEIGHTS_SOURCE = "tp4.weights_source"  # see WEIGHTS_SOURCES
TAG_WEIGHTS = "tp4.weights"  # what was asked for (name, path, s3:// URI, .yaml)
TAG_DECISION = "tp4.decision"  # on the parent run: "YES" or "NO"
TAG_PREVIOUS_CHAMPION = "tp4.previous_champion"
TAG_CLOSED_BY = "tp4.closed_by"  # why tp4 ended a run itself: its process was gone, stopped, or setup failed
TAG_NAMESPACE = "tp4.namespace"  # on a cluster's parent run: the Grid's namespace (the controller's orphan sweep)
ROLE_PARENT = "parent"
# The lab's baseline (handout step 5, `python -m controller baseline`): one train Job run outside any grid point,
# with the grid's recipe and weights, in the grid's experiment and tagged with its grid, its TAG_ROLE = ROLE_BASELINE
# so that nothing that collects a grid's train runs (the finalizer, a search, the orphan sweep) counts it.
ROLE_BASELINE = "baseline"
ENV_ROLE = "TP4_ROLE"  # the train run's TAG_ROLE: ROLE_TRAIN (unset: the default) or ROLE_BASELINE
TRAIN_RUN_ROLES = (ROLE_TRAIN, ROLE_BASELINE)
# The handout's baseline values (`--epochs 3 --imgsz 320`, lr0 and seed left at their defaults): the train Job's
# flag defaults, and what the baseline takes for an axis of the grid that its command line does not set.
BASELINE_DEFAULTS: dict[str, Any] = {"imgsz": 320, "lr0": 0.01, "seed": 0}
# Search (grid.yaml `search:`, controller/core/searching.py): each trial the controller asks for is recorded on
# the parent run before its Job is created, as TAG_TRIAL_PREFIX + <point name> = JSON {"number", "params", "phase",
# "spec_hash"},
# so that a restarted controller rebuilds the study from MLflow alone.
TAG_TRIAL_PREFIX = "tp4.trial."
TAG_PHASE = "tp4.phase"  # on a train run: "search" or "confirm" (a re-run of a top configuration with another seed)
PHASE_SEARCH = "search"
PHASE_CONFIRM = "confirm"
# Early stopping: the controller sets TAG_STOP_REQUESTED (the epoch it decided at) on a running train run; the
# train Job checks it after each epoch, ends training cleanly and tags its run TAG_STOPPED_EARLY = the last epoch
# trained (its final metrics logged, the run FINISHED).
TAG_STOP_REQUESTED = "tp4.stop_requested"
TAG_STOP_REQUESTED_AT = "tp4.stop_requested_at"  # when (s since the epoch): the grace period survives a restart
TAG_STOPPED_EARLY = "tp4.stopped_early"
WEIGHTS_SOURCES = ("pretrained", "path", "s3", "scratch")

# MLflow 3's experiment kind: model training, not GenAI (MLflow 3.17's own UI decides its pages by the
# link's workflowType=machine_learning instead: tp4's links carry both).
TAG_EXPERIMENT_KIND = "mlflow.experimentKind"
EXPERIMENT_KIND_TRAINING = "custom_model_development"
UI_WORKFLOW_QUERY = "workflowType=machine_learning"

# --- MLflow metrics --------------------------------------------------------------
# Final validation metrics of a train run (best.pt on the val split).
METRIC_PRECISION = "precision"
METRIC_RECALL = "recall"
METRIC_MAP50 = "mAP50"
METRIC_MAP50_95 = "mAP50-95"
FINAL_METRICS = (METRIC_PRECISION, METRIC_RECALL, METRIC_MAP50, METRIC_MAP50_95)
METRIC_TRAIN_SECONDS = "train_seconds"
METRIC_LATENCY_MS = "inference_ms_per_image"
METRIC_MODEL_SIZE_MB = "model_size_mb"
METRIC_CPU_SECONDS = "cpu_seconds"  # CPU time the Job's process used (user + system, children included), s
METRIC_GPU_SECONDS = "gpu_seconds"  # wall seconds of training on a GPU (0 on CPU): what a GPU node bills
METRIC_EPOCHS = "epochs_trained"  # epochs actually trained (fewer than asked when stopped early)
# Every metric a train run logs at its end: the only names an objective, a constraint or a gate may use.
TRAIN_RUN_METRICS = (*FINAL_METRICS, METRIC_TRAIN_SECONDS, METRIC_LATENCY_MS, METRIC_MODEL_SIZE_MB,
                     METRIC_CPU_SECONDS, METRIC_GPU_SECONDS)
# The train-run metrics that are costs (lower is better): a second objective or a `max:` constraint.
COST_METRICS = (METRIC_TRAIN_SECONDS, METRIC_LATENCY_MS, METRIC_MODEL_SIZE_MB, METRIC_CPU_SECONDS,
                METRIC_GPU_SECONDS)
# The values each can take, (low, high): a rule outside them can never hold.
METRIC_RANGES: dict[str, tuple[float, float]] = {
    **{name: (0.0, 1.0) for name in FINAL_METRICS},
    METRIC_TRAIN_SECONDS: (0.0, float("inf")),
    METRIC_LATENCY_MS: (0.0, float("inf")),
    METRIC_MODEL_SIZE_MB: (0.0, float("inf")),
    METRIC_CPU_SECONDS: (0.0, float("inf")),
    METRIC_GPU_SECONDS: (0.0, float("inf")),
}
# Where a train Job's wall time went, in seconds, logged at its end (bench/job_breakdown.py, the report's appendix).
PHASE_PREFIX = "phase/"
METRIC_PHASE_STARTUP = "phase/startup_s"  # process start -> the job's code runs (interpreter, imports)
METRIC_PHASE_SETUP = "phase/setup_s"  # tracking server, device check, weights, model load, the MLflow run, params
METRIC_PHASE_DATASET = "phase/dataset_s"  # dataset pull if absent, md5 verification, the working copy
METRIC_PHASE_TRAIN = "phase/train_s"  # ultralytics' train(), its final validation included
METRIC_FIRST_BATCH = "phase/first_batch_s"  # process start -> first training batch done (not a phase: a mark)
METRIC_PHASE_EVAL = "phase/eval_s"  # the inference latency measurement
METRIC_PHASE_ARTIFACTS = "phase/artifacts_s"  # final metrics, results.csv, plots, weights, the LoggedModel
METRIC_PHASE_TOTAL = "phase/total_s"  # process start -> all of the above done
PHASE_METRICS = (METRIC_PHASE_STARTUP, METRIC_PHASE_SETUP, METRIC_PHASE_DATASET, METRIC_PHASE_TRAIN,
                 METRIC_PHASE_EVAL, METRIC_PHASE_ARTIFACTS, METRIC_PHASE_TOTAL)
# Per-epoch series are logged with step=epoch (1-based) under "epoch/<name>",
# e.g. "epoch/mAP50-95", "epoch/train_box_loss", "epoch/lr_pg0".
EPOCH_PREFIX = "epoch/"
# Test-split metrics, logged by the finalizer on the candidate's run.
TEST_PREFIX = "test_"

# --- artifacts -------------------------------------------------------------------
ARTIFACT_WEIGHTS_DIR = "weights"  # weights/best.pt, weights/last.pt
ARTIFACT_PLOTS_DIR = "plots"  # results.png, confusion_matrix.png, PR_curve.png, F1_curve.png, ...
ARTIFACT_RESULTS_CSV = "results.csv"
ARTIFACT_REPORT_DIR = "report"  # on the parent run: decision.md, runs.csv, ...

# --- exit codes --------------------------------------------------------------------
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2  # bad configuration: a Job's podFailurePolicy fails it at once


def spec_hash(spec: Mapping[str, Any]) -> str:
    """A short stable hash of a grid point's spec.

    The spec holds every training argument, the weights, the dataset md5 and
    the image/code version: change any of them and the point is a new point.
    """
    canonical = json.dumps(spec, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


# --- what the controller logs on the parent run for the finalizer -------------
# grid.json = {"spec": contract.grid.GridSpec.to_dict() (grid.yaml's own shape, defaults filled),
#              "points": [{"name", "spec_hash", "params": {<axis>: value}}]}
ARTIFACT_GRID_SPEC = "grid.json"


# --- the local executor's warm start: a fork server (jobs.warm_start; its messages: contract.warm_start) ---
WARM_START_MODULE = "jobs.warm_start"  # run as `python -m`; the controller never imports it
WARM_START_JOB_MODULES = ("jobs.train", "jobs.finalize")  # the `python -m` entry points it may run
# Environment variables that modules read when imported (ultralytics' settings folder and flags, thread
# pools, Python's own, matplotlib's): a Job whose values differ from the fork server's starts cold.
IMPORT_TIME_ENV_PREFIXES = ("YOLO_", "OMP_", "MKL_", "OPENBLAS_", "NUMEXPR_", "TORCH", "PYTORCH", "CUDA_",
                            "NVIDIA_", "PYTHON", "MPL", "LD_", "ULTRALYTICS", "MLFLOW_ENABLE")
ENV_WARM_START = "TP4_WARM_START"  # in the controller's environment: "0" starts every local Job cold

# --- the embedded default (no server): everything under <project>/.tp4 ----------
EMBEDDED_DIR = ".tp4"
ARTIFACTS_DIR = "mlartifacts"  # beside a SQLite store's database file: <db dir>/mlartifacts/<experiment folder>


def embedded_tracking_uri(project_dir: Path) -> str:
    """MLflow tracking store used when MLFLOW_TRACKING_URI is unset."""
    return f"sqlite:///{(project_dir / EMBEDDED_DIR / 'mlflow.db').resolve()}"


def sqlite_store_lock(uri: str) -> Path | None:
    """The lock file beside a SQLite tracking store (`sqlite:///<db>` -> `<db>.lock`); None for any other URI.
    Whoever opens such a store (the controller, a Job) first creates and migrates it under this OS lock:
    MLflow's table creation and alembic migrations race when two processes open a new store at once."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri.removeprefix("sqlite:///").split("?", 1)[0] + ".lock")


def embedded_artifact_location(project_dir: Path, experiment: str) -> str:
    """Artifact location given to experiments created in the embedded store
    (MLflow's own default, ./mlruns, would depend on the current directory); `experiment` is a folder name
    (see artifact_folder)."""
    return (project_dir / EMBEDDED_DIR / ARTIFACTS_DIR / experiment).resolve().as_uri()


def artifact_folder(experiment: str) -> str:
    """The folder of experiment `experiment`'s artifacts under a SQLite store's ARTIFACTS_DIR: the name itself
    when it is one plain path component, else a slug plus a hash of the name (an experiment may be called
    '../x' or '/x': its folder stays inside ARTIFACTS_DIR, and two names never share one)."""
    if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", experiment) and ".." not in experiment:
        return experiment
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", experiment).strip("._-")[:60] or "experiment"
    return f"{slug}-{hashlib.sha256(experiment.encode()).hexdigest()[:8]}"


def sqlite_artifact_root(uri: str) -> Path | None:
    """Where a SQLite store (`sqlite:///<db>`) keeps artifacts: `<db dir>/mlartifacts`; None for any other URI."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri.removeprefix("sqlite:///").split("?", 1)[0]).resolve().parent / ARTIFACTS_DIR


def artifact_location(uri: str, experiment: str) -> str | None:
    """The artifact location to create experiment `experiment` with in the store at `uri`: for a SQLite store
    (the embedded default among them) `<db dir>/mlartifacts/<artifact_folder(experiment)>` as a file:// URI,
    never the working directory (MLflow's own default, ./mlruns); None for a server or any other store (it
    decides itself). The one rule for the controller and the Jobs."""
    root = sqlite_artifact_root(uri)
    return None if root is None else (root / artifact_folder(experiment)).as_uri()
