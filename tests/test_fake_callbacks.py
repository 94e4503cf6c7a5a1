"""The fake providers call back as the real ones do, without being polled.

A small aiohttp server on loopback stands in for the bot's callback listener. Signatures are checked with
implementations written here from the notes' text (../shared/notes/providers.md: Vidu fact 5, PixVerse
fact 7 and the reading of its signing string), not with the fakes' own code.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import io
import json
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from aiohttp import web

from simulators.fake_providers import FakeClock, FakeHiDream, FakePixVerse, FakeVidu, Outcome, sample_image

PNG = sample_image()
PNG_B64 = base64.b64encode(PNG).decode()
DATA_URI = "data:image/png;base64," + PNG_B64
HD_KEY = "hd-callback-key"
PV_KEY = "pv-callback-key"
VD_KEY = "vd-callback-key"
PV_SECRET = "pv-webhook-secret"
WAIT = 3.0


@dataclass(frozen=True)
class Received:
    """One request that reached the receiver."""

    method: str
    path: str
    query: str
    headers: Mapping[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    """A loopback HTTP server that records every request and answers with scripted statuses (then 200)."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.statuses: deque[int] = deque()
        self.always: int | None = None
        self._arrived = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    async def __aenter__(self) -> Receiver:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.base_url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        # The raw target: a signature covers the path and the query as sent, not as decoded.
        path, _, query = request.raw_path.partition("?")
        self.received.append(Received(request.method, path, query, request.headers, body))
        self._arrived.set()
        status = self.statuses.popleft() if self.statuses else self.always or 200
        return web.Response(status=status, text="ok" if status == 200 else "no")

    async def wait_for(self, count: int, timeout: float = WAIT) -> list[Received]:  # noqa: ASYNC109
        """Wait until at least ``count`` requests arrived."""
        async with asyncio.timeout(timeout):
            while len(self.received) < count:
                self._arrived.clear()
                await self._arrived.wait()
        return self.received


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with Receiver() as server:
        yield server


async def post(http: aiohttp.ClientSession, url: str, **kwargs: Any) -> Any:
    async with http.post(url, **kwargs) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def hd_create(http: aiohttp.ClientSession, fake: FakeHiDream, module: str = "img2video", **extra: Any) -> str:
    if module == "img2video":
        path, body = "/api-pub/gw/v3/video/img2video/async", {"image": PNG_B64, **extra}
    else:
        path, body = "/api-pub/gw/v2/video/video_edit/async", {"video_name": "https://example.com/a.mp4", **extra}
        body.setdefault("style", "ink_wash")
    answer = await post(http, fake.base_url + path, json=body, headers={"Authorization": f"Bearer {HD_KEY}"})
    assert answer["code"] == 0, answer
    return str(answer["result"]["task_id"])


async def hd_batch(http: aiohttp.ClientSession, fake: FakeHiDream, task_id: str, module: str) -> Any:
    url = f"{fake.base_url}/api-pub/gw/v2/video/{module}/async/results/batch"
    answer = await post(http, url, json={"task_id_list": [task_id]}, headers={"Authorization": f"Bearer {HD_KEY}"})
    return answer["result"][0]


async def vd_create(http: aiohttp.ClientSession, fake: FakeVidu, **extra: Any) -> str:
    body = {"model": "viduq2", "prompt": "a wave", "images": [DATA_URI], **extra}
    answer = await post(
        http, fake.base_url + "/ent/v2/img2video", json=body, headers={"Authorization": f"Token {VD_KEY}"}
    )
    return str(answer["task_id"])


async def vd_query(http: aiohttp.ClientSession, fake: FakeVidu, task_id: str) -> Any:
    url = f"{fake.base_url}/ent/v2/tasks/{task_id}/creations"
    async with http.get(url, headers={"Authorization": f"Token {VD_KEY}"}) as response:
        return await response.json()


