"""Quick checks that each provider fake follows its documents when driven with plain aiohttp."""

from __future__ import annotations

import base64
import io
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from simulators.fake_providers import (
    FAULT_KINDS,
    FakeClock,
    FakeHiDream,
    FakePixVerse,
    FakeProvider,
    FakeVidu,
    Outcome,
    mp4_duration,
    sample_image,
)

PNG = sample_image()
PNG_B64 = base64.b64encode(PNG).decode()
DATA_URI = "data:image/png;base64," + PNG_B64
# Vidu wants an aspect ratio strictly inside 1:4..4:1: exactly 4:1 is refused, slightly less is not.
FOUR_TO_ONE = "data:image/png;base64," + base64.b64encode(sample_image(80, 20)).decode()
UNDER_FOUR_TO_ONE = "data:image/png;base64," + base64.b64encode(sample_image(79, 20)).decode()
IMAGE_URL = "https://example.com/cat.png"

HD_KEY = "hd-smoke-key"
PV_KEY = "pv-smoke-key"
VD_KEY = "vd-smoke-key"
HD_SUBMIT = "/api-pub/gw/v3/video/img2video/async"
HD_BATCH = "/api-pub/gw/v2/video/{module}/async/results/batch"
VD_CREATE = "/ent/v2/img2video"


