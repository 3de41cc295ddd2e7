"""The controller's Kubernetes adapter: a thin typed layer over the official `kubernetes` client.

Configuration is the client's own (`kubernetes.config`): a kubeconfig, with a
`KUBECONFIG` list of files merged as kubectl merges them, its contexts,
client certificates, tokens and token files, exec credential plugins (re-run
when their token expires) and auth-provider plugins; in a pod, the mounted
service account (its token re-read as kubelet rotates it). Every call goes
through the client's typed APIs (BatchV1Api for Jobs, CoreV1Api for pods,
pod logs and Events, CoordinationV1Api for the leader's Lease, CustomObjectsApi
for Grids), with `_preload_content=False`
so that objects come back as the plain dicts the API server sends, which is
what the rest of the controller works on. Writes are `fieldValidation=Strict`.

The adapter adds what the client leaves to its callers: one exception class
per status code the controller acts on (NotFound, Conflict, Gone, Invalid,
Unauthorized), and one retry after a 401 with the credentials loaded again (the
client re-runs an exec plugin only when its token has expired, not when the
API server refuses it). `jobs` never imports this module.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import urllib3
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.config.incluster_config import SERVICE_CERT_FILENAME, SERVICE_TOKEN_FILENAME, InClusterConfigLoader
from kubernetes.config.kube_config import KubeConfigMerger
from kubernetes.watch import Watch

from contract.errors import InvalidInput, Problem
from controller.cluster import rbac

Object = dict[str, Any]
SERVICE_ACCOUNT = Path(SERVICE_TOKEN_FILENAME).parent
REQUEST_TIMEOUT = (10.0, 60.0)  # connect, read (seconds)
FOLLOW_READ_SECONDS = 3600.0
WATCH_SECONDS = 300  # the server ends a watch after this; the informer resumes from the last version
PAGE = 500
MERGE_PATCH = "application/merge-patch+json"
# Writes refuse unknown or duplicate fields (HTTP 422) instead of dropping them with a warning
# (the API server's default): a drift between the code and the CRD or the Job schema shows at once.
STRICT = "Strict"
COMPONENT = "tp4-controller"
# The Job controller labels its pods with the Job's uid (since Kubernetes 1.27; `controller-uid` before).
CONTROLLER_UID = "batch.kubernetes.io/controller-uid"


# --- errors -----------------------------------------------------------------------------------

class ApiError(Exception):
    """A refusal of the API server (or a failure to reach it: code 0), with its Status reason and message."""

    def __init__(self, *, code: int, reason: str, message: str) -> None:
        self.code, self.reason, self.message = code, reason, message
        super().__init__(f"HTTP {code} {reason}: {message}" if code else message)


class NotFound(ApiError):
    """404: no such object (or no such resource: the Grid CRD is not installed)."""


class Conflict(ApiError):
    """409: the name exists already (reason AlreadyExists) or the resourceVersion is stale (reason Conflict)."""


class Gone(ApiError):
    """410: the resourceVersion a watch resumed from is too old (reason Expired): list again."""


class Invalid(ApiError):
    """422: the object does not validate against the API server's schema."""


class Unauthorized(ApiError):
    """401: the credentials were refused (also after loading them again)."""


BY_CODE: dict[int, type[ApiError]] = {401: Unauthorized, 404: NotFound, 409: Conflict, 410: Gone, 422: Invalid}
UNREACHABLE = (ApiError, urllib3.exceptions.HTTPError)  # what the CLI reports as "the API server said"


def api_error(error: k8s.ApiException) -> ApiError:
    """The typed error for the client's ApiException, with the Status object's reason and message."""
    try:
        status = json.loads(error.body) if error.body else {}
    except ValueError:
        status = {}
    status = status if isinstance(status, dict) else {}
    code = int(status.get("code") or error.status or 0)
    reason, message = str(status.get("reason") or ""), str(status.get("message") or "")
    if not message:  # a watch's ERROR event or a transport failure: the client put it all in `reason`
        reason, _, message = str(error.reason or "").partition(": ")
    return BY_CODE.get(code, ApiError)(code=code, reason=reason, message=message or str(error.body or "")[:500])


# --- resources --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Resource:
    group: str  # "" for the core group
    version: str
    plural: str
    kind: str
    typed: str = ""  # the client's name for it in BatchV1Api/CoreV1Api methods; "" for a custom resource

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


