"""The Kubernetes adapter over real HTTP, against the tests' fake API server (tests/fake_kube.py):
the requests it sends, watches that expire and resume, 409s, 404s, pod logs, kubeconfig loading."""

from __future__ import annotations

import base64
import json
import stat
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from controller.errors import InvalidInput
from controller.cluster.kube import errors
from controller.cluster.kube import reading
from controller.cluster.kube.connecting import Connection, connect, from_kubeconfig, in_cluster
from controller.cluster.kube.creating import create
from controller.cluster.kube.deleting import delete
from controller.cluster.kube.mirroring import Mirror
from controller.cluster.kube.patching import patch_status
from controller.cluster.kube.pod_logs import attempts, log_lines
from controller.cluster.kube.reading import get, list_objects
from controller.cluster.kube.recording import record
from controller.cluster.kube.replacing import replace
from controller.cluster.kube.requesting import Api
from controller.cluster.kube.resources import EVENTS, GRIDS, JOBS, label_selector
from controller.cluster.kube.watching import watch
from tests.helpers.crd_schema import grid_validator
from tests.helpers.fake_kube import FakeKube

NS = "default"


def job(name: str, grid: str = "lab", **labels: str) -> dict[str, Any]:
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": name, "labels": {"tp4.io/grid": grid, **labels}},
            "spec": {"backoffLimit": 1, "template": {"metadata": {"labels": {"tp4.io/grid": grid}}, "spec": {
                "restartPolicy": "Never", "containers": [{"name": "train", "image": "tp4-trainer:0.1.0"}]}}}}


def grid(name: str = "lab") -> dict[str, Any]:
    return {"apiVersion": "tp4.io/v1alpha1", "kind": "Grid", "metadata": {"name": name},
            "spec": {"name": name, "dataset": {"path": "data/tiny_coco", "md5": "0" * 32 + ".dir"},
                     "model": {"weights": "yolov8n.pt"}, "axes": {"lr0": [0.01]}}}


@pytest.fixture
def kube():
    with FakeKube(grid_schema=grid_validator()) as server:
        yield server


@pytest.fixture
def api(kube: FakeKube) -> Api:
    return Api(Connection(server=kube.url, namespace=NS, token=lambda: "s3cr3t-token"))


