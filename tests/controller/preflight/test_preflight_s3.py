"""The preflight's S3 checks against a real S3 server (moto's threaded server on a loopback port)."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import boto3
import pytest

import contract
from contract.dvc_listing import object_path
from controller.preflight import Remote, check_weights, object_in_remote

MD5 = "66099f2d927c092b2dd598316a47ca46.dir"


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    url = f"http://127.0.0.1:{port}"
    s3 = boto3.client("s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id="k",
                      aws_secret_access_key="s")
    s3.create_bucket(Bucket="models")
    s3.put_object(Bucket="models", Key="lab/best.pt", Body=b"weights")
    s3.put_object(Bucket="models", Key="dvc/" + object_path(MD5), Body=b"[]")
    yield url
    server.stop()


@pytest.fixture
def s3_env(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {contract.ENV_S3_ENDPOINT: endpoint, contract.ENV_S3_REGION: "us-east-1",
                        contract.ENV_S3_ACCESS_KEY: "k", contract.ENV_S3_SECRET_KEY: "s"}.items():
        monkeypatch.setenv(name, value)


def test_s3_weights_must_exist(s3_env: None, tmp_path) -> None:
    assert check_weights("s3://models/lab/best.pt", root=tmp_path, local=True) == (None, None)
    problem, _ = check_weights("s3://models/lab/nope.pt", root=tmp_path, local=False)
    assert problem is not None and problem.message == "s3://models/lab/nope.pt: no such object in S3 bucket 'models'"
    assert check_weights("s3://no-bucket/best.pt", root=tmp_path, local=True)[0] is not None


def test_the_pinned_version_in_an_s3_remote(s3_env: None) -> None:
    assert object_in_remote(Remote(name="s3", url="s3://models/dvc"), MD5) is True
    assert object_in_remote(Remote(name="s3", url="s3://models/dvc"), "0" * 32 + ".dir") is False


def test_without_s3_settings_nothing_is_asked(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.delenv(contract.ENV_S3_ENDPOINT, raising=False)
    monkeypatch.delenv(contract.ENV_S3_ACCESS_KEY, raising=False)
    problem, note = check_weights("s3://models/lab/nope.pt", root=tmp_path, local=True)
    assert problem is None and note is not None and "not checked here" in note
    assert object_in_remote(Remote(name="s3", url="s3://models/dvc"), MD5) is None
