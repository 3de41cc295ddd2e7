"""Errors the controller reports to the user."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the input, and where it is."""

    location: str  # e.g. "grid.yaml: axes.imgsz[1]"
    message: str

    def __str__(self) -> str:
        return f"{self.location}: {self.message}"


class InvalidInput(Exception):
    """Bad input: every problem found, reported at once (exit code 2)."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class NameClash(Exception):
    """A Job name is already used by another grid."""
