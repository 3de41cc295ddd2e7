"""Two grids of one project may not take one Job name, even when submitted at the same moment
(controller.local.state.claim_job_names, called by the local executor before any Job exists)."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

from controller.local.state import claim_job_names, job_owners


def _claim(args: tuple[str, str, list[str]]) -> dict[str, str]:
    root, grid, names = args
    return claim_job_names(Path(root), grid, names)


def test_a_claimed_name_belongs_to_its_grid(tmp_path: Path) -> None:
    assert claim_job_names(tmp_path, "a", ["train-1", "finalize-a"]) == {}
    assert job_owners(tmp_path) == {"train-1": "a", "finalize-a": "a"}
    assert claim_job_names(tmp_path, "b", ["train-1", "finalize-b"]) == {"train-1": "a"}
    assert "finalize-b" not in job_owners(tmp_path)  # a refused claim records nothing
    assert claim_job_names(tmp_path, "a", ["train-2", "finalize-a"]) == {}  # a resubmission replaces its claim
    assert claim_job_names(tmp_path, "b", ["train-1", "finalize-b"]) == {}


def test_grids_claiming_together_never_share_a_name(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    for round_ in range(3):
        root = tmp_path / f"round-{round_}"
        root.mkdir()
        asks = [(str(root), f"grid-{i}", ["train-shared", f"finalize-grid-{i}"]) for i in range(4)]
        with context.Pool(4) as pool:
            results = pool.map(_claim, asks)
        assert sum(not clashes for clashes in results) == 1, results
        winner = next(ask[1] for ask, clashes in zip(asks, results, strict=True) if not clashes)
        assert job_owners(root)["train-shared"] == winner
        assert all(clashes == {"train-shared": winner} for clashes in results if clashes)
