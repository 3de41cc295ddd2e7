"""Grids on a Kubernetes cluster: Grid resources that the cluster's controller turns into Jobs."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from contract.errors import InvalidInput, Problem
from contract.grid import DEFAULT_MAX_POINTS
from controller.cluster import commands


@dataclass
class ClusterBackend:
    """controller.backend.Backend for one namespace of the cluster `api` reaches."""

    api: commands.Kube
    root: Path
    name: str = "kubernetes"

    @classmethod
    def connect(cls, *, root: Path, namespace: str | None, kubeconfig: str | None,
                context: str | None) -> ClusterBackend:
        """Read the kubeconfig (or the pod's service account); InvalidInput when it cannot be used."""
        return cls(api=commands.open_api(kubeconfig=kubeconfig, context=context, namespace=namespace), root=root)

    @contextmanager
    def _reaching(self) -> Iterator[None]:
        try:
            yield
        except commands.UNREACHABLE as error:
            raise InvalidInput([Problem(f"the API server {commands.server_of(self.api)}", str(error))]) from error

    def _call(self, verb: Callable[[], int]) -> int:
        with self._reaching():
            return verb()

    def submit_grid(self, *, grid_path: Path, weights: str | None, parallelism: int | None, wait: bool,
                    console: Console, max_points: int = DEFAULT_MAX_POINTS) -> int:
        return self._call(lambda: commands.submit_grid(api=self.api, grid_path=grid_path, weights=weights,
                                                       parallelism=parallelism, wait=wait, console=console,
                                                       max_points=max_points))

    def show_status(self, *, grid: str | None, console: Console, output: str | None = None,
                    show_obsolete: bool = False) -> int:
        return self._call(lambda: commands.show_status(api=self.api, grid=grid, console=console, output=output,
                                                       show_obsolete=show_obsolete))

    def show_logs(self, *, job: str, follow: bool, attempt: int | None) -> int:
        return self._call(lambda: commands.show_logs(api=self.api, job=job, follow=follow, attempt=attempt))

    def show_report(self, *, grid: str, console: Console) -> int:
        return self._call(lambda: commands.show_report(api=self.api, grid=grid, console=console))

    def delete_grid(self, *, grid: str, console: Console, purge_runs: bool = False) -> int:
        return self._call(lambda: commands.delete_grid(api=self.api, grid=grid, console=console,
                                                       purge_runs=purge_runs))

    def finalize_grid(self, *, grid: str, wait: bool, console: Console) -> int:
        return self._call(lambda: commands.finalize_grid(api=self.api, grid=grid, wait=wait, console=console))

    def run_controller(self) -> int:
        return self._call(lambda: commands.run_controller(api=self.api, root=self.root))
