"""Each provider's own error codes map onto the one error hierarchy (table-driven, through the fakes)."""

from __future__ import annotations

import email.utils
import time
import uuid

import pytest

from providers import TaskRef
from providers.errors import (
    CredentialsRefused,
    InsufficientCredits,
    InvalidRequest,
    ModerationRejected,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
    SubmitOutcomeUnknown,
)
from providers.http import parse_retry_after
from tests.conftest import Harness

PIXVERSE_CODES: list[tuple[int, type[ProviderError]]] = [
    (400011, InvalidRequest),
    (400012, CredentialsRefused),
    (10003, CredentialsRefused),
    (400013, InvalidRequest),
    (400017, InvalidRequest),
    (400018, InvalidRequest),
    (400019, InvalidRequest),
    (400032, InvalidRequest),
    (500020, CredentialsRefused),
    (500030, InvalidRequest),
    (500033, InvalidRequest),
    (500044, RateLimited),
    (500054, ModerationRejected),
    (500063, ModerationRejected),
    (500069, ProviderUnavailable),
    (500090, InsufficientCredits),
    (500100, ProviderUnavailable),
    (987654, InvalidRequest),
]

VIDU_REASONS: list[tuple[int, str, type[ProviderError]]] = [
    (400, "FieldInvalid", InvalidRequest),
    (400, "FieldUnwanted", InvalidRequest),
    (400, "ImageFormatInvalid", InvalidRequest),
    (400, "AuditSubmitIllegal", ModerationRejected),
    (400, "TaskPromptPolicyViolation", ModerationRejected),
    (400, "CreationPolicyViolation", ModerationRejected),
    (400, "CreditInsufficient", InsufficientCredits),
    (400, "OperationInProcess", ProviderUnavailable),
    (400, "ModelUnavailable", ProviderUnavailable),
    (401, "Unauthorized", CredentialsRefused),
    (403, "Forbidden", CredentialsRefused),
    (404, "TaskNotFound", InvalidRequest),
    (409, "Conflict", InvalidRequest),
    (429, "QuotaExceeded", RateLimited),
    (429, "TooManyRequests", RateLimited),
    (429, "SystemThrottling", RateLimited),
    (503, "InternalServiceFailure", ProviderUnavailable),
]

# HiDream publishes no code table; the client reads the kind from the message.
HIDREAM_MESSAGES: list[tuple[str, type[ProviderError]]] = [
    ("content review failed", ModerationRejected),
    ("图片审核未通过", ModerationRejected),
    ("sensitive content detected", ModerationRejected),
    ("token expired", CredentialsRefused),
    ("too many requests, slow down", RateLimited),
    ("任务并发已达上限", RateLimited),
    ("image is invalid", InvalidRequest),
]


async def submit_expecting(harness: Harness, expected: type[ProviderError]) -> ProviderError:
    with pytest.raises(expected) as caught:
        await harness.client.submit(harness.request(), idempotency_key=str(uuid.uuid4()))
    assert harness.fake.route_count(harness.submit_route) == 1
    assert not harness.fake.tasks
    return caught.value


@pytest.mark.parametrize("harness", ["pixverse"], indirect=True)
@pytest.mark.parametrize(("code", "expected"), PIXVERSE_CODES)
async def test_pixverse_err_codes(harness: Harness, code: int, expected: type[ProviderError]) -> None:
    harness.fake.fail("generate", "business_error", code=code, message="refused")
    error = await submit_expecting(harness, expected)
    assert not isinstance(error, SubmitOutcomeUnknown)
    assert error.code == str(code)
    assert f"ErrCode {code}" in error.message


@pytest.mark.parametrize("harness", ["vidu"], indirect=True)
@pytest.mark.parametrize(("status", "reason", "expected"), VIDU_REASONS)
async def test_vidu_reasons(harness: Harness, status: int, reason: str, expected: type[ProviderError]) -> None:
    harness.fake.fail("create", "business_error", status=status, reason=reason, message="refused")
    error = await submit_expecting(harness, expected)
    assert error.code == reason
    if reason == "QuotaExceeded":
        assert isinstance(error, RateLimited)
        assert error.concurrency


@pytest.mark.parametrize("harness", ["hidream"], indirect=True)
@pytest.mark.parametrize(("message", "expected"), HIDREAM_MESSAGES)
async def test_hidream_messages(harness: Harness, message: str, expected: type[ProviderError]) -> None:
    harness.fake.fail("submit_img2video", "business_error", code=1002, message=message)
    error = await submit_expecting(harness, expected)
    assert error.code == "1002"
    assert message in error.message


async def test_a_long_retry_after_is_left_to_the_caller(harness: Harness) -> None:
    submission = await harness.client.submit(harness.request(), idempotency_key="job")
    harness.fake.fail(harness.poll_route, "rate_limited", retry_after=60)
    started = time.monotonic()
    with pytest.raises(RateLimited) as caught:
        await harness.client.poll([TaskRef(submission.task_id)])
    assert caught.value.retry_after == 60
    assert time.monotonic() - started < 1
    assert harness.fake.route_count(harness.poll_route) == 1


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 28 <= (parse_retry_after(later) or 0) <= 30
    earlier = email.utils.formatdate(time.time() - 30, usegmt=True)
    assert parse_retry_after(earlier) == 0.0
