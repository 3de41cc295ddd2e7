"""A trained point's best.pt as an MLflow model: a pyfunc LoggedModel on its run (MLflow 3), servable as is.

Every finished train run logs one (`log_model`), so any run can be registered or served, not only the
finalizer's candidate; the finalizer registers the candidate's (`run_model_id`) and moves the aliases.
The model wraps the weights with `yolo_pyfunc.py` (models-from-code): a DataFrame column `image` of
base64 image files in, one row per box out (SIGNATURE). Its environment is the versions installed here,
pinned (`pinned_requirements`), so MLflow infers nothing at logging time.
"""

from __future__ import annotations

import warnings
from importlib import metadata
from pathlib import Path

import mlflow
from mlflow.models import Model, ModelSignature
from mlflow.tracking import MlflowClient
from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

import contract

MODEL_NAME = "model"  # the LoggedModel's name on its run
PYFUNC_FILE = Path(__file__).resolve().parent / "yolo_pyfunc.py"
SERVING_PACKAGES = ("ultralytics", "torch", "torchvision", "mlflow", "pandas", "pillow", "numpy")
DEFAULT_CONF = 0.25

SIGNATURE = ModelSignature(
    inputs=Schema([ColSpec("string", "image")]),
    outputs=Schema([ColSpec("long", "image"), *(ColSpec("double", c) for c in ("x1", "y1", "x2", "y2", "score")),
                    ColSpec("long", "class_id"), ColSpec("string", "class_name")]),
    params=ParamSchema([ParamSpec("conf", "double", DEFAULT_CONF)]),
)


def pinned_requirements() -> list[str]:
    """The serving environment: the versions installed here, pinned."""
    return [f"{name}=={metadata.version(name)}" for name in SERVING_PACKAGES]


def run_model_id(*, client: MlflowClient, run_id: str) -> str | None:
    """The id of the LoggedModel named MODEL_NAME that run `run_id` logged, None if it has none."""
    experiment_id = client.get_run(run_id).info.experiment_id
    mlflow.set_tracking_uri(client.tracking_uri)
    models = mlflow.search_logged_models(experiment_ids=[experiment_id], output_format="list",
                                         filter_string=f"source_run_id = '{run_id}' AND name = '{MODEL_NAME}'")
    return str(models[0].model_id) if models else None


def log_model(*, client: MlflowClient, run_id: str, weights: Path, imgsz: int, point: str | None,
              metrics: dict[str, float] | None = None, dataset: tuple[str, str] | None = None,
              registered_name: str | None = None) -> tuple[str, str | None]:
    """Log `weights` as run `run_id`'s pyfunc model; (its model id, the registered version if
    `registered_name`). `metrics` (e.g. the final val metrics) are linked to the model, on `dataset`
    (name, digest) when given, so the model page shows them."""
    run = client.get_run(run_id)
    mlflow.set_tracking_uri(client.tracking_uri)
    mlflow.set_experiment(experiment_id=run.info.experiment_id)
    with warnings.catch_warnings():
        # The schema is SIGNATURE, given; an input example would make MLflow load YOLO and predict once at
        # logging time, in every train Job, only to silence its advice to give one.
        warnings.filterwarnings("ignore", message=r".*An input example was not provided", category=UserWarning)
        info = Model.log(
            artifact_path=None, name=MODEL_NAME, flavor=mlflow.pyfunc, run_id=run_id, python_model=str(PYFUNC_FILE),
            artifacts={"weights": str(weights)}, signature=SIGNATURE, pip_requirements=pinned_requirements(),
            model_config={"imgsz": imgsz, "conf": DEFAULT_CONF}, registered_model_name=registered_name,
            tags={contract.TAG_POINT: point} if point else None,
        )
    model_id = str(info.model_id)
    name, digest = dataset if dataset else (None, None)
    for key, value in (metrics or {}).items():
        client.log_metric(run_id, key, value, model_id=model_id, dataset_name=name, dataset_digest=digest)
    version = info.registered_model_version
    return model_id, (str(version) if version is not None else None)
