"""The champion gate's statistics: candidate and champion on the same test images, a paired bootstrap (pure).

Both models are evaluated on the same test split in the same finalizer run; for
each image, ultralytics' validator yields the detections' true-positive matrix
(one column per IoU threshold 0.50:0.95), their confidences and classes, and the
image's target classes (`ImageStats`). A metric over a set of images is
ultralytics' own `ap_per_class` on their concatenated stats, exactly as
`DetMetrics.process` computes it. The bootstrap draws the test images with
replacement, the same draw for both models (paired), and takes the percentile
interval of the improvement at the given confidence.

The rule: the candidate replaces the champion only when the interval's lower
bound exceeds gates.champion_margin ("keep the champion unless the candidate is
better with the stated confidence"); an interval that includes 0 is "not
separable" on this split.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

import contract

RESAMPLES = 1000
SEED = 0  # fixed: the same data give the same report
DEFAULT_CONFIDENCE = 0.95
# The four box metrics of the test split, as ultralytics' `Metric` names them.
BOX_METRICS: Mapping[str, str] = {contract.METRIC_PRECISION: "mp", contract.METRIC_RECALL: "mr",
                                  contract.METRIC_MAP50: "map50", contract.METRIC_MAP50_95: "map"}


@dataclass(frozen=True)
class ImageStats:
    """One image's detections against its labels, as ultralytics' DetectionValidator accumulates them.

    tp: (n_detections, 10) bool, a detection matched a label at IoU 0.50, 0.55, ... 0.95;
    conf: (n_detections,) confidence; pred_cls: (n_detections,) class index; target_cls: (n_labels,) class index.
    """

    tp: np.ndarray
    conf: np.ndarray
    pred_cls: np.ndarray
    target_cls: np.ndarray

    @property
    def n_boxes(self) -> int:
        return int(self.target_cls.shape[0])


@dataclass(frozen=True)
class PairedComparison:
    """Candidate against champion on the same `n_images` test images (`n_boxes` labelled boxes).

    improvement = sign * (candidate - champion), positive when the candidate is better (sign -1 for a minimised
    metric); [low, high] its paired bootstrap percentile interval at `confidence` over `resamples` draws.
    """

    metric: str
    candidate: float
    champion: float
    improvement: float
    low: float
    high: float
    confidence: float
    resamples: int
    n_images: int
    n_boxes: int

    @property
    def resolvable(self) -> float:
        """The smallest improvement this split resolves: half the interval's width. An observed improvement
        below it is within what resampling the test images moves it by (its interval includes 0)."""
        return (self.high - self.low) / 2

    @property
    def separated(self) -> bool:
        """The interval excludes 0: one of the two is better on this split, with the stated confidence."""
        return self.low > 0 or self.high < 0


def is_box_metric(metric: str) -> bool:
    return metric in BOX_METRICS


def box_metric(images: Sequence[ImageStats], metric: str) -> float:
    """`metric` (one of BOX_METRICS) over `images` (repeats count twice), with ultralytics' ap_per_class: the
    value ultralytics' validator reports for the same images. NaN without any image."""
    from ultralytics.utils.metrics import Metric, ap_per_class

    if not images:
        return math.nan
    attribute = BOX_METRICS[metric]
    result = Metric()
    result.update(ap_per_class(np.concatenate([i.tp for i in images], 0), np.concatenate([i.conf for i in images]),
                               np.concatenate([i.pred_cls for i in images]),
                               np.concatenate([i.target_cls for i in images]))[2:])
    return float(getattr(result, attribute))


def paired_bootstrap(*, candidate: Mapping[str, ImageStats], champion: Mapping[str, ImageStats], metric: str,
                     sign: float = 1.0, confidence: float = DEFAULT_CONFIDENCE, resamples: int = RESAMPLES,
                     seed: int = SEED) -> PairedComparison:
    """The improvement of `candidate` over `champion` on the same images (keyed by image path, in the order the
    validator saw them), and its paired
    bootstrap interval: each resample draws len(images) images with replacement (numpy's default_rng(seed)) and
    recomputes `metric` for both models on that same draw.

    ValueError when the two do not cover the same images, there is none, `metric` is not a box metric, or
    `confidence` is not in (0, 1).
    """
    if not is_box_metric(metric):
        raise ValueError(f"metric {metric!r} is not one of the test split's box metrics {sorted(BOX_METRICS)}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence {confidence} is not in (0, 1)")
    if set(candidate) != set(champion):
        odd = sorted(set(candidate) ^ set(champion))
        raise ValueError(f"candidate and champion were not evaluated on the same images: {odd[:3]} differ")
    names = sorted(candidate)
    if not names:
        raise ValueError("no test image")
    ours, theirs = [candidate[n] for n in names], [champion[n] for n in names]
    draws = np.random.default_rng(seed).integers(0, len(names), size=(resamples, len(names)))
    differences = np.array([sign * (box_metric([ours[i] for i in draw], metric)
                                    - box_metric([theirs[i] for i in draw], metric)) for draw in draws])
    low, high = np.quantile(differences, [(1 - confidence) / 2, (1 + confidence) / 2])
    # on all images, in the order the validator saw them: detections of equal confidence then sort as they did
    # there, and the values are the validator's own
    value_ours, value_theirs = box_metric(list(candidate.values()), metric), box_metric(list(champion.values()), metric)
    return PairedComparison(metric=metric, candidate=value_ours, champion=value_theirs,
                            improvement=sign * (value_ours - value_theirs), low=float(low), high=float(high),
                            confidence=confidence, resamples=resamples, n_images=len(names),
                            n_boxes=sum(i.n_boxes for i in ours))


def candidate_wins(*, comparison: PairedComparison, margin: float) -> bool:
    """The gate's rule: keep the champion unless the candidate's improvement exceeds `margin` with the stated
    confidence, i.e. the interval's lower bound is above the margin."""
    return math.isfinite(comparison.low) and comparison.low > margin
