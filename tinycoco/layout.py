"""Pure parsing of a COCO128 source: where its files are, and which images ultralytics can read.

COCO128 (zip or folder) holds `images/train2017/<id>.<ext>` and
`labels/train2017/<id>.txt`, possibly under a top folder (`coco128/` in the
official zip). Files are matched as ultralytics 8.4.190 matches them
(`ultralytics.data.base.BaseDataset.get_img_files`, `data.utils.img2label_paths`):
an image is a file whose extension, in any case, is one of `IMG_FORMATS`; its
label is the same name with the extension replaced by `.txt` (lower case: a
`.TXT` file is not found by ultralytics on a case-sensitive file system).
Nothing here touches the disk or the network; label contents: `tinycoco.labels`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath

from tinycoco.errors import DatasetError

IMAGES_DIR = ("images", "train2017")
LABELS_DIR = ("labels", "train2017")
# ultralytics.data.utils.IMG_FORMATS (8.4.190), compared with the lower-cased extension
IMG_FORMATS = frozenset(
    {"avif", "bmp", "dng", "heic", "heif", "jp2", "jpeg", "jpg", "mpo", "png", "tif", "tiff", "webp"}
)
LABEL_SUFFIX = ".txt"
EXPECTED_LAYOUT = "images/train2017/*.jpg and labels/train2017/*.txt"
MIN_IMAGE_SIDE = 10  # ultralytics' check_image: "image size (h, w) <10 pixels"

_JPEG, _PNG = b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n"
_SIGNATURES = (  # what PIL identifies as one of IMG_FORMATS, by the file's first bytes
    _JPEG, _PNG, b"BM", b"II*\x00", b"MM\x00*", b"\x00\x00\x00\x0cjP  \r\n\x87\n", b"\xff\x4f\xff\x51",
)
_ISO_BRANDS = frozenset({b"avif", b"avis", b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"})
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


@dataclass(frozen=True)
class Layout:
    """The COCO128 files found in a source, by image id (file stem)."""

    root: str  # folder inside the source that holds images/ and labels/, "" if none
    images: Mapping[str, str]  # stem -> name inside the source
    labels: Mapping[str, str]  # stem -> name inside the source
    strays: Mapping[str, str]  # name inside the source -> why it is neither an image nor a label


def _is_junk(parts: tuple[str, ...]) -> bool:
    # macOS zips carry __MACOSX/ shadows and ._ resource forks of every file.
    return any(part.startswith((".", "__MACOSX")) for part in parts)


def _classify(name: str) -> tuple[str, str, str] | None:
    """(kind, root, stem) for a file in a layout folder, None for anything else.

    kind is "image", "label", or "stray" (a file in a layout folder that
    ultralytics would not read as either).
    """
    path = PurePosixPath(name)
    parts = path.parts
    if len(parts) < 3 or _is_junk(parts):
        return None
    root = "/".join(parts[:-3])
    folder = parts[-3:-1]
    if folder == IMAGES_DIR:
        is_image = path.name.rpartition(".")[-1].lower() in IMG_FORMATS
        return ("image" if is_image else "stray"), root, path.stem
    if folder == LABELS_DIR:
        is_label = path.name.endswith(LABEL_SUFFIX)
        return ("label" if is_label else "stray"), root, path.name.removesuffix(LABEL_SUFFIX)
    return None


_STRAY_REASONS = {
    IMAGES_DIR: "not an image: ultralytics reads the extensions " + ", ".join(sorted(IMG_FORMATS)) + " (any case)",
    LABELS_DIR: f"not a label file: ultralytics reads <image name>{LABEL_SUFFIX} (lower case)",
}


def locate_layout(*, names: Iterable[str], where: str) -> Layout:
    """Find the one COCO128 layout among a source's file names."""
    found: dict[str, dict[str, dict[str, str]]] = {}
    strays: dict[str, dict[str, str]] = {}
    for name in names:
        hit = _classify(name)
        if hit is None:
            continue
        kind, root, stem = hit
        if kind == "stray":
            folder = IMAGES_DIR if PurePosixPath(name).parts[-3:-1] == IMAGES_DIR else LABELS_DIR
            strays.setdefault(root, {})[name] = _STRAY_REASONS[folder]
            continue
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
    return Layout(root=root, images=files["image"], labels=files["label"], strays=strays.get(root, {}))


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(height, width) from a JPEG's start-of-frame segment, None if not found."""
    at = 2
    while at + 9 <= len(data) and data[at] == 0xFF:
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker in _JPEG_SOF:
            return int.from_bytes(data[at + 5 : at + 7], "big"), int.from_bytes(data[at + 7 : at + 9], "big")
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            at += 2
            continue
        at += 2 + int.from_bytes(data[at + 2 : at + 4], "big")
    return None


def _size(data: bytes) -> tuple[int, int] | None:
    """(height, width) for JPEG and PNG; None for other formats (not checked)."""
    if data.startswith(_JPEG):
        return _jpeg_size(data)
    if data.startswith(_PNG) and len(data) >= 24:
        return int.from_bytes(data[20:24], "big"), int.from_bytes(data[16:20], "big")
    return None


def image_problem(data: bytes) -> str | None:
    """Why ultralytics would not train on this image file as it is, or None.

    Images are copied byte for byte, never decoded (standard library only):
    the format is recognised by its signature, the size read from JPEG and
    PNG headers. A JPEG without its end marker is refused too: ultralytics
    "restores" such a file by rewriting it inside the dataset, which would
    change the dataset after its version was pinned.
    """
    iso_brand = data[4:8] == b"ftyp" and data[8:12] in _ISO_BRANDS
    riff_webp = data.startswith(b"RIFF") and data[8:12] == b"WEBP"
    if not (data.startswith(_SIGNATURES) or iso_brand or riff_webp):
        return "cannot identify image file: not one of the image formats ultralytics reads"
    size = _size(data)
    if size is not None and min(size) < MIN_IMAGE_SIDE:
        return f"image size {size} <{MIN_IMAGE_SIDE} pixels"
    if data.startswith(_JPEG) and not data.endswith(b"\xff\xd9"):  # ultralytics reads the last two bytes
        return "corrupt JPEG (no end-of-image marker): ultralytics would rewrite it inside the dataset"
    return None
