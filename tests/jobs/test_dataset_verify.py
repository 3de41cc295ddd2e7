"""jobs.common.dataset against the real DVC: md5 as `dvc add` computes it, pulls from
a local remote and from an S3 remote (moto's server), and the failures."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

import contract
from jobs.common import dataset
from jobs.common.errors import BadInput
from tests.helpers.paths import COCO128

COCO_IMAGE = COCO128 / "images/train2017/000000000009.jpg"


def dvc(*args: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def make_folder(path: Path) -> None:
    """Nested folders, a hidden file, CRLF text, a space in a name, an empty
    folder and a .git folder (which DVC skips)."""
    (path / "labels" / "train").mkdir(parents=True)
    (path / "images" / "train").mkdir(parents=True)
    (path / "empty").mkdir()
    (path / ".git").mkdir()
    (path / ".git" / "HEAD").write_text("ref\n")
    (path / "data.yaml").write_text("train: images/train\nval: images/train\nnames:\n  0: person\n")
    (path / "labels" / "train" / "a.txt").write_bytes(b"0 0.5 0.5 0.2 0.2\r\n0 0.1 0.1 0.1 0.1\r\n")
    (path / "labels" / "train" / "b c.txt").write_text("0 0.3 0.3 0.1 0.1\n")
    (path / ".hidden").write_text("x")
    shutil.copy(COCO_IMAGE, path / "images" / "train" / "a.jpg")


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A DVC project holding data/ds, added with `dvc add`."""
    monkeypatch.delenv(contract.ENV_DATASET_MD5, raising=False)
    dvc("init", "--no-scm", "-q", cwd=tmp_path)
    make_folder(tmp_path / "data" / "ds")
    dvc("add", "data/ds", "-q", cwd=tmp_path)
    return tmp_path


def recorded_md5(project: Path) -> str:
    return yaml.safe_load((project / "data" / "ds.dvc").read_text())["outs"][0]["md5"]


def test_directory_md5_equals_dvc_add(project: Path) -> None:
    assert dataset.directory_md5(path=project / "data" / "ds") == recorded_md5(project)


def test_directory_md5_changes_with_one_byte(project: Path) -> None:
    label = project / "data" / "ds" / "labels" / "train" / "b c.txt"
    label.write_text(label.read_text() + " ")
    assert dataset.directory_md5(path=project / "data" / "ds") != recorded_md5(project)


def test_pinned_md5_comes_from_dvc_file_unless_env(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert dataset.pinned_md5(path=project / "data" / "ds") == recorded_md5(project)
    monkeypatch.setenv(contract.ENV_DATASET_MD5, "0123.dir")
    assert dataset.pinned_md5(path=project / "data" / "ds") == "0123.dir"


def test_verified_dataset(project: Path) -> None:
    verified = dataset.ensure_dataset(path=project / "data" / "ds")
    assert (verified.md5, verified.nfiles, verified.pulled) == (recorded_md5(project), 5, False)


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda ds: (ds / "labels" / "train" / "a.txt").write_text("0 0 0 0 0\n"), "modified:   labels/train/a.txt"),
        (lambda ds: (ds / "images" / "train" / "a.jpg").unlink(), "missing:    images/train/a.jpg"),
        (lambda ds: (ds / "labels" / "train.cache").write_text("x"), "unexpected: labels/train.cache"),
    ],
)
def test_mismatch_names_folder_and_file(project: Path, change, named: str) -> None:
    folder = project / "data" / "ds"
    change(folder)
    with pytest.raises(BadInput) as error:
        dataset.ensure_dataset(path=folder)
    assert str(folder) in str(error.value)
    assert named in str(error.value)


