"""The Kubernetes adapter (the official client) over real HTTP, against the tests' fake API server
(tests/helpers/fake_kube.py), always configured from a kubeconfig file: the requests it sends, watches
that expire and resume, 409s, 404s, 401s, pod logs, kubeconfig merging, tokens, exec plugins."""

from __future__ import annotations

import base64
import json
import os
import stat
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.cluster import kube as kube_client
from controller.cluster.informer import Mirror
from controller.cluster.kube import EVENTS, GRIDS, JOBS, Kube, Resource, label_selector
from controller.errors import InvalidInput
from tests.helpers.crd_schema import grid_validator
from tests.helpers.fake_kube import FakeKube

NS = "default"


def job(name: str, grid: str = "lab", **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": {"tp4.io/grid": grid, **labels}},
        "spec": {
            "backoffLimit": 1,
            "template": {
                "metadata": {"labels": {"tp4.io/grid": grid}},
                "spec": {"restartPolicy": "Never", "containers": [{"name": "train", "image": "tp4-trainer:0.1.0"}]},
            },
        },
    }


def grid(name: str = "lab") -> dict[str, Any]:
    return {
        "apiVersion": "tp4.io/v1alpha1",
        "kind": "Grid",
        "metadata": {"name": name},
        "spec": {
            "name": name,
            "dataset": {"path": "data/tiny_coco", "md5": "0" * 32 + ".dir"},
            "model": {"weights": "yolov8n.pt"},
            "axes": {"lr0": [0.01]},
        },
    }


@pytest.fixture
def kube():
    with FakeKube(grid_schema=grid_validator(), tokens={"s3cr3t-token"}) as server:
        yield server


@pytest.fixture
def api(kube: FakeKube) -> Kube:
    return kube_client.connect(kubeconfig=str(kube.kubeconfig(namespace=NS, user={"token": "s3cr3t-token"})))


