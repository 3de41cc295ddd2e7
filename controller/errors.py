"""Errors the controller reports to the user (bad input itself is contract.errors')."""

from __future__ import annotations

from contract.errors import InvalidInput, Problem

__all__ = ["InvalidInput", "NameClash", "Problem"]


class NameClash(Exception):
    """A Job name is already used by another grid."""
