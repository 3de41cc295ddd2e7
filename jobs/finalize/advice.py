"""Risks, decision conditions and next steps, chosen from the grid's own results (pure).

Each item is a code with its data (a Flag); the report templates word it.
Risks are ranked by how much they threaten this particular decision and the
four most pressing are reported, as the lab's template asks.
"""

from __future__ import annotations

import math
from typing import Any

from jobs.finalize.effects import AxisEffect
from jobs.finalize.flags import Flag
from jobs.finalize.gates import Decision
from jobs.finalize.ranking import Ranking
from jobs.finalize.records import RunRecord

N_RISKS = 4
SHORT_TRAINING_EPOCHS = 10
MIN_SEEDS = 3  # fewer distinct seeds per configuration give no usable spread
MAX_PRACTICAL_SEEDS = 100  # a difference that needs more seeds than this is, for a lab, not there
PR_IMBALANCE = 0.2  # |precision - recall| above this: the confidence threshold is badly placed


def objective_gap(ranking: Ranking) -> float:
    """How far ahead of the runner-up the best configuration is (objective units, >= 0 when ahead)."""
    ranked = ranking.ranked
    if len(ranked) < 2:
        return math.nan
    objective = ranking.rules.spec.objective_metric
    return ranking.rules.sign * (ranked[0].stat(objective).mean - ranked[1].stat(objective).mean)


def risks(*, ranking: Ranking, candidate: RunRecord | None) -> list[Flag]:
    scored = [r for r in (
        _scratch_risk(ranking), _seed_risk(ranking), _small_data_risk(ranking),
        _pretraining_overlap_risk(ranking), _imbalance_risk(candidate), _test_risk(candidate),
        _failed_points_risk(ranking), _short_training_risk(ranking), _target_hardware_risk(candidate),
    ) if r is not None]
    scored.sort(key=lambda pair: pair[0])
    return [flag for _, flag in scored[:N_RISKS]]


def _scratch_risk(ranking: Ranking) -> tuple[float, Flag] | None:
    points = [r.point for c in ranking.configs for r in c.runs if r.scratch]
    return (0, Flag("scratch_weights", {"n": len(points), "points": points})) if points else None


def _seed_risk(ranking: Ranking) -> tuple[float, Flag]:
    gap, spread = objective_gap(ranking), ranking.seed_spread
    seeds = distinct_seeds(ranking)
    close = not math.isfinite(spread) or (math.isfinite(gap) and gap <= spread)
    return (1 if close else 3, Flag("seed_variance", {"gap": gap, "spread": spread, "seeds": seeds,
                                                      "close": close, "metric": ranking.rules.spec.objective_metric}))


def _small_data_risk(ranking: Ranking) -> tuple[float, Flag]:
    best = ranking.best
    std = best.stat(ranking.rules.spec.objective_metric).std if best else math.nan
    return (2, Flag("small_data", {"dataset": ranking.rules.spec.dataset_path, "std": std,
                                   "metric": ranking.rules.spec.objective_metric}))


def _pretraining_overlap_risk(ranking: Ranking) -> tuple[float, Flag] | None:
    pretrained = any(r.weights_source in ("pretrained", "path", "s3") for c in ranking.configs for r in c.runs)
    from_coco = "coco" in (ranking.rules.spec.dataset_path or "").lower()
    if not (pretrained and from_coco):
        return None
    spec = ranking.rules.spec
    return (2.5, Flag("pretraining_overlap", {"weights": spec.weights, "dataset": spec.dataset_path}))


def _imbalance_risk(candidate: RunRecord | None) -> tuple[float, Flag] | None:
    if candidate is None:
        return None
    precision, recall = candidate.metric("precision"), candidate.metric("recall")
    gap = abs(precision - recall) if math.isfinite(precision) and math.isfinite(recall) else math.nan
    severe = math.isfinite(gap) and gap > PR_IMBALANCE
    return (1.5 if severe else 4, Flag("class_imbalance", {"precision": precision, "recall": recall,
                                                           "severe": severe}))


def _test_risk(candidate: RunRecord | None) -> tuple[float, Flag] | None:
    if candidate is None or math.isfinite(candidate.test_metric("mAP50-95")):
        return None
    return (1.2, Flag("untested", {}))


def _failed_points_risk(ranking: Ranking) -> tuple[float, Flag] | None:
    if not ranking.unranked:
        return None
    return (2.2, Flag("failed_points", {"n": len(ranking.unranked), "n_points": ranking.n_points}))