def pv_headers() -> dict[str, str]:
    return {"API-KEY": PV_KEY, "Ai-trace-id": str(uuid.uuid4())}


async def pv_create(http: aiohttp.ClientSession, fake: FakePixVerse) -> int:
    form = aiohttp.FormData()
    form.add_field("image", io.BytesIO(PNG), filename="frame.png", content_type="image/png")
    upload = await post(http, fake.base_url + "/openapi/v2/image/upload", data=form, headers=pv_headers())
    body = {"duration": 5, "model": "v5", "prompt": "a wave", "quality": "540p", "img_id": upload["Resp"]["img_id"]}
    answer = await post(http, fake.base_url + "/openapi/v2/video/img/generate", json=body, headers=pv_headers())
    return int(answer["Resp"]["video_id"])


# -- independent signature checks, from the notes' text ---------------------------------------------


def vidu_signature_valid(secret: str, received: Received) -> bool:
    """Vidu fact 5: base64(HMAC-SHA256(token, METHOD, path, query, "vidu", Date, each signed header, newlines))."""
    headers = received.headers
    signed_names = headers["X-HMAC-SIGNED-HEADERS"].split(";")
    lines = [received.method, received.path or "/", received.query, "vidu", headers["Date"]]
    lines += [f"{name}:{headers[name]}" for name in signed_names]
    signing_string = "".join(line + "\n" for line in lines)
    digest = hmac.new(secret.encode(), signing_string.encode(), hashlib.sha256).digest()
    expected = base64.b64encode(digest).decode()
    return headers["X-HMAC-ALGORITHM"] == "hmac-sha256" and hmac.compare_digest(expected, headers["X-HMAC-SIGNATURE"])


def form_value(value: Any) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value)


def pixverse_signature_valid(secret: str, headers: Mapping[str, str], body: bytes) -> bool:
    """PixVerse fact 7 with the notes' reading: "{ts}\\n{nonce}\\n{sorted key=value form}"."""
    fields = json.loads(body)
    pairs = [
        quote(key, safe="").replace("%20", "+") + "=" + quote(form_value(fields[key]), safe="").replace("%20", "+")
        for key in sorted(fields)
    ]
    message = f"{headers['Webhook-Timestamp']}\n{headers['Webhook-Nonce']}\n{'&'.join(pairs)}"
    digest = hmac.new(secret.encode(), message.encode(), hashlib.sha256).digest()
    return hmac.compare_digest(base64.b64encode(digest).decode(), headers["Webhook-Signature"])


def flip_last(text: str) -> str:
    return text[:-1] + ("A" if text[-1] != "A" else "B")


async def settle(fake: Any, clock: FakeClock, seconds: float) -> None:
    clock.advance(seconds)
    await fake.callbacks_idle(timeout=WAIT)


# -- HiDream ---------------------------------------------------------------------------------------


async def test_hidream_calls_back_once_a_task_ends_without_being_polled(receiver: Receiver) -> None:
    async with FakeHiDream(api_key=HD_KEY, run_seconds=0.1) as fake, aiohttp.ClientSession() as http:
        notify = f"{receiver.base_url}/callbacks/hidream?job=7"
        task_id = await hd_create(http, fake, notify_url=notify)
        [callback] = await receiver.wait_for(1)
        assert fake.route_count("batch_query") == fake.route_count("single_query") == 0
        assert (callback.method, callback.path, callback.query) == ("POST", "/callbacks/hidream", "job=7")
        assert callback.headers["Content-Type"].startswith("application/json")
        assert not {"X-HMAC-SIGNATURE", "Webhook-Signature"} & set(callback.headers)
        body = callback.json
        assert body["task_id"] == task_id
        [sub] = body["sub_task_results"]
        assert (sub["task_status"], sub["task_completion"]) == (1, 1)
        assert sub["video"] == f"{fake.base_url}/media/{task_id}.mp4"
        assert body == await hd_batch(http, fake, task_id, "img2video")
        await fake.callbacks_idle(timeout=WAIT)
        [sent] = fake.callbacks_sent
        assert (sent.url, sent.status, sent.attempt, sent.event, sent.task_id) == (notify, 200, 1, "success", task_id)
        assert sent.body == callback.body
        assert len(receiver.received) == 1


