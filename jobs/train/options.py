"""The train job's options and their validation (before any run exists)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from contract import grid as grid_model
from contract import train_flags
from contract.train_args import TRAIN_ARGUMENTS
from jobs.common.errors import BadInput

# optimizer names, bounds and argument names: contract.grid, the grid model the controller validates with,
# so that the Job accepts exactly what a grid may ask for (optimizer=auto ignores lr0: refused there).
OPTIMIZERS = grid_model.OPTIMIZERS
# --arg keys that have their own flag, or that the job manages itself.
FLAG_KEYS = train_flags.FLAG_KEYS
MANAGED_KEYS = (grid_model.RESERVED_ARGUMENTS - set(FLAG_KEYS)) | {"save_dir"}
CHECKED_FLAGS = train_flags.NAMED_FLAGS


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
    """`["nbs=8", "warmup_epochs=0"]` -> {"nbs": 8, "warmup_epochs": 0}; values are YAML scalars
    (contract.train_flags.decode_argument); BadInput naming the pair."""
    extra: dict[str, Any] = {}
    for pair in pairs:
        try:
            key, value = train_flags.decode_argument(pair)
        except ValueError as exc:
            raise BadInput(f"--arg {pair}: {exc}") from exc
        extra[key] = value
    return extra


def validate(*, options: TrainOptions) -> TrainOptions:
    """Every problem at once, each naming its flag; BadInput if any. Returns the options with the
    canonical spellings (`--optimizer sgd` -> SGD), as a grid would store them."""
    flags, flag_problems = _flag_problems(options=options)
    extra, extra_problems = _extra_problems(extra=options.extra)
    problems = flag_problems + extra_problems
    checked = dataclasses.replace(options, extra=extra, **flags)
    if not problems:
        problems = _ultralytics_problems(options=checked)
    if problems:
        raise BadInput("invalid arguments:\n" + "\n".join(f"  {p}" for p in problems))
    return checked


def _flag_problems(*, options: TrainOptions) -> tuple[dict[str, Any], list[str]]:
    """The grid model's check of each named flag: (canonical values, problems)."""
    values: dict[str, Any] = {}
    problems = []
    for name in CHECKED_FLAGS:
        given = getattr(options, name)
        value, problem = grid_model.argument_problem(name, given)
        if problem:
            problems.append(f"--{name} {given}: {problem}")
        else:
            values[name] = value
    if not options.exp_name.strip():
        problems.append("--exp-name: must not be empty")
    return values, problems


def _extra_problems(*, extra: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """--arg KEY=VALUE pairs checked as a grid's train arguments: (canonical values, problems)."""
    checked: dict[str, Any] = {}
    problems = []
    for key, given in extra.items():
        if key in FLAG_KEYS:
            problems.append(f"--arg {key}=...: use {FLAG_KEYS[key]}")
            continue
        if key in MANAGED_KEYS:
            problems.append(f"--arg {key}=...: managed by the job, not settable")
            continue
        value, problem = grid_model.argument_problem(key, given)
        if problem:
            shown = given if key in TRAIN_ARGUMENTS else "..."
            problems.append(f"--arg {key}={shown}: {problem}")
        checked[key] = value
    return checked, problems


def _ultralytics_problems(*, options: TrainOptions) -> list[str]:
    """ultralytics' own type and range checks of the merged arguments."""
    from ultralytics.cfg import DEFAULT_CFG_DICT, check_cfg

    try:
        check_cfg({**DEFAULT_CFG_DICT, **options.train_args()})
    except (TypeError, ValueError) as exc:
        return [f"--arg/flag rejected by ultralytics: {exc}"]
    return []