def hd_headers(key: str = HD_KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def pv_headers(key: str = PV_KEY) -> dict[str, str]:
    return {"API-KEY": key, "Ai-trace-id": str(uuid.uuid4())}


def vd_headers(key: str = VD_KEY, scheme: str = "Token") -> dict[str, str]:
    return {"Authorization": f"{scheme} {key}"}


async def send(http: aiohttp.ClientSession, method: str, url: str, **kwargs: Any) -> tuple[int, Any, Any]:
    """Send a request and return status, parsed JSON (or raw text) and headers."""
    async with http.request(method, url, **kwargs) as response:
        text = await response.text()
        try:
            body: Any = json.loads(text)
        except ValueError:
            body = text
        return response.status, body, response.headers


async def pv_upload(http: aiohttp.ClientSession, fake: FakePixVerse, data: bytes = PNG) -> tuple[int, Any]:
    form = aiohttp.FormData()
    form.add_field("image", io.BytesIO(data), filename="frame.png", content_type="image/png")
    status, body, _ = await send(
        http, "POST", f"{fake.base_url}/openapi/v2/image/upload", data=form, headers=pv_headers()
    )
    return status, body


def pv_generate_body(img_id: int, **extra: Any) -> dict[str, Any]:
    return {"duration": 5, "model": "v5", "prompt": "a wave", "quality": "540p", "img_id": img_id, **extra}


def vd_create_body(**extra: Any) -> dict[str, Any]:
    return {"model": "viduq2", "prompt": "a wave", "images": [DATA_URI], **extra}


# -- HiDream ---------------------------------------------------------------------------------


async def test_hidream_walks_a_task_to_a_downloadable_video() -> None:
    clock = FakeClock()
    async with (
        FakeHiDream(api_key=HD_KEY, clock=clock, queue_seconds=1, run_seconds=2) as fake,
        aiohttp.ClientSession(headers=hd_headers()) as http,
    ):
        status, body, _ = await send(
            http, "POST", fake.base_url + HD_SUBMIT, json={"image": PNG_B64, "request_id": "r-1", "version": "v2"}
        )
        assert (status, body["code"], body["request_id"]) == (200, 0, "r-1")
        task_id = body["result"]["task_id"]
        assert len(body["result"]["sub_task_ids"]) == 1

        seen = []
        for step in (0, 1.5, 1.0, 1.0):
            clock.advance(step)
            _, body, _ = await send(
                http,
                "POST",
                fake.base_url + HD_BATCH.format(module="img2video"),
                json={"task_id_list": [task_id, "missing"]},
            )
            [result, missing] = body["result"]
            assert missing == {"task_id": "missing", "sub_task_results": []}
            [sub] = result["sub_task_results"]
            seen.append((sub["task_status"], sub["task_completion"]))
        assert seen == [(0, 0), (2, 0.25), (2, 0.75), (1, 1)]
        assert sub["video"] == f"{fake.base_url}/media/{task_id}.mp4"

        _, body, _ = await send(
            http, "POST", fake.base_url + HD_BATCH.format(module="video_edit"), json={"task_id_list": [task_id]}
        )
        assert body["result"] == [{"task_id": task_id, "sub_task_results": []}]
        _, body, _ = await send(
            http, "GET", f"{fake.base_url}/api-pub/gw/v3/video/img2video/async/results?task_id={task_id}"
        )
        assert body["result"]["sub_task_results"][0]["task_status"] == 1

        async with http.get(sub["video"]) as response:
            assert response.status == 200
            assert mp4_duration(await response.read()) == 5.0
        assert fake.route_count("batch_query") == 5
        assert fake.route_count("media") == 1
        assert fake.tasks[task_id].body["image"] == PNG_B64


@pytest.mark.parametrize(
    ("path", "payload", "fragment"),
    [
        (HD_SUBMIT, {"image": DATA_URI}, "data URI"),
        (HD_SUBMIT, {"image": base64.b64encode(b"not an image").decode()}, "image"),
        (HD_SUBMIT, {"image": IMAGE_URL, "version": "v3"}, "version"),
        (HD_SUBMIT, {"image": IMAGE_URL, "camera_move_depth": 6}, "camera_move_depth"),
        (HD_SUBMIT, {"image": IMAGE_URL, "motion_strength": 31}, "motion_strength"),
        (HD_SUBMIT, {"image": IMAGE_URL, "resolution": "1920*1080"}, "resolution"),
        ("/api-pub/gw/v2/video/video_edit/async", {"video_name": IMAGE_URL}, "prompt or style"),
        ("/api-pub/gw/v2/video/video_edit/async", {"video_name": IMAGE_URL, "style": "pixar"}, "style"),
        (HD_BATCH.format(module="img2video"), {"task_id_list": ["a"] * 101}, "at most 100"),
    ],
)
async def test_hidream_refuses_bodies_the_documents_forbid(path: str, payload: dict[str, Any], fragment: str) -> None:
    async with FakeHiDream(api_key=HD_KEY) as fake, aiohttp.ClientSession(headers=hd_headers()) as http:
        status, body, _ = await send(http, "POST", fake.base_url + path, json=payload)
        assert (status, body["code"], body["result"]) == (200, 2001, None)
        assert fragment in body["message"]
        assert not fake.tasks


async def test_hidream_requires_json_content_type_and_limits_rate() -> None:
    async with (
        FakeHiDream(api_key=HD_KEY, rate_per_minute=1) as fake,
        aiohttp.ClientSession(headers=hd_headers()) as http,
    ):
        status, body, _ = await send(http, "POST", fake.base_url + HD_SUBMIT, data=json.dumps({"image": IMAGE_URL}))
        assert (status, body["code"]) == (200, 2001)
        status, body, _ = await send(http, "POST", fake.base_url + HD_SUBMIT, json={"image": IMAGE_URL})
        assert (status, body["code"]) == (200, 0)
        status, body, headers = await send(http, "POST", fake.base_url + HD_SUBMIT, json={"image": IMAGE_URL})
        assert (status, body["code"]) == (429, 429)
        assert "Retry-After" not in headers
        assert len(fake.tasks) == 1


# -- PixVerse --------------------------------------------------------------------------------


async def test_pixverse_walks_a_task_to_a_downloadable_video() -> None:
    clock = FakeClock()
    async with FakePixVerse(api_key=PV_KEY, clock=clock) as fake, aiohttp.ClientSession() as http:
        status, body = await pv_upload(http, fake)
        assert (status, body["ErrCode"]) == (200, 0)
        img_id = body["Resp"]["img_id"]
        assert isinstance(img_id, int)
        async with http.get(body["Resp"]["img_url"]) as response:
            assert await response.read() == PNG

        trace = pv_headers()
        generate = f"{fake.base_url}/openapi/v2/video/img/generate"
        status, body, _ = await send(http, "POST", generate, json=pv_generate_body(img_id, seed=7), headers=trace)
        assert (status, body["ErrCode"]) == (200, 0)
        video_id = body["Resp"]["video_id"]
        assert video_id > 10**14
        assert body["Resp"]["credits"] > 0
        _, again, _ = await send(http, "POST", generate, json=pv_generate_body(img_id), headers=trace)
        assert again["Resp"]["video_id"] == video_id
        assert len(fake.tasks) == 1

        result = f"{fake.base_url}/openapi/v2/video/result/{video_id}"
        reused = pv_headers()
        statuses = []
        for step in (0, 0.2, 1.0):
            clock.advance(step)
            _, body, _ = await send(http, "GET", result, headers=pv_headers() if step else reused)
            statuses.append(body["Resp"]["status"])
        assert statuses == [5, 5, 1]
        resp = body["Resp"]
        assert (resp["id"], resp["seed"], resp["resolution_ratio"]) == (video_id, 7, 540)
        assert (resp["outputWidth"], resp["outputHeight"]) == (960, 540)
        _, stale, _ = await send(http, "GET", result, headers=reused)
        assert stale["Resp"]["status"] == 5

        async with http.get(resp["url"]) as response:
            data = await response.read()
        assert (len(data), mp4_duration(data)) == (resp["size"], 5.0)
        _, body, _ = await send(http, "GET", f"{fake.base_url}/openapi/v2/account/balance", headers=pv_headers())
        assert set(body["Resp"]) == {"account_id", "credit_monthly", "credit_package"}


@pytest.mark.parametrize(
    ("kind", "status"), [("moderation", 7), ("failed", 8), ("deleted", 6), ("stall", 5), ("success", 1)]
)
async def test_pixverse_outcomes_map_to_documented_statuses(kind: str, status: int) -> None:
    clock = FakeClock()
    async with FakePixVerse(api_key=PV_KEY, clock=clock) as fake, aiohttp.ClientSession() as http:
        _, body = await pv_upload(http, fake)
        fake.outcomes.append(Outcome(kind))
        _, body, _ = await send(
            http,
            "POST",
            f"{fake.base_url}/openapi/v2/video/img/generate",
            json=pv_generate_body(body["Resp"]["img_id"]),
            headers=pv_headers(),
        )
        clock.advance(60)
        url = f"{fake.base_url}/openapi/v2/video/result/{body['Resp']['video_id']}"
        _, body, _ = await send(http, "GET", url, headers=pv_headers())
        assert body["Resp"]["status"] == status
        assert bool(body["Resp"]["url"]) is (status == 1)


@pytest.mark.parametrize(
    ("extra", "code"),
    [
        ({"model": "v3.5", "duration": 8, "quality": "1080p"}, 400017),
        ({"model": "v5.5", "duration": 10, "quality": "1080p"}, 400017),
        ({"model": "v6", "duration": 16}, 400017),
        ({"model": "v6", "motion_mode": "fast"}, 400017),
        ({"model": "v4", "motion_mode": "fast", "duration": 8}, 400017),
        ({"model": "v5", "camera_movement": "zoom_in"}, 400017),
        ({"model": "v4", "generate_audio_switch": True}, 400017),
        ({"model": "v5.6", "generate_multi_clip_switch": True}, 400017),
        ({"img_ids": [1]}, 400017),
        ({"img_id": 12345}, 400032),
        ({"prompt": "x" * 2049}, 400018),
        ({"negative_prompt": "x" * 2049}, 400019),
        ({"seed": 2**31}, 400017),
        ({"duration": "5"}, 400013),
    ],
)
async def test_pixverse_refuses_bodies_the_documents_forbid(extra: dict[str, Any], code: int) -> None:
    async with FakePixVerse(api_key=PV_KEY) as fake, aiohttp.ClientSession() as http:
        _, body = await pv_upload(http, fake)
        payload = pv_generate_body(body["Resp"]["img_id"])
        payload.update(extra)
        status, body, _ = await send(
            http, "POST", f"{fake.base_url}/openapi/v2/video/img/generate", json=payload, headers=pv_headers()
        )
        assert (status, body["ErrCode"], body["Resp"]) == (200, code, None)
        assert not fake.tasks


async def test_pixverse_checks_uploads_trace_ids_and_concurrency() -> None:
    async with FakePixVerse(api_key=PV_KEY, max_concurrent=1) as fake, aiohttp.ClientSession() as http:
        assert (await pv_upload(http, fake, b"not an image"))[1]["ErrCode"] == 500032
        assert (await pv_upload(http, fake, sample_image(4001, 8)))[1]["ErrCode"] == 500030
        assert (await pv_upload(http, fake, PNG + bytes(21 * 1024 * 1024)))[1]["ErrCode"] == 500030
        _, body = await pv_upload(http, fake)
        generate = f"{fake.base_url}/openapi/v2/video/img/generate"
        payload = pv_generate_body(body["Resp"]["img_id"], model="v6", motion_mode="normal")
        _, body, _ = await send(http, "POST", generate, json=payload, headers={"API-KEY": PV_KEY})
        assert body["ErrCode"] == 400011
        _, body, _ = await send(http, "POST", generate, json=payload, headers=pv_headers())
        assert body["ErrCode"] == 0
        _, body, _ = await send(http, "POST", generate, json=payload, headers=pv_headers())
        assert (body["ErrCode"], body["ErrMsg"]) == (500044, "concurrent generation limit reached")
        _, body, _ = await send(http, "GET", f"{fake.base_url}/openapi/v2/video/result/7", headers=pv_headers())
        assert body["ErrCode"] == 500008


# -- Vidu ------------------------------------------------------------------------------------


async def test_vidu_walks_a_task_to_a_video_and_cover() -> None:
    clock = FakeClock()
    async with (
        FakeVidu(api_key=VD_KEY, clock=clock, queue_seconds=1, run_seconds=1) as fake,
        aiohttp.ClientSession(headers=vd_headers()) as http,
    ):
        status, body, _ = await send(http, "POST", fake.base_url + VD_CREATE, json=vd_create_body(payload="tag-1"))
        assert status == 200
        assert (body["state"], body["type"], body["style"], body["payload"]) == (
            "created",
            "img2video",
            "general",
            "tag-1",
        )
        assert body["task_id"].isdigit()
        task_id = body["task_id"]
        creations = f"{fake.base_url}/ent/v2/tasks/{task_id}/creations"
        states = []
        for step in (0, 0.6, 0.6, 1.0):
            clock.advance(step)
            _, body, _ = await send(http, "GET", creations)
            states.append(body["state"])
        assert states == ["created", "queueing", "processing", "success"]
        [creation] = body["creations"]
        assert creation["video"]["resolution"] == {"width": 1280, "height": 720}
        async with http.get(creation["url"]) as response:
            assert mp4_duration(await response.read()) == 5.0
        async with http.get(creation["cover_url"]) as response:
            assert (response.content_type, (await response.read())[:2]) == ("image/jpeg", b"\xff\xd8")
        status, body, _ = await send(http, "GET", f"{fake.base_url}/ent/v2/tasks/999/creations")
        assert (status, body["reason"]) == (404, "TaskNotFound")


async def test_vidu_queues_beyond_concurrency_and_cancels_queued_tasks() -> None:
    clock = FakeClock()
    async with (
        FakeVidu(api_key=VD_KEY, clock=clock, queue_seconds=0, run_seconds=1, concurrency=1) as fake,
        aiohttp.ClientSession(headers=vd_headers()) as http,
    ):
        ids = []
        for _ in range(3):
            _, body, _ = await send(http, "POST", fake.base_url + VD_CREATE, json=vd_create_body())
            ids.append(body["task_id"])

        async def states() -> list[str]:
            _, body, _ = await send(http, "GET", f"{fake.base_url}/ent/v2/tasks", params={"task_ids": ids})
            by_id = {task["id"]: task["state"] for task in body["tasks"]}
            return [by_id[task_id] for task_id in ids]

        assert await states() == ["processing", "queueing", "queueing"]
        _, body, _ = await send(http, "GET", f"{fake.base_url}/ent/v2/credits")
        assert body["remains"][0]["current_concurrency"] == 1
        assert body["remains"][0]["queue_count"] == 2
        status, body, _ = await send(http, "POST", f"{fake.base_url}/ent/v2/tasks/{ids[1]}/cancel", json={"id": ids[1]})
        assert (status, body) == (200, {})
        status, body, _ = await send(http, "POST", f"{fake.base_url}/ent/v2/tasks/{ids[0]}/cancel", json={"id": ids[0]})
        assert (status, body["reason"], body["message"]) == (
            400,
            "BadRequest",
            "task state is processing, can not cancel",
        )
        clock.advance(1.0)
        assert await states() == ["success", "failed", "processing"]
        _, body, _ = await send(http, "GET", f"{fake.base_url}/ent/v2/tasks/{ids[1]}/creations")
        assert (body["err_code"], body["credits"]) == ("UserCancelled", 0)
        _, body, _ = await send(
            http, "GET", f"{fake.base_url}/ent/v2/tasks", params={"states": "success", "pager.pagesz": "1"}
        )
        assert [task["id"] for task in body["tasks"]] == [ids[0]]
        assert body["next_page_token"] == ""
        _, body, _ = await send(http, "GET", f"{fake.base_url}/ent/v2/tasks", params={"pager.pagesz": "2"})
        assert [task["id"] for task in body["tasks"]] == [ids[2], ids[1]]
        _, body, _ = await send(
            http,
            "GET",
            f"{fake.base_url}/ent/v2/tasks",
            params={"pager.pagesz": "2", "pager.page_token": body["next_page_token"]},
        )
        assert ([task["id"] for task in body["tasks"]], body["next_page_token"]) == ([ids[0]], "")
        assert [fake.native_status(task_id) for task_id in ids] == ["success", "failed", "processing"]


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (vd_create_body(aspect_ratio="16:9"), "FieldUnwanted"),
        ({"model": "viduq2", "images": [DATA_URI]}, "FieldLacking"),
        (vd_create_body(images=[DATA_URI, DATA_URI]), "FieldItemCountOutOfRange"),
        (vd_create_body(images=[PNG_B64]), "ImageFormatInvalid"),
        (vd_create_body(images=[FOUR_TO_ONE]), "PageSizeOutOfRange"),
        (vd_create_body(images=[UNDER_FOUR_TO_ONE]), ""),
        (vd_create_body(model="viduq1", duration=4), "FieldInvalid"),
        (vd_create_body(model="viduq1", resolution="720p"), "FieldInvalid"),
        (vd_create_body(model="viduq3-pro", off_peak=True), "FieldInvalid"),
        (vd_create_body(audio="true", off_peak="true"), "FieldInvalid"),
        (vd_create_body(prompt="x" * 2001), "FieldInvalid"),
        (vd_create_body(movement_amplitude="standard"), "FieldInvalid"),
        (vd_create_body(seed="12345", watermark="false", wm_position="3"), ""),
    ],
)
async def test_vidu_validates_create_bodies(payload: dict[str, Any], reason: str | None) -> None:
    async with FakeVidu(api_key=VD_KEY) as fake, aiohttp.ClientSession(headers=vd_headers()) as http:
        status, body, _ = await send(http, "POST", fake.base_url + VD_CREATE, json=payload)
        if reason is None:
            # Aspect ratio must be strictly inside 1:4..4:1, so 80x20 (exactly 4:1) fails and 81x20 not.
            reason = (
                "PageSizeOutOfRange"
                if payload["images"][0].endswith(base64.b64encode(sample_image(80, 20)).decode())
                else ""
            )
        if reason:
            assert (status, body["code"], body["reason"]) == (400, 400, reason)
            assert body["metadata"]["trace_id"]
        else:
            assert status == 200, body