def test_env_pin_that_differs_is_a_mismatch(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(contract.ENV_DATASET_MD5, "0" * 32 + ".dir")
    with pytest.raises(BadInput, match="does not match its pinned version"):
        dataset.ensure_dataset(path=project / "data" / "ds")


def test_unpinned_folder_is_bad_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(contract.ENV_DATASET_MD5, raising=False)
    make_folder(tmp_path / "ds")
    with pytest.raises(BadInput, match="not pinned"):
        dataset.ensure_dataset(path=tmp_path / "ds")


def test_absent_folder_without_remote_names_folder(project: Path) -> None:
    folder = project / "data" / "ds"
    shutil.rmtree(folder)
    shutil.rmtree(project / ".dvc" / "cache")
    with pytest.raises(BadInput) as error:
        dataset.ensure_dataset(path=folder)
    assert f"dataset folder {folder} is missing" in str(error.value)


def test_absent_folder_is_pulled_from_local_remote(project: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    remote = tmp_path_factory.mktemp("remote")
    dvc("remote", "add", "-d", "local", str(remote), cwd=project)
    dvc("push", "-q", cwd=project)
    shutil.rmtree(project / "data" / "ds")
    shutil.rmtree(project / ".dvc" / "cache")
    verified = dataset.ensure_dataset(path=project / "data" / "ds")
    assert verified.pulled and verified.md5 == recorded_md5(project)


@pytest.fixture
def s3_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """moto's S3 server on a loopback port; the AWS_* variables point at it."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    values = {contract.ENV_S3_ENDPOINT: f"http://{host}:{port}", contract.ENV_S3_ACCESS_KEY: "tp4-test",
              contract.ENV_S3_SECRET_KEY: "tp4-test-secret", contract.ENV_S3_REGION: "us-east-1"}
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    yield values
    server.stop()


def s3_remote_project(project: Path, s3_env: dict[str, str]) -> object:
    """Push the dataset to s3://tp4-dvc/store (endpoint from the environment only) and empty the local copy."""
    import boto3

    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="tp4-dvc")
    dvc("remote", "add", "-d", "s3", "s3://tp4-dvc/store", cwd=project, env=dict(os.environ))
    dvc("push", "-q", cwd=project, env=dict(os.environ))
    shutil.rmtree(project / "data" / "ds")
    shutil.rmtree(project / ".dvc" / "cache")
    return s3


@pytest.mark.slow
def test_absent_folder_is_pulled_from_s3_remote(project: Path, s3_env: dict[str, str]) -> None:
    s3_remote_project(project, s3_env)
    verified = dataset.ensure_dataset(path=project / "data" / "ds")
    assert verified.pulled and verified.md5 == recorded_md5(project)


@pytest.mark.slow
def test_corrupted_s3_object_is_named(project: Path, s3_env: dict[str, str]) -> None:
    label = project / "data" / "ds" / "labels" / "train" / "b c.txt"
    md5 = dataset.file_md5(path=label)
    key = f"store/files/md5/{md5[:2]}/{md5[2:]}"
    s3 = s3_remote_project(project, s3_env)
    s3.put_object(Bucket="tp4-dvc", Key=key, Body=b"0 0.9 0.9 0.1 0.1\n")
    with pytest.raises(BadInput, match="modified:   labels/train/b c.txt"):
        dataset.ensure_dataset(path=project / "data" / "ds")


@pytest.mark.slow
def test_missing_s3_object_fails_naming_folder(project: Path, s3_env: dict[str, str]) -> None:
    image = project / "data" / "ds" / "images" / "train" / "a.jpg"
    md5 = dataset.file_md5(path=image)
    s3 = s3_remote_project(project, s3_env)
    s3.delete_object(Bucket="tp4-dvc", Key=f"store/files/md5/{md5[:2]}/{md5[2:]}")
    with pytest.raises(BadInput) as error:
        dataset.ensure_dataset(path=project / "data" / "ds")
    assert str(project / "data" / "ds") in str(error.value)
    assert "not fetched: images/train/a.jpg" in str(error.value)


def test_working_copy_is_rerooted_and_leaves_original_alone(project: Path, tmp_path_factory) -> None:
    folder = project / "data" / "ds"
    verified = dataset.ensure_dataset(path=folder)
    into = tmp_path_factory.mktemp("work")
    data_yaml = dataset.working_copy(dataset=verified, data_yaml=folder / "data.yaml", into=into)
    assert yaml.safe_load(data_yaml.read_text())["path"] == str(into / "ds")
    (into / "ds" / "labels" / "train.cache").write_text("written by ultralytics")
    assert dataset.directory_md5(path=folder) == recorded_md5(project)


def test_a_read_only_project_pulls_into_the_workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A pod's /app is read-only: with TP4_WORKSPACE set the dataset is pulled under it, from the same pointer."""
    project, workspace = tmp_path / "app", tmp_path / "workspace"
    folder = project / "data" / "tiny"
    (folder / "images").mkdir(parents=True)
    (folder / "images" / "a.jpg").write_bytes(b"image bytes")
    (folder / "data.yaml").write_text("names: {0: person}\n")
    dvc = [sys.executable, "-m", "dvc"]
    subprocess.run([*dvc, "init", "--no-scm", "-q"], cwd=project, check=True)
    subprocess.run([*dvc, "remote", "add", "-d", "local", str(tmp_path / "remote")], cwd=project, check=True)
    subprocess.run([*dvc, "add", "-q", "data/tiny"], cwd=project, check=True)
    subprocess.run([*dvc, "push", "-q"], cwd=project, check=True)
    md5 = dataset.directory_md5(path=folder)
    shutil.rmtree(folder)
    shutil.rmtree(project / ".dvc" / "cache")
    before = sorted(p.relative_to(project) for p in project.rglob("*"))
    monkeypatch.setenv("TP4_WORKSPACE", str(workspace))
    verified = dataset.ensure_dataset(path=folder)
    assert verified.path == workspace / "data" / "tiny" and verified.md5 == md5 and verified.pulled
    assert (workspace / "data" / "tiny" / "images" / "a.jpg").read_bytes() == b"image bytes"
    assert sorted(p.relative_to(project) for p in project.rglob("*")) == before  # nothing written in the project


def test_one_pull_at_a_time_per_project_until_the_holder_dies(tmp_path: Path) -> None:
    """project_lock (filelock: flock here, LockFileEx on Windows) blocks a second Job of the same
    project until the first lets go, here by dying (kill -9: the kernel releases it)."""
    (tmp_path / ".dvc").mkdir()
    folder = tmp_path / "data" / "ds"
    code = ("import sys, time; from pathlib import Path; from jobs.common import dataset\n"
            f"with dataset.project_lock(path=Path({str(folder)!r})):\n    print('held', flush=True); time.sleep(120)")
    repo = Path(__file__).resolve().parents[2]
    other = subprocess.Popen([sys.executable, "-c", code], cwd=repo, stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout is not None and other.stdout.readline().strip() == "held"
        entered = threading.Event()

        def second() -> None:
            with dataset.project_lock(path=folder):
                entered.set()

        waiting = threading.Thread(target=second, daemon=True)
        waiting.start()
        assert not entered.wait(1.0)  # blocked while the other Job holds it
    finally:
        other.kill()
        other.wait(timeout=10)
    assert entered.wait(15)
    waiting.join(timeout=5)
    assert (tmp_path / ".dvc" / "tmp" / dataset.LOCK_NAME).is_file()  # kept on disk, as before


def test_no_project_no_lock(tmp_path: Path) -> None:
    with dataset.project_lock(path=tmp_path / "data" / "ds"):  # no .dvc above it: nothing to lock
        pass
    assert not (tmp_path / ".dvc").exists()
