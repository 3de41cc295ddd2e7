"""ultralytics adapter: train one YOLO model inside a run that the job owns.

Nothing here talks to MLflow: what is worth logging goes to a `Recorder`
(the arguments as asked, every argument that took effect, per-epoch metrics);
the caller decides where. The
Recorder is also asked after each epoch whether training should stop early
(the controller's request); training then ends cleanly after that epoch.
ultralytics' own integrations (MLflow, Platform, ...) never run: its MLflow
callback would start/end runs itself and rename the metrics. That is done
per trainer, without touching the user's ultralytics settings file.
"""

from __future__ import annotations

import math
import re
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import contract
from jobs.common.errors import BadInput

INTEGRATION_MODULES = ("ultralytics.utils.callbacks.", "ultralytics.utils.events")
BASE_CALLBACKS = "ultralytics.utils.callbacks.base"
# trainer.args not logged as they are: paths in the job's temporary folder; the
# job logs `data` and `model` as asked.
INTERNAL_ARGS = frozenset({"project", "name", "save_dir", "data", "model"})
# The names the lab tells students to open -> how ultralytics versions name them.
CANONICAL_PLOTS = {
    "results.png": r"results\.png",
    "confusion_matrix.png": r"confusion_matrix\.png",
    "confusion_matrix_normalized.png": r"confusion_matrix_normalized\.png",
    "PR_curve.png": r"(?:[A-Z][a-z]+)?PR_curve\.png",
    "F1_curve.png": r"(?:[A-Z][a-z]+)?F1_curve\.png",
    "P_curve.png": r"(?:[A-Z][a-z]+)?P_curve\.png",
    "R_curve.png": r"(?:[A-Z][a-z]+)?R_curve\.png",
}
PLOT_SUFFIXES = (".png", ".jpg")
# Inference latency is the median over at most this many val images (batch 1): a bounded cost per Job.
LATENCY_IMAGES = 32


class Recorder(Protocol):
    def params(self, *, values: dict[str, Any]) -> None:
        """The arguments a person compares runs on: the training's arguments as asked (the grid's axes and
        recipe: the flags and --arg pairs), logged once when training starts."""
        ...

    def effective_args(self, *, values: dict[str, Any]) -> None:
        """Every argument ultralytics trained with (its defaults included) and what tp4 checked took effect
        (optimizer_class, lr0_effective, accumulate, torch_threads): kept whole, not as run params."""
        ...

    def epoch(self, *, metrics: dict[str, float], step: int) -> None: ...

    def stop_requested(self) -> bool:
        """Whether training should end after the current epoch (asked once per epoch; may raise)."""
        ...


@dataclass(frozen=True)
class TrainResult:
    save_dir: Path
    best: Path
    last: Path
    final: dict[str, float]  # contract.FINAL_METRICS names, best.pt on val
    train_seconds: float
    val_source: Any  # the val split, as ultralytics resolved it
    first_batch_at: float | None = None  # time.time() when the first training batch ended
    epochs: int = 0  # epochs actually trained
    stopped_early: bool = False  # ended after `epochs` because the Recorder asked to stop
    device_type: str = "cpu"  # the torch device type trained on: "cpu", "cuda", "mps"

    @property
    def gpu_seconds(self) -> float:
        """Wall seconds of training (its final validation included) on a CUDA device; 0.0 on any other."""
        return self.train_seconds if self.device_type == "cuda" else 0.0


def is_integration(callback: Callable[..., Any]) -> bool:
    module = getattr(callback, "__module__", "") or ""
    return module.startswith(INTEGRATION_MODULES) and module != BASE_CALLBACKS


Callbacks = dict[str, list[Callable[..., Any]]]


def without_integrations(callbacks: Callbacks) -> Callbacks:
    return {event: [cb for cb in funcs if not is_integration(cb)] for event, funcs in callbacks.items()}


def owned_run_trainer(base: type) -> type:
    """`base` (the task's trainer class) with ultralytics' integration callbacks disabled."""

    class OwnedRunTrainer(base):
        callbacks: Callbacks

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.callbacks = without_integrations(self.callbacks)

        def run_callbacks(self, event: str) -> None:
            # Also skips those that BaseTrainer.__init__ runs before filtering.
            for callback in self.callbacks.get(event, []):
                if not is_integration(callback):
                    callback(self)

    OwnedRunTrainer.__name__ = OwnedRunTrainer.__qualname__ = f"OwnedRun{base.__name__}"
    return OwnedRunTrainer


def metric_name(key: str) -> str:
    """ultralytics' key -> ours: 'metrics/mAP50-95(B)' -> 'mAP50-95', 'train/box_loss' -> 'train_box_loss'."""
    return re.sub(r"\([A-Z]\)$", "", key).removeprefix("metrics/").replace("/", "_")