async def test_vidu_refuses_bodies_over_20_mb() -> None:
    async with FakeVidu(api_key=VD_KEY) as fake, aiohttp.ClientSession(headers=vd_headers()) as http:
        payload = json.dumps(vd_create_body(payload="x" * (20 * 1024 * 1024))).encode()
        headers = {"Content-Type": "application/json"}
        status, body, _ = await send(http, "POST", fake.base_url + VD_CREATE, data=io.BytesIO(payload), headers=headers)
        assert (status, body["reason"]) == (400, "BadRequest")
        assert not fake.tasks


async def test_vidu_off_peak_and_rejecting_over_concurrency() -> None:
    clock = FakeClock()
    async with (
        FakeVidu(api_key=VD_KEY, clock=clock, concurrency=1, reject_over_concurrency=True) as fake,
        aiohttp.ClientSession(headers=vd_headers()) as http,
    ):
        _, body, _ = await send(http, "POST", fake.base_url + VD_CREATE, json=vd_create_body(off_peak=True))
        task_id = body["task_id"]
        status, body, _ = await send(http, "POST", fake.base_url + VD_CREATE, json=vd_create_body())
        assert (status, body["reason"]) == (429, "QuotaExceeded")
        clock.advance(1.0)
        _, body, _ = await send(http, "GET", f"{fake.base_url}/ent/v2/tasks/{task_id}/creations")
        assert (body["state"], body["off_peak"]) == ("queueing", True)
        clock.advance(1.1)
        _, body, _ = await send(http, "GET", f"{fake.base_url}/ent/v2/tasks/{task_id}/creations")
        assert body["state"] == "processing"


