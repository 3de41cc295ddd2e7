"""Where the API server is and who we are to it: a kubeconfig file, or the pod's service account.

Supported, as kubectl reads them: `current-context` or a named context; the
cluster's `server`, `certificate-authority(-data)`, `insecure-skip-tls-verify`
and `proxy-url`; the user's `token`, `tokenFile`, `client-certificate(-data)`
+ `client-key(-data)`, and `exec` credential plugins (client.authentication
.k8s.io v1 and v1beta1, token output; the token is cached until its
expirationTimestamp). The legacy `auth-provider` plugins (removed in kubectl
1.26) are refused with a message. In a pod: KUBERNETES_SERVICE_HOST/PORT and
the mounted service account, whose token is re-read every minute (kubelet
rotates bound tokens).
"""

from __future__ import annotations

import atexit
import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

import yaml

from controller.errors import InvalidInput, Problem

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
TOKEN_REREAD_SECONDS = 60.0
EXEC_TIMEOUT_SECONDS = 60.0


@dataclass(frozen=True)
class Connection:
    """Everything `requests` needs to talk to one API server as one user."""

    server: str
    namespace: str
    verify: bool | str = True  # a CA bundle path, or False (insecure-skip-tls-verify)
    cert: tuple[str, str] | None = None  # client certificate and key files
    token: Callable[[], str | None] = field(default=lambda: None)
    proxy: str | None = None


def connect(*, kubeconfig: str | None = None, context: str | None = None, namespace: str | None = None,
            env: dict[str, str] | None = None) -> Connection:
    """The kubeconfig named or in $KUBECONFIG / ~/.kube/config; in a pod without one, the service account."""
    env = dict(os.environ) if env is None else env
    path = kubeconfig or _kubeconfig_path(env)
    if path is None and env.get("KUBERNETES_SERVICE_HOST"):
        return in_cluster(namespace=namespace, env=env)
    if path is None:
        raise _problem("kubeconfig", "no kubeconfig ($KUBECONFIG, ~/.kube/config) and not in a pod: "
                       "pass --kubeconfig or point KUBECONFIG at the cluster's")
    return from_kubeconfig(path=Path(path), context=context, namespace=namespace)


def _kubeconfig_path(env: dict[str, str]) -> str | None:
    for candidate in (env.get("KUBECONFIG") or "").split(os.pathsep):
        if candidate and Path(candidate).is_file():
            return candidate  # the first file of a list: tp4 does not merge kubeconfigs
    default = Path(env.get("HOME", str(Path.home()))) / ".kube" / "config"
    return str(default) if default.is_file() else None


def in_cluster(*, namespace: str | None = None, env: dict[str, str] | None = None,
               account: Path = SERVICE_ACCOUNT) -> Connection:
    env = dict(os.environ) if env is None else env
    host, port = env["KUBERNETES_SERVICE_HOST"], env.get("KUBERNETES_SERVICE_PORT", "443")
    host = f"[{host}]" if ":" in host else host  # IPv6 service address
    own = (account / "namespace").read_text().strip() if (account / "namespace").is_file() else "default"
    return Connection(server=f"https://{host}:{port}", namespace=namespace or own,
                      verify=str(account / "ca.crt"), token=FileToken(path=account / "token"))


class FileToken:
    """A token file, read again once it is a minute old."""

    def __init__(self, *, path: Path) -> None:
        self.path, self.value, self.read_at = path, "", float("-inf")

    def __call__(self) -> str | None:
        if time.monotonic() - self.read_at > TOKEN_REREAD_SECONDS:
            self.value, self.read_at = self.path.read_text().strip(), time.monotonic()
        return self.value or None


