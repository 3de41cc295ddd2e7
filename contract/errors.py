"""Bad input, as every part of tp4 reports it: each problem with its location, all at once (exit code 2)."""

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
