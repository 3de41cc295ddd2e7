"""An S3 server on a loopback port: moto's threaded server, with IAM enforced.

The buckets are created and one IAM user per principal gets keys and a policy
limited to its buckets (e.g. the MLflow server: the artifacts bucket only;
the jobs: the DVC bucket only). Then moto is told to check every request's
signature and permissions, as MinIO or AWS would: a client with another
principal's keys, or none, is refused. That is how the tests prove that
MLflow artifacts go through the tracking server (the jobs hold no key that
could write them).

moto's state (backends, the auth switch) is global to the process that runs
it: `stop()` switches auth off again and resets every backend.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import boto3
import requests
from moto.server import ThreadedMotoServer

import contract

BOOTSTRAP_KEY = "devstack-bootstrap"  # accepted only before auth is switched on
ALL = "*"


@dataclass(frozen=True)
class Keys:
    access_key: str
    secret_key: str

    def env(self) -> dict[str, str]:
        return {contract.ENV_S3_ACCESS_KEY: self.access_key, contract.ENV_S3_SECRET_KEY: self.secret_key}


def policy(*, buckets: tuple[str, ...]) -> dict[str, Any]:
    """Every S3 action on these buckets and their objects (`*`: on everything)."""
    resources = ["*"] if ALL in buckets else [f"arn:aws:s3:::{b}{suffix}" for b in buckets for suffix in ("", "/*")]
    return {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": resources}]}


@dataclass
class S3Server:
    endpoint: str
    region: str
    keys: dict[str, Keys]
    server: ThreadedMotoServer

    def client(self, *, principal: str) -> Any:
        keys = self.keys[principal]
        return boto3.client("s3", endpoint_url=self.endpoint, region_name=self.region,
                            aws_access_key_id=keys.access_key, aws_secret_access_key=keys.secret_key)

    def stop(self) -> None:
        try:
            requests.post(f"{self.endpoint}/moto-api/reset-auth", data=b"inf", timeout=10)
            requests.post(f"{self.endpoint}/moto-api/reset", timeout=10)
        finally:
            self.server.stop()


def _boto(service: str, *, endpoint: str, region: str) -> Any:
    return boto3.client(service, endpoint_url=endpoint, region_name=region, aws_access_key_id=BOOTSTRAP_KEY,
                        aws_secret_access_key=BOOTSTRAP_KEY)


def _principal(iam: Any, *, name: str, buckets: tuple[str, ...]) -> Keys:
    iam.create_user(UserName=name)
    iam.put_user_policy(UserName=name, PolicyName="s3", PolicyDocument=json.dumps(policy(buckets=buckets)))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return Keys(access_key=key["AccessKeyId"], secret_key=key["SecretAccessKey"])


def start_s3(*, host: str, port: int, region: str, grants: Mapping[str, tuple[str, ...]]) -> S3Server:
    """Buckets named in `grants`, one IAM user per principal, then auth enforced."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one access-log line per request otherwise
    server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
    server.start()
    endpoint = f"http://{host}:{port}"
    try:
        s3, iam = _boto("s3", endpoint=endpoint, region=region), _boto("iam", endpoint=endpoint, region=region)
        for bucket in sorted({b for buckets in grants.values() for b in buckets if b != ALL}):
            s3.create_bucket(Bucket=bucket)
        keys = {name: _principal(iam, name=name, buckets=buckets) for name, buckets in grants.items()}
        requests.post(f"{endpoint}/moto-api/reset-auth", data=b"0", timeout=10).raise_for_status()
    except Exception:
        server.stop()
        raise
    return S3Server(endpoint=endpoint, region=region, keys=keys, server=server)
