"""Behaviour every provider shares, run against each fake server: the neutral interface end to end,
the error hierarchy, retries, timeouts and secret scrubbing."""

from __future__ import annotations

import time
import uuid
from typing import Any

import aiohttp
import pytest

from providers import ErrorKind, Operation, TaskRef, TaskState
from providers.errors import (
    CredentialsRefused,
    InvalidRequest,
    ModerationRejected,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
    SubmitOutcomeUnknown,
)
from simulators.fake_providers import Outcome
from tests.conftest import Harness


async def test_a_job_goes_from_submit_to_a_downloadable_video(harness: Harness, session: aiohttp.ClientSession) -> None:
    submission = await harness.client.submit(harness.request(), idempotency_key=str(uuid.uuid4()))
    task = TaskRef(submission.task_id)
    seen = await harness.wait_until(task, lambda status: status.state.finished)

    states = [status.state for status in seen]
    assert states[-1] is TaskState.SUCCEEDED
    assert TaskState.RUNNING in states or TaskState.QUEUED in states
    order = [TaskState.QUEUED, TaskState.RUNNING, TaskState.SUCCEEDED]
    assert [order.index(state) for state in states] == sorted(order.index(state) for state in states)
    final = seen[-1]
    assert final.task_id == submission.task_id
    assert final.error_kind is None
    assert final.video_url
    async with session.get(final.video_url) as response:
        video = await response.read()
    assert response.status == 200
    assert video[4:8] == b"ftyp"


@pytest.mark.parametrize(
    ("outcome", "state", "kind"),
    [
        ("failed", TaskState.FAILED, ErrorKind.GENERATION_FAILED),
        ("moderation", TaskState.REJECTED, ErrorKind.MODERATION),
    ],
)
async def test_a_job_that_ends_badly_says_why(
    harness: Harness, outcome: str, state: TaskState, kind: ErrorKind
) -> None:
    harness.fake.outcomes.append(Outcome(outcome))
    submission = await harness.client.submit(harness.request(), idempotency_key=str(uuid.uuid4()))
    seen = await harness.wait_until(TaskRef(submission.task_id), lambda status: status.state.finished)
    final = seen[-1]
    assert final.state is state
    assert final.error_kind is kind
    assert final.error_reason
    assert final.error_reason.endswith(".")
    assert final.video_url is None


async def test_a_stalled_job_keeps_running(harness: Harness) -> None:
    harness.fake.outcomes.append(Outcome("stall", queue_seconds=0, run_seconds=0))
    submission = await harness.client.submit(harness.request(), idempotency_key=str(uuid.uuid4()))
    for _ in range(3):
        [status] = await harness.client.poll([TaskRef(submission.task_id)])
        assert status.state in (TaskState.QUEUED, TaskState.RUNNING)


async def test_invalid_options_are_refused_before_anything_is_sent(harness: Harness) -> None:
    with pytest.raises(InvalidRequest) as caught:
        await harness.client.submit(harness.request(seed=-3, bogus=True), idempotency_key="job-1")
    assert "`bogus` is not an option" in caught.value.message
    assert harness.fake.requests == []


async def test_check_proves_the_credentials(harness: Harness) -> None:
    result = await harness.client.check()
    assert result.detail
    if harness.name != "hidream":
        assert result.credits is not None
        assert result.credits >= 0
    assert all(request.route != harness.submit_route for request in harness.fake.requests)


async def test_a_wrong_key_is_refused_everywhere(harness: Harness) -> None:
    client = harness.make_client(key="not-the-key")
    with pytest.raises(CredentialsRefused):
        await client.check()
    with pytest.raises(CredentialsRefused):
        await client.submit(harness.request(), idempotency_key="job-1")
    with pytest.raises(CredentialsRefused):
        await client.poll([TaskRef("1")])


# Faults on the job-creating request: the kind of error, and never a second send.
SUBMIT_FAULTS: list[tuple[str, dict[str, Any], type[ProviderError]]] = [
    ("server_error", {"status": 500}, SubmitOutcomeUnknown),
    ("server_error", {"status": 502}, SubmitOutcomeUnknown),
    ("server_error", {"status": 503}, ProviderUnavailable),
    ("malformed", {}, SubmitOutcomeUnknown),
    ("business_error", {"message": "bad parameter", "code": 400017}, InvalidRequest),
    ("rate_limited", {"retry_after": 1}, RateLimited),
    ("concurrency", {}, RateLimited),
    ("moderation", {}, ModerationRejected),
    ("unauthorized", {}, CredentialsRefused),
]


