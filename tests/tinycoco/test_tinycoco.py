"""The dataset builder on the real COCO128 copy, a zip of it, a local HTTP server, and DVC."""

from __future__ import annotations

import http.server
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from PIL import Image

from tests.helpers.paths import COCO128, REPO
from tinycoco import SPLIT_NAMES, BuiltDataset, DatasetError, build
from tinycoco.layout import locate_layout
from tinycoco.selection import DEFAULT_SEED, split_of

KNOWN_SKIPPED = {
    "images/train2017/000000000250.jpg": "no label file (background image)",
    "images/train2017/000000000508.jpg": "no label file (background image)",
    "labels/train2017/000000000656.txt": "no image file",
    "labels/train2017/000000000659.txt": "no image file",
}


# --- helpers ----------------------------------------------------------------------


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def split_stems(root: Path) -> dict[str, set[str]]:
    return {split: {p.stem for p in (root / "images" / split).iterdir()} for split in SPLIT_NAMES}


def zip_of(folder: Path, *, prefix: str = "coco128/", compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    """A zip laid out like the official coco128.zip (everything under coco128/)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, prefix + path.relative_to(folder).as_posix())
    return buffer.getvalue()


def dvc_md5(folder: Path, scratch: Path) -> str:
    """The md5 DVC records for a folder, computed by DVC's own hashing library."""
    from dvc_data.hashfile.build import build as hash_tree
    from dvc_data.hashfile.db import HashFileDB
    from dvc_objects.fs.local import LocalFileSystem

    fs = LocalFileSystem()
    _, _, tree = hash_tree(HashFileDB(fs, str(scratch)), str(folder), fs, "md5", dry_run=True)
    return str(tree.hash_info.value)


def pinned_md5() -> str:
    pointer = yaml.safe_load((REPO / "data" / "tiny_coco.dvc").read_text())
    return str(pointer["outs"][0]["md5"])


def assert_failed_cleanly(
    error: pytest.ExceptionInfo[DatasetError], *, names: str, out: Path, before: set[str]
) -> None:
    assert names in str(error.value)
    assert not out.exists()
    assert {p.name for p in out.parent.iterdir()} == before  # no staging folder left behind


# --- builds shared by several tests (the source is read-only, so one build each) ----


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> BuiltDataset:
    return build(source=str(COCO128), out_dir=tmp_path_factory.mktemp("default") / "tiny_coco")  # the default seed


@pytest.fixture(scope="module")
def coco_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("zip") / "coco128.zip"
    path.write_bytes(zip_of(COCO128))
    return path


# --- what the dataset is ------------------------------------------------------------


def test_splits_follow_the_proportions_and_ultralytics_layout(built: BuiltDataset) -> None:
    root = built.out_dir
    for split in SPLIT_NAMES:
        images = sorted(p.stem for p in (root / "images" / split).iterdir())
        labels = sorted(p.stem for p in (root / "labels" / split).iterdir())
        assert images == labels and built.card.splits[split].images == len(images)
    # the handout's 40/10/10: 60 of the 61 person images, the default seed's hash buckets give exactly 40/10/10
    assert [built.card.splits[s].images for s in SPLIT_NAMES] == [40, 10, 10]
    assert built.card.seed == DEFAULT_SEED == 100
    assert sorted(p.name for p in root.iterdir()) == ["CARD.md", "card.json", "data.yaml", "images", "labels"]


def test_data_yaml_is_relative_to_its_folder(built: BuiltDataset) -> None:
    data = yaml.safe_load((built.out_dir / "data.yaml").read_text())
    assert "path" not in data  # ultralytics then resolves splits against the yaml's folder
    assert data == {"train": "images/train", "val": "images/val", "test": "images/test", "names": {0: "person"}}


def test_no_image_is_in_two_splits(built: BuiltDataset) -> None:
    stems = split_stems(built.out_dir)
    assert sum(map(len, stems.values())) == len(stems["train"] | stems["val"] | stems["test"]) == 60


def test_only_person_boxes_copied_from_the_source(built: BuiltDataset) -> None:
    boxes = 0
    for label in built.out_dir.glob("labels/*/*.txt"):
        lines = label.read_text().splitlines()
        source_lines = (COCO128 / "labels" / "train2017" / label.name).read_text().splitlines()
        assert lines and lines == [line.strip() for line in source_lines if line.split()[0] == "0"]
        boxes += len(lines)
    assert boxes == sum(s.boxes for s in built.card.splits.values()) > 60


def test_images_are_the_original_files_with_their_aspect_ratio(built: BuiltDataset) -> None:
    shapes = set()
    for image in built.out_dir.glob("images/*/*.jpg"):
        original = COCO128 / "images" / "train2017" / image.name
        assert image.read_bytes() == original.read_bytes()
        with Image.open(image) as ours, Image.open(original) as theirs:
            assert ours.size == theirs.size
            shapes.add(ours.size)
    assert len(shapes) > 1 and any(w != h for w, h in shapes)  # not squashed to one square size


def test_skipped_files_are_reported_in_the_card(built: BuiltDataset) -> None:
    assert {s.file: s.reason for s in built.card.skipped} == KNOWN_SKIPPED
    card = json.loads((built.out_dir / "card.json").read_text())
    assert {s["file"]: s["reason"] for s in card["skipped"]} == KNOWN_SKIPPED
    markdown = (built.out_dir / "CARD.md").read_text()
    assert all(file in markdown for file in KNOWN_SKIPPED)
    assert card["source"]["person_images"] == 61 and card["label_notes"] == {}
    assert card["seed"] == 100 and sum(s["images"] for s in card["splits"].values()) == 60
    assert card["split_proportions"] == {"train": 40, "val": 10, "test": 10}
    assert len(card["source"]["content_sha256"]) == 64


# --- the handout's 60 images: which person image is left out, and the seed that gives 40/10/10 -------


def person_cover_from_the_source() -> dict[str, float]:
    """Image id -> the summed normalized area (w * h) of its person boxes, read from COCO128's label files."""
    images = {p.stem for p in (COCO128 / "images" / "train2017").glob("*.jpg")}
    cover: dict[str, float] = {}
    for label in sorted((COCO128 / "labels" / "train2017").glob("*.txt")):
        rows = [line.split() for line in label.read_text().splitlines() if line.strip()]
        persons = [float(row[3]) * float(row[4]) for row in rows if row[0] == "0"]
        if persons and label.stem in images:
            cover[label.stem] = sum(persons)
    return cover


def test_the_person_image_left_out_is_the_one_with_the_least_person(built: BuiltDataset) -> None:
    cover = person_cover_from_the_source()
    least = min(cover, key=cover.__getitem__)
    assert len(cover) == 61 and least == "000000000201"
    others = min(v for k, v in cover.items() if k != least)
    assert cover[least] == pytest.approx(0.00152, abs=5e-6) and others == pytest.approx(0.00264, abs=5e-6)
    card = json.loads((built.out_dir / "card.json").read_text())
    assert [item["id"] for item in card["left_out"]["images"]] == [least]
    assert "0.15% of the image" in card["left_out"]["images"][0]["reason"]
    assert "least" in card["left_out"]["rule"]
    markdown = (built.out_dir / "CARD.md").read_text()
    assert "## Person images left out" in markdown and f"`{least}`: least person" in markdown
    used = {stem for split in SPLIT_NAMES for stem in built.card.splits[split].image_ids}
    assert used == set(cover) - {least}


def test_the_default_seed_is_the_smallest_that_splits_the_60_images_40_10_10(built: BuiltDataset) -> None:
    used = [stem for split in SPLIT_NAMES for stem in built.card.splits[split].image_ids]

    def counts(seed: int) -> list[int]:
        splits = [split_of(seed=seed, stem=stem, sizes=(40, 10, 10)) for stem in used]
        return [splits.count(name) for name in SPLIT_NAMES]

    assert counts(DEFAULT_SEED) == [40, 10, 10]
    assert [seed for seed in range(DEFAULT_SEED) if counts(seed) == [40, 10, 10]] == []
    assert counts(0) == [43, 7, 10]  # docs/dataset.md quotes it


# --- determinism ----------------------------------------------------------------------


def test_same_seed_gives_the_same_bytes(built: BuiltDataset, tmp_path: Path) -> None:
    again = build(source=str(COCO128), out_dir=tmp_path / "tiny_coco", seed=DEFAULT_SEED)
    assert tree_bytes(again.out_dir) == tree_bytes(built.out_dir)


def test_another_seed_gives_another_split(built: BuiltDataset, tmp_path: Path) -> None:
    other = build(source=str(COCO128), out_dir=tmp_path / "tiny_coco", seed=1)
    assert split_stems(other.out_dir)["train"] != split_stems(built.out_dir)["train"]
    assert other.card.source_content_sha256 == built.card.source_content_sha256


def test_a_zip_of_the_folder_gives_the_same_bytes(built: BuiltDataset, coco_zip: Path, tmp_path: Path) -> None:
    from_zip = build(source=str(coco_zip), out_dir=tmp_path / "tiny_coco", seed=DEFAULT_SEED)
    assert tree_bytes(from_zip.out_dir) == tree_bytes(built.out_dir)
    assert from_zip.source_archive_sha256 is not None and built.source_archive_sha256 is None


def test_a_rebuild_replaces_the_whole_folder(tmp_path: Path) -> None:
    out = tmp_path / "tiny_coco"
    (out / "images" / "train").mkdir(parents=True)
    (out / "images" / "train" / "stale.jpg").write_bytes(b"old")
    build(source=str(COCO128), out_dir=out, seed=0)
    assert not (out / "images" / "train" / "stale.jpg").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny_coco"]


# --- the download path, against a real HTTP server on 127.0.0.1 -------------------------


class _Routes(http.server.BaseHTTPRequestHandler):
    zip_bytes = b""
    release = threading.Event()

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        if self.path == "/coco128.zip":
            self._send(self.zip_bytes)
        elif self.path == "/truncated.zip":
            self._send(self.zip_bytes[: len(self.zip_bytes) // 2], length=len(self.zip_bytes))
        elif self.path == "/silent.zip":
            self.release.wait(10)
        else:
            self.send_error(404)

    def _send(self, body: bytes, *, length: int | None = None) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/zip")
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def http_base(coco_zip: Path) -> Iterator[str]:
    _Routes.zip_bytes = coco_zip.read_bytes()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Routes)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    _Routes.release.set()
    server.shutdown()
    server.server_close()


def test_download_gives_the_same_dataset(built: BuiltDataset, http_base: str, tmp_path: Path) -> None:
    url = f"{http_base}/coco128.zip"
    downloaded = build(source=url, out_dir=tmp_path / "tiny_coco", seed=DEFAULT_SEED)
    assert tree_bytes(downloaded.out_dir) == tree_bytes(built.out_dir)
    assert downloaded.source == url and downloaded.source_archive_sha256 is not None


@pytest.mark.parametrize("route", ["/missing.zip", "/truncated.zip", "/silent.zip"])
def test_download_failures_name_the_url(http_base: str, tmp_path: Path, route: str) -> None:
    url = http_base + route
    with pytest.raises(DatasetError) as error:
        build(source=url, out_dir=tmp_path / "tiny_coco", timeout_s=0.5)
    assert_failed_cleanly(error, names=url, out=tmp_path / "tiny_coco", before=set())


def test_unreachable_server_names_the_url(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}/coco128.zip"
    with pytest.raises(DatasetError) as error:
        build(source=url, out_dir=tmp_path / "tiny_coco", timeout_s=2)
    assert_failed_cleanly(error, names=url, out=tmp_path / "tiny_coco", before=set())
    assert "--source" in str(error.value)  # tells offline users what to do


# --- bad input: DatasetError naming the culprit, nothing left behind --------------------


def _corrupt_member_zip(folder: Path) -> bytes:
    data = bytearray(zip_of(folder, compression=zipfile.ZIP_STORED))
    image = (folder / "images" / "train2017" / "000000000036.jpg").read_bytes()
    at = bytes(data).find(image[5000:5100]) + 50
    data[at] ^= 0xFF  # the member's CRC no longer matches
    return bytes(data)


def _layout_only(folder: Path, tmp: Path, *, drop: str | None = None, keep_persons: int | None = None) -> Path:
    """A copy of COCO128 (symlinks) without one folder, or with only a few person images."""
    copy = tmp / "partial"
    persons = sorted(p.stem for p in (folder / "labels" / "train2017").glob("*.txt") if "\n0 " in "\n" + p.read_text())
    keep = set(persons[:keep_persons]) if keep_persons is not None else None
    for kind in ("images", "labels"):
        if kind == drop:
            continue
        (copy / kind / "train2017").mkdir(parents=True)
        for path in (folder / kind / "train2017").iterdir():
            if keep is None or path.stem in keep:
                (copy / kind / "train2017" / path.name).symlink_to(path)
    return copy


BAD_SOURCES = {
    "missing path": lambda tmp: tmp / "no-such-coco128",
    "random bytes": lambda tmp: _write(tmp / "coco128.zip", os.urandom(4096)),
    "truncated zip": lambda tmp: _write(tmp / "coco128.zip", zip_of(COCO128)[:300_000]),
    "corrupt member": lambda tmp: _write(tmp / "coco128.zip", _corrupt_member_zip(COCO128)),
    "zip without layout": lambda tmp: _write(tmp / "other.zip", _zip_with({"readme.txt": b"hello"})),
    "empty folder": lambda tmp: _mkdir(tmp / "empty"),
    "folder without labels": lambda tmp: _layout_only(COCO128, tmp, drop="labels"),
    "folder without images": lambda tmp: _layout_only(COCO128, tmp, drop="images"),
    "too few persons": lambda tmp: _layout_only(COCO128, tmp, keep_persons=30),
}


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _mkdir(path: Path) -> Path:
    path.mkdir()
    return path


def _zip_with(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


@pytest.mark.parametrize("case", sorted(BAD_SOURCES))
def test_bad_sources_raise_dataset_error_naming_the_path(case: str, tmp_path: Path) -> None:
    source = BAD_SOURCES[case](tmp_path)
    out_parent = tmp_path / "data"
    out_parent.mkdir()
    with pytest.raises(DatasetError) as error:
        build(source=str(source), out_dir=out_parent / "tiny_coco", seed=0)
    assert_failed_cleanly(error, names=str(source), out=out_parent / "tiny_coco", before=set())


@pytest.mark.parametrize("split", [(0, 10, 10), (40, 10), (40, -1, 10), (60, 10, 10), (40.0, 10, 10)])
def test_bad_split_names_the_value(split: tuple, tmp_path: Path) -> None:
    with pytest.raises(DatasetError) as error:
        build(source=str(COCO128), out_dir=tmp_path / "tiny_coco", split=split)
    assert_failed_cleanly(error, names=str(split), out=tmp_path / "tiny_coco", before=set())


def test_a_failed_build_keeps_the_previous_dataset(tmp_path: Path) -> None:
    out = tmp_path / "tiny_coco"
    out.mkdir()
    (out / "previous.txt").write_text("still here")
    with pytest.raises(DatasetError, match="no-such-source"):
        build(source=str(tmp_path / "no-such-source"), out_dir=out)
    assert (out / "previous.txt").read_text() == "still here"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny_coco"]


def test_an_output_that_is_a_file_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "tiny_coco"
    out.write_text("a file")
    with pytest.raises(DatasetError, match=str(out)):
        build(source=str(COCO128), out_dir=out)
    assert out.read_text() == "a file"


def test_a_malformed_label_file_is_skipped_and_reported(tmp_path: Path) -> None:
    source = _layout_only(COCO128, tmp_path)
    label = source / "labels" / "train2017" / "000000000036.txt"
    label.unlink()
    label.write_text("0 0.5 0.5 0.2\n")
    built = build(source=str(source), out_dir=tmp_path / "tiny_coco")
    (skipped,) = [s for s in built.card.skipped if s.file == "labels/train2017/000000000036.txt"]
    assert skipped.reason == "labels require 5 columns, 4 columns detected" and skipped.line == 1
    assert built.card.person_images == 60


def test_layout_ignores_macos_junk_and_refuses_two_roots() -> None:
    names = ["a/images/train2017/1.jpg", "a/labels/train2017/1.txt", "__MACOSX/a/images/train2017/._1.jpg"]
    assert locate_layout(names=names, where="x.zip").root == "a"
    with pytest.raises(DatasetError, match="several COCO128 layouts"):
        locate_layout(names=[*names, "b/images/train2017/1.jpg", "b/labels/train2017/1.txt"], where="x.zip")


# --- DVC: the pinned md5, `dvc repro`, `dvc push` ------------------------------------------


def test_a_fresh_build_has_the_md5_pinned_in_the_dvc_file(built: BuiltDataset, tmp_path: Path) -> None:
    assert dvc_md5(built.out_dir, tmp_path / "odb") == pinned_md5()


def _clone(tmp: Path) -> Path:
    """The project as a fresh clone would have it: tracked and untracked-but-not-ignored files."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, check=True, capture_output=True,
    ).stdout.decode().split("\0")
    clone = tmp / "clone"
    for relative in filter(None, listed):
        if (REPO / relative).is_file():
            (clone / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / relative, clone / relative)
    subprocess.run(["git", "init", "-q"], cwd=clone, check=True)
    return clone


def _dvc(clone: Path, *args: str) -> subprocess.CompletedProcess[str]:
    venv_bin = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": f"{venv_bin}{os.pathsep}{os.environ['PATH']}", "TP4_COCO128_SOURCE": str(COCO128)}
    return subprocess.run([sys.executable, "-m", "dvc", *args], cwd=clone, env=env, capture_output=True, text=True)


@pytest.fixture(scope="module")
def reproduced(tmp_path_factory: pytest.TempPathFactory) -> Path:
    clone = _clone(tmp_path_factory.mktemp("project"))
    assert not (clone / "data" / "tiny_coco").exists()
    result = _dvc(clone, "repro")
    assert result.returncode == 0, result.stdout + result.stderr
    return clone


def test_dvc_repro_in_a_clone_rebuilds_the_pinned_dataset(reproduced: Path, tmp_path: Path) -> None:
    recorded = yaml.safe_load((reproduced / "data" / "tiny_coco.dvc").read_text())["outs"][0]["md5"]
    assert recorded == pinned_md5() == dvc_md5(reproduced / "data" / "tiny_coco", tmp_path / "odb")
    # what `git status` would see after a fresh clone's `make data`: the tracked DVC files as committed
    for tracked in ("data/tiny_coco.dvc", "dvc.lock", "dvc.yaml"):
        assert (reproduced / tracked).read_bytes() == (REPO / tracked).read_bytes(), tracked


def test_dvc_push_goes_to_the_local_remote_under_the_project(reproduced: Path) -> None:
    result = _dvc(reproduced, "push")
    assert result.returncode == 0, result.stdout + result.stderr
    md5 = pinned_md5()
    assert (reproduced / ".tp4" / "dvc-remote" / "files" / "md5" / md5[:2] / md5[2:]).is_file()
    in_sync = _dvc(reproduced, "status", "--cloud")
    assert in_sync.returncode == 0 and "in sync" in in_sync.stdout, in_sync.stdout + in_sync.stderr
