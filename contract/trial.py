"""A search's trial, as the controller records it on the parent run for a restarted controller and the finalizer.

Tag `contract.TAG_TRIAL_PREFIX + <point name>` = JSON {"number", "params", "phase", "spec_hash"}: `number` the
trial's 0-based order, `params` the point's axis values, `phase` contract.PHASE_SEARCH or PHASE_CONFIRM,
`spec_hash` contract.spec_hash of the point's spec. `TrialTag.tag` is the one encoder; `decode_trial` the
one decoder (strict: ValueError naming what is wrong); `trial_tags` reads every trial of a run's tags.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from contract import PHASE_CONFIRM, PHASE_SEARCH, TAG_TRIAL_PREFIX

PHASES = (PHASE_SEARCH, PHASE_CONFIRM)
SHAPE = "JSON {number, params, phase, spec_hash}"


@dataclass(frozen=True)
class TrialTag:
    """One trial: its point's `name`, `number`, `params`, `phase` and `spec_hash`."""

    name: str
    number: int
    params: dict[str, Any]
    phase: str
    spec_hash: str

    def tag(self) -> tuple[str, str]:
        """(key, value) of the parent run's tag."""
        return TAG_TRIAL_PREFIX + self.name, json.dumps(
            {"number": self.number, "params": self.params, "phase": self.phase, "spec_hash": self.spec_hash},
            sort_keys=True)


def decode_trial(key: str, value: str) -> TrialTag:
    """The trial of tag `key` = `value`; ValueError (naming the tag and the shape) when it is not one."""
    name = key.removeprefix(TAG_TRIAL_PREFIX)
    try:
        data = json.loads(value)
        number, params, phase, spec_hash = data["number"], data["params"], data["phase"], data["spec_hash"]
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"tag {key}: must be {SHAPE}, got {value!r}") from error
    if not key.startswith(TAG_TRIAL_PREFIX) or not name or isinstance(number, bool) or not isinstance(number, int) \
            or not isinstance(params, Mapping) or phase not in PHASES or not isinstance(spec_hash, str):
        raise ValueError(f"tag {key}: must be {SHAPE}, got {value!r}")
    return TrialTag(name=name, number=number, params=dict(params), phase=phase, spec_hash=spec_hash)


def trial_tags(tags: Mapping[str, str]) -> tuple[list[TrialTag], list[str]]:
    """Every trial among a run's `tags`, by number then name, and the problems of the trial tags that do not
    decode (a reader decides whether they are fatal: the finalizer refuses them, a search skips them)."""
    found: list[TrialTag] = []
    problems: list[str] = []
    for key, value in tags.items():
        if not key.startswith(TAG_TRIAL_PREFIX):
            continue
        try:
            found.append(decode_trial(key, value))
        except ValueError as error:
            problems.append(str(error))
    return sorted(found, key=lambda t: (t.number, t.name)), problems
