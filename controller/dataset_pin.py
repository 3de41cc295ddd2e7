"""Which dataset version a grid trains on: the md5 pinned in grid.yaml or in the DVC pointer file."""

from __future__ import annotations

from pathlib import Path

import yaml

from contract.grid import GridSpec
from controller.errors import InvalidInput, Problem


def pointer_file(dataset_dir: Path) -> Path:
    return dataset_dir.with_name(dataset_dir.name + ".dvc")


def pinned_md5(grid: GridSpec, *, base_dir: Path) -> str:
    """grid.yaml's dataset.md5 if set, else the md5 recorded in <dataset>.dvc."""
    if grid.dataset_md5:
        return grid.dataset_md5
    pointer = pointer_file(base_dir / grid.dataset_path)
    try:
        outs = yaml.safe_load(pointer.read_text())["outs"]
        return str(outs[0]["md5"])
    except FileNotFoundError as error:
        raise InvalidInput([Problem("dataset.path", f"{pointer} does not exist: track the dataset with DVC "
                                    "or pin dataset.md5 in the grid")]) from error
    except (KeyError, IndexError, TypeError, yaml.YAMLError) as error:
        raise InvalidInput([Problem(str(pointer), f"not a DVC pointer file with outs[0].md5 ({error})")]) from error