# -- Faults, auth and plumbing shared by all three -----------------------------------------------


@dataclass
class Target:
    """How to reach one fake's job-creating route."""

    make: Callable[..., FakeProvider]
    route: str
    submit: Callable[[aiohttp.ClientSession, Any], Awaitable[tuple[int, Any, Any]]]


async def hd_submit(http: aiohttp.ClientSession, fake: Any) -> tuple[int, Any, Any]:
    return await send(http, "POST", fake.base_url + HD_SUBMIT, json={"image": IMAGE_URL}, headers=hd_headers())


async def pv_submit(http: aiohttp.ClientSession, fake: Any) -> tuple[int, Any, Any]:
    if not fake.uploads:
        await pv_upload(http, fake)
    payload = pv_generate_body(next(iter(fake.uploads)))
    url = f"{fake.base_url}/openapi/v2/video/img/generate"
    return await send(http, "POST", url, json=payload, headers=pv_headers())


async def vd_submit(http: aiohttp.ClientSession, fake: Any) -> tuple[int, Any, Any]:
    return await send(http, "POST", fake.base_url + VD_CREATE, json=vd_create_body(), headers=vd_headers())


TARGETS = {
    "hidream": Target(lambda **kw: FakeHiDream(api_key=HD_KEY, **kw), "submit_img2video", hd_submit),
    "pixverse": Target(lambda **kw: FakePixVerse(api_key=PV_KEY, **kw), "generate", pv_submit),
    "vidu": Target(lambda **kw: FakeVidu(api_key=VD_KEY, **kw), "create", vd_submit),
}
# (provider, fault kind) -> (HTTP status, (field, value) expected in the JSON body or None)
FAULTS: dict[tuple[str, str], tuple[int, tuple[str, Any] | None]] = {
    ("hidream", "server_error"): (500, None),
    ("hidream", "business_error"): (200, ("code", 1001)),
    ("hidream", "rate_limited"): (429, ("code", 429)),
    ("hidream", "concurrency"): (429, ("code", 429)),
    ("hidream", "moderation"): (200, ("code", 1)),
    ("hidream", "unauthorized"): (401, ("message", "unauthorized")),
    ("hidream", "echo_key"): (200, ("code", 2001)),
    ("pixverse", "server_error"): (500, None),
    ("pixverse", "business_error"): (200, ("ErrCode", 500069)),
    ("pixverse", "rate_limited"): (429, ("ErrCode", 429)),
    ("pixverse", "concurrency"): (200, ("ErrCode", 500044)),
    ("pixverse", "moderation"): (200, ("ErrCode", 500054)),
    ("pixverse", "unauthorized"): (401, ("ErrCode", 10005)),
    ("pixverse", "echo_key"): (200, ("ErrCode", 400017)),
    ("vidu", "server_error"): (500, ("reason", "InternalServiceFailure")),
    ("vidu", "business_error"): (400, ("reason", "BadRequest")),
    ("vidu", "rate_limited"): (429, ("reason", "TooManyRequests")),
    ("vidu", "concurrency"): (429, ("reason", "QuotaExceeded")),
    ("vidu", "moderation"): (400, ("reason", "AuditSubmitIllegal")),
    ("vidu", "unauthorized"): (401, ("reason", "Unauthorized")),
    ("vidu", "echo_key"): (400, ("reason", "BadRequest")),
}
API_KEYS = {"hidream": HD_KEY, "pixverse": PV_KEY, "vidu": VD_KEY}


