"""A small fake Kubernetes API server for the tests: real HTTP on 127.0.0.1, in a thread.

It keeps objects in memory with resourceVersions and speaks the parts of the
API the controller uses: list (label selectors, limit/continue), watch
(chunked streams from a resourceVersion, bookmarks, 410 Expired once the
history is compacted), create (409 AlreadyExists), get/delete (404),
replace (409 on a stale resourceVersion, generation bumped on a spec
change), JSON merge patches of an object or of its status subresource,
pod logs (followed), and a garbage collector for owner references. Objects
the controller sends are validated as the API server would: Jobs and Events
strictly against the Kubernetes 1.35 OpenAPI schema, Grids against the
chart's CRD schema; a refusal is a 422.

The tests drive the cluster's side: `start_job`, `finish_job` (as the Job
controller and kubelet would), `expire_watches`, `close_watches`.
"""

from __future__ import annotations

import copy
import json
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import kubernetes_validate
import yaml

KUBERNETES_VERSION = "1.35.0"
# plural -> (apiVersion, kind)
RESOURCES = {
    "jobs": ("batch/v1", "Job"),
    "pods": ("v1", "Pod"),
    "events": ("v1", "Event"),
    "grids": ("tp4.io/v1alpha1", "Grid"),
    "leases": ("coordination.k8s.io/v1", "Lease"),
}
STRICTLY_VALIDATED = ("jobs", "events", "leases")
WITH_STATUS = ("grids", "jobs")  # the resources with a status subresource


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    body: Any
    content_type: str
    authorization: str = ""


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def status_object(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


class Refused(Exception):
    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status_object(code, reason, message)


def merge(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge(result.get(key), value)
    return result


def selector_matches(selector: str, labels: dict[str, str]) -> bool:
    """Equality (=, ==, !=), existence (k, !k) and set-based (k in (a,b), k notin (a,b)) requirements."""
    for requirement in _requirements(selector):
        if not requirement(labels):
            return False
    return True


def _requirements(selector: str) -> Iterator[Callable[[dict[str, str]], bool]]:
    parts, depth, current = [], 0, ""
    for char in selector:
        depth += char == "("
        depth -= char == ")"
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    for part in (p.strip() for p in parts if p.strip()):
        if " notin " in part or " in " in part:
            key, op, values = part.replace("(", " ").replace(")", " ").split(None, 2)
            allowed = {value.strip() for value in values.split(",")}
            yield _member(key, allowed, inside=op == "in")
        elif "!=" in part:
            key, value = part.split("!=", 1)
            yield _equal(key.strip(), value.strip(), equal=False)
        elif "=" in part:
            key, value = part.replace("==", "=").split("=", 1)
            yield _equal(key.strip(), value.strip(), equal=True)
        elif part.startswith("!"):
            yield _has(part[1:].strip(), present=False)
        else:
            yield _has(part, present=True)


def _member(key: str, allowed: set[str], *, inside: bool) -> Callable[[dict[str, str]], bool]:
    return lambda labels: (labels.get(key) in allowed) == inside


def _equal(key: str, value: str, *, equal: bool) -> Callable[[dict[str, str]], bool]:
    return lambda labels: (labels.get(key) == value) == equal


def _has(key: str, *, present: bool) -> Callable[[dict[str, str]], bool]:
    return lambda labels: (key in labels) == present


class FakeKube:
    def __init__(
        self,
        *,
        grid_schema: Callable[[dict[str, Any]], list[str]] | None = None,
        gone_as_http: bool = False,
        tokens: set[str] | None = None,
    ) -> None:
        self.cond = threading.Condition()
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}  # (plural, namespace, name)
        self.version = 100
        self.history: list[tuple[int, str, str, dict[str, Any]]] = []  # (version, plural, type, object)
        self.compacted = 0  # a watch from a version below this one gets 410 Expired
        self.generation_of_streams = 0  # bumped to end every open watch stream
        self.requests: list[Recorded] = []
        self.logs: dict[str, list[bytes]] = {}
        self.logs_done: set[str] = set()
        self.grid_schema = grid_schema
        self.gone_as_http = gone_as_http
        self.refusals: list[dict[str, Any]] = []
        self.tokens = tokens  # the bearer tokens accepted (401 for any other request); None: anyone
        self.folder = tempfile.TemporaryDirectory(prefix="fake-kube-")  # kubeconfig files
        self.stopping = False
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True, name="fake-kube"
        )

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def kubeconfig(
        self,
        folder: Path | None = None,
        *,
        namespace: str | None = "default",
        user: dict[str, Any] | None = None,
        name: str = "config",
    ) -> Path:
        """A kubeconfig file whose current context reaches this server (as `user`, anonymous by default)."""
        context = {"cluster": "fake", "user": "me", **({"namespace": namespace} if namespace else {})}
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "fake",
            "contexts": [{"name": "fake", "context": context}],
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "me", "user": user or {}}],
        }
        folder = folder or Path(self.folder.name)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / name
        path.write_text(yaml.safe_dump(config))
        return path

    def __enter__(self) -> FakeKube:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with self.cond:
            self.stopping = True
            self.cond.notify_all()
        self.server.shutdown()
        self.server.server_close()
        self.folder.cleanup()

    # --- the store ---------------------------------------------------------------------------

    def _bump(self, plural: str, kind: str, obj: dict[str, Any]) -> None:
        self.version += 1
        obj["metadata"]["resourceVersion"] = str(self.version)
        self.history.append((self.version, plural, kind, copy.deepcopy(obj)))
        self.cond.notify_all()

    def put_object(self, plural: str, obj: dict[str, Any], *, event: str = "ADDED") -> dict[str, Any]:
        with self.cond:
            meta = obj["metadata"]
            meta.setdefault("uid", str(uuid.uuid4()))
            meta.setdefault("creationTimestamp", now())
            meta.setdefault("namespace", "default")
            self.objects[(plural, meta["namespace"], meta["name"])] = obj
            self._bump(plural, event, obj)
            return copy.deepcopy(obj)

    def remove(self, plural: str, namespace: str, name: str) -> dict[str, Any]:
        with self.cond:
            obj = self.objects.pop((plural, namespace, name))
            self._bump(plural, "DELETED", obj)
            self._collect_garbage(obj["metadata"]["uid"])
            return obj

    def _collect_garbage(self, owner_uid: str) -> None:
        for key, obj in list(self.objects.items()):
            if any(ref.get("uid") == owner_uid for ref in obj["metadata"].get("ownerReferences") or []):
                self.remove(*key)

    def find(self, plural: str, name: str, namespace: str = "default") -> dict[str, Any] | None:
        with self.cond:
            obj = self.objects.get((plural, namespace, name))
            return copy.deepcopy(obj) if obj else None

    def all(self, plural: str) -> list[dict[str, Any]]:
        with self.cond:
            return [copy.deepcopy(o) for (p, _, _), o in sorted(self.objects.items()) if p == plural]

    def sent(self, method: str, path_part: str = "") -> list[Recorded]:
        return [r for r in list(self.requests) if r.method == method and path_part in r.path]

    # --- the cluster's side: Job controller, kubelet, etcd compaction --------------------------

    def _change(
        self, plural: str, name: str, change: Callable[[dict[str, Any]], None], namespace: str = "default"
    ) -> dict[str, Any]:
        with self.cond:
            obj = self.objects[(plural, namespace, name)]
            change(obj)
            self._bump(plural, "MODIFIED", obj)
            return copy.deepcopy(obj)

    def start_job(self, name: str, *, log: list[str] | None = None, namespace: str = "default") -> str:
        """A new pod for the Job (an attempt), running and ready; its log so far. Returns the pod name."""
        job = self.find("jobs", name, namespace)
        assert job is not None, f"no job {name}"
        attempt = sum(int(job.get("status", {}).get(k) or 0) for k in ("failed", "succeeded", "active")) + 1
        pod_name = f"{name}-{uuid.uuid4().hex[:5]}"
        container = job["spec"]["template"]["spec"]["containers"][0]["name"]
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": pod_name,
                "namespace": namespace,
                "labels": {
                    **job["spec"]["template"]["metadata"].get("labels", {}),
                    "job-name": name,
                    "batch.kubernetes.io/job-name": name,
                    "batch.kubernetes.io/controller-uid": job["metadata"]["uid"],
                },
                "ownerReferences": [
                    {
                        "apiVersion": "batch/v1",
                        "kind": "Job",
                        "name": name,
                        "uid": job["metadata"]["uid"],
                        "controller": True,
                    }
                ],
                "annotations": {"attempt": str(attempt)},
                # the Job controller's retries are >= 10 s apart (its backoff): later attempts, later timestamps
                "creationTimestamp": (datetime.now(UTC) + timedelta(seconds=10 * attempt)).strftime(
                    "%Y-%m-%dT%H:%M:%SZ"
                ),
            },
            "spec": {"containers": [{"name": container, "image": "x"}]},
            "status": {"phase": "Running"},
        }
        self.put_object("pods", pod)
        with self.cond:
            self.logs[pod_name] = [line.encode() + b"\n" for line in log or []]
        self._change(
            "jobs",
            name,
            lambda j: j.setdefault("status", {}).update(
                active=1, ready=1, startTime=j.get("status", {}).get("startTime") or now()
            ),
            namespace,
        )
        return pod_name

    def pods_of(self, job: str) -> list[dict[str, Any]]:
        return [p for p in self.all("pods") if p["metadata"]["labels"].get("job-name") == job]

    def write_log(self, pod: str, line: str, *, done: bool = False) -> None:
        with self.cond:
            self.logs.setdefault(pod, []).append(line.encode() + b"\n")
            if done:
                self.logs_done.add(pod)
            self.cond.notify_all()

    def finish_job(
        self,
        name: str,
        *,
        succeeded: bool = True,
        reason: str = "BackoffLimitExceeded",
        retry: bool = False,
        namespace: str = "default",
    ) -> dict[str, Any]:
        """The current attempt ends; with retry=True a failed attempt is followed by another, else the Job
        is terminal (condition Complete, or Failed with `reason`)."""
        for pod in self.pods_of(name):
            if pod["status"]["phase"] == "Running":
                self.write_log(pod["metadata"]["name"], "done" if succeeded else "error", done=True)
                self._change(
                    "pods",
                    pod["metadata"]["name"],
                    lambda p: p["status"].update(phase="Succeeded" if succeeded else "Failed"),
                    namespace,
                )

        def change(job: dict[str, Any]) -> None:
            status = job.setdefault("status", {})
            status.update(active=0, ready=0)
            status["succeeded" if succeeded else "failed"] = (
                int(status.get("succeeded" if succeeded else "failed") or 0) + 1
            )
            if retry:
                return
            stamp = now()
            condition = (
                {"type": "Complete", "status": "True", "lastTransitionTime": stamp}
                if succeeded
                else {"type": "Failed", "status": "True", "reason": reason, "lastTransitionTime": stamp}
            )
            status["conditions"] = [*status.get("conditions", []), condition]
            if succeeded:
                status["completionTime"] = stamp

        job = self._change("jobs", name, change, namespace)
        if retry:
            self.start_job(name, namespace=namespace)
        return job

    def expire_watches(self) -> None:
        """etcd compacted the history: a watch that resumes from an older version gets 410 Expired."""
        with self.cond:
            self.compacted = self.version + 1
            self.generation_of_streams += 1
            self.cond.notify_all()

    def close_watches(self) -> None:
        """Every open watch stream ends (as at its timeoutSeconds): clients resume from their last version."""
        with self.cond:
            self.generation_of_streams += 1
            self.cond.notify_all()

    # --- the API ---------------------------------------------------------------------------------

    def route(self, path: str) -> tuple[str, str, str | None, str | None]:
        """(plural, namespace, name, subresource) of an API path; Refused 404 for anything else."""
        parts = path.strip("/").split("/")
        if parts[:2] == ["api", "v1"]:
            rest = parts[2:]
            if len(rest) > 2 and RESOURCES.get(rest[2], ("",))[0] != "v1":
                raise Refused(404, "NotFound", f"the server could not find the requested resource ({path})")
        elif parts[0] == "apis" and len(parts) > 3:
            rest = parts[3:]
            plural_at = rest[2] if len(rest) > 2 else ""
            if f"{parts[1]}/{parts[2]}" != RESOURCES.get(plural_at, ("",))[0]:
                raise Refused(404, "NotFound", f"the server could not find the requested resource ({path})")
        else:
            raise Refused(404, "NotFound", f"the server could not find the requested resource ({path})")
        if len(rest) < 3 or rest[0] != "namespaces" or rest[2] not in RESOURCES:
            raise Refused(404, "NotFound", f"the server could not find the requested resource ({path})")
        return rest[2], rest[1], rest[3] if len(rest) > 3 else None, rest[4] if len(rest) > 4 else None

    def validate(self, plural: str, obj: dict[str, Any]) -> None:
        problems: list[str] = []
        if plural in STRICTLY_VALIDATED:
            try:
                kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
            except kubernetes_validate.ValidationError as error:
                problems.append(str(error))
        elif plural == "grids" and self.grid_schema is not None:
            problems += self.grid_schema(obj)
        if problems:
            self.refusals.append(obj)
            raise Refused(422, "Invalid", f"{RESOURCES[plural][1]} is invalid: " + "; ".join(problems))

    def listing(self, plural: str, namespace: str, query: dict[str, str]) -> dict[str, Any]:
        selector = query.get("labelSelector", "")
        with self.cond:
            items = [
                copy.deepcopy(o)
                for (p, ns, _), o in sorted(self.objects.items())
                if p == plural and ns == namespace and selector_matches(selector, o["metadata"].get("labels") or {})
            ]
            version = str(self.version)
        start, limit = int(query.get("continue") or 0), int(query.get("limit") or 0)
        page = items[start : start + limit] if limit else items[start:]
        more = bool(limit) and start + limit < len(items)
        api_version, kind = RESOURCES[plural]
        return {
            "apiVersion": api_version,
            "kind": f"{kind}List",
            "metadata": {"resourceVersion": version, **({"continue": str(start + limit)} if more else {})},
            "items": page,
        }

    def create(self, plural: str, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        self.validate(plural, body)
        with self.cond:
            name = body["metadata"]["name"]
            if (plural, namespace, name) in self.objects:
                raise Refused(409, "AlreadyExists", f'{plural} "{name}" already exists')
            obj = copy.deepcopy(body)
            obj["metadata"].update(namespace=namespace, generation=1)
            if plural in WITH_STATUS:
                obj["status"] = {}  # the status subresource: a create does not set it
            return self.put_object(plural, obj)

    def get(self, plural: str, namespace: str, name: str) -> dict[str, Any]:
        obj = self.find(plural, name, namespace)
        if obj is None:
            raise Refused(404, "NotFound", f'{plural} "{name}" not found')
        return obj

    def replace(self, plural: str, namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        self.validate(plural, body)
        with self.cond:
            current = self.get(plural, namespace, name)
            if body["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
                raise Refused(
                    409,
                    "Conflict",
                    f'Operation cannot be fulfilled on {plural} "{name}": the object has been '
                    "modified; please apply your changes to the latest version and try again",
                )
            obj = copy.deepcopy(body)
            for key in ("uid", "creationTimestamp", "generation", "namespace"):
                obj["metadata"][key] = current["metadata"].get(key)
            if obj.get("spec") != current.get("spec"):
                obj["metadata"]["generation"] = current["metadata"]["generation"] + 1
            if plural in WITH_STATUS:
                obj["status"] = current.get("status", {})  # the status subresource: only /status writes it
            return self.put_object(plural, obj, event="MODIFIED")

    def patch(
        self, plural: str, namespace: str, name: str, subresource: str | None, body: dict[str, Any], content_type: str
    ) -> dict[str, Any]:
        if content_type != "application/merge-patch+json":
            raise Refused(
                415, "UnsupportedMediaType", f"the body of the request was in an unknown format: {content_type}"
            )
        with self.cond:
            current = self.get(plural, namespace, name)
            if subresource == "status":
                patched = {**current, "status": merge(current.get("status") or {}, body.get("status") or {})}
            else:
                patched = merge(current, {k: v for k, v in body.items() if k != "status"})
                if patched.get("spec") != current.get("spec"):
                    patched["metadata"]["generation"] = current["metadata"]["generation"] + 1
            self.validate(plural, patched)
            return self.put_object(plural, patched, event="MODIFIED")

    def delete(self, plural: str, namespace: str, name: str) -> dict[str, Any]:
        with self.cond:
            self.get(plural, namespace, name)
            return self.remove(plural, namespace, name)

    def watch_events(self, plural: str, namespace: str, query: dict[str, str]) -> Iterator[dict[str, Any]]:
        """The events after `resourceVersion`, then the new ones, until the stream is ended."""
        selector = query.get("labelSelector", "")
        since = int(query.get("resourceVersion") or 0)
        deadline = time.monotonic() + float(query.get("timeoutSeconds") or 3600)
        with self.cond:
            if since and since < self.compacted:
                yield {
                    "type": "ERROR",
                    "object": status_object(410, "Expired", f"too old resource version: {since} ({self.compacted})"),
                }
                return
            stream = self.generation_of_streams
        while True:
            with self.cond:
                pending = [
                    (v, t, o)
                    for v, p, t, o in self.history
                    if v > since
                    and p == plural
                    and o["metadata"].get("namespace") == namespace
                    and selector_matches(selector, o["metadata"].get("labels") or {})
                ]
                if self.stopping or stream != self.generation_of_streams:
                    return  # ended (expired or closed) at once, even with events not yet sent
                if not pending:
                    if time.monotonic() > deadline:
                        return
                    self.cond.wait(0.2)
                    continue
            for version, kind, obj in pending:
                since = version
                yield {"type": kind, "object": obj}

    def log_chunks(self, pod: str, follow: bool) -> Iterator[bytes]:
        sent = 0
        while True:
            with self.cond:
                lines = self.logs.get(pod, [])[sent:]
                done = pod in self.logs_done or not follow or self.stopping
                if not lines and not done:
                    self.cond.wait(0.2)
                    continue
            yield from lines
            sent += len(lines)
            if done and not lines:
                return


def _flag(query: dict[str, str], name: str) -> bool:
    """A boolean query parameter as the API server parses it (Go's strconv.ParseBool: the official
    Python client sends `True`, kubectl `true`)."""
    return query.get(name, "").lower() in ("1", "t", "true")


def _handler(kube: FakeKube) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def _body(self) -> Any:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            return json.loads(raw) if raw else None

        def _send(self, code: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _stream(self, chunks: Iterator[bytes], content_type: str) -> None:
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            try:
                for chunk in chunks:
                    self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                pass
            self.close_connection = True

        def _serve(self, method: str) -> None:
            url = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            body = self._body()
            kube.requests.append(
                Recorded(
                    method,
                    url.path,
                    query,
                    body,
                    self.headers.get("Content-Type", ""),
                    self.headers.get("Authorization", ""),
                )
            )
            try:
                if kube.tokens is not None and self.headers.get("Authorization", "") not in {
                    f"Bearer {token}" for token in kube.tokens
                }:
                    raise Refused(401, "Unauthorized", "Unauthorized")
                plural, namespace, name, sub = kube.route(url.path)
                if method == "GET" and name is None and _flag(query, "watch"):
                    return self._watch(plural, namespace, query)
                if method == "GET" and sub == "log":
                    kube.get("pods", namespace, name or "")
                    return self._stream(kube.log_chunks(name or "", _flag(query, "follow")), "text/plain")
                self._send(*self._dispatch(method, plural, namespace, name, sub, query, body))
            except Refused as refusal:
                self._send(refusal.status["code"], refusal.status)

        def _watch(self, plural: str, namespace: str, query: dict[str, str]) -> None:
            events = kube.watch_events(plural, namespace, query)
            if kube.gone_as_http:
                first = next(events, None)
                if first and first["type"] == "ERROR":
                    raise Refused(410, "Expired", first["object"]["message"])
                events = iter([first, *events] if first else [])
            self._stream((json.dumps(e).encode() + b"\n" for e in events), "application/json")

        def _dispatch(
            self,
            method: str,
            plural: str,
            namespace: str,
            name: str | None,
            sub: str | None,
            query: dict[str, str],
            body: Any,
        ) -> tuple[int, dict[str, Any]]:
            if name is None and method == "GET":
                return 200, kube.listing(plural, namespace, query)
            if name is None and method == "POST":
                return 201, kube.create(plural, namespace, body)
            if name is not None and method == "GET":
                return 200, kube.get(plural, namespace, name)
            if name is not None and method == "PUT":
                return 200, kube.replace(plural, namespace, name, body)
            if name is not None and method == "PATCH":
                return 200, kube.patch(plural, namespace, name, sub, body, self.headers.get("Content-Type", ""))
            if name is not None and method == "DELETE":
                kube.delete(plural, namespace, name)
                return 200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}
            raise Refused(405, "MethodNotAllowed", f"{method} is not supported here")

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

        def do_PUT(self) -> None:
            self._serve("PUT")

        def do_PATCH(self) -> None:
            self._serve("PATCH")

        def do_DELETE(self) -> None:
            self._serve("DELETE")

    return Handler
