"""Reading a YOLO label file exactly as ultralytics 8.4.190 reads it (pure).

The rules are those of `ultralytics.data.utils.verify_image_label` and
`ultralytics.utils.ops.segments2boxes`, re-done with the standard library:

- the file is decoded as `utf-8-sig` (a leading byte-order mark is dropped),
  lines are split on any line break (LF, CRLF, CR, ...), blank lines ignored,
  values on a line are split on any whitespace;
- if any row has more than 6 values the file is a segmentation (polygon) file:
  every row is `class x1 y1 x2 y2 ...`, no row may have exactly 5 values, and
  each polygon becomes its bounding box `xc yc w h` (min/max of its points);
  otherwise every row must have the same number of values, and that number is 5;
- numbers are parsed by `float()` (the parser numpy uses) and held as float32,
  as ultralytics holds them, so the bounds below are float32 comparisons;
- coordinates (xc, yc, w, h, after the polygon conversion) may exceed 1 by up
  to 0.01 (`<= 1.01`); values may be negative down to -0.01 when every width
  and height is >= 0; class ids are integers (`0.0` is 0) below 80 (COCO128's
  80 classes, from coco128.yaml).

A file that breaks a rule raises LabelError with ultralytics' own reason and
the first line at fault. What ultralytics does later, at training time, is
done here once, on the person boxes that are kept:

- a box is clipped to the image (ultralytics clips boxes to the image in its
  augmentations); edges less than 1e-6 outside are left as written, since
  labels carry 6 decimals and such an edge is rounding, not a box outside;
- a box with no area left is dropped (ultralytics never trains on it), and a
  box equal to one already kept is dropped (ultralytics removes duplicates).

Boxes read as written and left unchanged keep the source's own number text;
boxes made from polygons or clipped are written with 6 decimals.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

PERSON_CLASS = 0
COCO_CLASSES = 80  # COCO128's data.yaml: class ids 0..79
_EDGE_EPS = 1e-6  # labels carry 6 decimals: an edge this close to the border is on it
_EXAMPLE_CHARS = 80
_BOM = b"\xef\xbb\xbf"  # "utf-8-sig" drops it

# Notes on what was done to person boxes while reading (counted in the card).
POLYGON = "person polygons turned into boxes"
CLIPPED = "person boxes clipped to the image"
NO_AREA = "person boxes with no area dropped"
DUPLICATE = "duplicate person boxes dropped"


def f32(value: float) -> float:
    """`value` rounded to float32, as numpy's `np.float32(value)` (overflow gives +-inf)."""
    try:
        return float(struct.unpack("f", struct.pack("f", value))[0])
    except OverflowError:
        return math.copysign(math.inf, value)


_MAX_COORD = f32(1.01)  # ultralytics compares its float32 array with 1.01, i.e. with float32(1.01)
_MIN_VALUE = f32(-0.01)


class LabelError(ValueError):
    """A label file ultralytics would ignore as corrupt: its reason and the first line at fault.

    `kind` is ultralytics' reason without the values (for counting files by
    reason), `detail` the values with their leading separator (reason = kind +
    detail), `line` the 1-based line number (None when the reason is about the
    whole file) and `text` that line as written.
    """

    def __init__(self, kind: str, detail: str = "", *, line: int | None = None, text: str = "") -> None:
        self.kind, self.detail, self.line = kind, detail, line
        self.text = text if len(text) <= _EXAMPLE_CHARS else text[: _EXAMPLE_CHARS - 3] + "..."
        super().__init__(self.reason)

    @property
    def reason(self) -> str:
        return self.kind + self.detail


@dataclass(frozen=True)
class ParsedLabel:
    person_lines: tuple[str, ...]  # "0 xc yc w h", ready to write
    boxes: int  # every row of the file, any class
    notes: Mapping[str, int] = field(default_factory=dict)  # POLYGON, CLIPPED, ... -> how many


@dataclass(frozen=True)
class _Row:
    line: int
    text: str
    values: tuple[float, ...]  # float32: class, xc, yc, w, h
    numbers: tuple[str, ...] | None  # the source's number text, None when computed from a polygon


