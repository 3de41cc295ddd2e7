"""Build `tiny_coco` from COCO128: the public entry point of the package.

    read source (I/O) -> inventory, split, card, file tree (pure) -> atomic write (I/O)
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tinycoco.card import DATA_YAML, Card, make_card
from tinycoco.errors import DatasetError
from tinycoco.selection import (
    DEFAULT_SEED,
    DEFAULT_SPLIT,
    SPLIT_NAMES,
    SplitPlan,
    check_seed,
    check_split_sizes,
    split_samples,
    take_inventory,
)
from tinycoco.source import DOWNLOAD_TIMEOUT_S, default_source, read_source


@dataclass(frozen=True)
class BuiltDataset:
    """What `build` made: the card (also written as card.json) and where it came from."""

    out_dir: Path
    card: Card
    source: str  # the source as given (URL or path)
    source_archive_sha256: str | None  # sha256 of the zip's bytes; None for a folder

    def summary(self) -> str:
        """A few lines for the CLI to print."""
        card = self.card
        lines = [f"built {self.out_dir} from {self.source} (seed {card.seed})"]
        lines += [f"  {n}: {card.splits[n].images} images, {card.splits[n].boxes} person boxes" for n in SPLIT_NAMES]
        counts = tuple(card.splits[n].images for n in SPLIT_NAMES)
        if counts != card.split_proportions:
            lines.append(
                f"  note: {'/'.join(map(str, counts))}, not {'/'.join(map(str, card.split_proportions))}: each"
                " image's split depends on its id and the seed only (docs/dataset.md, The split)"
            )
        lines += [f"  left out {item.stem}: {item.reason}" for item in card.left_out]
        lines.append(f"  source content sha256: {card.source_content_sha256}")
        if self.source_archive_sha256:
            lines.append(f"  source archive sha256: {self.source_archive_sha256}")
        lines += [f"  {what}: {count}" for what, count in card.label_notes.items()]
        lines.append(f"  skipped {len(card.skipped)} source files:")
        lines += [f"    {s.where if s.line is not None else s.file}: {s.reason}" for s in card.skipped]
        return "\n".join(lines)


def build(
    *,
    source: str | None = None,
    out_dir: Path,
    seed: int = DEFAULT_SEED,
    split: tuple[int, int, int] = DEFAULT_SPLIT,
    timeout_s: float = DOWNLOAD_TIMEOUT_S,
) -> BuiltDataset:
    """Turn a COCO128 source (URL, zip or folder) into an ultralytics dataset at `out_dir`.

    `source=None` means `default_source()`: $TP4_COCO128_SOURCE, else the official URL.
    `split` gives the proportions of train/val/test and, summed, the number of
    person images used (60 for 40/10/10; with more in the source, those whose
    persons cover the least of the image are left out, and the card says which
    and why). Each image's split depends on its id and `seed` only
    (`tinycoco.selection.split_of`), so the counts are near the proportions;
    COCO128 with DEFAULT_SEED (100) gives exactly 40/10/10.

    Raises DatasetError, naming the path or value, on bad input; `out_dir` is
    then left as it was. On success `out_dir` is replaced as a whole.
    """
    sizes = check_split_sizes(split)
    seed = check_seed(seed)
    target = _check_out_dir(Path(out_dir))
    source = default_source() if source is None else source
    source_files = read_source(source=source, timeout_s=timeout_s)
    inventory = take_inventory(layout=source_files.layout, contents=source_files.contents)
    plan = split_samples(inventory=inventory, seed=seed, sizes=sizes, where=source_files.where)
    card = make_card(source=source_files, inventory=inventory, plan=plan, seed=seed, sizes=sizes)
    tree = render_tree(plan=plan, card=card, contents=source_files.contents)
    try:
        write_atomically(files=tree, out_dir=target)
    except OSError as error:
        raise DatasetError(f"cannot write {target}: {error}") from error
    return BuiltDataset(
        out_dir=target, card=card, source=source, source_archive_sha256=source_files.archive_sha256
    )


def render_tree(*, plan: SplitPlan, card: Card, contents: Mapping[str, bytes]) -> dict[str, bytes]:
    """Every output file, by its path relative to the dataset folder."""
    files = {
        "data.yaml": DATA_YAML.encode(),
        "card.json": card.to_json().encode(),
        "CARD.md": card.to_markdown().encode(),
    }
    for split, samples in plan.splits.items():
        for sample in samples:
            files[f"images/{split}/{sample.stem}{sample.suffix}"] = contents[sample.source_name]
            files[f"labels/{split}/{sample.stem}.txt"] = ("\n".join(sample.person_lines) + "\n").encode()
    return files


def _check_out_dir(out_dir: Path) -> Path:
    if out_dir.exists() and not out_dir.is_dir():
        raise DatasetError(f"output {out_dir} exists and is not a folder")
    if not out_dir.name or out_dir.name in (".", ".."):
        raise DatasetError(f"output {out_dir} must name a folder")
    return out_dir


def write_atomically(*, files: Mapping[str, bytes], out_dir: Path) -> None:
    """Write a file tree into a temporary folder beside `out_dir`, then swap it in."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.building-", dir=out_dir.parent))
    try:
        for relative, data in sorted(files.items()):
            path = staging / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        staging.chmod(0o755)  # mkdtemp makes it private
        _swap_in(staging=staging, out_dir=out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _swap_in(*, staging: Path, out_dir: Path) -> None:
    # Two renames: POSIX cannot rename a folder over a non-empty one. Either way `out_dir` is never a
    # half-written dataset. Another build of the same folder (two `data build` at once) may swap in between
    # our two renames: then we go again, and the last build to swap in stays, whole; the others' folders go.
    taken = (errno.EEXIST, errno.ENOTEMPTY)  # rename's answers when `out_dir` is there again
    while True:
        if not os.path.lexists(out_dir):
            try:
                staging.rename(out_dir)
                return
            except OSError as error:
                if error.errno not in taken:
                    raise
                continue
        retired = out_dir.with_name(f".{out_dir.name}.old-{uuid.uuid4().hex[:12]}")
        try:
            out_dir.rename(retired)
        except FileNotFoundError:
            continue  # another build retired it first
        try:
            staging.rename(out_dir)
        except BaseException as error:
            if not isinstance(error, OSError) or error.errno not in taken:
                retired.rename(out_dir)
                raise
        else:
            shutil.rmtree(retired, ignore_errors=True)
            return
        shutil.rmtree(retired, ignore_errors=True)  # another build swapped in: its folder is the newer one