def wait_until(predicate: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_create_get_list_delete_jobs_send_the_expected_requests(kube: FakeKube, api: Kube) -> None:
    created = api.create(JOBS, job("train-1"))
    api.create(JOBS, job("train-2", grid="other"))
    post = kube.sent("POST")[0]
    assert (post.path, post.body, post.content_type) == (
        "/apis/batch/v1/namespaces/default/jobs",
        job("train-1"),
        "application/json",
    )
    assert post.authorization == "Bearer s3cr3t-token" and post.query == {"fieldValidation": "Strict"}
    assert api.get(JOBS, "train-1")["metadata"]["uid"] == created["metadata"]["uid"]

    listing = api.list_objects(JOBS, selector=label_selector({"tp4.io/grid": "lab"}))
    assert [j["metadata"]["name"] for j in listing.items] == ["train-1"]
    assert kube.sent("GET", "/jobs")[-1].query == {"labelSelector": "tp4.io/grid=lab", "limit": "500"}
    assert int(listing.resource_version) >= int(created["metadata"]["resourceVersion"])
    everything = api.list_objects(JOBS, selector=label_selector({"tp4.io/grid": None}))
    assert len(everything.items) == 2 and kube.sent("GET", "/jobs")[-1].query["labelSelector"] == "tp4.io/grid"

    assert api.delete(JOBS, "train-1") is True
    request = kube.sent("DELETE")[0]
    assert request.path == "/apis/batch/v1/namespaces/default/jobs/train-1"
    assert request.body == {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}


def test_conflicts_and_not_found_are_typed_errors(kube: FakeKube, api: Kube) -> None:
    api.create(JOBS, job("train-1"))
    with pytest.raises(kube_client.Conflict) as clash:
        api.create(JOBS, job("train-1"))
    assert clash.value.code == 409 and clash.value.reason == "AlreadyExists"
    with pytest.raises(kube_client.NotFound):
        api.get(JOBS, "nope")
    assert api.delete(JOBS, "nope") is False
    with pytest.raises(kube_client.NotFound):
        api.delete(JOBS, "nope", missing_ok=False)
    stale = api.create(GRIDS, grid())
    api.patch_status(GRIDS, "lab", {"phase": "Running"})  # a new resourceVersion
    stale["spec"]["axes"] = {"lr0": [0.02]}
    with pytest.raises(kube_client.Conflict) as outdated:
        api.replace(GRIDS, stale)
    assert outdated.value.reason == "Conflict"


def test_invalid_objects_are_refused_by_the_fake_server(kube: FakeKube, api: Kube) -> None:
    """The fake server validates like the real one: the tests below rely on it."""
    bad = job("train-1")
    bad["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy2"] = "Never"
    with pytest.raises(kube_client.Invalid):
        api.create(JOBS, bad)
    wrong = grid()
    wrong["spec"]["paralellism"] = 3
    with pytest.raises(kube_client.Invalid, match="paralellism"):
        api.create(GRIDS, wrong)


def test_status_is_merge_patched_on_the_status_subresource(kube: FakeKube, api: Kube) -> None:
    api.create(GRIDS, grid())
    api.patch_status(GRIDS, "lab", {"phase": "Running", "counts": {"total": 1, "running": 1}})
    patched = api.patch_status(GRIDS, "lab", {"counts": {"running": None, "succeeded": 1}})
    request = kube.sent("PATCH")[-1]
    assert request.path == "/apis/tp4.io/v1alpha1/namespaces/default/grids/lab/status"
    assert request.content_type == "application/merge-patch+json" and request.query == {"fieldValidation": "Strict"}
    assert request.body == {"status": {"counts": {"running": None, "succeeded": 1}}}
    assert patched["status"] == {"phase": "Running", "counts": {"total": 1, "succeeded": 1}}
    assert patched["spec"] == grid()["spec"] and patched["metadata"]["generation"] == 1
    with pytest.raises(kube_client.Invalid, match="phase"):  # the CRD's enum
        api.patch_status(GRIDS, "lab", {"phase": "Exploded"})


def test_replace_bumps_the_generation_and_keeps_the_status(kube: FakeKube, api: Kube) -> None:
    api.create(GRIDS, grid())
    current = api.patch_status(GRIDS, "lab", {"phase": "Succeeded"})
    current["spec"]["axes"] = {"lr0": [0.01, 0.02]}
    current["status"] = {"phase": "Pending"}  # ignored: only /status writes the status
    replaced = api.replace(GRIDS, current)
    assert replaced["metadata"]["generation"] == 2 and replaced["status"] == {"phase": "Succeeded"}
    assert kube.sent("PUT")[0].path == "/apis/tp4.io/v1alpha1/namespaces/default/grids/lab"


def test_list_pages_follow_the_continue_token(kube: FakeKube, api: Kube, monkeypatch: pytest.MonkeyPatch) -> None:
    for i in range(5):
        api.create(JOBS, job(f"train-{i}"))
    monkeypatch.setattr(kube_client, "PAGE", 2)
    listing = api.list_objects(JOBS)
    assert [j["metadata"]["name"] for j in listing.items] == [f"train-{i}" for i in range(5)]
    assert [r.query.get("continue") for r in kube.sent("GET", "/jobs")] == [None, "2", "4"]


@pytest.mark.parametrize("gone_as_http", [False, True], ids=["error-event", "http-410"])
def test_watch_streams_changes_and_raises_gone_when_expired(gone_as_http: bool) -> None:
    with FakeKube(gone_as_http=gone_as_http) as kube:
        api = kube_client.connect(kubeconfig=str(kube.kubeconfig(namespace=NS)))
        start = api.list_objects(JOBS).resource_version
        api.create(JOBS, job("train-1"))
        api.create(JOBS, job("train-2", grid="other"))
        api.delete(JOBS, "train-1")
        seen = [
            (kind, obj["metadata"]["name"])
            for kind, obj in api.watch(JOBS, resource_version=start, selector="tp4.io/grid=lab", timeout_seconds=1)
        ]
        assert seen == [("ADDED", "train-1"), ("DELETED", "train-1")]
        request = kube.sent("GET", "/jobs")[-1]
        # the official client sends booleans as True (the API server parses them as Go's ParseBool does)
        assert request.query["watch"] == "True" and request.query["resourceVersion"] == start
        assert request.query["allowWatchBookmarks"] == "True" and request.query["labelSelector"] == "tp4.io/grid=lab"
        assert request.query["timeoutSeconds"] == "1"
        kube.expire_watches()
        with pytest.raises(kube_client.Gone) as gone:
            list(api.watch(JOBS, resource_version=start))
        assert gone.value.code == 410 and gone.value.reason == "Expired" and "too old" in gone.value.message


def test_mirror_resumes_closed_watches_and_relists_expired_ones(kube: FakeKube, api: Kube) -> None:
    changes: list[tuple[str | None, str | None]] = []

    def on_change(old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        changes.append((old and old["metadata"]["name"], new and new["metadata"]["name"]))

    api.create(JOBS, job("before"))
    mirror = Mirror(api, resource=JOBS, on_change=on_change, label_selector="tp4.io/grid=lab", watch_seconds=30)
    stop = threading.Event()
    threading.Thread(target=mirror.run, kwargs={"stop": stop}, daemon=True).start()
    try:
        wait_until(lambda: mirror.synced.is_set())
        assert changes == [(None, "before")]
        api.create(JOBS, job("during"))
        wait_until(lambda: "during" in mirror.snapshot())
        kube.close_watches()  # a stream ends (timeoutSeconds): resumed from the last version, no list
        api.create(JOBS, job("after-close"))
        wait_until(lambda: "after-close" in mirror.snapshot())
        assert mirror.relists == 1
        resumed = [r for r in kube.sent("GET", "/jobs") if r.query.get("watch")][-1]
        assert int(resumed.query["resourceVersion"]) >= int(mirror.snapshot()["during"]["metadata"]["resourceVersion"])
        assert resumed.query["allowWatchBookmarks"] == "True"

        kube.expire_watches()  # 410: list again, and report what changed meanwhile
        api.delete(JOBS, "before")
        api.create(JOBS, job("after-expiry"))
        wait_until(lambda: "after-expiry" in mirror.snapshot() and "before" not in mirror.snapshot())
        assert mirror.relists >= 2
        assert ("before", None) in changes and (None, "after-expiry") in changes
        assert set(mirror.snapshot()) == {"during", "after-close", "after-expiry"}
    finally:
        stop.set()
        kube.close_watches()


def test_mirror_keeps_what_keep_returns_of_listed_watched_and_remembered_objects(kube: FakeKube, api: Kube) -> None:
    def keep(obj: dict[str, Any]) -> dict[str, Any]:
        return {"metadata": {k: obj["metadata"][k] for k in ("name", "resourceVersion")}}

    seen: list[dict[str, Any] | None] = []
    api.create(JOBS, job("listed"))
    mirror = Mirror(api, resource=JOBS, on_change=lambda old, new: seen.append(new), keep=keep)
    mirror.relist()
    created = api.create(JOBS, job("watched"))
    mirror.apply("ADDED", created)  # what watch_once does with each event
    mirror.remember({**created, "metadata": {**created["metadata"], "name": "remembered"}})
    assert set(mirror.snapshot()) == {"listed", "watched", "remembered"}
    assert all(set(obj) == {"metadata"} and set(obj["metadata"]) == {"name", "resourceVersion"}
               for obj in [*mirror.snapshot().values(), *(n for n in seen if n)])


def test_mirror_follows_bookmarks(kube: FakeKube, api: Kube) -> None:
    mirror = Mirror(api, resource=JOBS, on_change=lambda old, new: None)
    mirror.relist()
    mirror.apply("BOOKMARK", {"kind": "Job", "apiVersion": "batch/v1", "metadata": {"resourceVersion": "9999"}})
    assert mirror.resource_version == "9999" and mirror.snapshot() == {}


def test_mirror_backs_off_while_the_api_server_is_unreachable(tmp_path: Path) -> None:
    with FakeKube() as kube:
        api = kube_client.connect(kubeconfig=str(kube.kubeconfig(tmp_path)))
    mirror = Mirror(api, resource=JOBS, on_change=lambda old, new: None)  # the server has gone
    stop = threading.Event()
    thread = threading.Thread(target=mirror.run, kwargs={"stop": stop}, daemon=True)
    thread.start()
    time.sleep(1.0)
    stop.set()
    thread.join(timeout=40)
    assert not thread.is_alive() and not mirror.synced.is_set()


def test_logs_of_a_jobs_latest_attempt_are_streamed_and_followed(kube: FakeKube, api: Kube) -> None:
    api.create(JOBS, job("train-1"))
    first = kube.start_job("train-1", log=["attempt 1"])
    kube.finish_job("train-1", succeeded=False, retry=True)  # a second pod
    pods = api.attempts("train-1")
    assert [p["metadata"]["name"] for p in pods][0] == first and len(pods) == 2
    uid = api.get(JOBS, "train-1")["metadata"]["uid"]
    assert kube.sent("GET", "/pods")[-1].query["labelSelector"] == f"batch.kubernetes.io/controller-uid={uid}"
    assert list(api.log_lines(pods[0], follow=False)) == [b"attempt 1", b"error"]

    latest = pods[-1]["metadata"]["name"]
    kube.write_log(latest, "epoch 1")
    threading.Timer(0.3, lambda: kube.write_log(latest, "epoch 2", done=True)).start()
    assert list(api.log_lines(pods[-1], follow=True)) == [b"epoch 1", b"epoch 2"]
    request = kube.sent("GET", "/log")[-1]
    assert request.path == f"/api/v1/namespaces/default/pods/{latest}/log"
    assert request.query == {"container": "train", "follow": "True"}


def test_an_event_about_a_grid_validates_strictly(kube: FakeKube, api: Kube) -> None:
    about = api.create(GRIDS, grid())
    event = api.record(about=about, reason="Submitted", message="x" * 5000, warning=False)
    assert event["involvedObject"]["uid"] == about["metadata"]["uid"] and len(event["message"]) == 1024
    assert kube.sent("POST", "/api/v1/namespaces/default/events") and kube.refusals == []
    assert kube.sent("POST", "/events")[-1].query == {"fieldValidation": "Strict"}
    assert api.list_objects(EVENTS).items[0]["reason"] == "Submitted"


# --- kubeconfig, credentials and the service account ---------------------------------------------


def kubeconfig(folder: Path, *, user: dict[str, Any], cluster: dict[str, Any], namespace: str | None = "tp4") -> Path:
    context = {"cluster": "kind-tp4", "user": "me", **({"namespace": namespace} if namespace else {})}
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "kind-tp4",
        "contexts": [{"name": "kind-tp4", "context": context}, {"name": "other", "context": {"cluster": "kind-tp4"}}],
        "clusters": [{"name": "kind-tp4", "cluster": cluster}],
        "users": [{"name": "me", "user": user}],
    }
    path = folder / "config"
    path.write_text(yaml.safe_dump(config))
    return path


def test_kubeconfig_with_inline_certificates(tmp_path: Path) -> None:
    data = {name: base64.b64encode(f"PEM {name}".encode()).decode() for name in ("ca", "crt", "key")}
    path = kubeconfig(
        tmp_path,
        cluster={"server": "https://127.0.0.1:6443/", "certificate-authority-data": data["ca"]},
        user={"client-certificate-data": data["crt"], "client-key-data": data["key"]},
    )
    api = kube_client.connect(kubeconfig=str(path))
    configuration = api.configuration
    assert api.server == "https://127.0.0.1:6443" and api.namespace == "tp4"
    assert Path(configuration.ssl_ca_cert).read_text() == "PEM ca" and configuration.verify_ssl
    assert [Path(f).read_text() for f in (configuration.cert_file, configuration.key_file)] == ["PEM crt", "PEM key"]
    assert stat.S_IMODE(Path(configuration.key_file).stat().st_mode) == 0o600
    assert kube_client.connect(kubeconfig=str(path), context="other").namespace == "default"
    assert kube_client.connect(kubeconfig=str(path), namespace="elsewhere").namespace == "elsewhere"


def test_kubeconfig_token_file_insecure_and_refusals(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("from-file\n")
    path = kubeconfig(
        tmp_path, cluster={"server": "https://k:6443", "insecure-skip-tls-verify": True}, user={"tokenFile": "token"}
    )
    configuration = kube_client.connect(kubeconfig=str(path)).configuration
    assert configuration.verify_ssl is False
    assert configuration.auth_settings()["BearerToken"]["value"] == "Bearer from-file"
    with FakeKube(tokens={"from-file"}) as kube:  # a token file's newline is not sent
        through = kube.kubeconfig(tmp_path / "reaching", user={"tokenFile": str(tmp_path / "token")})
        assert kube_client.connect(kubeconfig=str(through)).list_objects(JOBS).items == []
        assert kube.sent("GET", "/jobs")[0].authorization == "Bearer from-file"
    with pytest.raises(InvalidInput, match="no context named 'nope'"):
        kube_client.connect(kubeconfig=str(path), context="nope")
    with pytest.raises(InvalidInput, match="no kubeconfig"):
        kube_client.connect(env={"HOME": str(tmp_path / "nowhere")})
    with pytest.raises(InvalidInput, match="no such file"):
        kube_client.connect(kubeconfig=str(tmp_path / "missing"), env={"HOME": str(tmp_path)})


def test_a_token_reaches_the_api_server_and_a_wrong_one_is_unauthorized(tmp_path: Path) -> None:
    with FakeKube(tokens={"right"}) as kube:
        api = kube_client.connect(kubeconfig=str(kube.kubeconfig(tmp_path, user={"token": "right"})))
        assert api.list_objects(JOBS).items == []
        wrong = kube_client.connect(kubeconfig=str(kube.kubeconfig(tmp_path, user={"token": "wrong"}, name="wrong")))
        with pytest.raises(kube_client.Unauthorized) as refused:
            wrong.list_objects(JOBS)
        assert refused.value.code == 401
        assert [r.authorization for r in kube.sent("GET", "/jobs")] == ["Bearer right", "Bearer wrong", "Bearer wrong"]


def test_a_two_file_kubeconfig_is_merged_as_kubectl_merges_it(tmp_path: Path) -> None:
    """KUBECONFIG=first:second: the cluster and the user from the first file, the context and
    current-context from the second; for a name set in both, the first file wins (kubectl's rule)."""
    with FakeKube(tokens={"merged-token"}) as kube:
        first = tmp_path / "clusters.yaml"
        first.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "fake", "cluster": {"server": kube.url}}],
                    "users": [{"name": "me", "user": {"token": "merged-token"}}],
                }
            )
        )
        second = tmp_path / "contexts.yaml"
        second.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "current-context": "lab",
                    "contexts": [{"name": "lab", "context": {"cluster": "fake", "user": "me", "namespace": "tp4"}}],
                    "clusters": [
                        {"name": "fake", "cluster": {"server": "http://127.0.0.1:9"}}
                    ],  # shadowed by the first
                    "users": [{"name": "me", "user": {"token": "shadowed"}}],
                }
            )
        )
        third = tmp_path / "later.yaml"  # sets current-context too, after the second: not used
        third.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "Config", "current-context": "nope"}))
        api = kube_client.connect(
            env={"KUBECONFIG": os.pathsep.join([str(first), str(second), str(third), str(tmp_path / "absent")])}
        )
        assert api.namespace == "tp4" and api.server == kube.url
        api.list_objects(JOBS)
        (request,) = kube.sent("GET", "/jobs")
        assert request.path == "/apis/batch/v1/namespaces/tp4/jobs" and request.authorization == "Bearer merged-token"


