"""The train Job, start to end.

Order matters: every check that can fail on bad input (flags, the tracking
server and its credentials, dataset md5, weights, device) runs before the
MLflow run exists, so a bad point leaves no run behind; once the run exists
it always ends FINISHED, FAILED or KILLED. The tracking server is checked
first (cheap; a wrong password must not cost a dataset pull); an endpoint
still down after TP4_CONNECT_TIMEOUT_S is exit code 1, so the Job is retried.
Exit code 0 only when the run is FINISHED with its final metrics.

Early stopping: after each epoch the Job reads its run's tags; when the
controller has set contract.TAG_STOP_REQUESTED, training ends after that epoch
the way a last epoch ends (final validation of best.pt, plots), the Job logs
its final metrics and artifacts as usual, tags the run
contract.TAG_STOPPED_EARLY = the last epoch trained, and the run ends FINISHED.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import contract
from jobs.common import connecting, dataset, environment, mlflow_dataset, model, termination, tracking
from jobs.common.errors import BadInput, Terminated
from jobs.train import training
from jobs.train.options import TrainOptions, validate
from jobs.train.weights import Weights, resolve_weights

REQUIRED_METRICS = contract.TRAIN_RUN_METRICS + (contract.METRIC_EPOCHS,)
# Every argument ultralytics trained with, as an artifact of the run, and the tag that says where it is
# (the run's params are the arguments asked: the grid's axes and recipe).
EFFECTIVE_ARGS_ARTIFACT = "ultralytics_args.yaml"
TAG_EFFECTIVE_ARGS = "tp4.ultralytics_args"
BASELINE_NOTE = ("**The lab's baseline** (handout step 5): one training with the grid's recipe and weights, tagged "
                 f"{contract.TAG_ROLE}={contract.ROLE_BASELINE}: the reference the grid's points are compared with, "
                 "never one of its points, never ranked by its finalizer.")
SCRATCH_NOTE = ("Trained FROM SCRATCH: the pretrained weights {spec} could not be fetched; "
                "metrics after a few epochs are noise.")
STANDALONE_NOTE = ("note: a training outside any grid: its recipe is these flags and ultralytics' defaults for the "
                   "rest, its weights --model. The lab's baseline, comparable with the grid's runs (the grid's recipe "
                   "and weights, in its experiment, tagged tp4.role=baseline): python -m controller baseline grid.yaml "
                   "(make baseline).")


@dataclass(frozen=True)
class JobContext:
    """What the environment (the rendered Job) tells the train job."""

    experiment: str
    parent_run_id: str | None
    point: str | None
    threads: int | None
    tags: dict[str, str]
    role: str = contract.ROLE_TRAIN  # one of contract.TRAIN_RUN_ROLES

    @property
    def standalone(self) -> bool:
        """Started by hand: no grid point, no grid, no role given (the handout's `python -m jobs.train ...`)."""
        return not self.point and contract.TAG_GRID not in self.tags and self.role == contract.ROLE_TRAIN

    def run_name(self, *, options: TrainOptions) -> str:
        """The grid point's name; else `<role>-<imgsz>-<lr0>-<seed>`, e.g. baseline-320-0.01-0."""
        return self.point or f"{self.role}-{options.imgsz}-{options.lr0}-{options.seed}"


def context_from_env(*, options: TrainOptions) -> JobContext:
    env = os.environ
    backend = env.get(contract.ENV_BACKEND) or "local"
    optional = {contract.TAG_GRID: contract.ENV_GRID, contract.TAG_POINT: contract.ENV_POINT,
                contract.TAG_SPEC_HASH: contract.ENV_SPEC_HASH, contract.TAG_ATTEMPT: contract.ENV_ATTEMPT,
                contract.TAG_PHASE: contract.ENV_PHASE}
    if backend == "kubernetes":  # a pod runs in its image; a local process runs in no image at all
        optional[contract.TAG_IMAGE] = contract.ENV_IMAGE
    role = env.get(contract.ENV_ROLE) or contract.ROLE_TRAIN
    if role not in contract.TRAIN_RUN_ROLES:
        raise BadInput(f"{contract.ENV_ROLE}={role}: expected one of {', '.join(contract.TRAIN_RUN_ROLES)}")
    tags = {tag: env[var] for tag, var in optional.items() if env.get(var)}
    tags |= {contract.TAG_ROLE: role, contract.TAG_CODE_VERSION: contract.CODE_VERSION,
             contract.TAG_BACKEND: backend}
    return JobContext(experiment=env.get(contract.ENV_EXPERIMENT) or options.exp_name,
                      parent_run_id=env.get(contract.ENV_PARENT_RUN_ID) or None,
                      point=env.get(contract.ENV_POINT) or None, threads=_threads(), tags=tags, role=role)


def _threads() -> int | None:
    raw = os.environ.get(contract.ENV_TORCH_THREADS, "").strip()
    if not raw:
        return None
    if not raw.isdigit() or int(raw) < 1:
        raise BadInput(f"{contract.ENV_TORCH_THREADS}={raw}: expected an integer >= 1")
    return int(raw)


class PhaseClock:
    """Seconds of wall time spent in each phase of the Job (contract.PHASE_METRICS), from the process's start."""

    def __init__(self) -> None:
        self.process_start = process_start_time()
        self.seconds = {contract.METRIC_PHASE_STARTUP: max(0.0, time.time() - self.process_start)}
        self.lap_start = time.perf_counter()

    def lap(self, phase: str) -> None:
        """Charge the time since the previous lap to `phase` (a contract.METRIC_PHASE_* name)."""
        now = time.perf_counter()
        self.seconds[phase] = self.seconds.get(phase, 0.0) + now - self.lap_start
        self.lap_start = now

    def mark(self, name: str, *, at: float) -> None:
        """Record the seconds from the process's start to `at` (time.time()) under `name`."""
        self.seconds[name] = at - self.process_start

    def metrics(self) -> dict[str, float]:
        """Every phase so far, plus the total since the process started."""
        return {**self.seconds, contract.METRIC_PHASE_TOTAL: time.time() - self.process_start}


def process_start_time() -> float:
    """When this process started, in epoch seconds. On Linux to the clock tick (10 ms): the tick of its start
    (/proc/self/stat) on the boot-time clock. psutil's create_time adds those ticks to /proc/stat's
    `btime`, whole seconds, so it is early by up to 1 s, the same on every process since boot: it is
    used where /proc is not (then `phase/startup_s` carries that error)."""
    try:
        with open("/proc/self/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        ticks_since_boot = int(fields[19])  # field 22, starttime; fields[0] is field 3
        seconds_since_boot = ticks_since_boot / os.sysconf("SC_CLK_TCK")
        return time.time() - (time.clock_gettime(time.CLOCK_BOOTTIME) - seconds_since_boot)
    except (OSError, ValueError, IndexError, AttributeError):
        import psutil

        return float(psutil.Process().create_time())


def cpu_seconds() -> float:
    """CPU time, in seconds (user + system), this process used since it started, plus that of its children
    that have ended and been waited for (dataloader workers, subprocesses): contract.METRIC_CPU_SECONDS."""
    import psutil

    times = psutil.Process().cpu_times()
    return times.user + times.system + times.children_user + times.children_system


def run_train_job(*, options: TrainOptions) -> int:
    """Run the job; returns the process exit code."""
    clock = PhaseClock()
    environment.configure_environment()
    try:
        with termination.terminate_on_signals():
            _run(options=options, clock=clock)
    except BadInput as exc:
        print(f"ERROR: {exc}", file=sys.stderr, flush=True)
        return contract.EXIT_BAD_INPUT
    except connecting.Unreachable as exc:
        print(f"ERROR: {exc}", file=sys.stderr, flush=True)
        return contract.EXIT_FAILED
    except Terminated as exc:
        print(f"train job {exc}: run marked KILLED", file=sys.stderr, flush=True)
        return 128 + exc.signum
    except Exception as exc:
        traceback.print_exc()
        return _failure_code(exc=exc)
    return contract.EXIT_OK


def _failure_code(*, exc: Exception) -> int:
    from mlflow.exceptions import MlflowException

    if isinstance(exc, MlflowException) and exc.error_code in tracking.AUTH_ERRORS:
        print(f"ERROR: MLflow at {tracking.redact_uri(tracking.tracking_uri())} rejected the credentials "
              f"({contract.ENV_TRACKING_USERNAME}/{contract.ENV_TRACKING_PASSWORD})", file=sys.stderr)
        return contract.EXIT_BAD_INPUT
    return contract.EXIT_FAILED


def _run(*, options: TrainOptions, clock: PhaseClock) -> None:
    options = validate(options=options)
    context = context_from_env(options=options)
    if context.standalone:
        print(STANDALONE_NOTE, file=sys.stderr, flush=True)
    tracking.wait_for_server()
    clock.lap(contract.METRIC_PHASE_SETUP)
    data_yaml = Path(options.data)
    verified = dataset.ensure_dataset(path=data_yaml.parent)
    data_yaml = verified.path / data_yaml.name  # the folder may have been pulled into TP4_WORKSPACE
    if not data_yaml.is_file():
        raise BadInput(f"--data {data_yaml}: no such file in the verified dataset")
    print(f"dataset {verified.path}: {verified.nfiles} files, md5 {verified.md5} verified", flush=True)
    clock.lap(contract.METRIC_PHASE_DATASET)
    training.check_device(device=options.device)
    with tempfile.TemporaryDirectory(prefix="tp4-train-") as tmp:
        workdir = Path(tmp)
        weights = resolve_weights(spec=options.model, fallback=options.fallback_model, workdir=workdir / "s3")
        model = training.load_model(model=weights.model)
        clock.lap(contract.METRIC_PHASE_SETUP)
        data_copy = dataset.working_copy(dataset=verified, data_yaml=data_yaml, into=workdir / "data")
        clock.lap(contract.METRIC_PHASE_DATASET)
        _tracked_training(options=options, context=context, verified=verified, weights=weights, model=model,
                          data_copy=data_copy, workdir=workdir, clock=clock)


def _tracked_training(*, options: TrainOptions, context: JobContext, verified: dataset.VerifiedDataset,
                      weights: Weights, model: Any, data_copy: Path, workdir: Path, clock: PhaseClock) -> None:
    client = tracking.make_client()
    if context.parent_run_id:
        experiment_id = tracking.parent_experiment_id(client=client, parent_run_id=context.parent_run_id)
    else:
        experiment_id = tracking.ensure_experiment(client=client, name=context.experiment)
    tags = {**context.tags, contract.TAG_DATASET_MD5: verified.md5, contract.TAG_WEIGHTS: weights.spec,
            contract.TAG_WEIGHTS_SOURCE: weights.source, **training.host_tags(device=options.device,
                                                                               threads=context.threads)}
    if context.role == contract.ROLE_BASELINE:
        tags["mlflow.note.content"] = BASELINE_NOTE
    if weights.source == "scratch" and not weights.spec.endswith((".yaml", ".yml")):
        tags["mlflow.note.content"] = "\n\n".join(
            filter(None, [tags.get("mlflow.note.content"), SCRATCH_NOTE.format(spec=weights.spec)]))
    run_name = context.run_name(options=options)
    with tracking.tracked_run(client=client, experiment_id=experiment_id, run_name=run_name,
                              parent_run_id=context.parent_run_id, tags=tags) as run_id:
        print(f"MLflow run {run_id} ({run_name}) in {tracking.redact_uri(client.tracking_uri)}", flush=True)
        tracking.log_params(client=client, run_id=run_id, params={
            "data": options.data, "dataset_md5": verified.md5, "weights": weights.spec,
            "weights_source": weights.source, "model": weights.model if weights.source != "s3" else weights.spec})
        project = mlflow_dataset.dvc_project(verified.path, Path.cwd())
        source = mlflow_dataset.source_uri(project=project, md5=verified.md5, env=os.environ)
        inputs = mlflow_dataset.dvc_dataset(folder=verified.path, md5=verified.md5, source_uri=source)
        mlflow_dataset.log_dataset_input(client=client, run_id=run_id, context="train", dataset=inputs)
        clock.lap(contract.METRIC_PHASE_SETUP)
        result = training.train(model=model, data_yaml=data_copy, args=options.train_args(), workdir=workdir,
                                recorder=MlflowRecorder(client=client, run_id=run_id), threads=context.threads)
        clock.lap(contract.METRIC_PHASE_TRAIN)
        if result.first_batch_at is not None:
            clock.mark(contract.METRIC_FIRST_BATCH, at=result.first_batch_at)
        if result.stopped_early:
            tracking.log_tags(client=client, run_id=run_id, tags={contract.TAG_STOPPED_EARLY: result.epochs})
            print(f"run {run_id}: stopped early at the controller's request, after epoch {result.epochs} "
                  f"of {options.epochs}", flush=True)
        _log_outcome(client=client, run_id=run_id, options=options, context=context, result=result,
                     workdir=workdir, dataset_name=verified.path.name, dataset_md5=verified.md5, clock=clock)
        tracking.log_metrics(client=client, run_id=run_id, metrics=clock.metrics())
        if missing := tracking.missing_metrics(client=client, run_id=run_id, names=REQUIRED_METRICS):
            raise RuntimeError(f"final metrics missing or not finite: {', '.join(missing)}")
    print(f"run {run_id} FINISHED: " + ", ".join(f"{k}={result.final[k]:.4f}" for k in contract.FINAL_METRICS),
          flush=True)


def _log_outcome(*, client: Any, run_id: str, options: TrainOptions, context: JobContext,
                 result: training.TrainResult, workdir: Path, dataset_name: str, dataset_md5: str,
                 clock: PhaseClock) -> None:
    latency = training.inference_ms_per_image(weights=result.best, source=result.val_source, imgsz=options.imgsz,
                                              device=options.device, threads=context.threads, workdir=workdir)
    clock.lap(contract.METRIC_PHASE_EVAL)
    final = {name: result.final[name] for name in contract.FINAL_METRICS if name in result.final}
    final |= {contract.METRIC_TRAIN_SECONDS: result.train_seconds, contract.METRIC_LATENCY_MS: latency,
              contract.METRIC_MODEL_SIZE_MB: result.best.stat().st_size / 2**20,
              contract.METRIC_CPU_SECONDS: cpu_seconds(), contract.METRIC_GPU_SECONDS: result.gpu_seconds,
              contract.METRIC_EPOCHS: result.epochs}
    tracking.log_metrics(client=client, run_id=run_id, metrics=final)
    staging = training.stage_artifacts(result=result, staging=workdir / "artifacts")
    client.log_artifacts(run_id, str(staging))
    # best.pt as a servable pyfunc LoggedModel, its val metrics linked to it on the dataset it was trained on
    model.log_model(client=client, run_id=run_id, weights=result.best, imgsz=options.imgsz, point=context.point,
                    metrics={k: v for k, v in final.items() if k in contract.FINAL_METRICS},
                    dataset=(dataset_name, dataset_md5))
    clock.lap(contract.METRIC_PHASE_ARTIFACTS)


class MlflowRecorder:
    """training.Recorder writing into one MLflow run: the asked arguments as params, the effective ones as the
    artifact EFFECTIVE_ARGS_ARTIFACT (YAML) that the tag TAG_EFFECTIVE_ARGS points to."""

    def __init__(self, *, client: Any, run_id: str) -> None:
        self.client = client
        self.run_id = run_id

    def params(self, *, values: dict[str, Any]) -> None:
        tracking.log_params(client=self.client, run_id=self.run_id, params=values)

    def effective_args(self, *, values: dict[str, Any]) -> None:
        plain = {k: v if v is None or isinstance(v, (str, int, float, bool)) else str(v) for k, v in values.items()}
        self.client.log_dict(self.run_id, plain, EFFECTIVE_ARGS_ARTIFACT)
        tracking.log_tags(client=self.client, run_id=self.run_id, tags={TAG_EFFECTIVE_ARGS: EFFECTIVE_ARGS_ARTIFACT})

    def epoch(self, *, metrics: dict[str, float], step: int) -> None:
        named = {contract.EPOCH_PREFIX + name: value for name, value in metrics.items()}
        tracking.log_metrics(client=self.client, run_id=self.run_id, metrics=named, step=step)

    def stop_requested(self) -> bool:
        """Whether the run carries contract.TAG_STOP_REQUESTED (the controller's early stop): one get_run."""
        return contract.TAG_STOP_REQUESTED in self.client.get_run(self.run_id).data.tags
