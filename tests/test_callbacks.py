"""Callbacks: the providers' requests are checked, and all they can do is make a job's check due now.

The signers here are written from notes/providers.md (Vidu fact 5, PixVerse fact 7 and the notes' reading of
its signing string), independently of the clients' checks and of the fakes.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import aiohttp
import pytest
from multidict import CIMultiDict
from pydantic import SecretStr

from bot.callbacks import PROBE_HEADER, CallbackListener, callback_url
from bot.jobs.inputs import InputStore
from bot.jobs.scheduler import Scheduler, SchedulerSettings
from bot.store import JobState, NewJob, Store
from providers import Callback, CallbackRefused, VideoProvider
from providers.hidream import HiDream
from providers.pixverse import PixVerse
from providers.vidu import Vidu
from simulators.fake_providers import FakeHiDream, FakeVidu, Outcome
from tests.conftest import HIDREAM_KEY, PIXVERSE_KEY, VIDU_KEY, hidream_client, vidu_client
from tests.scheduling import Recorder, new_job, wait_for

PUBLIC = "https://bot.example.org/animate"
WEBHOOK_SECRET = "pv-webhook-secret"
#: Long enough that no test job is polled by the clock while the test runs.
NEVER = 3600.0


def vidu_headers(
    secret: str, path: str, *, query: str = "", date: datetime | None = None, nonce: str | None = None
) -> dict[str, str]:
    """Vidu's callback headers, signed as notes/providers.md §3 fact 5 describes."""
    date_text = format_datetime(date or datetime.now(UTC), usegmt=True)
    nonce = nonce or uuid.uuid4().hex
    signing = f"POST\n{path}\n{query}\nvidu\n{date_text}\nDate:{date_text}\nx-request-nonce:{nonce}\n"
    signature = base64.b64encode(hmac.new(secret.encode(), signing.encode(), hashlib.sha256).digest()).decode()
    return {
        "Date": date_text,
        "x-request-nonce": nonce,
        "X-HMAC-SIGNED-HEADERS": "Date;x-request-nonce",
        "X-HMAC-SIGNATURE": signature,
        "X-HMAC-ALGORITHM": "hmac-sha256",
        "X-HMAC-ACCESS-KEY": "vidu",
        "Content-Type": "application/json",
    }


def pixverse_headers(
    secret: str, body: dict[str, Any], *, timestamp: int | None = None, nonce: str | None = None
) -> dict[str, str]:
    """PixVerse's webhook headers, signed per fact 7 and the notes' reading of the signing string."""

    def written(value: Any) -> str:
        if value is None:
            return ""
        if value is True or value is False:
            return str(value).lower()
        return value if isinstance(value, str) else json.dumps(value)

    stamp = str(timestamp if timestamp is not None else int(datetime.now(UTC).timestamp()))
    nonce = nonce or uuid.uuid4().hex
    fields = "&".join(f"{quote_plus(key)}={quote_plus(written(body[key]))}" for key in sorted(body))
    digest = hmac.new(secret.encode(), f"{stamp}\n{nonce}\n{fields}".encode(), hashlib.sha256).digest()
    return {
        "Webhook-Timestamp": stamp,
        "Webhook-Nonce": nonce,
        "Webhook-Signature": base64.b64encode(digest).decode(),
        "Ai-Trace-Id": uuid.uuid4().hex,
        "Content-Type": "application/json",
    }


def arrived(headers: dict[str, str], body: bytes, *, query: str = "", at: datetime | None = None) -> Callback:
    return Callback("POST", query, CIMultiDict(headers), body, at or datetime.now(UTC))


# The clients' checks.


def vidu_with_callbacks(session: aiohttp.ClientSession, base_url: str = "http://127.0.0.1:9") -> Vidu:
    return Vidu(session, SecretStr(VIDU_KEY), base_url=base_url, callback_url=callback_url(PUBLIC, "vidu"))


