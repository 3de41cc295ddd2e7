"""The MLflow UI as tp4 serves it: MLflow's own app, its index page seeding the browser's view of the grid.

MLflow 3.17's UI keeps its choices in the browser's local storage, not on the server (read in its bundle,
mlflow/server/js/build/static/js/main.*.js and 3878.*.chunk.js):

- `mlflow.workflowType_v1` (JSON string, "genai" when absent): GenAI or model-training pages. The URL's
  `workflowType` parameter wins over it, but the UI's own links drop the parameter, so a link covers one page
  and the next click falls back to GenAI. The experiment tag `mlflow.experimentKind` is not read for it.
- `MLflowLocalStorage-1.1-ExperimentPage-["<experiment id>"]-ReactComponentState` (JSON): an experiment
  page's runs-table columns (`selectedColumns`, keys like ``params.`lr0` ``), its chart cards and sections
  (`compareRunCharts`, `compareRunSections`), saved by the UI on every change. Absent, the table shows no
  parameter and no metric, and the charts put every `prefix/` section (`epoch/lr_pg0`...) before the
  unprefixed "Model metrics".
- `mlflow.assistant.panelOpen_v1` / `mlflow.assistant.fab.autoOpenedOnFirstLoad_v1`: the MLflow Assistant
  (an LLM chat) opens itself over a quarter of the screen on the first visit.

The index page, served with one short inline script before MLflow's own, writes those keys on the browser's
first visit: model-training pages; for each experiment with a tp4 grid, its parent runs expanded (their
points listed and charted), the grid's axes and the four lab metrics as columns, and a first chart section
holding the grid's parallel-coordinates plot and the lab metrics. A value the person already has is kept
(their toggle, their columns), except that columns of axes added since the last visit are added to theirs.
Nothing is written to the tracking store.

Served two ways: `python -m controller ui` wraps MLflow's ASGI app in this process (controller/ui.py); a
`mlflow server` can serve it through MLflow's app plugins (`--app-name`, entry point group `mlflow.app`,
factory `create_app`).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Awaitable, Callable, Iterable, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

import contract

_log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

WORKFLOW_KEY = "mlflow.workflowType_v1"
WORKFLOW = "machine_learning"
ASSISTANT_KEYS = {"mlflow.assistant.panelOpen_v1": False, "mlflow.assistant.fab.autoOpenedOnFirstLoad_v1": True}
# what the lab compares, in the handout's order (its step 7 table)
LAB_METRICS = (contract.METRIC_MAP50, contract.METRIC_MAP50_95, contract.METRIC_PRECISION, contract.METRIC_RECALL)
AXIS_PARAM_PREFIX = "axis."  # the parent run's parameters: axis.<name> = the axis' values (controller/tracking.py)
OBJECTIVE_PARAM = "objective"  # the parent run's parameter: "<metric> (<direction>)"
MARKER_PREFIX = "tp4.ui.columns."  # + experiment id: the columns tp4 last seeded, to add an axis' column once
MODEL_METRICS, SYSTEM_METRICS = "Model metrics", "System metrics"  # MLflow's section names for unprefixed metrics
STATIC_PREFIX_ENV = "_MLFLOW_STATIC_PREFIX"  # mlflow.server.handlers.STATIC_PREFIX_ENV_VAR (`--static-prefix`)


@dataclass(frozen=True)
class GridView:
    """What one experiment's page should open on: its grids' axes (run parameters) and objective (a metric)."""

    experiment_id: str
    axes: tuple[str, ...]
    objective: str = contract.METRIC_MAP50_95
    parents: tuple[str, ...] = ()  # the grids' parent run ids: expanded, so their points show in table and charts


def column(kind: str, key: str) -> str:
    """A runs-table column key as MLflow 3.17's UI writes it: `column("params", "lr0")` -> ``params.`lr0` ``."""
    return f"{kind}.`{key}`"


def columns(view: GridView) -> list[str]:
    """The runs table's columns: the axes, the lab metrics, then MLflow's Dataset and Models."""
    return [*(column("params", axis) for axis in view.axes), *(column("metrics", m) for m in LAB_METRICS),
            column("attributes", "Dataset"), column("attributes", "Models")]


def experiment_state(view: GridView) -> dict[str, Any]:
    """The experiment page's saved UI state (MLflow 3.17's ExperimentPageUIState, the keys tp4 sets).

    Charts: a "Model metrics" section first (reordered: MLflow appends metrics it finds later at its end,
    other prefixes in sections of their own after it) with the grid's parallel-coordinates plot (axes ->
    objective) and a bar chart per lab metric; `epoch/...` series (losses, learning rates) come after.
    """
    section = f"tp4-{view.experiment_id}-model-metrics"
    parallel = {"uuid": f"tp4-{view.experiment_id}-parallel", "type": "PARALLEL", "runsCountToCompare": 10,
                "metricSectionId": section, "deleted": False, "isGenerated": False,
                "selectedParams": list(view.axes), "selectedMetrics": [view.objective], "showAllRuns": False}
    bars = [{"uuid": f"tp4-{view.experiment_id}-{metric}", "type": "BAR", "runsCountToCompare": 10,
             "metricSectionId": section, "deleted": False, "isGenerated": True, "metricKey": metric,
             "displayName": metric} for metric in LAB_METRICS]
    sections = [{"uuid": section, "name": MODEL_METRICS, "display": True, "isReordered": True, "deleted": False,
                 "isGenerated": True},
                {"uuid": f"tp4-{view.experiment_id}-system-metrics", "name": SYSTEM_METRICS, "display": True,
                 "isReordered": False, "deleted": False, "isGenerated": True}]
    return {"selectedColumns": columns(view), "compareRunCharts": [parallel, *bars] if view.axes else bars,
            "compareRunSections": sections, "isAccordionReordered": True,
            "runsExpanded": {run_id: True for run_id in view.parents}}