@pytest.mark.parametrize(("kind", "status"), [("failed", 3), ("moderation", 4)])
async def test_hidream_video_edit_calls_back_a_failure_inside_the_envelope(
    receiver: Receiver, kind: str, status: int
) -> None:
    clock = FakeClock()
    async with FakeHiDream(api_key=HD_KEY, clock=clock) as fake, aiohttp.ClientSession() as http:
        fake.callback_envelope = True
        fake.outcomes.append(Outcome(kind))
        task_id = await hd_create(http, fake, "video_edit", notify_url=f"{receiver.base_url}/cb")
        await settle(fake, clock, 0.2)
        assert receiver.received == []
        await settle(fake, clock, 1.0)
        [callback] = receiver.received
        envelope = callback.json
        assert (envelope["code"], envelope["message"]) == (0, "Success")
        assert isinstance(envelope["request_id"], str)
        item = envelope["result"]
        assert (item["task_id"], item["main_task_id"]) == (task_id, task_id)
        assert [sub["task_status"] for sub in item["sub_task_results"]] == [status]
        assert item["sub_task_results"][0]["video"] == ""
        assert fake.callbacks_sent[0].event == kind
        query = await hd_batch(http, fake, task_id, "video_edit")
        assert query["sub_task_results"] == item["sub_task_results"]


async def test_hidream_retries_a_second_apart_and_stops_after_three_tries(receiver: Receiver) -> None:
    receiver.always = 500
    clock = FakeClock()
    async with FakeHiDream(api_key=HD_KEY, clock=clock) as fake, aiohttp.ClientSession() as http:
        await hd_create(http, fake, notify_url=f"{receiver.base_url}/cb")
        await settle(fake, clock, 0.5)
        assert len(receiver.received) == 1
        await settle(fake, clock, 0.75)
        assert len(receiver.received) == 1
        for step in (0.25, 1.0, 1.0, 60.0):
            await settle(fake, clock, step)
        assert len(receiver.received) == 3
        assert [(sent.attempt, sent.status) for sent in fake.callbacks_sent] == [(1, 500), (2, 500), (3, 500)]
        assert [round(b.at - a.at, 6) for a, b in zip(fake.callbacks_sent, fake.callbacks_sent[1:], strict=False)] == [
            1.0,
            1.0,
        ]
        assert len({callback.body for callback in receiver.received}) == 1


async def test_hidream_stops_retrying_once_a_try_gets_200(receiver: Receiver) -> None:
    receiver.statuses.extend([503])
    clock = FakeClock()
    async with FakeHiDream(api_key=HD_KEY, clock=clock) as fake, aiohttp.ClientSession() as http:
        await hd_create(http, fake, notify_url=f"{receiver.base_url}/cb")
        for step in (0.5, 1.0, 1.0, 1.0):
            await settle(fake, clock, step)
        assert [(sent.attempt, sent.status) for sent in fake.callbacks_sent] == [(1, 503), (2, 200)]


async def test_a_refused_connection_is_recorded_without_a_status_and_retried() -> None:
    async with Receiver() as gone:
        closed_url = f"{gone.base_url}/cb"
    clock = FakeClock()
    async with FakeHiDream(api_key=HD_KEY, clock=clock) as fake, aiohttp.ClientSession() as http:
        await hd_create(http, fake, notify_url=closed_url)
        for step in (0.5, 1.0, 1.0, 1.0):
            await settle(fake, clock, step)
        assert [(sent.attempt, sent.status) for sent in fake.callbacks_sent] == [(1, None), (2, None), (3, None)]