async def test_a_vidu_callback_signed_as_documented_names_its_task_and_key(session: aiohttp.ClientSession) -> None:
    vidu = vidu_with_callbacks(session)
    body = json.dumps({"id": "t-1", "state": "success", "payload": "animate-bot:job-7-2"}).encode()
    news = vidu.read_callback(arrived(vidu_headers(VIDU_KEY, "/animate/callbacks/vidu", nonce="n-1"), body))
    assert news.task_ids == ("t-1",)
    assert news.keys == ("job-7-2",)
    assert news.finished
    assert news.nonce == "n-1"
    processing = json.dumps({"id": "t-1", "state": "processing"}).encode()
    assert not vidu.read_callback(arrived(vidu_headers(VIDU_KEY, "/animate/callbacks/vidu"), processing)).finished


@pytest.mark.parametrize(
    "forgery",
    ["wrong key", "wrong path", "stale date", "future date", "date not signed", "nonce changed", "no signature"],
)
async def test_a_vidu_callback_that_does_not_check_out_is_refused(session: aiohttp.ClientSession, forgery: str) -> None:
    vidu = vidu_with_callbacks(session)
    path = "/animate/callbacks/vidu"
    now = datetime.now(UTC)
    headers = vidu_headers(VIDU_KEY, path)
    if forgery == "wrong key":
        headers = vidu_headers("another-key", path)
    elif forgery == "wrong path":
        headers = vidu_headers(VIDU_KEY, "/callbacks/vidu")
    elif forgery == "stale date":
        headers = vidu_headers(VIDU_KEY, path, date=now - timedelta(minutes=6))
    elif forgery == "future date":
        headers = vidu_headers(VIDU_KEY, path, date=now + timedelta(minutes=6))
    elif forgery == "date not signed":
        headers["X-HMAC-SIGNED-HEADERS"] = "x-request-nonce"
    elif forgery == "nonce changed":
        headers["x-request-nonce"] = "another"
    else:
        del headers["X-HMAC-SIGNATURE"]
    body = json.dumps({"id": "t-1", "state": "success"}).encode()
    with pytest.raises(CallbackRefused) as refused:
        vidu.read_callback(arrived(headers, body, at=now))
    assert refused.value.status == 401


async def test_a_pixverse_webhook_is_checked_with_the_consoleSecretStr(session: aiohttp.ClientSession) -> None:
    pixverse = PixVerse(session, SecretStr(PIXVERSE_KEY), webhook_secret=SecretStr(WEBHOOK_SECRET))
    body = {"id": 391504480090022, "status": 1, "url": "https://media/v.mp4?a=1 b", "size": 10, "has_audio": False}
    body["credits"] = 45
    raw = json.dumps(body).encode()
    news = pixverse.read_callback(arrived(pixverse_headers(WEBHOOK_SECRET, body), raw))
    assert news.task_ids == ("391504480090022",)
    assert news.finished
    generating = {**body, "status": 5}
    assert not pixverse.read_callback(
        arrived(pixverse_headers(WEBHOOK_SECRET, generating), json.dumps(generating).encode())
    ).finished
    for headers, sent in [
        (pixverse_headers("wrong", body), raw),
        (pixverse_headers(WEBHOOK_SECRET, body), json.dumps({**body, "url": "https://elsewhere/v.mp4"}).encode()),
        (pixverse_headers(WEBHOOK_SECRET, body, timestamp=int(datetime.now(UTC).timestamp()) - 400), raw),
    ]:
        with pytest.raises(CallbackRefused) as refused:
            pixverse.read_callback(arrived(headers, sent))
        assert refused.value.status == 401
    assert not PixVerse(session, SecretStr(PIXVERSE_KEY)).calls_back


async def test_a_hidream_callback_is_read_inside_its_envelope_or_not(session: aiohttp.ClientSession) -> None:
    hidream = HiDream(session, SecretStr(HIDREAM_KEY), callback_url=callback_url(PUBLIC, "hidream"))
    item = {"task_id": "h-1", "sub_task_results": [{"sub_task_id": "s", "task_status": 1, "video": "x"}]}
    for body in [
        item,
        {"code": 0, "message": "", "request_id": "r", "result": item},
        {"code": 0, "result": [item, {"task_id": "h-2"}]},
        {"main_task_id": "h-1", "sub_task_results": []},
    ]:
        news = hidream.read_callback(arrived({}, json.dumps(body).encode()))
        assert "h-1" in news.task_ids
        assert news.nonce is None
    with pytest.raises(CallbackRefused) as refused:
        hidream.read_callback(arrived({}, b"<html>not json</html>"))
    assert refused.value.status == 400
    assert not HiDream(session, SecretStr(HIDREAM_KEY)).calls_back