def _short_training_risk(ranking: Ranking) -> tuple[float, Flag] | None:
    epochs = ranking.rules.spec.train.get("epochs")
    if not isinstance(epochs, int) or epochs > SHORT_TRAINING_EPOCHS:
        return None
    return (3.5, Flag("short_training", {"epochs": epochs}))


def _target_hardware_risk(candidate: RunRecord | None) -> tuple[float, Flag]:
    latency = candidate.metric("inference_ms_per_image") if candidate else math.nan
    return (5, Flag("target_hardware", {"latency_ms": latency}))


def conditions(*, ranking: Ranking, decision: Decision, candidate: RunRecord | None) -> list[Flag]:
    """On YES, what the promotion is conditional on; on NO, what would change the answer."""
    if not decision.promote:
        return [Flag(f"remedy_{g}", dict(decision.gate(g).data)) for g in decision.failed]  # type: ignore[union-attr]
    items = [Flag("monitor_constraints", {"constraints": [c.metric for c in ranking.rules.spec.constraints]})]
    if candidate is not None and not math.isfinite(candidate.test_metric(ranking.rules.spec.objective_metric)):
        items.append(Flag("confirm_on_test", {}))
    confirmed = ranking.separation is not None and ranking.separation.separated
    if not confirmed and (any(f.code in ("single_seed", "seed_no_effect") for f in ranking.flags)
                          or _seed_risk(ranking)[1].data["close"]):
        items.append(Flag("confirm_seeds", {}))
    if any(f.code == "scratch" for f in ranking.flags):
        items.append(Flag("scratch_only_demo", {}))
    return items


def edge_axes(effects: list[AxisEffect] | tuple[AxisEffect, ...]) -> list[dict[str, Any]]:
    """Numeric axes that mattered and whose best value is the lowest or the highest tried: extend the range on
    that side. {"axis", "best", "side": "below" (best is the lowest value) or "above", "axis_values": sorted}.
    An axis of names (an optimizer) has no edge to extend."""
    edges = []
    for effect in effects:
        values = [lv.value for lv in effect.levels]
        if effect.verdict != "beyond_noise" or len(values) < 2 or not all(_number(v) for v in values):
            continue
        ordered = sorted(values)
        if effect.best_value == ordered[0]:
            edges.append({"axis": effect.axis, "best": effect.best_value, "side": "below", "axis_values": ordered})
        elif effect.best_value == ordered[-1]:
            edges.append({"axis": effect.axis, "best": effect.best_value, "side": "above", "axis_values": ordered})
    return edges


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def distinct_seeds(ranking: Ranking) -> int:
    """The most distinct seeds any configuration was trained with (two runs of one seed are one training)."""
    return max((len(set(map(repr, c.seeds))) for c in ranking.configs), default=0)


def more_seeds(ranking: Ranking) -> list[Flag]:
    """More seeds when the best configurations have fewer than MIN_SEEDS distinct seeds, or when the two best
    are not separated: {"seeds": distinct seeds now, "needed": seeds per configuration that would separate the
    difference seen (None: unknown), "hopeless": no practical number would}."""
    seeds = distinct_seeds(ranking)
    separation = ranking.separation
    separated = separation is not None and separation.separated
    needed = separation.seeds_needed if separation is not None and not separated else None
    if seeds >= MIN_SEEDS and (separated or needed is None):
        return []
    return [Flag("more_seeds", {"seeds": seeds, "needed": needed, "min_seeds": MIN_SEEDS,
                                "hopeless": needed is not None and needed >= MAX_PRACTICAL_SEEDS})]


def next_steps(*, ranking: Ranking, decision: Decision) -> dict[str, list[Flag]]:
    fixable = ("axis_no_effect", "scratch", "unranked", "seed_no_effect")
    short = [Flag(f"fix_{f.code}", dict(f.data)) for f in ranking.flags if f.code in fixable]
    short.append(Flag("serve_champion" if decision.promote else "address_gates",
                      {"failed": list(decision.failed), "model": ranking.rules.spec.registered_model}))
    medium = more_seeds(ranking)
    # a sampled axis's values are draws inside its distribution's bounds: their edge is not the range's
    medium += [Flag("extend_axis", edge) for edge in edge_axes(ranking.effects)
               if ranking.rules.distribution(edge["axis"]) is None]
    medium += [Flag("more_data", {"dataset": ranking.rules.spec.dataset_path}), Flag("tune_threshold", {})]
    long = [Flag("monitoring", {}), Flag("retraining", {}), Flag("target_benchmark", {})]
    return {"short": short, "medium": medium, "long": long}
