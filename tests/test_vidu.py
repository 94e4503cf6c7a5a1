"""Vidu against its fake: every create field, task query, cancel, task list, credits."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from providers import ErrorKind, GenerationRequest, Operation, TaskRef, TaskState
from providers.errors import CancelNotPossible, InvalidRequest, RateLimited
from providers.vidu import Vidu
from providers.vidu.client import build_create_request, payload_for, task_status
from providers.vidu.models import PAYLOAD_MAX_LENGTH, Creation, TaskCreations
from simulators.fake_providers import FakeVidu, Outcome
from tests.conftest import VIDU_KEY, image_bytes, poll_until, vidu_client


def request(client: Vidu, **params: Any) -> GenerationRequest:
    media = client.prepare_media(Operation.IMAGE_TO_VIDEO, image_bytes(640, 480))
    return GenerationRequest(Operation.IMAGE_TO_VIDEO, {"prompt": "a wave", **params}, media)


async def test_create_sends_the_image_as_a_data_uri_and_the_job_key_as_payload(vidu: Vidu, vidu_fake: FakeVidu) -> None:
    job = request(vidu)
    submission = await vidu.submit(job, idempotency_key="job-9")

    [sent] = vidu_fake.requests
    assert (sent.route, sent.path) == ("create", "/ent/v2/img2video")
    assert sent.headers["Authorization"] == f"Token {VIDU_KEY}"
    body = dict(sent.json)
    [image] = body.pop("images")
    prefix = "data:image/png;base64,"
    assert image.startswith(prefix)
    assert base64.b64decode(image.removeprefix(prefix)) == job.media.data
    assert body == {"model": "viduq2", "prompt": "a wave", "duration": 5, "payload": payload_for("job-9")}
    assert submission.credits is not None
    assert vidu_fake.tasks[submission.task_id].body["payload"] == "animate-bot:job-9"


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        (
            {
                "model": "viduq3-pro",
                "duration": 16,
                "resolution": "1080p",
                "movement_amplitude": "large",
                "seed": 77,
                "audio": True,
                "voice_id": "v-1",
                "recommend_prompt": True,
            },
            {
                "model": "viduq3-pro",
                "duration": 16,
                "resolution": "1080p",
                "movement_amplitude": "large",
                "seed": 77,
                "audio": True,
                "voice_id": "v-1",
                "is_rec": True,
            },
        ),
        # q3 makes sound by default; off-peak cannot, so the bot turns sound off explicitly.
        (
            {"model": "viduq3-turbo", "off_peak": True},
            {"model": "viduq3-turbo", "duration": 5, "off_peak": True, "audio": False},
        ),
        ({"model": "viduq3-turbo", "voice_id": "v-2"}, {"model": "viduq3-turbo", "duration": 5, "voice_id": "v-2"}),
        ({"model": "viduq1", "resolution": "1080p"}, {"model": "viduq1", "duration": 5, "resolution": "1080p"}),
        ({"model": "viduq2", "audio": False}, {"model": "viduq2", "duration": 5, "audio": False}),
    ],
)
async def test_every_option_reaches_its_documented_field(
    vidu: Vidu, vidu_fake: FakeVidu, params: dict[str, Any], expected: dict[str, Any]
) -> None:
    await vidu.submit(request(vidu, **params), idempotency_key="job")
    body = dict(vidu_fake.requests[-1].json)
    body.pop("images")
    body.pop("payload")
    assert body == {"prompt": "a wave", **expected}


async def test_bearer_scheme_for_relays(session: aiohttp.ClientSession) -> None:
    async with FakeVidu(api_key=VIDU_KEY, auth_scheme="Bearer", prefix="/vidu") as fake:
        client = vidu_client(session, fake, auth_scheme="Bearer")
        await client.check()
        assert fake.requests[-1].headers["Authorization"] == f"Bearer {VIDU_KEY}"


async def test_a_finished_task_has_its_video_and_cover(vidu: Vidu, session: aiohttp.ClientSession) -> None:
    submission = await vidu.submit(request(vidu), idempotency_key="job")
    seen = await poll_until(vidu, TaskRef(submission.task_id), lambda status: status.state.finished)
    final = seen[-1]
    assert final.state is TaskState.SUCCEEDED
    assert final.cover_url
    async with session.get(final.cover_url) as response:
        assert (await response.read())[:3] == b"\xff\xd8\xff"


async def test_cancel_a_queued_task(session: aiohttp.ClientSession) -> None:
    async with FakeVidu(api_key=VIDU_KEY, queue_seconds=30) as fake:
        client = vidu_client(session, fake)
        submission = await client.submit(request(client), idempotency_key="job")
        task = TaskRef(submission.task_id)
        [before] = await client.poll([task])
        await client.cancel(task)
        [after] = await client.poll([task])
    assert before.state is TaskState.QUEUED
    assert (after.state, after.error_kind) == (TaskState.FAILED, ErrorKind.CANCELLED)
    cancel = next(r for r in fake.requests if r.route == "cancel")
    assert (cancel.path, cancel.json) == (f"/ent/v2/tasks/{task.task_id}/cancel", {"id": task.task_id})


async def test_a_running_task_cannot_be_cancelled(session: aiohttp.ClientSession) -> None:
    async with FakeVidu(api_key=VIDU_KEY, queue_seconds=0, run_seconds=30) as fake:
        client = vidu_client(session, fake)
        submission = await client.submit(request(client), idempotency_key="job")
        await poll_until(client, TaskRef(submission.task_id), lambda status: status.state is TaskState.RUNNING)
        with pytest.raises(CancelNotPossible, match="can no longer cancel"):
            await client.cancel(TaskRef(submission.task_id))
        assert fake.route_count("cancel") == 1


async def test_off_peak_tasks_wait_longer(session: aiohttp.ClientSession) -> None:
    async with FakeVidu(api_key=VIDU_KEY, queue_seconds=0, off_peak_seconds=30) as fake:
        client = vidu_client(session, fake)
        now = await client.submit(request(client), idempotency_key="now")
        later = await client.submit(request(client, off_peak=True), idempotency_key="later")
        await asyncio.sleep(0.1)
        statuses = await client.poll([TaskRef(now.task_id), TaskRef(later.task_id)])
    assert [status.state for status in statuses] == [TaskState.RUNNING, TaskState.QUEUED]


async def test_the_organisation_runs_five_at_once_and_queues_the_rest(session: aiohttp.ClientSession) -> None:
    async with FakeVidu(api_key=VIDU_KEY, queue_seconds=0, run_seconds=30) as fake:
        client = vidu_client(session, fake)
        tasks = [TaskRef((await client.submit(request(client), idempotency_key=f"j{n}")).task_id) for n in range(7)]
        await asyncio.sleep(0.05)
        statuses = await client.poll(tasks)
    assert [status.state for status in statuses].count(TaskState.RUNNING) == 5
    assert [status.state for status in statuses].count(TaskState.QUEUED) == 2


async def test_over_the_concurrency_quota_is_a_concurrency_limit(session: aiohttp.ClientSession) -> None:
    async with FakeVidu(api_key=VIDU_KEY, concurrency=1, reject_over_concurrency=True, run_seconds=30) as fake:
        client = vidu_client(session, fake)
        await client.submit(request(client), idempotency_key="one")
        with pytest.raises(RateLimited) as caught:
            await client.submit(request(client), idempotency_key="two")
    assert caught.value.concurrency
    assert caught.value.code == "QuotaExceeded"


async def test_a_lost_task_id_is_found_again_by_its_payload(vidu: Vidu, vidu_fake: FakeVidu) -> None:
    since = datetime.now(UTC) - timedelta(minutes=5)
    created = [await vidu.submit(request(vidu), idempotency_key=f"job-{n}") for n in range(3)]

    found = await vidu.find_task("job-1", created_from=since)
    missing = await vidu.find_task("job-404", created_from=since)

    assert found is not None
    assert found.id == created[1].task_id
    assert missing is None
    listing = next(r for r in vidu_fake.requests if r.route == "tasks")
    assert listing.path == "/ent/v2/tasks"
    assert listing.query["pager.pagesz"] == "100"


async def test_the_task_list_pages(vidu: Vidu) -> None:
    ids = {(await vidu.submit(request(vidu), idempotency_key=f"job-{n}")).task_id for n in range(3)}
    seen: list[str] = []
    token = ""
    for _ in range(5):
        page = await vidu.list_tasks(page_size=2, page_token=token)
        seen += [task.id for task in page.tasks]
        token = page.next_page_token
        if not token:
            break
    assert sorted(seen) == sorted(ids)


async def test_check_reports_credits(vidu: Vidu, vidu_fake: FakeVidu) -> None:
    result = await vidu.check()
    assert result.credits == 100_000
    assert "5 tasks at once" in result.detail
    assert vidu_fake.requests[-1].path == "/ent/v2/credits"


async def test_a_moderated_result_is_rejected(vidu: Vidu, vidu_fake: FakeVidu) -> None:
    vidu_fake.outcomes.append(Outcome("moderation"))
    submission = await vidu.submit(request(vidu), idempotency_key="job")
    seen = await poll_until(vidu, TaskRef(submission.task_id), lambda status: status.state.finished)
    assert (seen[-1].state, seen[-1].provider_status) == (TaskState.REJECTED, "failed:CreationPolicyViolation")


@pytest.mark.parametrize(
    ("state", "err_code", "creations", "expected", "kind"),
    [
        ("created", "", [], TaskState.QUEUED, None),
        ("queueing", "", [], TaskState.QUEUED, None),
        ("processing", "", [], TaskState.RUNNING, None),
        ("scheduling", "", [], TaskState.RUNNING, None),
        ("success", "", [Creation(url="https://v/1.mp4", cover_url="https://v/1.jpg")], TaskState.SUCCEEDED, None),
        ("success", "", [], TaskState.FAILED, ErrorKind.GENERATION_FAILED),
        ("failed", "InternalServiceFailure", [], TaskState.FAILED, ErrorKind.GENERATION_FAILED),
        ("failed", "AuditSubmitIllegal", [], TaskState.REJECTED, ErrorKind.MODERATION),
        ("failed", "TaskPromptPolicyViolation", [], TaskState.REJECTED, ErrorKind.MODERATION),
        ("failed", "CreationPolicyViolation", [], TaskState.REJECTED, ErrorKind.MODERATION),
        ("failed", "UserCancelled", [], TaskState.FAILED, ErrorKind.CANCELLED),
        ("failed", "CreditInsufficient", [], TaskState.FAILED, ErrorKind.INSUFFICIENT_CREDITS),
    ],
)
def test_states_map_to_one_state(
    state: str, err_code: str, creations: list[Creation], expected: TaskState, kind: ErrorKind | None
) -> None:
    status = task_status(TaskCreations(id="1", state=state, err_code=err_code, creations=creations))
    assert (status.state, status.error_kind) == (expected, kind)
    if expected is TaskState.SUCCEEDED:
        assert (status.video_url, status.cover_url) == ("https://v/1.mp4", "https://v/1.jpg")


async def test_a_job_key_with_an_attempt_suffix_fits_and_is_found_by_that_key(vidu: Vidu, vidu_fake: FakeVidu) -> None:
    since = datetime.now(UTC)
    job_key = uuid.uuid4().hex
    first = await vidu.submit(request(vidu), idempotency_key=f"{job_key}-1")
    second = await vidu.submit(request(vidu), idempotency_key=f"{job_key}-2")
    # Other jobs' keys that share a prefix must never match.
    await vidu.submit(request(vidu), idempotency_key=f"{job_key}-12")

    assert vidu_fake.tasks[second.task_id].body["payload"] == f"animate-bot:{job_key}-2"
    assert len(payload_for(f"{job_key}-99")) <= PAYLOAD_MAX_LENGTH
    found = await vidu.recover_submission(request(vidu), idempotency_key=f"{job_key}-2", since=since)
    assert found is not None
    assert found.task_id == second.task_id
    found = await vidu.recover_submission(request(vidu), idempotency_key=f"{job_key}-1", since=since)
    assert found is not None
    assert found.task_id == first.task_id
    assert await vidu.recover_submission(request(vidu), idempotency_key=f"{job_key}-3", since=since) is None


RECORDED_CREATE = {
    "task_id": "911045603801182208",
    "type": "img2video",
    "state": "created",
    "model": "viduq2-pro",
    "style": None,
    "prompt": "a wave",
    "images": None,
    "duration": 5,
    "seed": "12345",
    "aspect_ratio": None,
    "resolution": "720p",
    "bgm": None,
    "audio": None,
    "movement_amplitude": None,
    "created_at": "2026-01-20T04:01:53.504648743Z",
    "credits": None,
    "payload": None,
    "cus_priority": None,
    "off_peak": "false",
    "watermark": None,
    "is_rec": None,
    "wm_position": 3,
    "wm_url": None,
    "meta_data": None,
    "client_request_id": None,
    "err_code": None,
}
RECORDED_CREATIONS = {
    "id": "911045603801182208",
    "state": "processing",
    "err_code": None,
    "credits": None,
    "payload": None,
    "bgm": None,
    "off_peak": None,
    "progress": "40",
    "creations": None,
    "created_at": None,
}


async def test_a_create_answer_full_of_nulls_is_accepted(vidu: Vidu, vidu_fake: FakeVidu) -> None:
    vidu_fake.fail("create", "malformed", body=json.dumps(RECORDED_CREATE))
    submission = await vidu.submit(request(vidu), idempotency_key="job")
    assert submission.task_id == "911045603801182208"
    assert submission.credits is None


async def test_a_task_answer_full_of_nulls_is_read(vidu: Vidu, vidu_fake: FakeVidu) -> None:
    vidu_fake.fail("creations", "malformed", body=json.dumps(RECORDED_CREATIONS))
    [status] = await vidu.poll([TaskRef("911045603801182208")])
    assert (status.state, status.progress, status.provider_status) == (TaskState.RUNNING, 0.4, "processing")

    done = {
        **RECORDED_CREATIONS,
        "state": "success",
        "creations": [
            {"id": None, "url": "https://v/1.mp4", "cover_url": None, "watermarked_url": None, "video": None}
        ],
    }
    vidu_fake.fail("creations", "malformed", body=json.dumps(done))
    [status] = await vidu.poll([TaskRef("911045603801182208")])
    assert (status.state, status.video_url, status.cover_url) == (TaskState.SUCCEEDED, "https://v/1.mp4", None)


async def test_an_undocumented_state_is_running_with_one_warning(
    vidu: Vidu, vidu_fake: FakeVidu, caplog: pytest.LogCaptureFixture
) -> None:
    odd = {"id": "1", "state": "scheduling"}
    vidu_fake.fail("creations", "malformed", times=3, body=json.dumps(odd))
    with caplog.at_level(logging.WARNING, logger="providers"):
        for _ in range(3):
            [status] = await vidu.poll([TaskRef("1")])
            assert status.state is TaskState.RUNNING
    warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "scheduling" in warnings[0].getMessage()


@pytest.mark.parametrize(
    ("model", "duration", "resolution"),
    [
        ("viduq2-pro", 10, "540p"),
        ("viduq2-turbo", 1, "1080p"),
        ("viduq2-pro-fast", 7, "720p"),
        ("viduq1-classic", 5, "1080p"),
    ],
)
async def test_the_older_pages_models_are_offered_and_accepted(
    vidu: Vidu, vidu_fake: FakeVidu, model: str, duration: int, resolution: str
) -> None:
    submission = await vidu.submit(
        request(vidu, model=model, duration=duration, resolution=resolution), idempotency_key="job"
    )
    assert vidu_fake.tasks[submission.task_id].body["model"] == model


@pytest.mark.parametrize(
    ("params", "problem"),
    [
        ({"model": "viduq2-pro-fast", "resolution": "540p"}, "Vidu viduq2-pro-fast renders at 720p or 1080p"),
        ({"model": "viduq1-classic", "duration": 8}, "Vidu viduq1-classic makes videos of 5 seconds"),
        ({"model": "viduq2-turbo", "duration": 11}, "Vidu viduq2-turbo makes videos of 1 to 10 seconds"),
    ],
)
async def test_the_new_models_rules(vidu: Vidu, vidu_fake: FakeVidu, params: dict[str, Any], problem: str) -> None:
    [found] = vidu.validate(Operation.IMAGE_TO_VIDEO, {"prompt": "p", **params})
    assert found.startswith(problem)
    # The fake refuses the same request when it is sent anyway.
    body = build_create_request({"prompt": "p", **params}, request(vidu).media, "x")  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest):
        await vidu.create(body)