@pytest.mark.parametrize("notify", [None, ""])
async def test_hidream_without_notify_url_sends_nothing(receiver: Receiver, notify: str | None) -> None:
    clock = FakeClock()
    async with FakeHiDream(api_key=HD_KEY, clock=clock) as fake, aiohttp.ClientSession() as http:
        extra = {} if notify is None else {"notify_url": notify}
        await hd_create(http, fake, **extra)
        await settle(fake, clock, 5.0)
        assert fake.callbacks_sent == []
        assert sum(fake.callback_count.values()) == 0
    assert receiver.received == []


# -- Vidu ------------------------------------------------------------------------------------------


async def test_vidu_calls_back_processing_then_success_signed_per_the_notes(receiver: Receiver) -> None:
    async with FakeVidu(api_key=VD_KEY, run_seconds=0.2) as fake, aiohttp.ClientSession() as http:
        url = f"{receiver.base_url}/callbacks/vidu?job=9&tag=a%20b"
        task_id = await vd_create(http, fake, callback_url=url)
        processing, success = await receiver.wait_for(2)
        assert fake.route_count("creations") == 0
        assert [processing.json["state"], success.json["state"]] == ["processing", "success"]
        assert processing.json["creations"] == []
        assert success.json == await vd_query(http, fake, task_id)
        assert success.json["creations"][0]["url"] == f"{fake.base_url}/media/{task_id}.mp4"
        for callback in (processing, success):
            assert (callback.path, callback.query) == ("/callbacks/vidu", "job=9&tag=a%20b")
            headers = callback.headers
            assert headers["X-HMAC-SIGNED-HEADERS"] == "Date;x-request-nonce"
            assert headers["X-HMAC-ACCESS-KEY"] == "vidu"
            assert headers["Content-Type"].startswith("application/json")
            assert abs(parsedate_to_datetime(headers["Date"]).timestamp() - time.time()) < 60
            assert headers["Date"].endswith(" GMT")
            assert vidu_signature_valid(VD_KEY, callback)
            assert not vidu_signature_valid("another-token", callback)
        assert processing.headers["x-request-nonce"] != success.headers["x-request-nonce"]
        await fake.callbacks_idle(timeout=WAIT)
        assert [(sent.event, sent.status) for sent in fake.callbacks_sent] == [("processing", 200), ("success", 200)]


async def test_vidu_signature_fails_when_any_signed_byte_changes(receiver: Receiver) -> None:
    async with FakeVidu(api_key=VD_KEY, run_seconds=0.05) as fake, aiohttp.ClientSession() as http:
        await vd_create(http, fake, callback_url=f"{receiver.base_url}/callbacks/vidu?job=1")
        [callback, _] = await receiver.wait_for(2)
    assert vidu_signature_valid(VD_KEY, callback)
    headers = dict(callback.headers)
    changes: list[Callable[[Received], Received]] = [
        lambda r: Received(r.method, r.path, r.query, {**headers, "Date": flip_last(headers["Date"])}, r.body),
        lambda r: Received(
            r.method, r.path, r.query, {**headers, "x-request-nonce": flip_last(headers["x-request-nonce"])}, r.body
        ),
        lambda r: Received(
            r.method, r.path, r.query, {**headers, "X-HMAC-SIGNATURE": flip_last(headers["X-HMAC-SIGNATURE"])}, r.body
        ),
        lambda r: Received(r.method, r.path + "x", r.query, headers, r.body),
        lambda r: Received(r.method, r.path, "job=2", headers, r.body),
        lambda r: Received("PUT", r.path, r.query, headers, r.body),
    ]
    for change in changes:
        assert not vidu_signature_valid(VD_KEY, change(callback))


