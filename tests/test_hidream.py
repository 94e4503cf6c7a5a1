"""HiDream against its fake: every documented field, batch and single queries, stylization."""

from __future__ import annotations

import base64
import json
import logging
import uuid

import aiohttp
import pytest

from providers import ErrorKind, GenerationRequest, Operation, TaskRef, TaskState
from providers.hidream import HiDream
from providers.hidream.client import task_status
from providers.hidream.models import Module, SubTaskResult, TaskResult
from simulators.fake_providers import FakeHiDream, build_mp4
from tests.conftest import HIDREAM_KEY, hidream_client, image_bytes, poll_until


def image_request(client: HiDream, width: int = 640, height: int = 360, **params: object) -> GenerationRequest:
    media = client.prepare_media(Operation.IMAGE_TO_VIDEO, image_bytes(width, height))
    return GenerationRequest(Operation.IMAGE_TO_VIDEO, params, media)  # type: ignore[arg-type]


def stylize_request(client: HiDream, **params: object) -> GenerationRequest:
    media = client.prepare_media(Operation.STYLIZE, build_mp4(duration=3.0))
    return GenerationRequest(Operation.STYLIZE, params, media)  # type: ignore[arg-type]


async def test_image_to_video_sends_every_documented_field(hidream: HiDream, hidream_fake: FakeHiDream) -> None:
    request = image_request(
        hidream,
        prompt="the cat waves",
        negative_prompt="blur",
        resolution="960*960",
        camera_horizontal=-5,
        camera_vertical=2,
        camera_depth=5,
        motion_strength=12.5,
    )
    submission = await hidream.submit(request, idempotency_key="job-42")

    [sent] = hidream_fake.requests
    assert sent.route == "submit_img2video"
    assert sent.path == "/api-pub/gw/v3/video/img2video/async"
    assert sent.headers["Authorization"] == f"Bearer {HIDREAM_KEY}"
    assert sent.headers["Content-Type"].startswith("application/json")
    body = sent.json
    assert base64.b64decode(body.pop("image")) == request.media.data
    assert body == {
        "prompt": "the cat waves",
        "negative_prompt": "blur",
        "version": "v2",
        "resolution": "960*960",
        "request_id": "job-42",
        "camera_move_horizontal": -5,
        "camera_move_vertical": 2,
        "camera_move_depth": 5,
        "motion_strength": 12.5,
    }
    assert submission.task_id in hidream_fake.tasks


@pytest.mark.parametrize(
    ("width", "height", "resolution"),
    [(640, 360, "1280*720"), (360, 640, "720*1280"), (500, 480, "960*960"), (1000, 700, "1280*720")],
)
async def test_resolution_follows_the_image_when_not_chosen(
    hidream: HiDream, hidream_fake: FakeHiDream, width: int, height: int, resolution: str
) -> None:
    await hidream.submit(image_request(hidream, width, height), idempotency_key="job")
    body = hidream_fake.requests[-1].json
    assert body["resolution"] == resolution
    assert (body["prompt"], body["motion_strength"], body["camera_move_depth"]) == ("", 9.0, 0)


async def test_stylization_sends_the_video_and_polls_its_own_module(
    hidream: HiDream, hidream_fake: FakeHiDream
) -> None:
    request = stylize_request(hidream, style="ink_wash")
    submission = await hidream.submit(request, idempotency_key="job-7")

    sent = hidream_fake.requests[-1]
    assert sent.path == "/api-pub/gw/v2/video/video_edit/async"
    assert sent.json == {"video_name": request.media.base64(), "style": "ink_wash", "request_id": "job-7"}

    task = TaskRef(submission.task_id, Operation.STYLIZE)
    seen = await poll_until(hidream, task, lambda status: status.state.finished)
    assert seen[-1].state is TaskState.SUCCEEDED
    assert {r.path for r in hidream_fake.requests if r.route == "batch_query"} == {
        "/api-pub/gw/v2/video/video_edit/async/results/batch"
    }


async def test_stylization_by_prompt(hidream: HiDream, hidream_fake: FakeHiDream) -> None:
    await hidream.submit(stylize_request(hidream, prompt="oil painting"), idempotency_key="job-8")
    body = hidream_fake.requests[-1].json
    assert (body["prompt"], "style" in body) == ("oil painting", False)


async def test_progress_is_reported_while_running(session: aiohttp.ClientSession) -> None:
    async with FakeHiDream(api_key=HIDREAM_KEY, queue_seconds=0, run_seconds=1.0) as fake:
        client = hidream_client(session, fake)
        submission = await client.submit(image_request(client), idempotency_key="job")
        seen = await poll_until(client, TaskRef(submission.task_id), lambda status: status.state.finished)
    running = [status.progress for status in seen if status.state is TaskState.RUNNING]
    assert running
    assert all(progress is not None and 0 <= progress <= 1 for progress in running)
    assert running == sorted(running)  # type: ignore[type-var]
    assert seen[-1].progress == 1.0


