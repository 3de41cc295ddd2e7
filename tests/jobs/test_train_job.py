"""The train Job: flags, weights, MLflow run lifecycle, and real tiny trainings.

The end-to-end tests run `python -m jobs.train` as a process, as a Job would,
on a dataset of a few COCO128 person images that the test builds and tracks
with DVC, against a SQLite MLflow store in a temporary folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

# Before anything imports ultralytics: no network, no user settings file.
os.environ.setdefault("YOLO_OFFLINE", "true")
os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="tp4-yolo-config-"))

import contract
from jobs.common import dataset, tracking
from jobs.common.errors import BadInput, Terminated
from jobs.train import training
from jobs.train.cli import main, options_from
from jobs.train.options import validate
from jobs.train.weights import resolve_weights
from tests.helpers.paths import REPO

SHARED = REPO.parent / "shared"
COCO128 = SHARED / "datasets" / "coco128"
BACKBONE = SHARED / "weights" / "yolov5nu-coco-backbone.pt"
TINY_ARGS = ["--epochs", "1", "--imgsz", "64", "--batch", "4", "--lr0", "0.02", "--seed", "3",
             "--arg", "nbs=4", "--arg", "warmup_epochs=0", "--arg", "workers=0"]


# --- flags -------------------------------------------------------------------------------


def test_defaults_are_the_lab_baseline() -> None:
    options = options_from([])
    assert (options.data, options.model, options.fallback_model) == (
        "data/tiny_coco/data.yaml", "yolov8n.pt", "yolov8n.yaml")
    assert (options.epochs, options.imgsz, options.optimizer, options.exp_name, options.device) == (
        3, 320, "SGD", "cv_yolo_tiny", "cpu")


def test_dataset_path_env_gives_default_data(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(contract.ENV_DATASET_PATH, "data/other")
    assert options_from([]).data == "data/other/data.yaml"
    assert options_from(["--data", "x/data.yaml"]).data == "x/data.yaml"


def test_extra_args_are_yaml_scalars() -> None:
    options = options_from(["--arg", "nbs=8", "--arg", "warmup_epochs=0.5", "--arg", "cos_lr=true",
                            "--arg", "cache=ram"])
    assert options.extra == {"nbs": 8, "warmup_epochs": 0.5, "cos_lr": True, "cache": "ram"}
    validate(options=options)


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--imgsz", "100"], "--imgsz 100"),
        (["--lr0", "0"], "--lr0 0.0"),
        (["--lr0", "-0.01"], "--lr0 -0.01"),
        (["--optimizer", "auto"], "--optimizer auto"),
        (["--epochs", "0"], "--epochs 0"),
        (["--arg", "nbss=8"], "--arg nbss"),
        (["--arg", "imgsz=320"], "use --imgsz"),
        (["--arg", "project=/tmp/x"], "--arg project"),
        (["--arg", "nbs"], "--arg nbs: expected KEY=VALUE"),
        (["--arg", "fliplr=2"], "fliplr=2"),
        (["--arg", "cos_lr=maybe"], "cos_lr"),
    ],
)
def test_bad_flags_exit_2_before_any_run(argv: list[str], named: str, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    db = tmp_path / "mlflow.db"
    monkeypatch.setenv(contract.ENV_TRACKING_URI, f"sqlite:///{db}")
    assert main(argv) == contract.EXIT_BAD_INPUT
    assert named in capsys.readouterr().err
    assert not db.exists()


def test_all_flag_problems_reported_at_once() -> None:
    with pytest.raises(BadInput) as error:
        validate(options=options_from(["--imgsz", "100", "--lr0", "0", "--arg", "nbss=1"]))
    for named in ("--imgsz 100", "--lr0 0.0", "--arg nbss=...: is not an ultralytics train argument (did you mean nbs"):
        assert named in str(error.value)


def test_malformed_flag_exits_2(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_:
        options_from(["--imgsz", "big"])
    assert exit_.value.code == contract.EXIT_BAD_INPUT
    assert "--imgsz" in capsys.readouterr().err


# --- weights -------------------------------------------------------------------------------


def test_name_offline_falls_back_to_scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("YOLO_OFFLINE", "true")
    monkeypatch.chdir(tmp_path)  # no cached yolov8n.pt here
    weights = resolve_weights(spec="yolov8n.pt", fallback="yolov8n.yaml", workdir=tmp_path)
    assert (weights.source, weights.model, weights.spec) == ("scratch", "yolov8n.yaml", "yolov8n.pt")
    assert "WARNING" in capsys.readouterr().err


def test_local_path_weights(tmp_path: Path) -> None:
    weights = resolve_weights(spec=str(BACKBONE), fallback="yolov8n.yaml", workdir=tmp_path)
    assert (weights.source, weights.model) == ("path", str(BACKBONE))


def test_architecture_yaml_is_scratch(tmp_path: Path) -> None:
    assert resolve_weights(spec="yolov8n.yaml", fallback="yolov8n.yaml", workdir=tmp_path).source == "scratch"


@pytest.mark.parametrize(
    ("spec", "fallback", "named"),
    [
        ("./missing/best.pt", "yolov8n.yaml", "--model ./missing/best.pt"),
        ("/nowhere/w.pt", "yolov8n.yaml", "--model /nowhere/w.pt"),
        ("yolov99z.pt", "yolov8n.yaml", "--model yolov99z.pt"),
        ("yolov8n.pt", "nothing.yaml", "--fallback-model nothing.yaml"),
        ("yolov8n.pt", "yolov8n.pt", "--fallback-model yolov8n.pt"),
    ],
)
def test_bad_weights_name_the_path(spec: str, fallback: str, named: str, tmp_path: Path) -> None:
    with pytest.raises(BadInput, match=named.replace(".", r"\.")):
        resolve_weights(spec=spec, fallback=fallback, workdir=tmp_path)


@pytest.fixture
def s3_bucket(monkeypatch: pytest.MonkeyPatch):
    """moto's S3 server on a loopback port, bucket `weights`, AWS_* pointing at it."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    monkeypatch.setenv(contract.ENV_S3_ENDPOINT, f"http://{host}:{port}")
    monkeypatch.setenv(contract.ENV_S3_ACCESS_KEY, "tp4-test")
    monkeypatch.setenv(contract.ENV_S3_SECRET_KEY, "tp4-test-secret")
    monkeypatch.setenv(contract.ENV_S3_REGION, "us-east-1")
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="weights")
    yield s3
    server.stop()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