JOBS = Resource("batch", "v1", "jobs", "Job", typed="job")
PODS = Resource("", "v1", "pods", "Pod", typed="pod")
EVENTS = Resource("", "v1", "events", "Event", typed="event")
LEASES = Resource("coordination.k8s.io", "v1", "leases", "Lease", typed="lease")  # leader election
GRIDS = Resource(rbac.GRID_GROUP, rbac.GRID_VERSION, rbac.GRID_PLURAL, rbac.GRID_KIND)


def label_selector(labels: Mapping[str, str | None]) -> str:
    """{"a": "x", "b": None} -> "a=x,b": equality, or existence for None."""
    return ",".join(key if value is None else f"{key}={value}" for key, value in sorted(labels.items()))


@dataclass(frozen=True)
class Listing:
    items: list[Object]
    resource_version: str  # where a watch resumes from


# --- the adapter ------------------------------------------------------------------------------

class Kube:
    """One API server, one user, one namespace: the verbs the controller and the CLI use, dicts in and out."""

    def __init__(self, *, configuration: k8s.Configuration, namespace: str,
                 reload: Callable[[k8s.Configuration], None] | None = None) -> None:
        self.configuration, self.namespace, self.reload = configuration, namespace, reload
        self.client = k8s.ApiClient(configuration)
        self.batch, self.core = k8s.BatchV1Api(self.client), k8s.CoreV1Api(self.client)
        self.custom = k8s.CustomObjectsApi(self.client)
        self.typed = {"batch": self.batch, "": self.core, "coordination.k8s.io": k8s.CoordinationV1Api(self.client)}

    @property
    def server(self) -> str:
        return str(self.configuration.host)

    def close(self) -> None:
        self.client.close()

    # -- plumbing --------------------------------------------------------------------------------

    def _method(self, resource: Resource, verb: str, *,
                status: bool = False) -> tuple[Callable[..., Any], dict[str, Any]]:
        """The client's method for `verb` (create, read, list, replace, delete, patch) on `resource`,
        and the keyword arguments that name the resource."""
        suffix = "_status" if status else ""
        if resource.typed:
            return getattr(self.typed[resource.group], f"{verb}_namespaced_{resource.typed}{suffix}"), {}
        verb = "get" if verb == "read" else verb
        return (getattr(self.custom, f"{verb}_namespaced_custom_object{suffix}"),
                {"group": resource.group, "version": resource.version, "plural": resource.plural})

    def _raw(self, call: Callable[[], Any]) -> Any:
        """The client's answer (an urllib3 response); typed errors, one retry after a 401 with reloaded credentials."""
        try:
            try:
                return call()
            except k8s.ApiException as error:
                if error.status != 401 or self.reload is None:
                    raise
                self.reload(self.configuration)
                return call()
        except k8s.ApiException as error:
            raise api_error(error) from None

    def call(self, resource: Resource, verb: str, *, status: bool = False, **kwargs: Any) -> Object:
        """One request whose answer is one JSON object, as a dict."""
        method, names = self._method(resource, verb, status=status)
        kwargs.setdefault("namespace", self.namespace)
        response = self._raw(lambda: method(**names, **kwargs, _preload_content=False,
                                            _request_timeout=REQUEST_TIMEOUT))
        data = response.data
        return json.loads(data) if data else {}

    # -- verbs -------------------------------------------------------------------------------------

    def get(self, resource: Resource, name: str) -> Object:
        """The object; NotFound (404) when there is none."""
        return self.call(resource, "read", name=name)

    def list_objects(self, resource: Resource, *, selector: str | None = None, namespace: str | None = None,
                     keep: Callable[[Object], Object] | None = None) -> Listing:
        """Every object of the collection matching the selector, page by page (limit/continue); of
        each, `keep(object)` when given (applied page by page: one page of whole objects at a time)."""
        extra: dict[str, Any] = {"label_selector": selector} if selector else {}
        items: list[Object] = []
        while True:
            page = self.call(resource, "list", limit=PAGE, namespace=namespace or self.namespace, **extra)
            items += [keep(item) for item in page.get("items") or []] if keep else page.get("items") or []
            meta = page.get("metadata") or {}
            if not meta.get("continue"):
                return Listing(items=items, resource_version=str(meta.get("resourceVersion") or ""))
            extra["_continue"] = meta["continue"]

    def create(self, resource: Resource, body: Object, *, namespace: str | None = None) -> Object:
        """The created object; Conflict (409, AlreadyExists) when the name is taken, Invalid (422) when refused."""
        return self.call(resource, "create", body=body, field_validation=STRICT, namespace=namespace or self.namespace)

    def replace(self, resource: Resource, body: Object) -> Object:
        """The stored object; Conflict (409) when metadata.resourceVersion is no longer the current one."""
        return self.call(resource, "replace", name=body["metadata"]["name"], body=body, field_validation=STRICT)

    def patch_status(self, resource: Resource, name: str, status: Object) -> Object:
        """Merge `status` into the object's status (JSON merge patch, RFC 7386, on the /status
        subresource: the spec is never touched; keys set to None are deleted, lists replaced whole)."""
        return self.call(resource, "patch", status=True, name=name, body={"status": status},
                         field_validation=STRICT, _content_type=MERGE_PATCH)

    def patch(self, resource: Resource, name: str, body: Object) -> Object:
        """Merge `body` into the object (JSON merge patch, RFC 7386; its status is not touched)."""
        return self.call(resource, "patch", name=name, body=body, field_validation=STRICT, _content_type=MERGE_PATCH)

    def delete(self, resource: Resource, name: str, *, propagation: str = "Background",
               missing_ok: bool = True) -> bool:
        """True when it was deleted now; False when it was already gone (NotFound unless missing_ok).
        Background: the object goes at once, the garbage collector removes its dependents afterwards."""
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": propagation}
        try:
            self.call(resource, "delete", name=name, body=body)
        except NotFound:
            if not missing_ok:
                raise
            return False
        return True

    def watch(self, resource: Resource, *, resource_version: str, selector: str | None = None,
              timeout_seconds: int = WATCH_SECONDS) -> Iterator[tuple[str, Object]]:
        """(type, object) for each change after `resource_version` (ADDED, MODIFIED, DELETED, BOOKMARK),
        until the server ends the stream. Gone (410) when that version has been compacted away."""
        method, names = self._method(resource, "list")
        extra: dict[str, Any] = {"label_selector": selector} if selector else {}
        # return_type "object": each event's object stays the dict the server sent (no model classes)
        stream = Watch(return_type="object").stream(
            method, **names, namespace=self.namespace, resource_version=resource_version,
            allow_watch_bookmarks=True, timeout_seconds=timeout_seconds,
                                _request_timeout=(REQUEST_TIMEOUT[0], timeout_seconds + 30), **extra)
        try:
            for event in stream:
                yield event["type"], event["raw_object"]
        except k8s.ApiException as error:
            if error.status == 401 and self.reload is not None:
                self.reload(self.configuration)  # for the informer's next watch
            raise api_error(error) from None

    def attempts(self, job: str) -> list[Object]:
        """The pods of the Job named `job` (this Job, not an earlier one of the same name), oldest first."""
        uid = self.get(JOBS, job)["metadata"]["uid"]
        pods = self.list_objects(PODS, selector=label_selector({CONTROLLER_UID: uid})).items
        return sorted(pods, key=lambda p: (p["metadata"].get("creationTimestamp") or "", p["metadata"]["name"]))

    def log_lines(self, pod: Object, *, follow: bool) -> Iterator[bytes]:
        """The pod's log (its first container: a tp4 Job has one), line by line, as the server flushes it."""
        meta = pod["metadata"]
        response = self._raw(lambda: self.core.read_namespaced_pod_log(
            name=meta["name"], namespace=meta.get("namespace") or self.namespace,
            container=pod["spec"]["containers"][0]["name"], follow=follow, _preload_content=False,
            _request_timeout=(REQUEST_TIMEOUT[0], FOLLOW_READ_SECONDS)))
        pending = b""
        try:
            for chunk in response.stream(decode_content=True):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                yield from lines
            if pending:
                yield pending
        finally:
            response.release_conn()

    def record(self, *, about: Object, reason: str, message: str, warning: bool = False,
               now: datetime | None = None) -> Object:
        """A core/v1 Event about `about` (what `kubectl describe grid` shows under Events)."""
        body = event_body(about=about, reason=reason, message=message, warning=warning,
                          now=now or datetime.now(UTC))
        return self.create(EVENTS, body, namespace=about["metadata"].get("namespace"))


