"""The CLI's verbs against a cluster (`--backend kubernetes`): submit-grid, status, logs, report, finalize,
delete, run.

`submit-grid` only writes the Grid resource: the controller in the cluster
runs it, and the grid goes on when this process ends. Following its status
reads the Grid and its Jobs every `POLL_SECONDS` (two GETs, no watch to keep).
"""

from __future__ import annotations

import copy
import os
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO, cast

from mlflow.exceptions import MlflowException
from rich.console import Console

import contract
from contract.grid import DEFAULT_MAX_POINTS, GridSpec
from controller import tracking
from controller.cluster import kube
from controller.cluster import results as cluster_results
from controller.cluster.jobs import LABEL_SUBMISSION, job_phase
from controller.cluster.kube import GRIDS, JOBS, Kube, label_selector
from controller.cluster.resource import ANNOTATION_SUBMITTED_AT, grid_object
from controller.cluster.status import parse_time, timestamp
from controller.cluster.view import current_jobs, grid_state, summary_lines
from controller.core.expanding import GridPoint, finalizer_name
from controller.core.reconciling import JobPhase
from controller.core.summary import decision_line, decision_lines
from controller.errors import InvalidInput, Problem
from controller.output import grid_document, job_name, print_grids
from controller.progress import ProgressView
from controller.submitting import NoSubmission, NotFound, grid_name, prepare

POLL_SECONDS = 2.0
WRITE_TRIES = 3
TERMINAL = ("Succeeded", "Failed")
EXIT_DETACHED = 130
UNREACHABLE = kube.UNREACHABLE  # what the CLI reports as "the API server said"


def cluster_tracking_uri() -> str | None:
    """The cluster's MLflow as this machine reaches it (e.g. through kubectl port-forward): only when
    MLFLOW_TRACKING_URI says so, never the embedded store a local run would use."""
    return os.environ.get(contract.ENV_TRACKING_URI) or None


def open_api(*, kubeconfig: str | None, context: str | None, namespace: str | None) -> Kube:
    """The official client configured from the kubeconfig(s) or the pod's service account; InvalidInput if unusable."""
    return kube.connect(kubeconfig=kubeconfig, context=context, namespace=namespace)


def server_of(api: Kube) -> str:
    """The API server's address, for messages."""
    return api.server


def _missing(what: str, name: str, api: Kube) -> NotFound:
    """A missing object: exit code 1, as kubectl's."""
    return NotFound(f"no {what} named {name!r} in namespace {api.namespace}")


# --- submit-grid -----------------------------------------------------------------------------

def grid_spec(*, grid_path: Path, weights: str | None, parallelism: int | None,
              max_points: int = DEFAULT_MAX_POINTS, notes: list[str] | None = None,
              ) -> tuple[dict[str, Any], GridSpec, list[GridPoint]]:
    """The Grid's spec: grid.yaml read and validated once (`prepare`, the check every backend makes),
    defaults filled, the dataset md5 pinned (the cluster has no <path>.dvc) and --parallelism applied."""
    prepared, points, md5 = prepare(grid_path=grid_path, weights=weights, max_points=max_points,
                                    backend=None if notes is None else "kubernetes", notes=notes)
    if parallelism:
        prepared = prepared.with_job(parallelism=parallelism)
    spec = _without_nulls(prepared.to_dict())
    spec["dataset"]["md5"] = md5
    return spec, prepared, points


