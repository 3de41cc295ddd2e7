"""decision.json as the controller reads it: the one typed reader of the finalizer's summary.

jobs.finalize writes reports/<grid>/decision.json (and the same file as the parent run's artifact
report/decision.json). The controller reads only the fields below; every other key is ignored, and
every field the controller reads is optional, so that a file written before a field existed (e.g.
`separation`, added with issue 19) still reads: an absent `separation` means "separation not
assessed", never "separated".
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from contract.errors import InvalidInput, Problem

DECISION_JSON = "decision.json"
DECISION_MD = "decision.md"

VERDICT_YES, VERDICT_NO = "YES", "NO"
# separation.outcome (shapes of issue 19): the two best configurations' difference interval excludes 0
# ("winner"), includes it ("tie": the tie rule decided), there is no runner-up ("alone"), or too few
# configurations have >= 2 distinct seeds for an interval ("insufficient").
OUTCOME_WINNER, OUTCOME_TIE, OUTCOME_ALONE, OUTCOME_INSUFFICIENT = "winner", "tie", "alone", "insufficient"


class _Read(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Objective(_Read):
    metric: str = ""
    direction: str = ""


class Verdict(_Read):
    verdict: str = "?"  # "YES" or "NO"
    promote: bool = False
    failed_gates: tuple[str, ...] = ()


class SplitValues(_Read):
    """One metric of the candidate run: its value on the val and test splits (None: not measured)."""

    val: float | None = None
    test: float | None = None


class Candidate(_Read):
    run_id: str | None = None
    point: str | None = None  # the grid point (Job) name, e.g. train-320-0.01-42
    configuration: str | None = None  # the configuration's label across seeds, e.g. "imgsz=320, lr0=0.01"
    metrics: dict[str, SplitValues] = Field(default_factory=dict)

    @property
    def label(self) -> str:
        """The run's grid point (the model promoted comes from it), else its configuration; "" when neither
        is known."""
        return self.point or self.configuration or ""


class Registry(_Read):
    name: str | None = None
    version: str | int | None = None
    champion_moved: bool = False


class Flag(_Read):
    code: str = ""
    data: dict[str, Any] = Field(default_factory=dict)


class Separation(_Read):
    """Whether the data separates the candidate's configuration from the runner-up (decision.json
    `separation`): `confidence` in (0, 1); `tie_rule` one of best, cheaper, faster, no."""

    phase: str | None = None  # "grid" or "confirm"
    confidence: float | None = None
    tie_rule: str | None = None
    outcome: str | None = None
    separated: bool = False
    promotable: bool | None = None
    chosen: str | None = None
    seeds_needed: int | None = None
    headline: str | None = None


class Decision(_Read):
    """The part of decision.json the controller shows (`report`, the decision line)."""

    grid: str | None = None
    objective: Objective = Objective()
    decision: Verdict = Verdict()
    candidate: Candidate | None = None
    registry: Registry | None = None
    flags: tuple[Flag, ...] = ()
    separation: Separation | None = None  # None: written before separation existed, not assessed

    @property
    def verdict(self) -> str:
        return self.decision.verdict


def parse_decision(raw: Any, *, source: str) -> Decision:
    """decision.json's data (`raw`, parsed JSON) as a Decision; `source` names where it was read, for
    messages. InvalidInput (exit 2) naming each field of the wrong type."""
    if not isinstance(raw, dict):
        raise InvalidInput([Problem(source, f"must be a JSON object, got {type(raw).__name__}")])
    try:
        return Decision.model_validate(raw)
    except ValidationError as error:
        raise InvalidInput([Problem(f"{source}: {'.'.join(str(p) for p in e['loc'])}", e["msg"])
                            for e in error.errors()]) from error


def read_decision(path: Path) -> Decision:
    """reports/<grid>/decision.json (or a downloaded copy) at `path`; InvalidInput (exit 2) when it
    cannot be read, is not JSON, or a field the controller reads has the wrong type."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise InvalidInput([Problem(str(path), f"cannot be read: {error.strerror or error}")]) from error
    try:
        raw = json.loads(text)
    except ValueError as error:
        raise InvalidInput([Problem(str(path), f"not valid JSON: {error}")]) from error
    return parse_decision(raw, source=str(path))