def event_body(*, about: Object, reason: str, message: str, warning: bool, now: datetime) -> Object:
    meta = about["metadata"]
    stamp = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": f"{meta['name']}.{uuid.uuid4().hex[:16]}", "namespace": meta.get("namespace")},
        "involvedObject": {"apiVersion": about["apiVersion"], "kind": about["kind"], "name": meta["name"],
                           "namespace": meta.get("namespace"), "uid": meta.get("uid"),
                           "resourceVersion": meta.get("resourceVersion")},
        "reason": reason, "message": message[:1024], "type": "Warning" if warning else "Normal",
        "source": {"component": COMPONENT}, "reportingComponent": COMPONENT,
        "firstTimestamp": stamp, "lastTimestamp": stamp, "count": 1,
    }


# --- configuration ----------------------------------------------------------------------------

def connect(*, kubeconfig: str | None = None, context: str | None = None, namespace: str | None = None,
            env: Mapping[str, str] | None = None) -> Kube:
    """The kubeconfig named, else the files of $KUBECONFIG (merged), else ~/.kube/config; in a pod
    without any, the service account. InvalidInput when none can be used."""
    env = os.environ if env is None else env
    listed = kubeconfig or env.get("KUBECONFIG") or ""
    files = [p for p in listed.split(os.pathsep) if p and Path(p).expanduser().is_file()]
    if not files and not kubeconfig:
        default = Path(env.get("HOME") or Path.home()) / ".kube" / "config"
        files = [str(default)] if default.is_file() else []
    if not files and env.get("KUBERNETES_SERVICE_HOST") and not kubeconfig:
        return in_cluster(namespace=namespace, env=env)
    if not files:
        raise _problem("kubeconfig", f"no such file: {kubeconfig}" if kubeconfig else
                       "no kubeconfig ($KUBECONFIG, ~/.kube/config) and not in a pod: "
                       "pass --kubeconfig or point KUBECONFIG at the cluster's")
    return from_kubeconfig(paths=files, context=context, namespace=namespace)


