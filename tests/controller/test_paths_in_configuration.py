"""Relative locations in configuration are resolved against where they were written (issue 10, places)."""

from __future__ import annotations

from pathlib import Path

from controller.submitting import resolve_path


def test_a_path_written_in_a_grid_file_is_relative_to_that_file(tmp_path: Path) -> None:
    (tmp_path / "examples" / "w").mkdir(parents=True)
    (tmp_path / "examples" / "w" / "b.pt").write_bytes(b"weights")
    assert resolve_path("w/b.pt", written_in=tmp_path / "examples", root=tmp_path) == "examples/w/b.pt"


def test_a_path_outside_the_project_becomes_absolute(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "b.pt").write_bytes(b"weights")
    (tmp_path / "project").mkdir()
    resolved = resolve_path("../elsewhere/b.pt", written_in=tmp_path / "project", root=tmp_path / "project")
    assert resolved == str((tmp_path / "elsewhere" / "b.pt").resolve())


def test_names_uris_and_absolute_paths_are_left_alone(tmp_path: Path) -> None:
    for spec in ("yolov8n.pt", "yolov8n.yaml", "s3://bucket/w.pt", str(tmp_path / "absent.pt")):
        assert resolve_path(spec, written_in=tmp_path, root=tmp_path) == spec
