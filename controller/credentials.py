"""Credentials never travel inside a tracking URI: the controller refuses such a URI before anything starts.

The rule and its message are contract.credentials' (the Jobs apply the same one). Pure: no I/O.
"""

from __future__ import annotations

import contract
from contract.credentials import credentials_problem
from contract.errors import InvalidInput


def refuse_credentials_in_uri(uri: str, *, variable: str = contract.ENV_TRACKING_URI) -> None:
    """Raise `InvalidInput` (exit code 2) when `uri` carries credentials before its host
    (contract.credentials.credentials_problem, located at `variable`); None otherwise."""
    problem = credentials_problem(uri, variable=variable)
    if problem is not None:
        raise InvalidInput([problem])