# The ledger's side.


def plain_job(key: str) -> NewJob:
    return NewJob(
        channel_id=1, user_id=1, provider="vidu", operation="image_to_video", params={}, media={"file": "x"}, key=key
    )


async def running_job(store: Store, key: str, task_id: str) -> int:
    job = await store.create_job(plain_job(key))
    claim = await store.claim_submits(
        "vidu", owner="me", lease=timedelta(minutes=1), max_running=None, per_minute={}, limit=5
    )
    assert job.id in [claimed.id for claimed in claim.jobs]
    later = store.now() + timedelta(hours=1)
    await store.transition(job.id, JobState.RUNNING, owner="me", task_id=task_id, next_check_at=later)
    return job.id


async def test_a_report_makes_the_job_due_now_or_as_soon_as_its_check_is_back(ledger: Path | str) -> None:
    store = await Store.open(ledger)
    try:
        idle = await running_job(store, "idle", "t-idle")
        busy = await running_job(store, "busy", "t-busy")
        lease = timedelta(minutes=1)
        horizon = timedelta(hours=2)
        claimed = await store.claim_due("vidu", JobState.RUNNING, owner="me", lease=lease, limit=1, horizon=horizon)
        assert [job.id for job in claimed] == [idle]
        await store.release({idle: {"next_check_at": store.now() + timedelta(hours=1)}}, owner="me")
        claimed = await store.claim_due("vidu", JobState.RUNNING, owner="me", lease=lease, limit=5, horizon=horizon)
        assert busy in [job.id for job in claimed]
        await store.release({job.id: {} for job in claimed if job.id != busy}, owner="me")

        report = await store.report_task("vidu", task_ids=["t-idle", "t-busy"], finished=True)
        assert sorted(report.woken) == [idle, busy]
        due = await store.claim_due("vidu", JobState.RUNNING, owner="other", lease=lease, limit=5, horizon=timedelta(0))
        assert [job.id for job in due] == [idle]

        # The check of ``busy`` was out when the callback came: giving it back makes the job due at once.
        await store.release({busy: {"next_check_at": store.now() + timedelta(hours=1)}}, owner="me")
        due = await store.claim_due("vidu", JobState.RUNNING, owner="other", lease=lease, limit=5, horizon=timedelta(0))
        assert [job.id for job in due] == [busy]
        # That check answered the callback: the next one keeps its own time.
        await store.release({busy: {"next_check_at": store.now() + timedelta(hours=1)}}, owner="other")
        assert (
            await store.claim_due("vidu", JobState.RUNNING, owner="other", lease=lease, limit=5, horizon=timedelta(0))
            == []
        )
    finally:
        await store.close()


async def test_a_report_tells_replays_unknown_tasks_and_ended_jobs_apart(ledger: Path | str) -> None:
    store = await Store.open(ledger)
    try:
        job_id = await running_job(store, "job-key", "t-1")
        since = store.now() - timedelta(minutes=5)
        first = await store.report_task("vidu", task_ids=["t-1"], finished=False, nonce="n1", nonce_since=since)
        assert first.jobs == (job_id,)
        assert first.woken == ()
        assert first.started == (job_id,)
        job = await store.get_job(job_id)
        assert job is not None
        assert job.started_at is not None
        again = await store.report_task("vidu", task_ids=["t-1"], finished=True, nonce="n1", nonce_since=since)
        assert again.replayed
        assert again.woken == ()
        assert (await store.report_task("vidu", task_ids=["elsewhere"], finished=True)).known is False
        by_key = await store.report_task("vidu", task_ids=[], keys=["job-key"], finished=True)
        assert by_key.woken == (job_id,)
        await store.transition(job_id, JobState.CANCELLED, detail="cancelled")
        late = await store.report_task("vidu", task_ids=["t-1"], finished=True, nonce="n2", nonce_since=since)
        assert late.ended
        assert late.known
        assert late.woken == ()
        finished = await store.get_job(job_id)
        assert finished is not None
        assert finished.state is JobState.CANCELLED
    finally:
        await store.close()