def check_device(*, device: str) -> None:
    from ultralytics.utils.torch_utils import select_device

    try:
        select_device(device, verbose=False)
    except ValueError as exc:
        raise BadInput(f"--device {device}: {exc}") from exc


def cpu_model() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo), else what the platform module says."""
    import platform

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def host_tags(*, device: str, threads: int | None) -> dict[str, str]:
    """Provenance of the training: CPU model, the GPU used ("none" on the CPU), torch's threads."""
    import torch

    on_gpu = device != "cpu" and torch.cuda.is_available()
    return {contract.TAG_HOST_CPU: cpu_model()[:250],
            contract.TAG_HOST_GPU: torch.cuda.get_device_name(0) if on_gpu else "none",
            contract.TAG_TORCH_THREADS: str(threads or torch.get_num_threads())}


def load_model(*, model: str) -> Any:
    """A YOLO model from weights or an architecture file; BadInput if unloadable."""
    from ultralytics import YOLO

    try:
        return YOLO(model)
    except Exception as exc:
        raise BadInput(f"--model: cannot load {model}: {exc}") from exc


def set_threads(*, threads: int | None) -> Callable[[Any], None]:
    """A callback pinning torch's thread count (ultralytics resets it when selecting a device)."""
    import torch

    def apply(_: Any) -> None:
        if threads:
            torch.set_num_threads(threads)

    apply(None)
    return apply


def stop_requested(*, recorder: Recorder) -> bool:
    """The Recorder's answer; a failure to read it is "no": training goes on and asks again next epoch."""
    try:
        return bool(recorder.stop_requested())
    except Exception as exc:  # never fail a training over this check (Terminated is no Exception: it passes)
        print(f"WARNING: could not read the stop request ({type(exc).__name__}: {exc}); asking again next epoch",
              file=sys.stderr, flush=True)
        return False


class EpochCallbacks:
    """Feeds a Recorder from ultralytics trainer events, checks that lr0 took effect, and ends
    training after an epoch when the Recorder asks for it."""

    def __init__(self, *, recorder: Recorder, lr0: float, threads: int | None,
                 asked: dict[str, Any] | None = None) -> None:
        self.recorder = recorder
        self.lr0 = lr0
        self.asked = dict(asked or {})  # the train() arguments as asked: the params a person compares
        self.threads = threads
        self.pending_epoch: int | None = None
        self.first_batch_at: float | None = None
        self.epochs_trained = 0
        self.stopped_early = False

    def on_train_start(self, trainer: Any) -> None:
        import torch

        effective = min(g.get("initial_lr", g["lr"]) for g in trainer.optimizer.param_groups)
        if not math.isclose(effective, self.lr0, rel_tol=1e-9):
            raise BadInput(f"--lr0 {self.lr0} did not take effect: the optimizer starts at lr={effective}")
        # ultralytics' ~110 arguments as params would bury the few a person compares (and its `conf`, None in
        # training, would clash with the model config's conf that MLflow logs as a param with the model)
        self.recorder.params(values={k: v for k, v in self.asked.items() if k not in INTERNAL_ARGS})
        args = {k: v for k, v in vars(trainer.args).items() if k not in INTERNAL_ARGS}
        self.recorder.effective_args(values={**args, "optimizer_class": type(trainer.optimizer).__name__,
                                             "lr0_effective": effective, "accumulate": trainer.accumulate,
                                             "torch_threads": torch.get_num_threads()})

    def on_train_batch_end(self, _: Any) -> None:
        if self.first_batch_at is None:
            self.first_batch_at = time.time()

    def on_train_epoch_end(self, trainer: Any) -> None:
        self.pending_epoch = trainer.epoch

    def on_fit_epoch_end(self, trainer: Any) -> None:
        # Also fired by the final validation of best.pt (epoch + 1): not an epoch.
        if self.pending_epoch != trainer.epoch:
            return
        self.pending_epoch = None
        raw = {**trainer.label_loss_items(trainer.tloss), **trainer.metrics, **trainer.lr}
        metrics = {metric_name(k): float(v) for k, v in raw.items()}
        if trainer.epoch_time is not None:
            metrics["seconds"] = float(trainer.epoch_time)
        self.recorder.epoch(metrics=metrics, step=trainer.epoch + 1)
        self.epochs_trained = trainer.epoch + 1
        self.stop_if_requested(trainer)

    def stop_if_requested(self, trainer: Any) -> None:
        """End training after this epoch when the Recorder asks for it (not on the last epoch: not early).

        ultralytics 8.4.190, engine/trainer.py, BaseTrainer._do_train: this event (line 685,
        `self.run_callbacks("on_fit_epoch_end")`) comes after every `self.stop |= ...` of the epoch (lines 666,
        668, 684: they can only set it) and right before `if self.stop: break  # must break all DDP ranks`
        (line 694), the break a last epoch takes too: after the loop come final_eval() (best.pt stripped and
        validated, the final metrics), plot_metrics() and on_train_end, as for a normal end. This epoch's
        optimizer steps, EMA update and validation are already done, and the LR scheduler only steps at the
        start of an epoch. Setting `stop` earlier (on_train_epoch_end) would also stop a NaN-recovery redo of
        the epoch after its first batch (line 633).
        """
        if trainer.stop or trainer.epoch + 1 >= trainer.epochs:
            return  # ending anyway: ultralytics' own early stopping, or the last epoch
        if not stop_requested(recorder=self.recorder):
            return
        trainer.stop = True
        self.stopped_early = True
        print(f"stop requested: training ends after epoch {self.epochs_trained}/{trainer.epochs}", flush=True)
        if not trainer.args.save and trainer.save_model():
            # save=False: ultralytics still saves a last epoch (line 671, `self.args.save or final_epoch`)
            trainer.run_callbacks("on_model_save")

    def register(self, *, model: Any) -> None:
        threads = set_threads(threads=self.threads)
        for event in ("on_pretrain_routine_start", "on_val_start"):
            model.add_callback(event, threads)
        model.add_callback("on_train_start", self.on_train_start)
        model.add_callback("on_train_batch_end", self.on_train_batch_end)
        model.add_callback("on_train_epoch_end", self.on_train_epoch_end)
        model.add_callback("on_fit_epoch_end", self.on_fit_epoch_end)


