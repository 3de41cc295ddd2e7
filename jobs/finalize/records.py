"""What the finalizer knows about a grid point's run and about the current champion (pure data)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import contract
from jobs.finalize.champion import PairedComparison

FINISHED = "FINISHED"
MISSING = "MISSING"  # a point of grid.json with no train run at all


@dataclass(frozen=True)
class EvaluationStatus:
    """Whether the candidate (and the champion) were evaluated on the test split; `reason` says why not."""

    evaluated: bool
    reason: str | None = None  # why not, when not
    champion_evaluated: bool = False


@dataclass(frozen=True)
class RunRecord:
    """One grid point and the newest train run logged for it (if any)."""

    point: str
    params: Mapping[str, Any]  # the point's axis values, from grid.json
    status: str = MISSING  # MLflow run status, or MISSING
    run_id: str | None = None
    metrics: Mapping[str, float] = field(default_factory=dict)
    logged_params: Mapping[str, str] = field(default_factory=dict)
    weights_source: str | None = None
    weights: str | None = None  # what model.weights named (tag tp4.weights): a name, path or s3:// URI
    start_time: int = 0  # ms since the epoch
    url: str | None = None
    stopped_at: int | None = None  # the last epoch trained when the controller stopped it early (TAG_STOPPED_EARLY)
    phase: str | None = None  # contract.PHASE_SEARCH or PHASE_CONFIRM (the run's TAG_PHASE, else its trial's)
    number: int | None = None  # its trial's number (0-based), when the point was recorded as a trial

    def metric(self, name: str) -> float:
        value = self.metrics.get(name)
        return float(value) if value is not None else math.nan

    def test_metric(self, name: str) -> float:
        return self.metric(contract.TEST_PREFIX + name)

    @property
    def scratch(self) -> bool:
        return self.weights_source == "scratch"

    @property
    def stopped(self) -> bool:
        """FINISHED early at the controller's request (early_stopping): never ranked, never a candidate."""
        return self.status == FINISHED and self.stopped_at is not None

    @property
    def confirming(self) -> bool:
        return self.phase == contract.PHASE_CONFIRM

    @property
    def epochs_trained(self) -> float:
        """contract.METRIC_EPOCHS, else the epoch TAG_STOPPED_EARLY names; NaN when neither says."""
        value = self.metric(contract.METRIC_EPOCHS)
        if math.isfinite(value):
            return value
        return float(self.stopped_at) if self.stopped_at is not None else math.nan


# What of a champion alias's target is gone (ChampionInfo.missing), in the order it is checked.
MISSING_VERSION, MISSING_RUN, MISSING_ARTIFACTS, MISSING_WEIGHTS = "version", "run", "artifacts", "weights"
MISSING_WHAT = {MISSING_VERSION: "model version", MISSING_RUN: "run", MISSING_ARTIFACTS: "run's artifacts",
                MISSING_WEIGHTS: "run's weights"}


@dataclass(frozen=True)
class ChampionInfo:
    """The model version that holds the `champion` alias before this grid decides.

    `missing` says what of it is gone ("version" | "run" | "artifacts" | "weights", `detail` how it was found
    out): the decision proceeds as with no champion. `comparison` is the candidate against it on the same test
    images in this finalizer run; `not_compared` says why there is none (a short reason code).
    """

    version: str
    run_id: str | None
    metrics: Mapping[str, float] = field(default_factory=dict)
    dataset_md5: str | None = None
    model: str = ""  # the registered model's name
    alias: str = "champion"
    missing: str | None = None
    detail: str | None = None
    comparison: PairedComparison | None = None
    not_compared: str | None = None

    def metric(self, name: str) -> float:
        value = self.metrics.get(name)
        return float(value) if value is not None else math.nan

    @property
    def note(self) -> str | None:
        """One sentence naming the model, the alias and what is missing; None when nothing is."""
        if self.missing is None:
            return None
        what = MISSING_WHAT.get(self.missing, self.missing)
        run = f" (run {self.run_id})" if self.run_id and self.missing != MISSING_VERSION else ""
        why = f": {self.detail}" if self.detail else ""
        return (f"The alias @{self.alias} of model {self.model} points to version {self.version}{run}, whose {what} "
                f"is gone{why}; the decision proceeds as with no champion.")


def not_compared(champion: ChampionInfo | None, reason: str) -> ChampionInfo | None:
    """The champion, saying why it was not compared with the candidate in this run (unless it is gone)."""
    if champion is None or champion.missing is not None:
        return champion
    return dataclasses.replace(champion, not_compared=reason)
