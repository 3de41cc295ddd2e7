"""`python -m jobs.finalize` end to end on a real MLflow store (SQLite in tmp_path), without training.

The parent run and its grid.json are made by the controller's own code, so
the test holds the two halves to the same contract; the train runs are
logged with the schema the train job uses, metrics made up.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

import contract
from contract.grid import GridSpec, parse_grid
from controller.core.expanding import GridPoint, expand
from controller.tracking import start_parent_run
from jobs.common.tracking import ensure_experiment, make_client
from tests.helpers.paths import REPO

DATASET_MD5 = "0123456789abcdef0123456789abcdef.dir"


def grid_yaml(**overrides: Any) -> dict[str, Any]:
    raw = {"name": "tiny-grid", "experiment": "tiny-exp", "dataset": {"path": "data/tiny"},
           "model": {"weights": "yolov8n.pt", "registered_name": "tiny-detector"},
           "train": {"epochs": 1, "batch": 4, "optimizer": "SGD"},
           "axes": {"imgsz": [64, 96], "lr0": [0.01], "seed": [1, 2]},
           "objective": {"metric": "mAP50-95", "direction": "maximize"},
           "constraints": [{"metric": "recall", "min": 0.2}],
           "gates": {"min_success_fraction": 0.75, "min_objective": 0.05},
           "report": {"language": "fr"}}
    return {**raw, **overrides}


def make_grid(tmp_path: Path, **overrides: Any) -> tuple[GridSpec, list[GridPoint]]:
    (tmp_path / "data" / "tiny").mkdir(parents=True, exist_ok=True)
    grid = parse_grid(grid_yaml(**overrides), source="grid.yaml", base_dir=tmp_path)
    return grid, expand(grid, dataset_md5=DATASET_MD5)


def log_train_run(client: MlflowClient, *, experiment_id: str, parent_id: str, grid: GridSpec, point: GridPoint,
                  metrics: Mapping[str, float], status: str = "FINISHED", spec_hash: str | None = None,
                  grid_name: str | None = None, tags: Mapping[str, str] | None = None) -> str:
    tags = {contract.TAG_GRID: grid_name or grid.name, contract.TAG_POINT: point.name,
            contract.TAG_SPEC_HASH: spec_hash or point.spec_hash, contract.TAG_ROLE: contract.ROLE_TRAIN,
            contract.TAG_WEIGHTS_SOURCE: "pretrained", contract.TAG_ATTEMPT: "1",
            contract.TAG_DATASET_MD5: DATASET_MD5, "mlflow.parentRunId": parent_id, **(tags or {})}
    run_id = client.create_run(experiment_id, tags=tags, run_name=point.name).info.run_id
    for key, value in {**grid.train, **point.params}.items():
        client.log_param(run_id, key, value)
    for key, value in metrics.items():
        client.log_metric(run_id, key, value)
    client.set_terminated(run_id, status=status)
    return run_id


def point_metrics(point: GridPoint) -> dict[str, float]:
    objective = 0.10 + (0.05 if point.params["imgsz"] == 96 else 0.0) + 0.01 * point.params["seed"]
    return {"precision": 0.5, "recall": 0.6, "mAP50": 2 * objective, "mAP50-95": objective,
            "train_seconds": 3.0, "inference_ms_per_image": 4.0, "model_size_mb": 5.0}


def finalize(uri: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, contract.ENV_TRACKING_URI: uri, "PYTHONPATH": str(REPO)}
    env.pop(contract.ENV_PARENT_RUN_ID, None)
    return subprocess.run([sys.executable, "-m", "jobs.finalize", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=240, check=False)


@pytest.fixture
def store(tmp_path: Path) -> tuple[str, MlflowClient]:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    return uri, make_client(uri=uri)


def submit(client: MlflowClient, tmp_path: Path, **overrides: Any) -> tuple[GridSpec, list[GridPoint], str, str]:
    grid, points = make_grid(tmp_path, **overrides)
    experiment_id = ensure_experiment(client=client, name=grid.experiment)
    parent_id = start_parent_run(client, grid=grid, points=points, experiment_id=experiment_id, backend="local",
                                 dataset_md5=DATASET_MD5)
    return grid, points, experiment_id, parent_id


def test_the_finalizer_reads_mlflow_writes_the_report_and_logs_it(tmp_path: Path,
                                                                  store: tuple[str, MlflowClient]) -> None:
    uri, client = store
    grid, points, experiment_id, parent_id = submit(client, tmp_path)
    by_name = {p.name: p for p in points}
    best = by_name["train-96-0.01-2"]
    # an older attempt of the best point, much better: the newest run of a point wins
    log_train_run(client, experiment_id=experiment_id, parent_id=parent_id, grid=grid, point=best,
                  metrics={**point_metrics(best), "mAP50-95": 0.9})
    failed = "train-64-0.01-1"
    ids = {p.name: log_train_run(client, experiment_id=experiment_id, parent_id=parent_id, grid=grid, point=p,
                                 metrics=point_metrics(p), status="FAILED" if p.name == failed else "FINISHED")
           for p in points}
    # neither another grid's run nor a run of a stale spec belongs here
    log_train_run(client, experiment_id=experiment_id, parent_id=parent_id, grid=grid, point=best,
                  metrics={**point_metrics(best), "mAP50-95": 0.95}, grid_name="other-grid")
    log_train_run(client, experiment_id=experiment_id, parent_id=parent_id, grid=grid, point=best,
                  metrics={**point_metrics(best), "mAP50-95": 0.95}, spec_hash="stale0000000")

    done = finalize(uri, "--parent-run-id", parent_id, "--reports-dir", str(tmp_path / "reports"))

    assert done.returncode == 0, done.stderr
    folder = tmp_path / "reports" / "tiny-grid"
    assert "decision YES" in done.stdout and str(folder / "decision.md") in done.stdout
    decision = json.loads((folder / "decision.json").read_text())
    assert decision["decision"]["verdict"] == "YES"
    assert decision["candidate"]["run_id"] == ids["train-96-0.01-2"]
    assert decision["candidate"]["metrics"]["mAP50-95"]["val"] == pytest.approx(0.17)
    assert decision["n_success"] == 3 and decision["n_points"] == 4
    assert [u["point"] for u in decision["unranked"]] == ["train-64-0.01-1"]
    assert decision["test"]["evaluated"] is False  # synthetic runs carry no weights
    markdown = (folder / "decision.md").read_text()
    assert "# Décision de promotion — grille `tiny-grid`" in markdown and ids["train-96-0.01-2"] in markdown
    assert (folder / "runs.csv").read_text().count("\n") == 5
    artifacts = {f.path for f in client.list_artifacts(parent_id, contract.ARTIFACT_REPORT_DIR)}
    assert {"report/decision.md", "report/decision.json", "report/runs.csv", "report/plots"} <= artifacts
    plots = {f.path for f in client.list_artifacts(parent_id, "report/plots")}
    assert "report/plots/objective_by_configuration.png" in plots and len(plots) == 4
    assert client.get_run(parent_id).data.tags[contract.TAG_DECISION] == "YES"


def test_a_no_is_still_a_success(tmp_path: Path, store: tuple[str, MlflowClient]) -> None:
    uri, client = store
    grid, points, experiment_id, parent_id = submit(client, tmp_path, gates={"min_objective": 0.5})
    for point in points:
        log_train_run(client, experiment_id=experiment_id, parent_id=parent_id, grid=grid, point=point,
                      metrics=point_metrics(point))
    done = finalize(uri, "--parent-run-id", parent_id, "--reports-dir", str(tmp_path / "reports"),
                    "--no-test-eval", "--no-register")
    assert done.returncode == 0, done.stderr
    assert "decision NO (failed gates: min_objective)" in done.stdout
    assert client.get_run(parent_id).data.tags[contract.TAG_DECISION] == "NO"


def test_a_missing_grid_spec_exits_2(tmp_path: Path, store: tuple[str, MlflowClient]) -> None:
    uri, client = store
    experiment_id = ensure_experiment(client=client, name="tiny-exp")
    bare_parent = client.create_run(experiment_id, tags={contract.TAG_ROLE: contract.ROLE_PARENT}).info.run_id
    done = finalize(uri, "--parent-run-id", bare_parent, "--reports-dir", str(tmp_path / "reports"))
    assert done.returncode == 2 and contract.ARTIFACT_GRID_SPEC in done.stderr
    done = finalize(uri, "--parent-run-id", "0" * 32, "--reports-dir", str(tmp_path / "reports"))
    assert done.returncode == 2 and "no such run" in done.stderr
    assert not (tmp_path / "reports").exists()


def test_a_search_with_early_stops_a_confirmation_and_two_objectives(tmp_path: Path,
                                                                    store: tuple[str, MlflowClient]) -> None:
    """A TPE search: grid.json lists no point, the controller records each trial (and the confirm re-runs)
    as a tag on the parent run; two trials were stopped early."""
    uri, client = store
    (tmp_path / "data" / "tiny").mkdir(parents=True)
    grid = parse_grid(grid_yaml(
        train={"epochs": 10, "batch": 4, "optimizer": "SGD", "seed": 0},
        axes={"imgsz": [64, 96], "lr0": {"loguniform": [0.001, 0.1]}},
        search={"mode": "tpe", "trials": 6}, early_stopping={"rule": "median", "min_epochs": 2},
        confirm={"top": 2, "seeds": [1, 2], "tie": "cheaper"},
        objective={"metric": "mAP50-95", "second": {"metric": "train_seconds", "tolerance": 0.01}},
        report={"language": "en"}), source="grid.yaml", base_dir=tmp_path)
    experiment_id = ensure_experiment(client=client, name=grid.experiment)
    parent_id = start_parent_run(client, grid=grid, points=[], experiment_id=experiment_id, backend="local",
                                 dataset_md5=DATASET_MD5)
    # (params, phase, mAP50-95, epochs trained): trials 2 and 5 stopped early; 6-9 confirm 1 and 3
    trials = [({"imgsz": 64, "lr0": 0.002}, "search", 0.10, 10), ({"imgsz": 96, "lr0": 0.01}, "search", 0.17, 10),
              ({"imgsz": 64, "lr0": 0.05}, "search", 0.04, 3), ({"imgsz": 96, "lr0": 0.003}, "search", 0.16, 10),
              ({"imgsz": 64, "lr0": 0.02}, "search", 0.12, 10), ({"imgsz": 96, "lr0": 0.08}, "search", 0.03, 2),
              ({"imgsz": 96, "lr0": 0.01, "seed": 1}, "confirm", 0.171, 10),
              ({"imgsz": 96, "lr0": 0.01, "seed": 2}, "confirm", 0.169, 10),
              ({"imgsz": 96, "lr0": 0.003, "seed": 1}, "confirm", 0.158, 10),
              ({"imgsz": 96, "lr0": 0.003, "seed": 2}, "confirm", 0.162, 10)]
    ids = {}
    for number, (params, phase, objective, epochs) in enumerate(trials):
        point = GridPoint(name=f"trial-{number}", params=params, spec_hash=f"hash{number:04d}")
        client.set_tag(parent_id, contract.TAG_TRIAL_PREFIX + point.name, json.dumps(
            {"number": number, "params": params, "phase": phase, "spec_hash": point.spec_hash}))
        seconds = (2.0 if params["imgsz"] == 64 else 3.0) * epochs  # s per epoch
        stopped = {contract.TAG_STOPPED_EARLY: str(epochs)} if epochs < 10 else {}
        ids[point.name] = log_train_run(
            client, experiment_id=experiment_id, parent_id=parent_id, grid=grid, point=point,
            metrics={**point_metrics(GridPoint(point.name, {**params, "seed": 0}, point.spec_hash)),
                     "mAP50-95": objective, "train_seconds": seconds, contract.METRIC_EPOCHS: epochs},
            tags={contract.TAG_PHASE: phase, **stopped})

    done = finalize(uri, "--parent-run-id", parent_id, "--reports-dir", str(tmp_path / "reports"),
                    "--no-test-eval", "--no-register")

    assert done.returncode == 0, done.stderr
    assert "decision YES" in done.stdout
    folder = tmp_path / "reports" / grid.name
    decision = json.loads((folder / "decision.json").read_text())
    assert decision["candidate"]["run_id"] == ids["trial-6"]  # the confirmed winner's best run
    assert decision["n_points"] == 10 and decision["n_success"] == 8 and decision["n_stopped"] == 2
    assert decision["unranked"] == []
    search = decision["search"]
    assert (search["mode"], search["trials_run"], search["trials_stopped"], search["confirm_runs"]) == \
        ("tpe", 6, 2, 4)
    assert [(s["point"], s["epoch"], s["saved_seconds"]) for s in search["stopped"]] == [
        ("trial-2", 3, pytest.approx(14.0)), ("trial-5", 2, pytest.approx(24.0))]
    assert search["saved_fraction"] == pytest.approx(38.0 / (38.0 + 20 + 30 + 6 + 30 + 20 + 6))
    assert decision["confirm"]["outcome"] == "winner" and decision["confirm"]["chosen"] == "imgsz=96, lr0=0.01"
    assert decision["pareto"]["chosen"] == "imgsz=96, lr0=0.01"
    assert decision["pareto"]["front"] == ["imgsz=96, lr0=0.01", "imgsz=64, lr0=0.02"]
    assert decision["axes"]["lr0"] == [0.002, 0.003, 0.01, 0.02, 0.05, 0.08]
    markdown = (folder / "decision.md").read_text()
    for heading in ("## Search — how the points were chosen", "### Points stopped early",
                    "## Confirmation — is the best configuration ahead beyond the noise?",
                    "## Two objectives — mAP50-95 and train_seconds"):
        assert heading in markdown
    plots = {f.path.removeprefix("report/plots/") for f in client.list_artifacts(parent_id, "report/plots")}
    assert plots == {"objective_by_configuration.png", "search_best_so_far.png", "search_objective_per_trial.png",
                     "metrics_vs_imgsz.png", "metrics_vs_lr0.png", "metrics_vs_seed.png", "pareto_front.png"}


# --- the test split, the registry and serving, with a real (tiny) model -------------------------------

TINY_SPLITS = {"train": 16, "val": 4, "test": 4}
TINY_IMGSZ = 224


def person_dataset(source: Path, folder: Path) -> Path:
    """A tiny person-only dataset from COCO128: the images with a person, person boxes only."""
    chosen = []
    for image in sorted((source / "images" / "train2017").glob("*.jpg")):
        labels = source / "labels" / "train2017" / f"{image.stem}.txt"
        rows = [r for r in (labels.read_text().splitlines() if labels.is_file() else []) if r.split()[:1] == ["0"]]
        if rows:
            chosen.append((image, rows))
    start = 0
    for split, count in TINY_SPLITS.items():
        (folder / "images" / split).mkdir(parents=True)
        (folder / "labels" / split).mkdir(parents=True)
        for image, rows in chosen[start:start + count]:
            (folder / "images" / split / image.name).write_bytes(image.read_bytes())
            (folder / "labels" / split / f"{image.stem}.txt").write_text("\n".join(rows) + "\n")
        start += count
    (folder / "data.yaml").write_text("train: images/train\nval: images/val\ntest: images/test\nnames:\n  0: person\n")
    return folder


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A real YOLO trained for a few epochs from the COCO-pretrained backbone: it detects something."""
    from tests.helpers.paths import BACKBONE, COCO128

    if not (BACKBONE.is_file() and COCO128.is_dir()):
        pytest.fail(f"the shared weights {BACKBONE} or COCO128 {COCO128} are missing (set TP4_SHARED)")
    root = tmp_path_factory.mktemp("tiny-model")
    dataset = person_dataset(COCO128, root / "tiny")
    script = (
        "import sys, torch; torch.set_num_threads(1)\n"
        "from ultralytics import YOLO, settings\n"
        "settings.update({'mlflow': False})\n"
        "YOLO(sys.argv[1]).train(data=sys.argv[2], epochs=4, imgsz=int(sys.argv[4]), batch=8, nbs=8, warmup_epochs=0,"
        " workers=0, optimizer='SGD', lr0=0.02, plots=False, val=False, amp=False, device='cpu',"
        " project=sys.argv[3], name='train', exist_ok=True, verbose=False)\n")
    env = {**os.environ, "YOLO_OFFLINE": "true", "YOLO_CONFIG_DIR": str(root / "ultralytics")}
    subprocess.run([sys.executable, "-c", script, str(BACKBONE), str(dataset / "data.yaml"), str(root / "runs"),
                    str(TINY_IMGSZ)], env=env, check=True, capture_output=True, timeout=300)
    return dataset, root / "runs" / "train" / "weights" / "last.pt"


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve_and_detect(uri: str, model_uri: str, image: Path, tmp_path: Path) -> list[dict[str, Any]]:
    """`mlflow models serve` the model and send it one real image; the detections that come back."""
    import base64
    import signal
    import time
    import urllib.request

    port = free_port()
    # the scoring server execs `uvicorn` from PATH, as in an activated virtual environment
    env = {**os.environ, contract.ENV_TRACKING_URI: uri, "YOLO_OFFLINE": "true",
           "YOLO_CONFIG_DIR": str(tmp_path / "ultralytics"),
           "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "models", "serve", "-m", model_uri, "--env-manager",
                               "local", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                              env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2)
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
                time.sleep(1)
        body = json.dumps({"dataframe_split": {"columns": ["image"],
                                               "data": [[base64.b64encode(image.read_bytes()).decode()]]},
                           "params": {"conf": 0.01}}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=120) as response:
            return json.loads(response.read())["predictions"]
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
        log.close()


