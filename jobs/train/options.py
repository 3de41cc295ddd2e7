"""The train job's options and their validation (before any run exists)."""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field
from typing import Any

import yaml

from jobs.common.errors import BadInput

# optimizer=auto ignores lr0 (ARCHITECTURE.md section 5): only explicit ones.
OPTIMIZERS = ("SGD", "Adam", "Adamax", "AdamW", "NAdam", "RAdam", "RMSprop", "MuSGD")
# --arg keys that have their own flag, or that the job manages itself.
FLAG_KEYS = {"data": "--data", "model": "--model", "epochs": "--epochs", "imgsz": "--imgsz", "lr0": "--lr0",
             "batch": "--batch", "seed": "--seed", "optimizer": "--optimizer", "device": "--device"}
MANAGED_KEYS = frozenset({"project", "name", "exist_ok", "save_dir", "mode", "task", "resume", "cfg"})


@dataclass(frozen=True)
class TrainOptions:
    data: str
    model: str
    fallback_model: str
    epochs: int
    imgsz: int
    lr0: float
    batch: int
    seed: int
    optimizer: str
    exp_name: str
    device: str
    extra: dict[str, Any] = field(default_factory=dict)

    def train_args(self) -> dict[str, Any]:
        """The ultralytics train() arguments these options ask for (data/model apart)."""
        return {"epochs": self.epochs, "imgsz": self.imgsz, "lr0": self.lr0, "batch": self.batch,
                "seed": self.seed, "optimizer": self.optimizer, "device": self.device, **self.extra}


def parse_extra(*, pairs: list[str]) -> dict[str, Any]:
    """`["nbs=8", "warmup_epochs=0"]` -> {"nbs": 8, "warmup_epochs": 0}; values are YAML scalars."""
    extra: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise BadInput(f"--arg {pair}: expected KEY=VALUE")
        try:
            extra[key.strip()] = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError as exc:
            raise BadInput(f"--arg {pair}: value is not valid YAML ({exc})") from exc
    return extra


def validate(*, options: TrainOptions) -> None:
    """Every problem at once, each naming its flag; BadInput if any."""
    problems = _flag_problems(options=options) + _extra_problems(extra=options.extra)
    if not problems:
        problems = _ultralytics_problems(options=options)
    if problems:
        raise BadInput("invalid arguments:\n" + "\n".join(f"  {p}" for p in problems))


def _flag_problems(*, options: TrainOptions) -> list[str]:
    problems = []
    if options.imgsz < 32 or options.imgsz % 32:
        problems.append(f"--imgsz {options.imgsz}: must be a positive multiple of 32 (the model's stride)")
    if not (math.isfinite(options.lr0) and options.lr0 > 0):
        problems.append(f"--lr0 {options.lr0}: must be > 0")
    if options.epochs < 1:
        problems.append(f"--epochs {options.epochs}: must be >= 1")
    if options.batch < 1:
        problems.append(f"--batch {options.batch}: must be >= 1")
    if options.seed < 0:
        problems.append(f"--seed {options.seed}: must be >= 0")
    if options.optimizer not in OPTIMIZERS:
        problems.append(f"--optimizer {options.optimizer}: choose one of {', '.join(OPTIMIZERS)} "
                        "(auto would ignore --lr0)")
    if not options.exp_name.strip():
        problems.append("--exp-name: must not be empty")
    return problems


def _extra_problems(*, extra: dict[str, Any]) -> list[str]:
    from ultralytics.cfg import DEFAULT_CFG_DICT

    problems = []
    for key in extra:
        if key in FLAG_KEYS:
            problems.append(f"--arg {key}=...: use {FLAG_KEYS[key]}")
        elif key in MANAGED_KEYS:
            problems.append(f"--arg {key}=...: managed by the job, not settable")
        elif key not in DEFAULT_CFG_DICT:
            close = difflib.get_close_matches(key, DEFAULT_CFG_DICT.keys(), n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            problems.append(f"--arg {key}=...: not an ultralytics train argument{hint}")
    return problems


def _ultralytics_problems(*, options: TrainOptions) -> list[str]:
    """ultralytics' own type and range checks of the merged arguments."""
    from ultralytics.cfg import DEFAULT_CFG_DICT, check_cfg

    try:
        check_cfg({**DEFAULT_CFG_DICT, **options.train_args()})
    except (TypeError, ValueError) as exc:
        return [f"--arg/flag rejected by ultralytics: {exc}"]
    return []