async def test_many_tasks_are_polled_in_batches_one_request_per_module_chunk(
    session: aiohttp.ClientSession, hidream_fake: FakeHiDream
) -> None:
    client = hidream_client(session, hidream_fake, batch_size=2)
    images = [TaskRef((await client.submit(image_request(client), idempotency_key=f"i{n}")).task_id) for n in range(5)]
    videos = [
        TaskRef(
            (await client.submit(stylize_request(client, style="anime"), idempotency_key=f"v{n}")).task_id,
            Operation.STYLIZE,
        )
        for n in range(2)
    ]
    mixed = [videos[0], *images, videos[1], TaskRef("no-such-task")]
    before = hidream_fake.route_count("batch_query")

    statuses = await client.poll(mixed)

    assert hidream_fake.route_count("batch_query") - before == 3 + 1
    assert [status.task_id for status in statuses] == [task.task_id for task in mixed]
    assert statuses[-1].state is TaskState.QUEUED
    assert statuses[-1].provider_status == "no sub-tasks"
    batches = [r.json["task_id_list"] for r in hidream_fake.requests if r.route == "batch_query"]
    assert max(len(batch) for batch in batches) == 2


async def test_single_task_query_uses_the_versioned_results_path(hidream: HiDream, hidream_fake: FakeHiDream) -> None:
    image_task = await hidream.submit(image_request(hidream), idempotency_key="a")
    video_task = await hidream.submit(stylize_request(hidream, style="cartoon"), idempotency_key="b")

    image_result = await hidream.query(Module.IMG2VIDEO, image_task.task_id)
    video_result = await hidream.query(Module.VIDEO_EDIT, video_task.task_id)

    assert image_result.task_id == image_task.task_id
    assert video_result.task_id == video_task.task_id
    queries = [r for r in hidream_fake.requests if r.route == "single_query"]
    assert [(r.path, r.query["task_id"]) for r in queries] == [
        ("/api-pub/gw/v3/video/img2video/async/results", image_task.task_id),
        ("/api-pub/gw/v2/video/video_edit/async/results", video_task.task_id),
    ]


async def test_a_base_url_may_carry_a_path_prefix(session: aiohttp.ClientSession) -> None:
    async with FakeHiDream(api_key=HIDREAM_KEY, prefix="/relay/hidream") as fake:
        client = hidream_client(session, fake)
        assert fake.base_url.endswith("/relay/hidream")
        submission = await client.submit(image_request(client), idempotency_key="job")
        [status] = await client.poll([TaskRef(submission.task_id)])
    assert status.task_id == submission.task_id


def sub(status: int, completion: float = 0.0, video: str = "") -> SubTaskResult:
    return SubTaskResult(sub_task_id=str(uuid.uuid4()), task_status=status, task_completion=completion, video=video)


@pytest.mark.parametrize(
    ("subs", "state", "kind", "progress"),
    [
        ([], TaskState.QUEUED, None, None),
        ([sub(0)], TaskState.QUEUED, None, 0.0),
        ([sub(2, 0.37)], TaskState.RUNNING, None, 0.37),
        ([sub(-1, 0.2)], TaskState.RUNNING, None, 0.2),
        ([sub(1, 1, "https://media/v.mp4")], TaskState.SUCCEEDED, None, 1.0),
        ([sub(1, 1, "")], TaskState.FAILED, ErrorKind.GENERATION_FAILED, None),
        ([sub(1, 1, "https://media/v.mp4"), sub(2, 0.5)], TaskState.RUNNING, None, 0.75),
        ([sub(3)], TaskState.FAILED, ErrorKind.GENERATION_FAILED, None),
        ([sub(4)], TaskState.REJECTED, ErrorKind.MODERATION, None),
        ([sub(2, 0.5), sub(4)], TaskState.REJECTED, ErrorKind.MODERATION, None),
    ],
)
def test_sub_task_states_map_to_one_state(
    subs: list[SubTaskResult], state: TaskState, kind: ErrorKind | None, progress: float | None
) -> None:
    status = task_status(TaskResult(task_id="t", sub_task_results=subs))
    assert status.state is state
    assert status.error_kind is kind
    assert status.progress == progress


