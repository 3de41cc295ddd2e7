"""Pure parsing of a COCO128 source: where its files are, what its labels say.

COCO128 (zip or folder) holds `images/train2017/<id>.jpg` and
`labels/train2017/<id>.txt`, possibly under a top folder (`coco128/` in the
official zip). Nothing here touches the disk or the network.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Iterable, Mapping

from tinycoco.errors import DatasetError

IMAGES_DIR = ("images", "train2017")
LABELS_DIR = ("labels", "train2017")
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png"})
LABEL_SUFFIX = ".txt"
PERSON_CLASS = 0
EXPECTED_LAYOUT = "images/train2017/*.jpg and labels/train2017/*.txt"

_IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n")


@dataclass(frozen=True)
class Layout:
    """The COCO128 files found in a source, by image id (file stem)."""

    root: str  # folder inside the source that holds images/ and labels/, "" if none
    images: Mapping[str, str]  # stem -> name inside the source
    labels: Mapping[str, str]  # stem -> name inside the source


@dataclass(frozen=True)
class ParsedLabel:
    person_lines: tuple[str, ...]  # "0 xc yc w h", the source's own number text
    boxes: int  # every box in the file, any class


def _is_junk(parts: tuple[str, ...]) -> bool:
    # macOS zips carry __MACOSX/ shadows and ._ resource forks of every file.
    return any(part.startswith((".", "__MACOSX")) for part in parts)


def _classify(name: str) -> tuple[str, str, str] | None:
    """(kind, root, stem) for a layout file, None for anything else."""
    path = PurePosixPath(name)
    parts = path.parts
    if len(parts) < 3 or _is_junk(parts):
        return None
    root = "/".join(parts[:-3])
    folder = parts[-3:-1]
    suffix = path.suffix.lower()
    if folder == IMAGES_DIR and suffix in IMAGE_SUFFIXES:
        return "image", root, path.stem
    if folder == LABELS_DIR and suffix == LABEL_SUFFIX:
        return "label", root, path.stem
    return None


def locate_layout(*, names: Iterable[str], where: str) -> Layout:
    """Find the one COCO128 layout among a source's file names."""
    found: dict[str, dict[str, dict[str, str]]] = {}
    for name in names:
        hit = _classify(name)
        if hit is None:
            continue
        kind, root, stem = hit
        by_stem = found.setdefault(root, {"image": {}, "label": {}})[kind]
        if stem in by_stem:
            raise DatasetError(f"{where}: two files for {kind} {stem!r}: {by_stem[stem]} and {name}")
        by_stem[stem] = name
    if not found:
        raise DatasetError(f"{where}: not a COCO128 source, expected {EXPECTED_LAYOUT}")
    if len(found) > 1:
        roots = ", ".join(sorted(repr(root or ".") for root in found))
        raise DatasetError(f"{where}: several COCO128 layouts ({roots}); point --source at one")
    root, files = next(iter(found.items()))
    for kind, folder in (("image", IMAGES_DIR), ("label", LABELS_DIR)):
        if not files[kind]:
            raise DatasetError(f"{where}: no {kind} files in {'/'.join(folder)}, expected {EXPECTED_LAYOUT}")
    return Layout(root=root, images=files["image"], labels=files["label"])


def _box_class(*, tokens: list[str]) -> int:
    """The class id of one YOLO box line; ValueError if the line is malformed."""
    if len(tokens) != 5:
        raise ValueError(f"expected 5 values (class xc yc w h), got {len(tokens)}")
    class_id = int(tokens[0])
    xc, yc, width, height = (float(token) for token in tokens[1:])
    if not all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in (xc, yc, width, height)):
        raise ValueError("coordinates must be normalised to 0..1")
    if width <= 0.0 or height <= 0.0:
        raise ValueError("box with zero width or height")
    return class_id


def parse_label(*, data: bytes) -> ParsedLabel:
    """Keep the person boxes of a YOLO label file; ValueError says what is wrong."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError("not UTF-8 text") from error
    person_lines: list[str] = []
    boxes = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        tokens = raw.split()
        if not tokens:
            continue
        try:
            class_id = _box_class(tokens=tokens)
        except ValueError as error:
            raise ValueError(f"line {number}: {error}") from None
        boxes += 1
        if class_id == PERSON_CLASS:
            person_lines.append(" ".join([str(PERSON_CLASS), *tokens[1:]]))
    return ParsedLabel(person_lines=tuple(person_lines), boxes=boxes)


def looks_like_image(data: bytes) -> bool:
    """A cheap signature check: images are copied byte for byte, never decoded."""
    return data.startswith(_IMAGE_MAGIC)