@pytest.mark.parametrize(("provider", "kind"), [*FAULTS, *((name, "malformed") for name in TARGETS)])
async def test_faults_answer_once_without_creating_a_task(provider: str, kind: str) -> None:
    target = TARGETS[provider]
    async with target.make() as fake, aiohttp.ClientSession() as http:
        fake.fail(target.route, kind)
        status, body, headers = await target.submit(http, fake)
        if kind == "malformed":
            assert status == 200
            assert headers["Content-Type"].startswith("application/json")
            assert isinstance(body, str)
        else:
            expected_status, field = FAULTS[provider, kind]
            assert status == expected_status
            if field is not None:
                assert body[field[0]] == field[1]
        assert ("Retry-After" in headers) is (kind == "rate_limited")
        if kind == "rate_limited":
            assert headers["Retry-After"] == "1"
        if kind == "echo_key":
            assert API_KEYS[provider] in json.dumps(body)
        assert not fake.tasks
        assert fake.pending_faults() == 0
        status, _, _ = await target.submit(http, fake)
        assert status == 200
        assert len(fake.tasks) == 1


@pytest.mark.parametrize("provider", list(TARGETS))
async def test_hang_delays_then_answers_and_close_releases_it(provider: str) -> None:
    target = TARGETS[provider]
    async with target.make() as fake, aiohttp.ClientSession() as http:
        fake.fail(target.route, "hang", seconds=0.05)
        started = time.monotonic()
        status, _, _ = await target.submit(http, fake)
        assert status == 200
        assert time.monotonic() - started >= 0.05
        fake.fail(target.route, "hang", after=True)
        with pytest.raises(TimeoutError):
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=0.2)) as impatient:
                await target.submit(impatient, fake)
        # "after": the task exists although its answer never arrived.
        assert len(fake.tasks) == 2
        fake.fail(target.route, "hang")
        with pytest.raises(TimeoutError):
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=0.1)) as impatient:
                await target.submit(impatient, fake)
        started = time.monotonic()
    assert time.monotonic() - started < 1.0