def test_s3_weights_are_downloaded(s3_bucket, tmp_path: Path) -> None:
    s3_bucket.upload_file(str(BACKBONE), "weights", "models/backbone.pt")
    weights = resolve_weights(spec="s3://weights/models/backbone.pt", fallback="yolov8n.yaml", workdir=tmp_path)
    assert weights.source == "s3"
    assert sha256(Path(weights.model)) == sha256(BACKBONE)


@pytest.mark.slow
def test_missing_s3_object_is_bad_input(s3_bucket, tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="s3://weights/nope.pt"):
        resolve_weights(spec="s3://weights/nope.pt", fallback="yolov8n.yaml", workdir=tmp_path)


# --- ultralytics adapter ----------------------------------------------------------------------


def test_ultralytics_mlflow_callbacks_are_filtered_out() -> None:
    from ultralytics.utils.callbacks import mlflow as ultralytics_mlflow
    from ultralytics.utils.callbacks.base import get_default_callbacks

    assert ultralytics_mlflow.callbacks, "ultralytics' MLflow callback should be importable here"
    merged = get_default_callbacks()
    for event, callback in ultralytics_mlflow.callbacks.items():
        merged[event].append(callback)
    kept = training.without_integrations(merged)
    assert all(not training.is_integration(cb) for funcs in kept.values() for cb in funcs)
    assert sum(map(len, kept.values())) == sum(map(len, get_default_callbacks().values()))


