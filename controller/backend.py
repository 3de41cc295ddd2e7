"""Where grids run, as the CLI sees it: one interface for the embedded local executor and a Kubernetes cluster.

The CLI parses the command line, opens one Backend (`open_backend`) and calls one of its verbs; each verb
returns the process exit code, or raises contract.errors.InvalidInput (exit code 2) before anything starts.
The cluster backend is imported only when asked for, so a local run never loads the Kubernetes client.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from rich.console import Console

from contract.grid import DEFAULT_MAX_POINTS

BACKENDS = ("local", "kubernetes")


class Backend(Protocol):
    """The verbs `python -m controller` offers, whichever backend runs the grids."""

    name: str

    def submit_grid(self, *, grid_path: Path, weights: str | None, parallelism: int | None, wait: bool,
                    console: Console, max_points: int = DEFAULT_MAX_POINTS) -> int:
        """Run every point of the grid file, then its finalizer (wait=False: return once it is submitted);
        a grid of more than `max_points` points is refused before anything starts."""
        ...

    def show_status(self, *, grid: str | None, console: Console, output: str | None = None,
                    show_obsolete: bool = False) -> int:
        """A table of a grid's points (grid: a name or a grid file; None: every grid), or the same rows as
        `output` (controller.output.OUTPUTS: json, yaml, wide, name). Jobs of an earlier submission that the
        grid no longer has are left out unless `show_obsolete` (then marked). NotFound (exit 1): no such grid."""
        ...

    def show_logs(self, *, job: str, follow: bool, attempt: int | None) -> int:
        """A Job attempt's log on stdout (job: NAME or job/NAME; attempt: 1-based; None: the latest).
        NotFound (exit 1): no such Job; InvalidInput (exit 2): no such attempt."""
        ...

    def show_report(self, *, grid: str, console: Console) -> int:
        """The decision summary of a finished grid and where its report is."""
        ...

    def delete_grid(self, *, grid: str, console: Console, purge_runs: bool = False) -> int:
        """Delete a grid and its Jobs, running ones stopped (its MLflow runs stay unless `purge_runs`).
        NotFound (exit 1): no such grid."""
        ...

    def finalize_grid(self, *, grid: str, wait: bool, console: Console) -> int:
        """Run the finalizer of the grid's latest submission again, on the same runs, and print the decision
        line (wait=False: return once it is started, a cluster only)."""
        ...

    def run_controller(self) -> int:
        """The reconcile loop that a cluster's controller Deployment runs."""
        ...


def open_backend(*, kind: str, root: Path, namespace: str | None = None, kubeconfig: str | None = None,
                 context: str | None = None) -> Backend:
    """The backend `kind` ("local" or "kubernetes") for the project folder `root`."""
    if kind == "kubernetes":
        from controller.cluster.backend import ClusterBackend

        return ClusterBackend.connect(root=root, namespace=namespace, kubeconfig=kubeconfig, context=context)
    from controller.local.backend import LocalBackend

    return LocalBackend(root=root)