async def test_bad_keys_are_refused_in_each_providers_shape() -> None:
    async with (
        FakeHiDream(api_key=HD_KEY) as hidream,
        FakePixVerse(api_key=PV_KEY) as pixverse,
        FakeVidu(api_key=VD_KEY) as vidu,
        aiohttp.ClientSession() as http,
    ):
        status, body, _ = await send(
            http,
            "POST",
            hidream.base_url + HD_SUBMIT,
            json={"image": IMAGE_URL, "request_id": "r"},
            headers=hd_headers("x"),
        )
        assert (status, body) == (401, {"code": 401, "message": "unauthorized", "request_id": "r", "result": None})
        status, body, _ = await send(
            http, "GET", pixverse.base_url + "/openapi/v2/account/balance", headers=pv_headers("x")
        )
        assert (status, body) == (401, {"ErrCode": 10005, "ErrMsg": "invalid API key", "Resp": None})
        status, body, _ = await send(
            http, "GET", vidu.base_url + "/ent/v2/credits", headers=vd_headers(scheme="Bearer")
        )
        assert status == 401
        assert (body["code"], body["reason"], body["message"]) == (401, "Unauthorized", "invalid token")
        assert len(hidream.tasks) + len(pixverse.tasks) + len(vidu.tasks) == 0