@pytest.mark.parametrize(
    ("key", "name"),
    [("metrics/mAP50-95(B)", "mAP50-95"), ("metrics/precision(B)", "precision"),
     ("train/box_loss", "train_box_loss"), ("val/dfl_loss", "val_dfl_loss"), ("lr/pg0", "lr_pg0")],
)
def test_metric_names(key: str, name: str) -> None:
    assert training.metric_name(key) == name


def test_plots_get_the_lab_names(tmp_path: Path) -> None:
    for name in ("results.png", "BoxPR_curve.png", "BoxF1_curve.png", "BoxP_curve.png", "BoxR_curve.png",
                 "confusion_matrix.png", "labels.jpg", "results.csv"):
        (tmp_path / name).write_bytes(name.encode())
    plots = training.plot_files(save_dir=tmp_path)
    assert plots["PR_curve.png"].name == "BoxPR_curve.png"
    assert plots["R_curve.png"].name == "BoxR_curve.png"
    assert plots["P_curve.png"].name == "BoxP_curve.png"
    assert {"BoxPR_curve.png", "results.png", "confusion_matrix.png", "F1_curve.png", "labels.jpg"} <= set(plots)
    assert "results.csv" not in plots


# --- MLflow run lifecycle ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory):
    """A real SQLite MLflow store (the embedded default's kind) in a temporary folder."""
    root = tmp_path_factory.mktemp("store")
    client = tracking.make_client(uri=tracking.default_tracking_uri(root=root))
    return client, tracking.ensure_experiment(client=client, name="lifecycle")


def test_default_tracking_uri_is_absolute_sqlite_under_project(tmp_path: Path) -> None:
    uri = tracking.default_tracking_uri(root=tmp_path)
    assert uri == f"sqlite:///{tmp_path}/.tp4/mlflow.db"
    assert tracking.default_tracking_uri() == f"sqlite:///{REPO}/.tp4/mlflow.db"


def test_embedded_store_artifacts_where_the_controller_puts_them(tmp_path: Path) -> None:
    client = tracking.make_client(uri=tracking.default_tracking_uri(root=tmp_path))
    experiment_id = tracking.ensure_experiment(client=client, name="cv_yolo_tiny")
    location = client.get_experiment(experiment_id).artifact_location
    assert location == contract.embedded_artifact_location(tmp_path, "cv_yolo_tiny")


def test_experiment_artifacts_beside_the_database(store) -> None:
    client, experiment_id = store
    location = client.get_experiment(experiment_id).artifact_location
    assert location == (tracking.local_artifact_root(uri=client.tracking_uri) / "lifecycle").as_uri()
    assert tracking.ensure_experiment(client=client, name="lifecycle") == experiment_id


@pytest.mark.parametrize(
    ("raised", "status"),
    [(None, "FINISHED"), (RuntimeError("boom"), "FAILED"), (BadInput("bad"), "FAILED"),
     (Terminated(signal.SIGTERM), "KILLED"), (KeyboardInterrupt(), "KILLED")],
)
def test_tracked_run_always_ends(store, raised: BaseException | None, status: str) -> None:
    client, experiment_id = store
    parent = client.create_run(experiment_id).info.run_id
    run_id = None
    with pytest.raises(type(raised)) if raised else contextlib.nullcontext():
        with tracking.tracked_run(client=client, experiment_id=experiment_id, run_name="child",
                                  parent_run_id=parent, tags={contract.TAG_ROLE: "train"}) as run_id:
            if raised:
                raise raised
    run = client.get_run(run_id)
    assert run.info.status == status
    assert run.data.tags["mlflow.parentRunId"] == parent
    assert run.data.tags[contract.TAG_ROLE] == "train"


def test_unknown_parent_run_is_bad_input(store) -> None:
    client, _ = store
    with pytest.raises(BadInput, match=contract.ENV_PARENT_RUN_ID):
        tracking.parent_experiment_id(client=client, parent_run_id="0" * 32)


