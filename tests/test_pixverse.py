"""PixVerse against its fake: upload, every generate field, trace ids, results and balance."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest

from providers import ErrorKind, GenerationRequest, Operation, Submission, TaskRef, TaskState
from providers.errors import InvalidRequest, RateLimited
from providers.pixverse import PixVerse
from providers.pixverse.client import task_status, trace_id_for
from providers.pixverse.models import GenerateRequest, VideoResult
from simulators.fake_providers import FakeClock, FakePixVerse, Outcome
from tests.conftest import PIXVERSE_KEY, image_bytes, pixverse_client, poll_until


def request(client: PixVerse, **params: Any) -> GenerationRequest:
    media = client.prepare_media(Operation.IMAGE_TO_VIDEO, image_bytes(800, 600, "JPEG"))
    return GenerationRequest(Operation.IMAGE_TO_VIDEO, {"prompt": "a wave", **params}, media)


async def test_submit_uploads_the_image_then_generates_with_it(pixverse: PixVerse, pixverse_fake: FakePixVerse) -> None:
    job = request(pixverse)
    submission = await pixverse.submit(job, idempotency_key="job-1")

    upload, generate = pixverse_fake.requests
    assert (upload.route, upload.path) == ("upload", "/openapi/v2/image/upload")
    assert upload.form is not None
    assert upload.form["image"] == job.media.data
    assert (generate.route, generate.path) == ("generate", "/openapi/v2/video/img/generate")
    img_id = generate.json.pop("img_id")
    assert isinstance(img_id, int)
    assert generate.json == {"duration": 5, "model": "v5", "prompt": "a wave", "quality": "720p"}
    for sent in (upload, generate):
        assert sent.headers["API-KEY"] == PIXVERSE_KEY
    assert submission.task_id == str(int(submission.task_id))
    assert submission.credits is not None


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        (
            {
                "model": "v4",
                "duration": 8,
                "quality": "540p",
                "motion_mode": "normal",
                "camera_movement": "zoom_in",
                "style": "anime",
                "seed": 2147483647,
                "negative_prompt": "blur",
                "sound_effect": "rain on a roof",
                "lip_sync_text": "hello",
                "lip_sync_voice": "voice-7",
            },
            {
                "model": "v4",
                "duration": 8,
                "quality": "540p",
                "motion_mode": "normal",
                "camera_movement": "zoom_in",
                "style": "anime",
                "seed": 2147483647,
                "negative_prompt": "blur",
                "sound_effect_switch": True,
                "sound_effect_content": "rain on a roof",
                "lip_sync_tts_switch": True,
                "lip_sync_tts_content": "hello",
                "lip_sync_tts_speaker_id": "voice-7",
            },
        ),
        (
            {"model": "v5.5", "duration": 10, "audio": True, "multi_clip": False, "thinking": "enabled"},
            {
                "model": "v5.5",
                "duration": 10,
                "quality": "720p",
                "generate_audio_switch": True,
                "generate_multi_clip_switch": False,
                "thinking_type": "enabled",
            },
        ),
        (
            {"model": "v3.5", "sound_effect": "auto", "motion_mode": "fast"},
            {"model": "v3.5", "duration": 5, "quality": "720p", "motion_mode": "fast", "sound_effect_switch": True},
        ),
        (
            {"model": "c1", "duration": 13, "audio": False},
            {"model": "c1", "duration": 13, "quality": "720p", "generate_audio_switch": False},
        ),
    ],
)
async def test_every_option_reaches_its_documented_field(
    pixverse: PixVerse, pixverse_fake: FakePixVerse, params: dict[str, Any], expected: dict[str, Any]
) -> None:
    await pixverse.submit(request(pixverse, **params), idempotency_key="job")
    body = dict(pixverse_fake.requests[-1].json)
    body.pop("img_id")
    assert body == {"prompt": "a wave", **expected}


async def test_every_request_has_a_fresh_trace_id_but_a_job_keeps_its_own(
    pixverse: PixVerse, pixverse_fake: FakePixVerse
) -> None:
    first = await pixverse.submit(request(pixverse), idempotency_key="job-1")
    await poll_until(pixverse, TaskRef(first.task_id), lambda status: status.state.finished)
    await pixverse.check()

    traces = [r.headers["Ai-trace-id"] for r in pixverse_fake.requests if r.route != "generate"]
    assert len(traces) == len(set(traces)) >= 4
    [generate] = [r for r in pixverse_fake.requests if r.route == "generate"]
    assert generate.headers["Ai-trace-id"] == trace_id_for("job-1")
    assert generate.headers["Ai-trace-id"] not in traces

    # Sending the same job again (after a crash, say) reuses its trace id and gets the same video back.
    again = await pixverse.submit(request(pixverse), idempotency_key="job-1")
    assert again.task_id == first.task_id
    assert len(pixverse_fake.tasks) == 1
    other = await pixverse.submit(request(pixverse), idempotency_key="job-2")
    assert other.task_id != first.task_id
    assert len(pixverse_fake.tasks) == 2


async def test_a_deleted_video_is_a_failure(pixverse: PixVerse, pixverse_fake: FakePixVerse) -> None:
    pixverse_fake.outcomes.append(Outcome("deleted"))
    submission = await pixverse.submit(request(pixverse), idempotency_key="job")
    seen = await poll_until(pixverse, TaskRef(submission.task_id), lambda status: status.state.finished)
    assert (seen[-1].state, seen[-1].error_kind, seen[-1].provider_status) == (
        TaskState.FAILED,
        ErrorKind.GENERATION_FAILED,
        "6",
    )


async def test_check_reports_the_balance(pixverse: PixVerse, pixverse_fake: FakePixVerse) -> None:
    balance = await pixverse.balance()
    result = await pixverse.check()
    assert result.credits == balance.credit_monthly + balance.credit_package
    assert [r.path for r in pixverse_fake.requests] == ["/openapi/v2/account/balance"] * 2


async def test_a_concurrency_refusal_is_a_concurrency_limit(session: aiohttp.ClientSession) -> None:
    async with FakePixVerse(api_key=PIXVERSE_KEY, max_concurrent=1, run_seconds=5) as fake:
        client = pixverse_client(session, fake)
        await client.submit(request(client), idempotency_key="job-1")
        with pytest.raises(RateLimited) as caught:
            await client.submit(request(client), idempotency_key="job-2")
    assert caught.value.concurrency
    assert caught.value.code == "500044"


@pytest.mark.parametrize(
    ("status", "url", "state", "kind"),
    [
        (5, None, TaskState.RUNNING, None),
        (2, None, TaskState.RUNNING, None),
        (1, "https://media/v.mp4", TaskState.SUCCEEDED, None),
        (1, None, TaskState.FAILED, ErrorKind.GENERATION_FAILED),
        (6, None, TaskState.FAILED, ErrorKind.GENERATION_FAILED),
        (7, None, TaskState.REJECTED, ErrorKind.MODERATION),
        (8, None, TaskState.FAILED, ErrorKind.GENERATION_FAILED),
        (99, None, TaskState.RUNNING, None),
    ],
)
def test_status_values_map_to_one_state(status: int, url: str | None, state: TaskState, kind: ErrorKind | None) -> None:
    mapped = task_status(VideoResult(id=391504480090022, status=status, url=url))
    assert (mapped.task_id, mapped.state, mapped.error_kind) == ("391504480090022", state, kind)


async def test_a_replayed_refusal_stays_with_its_key_and_a_new_key_gets_a_fresh_create(
    session: aiohttp.ClientSession,
) -> None:
    clock = FakeClock()
    async with FakePixVerse(
        api_key=PIXVERSE_KEY, clock=clock, max_concurrent=1, run_seconds=5, replay_refusals=True
    ) as fake:
        client = pixverse_client(session, fake)
        await client.submit(request(client), idempotency_key="busy-1")
        with pytest.raises(RateLimited):
            await client.submit(request(client), idempotency_key="job-1")
        clock.advance(10)  # the slot is free again

        # PixVerse answers the same trace id with the same refusal, whether sent or recovered.
        with pytest.raises(RateLimited) as replayed:
            await client.submit(request(client), idempotency_key="job-1")
        assert replayed.value.code == "500044"
        since = datetime.now(UTC)
        assert await client.recover_submission(request(client), idempotency_key="job-1", since=since) is None

        # The scheduler's next attempt carries a new key, so a new trace id and a real create.
        accepted = await client.submit(request(client), idempotency_key="job-2")

    generates = fake.requests_for("generate")
    traces = [sent.headers["Ai-trace-id"] for sent in generates]
    assert traces[1:4] == [trace_id_for("job-1")] * 3
    assert traces[4] == trace_id_for("job-2") != trace_id_for("job-1")
    assert int(accepted.task_id) in fake.tasks
    assert len(fake.tasks) == 2


async def test_without_replayed_refusals_the_same_key_is_created_once_free(session: aiohttp.ClientSession) -> None:
    clock = FakeClock()
    async with FakePixVerse(api_key=PIXVERSE_KEY, clock=clock, max_concurrent=1, run_seconds=5) as fake:
        client = pixverse_client(session, fake)
        await client.submit(request(client), idempotency_key="busy-1")
        with pytest.raises(RateLimited):
            await client.submit(request(client), idempotency_key="job-1")
        clock.advance(10)
        since = datetime.now(UTC)
        found = await client.recover_submission(request(client), idempotency_key="job-1", since=since)
    assert found is not None
    assert int(found.task_id) in fake.tasks


def test_style_offers_clay_and_reads_day_as_clay() -> None:
    caps = PixVerse.capabilities[Operation.IMAGE_TO_VIDEO]
    styles = caps.option("style").choices
    assert "clay" in styles
    assert "day" not in styles
    assert caps.validate({"prompt": "p", "style": "day"}) == []
    assert caps.resolve({"prompt": "p", "style": "day"})["style"] == "clay"


async def test_the_day_alias_is_sent_as_clay(pixverse: PixVerse, pixverse_fake: FakePixVerse) -> None:
    await pixverse.submit(request(pixverse, style="day"), idempotency_key="job")
    assert pixverse_fake.requests[-1].json["style"] == "clay"


async def test_the_fake_refuses_the_misspelt_style(pixverse: PixVerse) -> None:
    uploaded = await pixverse.upload_image(request(pixverse).media)  # type: ignore[arg-type]
    body = GenerateRequest(duration=5, img_id=uploaded.img_id, model="v5", prompt="p", quality="720p", style="day")
    with pytest.raises(InvalidRequest):
        await pixverse.generate(body, trace_id="t-1")


RECORDED_GENERATE = {"ErrCode": 0, "ErrMsg": None, "Resp": {"video_id": 391504480090022, "credits": None}}
RECORDED_RESULT = {
    "ErrCode": 0,
    "ErrMsg": "success",
    "Resp": {
        "id": 391504480090022,
        "status": 5,
        "url": None,
        "prompt": None,
        "negative_prompt": None,
        "seed": "12345",
        "style": None,
        "size": None,
        "outputWidth": None,
        "outputHeight": None,
        "resolution_ratio": None,
        "create_time": None,
        "modify_time": None,
        "has_audio": None,
        "credits": None,
    },
}


async def test_recorded_answers_full_of_nulls_are_read(pixverse: PixVerse, pixverse_fake: FakePixVerse) -> None:
    pixverse_fake.fail("generate", "malformed", body=json.dumps(RECORDED_GENERATE))
    submission = await pixverse.submit(request(pixverse), idempotency_key="job")
    assert submission == Submission(task_id="391504480090022", credits=None)

    pixverse_fake.fail("result", "malformed", body=json.dumps(RECORDED_RESULT))
    [status] = await pixverse.poll([TaskRef(submission.task_id)])
    assert (status.state, status.provider_status) == (TaskState.RUNNING, "5")


async def test_an_undocumented_status_is_running_with_one_warning(
    pixverse: PixVerse, pixverse_fake: FakePixVerse, caplog: pytest.LogCaptureFixture
) -> None:
    odd = {**RECORDED_RESULT, "Resp": {"id": 391504480090022, "status": 42}}
    pixverse_fake.fail("result", "malformed", times=3, body=json.dumps(odd))
    with caplog.at_level(logging.WARNING, logger="providers"):
        for _ in range(3):
            [status] = await pixverse.poll([TaskRef("391504480090022")])
            assert (status.state, status.provider_status) == (TaskState.RUNNING, "42")
    warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "42" in warnings[0].getMessage()


@pytest.mark.parametrize(
    ("route", "kind", "params", "error"),
    [
        # The image upload comes before the replayed generate, so its refusal says nothing of the first send.
        ("upload", "business_error", {"code": 400017, "message": "invalid parameter"}, InvalidRequest),
        # A gateway's HTTP 429 is not PixVerse's answer to the trace id.
        ("generate", "rate_limited", {}, RateLimited),
    ],
)
async def test_recovery_does_not_settle_on_answers_that_prove_nothing(
    pixverse: PixVerse, pixverse_fake: FakePixVerse, route: str, kind: str, params: dict[str, Any], error: type
) -> None:
    pixverse_fake.fail(route, kind, **params)
    with pytest.raises(error):
        await pixverse.recover_submission(request(pixverse), idempotency_key="job-1", since=datetime.now(UTC))
