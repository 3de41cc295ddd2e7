"""The tp4 buckets: create them (post-install/upgrade hook) or check them (helm test).

    python s3_buckets.py ensure BUCKET...   create the missing buckets, then check them
    python s3_buckets.py check BUCKET...    each bucket exists, takes a write, and refuses anonymous access

The endpoint, region and keys come from AWS_ENDPOINT_URL, AWS_DEFAULT_REGION,
AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, as for any boto3 client. A bucket
that already exists is never modified: if it lets anonymous users list or read
it, the check fails and names it, rather than silently changing a policy.
Runs in the tp4-mlflow image (Python + boto3). Exit code 0 only when every
bucket is there and private.
"""

from __future__ import annotations

import os
import sys
import time
import uuid

import boto3
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

WAIT_SECONDS = int(os.environ.get("TP4_S3_WAIT_SECONDS", "300"))
DENIED = {"AccessDenied", "401", "403", "AllAccessDisabled", "InvalidAccessKeyId", "SignatureDoesNotMatch"}


def _client(signed: bool = True):
    config = Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=30,
                    signature_version=None if signed else UNSIGNED)
    return boto3.client("s3", config=config)


def wait_for_endpoint(s3) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        try:
            s3.list_buckets()
            return
        except (BotoCoreError, ClientError) as error:
            endpoint = os.environ.get("AWS_ENDPOINT_URL", "(AWS)")
            if time.monotonic() > deadline:
                sys.exit(f"S3 endpoint {endpoint} unusable after {WAIT_SECONDS} s: {error}")
            print(f"waiting for S3 at {endpoint}: {error}", flush=True)
            time.sleep(3)


def _exists(s3, bucket: str) -> bool:
    try:
        s3.head_bucket(Bucket=bucket)
        return True
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in {"404", "NoSuchBucket", "NotFound"}:
            return False
        raise


def ensure(s3, bucket: str) -> str:
    if _exists(s3, bucket):
        return "exists"
    region = s3.meta.region_name
    if region and region != "us-east-1":
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region})
    else:
        s3.create_bucket(Bucket=bucket)
    return "created"


def anonymous_access(bucket: str) -> str | None:
    """What an unsigned client can do with the bucket, or None if it is refused."""
    anonymous = _client(signed=False)
    try:
        anonymous.list_objects_v2(Bucket=bucket, MaxKeys=1)
        return "list"
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        if code not in DENIED:
            return f"unexpected answer {code!r}"
    return None


def check(s3, bucket: str) -> list[str]:
    problems = []
    if not _exists(s3, bucket):
        return [f"{bucket}: missing"]
    key = f".tp4-check/{uuid.uuid4().hex}"
    try:
        s3.put_object(Bucket=bucket, Key=key, Body=b"tp4")
        if s3.get_object(Bucket=bucket, Key=key)["Body"].read() != b"tp4":
            problems.append(f"{bucket}: read back a different object")
    except ClientError as error:
        problems.append(f"{bucket}: write/read failed: {error}")
    finally:
        try:
            s3.delete_object(Bucket=bucket, Key=key)
        except ClientError:
            pass
    granted = anonymous_access(bucket)
    if granted:
        problems.append(f"{bucket}: anonymous access allowed ({granted}); remove its public policy")
    return problems


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] not in {"ensure", "check"}:
        print(__doc__, file=sys.stderr)
        return 2
    command, buckets = argv[0], argv[1:]
    s3 = _client()
    wait_for_endpoint(s3)
    if command == "ensure":
        for bucket in buckets:
            print(f"{bucket}: {ensure(s3, bucket)}", flush=True)
    problems = [problem for bucket in buckets for problem in check(s3, bucket)]
    for problem in problems:
        print(f"FAIL {problem}", file=sys.stderr)
    if not problems:
        print(f"ok: {', '.join(buckets)} exist, take writes, refuse anonymous access")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