# Through the listener, with the scheduler and a fake provider.


@dataclass
class Rig:
    store: Store
    scheduler: Scheduler
    listener: CallbackListener
    recorder: Recorder
    inputs: InputStore
    http: aiohttp.ClientSession

    def url(self, provider: str) -> str:
        return f"http://127.0.0.1:{self.listener.port}/callbacks/{provider}"

    async def post(
        self, provider: str, body: bytes, headers: dict[str, str] | None = None, *, prefixed: bool = False
    ) -> int:
        url = self.url(provider).replace("/callbacks/", "/animate/callbacks/") if prefixed else self.url(provider)
        async with self.http.post(url, data=body, headers=headers or {}) as response:
            return response.status


@pytest.fixture
async def rig_parts(tmp_path: Path, session: aiohttp.ClientSession) -> AsyncIterator[dict[str, Any]]:
    async with FakeVidu(api_key=VIDU_KEY) as vidu_fake, FakeHiDream(api_key=HIDREAM_KEY) as hidream_fake:
        yield {"tmp": tmp_path, "session": session, "vidu": vidu_fake, "hidream": hidream_fake}


async def open_rig(parts: dict[str, Any], *, rate: float = 100.0) -> Rig:
    session: aiohttp.ClientSession = parts["session"]
    providers: dict[str, VideoProvider] = {
        "vidu": vidu_client(session, parts["vidu"], callback_url=callback_url(PUBLIC, "vidu")),
        "hidream": hidream_client(session, parts["hidream"], callback_url=callback_url(PUBLIC, "hidream")),
    }
    store = await Store.open(parts["tmp"] / "ledger.db")
    inputs = InputStore(parts["tmp"] / "inputs")
    settings = SchedulerSettings(
        poll_interval=NEVER,
        max_poll_interval=NEVER,
        callback_providers=frozenset(providers),
        callback_poll_interval=NEVER,
    )
    scheduler = Scheduler(store, providers, inputs, settings)
    recorder = Recorder()
    scheduler.subscribe(recorder)
    await scheduler.start()
    listener = CallbackListener(
        providers,
        scheduler.task_reported,
        host="127.0.0.1",
        port=0,
        rate_per_source=rate,
        burst_per_source=rate,
        public_url=PUBLIC,
    )
    await listener.start()
    return Rig(store, scheduler, listener, recorder, inputs, session)


async def close_rig(rig: Rig) -> None:
    await rig.listener.stop()
    await rig.scheduler.stop(grace=5)
    await rig.store.close()


async def test_a_signed_vidu_callback_finishes_a_job_with_one_confirming_query(rig_parts: dict[str, Any]) -> None:
    fake: FakeVidu = rig_parts["vidu"]
    rig = await open_rig(rig_parts)
    try:
        job = await rig.scheduler.enqueue(new_job(rig.scheduler.providers["vidu"], rig.inputs))
        running = await wait_for(rig.store, job.id, lambda seen: seen.state is JobState.RUNNING)
        assert running.task_id is not None
        create = fake.requests_for("create")[0]
        assert create.json["callback_url"] == "https://bot.example.org/animate/callbacks/vidu"
        await _until(lambda: fake.phase(running.task_id) == "success")
        queries = fake.route_count("creations")
        body = json.dumps({"id": running.task_id, "state": "success"}).encode()

        forged = vidu_headers("not-the-key", "/animate/callbacks/vidu")
        assert await rig.post("vidu", body, forged) == 401
        stale = vidu_headers(VIDU_KEY, "/animate/callbacks/vidu", date=datetime.now(UTC) - timedelta(minutes=10))
        assert await rig.post("vidu", body, stale) == 401
        still = await rig.store.get_job(job.id)
        assert still is not None
        assert still.state is JobState.RUNNING
        assert still.next_check_at == running.next_check_at

        signed = vidu_headers(VIDU_KEY, "/animate/callbacks/vidu")
        # A proxy may forward PUBLIC_URL's path as it is, or strip it: the listener serves both.
        assert await rig.post("vidu", body, signed, prefixed=True) == 200
        done = await wait_for(rig.store, job.id, within=30)
        assert done.state is JobState.SUCCEEDED
        assert fake.route_count("creations") == queries + 1
        # The same delivery again is a replay: refused, and nothing more is asked of Vidu.
        assert await rig.post("vidu", body, signed) == 401
        fresh = vidu_headers(VIDU_KEY, "/animate/callbacks/vidu")
        assert await rig.post("vidu", body, fresh) == 200
        assert fake.route_count("creations") == queries + 1
    finally:
        await close_rig(rig)


