"""Credentials never travel inside a tracking URI.

A URI such as `http://user:password@mlflow:5000` would be rendered literally
into every Job manifest (and shown by `kubectl describe`, kept in the local
state, printed in logs). The credentials have their own variables,
`MLFLOW_TRACKING_USERNAME` and `MLFLOW_TRACKING_PASSWORD` (MLflow's own; the
chart passes them to the Jobs from a Secret), so a URI that carries any
(`user@`, `user:password@`, `:token@`) is refused before anything starts.
Pure: no I/O.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import contract
from contract.errors import InvalidInput, Problem


def _host(netloc: str) -> str:
    """The `host[:port]` part of a netloc (what follows the last `@`), never the credentials."""
    return netloc.rpartition("@")[2] or "(no host)"


def refuse_credentials_in_uri(uri: str, *, variable: str = contract.ENV_TRACKING_URI) -> None:
    """Raise `InvalidInput` (exit code 2) when `uri` carries credentials before its host.

    `uri`: a tracking URI of any scheme (`http(s)://`, `postgresql://`, `sqlite:///`, ...);
    `variable`: where it came from, named as the problem's location. The message names
    the host and the variables to use instead; it never repeats the user name or the
    password. Returns None for a URI without credentials (and for one without a host).
    """
    try:
        netloc = urlsplit(uri).netloc
    except ValueError:  # e.g. an unbalanced '[' in the host: MLflow's client reports it
        netloc = uri.partition("://")[2].partition("/")[0]
    if "@" not in netloc:
        return
    raise InvalidInput([Problem(variable, (
        f"the URI of host {_host(netloc)} carries credentials (user:password@host), which would be written "
        f"into every Job manifest and log: give the host alone in {variable}, and the credentials in "
        f"{contract.ENV_TRACKING_USERNAME} and {contract.ENV_TRACKING_PASSWORD} (on a cluster the chart "
        "passes them to the Jobs from a Secret)"))])