async def test_vidu_sign_callback_forges_what_a_real_vidu_would_send(receiver: Receiver) -> None:
    async with FakeVidu(api_key=VD_KEY, run_seconds=0.05) as fake, aiohttp.ClientSession() as http:
        url = f"{receiver.base_url}/callbacks/vidu?job=3"
        await vd_create(http, fake, callback_url=url)
        [_, success] = await receiver.wait_for(2)
        stale = "Sun, 06 Dec 2026 03:00:00 GMT"
        forged = fake.sign_callback(url, success.body, date=stale, nonce=success.headers["x-request-nonce"])
        assert forged["Date"] == stale
        assert forged["x-request-nonce"] == success.headers["x-request-nonce"]
        replay = fake.sign_callback(url, success.body, date=success.headers["Date"], nonce=forged["x-request-nonce"])
        assert replay["X-HMAC-SIGNATURE"] == success.headers["X-HMAC-SIGNATURE"]
        fresh = fake.sign_callback(url, b"{}")
        assert fresh["x-request-nonce"] != success.headers["x-request-nonce"]
        async with http.post(url, data=b"{}", headers=fresh) as response:
            assert response.status == 200
        [*_, forged_arrival] = await receiver.wait_for(3)
        assert vidu_signature_valid(VD_KEY, forged_arrival)


@pytest.mark.parametrize(
    ("kind", "err_code"), [("failed", "InternalServiceFailure"), ("moderation", "CreationPolicyViolation")]
)
async def test_vidu_calls_back_failed_for_a_failed_or_moderated_task(
    receiver: Receiver, kind: str, err_code: str
) -> None:
    async with FakeVidu(api_key=VD_KEY, run_seconds=0.1) as fake, aiohttp.ClientSession() as http:
        fake.outcomes.append(Outcome(kind))
        task_id = await vd_create(http, fake, callback_url=f"{receiver.base_url}/cb")
        processing, failed = await receiver.wait_for(2)
        assert processing.json["state"] == "processing"
        assert (failed.json["state"], failed.json["err_code"], failed.json["creations"]) == ("failed", err_code, [])
        assert failed.json == await vd_query(http, fake, task_id)
        await fake.callbacks_idle(timeout=WAIT)
        assert [sent.event for sent in fake.callbacks_sent] == ["processing", kind]


async def test_vidu_retries_an_end_three_times_and_sends_processing_once(receiver: Receiver) -> None:
    receiver.always = 500
    clock = FakeClock()
    async with FakeVidu(api_key=VD_KEY, clock=clock) as fake, aiohttp.ClientSession() as http:
        await vd_create(http, fake, callback_url=f"{receiver.base_url}/cb")
        await settle(fake, clock, 0.1)
        assert [sent.event for sent in fake.callbacks_sent] == ["processing"]
        for _ in range(10):
            await settle(fake, clock, 1.0)
        tries = [(sent.event, sent.attempt, sent.status) for sent in fake.callbacks_sent]
        assert tries == [("processing", 1, 500)] + [("success", attempt, 500) for attempt in (1, 2, 3, 4)]
        nonces = {callback.headers["x-request-nonce"] for callback in receiver.received}
        assert len(nonces) == 5
        assert all(vidu_signature_valid(VD_KEY, callback) for callback in receiver.received)


async def test_vidu_calls_back_a_queued_task_when_it_starts(receiver: Receiver) -> None:
    clock = FakeClock()
    async with (
        FakeVidu(api_key=VD_KEY, clock=clock, concurrency=1, run_seconds=2.0) as fake,
        aiohttp.ClientSession() as http,
    ):
        first = await vd_create(http, fake, callback_url=f"{receiver.base_url}/cb")
        second = await vd_create(http, fake, callback_url=f"{receiver.base_url}/cb")
        await settle(fake, clock, 0.5)
        assert [(sent.task_id, sent.event) for sent in fake.callbacks_sent] == [(first, "processing")]
        await settle(fake, clock, 2.0)
        later = {(sent.task_id, sent.event, sent.at) for sent in fake.callbacks_sent[1:]}
        assert later == {(first, "success", clock.now), (second, "processing", clock.now)}
        [started] = [callback.json for callback in receiver.received if callback.json["id"] == second]
        assert started["state"] == "processing"