def from_kubeconfig(*, path: Path, context: str | None = None, namespace: str | None = None) -> Connection:
    try:
        config = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as error:
        raise _problem(str(path), f"cannot read the kubeconfig: {error}") from error
    name = context or config.get("current-context")
    if not name:
        raise _problem(str(path), "no current-context: pass --context")
    ctx = _named(config, "contexts", name, path)["context"]
    cluster = _named(config, "clusters", ctx["cluster"], path)["cluster"]
    user = (_named(config, "users", ctx["user"], path).get("user") or {}) if ctx.get("user") else {}
    base = path.parent
    return Connection(server=cluster["server"].rstrip("/"), namespace=namespace or ctx.get("namespace") or "default",
                      verify=_verify(cluster, base), cert=_client_cert(user, base),
                      token=_token(user, base, path), proxy=cluster.get("proxy-url"))


def _named(config: dict[str, Any], section: str, name: str, path: Path) -> dict[str, Any]:
    for entry in config.get(section) or []:
        if entry.get("name") == name:
            return entry
    raise _problem(str(path), f"no {section[:-1]} named {name!r}")


def _verify(cluster: dict[str, Any], base: Path) -> bool | str:
    if cluster.get("insecure-skip-tls-verify"):
        return False
    if data := cluster.get("certificate-authority-data"):
        return _data_file(data, "ca.crt")
    if file := cluster.get("certificate-authority"):
        return str(base / file)
    return True


def _client_cert(user: dict[str, Any], base: Path) -> tuple[str, str] | None:
    if data := user.get("client-certificate-data"):
        return _data_file(data, "client.crt"), _data_file(user["client-key-data"], "client.key")
    if file := user.get("client-certificate"):
        return str(base / file), str(base / user["client-key"])
    return None


def _token(user: dict[str, Any], base: Path, path: Path) -> Callable[[], str | None]:
    if "auth-provider" in user:
        raise _problem(str(path), f"auth-provider {user['auth-provider'].get('name')!r} is not supported "
                       "(kubectl dropped it in 1.26): use the provider's exec plugin")
    if token := user.get("token"):
        return lambda: token
    if file := user.get("tokenFile"):
        return FileToken(path=base / file)
    if plugin := user.get("exec"):
        return ExecToken(spec=plugin)
    return lambda: None


class ExecToken:
    """An exec credential plugin's token, run again when it expires."""

    def __init__(self, *, spec: dict[str, Any]) -> None:
        self.spec, self.value, self.expires = spec, "", 0.0

    def __call__(self) -> str | None:
        if not self.value or time.time() >= self.expires - 10:
            self.value, self.expires = self._run()
        return self.value

    def _run(self) -> tuple[str, float]:
        env = {**os.environ, **{e["name"]: e["value"] for e in self.spec.get("env") or []},
               "KUBERNETES_EXEC_INFO": json.dumps({"apiVersion": self.spec.get("apiVersion"),
                                                   "kind": "ExecCredential", "spec": {"interactive": False}})}
        done = subprocess.run([self.spec["command"], *(self.spec.get("args") or [])], env=env, capture_output=True,
                              text=True, timeout=EXEC_TIMEOUT_SECONDS, check=False)
        if done.returncode != 0:
            raise _problem("kubeconfig exec", f"{self.spec['command']} exited {done.returncode}: {done.stderr[-500:]}")
        status = json.loads(done.stdout).get("status") or {}
        if not status.get("token"):
            raise _problem("kubeconfig exec", f"{self.spec['command']} returned no token "
                           "(client certificates from exec plugins are not supported)")
        expiry = status.get("expirationTimestamp")
        expires = datetime.fromisoformat(expiry.replace("Z", "+00:00")).timestamp() if expiry else float("inf")
        return status["token"], expires


_DATA_DIR: list[Path] = []


def _data_file(data: str, name: str) -> str:
    """kubeconfig's inline *-data as a private file (requests and ssl take paths), removed at exit."""
    if not _DATA_DIR:
        _DATA_DIR.append(Path(tempfile.mkdtemp(prefix="tp4-kube-")))
        atexit.register(shutil.rmtree, _DATA_DIR[0], ignore_errors=True)
    target = _DATA_DIR[0] / f"{len(list(_DATA_DIR[0].iterdir()))}-{name}"
    target.write_bytes(base64.b64decode(data))
    target.chmod(0o600)
    return str(target)


def _problem(where: str, message: str) -> InvalidInput:
    return InvalidInput([Problem(where, message)])
