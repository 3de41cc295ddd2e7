"""The finalizer's warnings (decision.json `flags`, jobs/finalize/flags.py) in plain English, one sentence each,
as a terminal shows them (`python -m controller report`); the report's own wording, in Markdown and in each
report language, is its template's `flag` macro (reports/templates/decision_template*.md).

Pure and a leaf: the controller reads these words without importing the finalizer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any


def _values(values: Any) -> str:
    if isinstance(values, Sequence) and not isinstance(values, str):
        return ", ".join(str(v) for v in values)
    return str(values)


def _pct(value: Any) -> str:
    try:
        return f"{float(value) * 100:.0f} %"
    except (TypeError, ValueError):
        return str(value)


def _axis_no_effect(d: Mapping[str, Any]) -> str:
    axis = d.get("axis", "an axis")
    check = (f"check that the optimizer uses it (optimizer=auto ignores lr0 and momentum; this grid's optimizer: "
             f"{d.get('optimizer') or 'not set'})" if d.get("optimizer_hint")
             else "check that the argument reaches the trainer")
    return (f"{axis} changed nothing: runs that differ only in {axis} ({_values(d.get('axis_values', []))}) "
            f"gave identical metrics; {check}")


def _seed_no_effect(d: Mapping[str, Any]) -> str:
    return (f"the seed changed nothing: seeds {_values(d.get('axis_values', []))} gave identical metrics, so the "
            "spread between seeds cannot be measured; check that the seed reaches the trainer")


def _scratch(d: Mapping[str, Any]) -> str:
    return (f"{d.get('n', len(d.get('points', [])))} run(s) trained from scratch (no pretrained weights: "
            f"{_values(d.get('points', []))}): after a few epochs their metrics are close to noise")


def _single_seed(d: Mapping[str, Any]) -> str:
    return (f"one seed only for {'; '.join(str(c) for c in d.get('configs', []))}: no spread can be measured "
            "there, and its mean is a single run")


def _too_few_success(d: Mapping[str, Any]) -> str:
    stopped = f"; {d['n_stopped']} more stopped early on purpose (not counted)" if d.get("n_stopped") else ""
    return (f"too few successful points: {d.get('n_success')} of {d.get('n_points')} ({_pct(d.get('fraction'))}; "
            f"the gate asks for {_pct(d.get('required'))}){stopped}")


def _unranked(d: Mapping[str, Any]) -> str:
    statuses = d.get("statuses") or {}
    runs = ", ".join(f"{p} ({statuses[p]})" if p in statuses else str(p) for p in d.get("points", []))
    return f"runs not ranked: {runs}"


def _all_excluded(d: Mapping[str, Any]) -> str:
    return f"every configuration ({d.get('n_configs')}) breaks a constraint: there is nothing to promote"


WORDS: Mapping[str, Callable[[Mapping[str, Any]], str]] = {
    "axis_no_effect": _axis_no_effect, "seed_no_effect": _seed_no_effect, "scratch": _scratch,
    "single_seed": _single_seed, "too_few_success": _too_few_success, "unranked": _unranked,
    "all_excluded": _all_excluded,
}


def warning_sentence(code: str, data: Mapping[str, Any]) -> str:
    """One decision.json flag ({"code", "data"}) as a sentence, e.g. `lr0 changed nothing: runs that differ only
    in lr0 (0.005, 0.01) gave identical metrics; ...`. A code this module does not know (a newer finalizer) is
    shown as its code and data, `code (key=value, ...)`; data that does not fit the code's shape never raises."""
    words = WORDS.get(code)
    if words is not None:
        try:
            return words(data)
        except (AttributeError, KeyError, TypeError, ValueError):
            pass
    details = ", ".join(f"{k}={v}" for k, v in data.items())
    return code + (f" ({details})" if details else "")
