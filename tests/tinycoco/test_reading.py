"""Label files written by other tools, read as ultralytics 8.4.190 reads them; splits that depend on each image alone.

Every source here is a copy of the real COCO128 (/work/shared/datasets/coco128 is read-only): images are
symlinked, labels rewritten into tmp_path. The reading rules are also checked against ultralytics' own
`verify_image_label`, on the same files.
"""

from __future__ import annotations

import io
import math
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image

from tests.helpers.paths import COCO128
from tinycoco import DEFAULT_SPLIT, SPLIT_NAMES, BuiltDataset, DatasetError, build
from tinycoco.labels import CLIPPED, POLYGON, LabelError, parse_label
from tinycoco.layout import image_problem
from tinycoco.selection import split_of

LABELS = COCO128 / "labels" / "train2017"
IMAGES = COCO128 / "images" / "train2017"
BOM = b"\xef\xbb\xbf"


def copy_of(
    tmp: Path,
    *,
    label: Callable[[str, bytes], bytes | None] = lambda stem, data: data,
    image_name: Callable[[str], str | None] = lambda name: name,
    label_name: Callable[[str], str] = lambda name: name,
) -> Path:
    """A COCO128 copy: `label(stem, bytes)` gives each label's new bytes (None: no label file),
    `image_name(name)` each image's new name (None: no image), `label_name(name)` each label's."""
    root = tmp / "coco128"
    (root / "images" / "train2017").mkdir(parents=True)
    (root / "labels" / "train2017").mkdir(parents=True)
    for image in IMAGES.iterdir():
        name = image_name(image.name)
        if name is not None:
            (root / "images" / "train2017" / name).symlink_to(image)
    for path in LABELS.iterdir():
        data = label(path.stem, path.read_bytes())
        if data is not None:
            (root / "labels" / "train2017" / label_name(path.name)).write_bytes(data)
    return root


