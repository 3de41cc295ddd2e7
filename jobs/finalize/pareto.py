"""Two objectives (`objective.second`): the Pareto front of the configurations' means, and the pick (pure).

A configuration is on the front when no other one is at least as good on both objectives and strictly
better on one. The front is drawn from the configurations that meet the constraints (the others can never
be promoted). The rule: among the front's configurations whose first objective is within `tolerance`
(absolute, in the first objective's unit) of the best first objective, the one with the best `second`
(ties: the better first objective, then the ranking's order).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from contract.objective import Direction, objective_key, sign
from jobs.finalize.configs import ConfigSummary

PLOT = "pareto_front.png"  # plots/ file (jobs.finalize.plotting)
EPSILON = 1e-12  # float noise: a configuration exactly `tolerance` away is within it


def dominates(a: tuple[float, float], b: tuple[float, float], *, signs: tuple[float, float]) -> bool:
    """True when `a` is at least as good as `b` on both objectives and strictly better on one."""
    ga = [s * v for s, v in zip(signs, a, strict=True)]
    gb = [s * v for s, v in zip(signs, b, strict=True)]
    return all(x >= y for x, y in zip(ga, gb, strict=True)) and any(x > y for x, y in zip(ga, gb, strict=True))


def pareto_front(values: Sequence[tuple[float, float]], *, signs: tuple[float, float]) -> list[int]:
    """The indices of the non-dominated points, in input order; a point with a non-finite value never is one.
    `signs`: +1 where higher is better, -1 where lower is."""
    finite = [i for i, v in enumerate(values) if all(map(math.isfinite, v))]
    return [i for i in finite if not any(dominates(values[j], values[i], signs=signs) for j in finite if j != i)]


@dataclass(frozen=True)
class ParetoPoint:
    config: ConfigSummary
    first: float  # the configuration's mean of the first objective
    second: float  # ... and of the second
    eligible: bool  # meets the constraints (rank is not None)
    on_front: bool
    within: bool  # on the front and within `tolerance` of the best first objective


@dataclass(frozen=True)
class ParetoChoice:
    first_metric: str
    first_direction: Direction
    metric: str  # the second objective
    direction: Direction
    tolerance: float
    points: tuple[ParetoPoint, ...]  # every configuration, in the ranking's order
    best_first: float  # the best first objective on the front (NaN when the front is empty)
    chosen: ConfigSummary | None  # None when no configuration has both objectives and meets the constraints

    @property
    def front(self) -> tuple[ParetoPoint, ...]:
        """The front, from the best first objective to the worst."""
        return tuple(sorted((p for p in self.points if p.on_front),
                            key=lambda p: objective_key(p.first, self.first_direction)))


def pareto_choice(*, configs: Sequence[ConfigSummary], objective: str, direction: Direction, second: str,
                  second_direction: Direction, tolerance: float) -> ParetoChoice:
    signs = (sign(direction), sign(second_direction))
    values = [(c.stat(objective).mean, c.stat(second).mean) for c in configs]
    eligible = [i for i, c in enumerate(configs) if c.rank is not None]
    front = {eligible[k] for k in pareto_front([values[i] for i in eligible], signs=signs)}
    best_first = min((values[i][0] for i in front), key=lambda v: objective_key(v, direction), default=math.nan)
    within = {i for i in front if signs[0] * (values[i][0] - best_first) >= -tolerance - EPSILON}
    points = tuple(ParetoPoint(config=c, first=values[i][0], second=values[i][1], eligible=c.rank is not None,
                               on_front=i in front, within=i in within) for i, c in enumerate(configs))

    def key(i: int) -> tuple[float, float, int]:
        return (objective_key(values[i][1], second_direction), objective_key(values[i][0], direction),
                configs[i].rank or 0)

    chosen = configs[min(within, key=key)] if within else None
    return ParetoChoice(first_metric=objective, first_direction=direction, metric=second,
                        direction=second_direction, tolerance=tolerance, points=points, best_first=best_first,
                        chosen=chosen)