async def test_outcome_timings_override_defaults_and_media_can_fail() -> None:
    clock = FakeClock()
    async with (
        FakeHiDream(api_key=HD_KEY, clock=clock) as fake,
        aiohttp.ClientSession(headers=hd_headers()) as http,
    ):
        fake.outcomes.append(Outcome("success", queue_seconds=5, run_seconds=5))
        _, body, _ = await send(http, "POST", fake.base_url + HD_SUBMIT, json={"image": IMAGE_URL})
        task_id = body["result"]["task_id"]
        clock.advance(4)
        assert (fake.phase(task_id), fake.native_status(task_id)) == ("waiting", 0)
        clock.advance(2)
        assert (fake.phase(task_id), fake.native_status(task_id)) == ("processing", 2)
        clock.advance(5)
        assert fake.native_status(task_id) == 1
        fake.fail("media", "server_error", status=503)
        async with http.get(f"{fake.base_url}/media/{task_id}.mp4") as response:
            assert response.status == 503
        async with http.get(f"{fake.base_url}/media/{task_id}.mp4") as response:
            assert response.status == 200
        async with http.get(f"{fake.base_url}/media/unknown.mp4") as response:
            assert response.status == 404


async def test_prefix_large_video_and_fault_arguments() -> None:
    big = b"\x00" * (3 * 1024 * 1024)
    clock = FakeClock()
    async with (
        FakeVidu(api_key=VD_KEY, prefix="/relay/", clock=clock, video_bytes=big) as fake,
        aiohttp.ClientSession(headers=vd_headers()) as http,
    ):
        assert fake.base_url.endswith("/relay")
        _, body, _ = await send(http, "POST", fake.base_url + VD_CREATE, json=vd_create_body())
        clock.advance(10)
        async with http.get(f"{fake.base_url}/media/{body['task_id']}.mp4") as response:
            assert len(await response.read()) == len(big)
        assert [(r.route, r.path) for r in fake.requests] == [
            ("create", VD_CREATE),
            ("media", f"/media/{body['task_id']}.mp4"),
        ]
        assert fake.requests[0].json["model"] == "viduq2"
        with pytest.raises(ValueError, match="unknown route"):
            fake.fail("generate", "hang")
        with pytest.raises(ValueError, match="unknown fault"):
            fake.fail("create", "explode")
        with pytest.raises(TypeError):
            fake.fail("create", "hang", status=500)
        with pytest.raises(ValueError, match="does not support"):
            fake.outcomes.append(Outcome("deleted"))
    assert {"server_error", "hang", "malformed", "echo_key"} <= FAULT_KINDS