def _number(token: str, *, line: int, text: str) -> float:
    try:
        return f32(float(token))
    except ValueError:
        raise LabelError("could not convert string to float", f": {token!r}", line=line, text=text) from None


def _line_at(data: bytes, offset: int) -> tuple[int, str]:
    """The 1-based number and the text of the line holding byte `offset` (LF, CRLF or CR line ends)."""
    end = 0
    for number, raw in enumerate(data.splitlines(keepends=True), start=1):
        end += len(raw)
        if offset < end:
            return number, raw.rstrip(b"\r\n").decode("utf-8", errors="replace")
    return 1, ""


def _rows_of(data: bytes) -> list[tuple[int, str, list[str]]]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line, text = _line_at(data, error.start + (len(_BOM) if data.startswith(_BOM) else 0))
        raise LabelError("not UTF-8 text", f": {error}", line=line, text=text) from None
    return [(number, raw.strip(), raw.split()) for number, raw in enumerate(text.splitlines(), start=1) if raw.strip()]


def _extreme(pick: Callable[[list[float]], float], values: list[float]) -> float:
    """min or max as numpy computes it: NaN if any value is NaN."""
    return math.nan if any(math.isnan(v) for v in values) else pick(values)


def _polygon_rows(rows: list[tuple[int, str, list[str]]]) -> list[_Row]:
    five = next(((n, t) for n, t, tokens in rows if len(tokens) == 5), None)
    if five is not None:
        raise LabelError("labels mix segment and detection rows", line=five[0], text=five[1])
    classes = [_number(tokens[0], line=n, text=t) for n, t, tokens in rows]  # numpy converts the classes first
    polygons = []
    for number, text, tokens in rows:  # then each row's points, reshaped to (x, y) pairs
        points = [_number(token, line=number, text=text) for token in tokens[1:]]
        if len(points) % 2:
            raise LabelError("polygon with an odd number of coordinates", f": {len(points)}", line=number, text=text)
        polygons.append(points)
    result = []
    for cls, points, (number, text, _) in zip(classes, polygons, rows, strict=True):  # then segments2boxes
        if not points:
            raise LabelError("polygon without points", line=number, text=text)
        xs, ys = points[0::2], points[1::2]
        x1, y1, x2, y2 = _extreme(min, xs), _extreme(min, ys), _extreme(max, xs), _extreme(max, ys)
        box = (f32(f32(x1 + x2) / 2), f32(f32(y1 + y2) / 2), f32(x2 - x1), f32(y2 - y1))  # xyxy2xywh in float32
        result.append(_Row(line=number, text=text, values=(cls, *box), numbers=None))
    return result


def _box_rows(rows: list[tuple[int, str, list[str]]]) -> list[_Row]:
    width = len(rows[0][2])
    ragged = next(((n, t, len(tokens)) for n, t, tokens in rows if len(tokens) != width), None)
    if ragged is not None:
        raise LabelError(
            "rows with different numbers of values", f": {width} on the first row, {ragged[2]} on this one",
            line=ragged[0], text=ragged[1],
        )
    values = [[_number(token, line=n, text=t) for token in tokens] for n, t, tokens in rows]
    if width != 5:
        raise LabelError(f"labels require 5 columns, {width} columns detected", line=rows[0][0], text=rows[0][1])
    return [
        _Row(line=n, text=t, values=tuple(v), numbers=tuple(tokens[1:]))
        for (n, t, tokens), v in zip(rows, values, strict=True)
    ]


def _first(rows: list[_Row], bad: list[bool]) -> _Row:
    return next(row for row, is_bad in zip(rows, bad, strict=True) if is_bad)


def _short(value: float) -> str:
    """The shortest text that reads back as the same float32 (as numpy prints it)."""
    if not math.isfinite(value):
        return str(value)
    return next(text for p in range(1, 10) if f32(float(text := f"{value:.{p}g}")) == value)


def _shown(values: list[float]) -> str:
    return "[" + " ".join(_short(v) for v in values) + "]"