def _without_nulls(value: Any) -> Any:
    """A Grid's spec leaves unset fields out (the CRD's schema has no nullable field)."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def local_path_warning(spec: dict[str, Any], *, base_dir: Path) -> str | None:
    weights = str((spec.get("model") or {}).get("weights", ""))
    if weights and not weights.startswith("s3://") and ("/" in weights or (base_dir / weights).exists()):
        return (f"model.weights {weights!r} is a path on this machine: the Jobs' pods cannot read it "
                "(use a name that ultralytics downloads, or an s3:// URI)")
    return None


def upsert_grid(api: Kube, *, spec: dict[str, Any], now: Callable[[], datetime]) -> dict[str, Any]:
    """Create the Grid, or replace its spec; either way ask for a submission (annotation)."""
    for _ in range(WRITE_TRIES):
        try:
            current = api.get(GRIDS, spec["name"])
        except kube.NotFound:
            body = grid_object(spec=spec, namespace=api.namespace, submitted_at=timestamp(now()))
            try:
                return api.create(GRIDS, body)
            except kube.Conflict:
                continue  # created meanwhile: replace it
        started = parse_time((current.get("status") or {}).get("startTime"))
        # strictly later than the current submission, whatever this machine's clock says
        asked = max(now(), started + timedelta(seconds=1)) if started else now()
        body = {key: copy.deepcopy(current[key]) for key in ("apiVersion", "kind", "metadata")}
        body["spec"] = spec
        body["metadata"].setdefault("annotations", {})[ANNOTATION_SUBMITTED_AT] = timestamp(asked)
        try:
            return api.replace(GRIDS, body)
        except kube.Conflict:
            continue  # changed meanwhile (its status, most often): read it again
    raise InvalidInput([Problem(f"grid/{spec['name']}", f"kept changing while it was written ({WRITE_TRIES} tries)")])


def answered(grid: dict[str, Any], *, asked: datetime | None, generation: int) -> bool:
    """The controller has taken up this submission, or refused its spec."""
    status = grid.get("status") or {}
    if status.get("observedGeneration", 0) < generation:
        return False
    refused = any(c.get("type") == "Valid" and c.get("status") == "False" for c in status.get("conditions") or [])
    started = parse_time(status.get("startTime"))
    return refused or (started is not None and (asked is None or started >= asked))


class RunMetrics:
    """The objective of finished points for the live table, when MLflow is reachable from here."""

    def __init__(self, *, experiment: str, uri: str | None) -> None:
        self.values: dict[str, dict[str, float]] = {}
        self.experiment, self.experiment_id = experiment, cast(str | None, None)
        self.mlflow = tracking.client(uri) if uri else None

    def of(self, jobs: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
        if self.mlflow is None:
            return self.values
        try:
            self._read(jobs)
        except (MlflowException, OSError):  # the table goes on without them
            pass
        return self.values

    def _read(self, jobs: list[dict[str, Any]]) -> None:
        assert self.mlflow is not None
        if self.experiment_id is None:  # the controller creates the experiment at the first submission
            found = self.mlflow.get_experiment_by_name(self.experiment)
            self.experiment_id = found.experiment_id if found else None
        if self.experiment_id is None:
            return
        for job in jobs:
            name, labels = job["metadata"]["name"], job["metadata"].get("labels") or {}
            if (name not in self.values and labels.get(contract.LABEL_ROLE) == contract.ROLE_TRAIN
                    and job_phase(job) is JobPhase.SUCCEEDED):
                _, self.values[name] = tracking.final_metrics(
                    self.mlflow, experiment_id=self.experiment_id,
                    parent_run_id=labels.get(LABEL_SUBMISSION, ""), point=name)


def follow(api: Kube, *, name: str, asked: datetime | None, generation: int, view: ProgressView,
           metrics: RunMetrics | None, sleep: Callable[[float], None] = time.sleep) -> dict[str, Any]:
    """The Grid once the controller has run this submission to its end, the view updated meanwhile."""
    with view:
        while True:
            grid = api.get(GRIDS, name)
            jobs = api.list_objects(JOBS, selector=label_selector({contract.LABEL_GRID: name})).items
            view.update(grid_state(grid, jobs, metrics=metrics.of(jobs) if metrics else None))
            if answered(grid, asked=asked, generation=generation) and grid["status"].get("phase") in TERMINAL:
                return grid
            sleep(POLL_SECONDS)


def submit_grid(*, api: Kube, grid_path: Path, weights: str | None, parallelism: int | None, wait: bool,
                console: Console, now: Callable[[], datetime] = lambda: datetime.now(UTC),
                max_points: int = DEFAULT_MAX_POINTS) -> int:
    notes: list[str] = []  # preflight (controller.preflight): what the pods share with this machine
    spec, prepared, points = grid_spec(grid_path=grid_path, weights=weights, parallelism=parallelism,
                                       max_points=max_points, notes=notes)
    for note in notes:
        console.print(f"note: {note}", highlight=False, soft_wrap=True)
    if warning := local_path_warning(spec, base_dir=grid_path.resolve().parent):
        console.print(f"[yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)
    written = upsert_grid(api, spec=spec, now=now)
    meta = written["metadata"]
    console.print(f"grid [bold]{meta['name']}[/] submitted to namespace {api.namespace} "
                  f"(generation {meta.get('generation', 1)})", highlight=False, soft_wrap=True)
    if not wait:
        console.print("follow it with: python -m controller --backend kubernetes "
                      f"-n {api.namespace} status {meta['name']}",
                      highlight=False, soft_wrap=True)
        return 0
    names = [p.name for p in points] + [finalizer_name(prepared)]
    view = ProgressView(points=names, metric=prepared.objective_metric, console=console)
    metrics = RunMetrics(experiment=prepared.experiment, uri=cluster_tracking_uri())
    asked = parse_time((meta.get("annotations") or {}).get(ANNOTATION_SUBMITTED_AT))
    try:
        grid = follow(api, name=meta["name"], asked=asked, generation=meta.get("generation", 1), view=view,
                      metrics=metrics)
    except KeyboardInterrupt:
        console.print(f"stopped following: grid {meta['name']} goes on in the cluster", highlight=False)
        return EXIT_DETACHED
    for line in summary_lines(grid):
        console.print(line, highlight=False, soft_wrap=True)
    if decided := cluster_decision_line(grid):
        console.print(decided, highlight=False, soft_wrap=True)
    return 0 if grid["status"]["phase"] == "Succeeded" else 1


def cluster_decision_line(grid: dict[str, Any]) -> str | None:
    """The one-line decision of a Grid whose submission has one: from its report's decision.json when
    MLflow is reachable from here (MLFLOW_TRACKING_URI), else from the Grid's status (the verdict and
    where the report is; the candidate and the separation are in the report). None: no decision yet."""
    status = grid.get("status") or {}
    report, verdict = status.get("report") or {}, status.get("decision")
    if not report.get("runId") or verdict is None:
        return None
    where = f"runs:/{report['runId']}/{report.get('artifactPath') or cluster_results.REPORT_MD}"
    uri = cluster_tracking_uri()
    if uri is not None:
        try:
            decision = cluster_results.report_document(tracking.client(uri), run_id=report["runId"])
        except (MlflowException, OSError) as error:
            return f"decision: {verdict} — {where} (decision.json not read from {tracking.redact(uri)}: {error})"
        return decision_line(decision, report=where)
    return (f"decision: {verdict} — {where} (the candidate and its separation from the runner-up: "
            "set MLFLOW_TRACKING_URI to the cluster's MLflow, or read the report)")


# --- status, logs, report, delete --------------------------------------------------------------

def show_status(*, api: Kube, grid: str | None, console: Console, output: str | None = None,
                show_obsolete: bool = False) -> int:
    """The status of one Grid (or of every Grid of the namespace) in `output` format (controller.output): its
    Jobs; those the Grid's current spec and submission no longer have are left out unless `show_obsolete`."""
    if grid:
        try:
            grids = [api.get(GRIDS, grid_name(grid))]
        except kube.NotFound:
            raise _missing("grid", grid_name(grid), api) from None
    else:
        grids = api.list_objects(GRIDS).items
    if not grids and output in (None, "wide"):
        console.print(f"no grid in namespace {api.namespace}")
    documents, notes = [], {}
    for obj in grids:
        name = obj["metadata"]["name"]
        jobs = api.list_objects(JOBS, selector=label_selector({contract.LABEL_GRID: name})).items
        state = grid_state(obj, jobs)
        current = current_jobs(obj, jobs)
        obsolete = frozenset(state.jobs) - current if current is not None else frozenset()
        order = sorted((n for n in state.jobs if show_obsolete or n not in obsolete),
                       key=lambda n: (state.jobs[n].role != contract.ROLE_TRAIN, n))
        metric = ((obj.get("spec") or {}).get("objective") or {}).get("metric", contract.METRIC_MAP50_95)
        status = {k: v for k, v in (obj.get("status") or {}).items() if k in ("counts", "best", "decision", "report")}
        documents.append((state, grid_document(state, points=order, metric=metric, obsolete=obsolete,
                                               hidden=0 if show_obsolete else len(obsolete), status=status)))
        notes[name] = summary_lines(obj)[1:]
    print_grids(console, documents, output=output, single=grid is not None, notes=notes)
    return 0


