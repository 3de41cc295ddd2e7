"""The train Job's command line (`python -m jobs.train ...`): its one encoder (`TrainFlags.to_argv`, what the
controller renders into every train Job) and its one decoder (`parser`, `decode_argument`, what the Job reads).

Flags: --data, --model, --fallback-model, --exp-name, --device, one flag per NAMED_FLAGS argument (the lab's),
and `--arg KEY=VALUE` (repeatable) for any other ultralytics train argument, VALUE a YAML scalar.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any

import yaml

from contract import BASELINE_DEFAULTS, ENV_EXPERIMENT

# Train arguments with a flag of their own (the lab's flags), in the order they are written.
NAMED_FLAGS = ("epochs", "imgsz", "lr0", "batch", "seed", "optimizer")
# Each flag's default when the command line does not give it: the handout's baseline values.
DEFAULTS: dict[str, Any] = {"model": "yolov8n.pt", "fallback_model": "yolov8n.yaml", "exp_name": "cv_yolo_tiny",
                            "device": "cpu", "epochs": 3, "batch": 8, "optimizer": "SGD", **BASELINE_DEFAULTS}
# ultralytics argument -> the flag that sets it (an --arg of one of these is refused: use the flag).
FLAG_KEYS = {"data": "--data", "model": "--model", "device": "--device",
             **{name: f"--{name.replace('_', '-')}" for name in NAMED_FLAGS}}


def flag_value(value: Any) -> str:
    """A value as written on the command line: booleans as YAML reads them back (true/false)."""
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


@dataclass(frozen=True)
class TrainFlags:
    """What a train Job is asked to do: the dataset's data.yaml, the weights (and the architecture used when
    they cannot be fetched), the experiment, the device ("cpu" or a CUDA index), and ultralytics' train
    arguments (`arguments`: the named flags' and any other)."""

    data: str
    model: str
    fallback_model: str
    exp_name: str
    device: str
    arguments: dict[str, Any] = field(default_factory=dict)

    def to_argv(self) -> list[str]:
        """The flags, readable in `kubectl describe`: the named ones first, then --arg KEY=VALUE by key."""
        args = ["--data", self.data, "--model", self.model, "--fallback-model", self.fallback_model,
                "--exp-name", self.exp_name, "--device", self.device]
        for name in NAMED_FLAGS:
            if name in self.arguments:
                args += [FLAG_KEYS[name], flag_value(self.arguments[name])]
        for name in sorted(set(self.arguments) - set(NAMED_FLAGS)):
            args += ["--arg", f"{name}={flag_value(self.arguments[name])}"]
        return args


def parser(*, prog: str, description: str, data: str) -> argparse.ArgumentParser:
    """The decoder's grammar (argparse exits 2 on a malformed flag); `data`: --data's default."""
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("--data", default=data, help="data.yaml inside the DVC-tracked dataset folder")
    p.add_argument("--model", default=DEFAULTS["model"], help="weights: name, path, s3://bucket/key or arch .yaml")
    p.add_argument("--fallback-model", default=DEFAULTS["fallback_model"],
                   help="architecture used when --model can't be fetched")
    p.add_argument("--epochs", type=int, default=DEFAULTS["epochs"])
    p.add_argument("--imgsz", type=int, default=DEFAULTS["imgsz"])
    p.add_argument("--lr0", type=float, default=DEFAULTS["lr0"])
    p.add_argument("--batch", type=int, default=DEFAULTS["batch"])
    p.add_argument("--seed", type=int, default=DEFAULTS["seed"])
    p.add_argument("--optimizer", default=DEFAULTS["optimizer"])
    p.add_argument("--exp-name", default=DEFAULTS["exp_name"], help=f"experiment when {ENV_EXPERIMENT} is unset")
    p.add_argument("--device", default=DEFAULTS["device"])
    p.add_argument("--arg", action="append", default=[], metavar="KEY=VALUE",
                   help="any other ultralytics train argument (YAML value), repeatable: --arg nbs=8")
    return p


def decode_argument(pair: str) -> tuple[str, Any]:
    """`"nbs=8"` -> ("nbs", 8): an --arg pair, its value a YAML scalar ("" when empty); ValueError naming
    what is wrong."""
    key, sep, value = pair.partition("=")
    if not sep or not key.strip():
        raise ValueError("expected KEY=VALUE")
    try:
        return key.strip(), yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError as exc:
        raise ValueError(f"value is not valid YAML ({exc})") from exc
