"""tinycoco: turn COCO128 into `tiny_coco`, a person-detection dataset of 60 of the 61 COCO128 images with a person.

Public API (used by `python -m tinycoco build`, which `python -m controller data build` runs):

    from tinycoco import build, default_source, DatasetError
    built = build(source=default_source(), out_dir=Path("data/tiny_coco"), seed=100)
    print(built.summary())

Standard library only. The controller never imports it (an import-linter contract), so its image does not ship it.
"""

from tinycoco.building import BuiltDataset, build
from tinycoco.card import Card, SplitSummary
from tinycoco.errors import DatasetError
from tinycoco.selection import DEFAULT_SPLIT, SPLIT_NAMES, Skipped
from tinycoco.source import DEFAULT_SOURCE_URL, SOURCE_ENV, default_source

__all__ = [
    "DEFAULT_SOURCE_URL",
    "DEFAULT_SPLIT",
    "SOURCE_ENV",
    "SPLIT_NAMES",
    "BuiltDataset",
    "Card",
    "DatasetError",
    "Skipped",
    "SplitSummary",
    "build",
    "default_source",
]