def show_logs(*, api: Kube, job: str, follow: bool, attempt: int | None, out: BinaryIO | None = None,
              sleep: Callable[[float], None] = time.sleep) -> int:
    """The log of the pod of a Job's latest attempt (or of attempt N), followed with -f."""
    out = out or sys.stdout.buffer
    job = job_name(job)
    try:
        pods = api.attempts(job)
    except kube.NotFound:
        raise _missing("job", job, api) from None
    if not pods:
        raise NotFound(f"{job} has no pod yet (pending, or suspended by its queue)")
    if attempt is not None and not 1 <= attempt <= len(pods):
        raise InvalidInput([Problem("--attempt", f"{job} has attempts 1..{len(pods)}, not {attempt}")])
    pod = pods[(attempt or len(pods)) - 1]
    while True:
        try:
            for line in api.log_lines(pod, follow=follow):
                out.write(line + b"\n")
                out.flush()
            return 0
        except kube.ApiError as error:
            if not (follow and error.code == 400):  # 400: its container has not started yet
                message = f"{job}: no log from pod {pod['metadata']['name']}: {error.message}"
                raise InvalidInput([Problem("job", message)]) from None
            sleep(POLL_SECONDS)


def show_report(*, api: Kube, grid: str, console: Console) -> int:
    """The decision summary: from the Grid's status, and from its report in MLflow when reachable."""
    name = grid_name(grid)
    try:
        obj: dict[str, Any] | None = api.get(GRIDS, name)
    except kube.NotFound:
        obj = None
    report = ((obj or {}).get("status") or {}).get("report")
    uri = cluster_tracking_uri()
    if uri is None:
        if obj is None or report is None:
            raise NotFound(f"no decision report for {name!r} in namespace {api.namespace} yet")
        for line in summary_lines(obj):
            console.print(line, highlight=False, soft_wrap=True)
        console.print("set MLFLOW_TRACKING_URI to the cluster's MLflow (e.g. kubectl port-forward svc/tp4-mlflow 5000) "
                      "for the full summary", highlight=False, soft_wrap=True)
        return 0
    mlflow = tracking.client(uri)
    if report:
        run_id, decision = report["runId"], cluster_results.report_document(mlflow, run_id=report["runId"])
    elif found := tracking.latest_report(mlflow, grid=name):
        run_id, decision = found
    else:
        raise NotFound(f"no decision report for {name!r} on the Grid nor in MLflow at {tracking.redact(uri)}")
    for line in decision_lines(decision):
        console.print(line, highlight=False, soft_wrap=True)
    console.print(f"report: runs:/{run_id}/{cluster_results.REPORT_MD} ({tracking.redact(uri)})",
                  highlight=False, soft_wrap=True)
    return 0


