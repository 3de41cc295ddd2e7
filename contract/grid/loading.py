"""Reading a grid: a parsed grid.yaml (or a Grid resource's spec) validated into a GridSpec, every problem at once,
as contract.errors.InvalidInput (exit code 2)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from contract.errors import InvalidInput, Problem
from contract.grid import messages
from contract.grid.limits import DEFAULT_MAX_POINTS
from contract.grid.messages import describe
from contract.grid.spec import GridSpec
from contract.grid.yaml_reader import read_yaml


def problems_of(error: ValidationError, *, source: str, prefix: str = "") -> list[Problem]:
    """A GridSpec ValidationError as our Problems, each located like `grid.yaml: axes.lr0[1]`."""
    return messages.problems_of(error, source=source, prefix=prefix, model=GridSpec)


def parse_grid(raw: Any, *, source: str, base_dir: Path | None, max_points: int = DEFAULT_MAX_POINTS) -> GridSpec:
    """Validate a parsed grid.yaml; raise InvalidInput listing every problem.

    `base_dir` is the project folder the Jobs run in (dataset.path is relative to it); None for a
    Grid resource, whose Jobs pull the dataset from the DVC remote: its md5 must then be pinned.
    `max_points` bounds the number of train points (each is a Job)."""
    problems: list[Problem] = []
    grid: GridSpec | None = None
    if not isinstance(raw, dict):
        raise InvalidInput([Problem(source, f"must be a mapping (a grid.yaml document), got {describe(raw)}")])
    try:
        grid = GridSpec.model_validate(raw)
    except ValidationError as error:
        problems += problems_of(error, source=source)
        problems += _cross_field_problems_of_raw(raw, source=source, known=problems)
    problems += _dataset_problems(raw.get("dataset"), base_dir=base_dir, source=source)
    if grid is not None and grid.n_points > max_points:
        where = "search.trials" if grid.sampled else "axes"
        extra = f", with confirm's {grid.n_points - grid.n_searched} re-runs" if grid.confirm else ""
        problems.append(Problem(f"{source}: {where}", f"gives {grid.n_points} points{extra}, more than the limit "
                                f"of {max_points} (raise it with --max-points if the cluster can take them)"))
    if problems or grid is None:
        raise InvalidInput(problems)
    return grid


def _cross_field_problems_of_raw(raw: dict[str, Any], *, source: str, known: list[Problem]) -> list[Problem]:
    """The 'set twice' problem even when another field is wrong (pydantic runs cross-field checks last)."""
    train, axes = raw.get("train") or {}, raw.get("axes") or {}
    if not isinstance(train, dict) or not isinstance(axes, dict):
        return []
    found = [Problem(f"{source}: axes.{name}", f"is also fixed in train.{name}: set it in one place")
             for name in axes if name in train]
    return [p for p in found if p not in known]


def _dataset_problems(dataset: Any, *, base_dir: Path | None, source: str) -> list[Problem]:
    if not isinstance(dataset, dict) or not isinstance(dataset.get("path"), str) or not dataset["path"]:
        return []
    path, md5 = dataset["path"], dataset.get("md5")
    if Path(path).is_absolute() or ".." in Path(path).parts:
        return [Problem(f"{source}: dataset.path", f"must be a path inside the project folder, got {path!r}")]
    if base_dir is None:
        if md5 is None:
            return [Problem(f"{source}: dataset.md5", "is required in a Grid resource (no <path>.dvc to read it "
                            "from): submit with `python -m controller --backend kubernetes submit-grid`, "
                            "which pins it")]
        return []
    folder = base_dir / path
    pointer = folder.with_name(folder.name + ".dvc")
    if not folder.is_dir() and not pointer.is_file():
        return [Problem(f"{source}: dataset.path", f"no dataset at {folder} and no DVC pointer {pointer} "
                        "(build it with `python -m controller data build`)")]
    return []


def load_grid(path: Path, *, base_dir: Path | None = None, max_points: int = DEFAULT_MAX_POINTS) -> GridSpec:
    """Read and validate a grid file; dataset.path is relative to `base_dir`, the
    project folder the Jobs run in (default: the grid file's folder). InvalidInput listing every problem."""
    raw = read_yaml(path)
    return parse_grid(raw, source=str(path), base_dir=base_dir or path.resolve().parent, max_points=max_points)