PLUGIN = r"""
import json, os, pathlib, sys
info = json.loads(os.environ["KUBERNETES_EXEC_INFO"])
runs = pathlib.Path(os.environ["RUNS"])
count = len(runs.read_text().splitlines()) + 1 if runs.exists() else 1
with runs.open("a") as f:
    f.write(json.dumps(info) + "\n")
print(json.dumps({"apiVersion": info["apiVersion"], "kind": "ExecCredential", "status": {
    "token": f"exec-{os.environ['TOKEN_SUFFIX']}-{count}", "expirationTimestamp": "2999-01-01T00:00:00Z"}}))
"""


def test_an_exec_plugin_token_reaches_the_api_server_and_is_renewed_after_a_401(tmp_path: Path) -> None:
    plugin, runs = tmp_path / "plugin.py", tmp_path / "runs.jsonl"
    plugin.write_text(PLUGIN)
    with FakeKube(tokens={"exec-42-1"}) as kube:
        path = kube.kubeconfig(
            tmp_path,
            namespace="tp4",
            user={
                "exec": {
                    "apiVersion": "client.authentication.k8s.io/v1",
                    "command": sys.executable,
                    "args": [str(plugin)],
                    "env": [{"name": "TOKEN_SUFFIX", "value": "42"}, {"name": "RUNS", "value": str(runs)}],
                    "interactiveMode": "Never",
                    "provideClusterInfo": True,
                }
            },
        )
        api = kube_client.connect(env={"KUBECONFIG": str(path)})
        api.list_objects(JOBS)
        api.list_objects(JOBS)  # the token is cached until its expirationTimestamp
        kube.tokens = {"exec-42-2"}  # the API server no longer accepts the first token (revoked)
        api.list_objects(JOBS)  # 401, the plugin run again, the request retried once
        assert [r.authorization for r in kube.sent("GET", "/jobs")] == ["Bearer exec-42-1"] * 3 + ["Bearer exec-42-2"]
        assert kube.sent("GET")[0].path == "/apis/batch/v1/namespaces/tp4/jobs"
        infos = [json.loads(line) for line in runs.read_text().splitlines()]
        assert len(infos) == 2 and infos[0]["apiVersion"] == "client.authentication.k8s.io/v1"
        assert infos[0]["spec"]["cluster"]["server"] == kube.url  # provideClusterInfo: the cluster is passed
        kube.tokens = {"never"}
        with pytest.raises(kube_client.Unauthorized):
            api.list_objects(JOBS)


