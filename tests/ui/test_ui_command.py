"""`python -m controller ui` without a browser: the port is bound before the link is printed, and what the
wrapped app (controller/ui_app.py) seeds and reorders, on MLflow's real server."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

import contract
from controller.ui_app import GridView, grid_views, inject, lab_metrics_first, seed_script
from tests.helpers.paths import REPO


def _controller_ui(root: Path, port: int) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "controller", "--root", str(root), "ui", "--port", str(port)],
                            cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"})


@pytest.mark.slow
def test_a_taken_port_is_one_error_exit_2_and_no_link(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = _controller_ui(tmp_path, port)
        out, err = server.communicate(timeout=120)
    assert server.returncode == 2, (out, err)
    assert "http://" not in out and "http://" not in err  # no link to the other server
    assert f"port {port} on 127.0.0.1 is already in use" in err
    assert f"--port {port + 1}" in err and f"UI_PORT={port + 1}" in err
    assert "Traceback" not in err and "Errno" not in err
    assert not (tmp_path / contract.EMBEDDED_DIR).exists()  # failed before touching the project


@pytest.mark.slow
def test_the_link_is_printed_once_the_port_is_bound_and_the_index_is_seeded(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = _controller_ui(tmp_path, port)
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        assert line.startswith(f"MLflow UI on http://127.0.0.1:{port}/#/experiments"), line
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass  # bound and listening when the link is out (served once MLflow has started)
        deadline = time.monotonic() + 120
        while True:
            try:
                index = requests.get(f"http://127.0.0.1:{port}/", timeout=5,
                                     headers={"If-None-Match": "*"})
                break
            except requests.RequestException:
                assert time.monotonic() < deadline, "the UI did not answer within 120 s"
                time.sleep(0.5)
        assert index.status_code == 200 and "etag" not in index.headers
        assert index.headers["cache-control"] == "no-store"
        assert index.text.index('"mlflow.workflowType_v1"') < index.text.index("static/js/main.")
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_grid_views_union_the_axes_and_take_the_latest_objective() -> None:
    views = grid_views([("1", "a", {"axis.imgsz": "[320, 416]", "axis.lr0": "[0.005, 0.01]",
                                    "objective": "mAP50 (maximize)", "train.epochs": "3"}),
                        ("1", "b", {"axis.lr0": "[0.005]", "axis.seed": "[1, 42]", "objective": "mAP50-95 (maximize)"}),
                        ("2", "c", {"grid": "other"})])
    assert views == [GridView("1", ("imgsz", "lr0", "seed"), "mAP50", ("a", "b")),
                     GridView("2", (), "mAP50-95", ("c",))]


def test_the_seed_script_cannot_end_its_script_element_early() -> None:
    script = seed_script([GridView("1", ("</script><script>alert(1)",), "mAP50-95")])
    assert "</script>" not in script and "<\\/script>" in script
    page = inject(b"<html><head><script defer src='main.js'></script></head></html>", script)
    assert page.count(b"</script>") == 2 and page.index(b"<script>(function") < page.index(b"main.js")
    assert inject(b"no scripts here", script) == b"no scripts here"


def test_lab_metrics_come_first_and_no_value_changes() -> None:
    metrics = [{"key": k, "value": i, "step": 0} for i, k in enumerate(
        ["epoch/train_box_loss", "epoch/lr_pg0", "precision", "recall", "mAP50", "mAP50-95", "train_seconds"])]
    body = json.dumps({"runs": [{"info": {"experiment_id": "3"}, "data": {"metrics": metrics}}]}).encode()
    ordered = json.loads(lab_metrics_first(body, objectives={"3": "mAP50"}))["runs"][0]["data"]["metrics"]
    assert [m["key"] for m in ordered] == ["mAP50", "mAP50-95", "precision", "recall", "epoch/train_box_loss",
                                           "epoch/lr_pg0", "train_seconds"]
    assert sorted((m["key"], m["value"]) for m in ordered) == sorted((m["key"], m["value"]) for m in metrics)
    single = json.loads(lab_metrics_first(json.dumps({"run": {"info": {"experiment_id": "9"},
                                                              "data": {"metrics": metrics}}}).encode(),
                                          objectives={}))
    assert single["run"]["data"]["metrics"][0]["key"] == "mAP50-95"  # the default objective
    assert lab_metrics_first(b"not json", objectives={}) == b"not json"


@pytest.mark.parametrize("host", ["0.0.0.0", "127.0.0.1"])
def test_the_printed_link_is_one_a_browser_can_open(host: str) -> None:
    from controller.ui import link

    assert link(host=host, port=5001) == "http://127.0.0.1:5001/#/experiments"