def _check(rows: list[_Row]) -> None:
    """ultralytics' assertions, in its order."""
    coords = [row.values[1:] for row in rows]
    out = [any(not v <= _MAX_COORD for v in c) for c in coords]  # NaN fails too
    if any(out):
        row = _first(rows, out)
        shown = [v for c in coords for v in c if not v <= _MAX_COORD]
        kind = "non-normalized or out of bounds coordinates"
        raise LabelError(kind, f" {_shown(shown)}", line=row.line, text=row.text)
    everything = [v for row in rows for v in row.values]
    sizes_ok = all(v >= 0 for row in rows for v in row.values[3:5])
    if not (all(v >= 0 for v in everything) or (all(v >= _MIN_VALUE for v in everything) and sizes_ok)):
        negative = [
            any(not v >= _MIN_VALUE for v in row.values) or any(not v >= 0 for v in row.values[3:5]) for row in rows
        ]
        row = _first(rows, negative)
        shown = [v for v in everything if v < 0]
        raise LabelError("negative label values", f" {_shown(shown)}", line=row.line, text=row.text)
    fractional = [not (math.isfinite(row.values[0]) and row.values[0] % 1 == 0) for row in rows]
    if any(fractional):
        row = _first(rows, fractional)
        raise LabelError("non-integer class labels", f" {_shown([row.values[0]])}", line=row.line, text=row.text)
    too_big = [row.values[0] >= COCO_CLASSES for row in rows]
    if any(too_big):
        row = _first(rows, too_big)
        raise LabelError(
            f"Label class {int(max(r.values[0] for r in rows))} exceeds dataset class count {COCO_CLASSES}.",
            f" Possible class labels are 0-{COCO_CLASSES - 1}", line=row.line, text=row.text,
        )


def _clipped(row: _Row) -> tuple[tuple[float, float, float, float], bool]:
    """The row's box clipped to the image, and whether clipping changed it."""
    _, xc, yc, w, h = row.values
    x1, y1, x2, y2 = xc - w / 2, yc - h / 2, xc + w / 2, yc + h / 2
    if min(x1, y1) >= -_EDGE_EPS and max(x2, y2) <= 1 + _EDGE_EPS:
        return (xc, yc, w, h), False
    x1, y1, x2, y2 = max(x1, 0.0), max(y1, 0.0), min(x2, 1.0), min(y2, 1.0)
    return ((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1), True


def _person_lines(rows: list[_Row]) -> tuple[tuple[str, ...], dict[str, int]]:
    notes = {POLYGON: 0, CLIPPED: 0, NO_AREA: 0, DUPLICATE: 0}
    lines: list[str] = []
    seen: set[tuple[float, ...]] = set()
    for row in rows:
        if row.values[0] != PERSON_CLASS:
            continue
        box, clipped = _clipped(row)
        notes[POLYGON] += row.numbers is None
        notes[CLIPPED] += clipped
        if row.numbers is not None and not clipped:
            numbers = list(row.numbers)
        else:
            numbers = [f"{v:.6f}" for v in box]
        key = tuple(f32(float(n)) for n in numbers)
        if key[2] <= 0 or key[3] <= 0:
            notes[NO_AREA] += 1
        elif key in seen:
            notes[DUPLICATE] += 1
        else:
            seen.add(key)
            lines.append(" ".join([str(PERSON_CLASS), *numbers]))
    return tuple(lines), {k: v for k, v in notes.items() if v}


def parse_label(*, data: bytes) -> ParsedLabel:
    """The person boxes of a YOLO label file (boxes or polygons), read as ultralytics reads it.

    Raises LabelError (a ValueError) with ultralytics' reason when ultralytics
    would ignore the file as corrupt.
    """
    rows = _rows_of(data)
    if not rows:
        return ParsedLabel(person_lines=(), boxes=0)
    is_polygon_file = any(len(tokens) > 6 for _, _, tokens in rows)
    parsed = _polygon_rows(rows) if is_polygon_file else _box_rows(rows)
    _check(parsed)
    person_lines, notes = _person_lines(parsed)
    return ParsedLabel(person_lines=person_lines, boxes=len(parsed), notes=notes)