def dataset_files(root: Path) -> dict[str, bytes]:
    """images/ and labels/ of a built dataset (the card records the source checksum, so it differs)."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for folder in ("images", "labels") for p in sorted((root / folder).rglob("*")) if p.is_file()
    }


def split_map(built: BuiltDataset) -> dict[str, str]:
    return {stem: split for split in SPLIT_NAMES for stem in built.card.splits[split].image_ids}


def person_stems() -> list[str]:
    def has_person(label: Path) -> bool:
        return any(line.split()[0] == "0" for line in label.read_text().splitlines())

    return sorted(p.stem for p in LABELS.glob("*.txt") if has_person(p) and (IMAGES / f"{p.stem}.jpg").exists())


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> BuiltDataset:
    return build(source=str(COCO128), out_dir=tmp_path_factory.mktemp("plain") / "tiny_coco", seed=0)


# --- byte-order marks, line ends, upper-case extensions: the same dataset -----------------------

ENCODINGS: dict[str, Callable[[str, bytes], bytes]] = {
    "utf-8 BOM": lambda stem, data: BOM + data,
    "CRLF": lambda stem, data: data.replace(b"\n", b"\r\n"),
    "BOM and CRLF, no final newline": lambda stem, data: BOM + data.rstrip(b"\n").replace(b"\n", b"\r\n"),
    "old Mac CR, blank lines, tabs": lambda stem, data: b"\r\r" + data.replace(b" ", b"\t").replace(b"\n", b"\r\r"),
}


@pytest.mark.parametrize("case", sorted(ENCODINGS))
def test_label_encodings_ultralytics_reads_give_the_same_dataset(
    case: str, plain: BuiltDataset, tmp_path: Path
) -> None:
    source = copy_of(tmp_path, label=ENCODINGS[case])
    built = build(source=str(source), out_dir=tmp_path / "tiny_coco", seed=0)
    assert dataset_files(built.out_dir) == dataset_files(plain.out_dir)
    assert built.card.skipped == plain.card.skipped


def test_upper_case_image_extensions_are_read(plain: BuiltDataset, tmp_path: Path) -> None:
    source = copy_of(tmp_path, image_name=lambda name: name.replace(".jpg", ".JPG"))
    built = build(source=str(source), out_dir=tmp_path / "tiny_coco", seed=0)
    assert dataset_files(built.out_dir) == dataset_files(plain.out_dir)  # written as .jpg
    assert {s.file: s.reason for s in built.card.skipped}["images/train2017/000000000250.JPG"].startswith("no label")


def test_an_upper_case_label_extension_is_not_a_label_as_for_ultralytics(plain: BuiltDataset, tmp_path: Path) -> None:
    stem = split_map(plain).popitem()[0]
    source = copy_of(tmp_path, label_name=lambda name: name.replace(".txt", ".TXT") if stem in name else name)
    built = build(source=str(source), out_dir=tmp_path / "tiny_coco", seed=0)
    reasons = {s.file: s.reason for s in built.card.skipped}
    assert reasons[f"images/train2017/{stem}.jpg"] == "no label file (background image)"
    assert reasons[f"labels/train2017/{stem}.TXT"].startswith("not a label file")
    assert stem not in split_map(built)


# --- polygons (the coco128-seg layout) ----------------------------------------------------------


def as_polygons(stem: str, data: bytes) -> bytes:
    """Each box as an octagon-like outline (8 points on its border) whose bounding box is the box."""
    rows = []
    for line in data.decode().splitlines():
        cls, xc, yc, w, h = line.split()
        x, y, half_w, half_h = float(xc), float(yc), float(w) / 2, float(h) / 2
        points = [(x - half_w, y - half_h / 3), (x - half_w / 2, y - half_h), (x + half_w / 3, y - half_h),
                  (x + half_w, y), (x + half_w / 2, y + half_h), (x, y + half_h), (x - half_w / 2, y + half_h),
                  (x - half_w, y + half_h / 4)]
        rows.append(" ".join([cls, *(f"{v:.6f}" for point in points for v in point)]))
    return ("\n".join(rows) + "\n").encode()


def boxes_of(label: Path) -> list[list[float]]:
    return [[float(v) for v in line.split()[1:]] for line in label.read_text().splitlines()]


def test_polygon_labels_become_their_boxes(plain: BuiltDataset, tmp_path: Path) -> None:
    source = copy_of(tmp_path, label=as_polygons)
    built = build(source=str(source), out_dir=tmp_path / "tiny_coco", seed=0)
    assert split_map(built) == split_map(plain)
    assert built.card.label_notes[POLYGON] == sum(s.boxes for s in plain.card.splits.values())
    for label in sorted(plain.out_dir.glob("labels/*/*.txt")):
        ours = boxes_of(built.out_dir / label.relative_to(plain.out_dir))
        expected = boxes_of(label)
        assert len(ours) == len(expected)
        for box, want in zip(ours, expected, strict=True):
            close = all(math.isclose(a, b, abs_tol=2e-6) for a, b in zip(box, want, strict=True))
            assert close, (label.name, box, want)


# --- coordinates: ultralytics' tolerance, then clipped to the image ----------------------------


def test_coordinates_up_to_1_01_are_read_and_clipped(plain: BuiltDataset, tmp_path: Path) -> None:
    stem = person_stems()[0]
    rows = (LABELS / f"{stem}.txt").read_text().splitlines()
    person = next(i for i, row in enumerate(rows) if row.split()[0] == "0")
    rows[person] = "0 0.5 0.4 1.01 0.2"  # 1% wider than the image, as ultralytics tolerates
    source = copy_of(tmp_path, label=lambda s, data: ("\n".join(rows) + "\n").encode() if s == stem else data)
    built = build(source=str(source), out_dir=tmp_path / "tiny_coco", seed=0)
    (label,) = built.out_dir.glob(f"labels/*/{stem}.txt")
    assert "0 0.500000 0.400000 1.000000 0.200000" in label.read_text().splitlines()
    assert built.card.label_notes == {CLIPPED: 1}
    assert split_map(built) == split_map(plain)


@pytest.mark.parametrize(("row", "reason"), [
    ("0 0.5 0.4 1.02 0.2", "non-normalized or out of bounds coordinates [1.02]"),
    ("0 -0.02 0.4 0.1 0.2", "negative label values [-0.02]"),
    ("0.5 0.5 0.4 0.1 0.2", "non-integer class labels [0.5]"),
    ("80 0.5 0.4 0.1 0.2", "Label class 80 exceeds dataset class count 80. Possible class labels are 0-79"),
])
def test_what_ultralytics_refuses_is_skipped_with_its_reason(row: str, reason: str, tmp_path: Path) -> None:
    stem = person_stems()[0]
    source = copy_of(tmp_path, label=lambda s, data: data + f"{row}\n".encode() if s == stem else data)
    built = build(source=str(source), out_dir=tmp_path / "tiny_coco", seed=0)
    (skipped,) = [s for s in built.card.skipped if s.file == f"labels/train2017/{stem}.txt"]
    lines = (LABELS / f"{stem}.txt").read_text().splitlines()
    assert (skipped.reason, skipped.line, skipped.text) == (reason, len(lines) + 1, row)
    assert stem not in split_map(built)


# --- too few images: the message says why ------------------------------------------------------


def test_too_few_person_images_names_each_reason_with_an_example(tmp_path: Path) -> None:
    persons = person_stems()
    out_of_bounds, not_text = set(persons[:10]), set(persons[10:13])

    def damage(stem: str, data: bytes) -> bytes:
        if stem in out_of_bounds:
            return data + b"0 0.5 0.5 2.5 0.2\n"
        return b"\xff\xfe0 0.5 0.5 0.1 0.1\n" if stem in not_text else data

    source = copy_of(tmp_path, label=damage)
    with pytest.raises(DatasetError) as error:
        build(source=str(source), out_dir=tmp_path / "tiny_coco", seed=0)
    message = str(error.value)
    first = persons[0]
    rows = len((LABELS / f"{first}.txt").read_text().splitlines())
    assert f"{source}: 48 images contain a person, the split (40, 10, 10) (train, val, test) needs 60" in message
    assert (f"10 x non-normalized or out of bounds coordinates: e.g. labels/train2017/{first}.txt "
            f"line {rows + 1}: 0 0.5 0.5 2.5 0.2") in message
    assert f"3 x not UTF-8 text: e.g. labels/train2017/{persons[10]}.txt line 1: \ufffd\ufffd0 0.5" in message
    assert "2 x no image file: e.g. labels/train2017/000000000656.txt" in message
    assert "2 x no label file (background image): e.g. images/train2017/000000000250.jpg" in message
    assert not (tmp_path / "tiny_coco").exists()


# --- each image's split depends on the image alone -------------------------------------------


# COCO128 has 61 person images, the dataset 60: 000000000201 (the least person) is left out, and 000000000127 is
# the image used with the least person, the next to go.
LEFT_OUT, LAST_USED = "000000000201", "000000000127"


def left_out(built: BuiltDataset) -> list[str]:
    return [item.stem for item in built.card.left_out]


def test_removing_any_one_image_moves_no_other_image(plain: BuiltDataset, tmp_path: Path) -> None:
    before = split_map(plain)
    assert left_out(plain) == [LEFT_OUT] and LEFT_OUT not in before
    removed = [sorted(s for s, split in before.items() if split == name)[i] for name in SPLIT_NAMES for i in (0, -1)]
    for n, stem in enumerate([*removed, LEFT_OUT]):
        source = copy_of(tmp_path / str(n), image_name=lambda name, stem=stem: None if stem in name else name)
        built = build(source=str(source), out_dir=tmp_path / str(n) / "tiny_coco", seed=0)
        after = split_map(built)
        if stem == LEFT_OUT:  # the image left out is gone: nothing else changes
            assert after == before and left_out(built) == []
            continue
        # 60 person images remain: the one left out comes in, to its own bucket; no other image moves
        assert after.pop(LEFT_OUT) == split_of(seed=0, stem=LEFT_OUT, sizes=DEFAULT_SPLIT), stem
        assert after == {s: split for s, split in before.items() if s != stem}, stem
        assert left_out(built) == []


def test_adding_one_image_moves_no_other_image(plain: BuiltDataset, tmp_path: Path) -> None:
    source = copy_of(tmp_path)
    shutil.copy(IMAGES / "000000000036.jpg", source / "images" / "train2017" / "000000999999.jpg")
    shutil.copy(LABELS / "000000000036.txt", source / "labels" / "train2017" / "000000999999.txt")
    built = build(source=str(source), out_dir=tmp_path / "tiny_coco", seed=0)
    after = split_map(built)
    assert after.pop("000000999999") == split_of(seed=0, stem="000000999999", sizes=DEFAULT_SPLIT)
    # 62 person images for 60 places: the image used with the least person leaves; no other image moves
    assert after == {s: split for s, split in split_map(plain).items() if s != LAST_USED}
    assert left_out(built) == sorted([LEFT_OUT, LAST_USED])


def test_adding_an_image_with_less_person_changes_nothing_else(plain: BuiltDataset, tmp_path: Path) -> None:
    source = copy_of(tmp_path)
    shutil.copy(IMAGES / f"{LEFT_OUT}.jpg", source / "images" / "train2017" / "000000999999.jpg")
    person = next(line for line in (LABELS / f"{LEFT_OUT}.txt").read_text().splitlines() if line.split()[0] == "0")
    (source / "labels" / "train2017" / "000000999999.txt").write_text(person + "\n")  # one of its two persons
    built = build(source=str(source), out_dir=tmp_path / "tiny_coco", seed=0)
    assert split_map(built) == split_map(plain)
    assert left_out(built) == [LEFT_OUT, "000000999999"]
    assert "its person box covers" in built.card.left_out[1].reason


# --- the same verdicts as ultralytics' own reader ----------------------------------------------

VARIANTS = {
    "boxes": b"0 0.5 0.5 0.2 0.2\n3 0.1 0.2 0.1 0.1\n",
    "bom crlf": BOM + b"0 0.5 0.5 0.2 0.2\r\n3 0.1 0.2 0.1 0.1\r\n",
    "empty": b"",
    "blank lines only": b"\n \n",
    "1.01 wide": b"0 0.5 0.5 1.01 0.2\n",
    "1.0101 wide": b"0 0.5 0.5 1.0101 0.2\n",
    "1.02 wide": b"0 0.5 0.5 1.02 0.2\n",
    "x at -0.005": b"0 -0.005 0.5 0.01 0.2\n",
    "x at -0.02": b"0 -0.02 0.5 0.01 0.2\n",
    "negative width": b"0 0.5 0.5 -0.005 0.2\n",
    "class 0.0": b"0.0 0.5 0.5 0.2 0.2\n",
    "class 0.5": b"0.5 0.5 0.5 0.2 0.2\n",
    "class 79": b"79 0.5 0.5 0.2 0.2\n",
    "class 80": b"80 0.5 0.5 0.2 0.2\n",
    "class -1": b"-1 0.5 0.5 0.2 0.2\n",
    "four values": b"0 0.5 0.5 0.2\n",
    "six values": b"0 0.5 0.5 0.2 0.2 0.9\n",
    "ragged": b"0 0.5 0.5 0.2 0.2\n0 0.5 0.5 0.2\n",
    "not a number": b"0 0.5 0.5 x 0.2\n",
    "nan": b"0 nan 0.5 0.2 0.2\n",
    "inf": b"0 0.5 inf 0.2 0.2\n",
    "not utf-8": b"0 0.5 0.5 0.2 0.2\n\xff\n",
    "polygon": b"0 0.1 0.1 0.3 0.1 0.3 0.4 0.1 0.4\n2 0.5 0.5 0.6 0.5 0.6 0.7\n",
    "polygon beyond 1.01": b"0 0.1 0.1 1.05 0.1 1.05 0.4\n",
    "polygon and box": b"0 0.1 0.1 0.3 0.1 0.3 0.4 0.1 0.4\n0 0.5 0.5 0.2 0.2\n",
    "polygon odd": b"0 0.1 0.1 0.3 0.1 0.3 0.4 0.1\n",
    "polygon with a 6-value row": b"0 0.1 0.1 0.3 0.1 0.3 0.4 0.1 0.4\n0 0.1 0.1 0.3 0.1 0.3\n",
    "duplicate boxes": b"0 0.5 0.5 0.2 0.2\n0 0.50 0.5 0.2 0.20\n",
}


@pytest.mark.parametrize("case", sorted(VARIANTS))
def test_the_same_verdict_as_ultralytics_verify_image_label(case: str, pair: tuple[Path, Path]) -> None:
    assert_read_as_ultralytics_reads(VARIANTS[case], pair)


# --- images: the formats and sizes ultralytics reads ---------------------------------------------


def _png(size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size).save(buffer, "PNG")
    return buffer.getvalue()


def test_image_checks() -> None:
    jpeg = (IMAGES / "000000000036.jpg").read_bytes()
    assert image_problem(jpeg) is None and image_problem(_png((10, 12))) is None
    assert image_problem(_png((9, 40))) == "image size (40, 9) <10 pixels"
    assert image_problem(jpeg[:-2]).startswith("corrupt JPEG")  # ultralytics would rewrite it in the dataset
    assert image_problem(b"GIF89a" + bytes(100)).startswith("cannot identify image file")


# --- property: on any label file, the verdict and the boxes of ultralytics' own reader ---------------

_NUMBERS = ["0", "0.5", "1", "1.01", "1.0100001", "1.02", "-0.005", "-0.01", "-0.02", "0.0", "1e-3", "nan", "inf", "x"]
_CLASSES = ["0"] * 6 + ["1", "1", "0.0", "0.5", "79", "80", "-1", "-0.005", "nan", "x"]
# our reason (kind) -> what ultralytics' message says for the same fault
_SAME_FAULT = {
    "non-normalized or out of bounds coordinates": "non-normalized or out of bounds coordinates",
    "negative label values": "negative label values",
    "non-integer class labels": "non-integer class labels",
    "labels require 5 columns": "labels require 5 columns",
    "labels mix segment and detection rows": "labels mix segment and detection rows",
    "Label class": "exceeds dataset class count",
    "could not convert string to float": "could not convert string to float",
    "rows with different numbers of values": "inhomogeneous shape",
    "polygon with an odd number of coordinates": "cannot reshape array",
    "polygon without points": "zero-size array",
    "not UTF-8 text": "codec can't decode",
}


@st.composite
def label_files(draw: st.DrawFn) -> bytes:
    """Mostly well-formed boxes or polygons near the bounds, some faults of every kind, BOM and line-end variants."""
    plain = st.integers(0, 1000).map(lambda n: f"{n / 1000:g}")
    near = st.integers(-50, 1050).map(lambda n: f"{n / 1000:.3f}")
    width = draw(st.sampled_from([5, 5, 5, 9, 13, 17]))
    if draw(st.booleans()):  # half the files: only faults ultralytics tolerates (bounds within 1%, BOM, line ends)
        number = st.one_of(plain, st.integers(-10, 1010).map(lambda n: f"{n / 1000:.3f}"))
        classes, widths = st.sampled_from(["0", "0", "0", "1", "0.0", "79"]), st.just(width)
    else:
        number = st.one_of(plain, plain, plain, st.sampled_from(_NUMBERS), near)
        classes, widths = st.sampled_from(_CLASSES), st.sampled_from([width] * 8 + [1, 4, 5, 6, 7])
    values = widths.flatmap(lambda n: st.lists(number, min_size=n - 1, max_size=n - 1))
    rows = draw(st.lists(st.tuples(classes, values), min_size=1, max_size=5))
    if rows and draw(st.booleans()):
        rows.append(rows[0])  # a duplicate row
    end = draw(st.sampled_from(["\n", "\r\n", "\r", "\n\n"]))
    text = end.join(" ".join([cls, *values]) for cls, values in rows) + draw(st.sampled_from(["", end]))
    data = text.encode()
    if draw(st.booleans()):
        data = BOM + data
    if draw(st.sampled_from([False] * 15 + [True])):
        data += b"\xff"
    return data


def _as_we_keep_them(boxes: list[list[float]]) -> list[tuple[float, ...]]:
    """ultralytics' boxes after what we do on top (docs/dataset.md): clip to the image, drop empty and duplicate."""
    kept: set[tuple[float, ...]] = set()
    for xc, yc, w, h in boxes:
        x1, y1, x2, y2 = xc - w / 2, yc - h / 2, xc + w / 2, yc + h / 2
        if min(x1, y1) < -1e-6 or max(x2, y2) > 1 + 1e-6:
            x1, y1, x2, y2 = max(x1, 0), max(y1, 0), min(x2, 1), min(y2, 1)
            xc, yc, w, h = (float(f"{v:.6f}") for v in ((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1))
        if w > 0 and h > 0:
            kept.add((round(xc, 6), round(yc, 6), round(w, 6), round(h, 6)))
    return sorted(kept)


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("pair")
    (root / "images").mkdir()
    (root / "labels").mkdir()
    shutil.copy(IMAGES / "000000000036.jpg", root / "images" / "a.jpg")
    return root / "images" / "a.jpg", root / "labels" / "a.txt"


def assert_read_as_ultralytics_reads(data: bytes, pair: tuple[Path, Path]) -> str:
    """The same verdict as ultralytics' `verify_image_label` (for the same fault), and the same person boxes.

    Returns the outcome in words, for Hypothesis' statistics."""
    from ultralytics.data.utils import verify_image_label

    image, label = pair
    label.write_bytes(data)
    result = verify_image_label((str(image), str(label), "", False, 80, 0, 0, False))
    try:
        ours = parse_label(data=data)
    except LabelError as error:
        assert result[0] is None, f"we refuse ({error}), ultralytics reads it"
        same = next(theirs for kind, theirs in _SAME_FAULT.items() if error.kind.startswith(kind))
        assert same in result[-1], (error.reason, result[-1])
        return f"refused: {error.kind[:40]}"
    assert result[0] is not None, f"ultralytics refuses ({result[-1]}), we read it"
    theirs = _as_we_keep_them([[float(v) for v in row[1:]] for row in result[1] if row[0] == 0])
    mine = sorted(tuple(round(float(v), 6) for v in line.split()[1:]) for line in ours.person_lines)
    assert len(mine) == len(theirs)
    for a, b in zip(mine, theirs, strict=True):
        assert all(math.isclose(x, y, abs_tol=2e-6) for x, y in zip(a, b, strict=True)), (a, b)
    return "read, with person boxes kept" if ours.person_lines else "read, no person box kept"


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=label_files())
def test_any_label_file_gets_ultralytics_verdict_and_boxes(data: bytes, pair: tuple[Path, Path]) -> None:
    event(assert_read_as_ultralytics_reads(data, pair))