async def test_an_outcome_rule_picks_each_tasks_end_from_its_request_and_media_names_its_task() -> None:
    def by_prompt(body: dict[str, Any]) -> Outcome | None:
        return Outcome("failed") if "doomed" in str(body.get("prompt", "")) else None

    clock = FakeClock()
    async with (
        FakeVidu(api_key=VD_KEY, clock=clock, outcome_rule=by_prompt, tag_media=True) as fake,
        aiohttp.ClientSession(headers=vd_headers()) as http,
    ):
        fake.outcomes.append(Outcome("moderation"))
        _, doomed, _ = await send(http, "POST", fake.base_url + VD_CREATE, json=vd_create_body(prompt="doomed cat"))
        _, scripted, _ = await send(http, "POST", fake.base_url + VD_CREATE, json=vd_create_body(prompt="a cat"))
        _, plain, _ = await send(http, "POST", fake.base_url + VD_CREATE, json=vd_create_body(prompt="a dog"))
        clock.advance(10)
        phases = [fake.phase(body["task_id"]) for body in (doomed, scripted, plain)]
        assert phases == ["failed", "moderation", "success"]
        async with http.get(f"{fake.base_url}/media/{plain['task_id']}.mp4") as response:
            video = await response.read()
        assert plain["task_id"].encode() in video
        assert mp4_duration(video) is not None
