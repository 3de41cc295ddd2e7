"""What "better" means for a grid's objective: one definition for the controller and the finalizer (pure).

A value is better when it is larger (direction "maximize") or smaller
("minimize"). Values equal to TIE_DIGITS decimals are a tie (float noise must
not decide a ranking); a missing or non-finite value is worse than any
finite one. Callers break ties their own, documented way.
"""

from __future__ import annotations

import math
from typing import Literal

Direction = Literal["maximize", "minimize"]
DIRECTIONS: tuple[Direction, ...] = ("maximize", "minimize")
# Means equal to this many decimals are a tie.
TIE_DIGITS = 12


def sign(direction: Direction) -> float:
    """+1.0 when a higher value is better, -1.0 when a lower one is."""
    return 1.0 if direction == "maximize" else -1.0


def objective_key(value: float | None, direction: Direction) -> float:
    """A sort key: the smaller the key, the better the value. None, NaN and infinities sort last (+inf)."""
    if value is None or not math.isfinite(value):
        return math.inf
    return -sign(direction) * round(value, TIE_DIGITS)


def better(candidate: float | None, incumbent: float | None, direction: Direction) -> bool:
    """True when `candidate` is strictly better than `incumbent` (a tie is not better)."""
    return objective_key(candidate, direction) < objective_key(incumbent, direction)