def from_kubeconfig(*, paths: list[str], context: str | None = None, namespace: str | None = None) -> Kube:
    """The context named (or the current one) of the files merged as kubectl merges them: the first
    file that sets a value wins (an entry of a given name, and current-context: the client's merger
    lets the last file's current-context win, so it is chosen here)."""
    joined = os.pathsep.join(paths)
    try:
        merger = KubeConfigMerger(joined)
        entries = [getattr(c, "value", c) for c in merger.config.value.get("contexts") or []]  # ConfigNodes
        contexts = {c["name"]: getattr(c.get("context"), "value", c.get("context")) or {} for c in entries}
        current = [f["current-context"] for f in merger.config_files.values() if f.get("current-context")]
        name = context or (current[0] if current else None)
    except (OSError, ValueError, k8s_config.ConfigException) as error:
        raise _problem(joined, f"cannot read the kubeconfig: {error}") from error
    if not name:
        raise _problem(joined, "no current-context: pass --context")
    if name not in contexts:
        raise _problem(joined, f"no context named {name!r} (contexts: {', '.join(sorted(contexts)) or 'none'})")

    def load(configuration: k8s.Configuration) -> None:
        k8s_config.load_kube_config(config_file=joined, context=name, client_configuration=configuration,
                                    persist_config=False)
        _trim_tokens(configuration)

    configuration = k8s.Configuration()
    try:
        load(configuration)
    except (OSError, ValueError, KeyError, k8s_config.ConfigException) as error:
        raise _problem(joined, f"context {name!r} cannot be used: {error}") from error
    return Kube(configuration=configuration, namespace=namespace or contexts[name].get("namespace") or "default",
                reload=load)


def _trim_tokens(configuration: k8s.Configuration) -> None:
    """A token file's trailing newline is not part of the token (kubectl trims it; the client keeps it
    and sends it in the Authorization header). Also after each refresh, which sets the token again."""
    refresh = configuration.refresh_api_key_hook

    def trimmed(target: k8s.Configuration) -> None:
        if refresh is not None:
            refresh(target)
        target.api_key = {key: value.strip() for key, value in target.api_key.items()}

    trimmed(configuration)
    configuration.refresh_api_key_hook = trimmed


def in_cluster(*, namespace: str | None = None, env: Mapping[str, str] | None = None,
               account: Path = SERVICE_ACCOUNT) -> Kube:
    """The pod's service account: KUBERNETES_SERVICE_HOST/PORT, its token (re-read as kubelet rotates
    it), CA and namespace."""
    environ = dict(os.environ if env is None else env)

    def load(configuration: k8s.Configuration) -> None:
        InClusterConfigLoader(token_filename=str(account / Path(SERVICE_TOKEN_FILENAME).name),
                              cert_filename=str(account / Path(SERVICE_CERT_FILENAME).name),
                              environ=environ).load_and_set(configuration)

    configuration = k8s.Configuration()
    try:
        load(configuration)
    except (OSError, k8s_config.ConfigException) as error:
        raise _problem("service account", f"cannot be used: {error}") from error
    own = account / "namespace"
    return Kube(configuration=configuration, reload=load,
                namespace=namespace or (own.read_text().strip() if own.is_file() else "default"))


def _problem(where: str, message: str) -> InvalidInput:
    return InvalidInput([Problem(where, message)])