def seed_script(views: Iterable[GridView]) -> str:
    """The inline script of the index page: writes the keys above where the browser has none (see the module)."""
    seeds = [{"key": f"MLflowLocalStorage-1.1-ExperimentPage-{json.dumps([v.experiment_id])}-ReactComponentState",
              "marker": f"{MARKER_PREFIX}{v.experiment_id}", "state": experiment_state(v)} for v in views]
    defaults = {WORKFLOW_KEY: json.dumps(WORKFLOW), **{k: json.dumps(v) for k, v in ASSISTANT_KEYS.items()}}
    # "</" cannot end the script early: JSON may hold any text (an axis name), "<\/" reads the same in JS
    data = json.dumps({"defaults": defaults, "seeds": seeds}, separators=(",", ":")).replace("</", "<\\/")
    return ("(function(){try{var s=window.localStorage,d=" + data + ",k;"
            "for(k in d.defaults){if(s.getItem(k)===null)s.setItem(k,d.defaults[k]);}"
            "d.seeds.forEach(function(e){var old=s.getItem(e.key),want=e.state.selectedColumns,"
            "mark=JSON.stringify(want);"
            "if(old===null){s.setItem(e.key,JSON.stringify(e.state));}"
            "else if(s.getItem(e.marker)!==mark){var o=JSON.parse(old),c=o.selectedColumns||[];"
            "want.forEach(function(x){if(c.indexOf(x)<0)c.push(x);});o.selectedColumns=c;"
            "s.setItem(e.key,JSON.stringify(o));}"
            "s.setItem(e.marker,mark);});}catch(err){if(window.console)console.warn('tp4 UI defaults',err);}})();")


def inject(index_html: bytes, script: str) -> bytes:
    """`index_html` with `<script>script</script>` before its first script (MLflow's, deferred); unchanged
    when it has none (not MLflow's page)."""
    marker = b"<script"
    at = index_html.find(marker)
    if at < 0:
        return index_html
    return index_html[:at] + b"<script>" + script.encode() + b"</script>" + index_html[at:]


def grid_views(parents: Iterable[tuple[str, str, dict[str, str]]]) -> list[GridView]:
    """One view per experiment from its tp4 parent runs' (experiment id, run id, parameters): the union of
    their axes in first-seen order (the latest parent first), the latest parent's objective, every parent."""
    axes: dict[str, dict[str, None]] = {}
    objective: dict[str, str] = {}
    runs: dict[str, list[str]] = {}
    for experiment_id, run_id, params in parents:
        runs.setdefault(experiment_id, []).append(run_id)
        seen = axes.setdefault(experiment_id, {})
        for key in params:
            if key.startswith(AXIS_PARAM_PREFIX):
                seen.setdefault(key[len(AXIS_PARAM_PREFIX):], None)
        metric = params.get(OBJECTIVE_PARAM, "").split(" ", 1)[0]
        if metric and experiment_id not in objective:
            objective[experiment_id] = metric
    return [GridView(experiment_id=e, axes=tuple(a), objective=objective.get(e, contract.METRIC_MAP50_95),
                     parents=tuple(runs[e])) for e, a in axes.items()]


def read_grid_views(store: Any) -> list[GridView]:
    """The views of every active experiment holding tp4 parent runs, read from an MLflow tracking store
    (AbstractTrackingStore: `search_experiments`, `search_runs`); the newest parent runs first."""
    from mlflow.entities import ViewType

    experiments = [e.experiment_id for e in store.search_experiments(view_type=ViewType.ACTIVE_ONLY,
                                                                     max_results=1000)]
    if not experiments:
        return []
    runs = store.search_runs(experiments, f"tags.`{contract.TAG_ROLE}` = 'parent'", ViewType.ACTIVE_ONLY,
                             max_results=1000, order_by=["attributes.start_time DESC"], page_token=None)
    return grid_views((run.info.experiment_id, run.info.run_id, run.data.params) for run in runs)