async def test_vidu_calls_back_failed_when_a_queued_task_is_cancelled(receiver: Receiver) -> None:
    clock = FakeClock()
    async with (
        FakeVidu(api_key=VD_KEY, clock=clock, queue_seconds=10.0) as fake,
        aiohttp.ClientSession() as http,
    ):
        task_id = await vd_create(http, fake, callback_url=f"{receiver.base_url}/cb")
        cancel = f"{fake.base_url}/ent/v2/tasks/{task_id}/cancel"
        await post(http, cancel, json={"id": task_id}, headers={"Authorization": f"Token {VD_KEY}"})
        await settle(fake, clock, 20.0)
        [callback] = receiver.received
        assert (callback.json["state"], callback.json["err_code"]) == ("failed", "UserCancelled")
        assert [sent.event for sent in fake.callbacks_sent] == ["cancelled"]


# -- PixVerse --------------------------------------------------------------------------------------


async def test_pixverse_webhook_is_signed_per_the_notes_reading(receiver: Receiver) -> None:
    async with FakePixVerse(api_key=PV_KEY, run_seconds=0.1) as fake, aiohttp.ClientSession() as http:
        fake.webhook_url = f"{receiver.base_url}/callbacks/pixverse"
        fake.webhook_secret = PV_SECRET
        video_id = await pv_create(http, fake)
        [callback] = await receiver.wait_for(1)
        assert fake.route_count("result") == 0
        body = callback.json
        assert set(body) == {"id", "status", "url", "size", "has_audio", "credits"}
        assert (body["id"], body["status"], body["has_audio"]) == (video_id, 1, False)
        assert body["url"] == f"{fake.base_url}/media/{video_id}.mp4"
        assert min(body["size"], body["credits"]) > 0
        headers = callback.headers
        assert headers["Ai-Trace-Id"]
        assert abs(int(headers["Webhook-Timestamp"]) - time.time()) < 60
        assert pixverse_signature_valid(PV_SECRET, headers, callback.body)
        assert not pixverse_signature_valid("another-secret", headers, callback.body)
        changed = callback.body.replace(b'"has_audio":false', b'"has_audio":true')
        assert changed != callback.body
        assert not pixverse_signature_valid(PV_SECRET, headers, changed)
        assert not pixverse_signature_valid(
            PV_SECRET, {**headers, "Webhook-Nonce": flip_last(headers["Webhook-Nonce"])}, callback.body
        )
        forged = fake.sign_webhook({"id": 1, "status": 1, "url": "a b&c", "has_audio": True}, timestamp=5, nonce="n")
        assert (forged["Webhook-Timestamp"], forged["Webhook-Nonce"]) == ("5", "n")
        assert pixverse_signature_valid(
            PV_SECRET, forged, json.dumps({"url": "a b&c", "id": 1, "has_audio": True, "status": 1}).encode()
        )


async def test_pixverse_webhook_reports_moderation_with_an_empty_url(receiver: Receiver) -> None:
    clock = FakeClock()
    async with FakePixVerse(api_key=PV_KEY, clock=clock) as fake, aiohttp.ClientSession() as http:
        fake.webhook_url = f"{receiver.base_url}/callbacks/pixverse"
        fake.webhook_secret = PV_SECRET
        fake.outcomes.extend([Outcome("moderation"), Outcome("failed")])
        first = await pv_create(http, fake)
        second = await pv_create(http, fake)
        await settle(fake, clock, 1.0)
        bodies = sorted((callback.json for callback in receiver.received), key=lambda body: body["id"])
        assert [(body["id"], body["status"], body["url"]) for body in bodies] == [(first, 7, ""), (second, 8, "")]
        assert all(pixverse_signature_valid(PV_SECRET, c.headers, c.body) for c in receiver.received)