@pytest.mark.slow
def test_test_split_registry_aliases_and_serving(tmp_path: Path, store: tuple[str, MlflowClient],
                                                 tiny_model: tuple[Path, Path]) -> None:
    from jobs.common.dataset import directory_md5

    uri, client = store
    dataset, weights = tiny_model
    grid, points = make_grid(tmp_path, axes={"imgsz": [TINY_IMGSZ], "seed": [1, 2]}, constraints=[],
                             job={"name_template": "train-{imgsz}-{seed}"}, gates={"min_objective": 0.001})
    md5 = directory_md5(path=dataset)
    experiment_id = ensure_experiment(client=client, name=grid.experiment)
    parent_id = start_parent_run(client, grid=grid, points=points, experiment_id=experiment_id, backend="local",
                                 dataset_md5=md5)
    best = tmp_path / "best.pt"
    best.write_bytes(weights.read_bytes())
    ids = {}
    for point in points:
        ids[point.name] = log_train_run(client, experiment_id=experiment_id, parent_id=parent_id, grid=grid,
                                        point=point, metrics=point_metrics(point))
        client.log_artifact(ids[point.name], str(best), contract.ARTIFACT_WEIGHTS_DIR)
    candidate_id = ids[f"train-{TINY_IMGSZ}-2"]

    done = finalize(uri, "--parent-run-id", parent_id, "--reports-dir", str(tmp_path / "reports"),
                    "--data", str(dataset))

    assert done.returncode == 0, done.stdout + done.stderr
    test_metrics = {k: v for k, v in client.get_run(candidate_id).data.metrics.items()
                    if k.startswith(contract.TEST_PREFIX)}
    assert set(test_metrics) == {contract.TEST_PREFIX + m for m in contract.FINAL_METRICS}
    decision = json.loads((tmp_path / "reports" / grid.name / "decision.json").read_text())
    assert decision["test"]["evaluated"] is True
    assert decision["candidate"]["metrics"]["mAP50-95"]["test"] == pytest.approx(test_metrics["test_mAP50-95"])
    version = client.get_model_version_by_alias("tiny-detector", "champion")
    assert version.run_id == candidate_id and str(version.version) == "1"
    assert str(client.get_model_version_by_alias("tiny-detector", "challenger").version) == "1"
    assert client.get_run(parent_id).data.tags[contract.TAG_PREVIOUS_CHAMPION] == "none"
    assert client.get_run(candidate_id).info.status == "FINISHED"  # logging the model did not reopen the run

    # finalizing again: the champion is the candidate itself; no new version
    again = finalize(uri, "--parent-run-id", parent_id, "--reports-dir", str(tmp_path / "reports"),
                     "--data", str(dataset))
    assert again.returncode == 0, again.stdout + again.stderr
    assert "decision YES" in again.stdout and "test split: evaluated" in again.stdout
    assert directory_md5(path=dataset) == md5  # label caches went to a copy, not into the tracked folder
    assert [str(v.version) for v in client.search_model_versions("name = 'tiny-detector'")] == ["1"]

    image = next((dataset / "images" / "test").glob("*.jpg"))
    detections = serve_and_detect(uri, "models:/tiny-detector@champion", image, tmp_path)
    assert detections and {"x1", "y1", "x2", "y2", "score", "class_name"} <= set(detections[0])
    assert all(d["class_name"] == "person" and d["x2"] > d["x1"] for d in detections)
