"""The MLflow UI after a tiny grid, in a real browser (Debian's chromium driven by selenium + chromedriver).

What a lab student looks at after `make demo` and `make ui`: the experiment opens on its training runs
(not MLflow 3's GenAI overview), each train run shows its dataset, the grid's parent run expands into its
children, and the registered model's page shows the `champion` alias. The handout's path (step 7), clicked
from the link `ui` prints in a browser that never saw MLflow: Experiments -> the experiment -> its runs ->
a run -> back -> select the grid's runs -> Compare, on model-training pages throughout, with the grid's
axes and the lab metrics as columns and Compare opening on them. Screenshots are kept under
.tp4/test-artifacts/browser/ of the repository (gitignored) and /tmp/tp4-ui-*.png for a person to look at.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from mlflow.tracking import MlflowClient

from tests.controller.local.test_submit_grid import controller, tiny_dataset, tiny_grid
from tests.helpers.paths import COCO128, REPO

pytestmark = pytest.mark.slow
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
SCREENSHOTS = REPO / ".tp4" / "test-artifacts" / "browser"
EXPERIMENT, MODEL = "tiny-e2e", "tiny-person"
WAIT_S = 60


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("ui-project")
    _, md5 = tiny_dataset(COCO128, folder)
    tiny_grid(folder, md5)
    done = controller(folder, "submit-grid", "grid.yaml", "--parallelism", "2")
    assert done.returncode == 0, done.stdout + done.stderr
    return folder


@pytest.fixture(scope="module")
def ui_server(finished: Path) -> Iterator[tuple[str, str]]:
    """`python -m controller ui` (what `make ui` runs) on the finished project: its URL and the link it printed."""
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "controller", "--root", str(finished), "ui", "--port", str(port)],
                              cwd=finished, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                              env={**os.environ, "PYTHONUNBUFFERED": "1"})
    url = f"http://127.0.0.1:{port}"
    try:
        assert server.stdout is not None
        printed = server.stdout.readline()  # printed once the port is bound, before anything else on stdout
        assert printed.startswith("MLflow UI on http://"), printed
        link = printed.split()[3]
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert server.poll() is None, "the UI server exited"
            time.sleep(0.5)
        else:
            pytest.fail("the MLflow UI did not answer /health within 120 s")
        yield url, link
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()


@pytest.fixture(scope="module")
def ui(ui_server: tuple[str, str]) -> str:
    return ui_server[0]


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.fail("chromium and chromedriver are needed (apt-get install chromium chromium-driver; .ci/run does)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1600,1000"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    try:
        yield driver
    finally:
        driver.quit()


def _wait_for_text(driver: object, *texts: str) -> str:
    from selenium.webdriver.common.by import By

    deadline, body = time.monotonic() + WAIT_S, ""
    while time.monotonic() < deadline:
        body = driver.find_element(By.TAG_NAME, "body").text  # type: ignore[attr-defined]
        if all(text in body for text in texts):
            return body
        time.sleep(0.5)
    missing = [text for text in texts if text not in body]
    raise AssertionError(f"not on the page after {WAIT_S} s: {missing}\n--- page text ---\n{body[:3000]}")


def _shot(driver: object, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for folder in (SCREENSHOTS, Path("/tmp")):
        driver.save_screenshot(str(folder / f"tp4-ui-{name}.png"))  # type: ignore[attr-defined]


def _experiment_link(finished: Path, ui: str) -> str:
    """The link tp4 gives for the grid's runs: the parent run's description holds it."""
    client = MlflowClient(ui)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert experiment is not None
    assert experiment.tags.get("mlflow.experimentKind") == "custom_model_development"
    return f"{ui}/#/experiments/{experiment.experiment_id}/runs?workflowType=machine_learning"


def test_experiment_opens_on_training_runs_with_their_dataset(finished: Path, ui: str, browser: object) -> None:
    from selenium.webdriver.common.by import By

    browser.get(_experiment_link(finished, ui))  # type: ignore[attr-defined]
    body = _wait_for_text(browser, "grid-tiny", "Dataset")
    assert "Detect Issues" not in body and "Token Usage" not in body  # not the GenAI overview
    # the [+] in the parent's Run Name cell (MLflow 3.17: RunNameCellRenderer's button)
    expanders = browser.find_elements(By.CSS_SELECTOR,  # type: ignore[attr-defined]
                                      "[role=gridcell] button[data-component-id*='runnamecellrenderer']")
    assert expanders, "the parent run has no expander"
    body = _wait_for_text(browser, "train-0.005", "train-0.01", "tiny_coco")  # expanded on the first visit
    browser.save_screenshot(str(SCREENSHOTS / "experiment-runs.png"))  # type: ignore[attr-defined]
    assert body.count("tiny_coco") >= 2  # each train run shows its dataset


def test_registered_model_page_shows_the_champion(finished: Path, ui: str, browser: object) -> None:
    browser.get(f"{ui}/#/models/{MODEL}")  # type: ignore[attr-defined]
    _wait_for_text(browser, MODEL, "champion")
    browser.save_screenshot(str(SCREENSHOTS / "registered-model.png"))  # type: ignore[attr-defined]


# --- runs, datasets and models as MLflow objects (the same finished grid) ---------------------------


def test_the_grids_runs_are_found_by_dataset_digest(finished: Path) -> None:
    import mlflow

    import contract

    client = MlflowClient(contract.embedded_tracking_uri(finished))
    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert experiment is not None
    train_runs = client.search_runs([experiment.experiment_id], filter_string="tags.`tp4.role` = 'train'")
    digest = train_runs[0].data.tags[contract.TAG_DATASET_MD5]
    mlflow.set_tracking_uri(contract.embedded_tracking_uri(finished))
    found = mlflow.search_runs([experiment.experiment_id], filter_string=f"dataset.digest = '{digest}'",
                               output_format="list")
    assert {r.info.run_id for r in found} >= {r.info.run_id for r in train_runs} and len(train_runs) == 2
    for run in train_runs:
        assert run.inputs is not None
        (entry,) = [i for i in run.inputs.dataset_inputs if i.dataset.digest == digest]
        assert entry.dataset.name == "tiny_coco" and str(finished / "data" / "tiny_coco") in entry.dataset.source
        assert {t.key: t.value for t in entry.tags}["mlflow.data.context"] == "train"
        assert '"person"' in (entry.dataset.profile or "")


def test_a_non_candidate_runs_model_serves(finished: Path, tmp_path: Path) -> None:
    """Every train run logged its best.pt as a pyfunc LoggedModel: the run the finalizer did not pick serves too."""
    import mlflow

    import contract
    from jobs.common.model import run_model_id
    from tests.jobs.test_finalize import serve_and_detect

    uri = contract.embedded_tracking_uri(finished)
    client = MlflowClient(uri)
    champion = client.get_model_version_by_alias(MODEL, "champion")
    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert experiment is not None
    train_runs = client.search_runs([experiment.experiment_id], filter_string="tags.`tp4.role` = 'train'")
    other = next(r for r in train_runs if r.info.run_id != champion.run_id)
    model_id = run_model_id(client=client, run_id=other.info.run_id)
    assert model_id is not None
    mlflow.set_tracking_uri(uri)
    logged = mlflow.get_logged_model(model_id)
    assert logged.source_run_id == other.info.run_id and {m.key for m in logged.metrics or []} >= {"mAP50-95"}
    image = next((finished / "data" / "tiny_coco" / "images" / "test").glob("*.jpg"))
    detections = serve_and_detect(uri, f"models:/{model_id}", image, tmp_path)
    assert isinstance(detections, list)  # 1 epoch at imgsz 64: it may find nothing, but it answers
    assert all({"x1", "y1", "x2", "y2", "score", "class_name"} <= set(d) for d in detections)


# --- the handout's path, click by click, from the printed link -------------------------------------

GENAI_ONLY = ("Observability", "Detect Issues", "Prompts & versions", "Token Usage")  # GenAI side bar and overview


def _assert_model_training(driver: object, body: str) -> None:
    url = driver.current_url  # type: ignore[attr-defined]
    assert "workflowType=genai" not in url and "/overview" not in url, url
    assert not [text for text in GENAI_ONLY if text in body], (url, body[:1500])


def _header_columns(driver: object) -> list[str]:
    from selenium.webdriver.common.by import By

    cells = driver.find_elements(By.CSS_SELECTOR, ".ag-header-cell[col-id]")  # type: ignore[attr-defined]
    return [cell.get_attribute("col-id") for cell in cells]


def _click_link(driver: object, text: str) -> None:
    from selenium.webdriver.common.by import By

    deadline = time.monotonic() + WAIT_S
    while not (links := driver.find_elements(By.LINK_TEXT, text)):  # type: ignore[attr-defined]
        assert time.monotonic() < deadline, f"no link {text!r} after {WAIT_S} s"
        time.sleep(0.5)
    links[0].click()


def test_the_handouts_path_stays_on_the_grids_training_pages(finished: Path, ui_server: tuple[str, str],
                                                             browser: object) -> None:
    from selenium.webdriver.common.by import By

    url, link = ui_server
    browser.get(f"{url}/static-files/favicon.ico")  # type: ignore[attr-defined]  # same origin, no app
    browser.execute_script("window.localStorage.clear()")  # type: ignore[attr-defined]  # never saw MLflow
    client = MlflowClient(url)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert experiment is not None
    train = {r.info.run_name: r.info.run_id for r in client.search_runs(
        [experiment.experiment_id], filter_string="tags.`tp4.role` = 'train'")}
    assert set(train) == {"train-0.005", "train-0.01"}

    browser.get(link)  # type: ignore[attr-defined]
    _wait_for_text(browser, EXPERIMENT)
    _shot(browser, "1-experiments")
    _click_link(browser, EXPERIMENT)  # handout step 7: Experiments -> the experiment
    body = _wait_for_text(browser, "grid-tiny", "mAP50-95")
    _assert_model_training(browser, body)
    assert f"/experiments/{experiment.experiment_id}/runs" in browser.current_url  # type: ignore[attr-defined]
    columns = _header_columns(browser)
    wanted = ["params.`lr0`", "metrics.`mAP50`", "metrics.`mAP50-95`", "metrics.`precision`", "metrics.`recall`"]
    assert all(c in columns for c in wanted), columns
    _wait_for_text(browser, "train-0.005", "train-0.01")  # the grid's points, its parent run expanded
    _shot(browser, "2-runs")

    _click_link(browser, "train-0.01")  # a run
    body = _wait_for_text(browser, "train-0.01", "Metrics", "mAP50-95")
    _assert_model_training(browser, body)
    assert f"/runs/{train['train-0.01']}" in browser.current_url  # type: ignore[attr-defined]
    _shot(browser, "3-run")

    browser.back()  # type: ignore[attr-defined]
    body = _wait_for_text(browser, "grid-tiny", "train-0.005")
    _assert_model_training(browser, body)
    for run_id in train.values():  # select the grid's points
        box = browser.find_element(By.CSS_SELECTOR,  # type: ignore[attr-defined]
                                   f".ag-row[row-id='{run_id}'] .ag-selection-checkbox input")
        browser.execute_script("arguments[0].click()", box)  # type: ignore[attr-defined]
    compare = [b for b in browser.find_elements(By.TAG_NAME, "button")  # type: ignore[attr-defined]
               if b.text.strip() == "Compare"]
    assert compare, "no Compare button once runs are selected"
    compare[0].click()
    body = _wait_for_text(browser, "Comparing 2 Runs", "Parallel Coordinates Plot", "Metrics:")
    _assert_model_training(browser, body)
    assert "compare-runs" in browser.current_url  # type: ignore[attr-defined]
    parameters = body[body.index("Parameters:") + len("Parameters:"):body.index("Metrics:")].split()
    metrics = body[body.index("Metrics:") + len("Metrics:"):body.index("Clear All")].split()
    assert metrics == ["mAP50-95"], metrics  # the grid's objective, not epoch/train_box_loss
    assert "lr0" in parameters, parameters  # the grid's axis
    _shot(browser, "4-compare")


def test_the_charts_open_on_the_lab_metrics_not_the_learning_rates(finished: Path, ui: str, browser: object) -> None:
    client = MlflowClient(ui)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert experiment is not None
    browser.get(f"{ui}/#/experiments/{experiment.experiment_id}/runs?compareRunsMode=CHART")  # type: ignore[attr-defined]
    body = _wait_for_text(browser, "Model metrics", "\nepoch\n", "mAP50-95", "recall")
    _assert_model_training(browser, body)
    _shot(browser, "5-charts")
    charts = body[body.index("Model metrics"):]
    # the lab metrics' section first; the per-epoch series (losses, lr_pg0/1/2) in a later section of their own
    first = charts[:charts.index("\nepoch\n")]
    assert all(metric in first for metric in ("mAP50", "mAP50-95", "precision", "recall")), first[:1500]
    assert "lr_pg0" not in first, first[:1500]