async def test_pixverse_retries_after_its_delays_and_stops_after_eight_tries(receiver: Receiver) -> None:
    receiver.always = 500
    clock = FakeClock()
    async with FakePixVerse(api_key=PV_KEY, clock=clock) as fake, aiohttp.ClientSession() as http:
        fake.webhook_url = f"{receiver.base_url}/callbacks/pixverse"
        fake.webhook_secret = PV_SECRET
        assert fake.webhook_retry_delays == (2, 4, 8, 16, 32, 64, 128)
        await pv_create(http, fake)
        await settle(fake, clock, 0.5)
        await settle(fake, clock, 1.5)
        assert len(receiver.received) == 1
        await settle(fake, clock, 0.5)
        assert len(receiver.received) == 2
        for _ in range(12):
            await settle(fake, clock, 128.0)
        assert [sent.attempt for sent in fake.callbacks_sent] == list(range(1, 9))
        assert len(receiver.received) == 8
        stamps = {callback.headers["Webhook-Nonce"] for callback in receiver.received}
        assert len(stamps) == 8


async def test_pixverse_without_a_webhook_sends_nothing(receiver: Receiver) -> None:
    clock = FakeClock()
    async with FakePixVerse(api_key=PV_KEY, clock=clock) as fake, aiohttp.ClientSession() as http:
        fake.webhook_url = f"{receiver.base_url}/callbacks/pixverse"
        await pv_create(http, fake)
        await settle(fake, clock, 5.0)
        assert fake.callbacks_sent == []
    assert receiver.received == []


# -- controls shared by the three fakes ------------------------------------------------------------


async def test_drop_callbacks_sends_nothing_and_counts_the_drops(receiver: Receiver) -> None:
    clock = FakeClock()
    async with (
        FakeHiDream(api_key=HD_KEY, clock=clock) as hd,
        FakeVidu(api_key=VD_KEY, clock=clock) as vd,
        FakePixVerse(api_key=PV_KEY, clock=clock) as pv,
        aiohttp.ClientSession() as http,
    ):
        pv.webhook_url, pv.webhook_secret = f"{receiver.base_url}/pv", PV_SECRET
        for fake in (hd, vd, pv):
            fake.drop_callbacks = True
        await hd_create(http, hd, notify_url=f"{receiver.base_url}/hd")
        await vd_create(http, vd, callback_url=f"{receiver.base_url}/vd")
        await pv_create(http, pv)
        clock.advance(5.0)
        for fake in (hd, vd, pv):
            await fake.callbacks_idle(timeout=WAIT)
        assert [fake.callbacks_sent for fake in (hd, vd, pv)] == [[], [], []]
        assert [fake.callback_count["dropped"] for fake in (hd, vd, pv)] == [1, 2, 1]
        assert [dropped.event for dropped in vd.callbacks_dropped] == ["processing", "success"]
    assert receiver.received == []


async def test_without_recording_only_counters_are_kept(receiver: Receiver) -> None:
    async with FakeVidu(api_key=VD_KEY, run_seconds=0.05, record=False) as fake, aiohttp.ClientSession() as http:
        await vd_create(http, fake, callback_url=f"{receiver.base_url}/cb")
        await receiver.wait_for(2)
        await fake.callbacks_idle(timeout=WAIT)
        assert fake.callbacks_sent == []
        assert (fake.callback_count["processing"], fake.callback_count["success"]) == (1, 1)


async def test_with_a_fake_clock_callbacks_wait_for_the_clock(receiver: Receiver) -> None:
    clock = FakeClock()
    async with FakeHiDream(api_key=HD_KEY, clock=clock) as fake, aiohttp.ClientSession() as http:
        await hd_create(http, fake, notify_url=f"{receiver.base_url}/cb")
        await fake.callbacks_idle(timeout=WAIT)
        assert receiver.received == []
        clock.advance(0.5)
        await receiver.wait_for(1)
        assert fake.route_count("batch_query") == 0
