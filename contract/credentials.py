"""Credentials never travel inside a tracking URI: the one rule, for the controller and the Jobs alike (pure).

A URI such as `http://user:password@mlflow:5000` would be rendered literally
into every Job manifest (and shown by `kubectl describe`, kept in the local
state, printed in logs). The credentials have their own variables,
`MLFLOW_TRACKING_USERNAME` and `MLFLOW_TRACKING_PASSWORD` (MLflow's own; the
chart passes them to the Jobs from a Secret), so a URI that carries any
(`user@`, `user:password@`, `:token@`) is refused before anything starts.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import contract
from contract.errors import Problem


def _host(netloc: str) -> str:
    """The `host[:port]` part of a netloc (what follows the last `@`), never the credentials."""
    return netloc.rpartition("@")[2] or "(no host)"


def credentials_problem(uri: str, *, variable: str = contract.ENV_TRACKING_URI) -> Problem | None:
    """The problem with `uri` when it carries credentials before its host, else None.

    `uri`: a tracking URI of any scheme (`http(s)://`, `postgresql://`, `sqlite:///`, ...);
    `variable`: where it came from, the problem's location. The message names the host and the
    variables to use instead; it never repeats the user name or the password. None for a URI
    without credentials (and for one without a host).
    """
    try:
        netloc = urlsplit(uri).netloc
    except ValueError:  # e.g. an unbalanced '[' in the host: MLflow's client reports it
        netloc = uri.partition("://")[2].partition("/")[0]
    if "@" not in netloc:
        return None
    return Problem(variable, (
        f"the URI of host {_host(netloc)} carries credentials (user:password@host), which would be written "
        f"into every Job manifest and log: give the host alone in {variable}, and the credentials in "
        f"{contract.ENV_TRACKING_USERNAME} and {contract.ENV_TRACKING_PASSWORD} (on a cluster the chart "
        "passes them to the Jobs from a Secret)"))
