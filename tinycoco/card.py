"""The dataset card and the ultralytics data.yaml, rendered as text (pure).

The card holds only what the data is, never where it came from (URL, path)
or when: the same COCO128 content gives the same bytes, hence the same DVC
md5, whether it was read from the official zip, a copy of it, or a folder.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tinycoco.selection import SPLIT_NAMES, Inventory, LeftOut, Skipped, SplitPlan
from tinycoco.source import SourceFiles

CARD_VERSION = 3  # 3: split_proportions, left_out
CLASS_NAMES = {0: "person"}
DATA_YAML = """\
# tiny_coco: person detection on COCO128, built by tinycoco (see CARD.md).
# No `path:` key on purpose: ultralytics then resolves train/val/test against
# this file's folder, so the dataset works wherever it is checked out.
train: images/train
val: images/val
test: images/test
names:
  0: person
"""


LEFT_OUT_RULE = (
    "The dataset has as many images as the split proportions add up to. When the source has more person"
    " images, those whose person boxes cover the least of the image (the sum of the boxes' areas over the"
    " image's area) are left out, least first, ties by id: they give a person detector the least to learn from."
)


@dataclass(frozen=True)
class SplitSummary:
    images: int
    boxes: int
    image_ids: tuple[str, ...]


@dataclass(frozen=True)
class Card:
    seed: int
    split_proportions: tuple[int, int, int]  # (train, val, test) as requested; their sum is the number of images
    splits: Mapping[str, SplitSummary]  # train, val, test
    source_content_sha256: str
    source_images: int
    source_label_files: int
    person_images: int
    images_without_person: int
    label_notes: Mapping[str, int]  # what reading did to the boxes used (polygons to boxes, clipped, ...) -> count
    skipped: tuple[Skipped, ...]
    left_out: tuple[LeftOut, ...] = ()  # person images beyond the total (LEFT_OUT_RULE)

    def to_dict(self) -> dict[str, Any]:
        return {
            "card_version": CARD_VERSION,
            "name": "tiny_coco",
            "description": "COCO128 images that contain a person; person boxes only",
            "classes": {str(k): v for k, v in CLASS_NAMES.items()},
            "seed": self.seed,
            "split_proportions": dict(zip(SPLIT_NAMES, self.split_proportions, strict=True)),
            "splits": {
                name: {"images": s.images, "boxes": s.boxes, "image_ids": list(s.image_ids)}
                for name, s in self.splits.items()
            },
            "source": {
                "dataset": "COCO128",
                "content_sha256": self.source_content_sha256,
                "images": self.source_images,
                "label_files": self.source_label_files,
                "person_images": self.person_images,
                "images_without_person": self.images_without_person,
            },
            "left_out": {
                "rule": LEFT_OUT_RULE,
                "images": [{"id": item.stem, "reason": item.reason} for item in self.left_out],
            },
            "label_notes": dict(self.label_notes),
            "skipped": [_skipped_dict(s) for s in self.skipped],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def to_markdown(self) -> str:
        parts = [*_markdown_head(self), *_markdown_splits(self), *_markdown_left_out(self), *_markdown_source(self)]
        return "\n".join(parts) + "\n"


def _skipped_dict(skipped: Skipped) -> dict[str, Any]:
    entry: dict[str, Any] = {"file": skipped.file, "reason": skipped.reason}
    if skipped.line is not None:
        entry |= {"line": skipped.line, "text": skipped.text}
    return entry


def make_card(
    *, source: SourceFiles, inventory: Inventory, plan: SplitPlan, seed: int, sizes: tuple[int, int, int]
) -> Card:
    splits = {
        name: SplitSummary(
            images=len(samples),
            boxes=sum(len(s.person_lines) for s in samples),
            image_ids=tuple(s.stem for s in samples),
        )
        for name, samples in plan.splits.items()
    }
    return Card(
        seed=seed,
        split_proportions=sizes,
        splits=splits,
        source_content_sha256=source.content_sha256,
        source_images=len(source.layout.images),
        source_label_files=len(source.layout.labels),
        person_images=len(inventory.persons),
        images_without_person=len(inventory.without_person),
        label_notes=plan.notes,
        skipped=inventory.skipped,
        left_out=plan.left_out,
    )


def _markdown_head(card: Card) -> list[str]:
    return [
        "# tiny_coco",
        "",
        "Person detection on a small subset of COCO128: only images that contain",
        "at least one person, only person boxes (class 0). Images are the original",
        "JPEG files, byte for byte (original resolution and aspect ratio).",
        "Built by `tinycoco` (see `docs/dataset.md`); do not edit by hand.",
        "",
        f"Seed: {card.seed}. Classes: 0 = person. Machine-readable card: `card.json`.",
        "",
        "Each image's split depends on its id and the seed only: `sha256(\"<seed>:<id>\")` falls in one of",
        f"three buckets of widths {':'.join(map(str, card.split_proportions))} (train:val:test).",
        "",
    ]


def _markdown_splits(card: Card) -> list[str]:
    rows = [f"| {name} | {card.splits[name].images} | {card.splits[name].boxes} |" for name in SPLIT_NAMES]
    total_images = sum(s.images for s in card.splits.values())
    total_boxes = sum(s.boxes for s in card.splits.values())
    return [
        "| split | images | person boxes |",
        "|---|---:|---:|",
        *rows,
        f"| total | {total_images} | {total_boxes} |",
        "",
    ]


def _markdown_left_out(card: Card) -> list[str]:
    used = sum(s.images for s in card.splits.values())
    items = [f"- `{item.stem}`: {item.reason}" for item in card.left_out] or ["- none"]
    return [
        "## Person images left out",
        "",
        *textwrap.wrap(f"{card.person_images} images contain a person; {used} are used. {LEFT_OUT_RULE}", width=76),
        "",
        *items,
        "",
    ]


def _markdown_source(card: Card) -> list[str]:
    skipped = [f"- `{s.where}`: {s.reason}" for s in card.skipped] or ["- nothing"]
    notes = [f"- {what}: {count}" for what, count in card.label_notes.items()]
    return [
        "## Source",
        "",
        f"COCO128: {card.source_images} images, {card.source_label_files} label files,",
        f"content sha256 `{card.source_content_sha256}`",
        "(sha256 over the sorted lines `<path>\\0<sha256 of the file>\\n` of",
        "`images/train2017/*` and `labels/train2017/*.txt`: the same for the zip",
        "and its unpacked folder).",
        "",
        f"- images with a person: {card.person_images} ({len(card.left_out)} left out, see above)",
        f"- usable images without a person: {card.images_without_person}",
        *notes,
        "",
        "Labels are read as ultralytics reads them (see `docs/dataset.md`).",
        "Skipped source files:",
        "",
        *skipped,
    ]
