"""jobs.common.retrying: bounded, jittered retries of transient faults, and which faults are transient; and
jobs.common.dataset.pull_fault, which classifies a failed DVC pull from DVC's own exceptions and logs."""

from __future__ import annotations

import errno
import logging

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from dvc.exceptions import CheckoutError, DownloadError
from dvc_objects.errors import ObjectFormatError
from s3fs.errors import translate_boto_error

import tracking_probe
from jobs.common import dataset, retrying


def s3_error(status: int, code: str, message: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message},
                        "ResponseMetadata": {"HTTPStatusCode": status}}, "GetObject")


SLOW_DOWN = s3_error(503, "SlowDown", "Please reduce your request rate.")
NO_SUCH_KEY = s3_error(404, "NoSuchKey", "The specified key does not exist.")


def test_transient_faults_are_retried_with_jittered_exponential_pauses_then_given_up() -> None:
    pauses: list[float] = []
    calls = 0

    def always_throttled() -> None:
        nonlocal calls
        calls += 1
        raise retrying.Transient("HTTP 503 SlowDown")

    backoff = retrying.Backoff(attempts=5, first_s=2.0, cap_s=5.0)
    with pytest.raises(retrying.GaveUp) as gave_up:
        retrying.retry(what="pull", call=always_throttled, backoff=backoff, sleep=pauses.append, draw=lambda: 0.999)
    assert calls == 5 and len(pauses) == 4
    assert pauses == pytest.approx([1.998, 3.996, 4.995, 4.995])  # min(cap, first * 2^k), drawn near the top
    assert isinstance(gave_up.value, tracking_probe.Unreachable)  # the Jobs' exit code 1
    assert "pull failed 5 times" in str(gave_up.value) and backoff.longest_s == 2 + 4 + 5 + 5


def test_a_fault_that_goes_away_is_absorbed_and_anything_else_propagates_at_once() -> None:
    answers = iter([retrying.Transient("reset"), retrying.Transient("reset"), "done"])

    def flaky() -> str:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    pauses: list[float] = []
    assert retrying.retry(what="x", call=flaky, sleep=pauses.append, draw=lambda: 0.0) == "done"
    assert pauses == [0.0, 0.0]

    def bad() -> None:
        raise ValueError("no retry can fix this")

    with pytest.raises(ValueError):
        retrying.retry(what="x", call=bad, sleep=pauses.append)
    assert len(pauses) == 2


def test_which_faults_are_transient() -> None:
    throttled = translate_boto_error(SLOW_DOWN)  # what s3fs raises: OSError EBUSY
    assert isinstance(throttled, OSError) and throttled.errno == errno.EBUSY
    assert retrying.transient_fault(throttled) == "OSError: [Errno 16] Please reduce your request rate."
    assert retrying.transient_fault(s3_error(500, "InternalError", "boom"))
    assert retrying.transient_fault(s3_error(429, "TooManyRequests", "later"))
    assert retrying.transient_fault(EndpointConnectionError(endpoint_url="http://s3"))
    assert retrying.transient_fault(ConnectionResetError(errno.ECONNRESET, "reset"))
    assert retrying.transient_fault(TimeoutError("read timed out"))
    assert retrying.transient_fault(translate_boto_error(NO_SUCH_KEY)) is None  # FileNotFoundError
    assert retrying.transient_fault(s3_error(403, "AccessDenied", "no")) is None
    assert retrying.transient_fault(ValueError("x")) is None


def logged(*exceptions: BaseException) -> dataset.DvcLog:
    """DVC's per-object errors, logged as dvc_data logs them (hashfile/transfer.py: _log_exception)."""
    with dataset.captured_dvc_log() as log:
        for exc in exceptions:
            logging.getLogger("dvc_data.hashfile.transfer").error("failed to transfer '%s'", "ab12", exc_info=exc)
    return log


def test_a_failed_pull_is_classified_from_what_dvc_raised_and_logged() -> None:
    throttled, missing = translate_boto_error(SLOW_DOWN), translate_boto_error(NO_SUCH_KEY)
    assert dataset.pull_fault(exc=DownloadError(3), log=logged(throttled, throttled))[0] == dataset.TRANSIENT
    assert dataset.pull_fault(exc=DownloadError(2), log=logged(throttled, missing))[0] == dataset.BAD
    assert dataset.pull_fault(exc=throttled, log=logged())[0] == dataset.TRANSIENT  # the .dir listing's read
    corrupt = ObjectFormatError("object 83.dir is corrupted")
    assert dataset.pull_fault(exc=corrupt, log=logged()) == (dataset.BAD, f"ObjectFormatError: {corrupt}")
    checkout = CheckoutError(["data/tiny_coco"], {"stats": {}})
    assert dataset.pull_fault(exc=checkout, log=logged())[0] == dataset.BAD
    assert dataset.pull_fault(exc=RuntimeError("?"), log=logged())[0] is None  # neither: exit 1, not bad input
    with dataset.captured_dvc_log() as log:
        logging.getLogger("dvc_data.index.fetch").warning(dataset.MISSING_WARNING + ". Missing cache files:\n%s", "x")
    assert dataset.pull_fault(exc=DownloadError(1), log=log)[0] == dataset.BAD