def test_job_context_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    from jobs.train.job import context_from_env

    for var in (contract.ENV_GRID, contract.ENV_IMAGE, contract.ENV_BACKEND, contract.ENV_PARENT_RUN_ID,
                contract.ENV_SPEC_HASH, contract.ENV_ATTEMPT):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv(contract.ENV_EXPERIMENT, "grid-exp")
    monkeypatch.setenv(contract.ENV_POINT, "train-320-0.01-1")
    monkeypatch.setenv(contract.ENV_TORCH_THREADS, "3")
    context = context_from_env(options=options_from(["--exp-name", "ignored"]))
    assert (context.experiment, context.point, context.threads, context.parent_run_id) == (
        "grid-exp", "train-320-0.01-1", 3, None)
    assert context.tags == {contract.TAG_POINT: "train-320-0.01-1", contract.TAG_ROLE: contract.ROLE_TRAIN,
                            contract.TAG_CODE_VERSION: contract.CODE_VERSION, contract.TAG_BACKEND: "local"}
    monkeypatch.setenv(contract.ENV_TORCH_THREADS, "0")
    with pytest.raises(BadInput, match=contract.ENV_TORCH_THREADS):
        context_from_env(options=options_from([]))


def test_redacted_uri_hides_password() -> None:
    assert tracking.redact_uri("http://u:secret@mlflow:5000/x") == "http://u:***@mlflow:5000/x"


# --- real trainings, as a Job runs them ---------------------------------------------------------------


def dvc(*args: str, cwd: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=cwd, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def build_tiny_dataset(folder: Path, *, train: int = 8, val: int = 4) -> None:
    """The first COCO128 images with a person: person boxes only, YOLO layout."""
    picked = []
    for label in sorted((COCO128 / "labels" / "train2017").glob("*.txt")):
        image = COCO128 / "images" / "train2017" / f"{label.stem}.jpg"
        people = [line for line in label.read_text().splitlines() if line.split()[:1] == ["0"]]
        if image.is_file() and people:
            picked.append((image, people))
    for split, items in (("train", picked[:train]), ("val", picked[train:train + val])):
        (folder / "images" / split).mkdir(parents=True)
        (folder / "labels" / split).mkdir(parents=True)
        for image, people in items:
            shutil.copy(image, folder / "images" / split / image.name)
            (folder / "labels" / split / f"{image.stem}.txt").write_text("\n".join(people) + "\n")
    (folder / "data.yaml").write_text("path: .\ntrain: images/train\nval: images/val\nnames:\n  0: person\n")


def tiny_dvc_project(root: Path) -> Path:
    """`root` made a DVC project with data/tiny (8 train / 4 val person images) tracked by `dvc add`."""
    dvc("init", "--no-scm", "-q", cwd=root)
    build_tiny_dataset(root / "data" / "tiny")
    dvc("add", "data/tiny", "-q", cwd=root)
    return root


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_dvc_project(tmp_path_factory.mktemp("project"))


def job_env(project: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("TP4_", "MLFLOW_", "AWS_")) and k != "PYTEST_CURRENT_TEST"}
    # Without PYTEST_CURRENT_TEST ultralytics behaves as in production (its
    # integrations, MLflow included, would be live if the job did not disable them).
    tmp = project / "tmp"
    tmp.mkdir(exist_ok=True)
    env |= {"PYTHONPATH": str(REPO), "YOLO_OFFLINE": "true", "YOLO_CONFIG_DIR": str(project / "yolo-config"),
            "TMPDIR": str(tmp), contract.ENV_TRACKING_URI: f"sqlite:///{project}/mlflow.db",
            contract.ENV_TORCH_THREADS: "1"}
    return env | extra


def start_job(project: Path, argv: list[str], env: dict[str, str]) -> subprocess.Popen:
    log = (project / "job.log").open("ab")
    return subprocess.Popen([sys.executable, "-m", "jobs.train", "--data", "data/tiny/data.yaml", *argv],
                            cwd=project, env=env, stdout=log, stderr=subprocess.STDOUT)