async def test_v3_tasks_unknown_to_the_batch_are_found_on_their_own_results_endpoint(
    session: aiohttp.ClientSession,
) -> None:
    async with FakeHiDream(api_key=HIDREAM_KEY, v3_results_only=True) as fake:
        client = hidream_client(session, fake)
        first = await client.submit(image_request(client), idempotency_key="a")
        [status] = await client.poll([TaskRef(first.task_id)])
        assert status.state in (TaskState.QUEUED, TaskState.RUNNING)
        assert status.provider_status != "no sub-tasks"
        # The wrong guess cost one batch request; from now on the client asks the v3 endpoint first.
        assert (fake.route_count("batch_query"), fake.route_count("single_query")) == (1, 1)

        second = await client.submit(image_request(client), idempotency_key="b")
        for task in (first, second):
            seen = await poll_until(client, TaskRef(task.task_id), lambda status: status.state.finished)
            assert seen[-1].state is TaskState.SUCCEEDED
        assert fake.route_count("batch_query") == 1
        singles = fake.requests_for("single_query")
        assert {r.path for r in singles} == {"/api-pub/gw/v3/video/img2video/async/results"}


async def test_the_batch_stays_first_where_it_knows_the_tasks(hidream: HiDream, hidream_fake: FakeHiDream) -> None:
    submission = await hidream.submit(image_request(hidream), idempotency_key="a")
    seen = await poll_until(hidream, TaskRef(submission.task_id), lambda status: status.state.finished)
    assert seen[-1].state is TaskState.SUCCEEDED
    assert hidream_fake.route_count("single_query") == 0


async def test_a_task_no_endpoint_lists_yet_costs_one_extra_request_and_changes_nothing(
    hidream: HiDream, hidream_fake: FakeHiDream
) -> None:
    [status] = await hidream.poll([TaskRef("not-listed-yet")])
    assert (status.state, status.provider_status) == (TaskState.QUEUED, "no sub-tasks")
    assert (hidream_fake.route_count("batch_query"), hidream_fake.route_count("single_query")) == (1, 1)

    submission = await hidream.submit(image_request(hidream), idempotency_key="a")
    await hidream.poll([TaskRef(submission.task_id)])
    assert (hidream_fake.route_count("batch_query"), hidream_fake.route_count("single_query")) == (2, 1)


async def test_when_the_preferred_endpoint_stops_knowing_tasks_the_batch_is_tried_again(
    session: aiohttp.ClientSession,
) -> None:
    async with FakeHiDream(api_key=HIDREAM_KEY, v3_results_only=True) as fake:
        client = hidream_client(session, fake)
        task = TaskRef((await client.submit(image_request(client), idempotency_key="a")).task_id)
        await client.poll([task])
        fake.v3_results_only = False
        empty = {"code": 0, "result": {"task_id": task.task_id, "sub_task_results": []}}
        fake.fail("single_query", "malformed", body=json.dumps(empty))
        [status] = await client.poll([task])
        assert status.provider_status != "no sub-tasks"
        [status] = await client.poll([task])
        assert status.provider_status != "no sub-tasks"
    # batch (miss), single (hit), single (miss), batch (hit), batch (hit)
    assert [r.route for r in fake.requests if r.route.endswith("query")] == [
        "batch_query",
        "single_query",
        "single_query",
        "batch_query",
        "batch_query",
    ]


RECORDED_BATCH = {
    "code": 0,
    "message": None,
    "request_id": None,
    "result": [
        {"task_id": "t-1", "sub_task_results": None},
        {
            "task_id": "t-2",
            "sub_task_results": [
                {
                    "sub_task_id": None,
                    "task_status": 1,
                    "task_completion": None,
                    "video": "https://media/v.mp4",
                    "video_wm": None,
                }
            ],
        },
    ],
}


async def test_recorded_answers_full_of_nulls_are_read(hidream: HiDream, hidream_fake: FakeHiDream) -> None:
    hidream_fake.fail("batch_query", "malformed", body=json.dumps(RECORDED_BATCH))
    first, second = await hidream.poll([TaskRef("t-1"), TaskRef("t-2")])
    assert first.state is TaskState.QUEUED
    assert (second.state, second.video_url) == (TaskState.SUCCEEDED, "https://media/v.mp4")


async def test_an_undocumented_status_is_running_with_one_warning(
    hidream: HiDream, hidream_fake: FakeHiDream, caplog: pytest.LogCaptureFixture
) -> None:
    odd = {"code": 0, "result": [{"task_id": "t-1", "sub_task_results": [{"task_status": 9}]}]}
    hidream_fake.fail("batch_query", "malformed", times=3, body=json.dumps(odd))
    with caplog.at_level(logging.WARNING, logger="providers"):
        for _ in range(3):
            [status] = await hidream.poll([TaskRef("t-1")])
            assert status.state is TaskState.RUNNING
    warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "9" in warnings[0].getMessage()