async def test_a_forged_hidream_callback_only_makes_the_bot_ask_hidream(rig_parts: dict[str, Any]) -> None:
    fake: FakeHiDream = rig_parts["hidream"]
    fake.outcomes.append(Outcome(run_seconds=600))
    rig = await open_rig(rig_parts)
    try:
        job = await rig.scheduler.enqueue(new_job(rig.scheduler.providers["hidream"], rig.inputs))
        running = await wait_for(rig.store, job.id, lambda seen: seen.state is JobState.RUNNING)
        submitted = fake.requests_for("submit_img2video")[0].json
        assert submitted["notify_url"] == "https://bot.example.org/animate/callbacks/hidream"
        asked = fake.route_count("batch_query") + fake.route_count("single_query")
        forged = {
            "task_id": running.task_id,
            "sub_task_results": [{"sub_task_id": "x", "task_status": 1, "video": "https://evil.example/v.mp4"}],
        }
        assert await rig.post("hidream", json.dumps(forged).encode()) == 200
        await _until(lambda: fake.route_count("batch_query") + fake.route_count("single_query") > asked)
        # HiDream said the task is still running: the check gives the job back, unchanged but for its next check.
        seen = await wait_for(rig.store, job.id, lambda current: current.lease_owner is None)
        assert seen.state is JobState.RUNNING
        assert seen.video_url is None
        assert all(update.video_url is None for update in rig.recorder.updates)
    finally:
        await close_rig(rig)


async def test_the_listener_refuses_what_is_not_a_callback(rig_parts: dict[str, Any]) -> None:
    rig = await open_rig(rig_parts, rate=5)
    try:
        async with rig.http.get(rig.url("vidu")) as response:
            assert response.status == 405
            assert response.headers[PROBE_HEADER] == "vidu"
        async with rig.http.get(f"http://127.0.0.1:{rig.listener.port}/healthz") as response:
            assert response.status == 404
        assert await rig.post("pixverse", b"{}") == 404
        assert await rig.post("hidream", b"x" * (300 * 1024)) == 413
        assert await rig.post("hidream", b"not json") == 400
        statuses = [await rig.post("hidream", b"{}") for _ in range(10)]
        assert 429 in statuses
        # Behind a reverse proxy on this machine, each forwarded address has a bucket of its own.
        other = {"X-Forwarded-For": "203.0.113.9"}
        assert await rig.post("hidream", json.dumps({"task_id": "nobody"}).encode(), other) == 200
    finally:
        await close_rig(rig)


async def _until(condition: Callable[[], bool], within: float = 30.0) -> None:
    async with asyncio.timeout(within):
        while True:
            if condition():
                return
            await asyncio.sleep(0.02)


async def test_a_callback_the_ledger_cannot_take_gets_503_and_an_error_id(
    tmp_path: Path, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    hidream = HiDream(session, SecretStr(HIDREAM_KEY), callback_url=callback_url(PUBLIC, "hidream"))
    store = await Store.open(tmp_path / "ledger.db")
    scheduler = Scheduler(store, {"hidream": hidream}, InputStore(tmp_path / "inputs"))
    listener = CallbackListener({"hidream": hidream}, scheduler.task_reported, host="127.0.0.1", port=0)
    await listener.start()
    try:
        await store.close()
        url = f"http://127.0.0.1:{listener.port}/callbacks/hidream"
        async with session.post(url, data=json.dumps({"task_id": "h-1"}).encode()) as response:
            assert response.status == 503
            text = await response.text()
        error_id = text.removeprefix("Error ")
        assert len(error_id) == 8
        assert any(error_id in record.getMessage() and record.exc_info for record in caplog.records)
    finally:
        await listener.stop()
