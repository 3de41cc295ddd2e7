"""Pure selection and splitting: which person images are used, and which go to train, val and test.

- **How many, and which.** The dataset has exactly `sum(sizes)` images (60 for
  40:10:10), as the lab's handout asks. When the source has more person images,
  those whose persons cover the least of the image (`person_cover`: the summed
  area of the person boxes over the image's area) are left out, least first:
  they give a person detector the least to learn from. COCO128 has 61 person
  images; the one left out is 000000000201 (two persons covering 0.15% of it;
  the next lowest, 000000000127, 0.26%).
- **Which split.** Each image used goes to the bucket of `sha256("<seed>:<id>")`,
  read as a number in [0, 1), among three buckets whose widths are proportional
  to `sizes` (2/3, 1/6, 1/6). Nothing else enters: no image ever changes split
  because another image was added or removed.

So the split counts are the proportions in expectation, not exact counts in
general; only the total is fixed. The default seed, DEFAULT_SEED = 100, is the
smallest under which COCO128's 60 images split exactly 40/10/10 (seed 0 gives
43/7/10; 34 of the seeds 0-1999 give 40/10/10, 1.7%, near the 1.9% of a
multinomial draw).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import accumulate
from pathlib import PurePosixPath

from tinycoco.errors import DatasetError
from tinycoco.labels import LabelError, parse_label
from tinycoco.layout import Layout, image_problem

DEFAULT_SEED = 100  # COCO128 -> exactly 40/10/10 (module docstring)

SPLIT_NAMES = ("train", "val", "test")
DEFAULT_SPLIT = (40, 10, 10)


@dataclass(frozen=True)
class Skipped:
    """A source file left out, and why (ultralytics' own reason where it has one)."""

    file: str  # path under the source's root, e.g. labels/train2017/000000000656.txt
    kind: str  # the reason without values, e.g. "negative label values" (files are counted by it)
    detail: str = ""  # the values with their separator, e.g. " [-0.5]": reason = kind + detail
    line: int | None = None  # the first line at fault in a label file
    text: str = ""  # that line as written (shortened)

    @property
    def reason(self) -> str:
        return self.kind + self.detail

    @property
    def where(self) -> str:
        """The file, and the line at fault if any: `labels/train2017/x.txt line 3: 0 0.5 1.2 0.1 0.1`."""
        return f"{self.file} line {self.line}: {self.text}" if self.line is not None else self.file


@dataclass(frozen=True)
class Sample:
    """One image with at least one person, and its person boxes."""

    stem: str
    source_name: str  # the image's name inside the source
    person_lines: tuple[str, ...]
    notes: Mapping[str, int] = field(default_factory=dict)  # what reading did to its person boxes -> count

    @property
    def suffix(self) -> str:
        return PurePosixPath(self.source_name).suffix.lower()


@dataclass(frozen=True)
class LeftOut:
    """A person image that is not used, and why (`choose_samples`)."""

    stem: str  # the image id, e.g. 000000000201
    reason: str


@dataclass(frozen=True)
class Inventory:
    persons: tuple[Sample, ...]  # every usable image with a person, sorted by stem
    without_person: tuple[str, ...]  # stems of usable images with no person box
    skipped: tuple[Skipped, ...]  # unusable files, sorted by file


@dataclass(frozen=True)
class SplitPlan:
    splits: Mapping[str, tuple[Sample, ...]]  # split name -> samples sorted by stem
    left_out: tuple[LeftOut, ...] = ()  # person images beyond the total, sorted by stem

    @property
    def notes(self) -> dict[str, int]:
        """What reading did to the person boxes of the images used (tinycoco.labels notes) -> count, sorted."""
        counts: Counter[str] = Counter()
        for samples in self.splits.values():
            for sample in samples:
                counts.update(sample.notes)
        return dict(sorted(counts.items()))


def _relative(*, layout: Layout, name: str) -> str:
    return name.removeprefix(f"{layout.root}/") if layout.root else name


_Outcome = Sample | Skipped | None


def _examine(*, layout: Layout, contents: Mapping[str, bytes], stem: str) -> _Outcome:
    """A Sample (with the notes on its boxes), a Skipped file, or None for a usable image without persons."""
    image_name, label_name = layout.images.get(stem), layout.labels.get(stem)
    if image_name is None:
        assert label_name is not None
        return Skipped(file=_relative(layout=layout, name=label_name), kind="no image file")
    if label_name is None:
        return Skipped(file=_relative(layout=layout, name=image_name), kind="no label file (background image)")
    problem = image_problem(contents[image_name])
    if problem is not None:
        return Skipped(file=_relative(layout=layout, name=image_name), kind=problem)
    try:
        label = parse_label(data=contents[label_name])
    except LabelError as error:
        file = _relative(layout=layout, name=label_name)
        return Skipped(file=file, kind=error.kind, detail=error.detail, line=error.line, text=error.text)
    if not label.person_lines:
        return None
    return Sample(stem=stem, source_name=image_name, person_lines=label.person_lines, notes=label.notes)


def take_inventory(*, layout: Layout, contents: Mapping[str, bytes]) -> Inventory:
    """Sort every image id of the source into person images, others, and skipped files."""
    persons: list[Sample] = []
    without_person: list[str] = []
    skipped = [Skipped(file=_relative(layout=layout, name=name), kind=why) for name, why in layout.strays.items()]
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


def why_skipped(skipped: tuple[Skipped, ...]) -> list[str]:
    """One line per reason: how many files, and the first as an example (file, line and its text)."""
    by_kind: dict[str, list[Skipped]] = {}
    for item in skipped:
        by_kind.setdefault(item.kind, []).append(item)
    ranked = sorted(by_kind.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    return [f"{len(items)} x {kind}: e.g. {items[0].where}" for kind, items in ranked]


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


def split_of(*, seed: int, stem: str, sizes: tuple[int, int, int]) -> str:
    """The split of one image: its own hash bucket, from its id and the seed only.

    `sha256("<seed>:<id>")` as an integer h in [0, 2**256); the image's
    position `h * total // 2**256` in [0, total), total = sum(sizes), falls in
    train for [0, 40), val for [40, 50), test for [50, 60) with (40, 10, 10).
    Nothing else (other images, file-system order, Python's `random`) enters.
    """
    digest = int.from_bytes(hashlib.sha256(f"{seed}:{stem}".encode()).digest(), "big")
    position = (digest * sum(sizes)) >> 256
    return next(name for name, bound in zip(SPLIT_NAMES, accumulate(sizes), strict=True) if position < bound)


def person_cover(sample: Sample) -> float:
    """The share of the image covered by person boxes: the sum of their normalized areas w * h.

    A number in [0, n] for n boxes (overlaps count twice; in [0, 1] without
    overlap). It needs no image size, so every format ultralytics reads has one.
    """
    return sum(float(w) * float(h) for _, _, _, w, h in map(str.split, sample.person_lines))


def choose_samples(samples: tuple[Sample, ...], *, total: int) -> tuple[tuple[Sample, ...], tuple[LeftOut, ...]]:
    """The `total` samples used (sorted by stem) and the others, left out: those with the least `person_cover`.

    Ranked by cover, highest first, then by stem. An image's cover depends on
    it alone; only the cut at `total` depends on the others, so adding or
    removing one source image changes at most one other image's membership
    (the last one used leaves, or the first one left out comes in).
    """
    if len(samples) <= total:
        return samples, ()
    ranked = sorted(samples, key=lambda s: (-person_cover(s), s.stem))
    used, beyond = ranked[:total], ranked[total:]
    floor = person_cover(used[-1])
    left_out = tuple(
        LeftOut(
            stem=s.stem,
            reason=(
                f"least person: {_boxes(len(s.person_lines))} {person_cover(s):.2%} of the image;"
                f" each of the {total} images used, at least {floor:.2%}"
            ),
        )
        for s in sorted(beyond, key=lambda s: s.stem)
    )
    return tuple(sorted(used, key=lambda s: s.stem)), left_out


def _boxes(n: int) -> str:
    return "its person box covers" if n == 1 else f"its {n} person boxes cover"


def split_samples(
    *, inventory: Inventory, seed: int, sizes: tuple[int, int, int], where: str
) -> SplitPlan:
    """Choose `sum(sizes)` person images (`choose_samples`) and deal each into train/val/test by its hash bucket.

    `sizes` are the proportions of the buckets and, summed, the number of
    person images used (60 for 40/10/10); each split's count equals its size
    only where the seed makes it so (DEFAULT_SEED for COCO128). With fewer
    person images, or with a split left empty, DatasetError says why images
    were skipped: per reason, how many files and one example file and line.
    """
    samples = inventory.persons
    needed = sum(sizes)
    used, left_out = choose_samples(samples, total=needed)
    splits: dict[str, list[Sample]] = {name: [] for name in SPLIT_NAMES}
    for sample in used:
        splits[split_of(seed=seed, stem=sample.stem, sizes=sizes)].append(sample)
    empty = [name for name in SPLIT_NAMES if not splits[name]]
    if len(samples) < needed or empty:
        problem = (
            f"{len(samples)} images contain a person, the split {sizes} (train, val, test) needs {needed}"
            if len(samples) < needed
            else f"no person image falls in the {' and '.join(empty)} split (seed {seed}); try another seed"
        )
        raise DatasetError(f"{where}: {problem}" + _explanation(inventory))
    return SplitPlan(
        splits={name: tuple(sorted(group, key=lambda s: s.stem)) for name, group in splits.items()},
        left_out=left_out,
    )


def _explanation(inventory: Inventory) -> str:
    lines = [f"{len(inventory.without_person)} images have a readable label without a person box"]
    if inventory.skipped:
        lines.append(f"{len(inventory.skipped)} source files skipped, by reason:")
        lines += [f"  {line}" for line in why_skipped(inventory.skipped)]
    return "\n" + "\n".join(f"  {line}" for line in lines)