def test_in_cluster_reads_the_service_account(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("sa-token")
    (tmp_path / "namespace").write_text("tp4\n")
    (tmp_path / "ca.crt").write_text("PEM")
    env = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443", "HOME": str(tmp_path)}
    api = kube_client.in_cluster(env=env, account=tmp_path)
    assert (api.server, api.namespace, api.configuration.ssl_ca_cert) == (
        "https://10.96.0.1:443",
        "tp4",
        str(tmp_path / "ca.crt"),
    )
    assert api.configuration.auth_settings()["BearerToken"]["value"].lower() == "bearer sa-token"
    assert (
        kube_client.in_cluster(env={**env, "KUBERNETES_SERVICE_HOST": "fd00::1"}, account=tmp_path).server
        == "https://[fd00::1]:443"
    )
    assert kube_client.in_cluster(env=env, account=tmp_path, namespace="other").namespace == "other"
    with pytest.raises(InvalidInput, match="service account"):
        kube_client.in_cluster(env=env, account=tmp_path / "absent")


def test_a_missing_crd_is_a_not_found(kube: FakeKube, api: Kube) -> None:
    with pytest.raises(kube_client.NotFound):
        api.list_objects(Resource("tp4.io", "v1beta9", "grids", "Grid"))
    assert json.loads(json.dumps(kube.sent("GET")[-1].query)) == {"limit": "500"}


def test_an_unreachable_api_server_is_reported_as_unreachable(tmp_path: Path) -> None:
    with FakeKube() as kube:
        api = kube_client.connect(kubeconfig=str(kube.kubeconfig(tmp_path)))
    api.configuration.retries = 0
    with pytest.raises(kube_client.UNREACHABLE):
        api.list_objects(JOBS)


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


def test_the_jobs_never_import_the_kubernetes_client_and_the_cluster_backend_speaks_only_through_it() -> None:
    from tests.helpers.paths import REPO

    jobs = {
        f: sorted(n for n in names if n.split(".")[0] in ("controller", "kubernetes", "lightkube"))
        for f, names in imported_modules(REPO / "jobs").items()
    }
    assert {f: n for f, n in jobs.items() if n} == {}
    cluster = imported_modules(REPO / "controller" / "cluster")
    http = {
        f: sorted(n for n in names if n.split(".")[0] in ("requests", "httpx", "http", "urllib", "socket"))
        for f, names in cluster.items()
    }
    assert {f: n for f, n in http.items() if n and not f.endswith("health.py")} == {}  # the probe server only
    client = {Path(f).name for f, names in cluster.items() if any(n.split(".")[0] == "kubernetes" for n in names)}
    assert client <= {"kube.py", "leader.py"}