# --- finalize -----------------------------------------------------------------------------------

# What the API server and the Job controller add to a Job they admitted: a created copy must leave them out.
_JOB_CONTROLLER_LABELS = ("controller-uid", "job-name", kube.CONTROLLER_UID, "batch.kubernetes.io/job-name")
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
RECREATE_TRIES = 20


def recreated(job: dict[str, Any]) -> dict[str, Any]:
    """A Job to create as `job` was created: its name, labels, owner (the Grid) and spec, without what
    the cluster added (status, uid, the selector and the Job controller's labels); a Job of a Kueue
    queue is created suspended again, for its queue to admit."""
    meta = job["metadata"]
    body: dict[str, Any] = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {
        key: copy.deepcopy(meta[key]) for key in ("name", "namespace", "labels", "ownerReferences") if key in meta}}
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if not k.startswith("batch.kubernetes.io/")}
    if annotations:
        body["metadata"]["annotations"] = annotations
    spec = body["spec"] = copy.deepcopy(job["spec"])
    spec.pop("selector", None)
    spec.pop("manualSelector", None)
    template_labels = (spec.get("template") or {}).get("metadata", {}).get("labels") or {}
    for key in _JOB_CONTROLLER_LABELS:
        template_labels.pop(key, None)
    if KUEUE_QUEUE_LABEL in (meta.get("labels") or {}):
        spec["suspend"] = True
    return body


