"""The versions of the stack's servers, for the docs and the closing note of a test run."""

from __future__ import annotations

from importlib.metadata import version


def versions() -> dict[str, str]:
    from devstack.postgres import version as postgres_version

    return {"postgres": postgres_version().removeprefix("postgres (PostgreSQL) "),
            "pgserver": version("pgserver"), "mlflow": version("mlflow"), "moto": version("moto")}