def train(
    *, model: Any, data_yaml: Path, args: dict[str, Any], workdir: Path, recorder: Recorder, threads: int | None
) -> TrainResult:
    """Train `model` on `data_yaml`; outputs go under `workdir`."""
    callbacks = EpochCallbacks(recorder=recorder, lr0=float(args["lr0"]), threads=threads, asked=args)
    callbacks.register(model=model)
    trainer_class = owned_run_trainer(model.task_map[model.task]["trainer"])
    started = time.perf_counter()
    model.train(trainer=trainer_class, data=str(data_yaml), project=str(workdir / "runs"), name="train",
                exist_ok=True, **args)
    seconds = time.perf_counter() - started
    trainer = model.trainer
    final = {metric_name(k): float(v) for k, v in (trainer.metrics or {}).items()}
    return TrainResult(save_dir=Path(trainer.save_dir), best=Path(trainer.best), last=Path(trainer.last),
                       final=final, train_seconds=seconds, val_source=trainer.data["val"],
                       first_batch_at=callbacks.first_batch_at, epochs=callbacks.epochs_trained,
                       stopped_early=callbacks.stopped_early, device_type=trainer.device.type)


def inference_ms_per_image(
    *, weights: Path, source: Any, imgsz: int, device: str, threads: int | None, workdir: Path
) -> float:
    """Median inference time per image (batch 1), in ms, over the first LATENCY_IMAGES val images
    (the first one warms up and is left out)."""
    from ultralytics import YOLO
    from ultralytics.engine.results import Results

    model = YOLO(str(weights))
    model.add_callback("on_predict_start", set_threads(threads=threads))
    results = model.predict(source=source, imgsz=imgsz, device=device, batch=1, stream=True, verbose=False,
                            save=False, project=str(workdir / "predict"))
    times: list[float] = []
    for result in results:
        if not isinstance(result, Results):
            raise TypeError(f"{weights}: prediction gave {type(result).__name__}, not ultralytics Results")
        inference = result.speed.get("inference")
        if inference is None:
            raise RuntimeError(f"{weights}: ultralytics did not time the inference of {result.path}")
        times.append(inference)
        if len(times) > LATENCY_IMAGES:
            break
    if not times:
        raise RuntimeError(f"no val images to time in {source}")
    return statistics.median(times[1:] or times)


def plot_files(*, save_dir: Path) -> dict[str, Path]:
    """Every plot ultralytics wrote, plus copies under the lab's canonical names."""
    found = {p.name: p for p in sorted(save_dir.iterdir()) if p.suffix in PLOT_SUFFIXES}
    canonical = {}
    for name, pattern in CANONICAL_PLOTS.items():
        match = next((p for n, p in found.items() if re.fullmatch(pattern, n)), None)
        if match is not None and name not in found:
            canonical[name] = match
    return {**found, **canonical}


def stage_artifacts(*, result: TrainResult, staging: Path) -> Path:
    """Lay out results.csv, plots/ and weights/ as they go to MLflow."""
    plots = staging / contract.ARTIFACT_PLOTS_DIR
    weights = staging / contract.ARTIFACT_WEIGHTS_DIR
    plots.mkdir(parents=True)
    weights.mkdir()
    shutil.copy2(result.save_dir / "results.csv", staging / contract.ARTIFACT_RESULTS_CSV)
    for name, path in plot_files(save_dir=result.save_dir).items():
        shutil.copy2(path, plots / name)
    for path in (result.best, result.last):
        shutil.copy2(path, weights / path.name)
    return staging
