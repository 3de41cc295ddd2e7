"""How the report and its plots name things for a reader, in each report language (pure).

The metric names themselves live in contract/ (they are MLflow keys); this module only gives each a word a
student reads ("rappel", "training time (s)"), shows a weights path without the machine's folders, and says
where the weights came from.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import PurePosixPath, PureWindowsPath

import contract

LANGUAGES = ("en", "fr")

METRIC_LABELS: Mapping[str, Mapping[str, str]] = {
    "en": {
        contract.METRIC_PRECISION: "precision", contract.METRIC_RECALL: "recall",
        contract.METRIC_MAP50: "mAP50", contract.METRIC_MAP50_95: "mAP50-95",
        contract.METRIC_TRAIN_SECONDS: "training time (s)", contract.METRIC_LATENCY_MS: "inference latency (ms/image)",
        contract.METRIC_MODEL_SIZE_MB: "model size (MB)", contract.METRIC_CPU_SECONDS: "CPU time (s)",
        contract.METRIC_GPU_SECONDS: "GPU time (s)", contract.METRIC_EPOCHS: "epochs trained",
        contract.METRIC_PHASE_STARTUP: "start-up (s)", contract.METRIC_PHASE_SETUP: "set-up (s)",
        contract.METRIC_PHASE_DATASET: "dataset check (s)", contract.METRIC_PHASE_TRAIN: "training (s)",
        contract.METRIC_FIRST_BATCH: "first batch done at (s)", contract.METRIC_PHASE_EVAL: "latency measurement (s)",
        contract.METRIC_PHASE_ARTIFACTS: "logging artifacts (s)", contract.METRIC_PHASE_TOTAL: "total (s)",
    },
    "fr": {
        contract.METRIC_PRECISION: "précision", contract.METRIC_RECALL: "rappel",
        contract.METRIC_MAP50: "mAP50", contract.METRIC_MAP50_95: "mAP50-95",
        contract.METRIC_TRAIN_SECONDS: "temps d'entraînement (s)",
        contract.METRIC_LATENCY_MS: "latence d'inférence (ms/image)",
        contract.METRIC_MODEL_SIZE_MB: "taille du modèle (Mo)", contract.METRIC_CPU_SECONDS: "temps CPU (s)",
        contract.METRIC_GPU_SECONDS: "temps GPU (s)", contract.METRIC_EPOCHS: "epochs entraînées",
        contract.METRIC_PHASE_STARTUP: "démarrage (s)", contract.METRIC_PHASE_SETUP: "préparation (s)",
        contract.METRIC_PHASE_DATASET: "vérification du dataset (s)", contract.METRIC_PHASE_TRAIN: "entraînement (s)",
        contract.METRIC_FIRST_BATCH: "premier batch fini à (s)", contract.METRIC_PHASE_EVAL: "mesure de latence (s)",
        contract.METRIC_PHASE_ARTIFACTS: "enregistrement des artefacts (s)", contract.METRIC_PHASE_TOTAL: "total (s)",
    },
}
DIRECTIONS: Mapping[str, Mapping[str, str]] = {"en": {"maximize": "maximize", "minimize": "minimize"},
                                               "fr": {"maximize": "maximiser", "minimize": "minimiser"}}


def metric_label(name: str, language: str) -> str:
    """The word for a metric key in `language` ("en" or "fr"); an unknown key is returned as it is."""
    return METRIC_LABELS.get(language, METRIC_LABELS["en"]).get(name, name)


def direction_label(direction: str, language: str) -> str:
    return DIRECTIONS.get(language, DIRECTIONS["en"]).get(direction, direction)


def shown_path(spec: str | None) -> str | None:
    """A weights or dataset path as the report shows it: a relative path or a URI as it is, an absolute local path
    by its file name only (the machine's folders say nothing to the reader and differ on every machine)."""
    if not spec or "://" in spec:
        return spec
    for pure in (PurePosixPath(spec), PureWindowsPath(spec)):
        if pure.is_absolute():
            return pure.name or spec
    return spec


# An absolute POSIX path inside free text: a "/" that starts a word (not the "/" of a URI's "://", of "runs:/" or
# of a relative path), followed by at least one more component.
_ABSOLUTE_IN_TEXT = re.compile(r"(?<![\w:/.~-])/(?:[\w.@+-]+/)+[\w.@+-]*")


def scrub_paths(text: str | None) -> str | None:
    """Free text (an error message, a reason) with each absolute local path replaced by its last component."""
    if not text:
        return text
    return _ABSOLUTE_IN_TEXT.sub(lambda m: PurePosixPath(m.group(0).rstrip("/")).name or m.group(0), text)


# The file the shared offline folder provides in place of yolov8n.pt (../shared/weights/README.md): YOLOv5n's
# COCO-trained backbone and neck under a freshly initialised YOLOv5u detection head.
OFFLINE_BACKBONE = "yolov5nu-coco-backbone.pt"
HANDOUT_WEIGHTS = "yolov8n.pt"


def weights_provenance(*, spec: str | None, source: str | None) -> str:
    """Where a run's weights came from, as a code the templates word:
    "offline_backbone" (the shared COCO-pretrained YOLOv5u-n backbone, detection head untrained),
    "downloaded" (an ultralytics asset such as yolov8n.pt, fully COCO-pretrained), "file" (another local file),
    "s3" (fetched from object storage), "scratch" (no pretrained weights), "unknown"."""
    name = shown_path(spec) or ""
    if source == "scratch":
        return "scratch"
    if name.rsplit("/", 1)[-1] == OFFLINE_BACKBONE:
        return "offline_backbone"
    if source == "pretrained":
        return "downloaded"
    if source == "s3":
        return "s3"
    if source == "path":
        return "file"
    return "unknown"
