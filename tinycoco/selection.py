"""Pure selection and splitting: which images go to train, val and test."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Mapping

from tinycoco.errors import DatasetError
from tinycoco.layout import Layout, looks_like_image, parse_label

SPLIT_NAMES = ("train", "val", "test")
DEFAULT_SPLIT = (40, 10, 10)


@dataclass(frozen=True)
class Skipped:
    file: str  # path under the source's root, e.g. labels/train2017/000000000656.txt
    reason: str


@dataclass(frozen=True)
class Sample:
    """One image with at least one person, and its person boxes."""

    stem: str
    source_name: str  # the image's name inside the source
    person_lines: tuple[str, ...]

    @property
    def suffix(self) -> str:
        return PurePosixPath(self.source_name).suffix.lower()


@dataclass(frozen=True)
class Inventory:
    persons: tuple[Sample, ...]  # sorted by stem
    without_person: tuple[str, ...]  # stems of usable images with no person box
    skipped: tuple[Skipped, ...]  # unusable files, sorted by file


@dataclass(frozen=True)
class SplitPlan:
    splits: Mapping[str, tuple[Sample, ...]]  # split name -> samples sorted by stem
    unused: tuple[Sample, ...]  # person images beyond the requested sizes


def _relative(*, layout: Layout, name: str) -> str:
    return name.removeprefix(f"{layout.root}/") if layout.root else name


def _examine(*, layout: Layout, contents: Mapping[str, bytes], stem: str) -> Sample | Skipped | None:
    """A Sample, a Skipped file, or None for a usable image without persons."""
    image_name, label_name = layout.images.get(stem), layout.labels.get(stem)
    if label_name is None:
        return Skipped(file=_relative(layout=layout, name=image_name), reason="no label file (background image)")
    if image_name is None:
        return Skipped(file=_relative(layout=layout, name=label_name), reason="no image file")
    if not looks_like_image(contents[image_name]):
        return Skipped(file=_relative(layout=layout, name=image_name), reason="not a JPEG or PNG image")
    try:
        label = parse_label(data=contents[label_name])
    except ValueError as error:
        return Skipped(file=_relative(layout=layout, name=label_name), reason=f"malformed label, {error}")
    if not label.person_lines:
        return None
    return Sample(stem=stem, source_name=image_name, person_lines=label.person_lines)


def take_inventory(*, layout: Layout, contents: Mapping[str, bytes]) -> Inventory:
    """Sort every image id of the source into person images, others, and skipped files."""
    persons: list[Sample] = []
    without_person: list[str] = []
    skipped: list[Skipped] = []
    for stem in sorted(layout.images.keys() | layout.labels.keys()):
        outcome = _examine(layout=layout, contents=contents, stem=stem)
        if isinstance(outcome, Sample):
            persons.append(outcome)
        elif isinstance(outcome, Skipped):
            skipped.append(outcome)
        else:
            without_person.append(stem)
    return Inventory(
        persons=tuple(persons),
        without_person=tuple(without_person),
        skipped=tuple(sorted(skipped, key=lambda s: s.file)),
    )


def check_split_sizes(split: object) -> tuple[int, int, int]:
    """The (train, val, test) sizes, each a positive int; DatasetError otherwise."""
    if (
        not isinstance(split, (tuple, list))
        or len(split) != len(SPLIT_NAMES)
        or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in split)
    ):
        raise DatasetError(f"split must be three positive integers (train, val, test), got {split!r}")
    return (split[0], split[1], split[2])


def check_seed(seed: object) -> int:
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise DatasetError(f"seed must be an integer, got {seed!r}")
    return seed


def _order_key(*, seed: int, stem: str) -> str:
    # A hash order rather than random.shuffle: it depends on nothing but the
    # seed and the image id, so the split survives Python upgrades and is
    # stable for the images that remain when others are added or dropped.
    return hashlib.sha256(f"{seed}:{stem}".encode()).hexdigest()


def split_samples(
    *, samples: tuple[Sample, ...], seed: int, sizes: tuple[int, int, int], where: str
) -> SplitPlan:
    """Deal the samples into disjoint train/val/test splits, deterministically for a seed."""
    needed = sum(sizes)
    if len(samples) < needed:
        raise DatasetError(
            f"{where}: {len(samples)} images contain a person, the split {sizes} (train, val, test) needs {needed}"
        )
    ordered = sorted(samples, key=lambda s: (_order_key(seed=seed, stem=s.stem), s.stem))
    splits: dict[str, tuple[Sample, ...]] = {}
    start = 0
    for name, size in zip(SPLIT_NAMES, sizes):
        splits[name] = tuple(sorted(ordered[start : start + size], key=lambda s: s.stem))
        start += size
    return SplitPlan(splits=splits, unused=tuple(sorted(ordered[start:], key=lambda s: s.stem)))
