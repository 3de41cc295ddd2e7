"""A local production-like stack for developers and tests.

Real servers on loopback ports, each on a free port: Postgres (the binaries
of the `pgserver` package), an S3 server (moto's threaded server, with IAM
users and per-bucket policies enforced) and `mlflow server` on Postgres with
proxied artifacts in S3 (optionally MLflow's basic-auth app). The same code
serves `python -m devstack up|down|env` and the pytest fixtures in
tests/stackfixtures.py. docs/production-stack.md has the details.
"""

from devstack.stack import Stack, StackConfig, running_stack, start_stack

__all__ = ["Stack", "StackConfig", "running_stack", "start_stack"]