class SeededUI:
    """ASGI middleware: `app` (MLflow's) with its index page (GET <prefix>/) carrying `seed_script`, and the
    UI's run reads (<prefix>/ajax-api/2.0/mlflow/runs/search and runs/get) listing the lab metrics first.

    The index is asked of `app` (so its auth, if any, still applies) without validators, so a browser never
    keeps a page seeded for older runs (no ETag, `Cache-Control: no-store`). A failure reading the store
    serves MLflow's page unchanged: the UI works, with MLflow's defaults.

    Metric order: MLflow's compare page plots the first metric the compared runs share, in the order the
    server lists them (the store's insertion order: `epoch/train_box_loss` first). Only the UI's own
    `ajax-api` answers are reordered; the `api/` that clients use is untouched, and no value changes.
    """

    def __init__(self, app: ASGIApp, *, views: Callable[[], Sequence[GridView]], prefix: str = "") -> None:
        self.app, self.views = app, views
        base = prefix.rstrip("/")
        self.index = base + "/"
        self.run_reads = {base + "/ajax-api/2.0/mlflow/runs/search", base + "/ajax-api/2.0/mlflow/runs/get"}
        self.objectives: dict[str, str] = {}  # experiment id -> objective, as of the last index page

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
        elif scope["method"] == "GET" and scope["path"] == self.index:
            await self._index(scope, receive, send)
        elif scope["path"] in self.run_reads:
            status, headers, body = await _capture(self.app, scope, receive)
            if status == 200 and _header(headers, b"content-type").startswith(b"application/json") \
                    and not _header(headers, b"content-encoding"):
                body = lab_metrics_first(body, objectives=self.objectives)
            await _respond(send, status, headers, body)
        else:
            await self.app(scope, receive, send)

    async def _index(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(k, v) for k, v in scope.get("headers", []) if k.lower() not in (b"if-none-match",
                                                                                  b"if-modified-since")]
        status, kept, page = await _capture(self.app, {**scope, "headers": headers}, receive)
        if status == 200 and _header(kept, b"content-type").startswith(b"text/html"):
            views = await self._views()
            self.objectives = {v.experiment_id: v.objective for v in views}
            page = inject(page, seed_script(views))
        kept = [(k, v) for k, v in kept if k.lower() not in (b"etag", b"last-modified", b"cache-control")]
        await _respond(send, status, [*kept, (b"cache-control", b"no-store")], page)

    async def _views(self) -> Sequence[GridView]:
        from starlette.concurrency import run_in_threadpool

        try:
            return await run_in_threadpool(self.views)
        except Exception as error:  # the UI must open even when the store cannot be read: MLflow's defaults
            _log.warning("tp4: the UI opens with MLflow's defaults, the runs could not be read: %s", error)
            return []


def lab_metrics_first(body: bytes, *, objectives: dict[str, str]) -> bytes:
    """A runs/search or runs/get JSON answer with each run's metrics reordered: its experiment's objective
    (default mAP50-95), the other lab metrics, then the rest in the server's order. Unparsable: unchanged."""
    try:
        answer = json.loads(body)
    except ValueError:
        return body
    runs = answer.get("runs", []) if isinstance(answer, dict) else []
    if isinstance(answer, dict) and isinstance(answer.get("run"), dict):
        runs = [answer["run"]]
    for run in runs:
        metrics = run.get("data", {}).get("metrics") if isinstance(run, dict) else None
        if not isinstance(metrics, list):
            continue
        objective = objectives.get(str(run.get("info", {}).get("experiment_id")), contract.METRIC_MAP50_95)
        first = [objective, *(m for m in LAB_METRICS if m != objective)]
        rank = {key: i for i, key in enumerate(first)}
        metrics.sort(key=lambda m: rank.get(str(m.get("key")), len(first)) if isinstance(m, dict) else len(first))
    return json.dumps(answer, separators=(",", ":")).encode()


async def _capture(app: ASGIApp, scope: Scope, receive: Receive) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """`app`'s whole answer to `scope`: status, headers, body."""
    start: Message = {}
    body: list[bytes] = []

    async def keep(message: Message) -> None:
        if message["type"] == "http.response.start":
            start.update(message)
        elif message["type"] == "http.response.body":
            body.append(message.get("body", b""))

    await app(scope, receive, keep)
    return int(start.get("status", 500)), list(start.get("headers", [])), b"".join(body)


async def _respond(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    kept = [(k, v) for k, v in headers if k.lower() != b"content-length"]
    await send({"type": "http.response.start", "status": status,
                "headers": [*kept, (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def _header(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> bytes:
    return next((v for k, v in headers if k.lower() == name), b"")


def store_views() -> list[GridView]:
    """The views from the tracking store MLflow's server serves (its handlers' store, initialised at start)."""
    from mlflow.server.handlers import _get_tracking_store

    return read_grid_views(_get_tracking_store())


def create_app() -> ASGIApp:
    """MLflow's ASGI app (`mlflow.server.fastapi_app:app`) wrapped in SeededUI: the factory for `uvicorn
    --factory` or an `mlflow.app` entry point. Import it only once the server's environment is set (MLflow's
    server modules read it at import)."""
    from mlflow.server.fastapi_app import app

    return SeededUI(app, views=store_views, prefix=os.environ.get(STATIC_PREFIX_ENV, ""))
