"""grid.yaml's names, limits and defaults: the numbers every section of the model and the Jobs agree on."""

from __future__ import annotations

from contract.train_args import TRAIN_ARGUMENTS

# --- names and limits -------------------------------------------------------------------------------
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
MAX_GRID_NAME = 40  # Job names are "<template>" and "finalize-<name>": both must stay within 63
OPTIMIZERS = ("SGD", "Adam", "Adamax", "AdamW", "NAdam", "RAdam", "RMSprop", "MuSGD")  # ultralytics' spelling
LANGUAGES = ("en", "fr")
DEFAULT_OPTIMIZER = "SGD"
DEFAULT_NAME_TEMPLATE = "train-{imgsz}-{lr0}-{seed}"  # the lab's; by default "train-" + every axis
DEFAULT_IMAGE = "tp4-trainer:0.1.0"
DEFAULT_FALLBACK = "yolov8n.yaml"
DEFAULT_FINALIZER_DEADLINE_S = 3600  # ranking, the test-split evaluation of one model, registration
# Arguments the train Job owns itself (or sets from job.resources): a grid may not set them.
RESERVED_ARGUMENTS = frozenset({"data", "model", "project", "name", "exist_ok", "resume", "mode", "task",
                                "device", "cfg"})
GRID_ARGUMENTS = TRAIN_ARGUMENTS - RESERVED_ARGUMENTS
MAX_IMGSZ = 4096
MAX_SEED = 2**32  # exclusive: numpy's seeds
MAX_FILE_BYTES = 1_000_000
MAX_DEPTH = 20  # nesting of YAML collections
MAX_ALIASES = 100
DEFAULT_MAX_POINTS = 10_000
DISTRIBUTIONS = ("uniform", "loguniform", "int", "choice")  # an axis of a sampled search (search.mode random/tpe)