@pytest.mark.parametrize(("kind", "params", "expected"), SUBMIT_FAULTS)
async def test_submit_faults_map_to_one_error_and_are_never_resent(
    harness: Harness, kind: str, params: dict[str, Any], expected: type[ProviderError]
) -> None:
    harness.fake.fail(harness.submit_route, kind, **params)
    with pytest.raises(expected) as caught:
        await harness.client.submit(harness.request(), idempotency_key=str(uuid.uuid4()))
    error = caught.value
    assert type(error) is expected or (expected is ProviderUnavailable and not isinstance(error, SubmitOutcomeUnknown))
    assert harness.fake.route_count(harness.submit_route) == 1
    assert not harness.fake.tasks
    if kind == "rate_limited":
        assert isinstance(error, RateLimited)
        assert error.retry_after == 1
    if kind == "concurrency" and harness.name != "hidream":
        assert isinstance(error, RateLimited)
        assert error.concurrency


async def test_a_submit_that_hangs_has_an_unknown_outcome(harness: Harness) -> None:
    client = harness.make_client(timeout=0.3)
    harness.fake.fail(harness.submit_route, "hang", seconds=2)
    started = time.monotonic()
    with pytest.raises(SubmitOutcomeUnknown, match="unknown whether the job was created"):
        await client.submit(harness.request(), idempotency_key=str(uuid.uuid4()))
    assert time.monotonic() - started < 1.5
    assert harness.fake.route_count(harness.submit_route) == 1


async def _running_task(harness: Harness) -> TaskRef:
    submission = await harness.client.submit(harness.request(), idempotency_key=str(uuid.uuid4()))
    return TaskRef(submission.task_id)


@pytest.mark.parametrize("kind", ["server_error", "malformed"])
async def test_reads_retry_a_short_burst_of_failures(harness: Harness, kind: str) -> None:
    task = await _running_task(harness)
    harness.fake.fail(harness.poll_route, kind, times=2)
    [status] = await harness.client.poll([task])
    assert status.task_id == task.task_id
    assert harness.fake.route_count(harness.poll_route) == 3


async def test_reads_give_up_after_a_bounded_number_of_tries(harness: Harness) -> None:
    task = await _running_task(harness)
    harness.fake.fail(harness.poll_route, "server_error", times=5)
    with pytest.raises(ProviderUnavailable, match="HTTP 500"):
        await harness.client.poll([task])
    assert harness.fake.route_count(harness.poll_route) == 3


async def test_reads_that_hang_time_out(harness: Harness) -> None:
    task = await _running_task(harness)
    client = harness.make_client(timeout=0.2)
    harness.fake.fail(harness.poll_route, "hang", times=3, seconds=2)
    with pytest.raises(ProviderTimeout, match=r"no answer within 0\.2 s"):
        await client.poll([task])
    assert harness.fake.route_count(harness.poll_route) == 3


async def test_reads_honour_retry_after(harness: Harness) -> None:
    task = await _running_task(harness)
    harness.fake.fail(harness.poll_route, "rate_limited", retry_after=1)
    started = time.monotonic()
    [status] = await harness.client.poll([task])
    assert time.monotonic() - started >= 1.0
    assert status.state in (TaskState.QUEUED, TaskState.RUNNING, TaskState.SUCCEEDED)
    assert harness.fake.route_count(harness.poll_route) == 2


async def test_a_refused_key_is_not_retried(harness: Harness) -> None:
    task = await _running_task(harness)
    harness.fake.fail(harness.poll_route, "unauthorized")
    with pytest.raises(CredentialsRefused):
        await harness.client.poll([task])
    assert harness.fake.route_count(harness.poll_route) == 1


async def test_no_error_carries_the_key(harness: Harness) -> None:
    harness.fake.fail(harness.submit_route, "echo_key")
    with pytest.raises(ProviderError) as caught:
        await harness.client.submit(harness.request(), idempotency_key=str(uuid.uuid4()))
    assert harness.key not in str(caught.value)
    assert harness.key not in repr(caught.value.args)
    assert "[redacted]" in str(caught.value)


async def test_an_unreachable_host_is_unavailable(harness: Harness) -> None:
    client = harness.make_client(base_url="http://127.0.0.1:9")
    with pytest.raises(ProviderUnavailable, match="could not connect"):
        await client.poll([TaskRef("1", Operation.IMAGE_TO_VIDEO)])
    # Nothing reached the server, so a submit is known not to have happened.
    with pytest.raises(ProviderUnavailable) as caught:
        await client.submit(harness.request(), idempotency_key="job-1")
    assert not isinstance(caught.value, SubmitOutcomeUnknown)
