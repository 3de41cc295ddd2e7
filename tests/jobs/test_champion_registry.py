"""The champion gate against a real MLflow server (`mlflow server`, SQLite, proxied artifacts) and real models.

One tiny training gives two different models (an early checkpoint and the last weights); grids are
logged with the train job's schema, each run carrying one of them as weights/best.pt, and finalized by
`python -m jobs.finalize` in a subprocess, as the finalize Job runs it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

import contract
from controller.tracking import start_parent_run
from devstack.mlflow_server import MlflowServer, ServerSettings
from devstack.private import Redactor
from devstack.processes import free_port
from jobs.common.tracking import ensure_experiment, make_client
from tests.helpers.paths import BACKBONE, COCO128, REPO
from tests.jobs.test_finalize import finalize, log_train_run, make_grid, person_dataset, point_metrics

pytestmark = pytest.mark.slow
IMGSZ = 224


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(tracking URI, backend store URI) of a real tracking server with proxied artifacts."""
    folder = tmp_path_factory.mktemp("mlflow-server")
    backend = f"sqlite:///{folder / 'mlflow.db'}"
    settings = ServerSettings(host="127.0.0.1", port=free_port(), backend_uri=backend,
                              artifacts_destination=str(folder / "artifacts"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "TP4_", "AWS_"))}
    env |= {"MLFLOW_BACKEND_STORE_URI": backend, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    running = MlflowServer(settings=settings, env=env, log=folder / "server.log", redactor=Redactor())
    running.start()
    try:
        yield running.url, backend
    finally:
        running.stop()


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(dataset, an early checkpoint, the last weights) of one tiny training from the COCO backbone."""
    if not (BACKBONE.is_file() and COCO128.is_dir()):
        pytest.fail(f"the shared weights {BACKBONE} or COCO128 {COCO128} are missing (set TP4_SHARED)")
    root = tmp_path_factory.mktemp("two-models")
    dataset = person_dataset(COCO128, root / "tiny")
    script = (
        "import sys, torch; torch.set_num_threads(2)\n"
        "from ultralytics import YOLO, settings\n"
        "settings.update({'mlflow': False})\n"
        "YOLO(sys.argv[1]).train(data=sys.argv[2], epochs=4, imgsz=int(sys.argv[4]), batch=8, nbs=8, warmup_epochs=0,"
        " workers=0, optimizer='SGD', lr0=0.02, plots=False, val=False, amp=False, device='cpu', save_period=1,"
        " project=sys.argv[3], name='train', exist_ok=True, verbose=False)\n")
    env = {**os.environ, "YOLO_OFFLINE": "true", "YOLO_CONFIG_DIR": str(root / "ultralytics")}
    subprocess.run([sys.executable, "-c", script, str(BACKBONE), str(dataset / "data.yaml"), str(root / "runs"),
                    str(IMGSZ)], env=env, check=True, capture_output=True, timeout=600)
    weights = root / "runs" / "train" / "weights"
    [early] = [w for w in weights.glob("epoch*.pt") if w.stem == "epoch1"]
    return dataset, early, weights / "last.pt"


def grid_with_weights(client: MlflowClient, tmp_path: Path, *, dataset: Path, name: str, model: str,
                      weights: Path, **overrides: Any) -> tuple[str, str]:
    """A one-configuration grid (two seeds) registering into `model`, its runs carrying `weights` as
    weights/best.pt; (parent run id, candidate run id)."""
    from jobs.common.dataset import directory_md5

    folder = tmp_path / name
    grid, points = make_grid(folder, name=name, axes={"imgsz": [IMGSZ], "seed": [1, 2]}, constraints=[],
                             model={"weights": "yolov8n.pt", "registered_name": model},
                             job={"name_template": "train-{imgsz}-{seed}"}, **overrides)
    experiment_id = ensure_experiment(client=client, name=grid.experiment)
    parent_id = start_parent_run(client, grid=grid, points=points, experiment_id=experiment_id, backend="local",
                                 dataset_md5=directory_md5(path=dataset))
    best = folder / "best.pt"
    best.write_bytes(weights.read_bytes())
    ids = {}
    for point in points:
        ids[point.name] = log_train_run(client, experiment_id=experiment_id, parent_id=parent_id, grid=grid,
                                        point=point, metrics=point_metrics(point))
        client.log_artifact(ids[point.name], str(best), contract.ARTIFACT_WEIGHTS_DIR)
    return parent_id, ids[f"train-{IMGSZ}-2"]


def run_finalizer(uri: str, parent_id: str, tmp_path: Path, dataset: Path) -> tuple[dict[str, Any], str]:
    done = finalize(uri, "--parent-run-id", parent_id, "--reports-dir", str(tmp_path / "reports"),
                    "--data", str(dataset))
    assert done.returncode == 0, done.stdout + done.stderr
    [report] = [json.loads(p.read_text()) for p in (tmp_path / "reports").glob("*/decision.json")
                if json.loads(p.read_text())["parent_run_id"] == parent_id]
    return report, done.stdout


def champion_gate(report: dict[str, Any]) -> dict[str, Any]:
    [gate] = [g for g in report["decision"]["gates"] if g["name"] == "champion"]
    return gate


def test_a_champion_from_an_earlier_grid_is_evaluated_again_on_the_same_test_images(
        server: tuple[str, str], models: tuple[Path, Path, Path], tmp_path: Path) -> None:
    uri, _ = server
    dataset, early, last = models
    client = make_client(uri=uri)
    first_parent, first_run = grid_with_weights(client, tmp_path, dataset=dataset, name="earlier", model="person",
                                                weights=early, gates={"min_objective": 0.0})
    first, _ = run_finalizer(uri, first_parent, tmp_path, dataset)
    assert first["decision"]["verdict"] == "YES" and champion_gate(first)["data"]["status"] == "none"
    measured = client.get_run(first_run).data.metrics["test_mAP50-95"]
    # what a stored number would say: the gate must not read it
    client.log_metric(first_run, "test_mAP50-95", 0.999)

    parent, candidate = grid_with_weights(client, tmp_path, dataset=dataset, name="later", model="person",
                                          weights=last, gates={"min_objective": 0.0, "champion_margin": 0.0})
    report, stdout = run_finalizer(uri, parent, tmp_path, dataset)

    gate = champion_gate(report)
    data = gate["data"]
    print(f"\nchampion gate: {json.dumps(gate)}")
    assert (data["status"], data["basis"], data["version"], data["champion_run_id"]) == \
        ("compared", "test", "1", first_run)
    assert data["champion_value"] == pytest.approx(measured, abs=1e-9)  # evaluated again here, not 0.999
    assert data["candidate_value"] == pytest.approx(client.get_run(candidate).data.metrics["test_mAP50-95"])
    assert data["improvement"] == pytest.approx(data["candidate_value"] - data["champion_value"])
    assert data["low"] <= data["improvement"] <= data["high"] and data["low"] < data["high"]
    assert (data["n_images"], data["resamples"], data["confidence"]) == (4, 1000, 0.95)
    assert data["n_boxes"] == sum(len(f.read_text().splitlines()) for f in (dataset / "labels" / "test").glob("*"))
    assert data["resolvable"] == pytest.approx((data["high"] - data["low"]) / 2)
    assert data["separated"] == (data["low"] > 0 or data["high"] < 0)
    assert gate["passed"] == (data["low"] > data["margin"])
    assert report["test"]["champion_evaluated"] is True
    champion_now = client.get_model_version_by_alias("person", "champion")
    assert (champion_now.run_id == candidate) == gate["passed"], stdout


def test_a_champion_whose_run_was_deleted_and_garbage_collected_is_as_no_champion(
        server: tuple[str, str], models: tuple[Path, Path, Path], tmp_path: Path) -> None:
    uri, backend = server
    dataset, early, last = models
    client = make_client(uri=uri)
    first_parent, first_run = grid_with_weights(client, tmp_path, dataset=dataset, name="gone-first",
                                                model="gone-person", weights=early, gates={"min_objective": 0.0})
    run_finalizer(uri, first_parent, tmp_path, dataset)
    assert client.get_model_version_by_alias("gone-person", "champion").run_id == first_run
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    for argv in (["runs", "delete", "--run-id", first_run],
                 ["gc", "--backend-store-uri", backend, "--run-ids", first_run]):
        done = subprocess.run([sys.executable, "-m", "mlflow", *argv], cwd=REPO, env=env, capture_output=True,
                              text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
    with pytest.raises(Exception, match="not found|RESOURCE_DOES_NOT_EXIST"):
        client.get_run(first_run)

    parent, candidate = grid_with_weights(client, tmp_path, dataset=dataset, name="gone-later",
                                          model="gone-person", weights=last, gates={"min_objective": 0.0})
    report, stdout = run_finalizer(uri, parent, tmp_path, dataset)

    gate = champion_gate(report)
    data = gate["data"]
    assert gate["passed"] and data["status"] == "unavailable" and data["missing"] == "run"
    assert (data["model"], data["alias"], data["version"]) == ("gone-person", "champion", "1")
    assert "gone-person" in data["note"] and "@champion" in data["note"] and first_run in data["note"]
    assert report["decision"]["verdict"] == "YES", stdout
    moved = client.get_model_version_by_alias("gone-person", "champion")
    assert moved.run_id == candidate and str(moved.version) == "2"
    assert client.get_run(parent).data.tags[contract.TAG_PREVIOUS_CHAMPION] == "1"