@pytest.fixture(scope="module")
def finished(project: Path):
    """One real tiny training as a child of a grid's parent run: (client, run, exit code, seconds, log)."""
    client = tracking.make_client(uri=f"sqlite:///{project}/mlflow.db")
    experiment_id = tracking.ensure_experiment(client=client, name="tp4-e2e")
    parent = client.create_run(experiment_id, tags={contract.TAG_ROLE: contract.ROLE_PARENT}).info.run_id
    env = job_env(project, **{contract.ENV_EXPERIMENT: "tp4-e2e", contract.ENV_PARENT_RUN_ID: parent,
                              contract.ENV_GRID: "tp4-e2e", contract.ENV_POINT: "train-64-0.02-3",
                              contract.ENV_SPEC_HASH: "abcdef012345", contract.ENV_ATTEMPT: "1",
                              contract.ENV_BACKEND: "local", contract.ENV_IMAGE: "tp4-trainer:test",
                              # 2, not ultralytics' own choice here (cores - 1 = 1): proves the override.
                              contract.ENV_TORCH_THREADS: "2"})
    started = time.monotonic()
    job = start_job(project, ["--model", str(BACKBONE), *TINY_ARGS], env)
    code = job.wait(timeout=300)
    seconds = time.monotonic() - started
    log = (project / "job.log").read_text(errors="replace")
    runs = client.search_runs([experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent}'")
    assert code == 0 and len(runs) == 1, log[-3000:]
    print(f"tiny 1-epoch job: {seconds:.1f} s")
    return client, runs[0], parent, log


@pytest.mark.slow
def test_job_finishes_as_child_of_parent(finished) -> None:
    client, run, parent, _ = finished
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "train-64-0.02-3"
    assert run.data.tags["mlflow.parentRunId"] == parent


@pytest.mark.slow
def test_job_logs_params_that_took_effect(finished) -> None:
    client, run, _, _ = finished
    params = run.data.params
    expected = {"epochs": "1", "imgsz": "64", "batch": "4", "lr0": "0.02", "seed": "3",
                "optimizer": "SGD", "nbs": "4", "warmup_epochs": "0", "workers": "0",
                "device": "cpu", "model": str(BACKBONE), "weights": str(BACKBONE), "weights_source": "path",
                "data": "data/tiny/data.yaml"}
    assert {k: params.get(k) for k in expected} == expected
    # what took effect, and ultralytics' every argument: the artifact the tag names, not ~110 params
    effective = client.download_artifacts(run.info.run_id, run.data.tags["tp4.ultralytics_args"])
    took = yaml.safe_load(Path(effective).read_text())
    assert {k: took[k] for k in ("lr0_effective", "optimizer_class", "torch_threads", "accumulate")} == {
        "lr0_effective": 0.02, "optimizer_class": "SGD", "torch_threads": 2, "accumulate": 1}
    assert "mosaic" in took and "mosaic" not in params
    assert params["dataset_md5"].endswith(".dir")
    assert not {"project", "name", "save_dir"} & params.keys()


@pytest.mark.slow
def test_job_logs_final_and_epoch_metrics(finished) -> None:
    client, run, _, _ = finished
    metrics = run.data.metrics
    for name in contract.FINAL_METRICS:
        assert 0.0 <= metrics[name] <= 1.0
    assert metrics[contract.METRIC_TRAIN_SECONDS] > 0
    assert 0 < metrics[contract.METRIC_LATENCY_MS] < 10_000
    assert 1 < metrics[contract.METRIC_MODEL_SIZE_MB] < 50
    assert metrics[contract.METRIC_CPU_SECONDS] > 0  # this process's CPU time (and its children's)
    assert metrics[contract.METRIC_GPU_SECONDS] == 0.0  # trained on the CPU
    assert metrics[contract.METRIC_EPOCHS] == 1
    for name in ("mAP50", "mAP50-95", "precision", "recall", "train_box_loss", "val_box_loss", "lr_pg0"):
        history = client.get_metric_history(run.info.run_id, contract.EPOCH_PREFIX + name)
        assert [m.step for m in history] == [1], name
    lr = client.get_metric_history(run.info.run_id, contract.EPOCH_PREFIX + "lr_pg0")
    assert lr[0].value == pytest.approx(0.02)


@pytest.mark.slow
def test_job_logs_its_dataset_as_an_mlflow_input(finished) -> None:
    client, run, _, _ = finished
    md5 = run.data.params["dataset_md5"]
    (entry,) = run.inputs.dataset_inputs
    assert entry.dataset.digest == md5 and entry.dataset.name == "tiny"
    assert {t.key: t.value for t in entry.tags} == {"mlflow.data.context": "train"}
    # this DVC project has no remote: the source is the dataset's folder in it (never another project's remote)
    assert entry.dataset.source_type == "local" and entry.dataset.source.endswith('/data/tiny"}')
    found = client.search_runs([run.info.experiment_id], filter_string=f"dataset.digest = '{md5}'")
    assert [r.info.run_id for r in found] == [run.info.run_id]


@pytest.mark.slow
def test_job_logs_its_best_weights_as_a_servable_model(finished) -> None:
    import mlflow

    from jobs.common.model import MODEL_NAME, run_model_id

    client, run, _, _ = finished
    model_id = run_model_id(client=client, run_id=run.info.run_id)
    assert model_id is not None
    logged = mlflow.get_logged_model(model_id)
    assert logged.name == MODEL_NAME and logged.source_run_id == run.info.run_id
    on_dataset = {m.key: m.value for m in logged.metrics or [] if m.dataset_name == "tiny"}
    assert on_dataset == {k: run.data.metrics[k] for k in contract.FINAL_METRICS}  # val metrics, on their dataset


@pytest.mark.slow
def test_job_sets_the_contract_tags(finished) -> None:
    _, run, _, _ = finished
    tags = run.data.tags
    expected = {contract.TAG_GRID: "tp4-e2e", contract.TAG_POINT: "train-64-0.02-3",
                contract.TAG_SPEC_HASH: "abcdef012345", contract.TAG_ATTEMPT: "1", contract.TAG_BACKEND: "local",
                contract.TAG_ROLE: contract.ROLE_TRAIN, contract.TAG_HOST_GPU: "none", contract.TAG_TORCH_THREADS: "2",
                contract.TAG_CODE_VERSION: contract.CODE_VERSION, contract.TAG_WEIGHTS_SOURCE: "path",
                contract.TAG_WEIGHTS: str(BACKBONE), contract.TAG_DATASET_MD5: run.data.params["dataset_md5"]}
    assert {k: tags.get(k) for k in expected} == expected
    # a local process ran in no image, whatever TP4_IMAGE says: the image tag is for pods only
    assert contract.TAG_IMAGE not in tags and tags[contract.TAG_HOST_CPU]
    assert contract.TAG_STOPPED_EARLY not in tags  # trained every epoch asked


@pytest.mark.slow
def test_job_logs_artifacts_under_lab_names(finished, tmp_path: Path) -> None:
    client, run, _, _ = finished
    plots = {a.path for a in client.list_artifacts(run.info.run_id, contract.ARTIFACT_PLOTS_DIR)}
    lab = {"results.png", "confusion_matrix.png", "PR_curve.png", "F1_curve.png"}
    assert {f"{contract.ARTIFACT_PLOTS_DIR}/{name}" for name in lab} <= plots
    assert f"{contract.ARTIFACT_PLOTS_DIR}/BoxPR_curve.png" in plots  # the original is kept
    weights = {a.path for a in client.list_artifacts(run.info.run_id, contract.ARTIFACT_WEIGHTS_DIR)}
    assert weights == {"weights/best.pt", "weights/last.pt"}
    csv = Path(client.download_artifacts(run.info.run_id, contract.ARTIFACT_RESULTS_CSV, str(tmp_path)))
    assert csv.read_text().splitlines()[0].startswith("epoch,time,train/box_loss")


@pytest.mark.slow
def test_job_leaves_nothing_behind(finished, project: Path) -> None:
    client, _, _, _ = finished
    assert not list((project / "tmp").glob("tp4-train-*"))  # ultralytics' output folder was removed
    assert not (project / "runs").exists() and not (project / "mlruns").exists()
    assert {e.name for e in client.search_experiments()} == {"Default", "tp4-e2e"}  # ultralytics logged nothing
    folder = project / "data" / "tiny"
    assert dataset.directory_md5(path=folder) == dataset.pinned_md5(path=folder)  # no label cache written there


@pytest.mark.slow
def test_corrupted_dataset_exits_2_without_run(project: Path, tmp_path: Path) -> None:
    broken = tmp_path / "proj"
    shutil.copytree(project / "data", broken / "data")
    shutil.copytree(project / ".dvc", broken / ".dvc")
    label = next((broken / "data" / "tiny" / "labels" / "val").glob("*.txt"))
    label.write_text("0 0.5 0.5 0.9 0.9\n")
    done = subprocess.run([sys.executable, "-m", "jobs.train", "--data", "data/tiny/data.yaml", *TINY_ARGS],
                          cwd=broken, env=job_env(broken), capture_output=True, text=True, timeout=120)
    assert done.returncode == contract.EXIT_BAD_INPUT
    assert f"modified:   labels/val/{label.name}" in done.stderr
    assert not (broken / "mlflow.db").exists()


@pytest.mark.slow
def test_sigterm_marks_the_run_killed(project: Path) -> None:
    """A standalone run (the lab's baseline mode: no parent, --exp-name) killed mid-training."""
    env = job_env(project)
    client = tracking.make_client(uri=env[contract.ENV_TRACKING_URI])
    argv = ["--model", str(BACKBONE), "--exp-name", "tp4-sigterm", *TINY_ARGS, "--epochs", "300"]
    job = start_job(project, argv, env)
    try:
        run = wait_for_first_epoch(client=client, experiment="tp4-sigterm", job=job)
        job.send_signal(signal.SIGTERM)
        code = job.wait(timeout=120)
    finally:
        if job.poll() is None:
            job.kill()
    assert code == 128 + signal.SIGTERM
    assert client.get_run(run).info.status == "KILLED"
    assert not list((project / "tmp").glob("tp4-train-*"))


def wait_for_first_epoch(*, client, experiment: str, job: subprocess.Popen, timeout: float = 240) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert job.poll() is None, "the job ended before it could be killed"
        found = client.get_experiment_by_name(experiment)
        runs = client.search_runs([found.experiment_id]) if found else []
        if runs and f"{contract.EPOCH_PREFIX}mAP50" in runs[0].data.metrics:
            assert runs[0].info.status == "RUNNING"
            return runs[0].info.run_id
        time.sleep(0.5)
    raise AssertionError("no epoch logged in time")


def test_the_dataset_source_is_the_remotes_object_for_the_pin(tmp_path: Path) -> None:
    """With a DVC remote, the MLflow dataset's source is the remote's object of the pinned md5."""
    from jobs.common import mlflow_dataset

    (tmp_path / ".dvc").mkdir()
    (tmp_path / ".dvc" / "config").write_text("[core]\n    remote = here\n['remote \"here\"']\n    url = ../store\n")
    md5 = "66099f2d927c092b2dd598316a47ca46.dir"
    found = mlflow_dataset.source_uri(project=mlflow_dataset.dvc_project(tmp_path / "data" / "tiny"), md5=md5, env={})
    assert found == (tmp_path / "store").resolve().as_uri() + "/files/md5/66/099f2d927c092b2dd598316a47ca46.dir"
    named = mlflow_dataset.source_uri(project=tmp_path, md5=md5, env={"TP4_DVC_REMOTE_URL": "s3://tp4-dvc"})
    assert named == "s3://tp4-dvc/files/md5/66/099f2d927c092b2dd598316a47ca46.dir"
    assert mlflow_dataset.source_uri(project=None, md5=md5, env={}) is None