def wait_until(predicate: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_create_get_list_delete_jobs_send_the_expected_requests(kube: FakeKube, api: Api) -> None:
    created = create(api, resource=JOBS, body=job("train-1"))
    create(api, resource=JOBS, body=job("train-2", grid="other"))
    post = kube.sent("POST")[0]
    assert (post.path, post.body, post.content_type) == ("/apis/batch/v1/namespaces/default/jobs", job("train-1"),
                                                         "application/json")
    assert post.authorization == "Bearer s3cr3t-token" and post.query == {"fieldValidation": "Strict"}
    assert get(api, resource=JOBS, name="train-1")["metadata"]["uid"] == created["metadata"]["uid"]

    listing = list_objects(api, resource=JOBS, label_selector=label_selector({"tp4.io/grid": "lab"}))
    assert [j["metadata"]["name"] for j in listing.items] == ["train-1"]
    assert kube.sent("GET", "/jobs")[-1].query == {"labelSelector": "tp4.io/grid=lab", "limit": "500"}
    assert int(listing.resource_version) >= int(created["metadata"]["resourceVersion"])
    everything = list_objects(api, resource=JOBS, label_selector=label_selector({"tp4.io/grid": None}))
    assert len(everything.items) == 2 and kube.sent("GET", "/jobs")[-1].query["labelSelector"] == "tp4.io/grid"

    assert delete(api, resource=JOBS, name="train-1") is True
    request = kube.sent("DELETE")[0]
    assert request.path == "/apis/batch/v1/namespaces/default/jobs/train-1"
    assert request.body == {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}


def test_conflicts_and_not_found_are_typed_errors(kube: FakeKube, api: Api) -> None:
    create(api, resource=JOBS, body=job("train-1"))
    with pytest.raises(errors.Conflict) as clash:
        create(api, resource=JOBS, body=job("train-1"))
    assert clash.value.code == 409 and clash.value.reason == "AlreadyExists"
    with pytest.raises(errors.NotFound):
        get(api, resource=JOBS, name="nope")
    assert delete(api, resource=JOBS, name="nope") is False
    with pytest.raises(errors.NotFound):
        delete(api, resource=JOBS, name="nope", missing_ok=False)
    stale = create(api, resource=GRIDS, body=grid())
    patch_status(api, resource=GRIDS, name="lab", status={"phase": "Running"})  # a new resourceVersion
    stale["spec"]["axes"] = {"lr0": [0.02]}
    with pytest.raises(errors.Conflict) as outdated:
        replace(api, resource=GRIDS, body=stale)
    assert outdated.value.reason == "Conflict"


def test_invalid_objects_are_refused_by_the_fake_server(kube: FakeKube, api: Api) -> None:
    """The fake server validates like the real one: the tests below rely on it."""
    bad = job("train-1")
    bad["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy2"] = "Never"
    with pytest.raises(errors.Invalid):
        create(api, resource=JOBS, body=bad)
    wrong = grid()
    wrong["spec"]["paralellism"] = 3
    with pytest.raises(errors.Invalid, match="paralellism"):
        create(api, resource=GRIDS, body=wrong)


def test_status_is_merge_patched_on_the_status_subresource(kube: FakeKube, api: Api) -> None:
    create(api, resource=GRIDS, body=grid())
    patch_status(api, resource=GRIDS, name="lab", status={"phase": "Running", "counts": {"total": 1, "running": 1}})
    patched = patch_status(api, resource=GRIDS, name="lab", status={"counts": {"running": None, "succeeded": 1}})
    request = kube.sent("PATCH")[-1]
    assert request.path == "/apis/tp4.io/v1alpha1/namespaces/default/grids/lab/status"
    assert request.content_type == "application/merge-patch+json" and request.query == {"fieldValidation": "Strict"}
    assert request.body == {"status": {"counts": {"running": None, "succeeded": 1}}}
    assert patched["status"] == {"phase": "Running", "counts": {"total": 1, "succeeded": 1}}
    assert patched["spec"] == grid()["spec"] and patched["metadata"]["generation"] == 1
    with pytest.raises(errors.Invalid, match="phase"):  # the CRD's enum
        patch_status(api, resource=GRIDS, name="lab", status={"phase": "Exploded"})


def test_replace_bumps_the_generation_and_keeps_the_status(kube: FakeKube, api: Api) -> None:
    create(api, resource=GRIDS, body=grid())
    current = patch_status(api, resource=GRIDS, name="lab", status={"phase": "Succeeded"})
    current["spec"]["axes"] = {"lr0": [0.01, 0.02]}
    current["status"] = {"phase": "Pending"}  # ignored: only /status writes the status
    replaced = replace(api, resource=GRIDS, body=current)
    assert replaced["metadata"]["generation"] == 2 and replaced["status"] == {"phase": "Succeeded"}
    assert kube.sent("PUT")[0].path == "/apis/tp4.io/v1alpha1/namespaces/default/grids/lab"


def test_list_pages_follow_the_continue_token(kube: FakeKube, api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    for i in range(5):
        create(api, resource=JOBS, body=job(f"train-{i}"))
    monkeypatch.setattr(reading, "PAGE", 2)
    listing = list_objects(api, resource=JOBS)
    assert [j["metadata"]["name"] for j in listing.items] == [f"train-{i}" for i in range(5)]
    assert [r.query.get("continue") for r in kube.sent("GET", "/jobs")] == [None, "2", "4"]


@pytest.mark.parametrize("gone_as_http", [False, True], ids=["error-event", "http-410"])
def test_watch_streams_changes_and_raises_gone_when_expired(api: Api, gone_as_http: bool) -> None:
    with FakeKube(gone_as_http=gone_as_http) as kube:
        api = Api(Connection(server=kube.url, namespace=NS))
        start = list_objects(api, resource=JOBS).resource_version
        create(api, resource=JOBS, body=job("train-1"))
        create(api, resource=JOBS, body=job("train-2", grid="other"))
        delete(api, resource=JOBS, name="train-1")
        seen = [(e.type, e.object["metadata"]["name"])
                for e in watch(api, resource=JOBS, resource_version=start, label_selector="tp4.io/grid=lab", timeout_seconds=1)]
        assert seen == [("ADDED", "train-1"), ("DELETED", "train-1")]
        request = kube.sent("GET", "/jobs")[-1]
        assert request.query["watch"] == "true" and request.query["resourceVersion"] == start
        assert request.query["allowWatchBookmarks"] == "true" and request.query["labelSelector"] == "tp4.io/grid=lab"
        assert request.query["timeoutSeconds"] == "1"
        kube.expire_watches()
        with pytest.raises(errors.Gone):
            list(watch(api, resource=JOBS, resource_version=start))


def test_mirror_resumes_closed_watches_and_relists_expired_ones(kube: FakeKube, api: Api) -> None:
    changes: list[tuple[str | None, str | None]] = []

    def on_change(old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        changes.append((old and old["metadata"]["name"], new and new["metadata"]["name"]))

    create(api, resource=JOBS, body=job("before"))
    mirror = Mirror(api, resource=JOBS, on_change=on_change, label_selector="tp4.io/grid=lab", watch_seconds=30)
    stop = threading.Event()
    threading.Thread(target=mirror.run, kwargs={"stop": stop}, daemon=True).start()
    try:
        wait_until(lambda: mirror.synced.is_set())
        assert changes == [(None, "before")]
        create(api, resource=JOBS, body=job("during"))
        wait_until(lambda: "during" in mirror.snapshot())
        kube.close_watches()  # a stream ends (timeoutSeconds): resumed from the last version, no list
        create(api, resource=JOBS, body=job("after-close"))
        wait_until(lambda: "after-close" in mirror.snapshot())
        assert mirror.relists == 1
        resumed = [r for r in kube.sent("GET", "/jobs") if r.query.get("watch")][-1]
        assert int(resumed.query["resourceVersion"]) >= int(mirror.snapshot()["during"]["metadata"]["resourceVersion"])

        kube.expire_watches()  # 410: list again, and report what changed meanwhile
        delete(api, resource=JOBS, name="before")
        create(api, resource=JOBS, body=job("after-expiry"))
        wait_until(lambda: "after-expiry" in mirror.snapshot() and "before" not in mirror.snapshot())
        assert mirror.relists >= 2
        assert ("before", None) in changes and (None, "after-expiry") in changes
        assert set(mirror.snapshot()) == {"during", "after-close", "after-expiry"}
    finally:
        stop.set()
        kube.close_watches()


def test_logs_of_a_jobs_latest_attempt_are_streamed_and_followed(kube: FakeKube, api: Api) -> None:
    create(api, resource=JOBS, body=job("train-1"))
    first = kube.start_job("train-1", log=["attempt 1"])
    kube.finish_job("train-1", succeeded=False, retry=True)  # a second pod
    pods = attempts(api, job="train-1")
    assert [p["metadata"]["name"] for p in pods][0] == first and len(pods) == 2
    uid = get(api, resource=JOBS, name="train-1")["metadata"]["uid"]
    assert kube.sent("GET", "/pods")[-1].query["labelSelector"] == f"batch.kubernetes.io/controller-uid={uid}"
    assert list(log_lines(api, pod=pods[0], follow=False)) == [b"attempt 1", b"error"]

    latest = pods[-1]["metadata"]["name"]
    kube.write_log(latest, "epoch 1")
    threading.Timer(0.3, lambda: kube.write_log(latest, "epoch 2", done=True)).start()
    assert list(log_lines(api, pod=pods[-1], follow=True)) == [b"epoch 1", b"epoch 2"]
    request = kube.sent("GET", "/log")[-1]
    assert request.path == f"/api/v1/namespaces/default/pods/{latest}/log"
    assert request.query == {"container": "train", "follow": "true"}


def test_an_event_about_a_grid_validates_strictly(kube: FakeKube, api: Api) -> None:
    about = create(api, resource=GRIDS, body=grid())
    event = record(api, about=about, reason="Submitted", message="x" * 5000, warning=False)
    assert event["involvedObject"]["uid"] == about["metadata"]["uid"] and len(event["message"]) == 1024
    assert kube.sent("POST", "/api/v1/namespaces/default/events") and kube.refusals == []
    assert list_objects(api, resource=EVENTS).items[0]["reason"] == "Submitted"


# --- kubeconfig and the service account ---------------------------------------------------------

def kubeconfig(folder: Path, *, user: dict[str, Any], cluster: dict[str, Any], namespace: str | None = "tp4") -> Path:
    context = {"cluster": "kind-tp4", "user": "me", **({"namespace": namespace} if namespace else {})}
    config = {"apiVersion": "v1", "kind": "Config", "current-context": "kind-tp4",
              "contexts": [{"name": "kind-tp4", "context": context}, {"name": "other", "context": {"cluster": "kind-tp4"}}],
              "clusters": [{"name": "kind-tp4", "cluster": cluster}], "users": [{"name": "me", "user": user}]}
    path = folder / "config"
    path.write_text(yaml.safe_dump(config))
    return path


def test_kubeconfig_with_inline_certificates(tmp_path: Path) -> None:
    data = {name: base64.b64encode(f"PEM {name}".encode()).decode() for name in ("ca", "crt", "key")}
    path = kubeconfig(tmp_path, cluster={"server": "https://127.0.0.1:6443/", "certificate-authority-data": data["ca"]},
                      user={"client-certificate-data": data["crt"], "client-key-data": data["key"]})
    connection = from_kubeconfig(path=path)
    assert connection.server == "https://127.0.0.1:6443" and connection.namespace == "tp4"
    assert Path(str(connection.verify)).read_text() == "PEM ca"
    assert connection.cert is not None
    assert [Path(f).read_text() for f in connection.cert] == ["PEM crt", "PEM key"]
    assert stat.S_IMODE(Path(connection.cert[1]).stat().st_mode) == 0o600
    assert from_kubeconfig(path=path, context="other").namespace == "default"
    assert from_kubeconfig(path=path, namespace="elsewhere").namespace == "elsewhere"


def test_kubeconfig_token_file_insecure_and_refusals(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("from-file\n")
    path = kubeconfig(tmp_path, cluster={"server": "https://k:6443", "insecure-skip-tls-verify": True},
                      user={"tokenFile": "token"})
    connection = from_kubeconfig(path=path)
    assert connection.verify is False and connection.token() == "from-file"
    old = kubeconfig(tmp_path, cluster={"server": "https://k"}, user={"auth-provider": {"name": "gcp"}})
    with pytest.raises(InvalidInput, match="auth-provider 'gcp' is not supported"):
        from_kubeconfig(path=old)
    with pytest.raises(InvalidInput, match="no context named 'nope'"):
        from_kubeconfig(path=path, context="nope")
    with pytest.raises(InvalidInput, match="no kubeconfig"):
        connect(env={"HOME": str(tmp_path / "nowhere")})


def test_exec_plugin_token_reaches_the_api_server(kube: FakeKube, tmp_path: Path) -> None:
    plugin = tmp_path / "plugin.py"
    plugin.write_text("import json, os\n"
                      "info = json.loads(os.environ['KUBERNETES_EXEC_INFO'])\n"
                      "print(json.dumps({'apiVersion': info['apiVersion'], 'kind': 'ExecCredential', 'status': {\n"
                      "    'token': 'exec-' + os.environ['TOKEN_SUFFIX'], 'expirationTimestamp': '2999-01-01T00:00:00Z'}}))\n")
    path = kubeconfig(tmp_path, cluster={"server": kube.url}, user={"exec": {
        "apiVersion": "client.authentication.k8s.io/v1", "command": sys.executable, "args": [str(plugin)],
        "env": [{"name": "TOKEN_SUFFIX", "value": "42"}], "interactiveMode": "Never"}})
    api = Api(connect(env={"KUBECONFIG": str(path)}))
    list_objects(api, resource=JOBS)
    list_objects(api, resource=JOBS)
    assert [r.authorization for r in kube.sent("GET", "/jobs")] == ["Bearer exec-42"] * 2
    assert kube.sent("GET")[0].path == "/apis/batch/v1/namespaces/tp4/jobs"


def test_in_cluster_reads_the_service_account(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("sa-token")
    (tmp_path / "namespace").write_text("tp4\n")
    (tmp_path / "ca.crt").write_text("PEM")
    env = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443", "HOME": str(tmp_path)}
    connection = in_cluster(env=env, account=tmp_path)
    assert (connection.server, connection.namespace, connection.verify) == ("https://10.96.0.1:443", "tp4",
                                                                            str(tmp_path / "ca.crt"))
    assert connection.token() == "sa-token"
    assert in_cluster(env={**env, "KUBERNETES_SERVICE_HOST": "fd00::1"}, account=tmp_path).server == "https://[fd00::1]:443"


def test_a_missing_crd_is_a_not_found(kube: FakeKube, api: Api) -> None:
    from controller.cluster.kube.resources import Resource

    with pytest.raises(errors.NotFound):
        list_objects(api, resource=Resource("tp4.io", "v1beta9", "grids", "Grid"))
    assert json.loads(json.dumps(kube.sent("GET")[-1].query)) == {"limit": "500"}


def imported_modules(folder: Path) -> dict[str, set[str]]:
    """{file: top-level modules it imports} for every Python file under `folder`."""
    import ast

    found: dict[str, set[str]] = {}
    for path in folder.rglob("*.py"):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module)
        found[str(path)] = names
    return found


def test_the_jobs_never_import_the_kubernetes_adapter_and_the_adapter_no_client_library() -> None:
    from tests.helpers.paths import REPO

    jobs = {f: sorted(n for n in names if n.split(".")[0] in ("controller", "kubernetes", "lightkube"))
            for f, names in imported_modules(REPO / "jobs").items()}
    assert {f: n for f, n in jobs.items() if n} == {}
    adapter = set().union(*imported_modules(REPO / "controller" / "kube").values())
    assert {n.split(".")[0] for n in adapter} <= {"controller", "requests", "yaml", "__future__", "atexit", "base64",
                                                   "copy", "dataclasses", "datetime", "json", "os", "pathlib", "shutil",
                                                   "subprocess", "sys", "tempfile", "threading", "time", "typing",
                                                   "urllib", "uuid"}