def finalize_grid(*, api: Kube, grid: str, wait: bool, console: Console,
                  sleep: Callable[[float], None] = time.sleep) -> int:
    """Run the finalizer of a finished Grid's latest submission again: its finalize Job (the one the
    controller created, still in the namespace) is deleted and created again as it was, for the same
    parent run; the controller leaves a finished submission alone, so the Grid's status keeps the first
    verdict, and the new decision is read from MLflow (MLFLOW_TRACKING_URI). 0 when the Job succeeded
    (or, wait=False, was created), 1 when it failed.

    NoSubmission (exit 1): no such Grid, or the controller has not taken it up; NotFound (exit 1): its
    finalize Job is gone (ttlSecondsAfterFinished); InvalidInput (exit 2): the Grid is still running."""
    name = grid_name(grid)
    try:
        obj = api.get(GRIDS, name)
    except kube.NotFound:
        raise NoSubmission(name, f"in namespace {api.namespace}") from None
    status = obj.get("status") or {}
    submission = status.get("parentRunId")
    if not submission:
        raise NoSubmission(name, f"in namespace {api.namespace} (the Grid exists: the controller has not "
                           "taken it up yet)")
    if status.get("phase") not in TERMINAL:
        raise InvalidInput([Problem(f"grid/{name}", f"is {status.get('phase', 'Pending')}: the controller runs "
                                    "its finalizer once every point has ended")])
    selector = label_selector({contract.LABEL_GRID: name, contract.LABEL_ROLE: contract.ROLE_FINALIZE,
                               LABEL_SUBMISSION: submission})
    found = api.list_objects(JOBS, selector=selector).items
    if not found:
        raise NotFound(f"grid {name!r}: the finalize Job of its latest submission ({submission}) is not in "
                       f"namespace {api.namespace} (deleted after ttlSecondsAfterFinished, or the grid ended "
                       "before its finalizer): submit the grid again (submit-grid)")
    body = recreated(found[0])
    job = body["metadata"]["name"]
    api.delete(JOBS, job, propagation="Background")
    for _ in range(RECREATE_TRIES):
        try:
            api.create(JOBS, body)
            break
        except kube.Conflict:  # the old Job is still being deleted
            sleep(POLL_SECONDS)
    else:
        raise InvalidInput([Problem(f"job/{job}", f"still being deleted after {RECREATE_TRIES} tries")])
    console.print(f"job {job} created again in namespace {api.namespace} for submission {submission}",
                  highlight=False, soft_wrap=True)
    if not wait:
        console.print(f"follow it with: python -m controller --backend kubernetes -n {api.namespace} logs -f {job}",
                      highlight=False, soft_wrap=True)
        return 0
    while not (phase := job_phase(api.get(JOBS, job))).terminal:
        sleep(POLL_SECONDS)
    console.print(f"{job}: {phase.value}", highlight=False, soft_wrap=True)
    if phase is not JobPhase.SUCCEEDED:
        console.print(f"its log: python -m controller --backend kubernetes -n {api.namespace} logs {job}",
                      highlight=False, soft_wrap=True)
        return 1
    where = f"runs:/{submission}/{cluster_results.REPORT_MD}"
    uri = cluster_tracking_uri()
    if uri is None:
        console.print(f"decision: see {where} (set MLFLOW_TRACKING_URI to the cluster's MLflow to print it "
                      f"here; the Grid's status keeps its first verdict, {status.get('decision')})",
                      highlight=False, soft_wrap=True)
        return 0
    decision = cluster_results.report_document(tracking.client(uri), run_id=submission)
    console.print(decision_line(decision, report=where), highlight=False, soft_wrap=True)
    return 0


def delete_grid(*, api: Kube, grid: str, console: Console, purge_runs: bool = False) -> int:
    """Delete the Grid (the garbage collector deletes its Jobs and their pods); with `purge_runs`, its MLflow
    runs too (MLFLOW_TRACKING_URI: the cluster's MLflow as this machine reaches it). NotFound: no such Grid."""
    name = grid_name(grid)
    uri = cluster_tracking_uri()
    if purge_runs and uri is None:
        raise InvalidInput([Problem("--purge-runs", "needs the cluster's MLflow: set MLFLOW_TRACKING_URI (e.g. "
                                    "kubectl port-forward svc/tp4-mlflow 5000)")])
    experiment = None
    if purge_runs:
        try:
            experiment = ((api.get(GRIDS, name).get("spec") or {}).get("experiment"))
        except kube.NotFound:
            raise _missing("grid", name, api) from None
    if not api.delete(GRIDS, name, propagation="Background"):
        raise _missing("grid", name, api)
    runs = "its MLflow runs stay"
    if purge_runs and uri is not None and experiment:
        mlflow = tracking.client(uri)
        found = tracking.check_experiment(mlflow, name=experiment)
        purged = tracking.delete_grid_runs(mlflow, experiment_id=found, grid=name) if found else 0
        runs = f"{purged} MLflow runs deleted"
    console.print(f"grid {name} deleted from namespace {api.namespace}: the garbage collector deletes its Jobs "
                  f"(and their pods); {runs}", highlight=False, soft_wrap=True)
    return 0


def run_controller(*, api: Kube, root: Path) -> int:
    """The reconcile loop (the chart's Deployment runs exactly this): JSON-lines logs on stderr, the
    health endpoint on $TP4_HEALTH_PORT when set, leader election on the Lease `tp4-controller`."""
    from controller.cluster import logs
    from controller.cluster.health import Health, serve
    from controller.cluster.loop import ClusterController, run_until_signalled
    from controller.cluster.settings import health_port, settings_from_env

    settings = settings_from_env()
    port = health_port()
    logs.configure()
    health = Health()
    try:
        server = serve(health, port=port) if port is not None else None
    except OSError as error:
        raise InvalidInput([Problem("TP4_HEALTH_PORT", f"cannot listen on port {port}: {error}")]) from error
    try:
        controller = ClusterController(api=api, mlflow=tracking.client(settings.tracking_uri), settings=settings,
                                       root=root, health=health)
        return run_until_signalled(controller)
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
