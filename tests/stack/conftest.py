"""The stack fixtures (tests/helpers/stackfixtures.py) for every module here: `stack` (one per module;
`STACK_AUTH = True` in a module for MLflow's basic-auth app) and `published`."""

from tests.helpers.stackfixtures import published, stack  # noqa: F401
