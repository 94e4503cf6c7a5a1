"""Callbacks end to end: the bot as ``python -m bot`` builds it, the fake Discord, and fakes that call back.

Jobs here are polled only every hour (CALLBACK_POLL_SECONDS), so a job that ends while the test runs was
told by its callback, and a job whose callbacks are lost needs the fallback poll.
"""

from __future__ import annotations

import asyncio
import json
from email.utils import formatdate
from typing import Any

import aiohttp
import pytest

from bot.store import JobState
from simulators.fake_providers import FakeHiDream, FakePixVerse, FakeVidu, Outcome, SentCallback
from tests.discord_world import World, answer, free_port, status_of, world

__all__ = ["world"]

WEBHOOK_SECRET = "pixverse-console-secret"
HOUR = 3600


def callbacks_on(world: World, *, poll_seconds: float = HOUR) -> str:
    """PUBLIC_URL at a listener on loopback; PixVerse's console webhook pointed at it. Returns PUBLIC_URL."""
    port = free_port()
    public = f"http://127.0.0.1:{port}"
    world.overrides.update(
        public_url=public,
        callback_port=port,
        callback_host="127.0.0.1",
        callback_poll_seconds=poll_seconds,
        pixverse_webhook_secret=WEBHOOK_SECRET,
    )
    pixverse: FakePixVerse = world.providers["pixverse"]
    pixverse.webhook_url = f"{public}/callbacks/pixverse"
    pixverse.webhook_secret = WEBHOOK_SECRET
    pixverse.webhook_retry_delays = (0.2, 0.2)
    return public


def queries(world: World, provider: str) -> int:
    routes = {"hidream": ("batch_query", "single_query"), "pixverse": ("result",), "vidu": ("creations",)}[provider]
    return sum(world.providers[provider].route_count(route) for route in routes)


async def post(url: str, body: bytes, headers: dict[str, str] | None = None) -> int:
    async with aiohttp.ClientSession() as session, session.post(url, data=body, headers=headers or {}) as response:
        return response.status


@pytest.mark.world(run_seconds=1.5)
async def test_jobs_are_announced_when_their_callbacks_come_with_one_confirming_query_each(world: World) -> None:
    public = callbacks_on(world)
    async with world.running():
        jobs = {provider: await world.job_for(await world.animate(provider)) for provider in world.providers}
        done = {provider: await world.finished(job.id, within=30) for provider, job in jobs.items()}
    for provider, job in done.items():
        assert job.state is JobState.SUCCEEDED, provider
        assert queries(world, provider) == 1, provider
    vidu: FakeVidu = world.providers["vidu"]
    create = vidu.requests_for("create")[0]
    assert create.json["callback_url"] == f"{public}/callbacks/vidu"
    assert [sent.event for sent in vidu.callbacks_sent if sent.event == "success"] == ["success"]
    hidream: FakeHiDream = world.providers["hidream"]
    assert hidream.requests_for("submit_img2video")[0].json["notify_url"] == f"{public}/callbacks/hidream"
    assert [sent.status for sent in hidream.callbacks_sent] == [200]
    pixverse: FakePixVerse = world.providers["pixverse"]
    assert [sent.status for sent in pixverse.callbacks_sent] == [200]
    assert [sent.body for sent in pixverse.callbacks_sent if sent.status == 200]


@pytest.mark.world(run_seconds=1.0)
async def test_without_public_url_no_callback_is_asked_for_and_jobs_are_polled(world: World) -> None:
    async with world.running():
        vidu_job = await world.job_for(await world.animate("vidu"))
        hidream_job = await world.job_for(await world.animate("hidream"))
        for job in (vidu_job, hidream_job):
            assert (await world.finished(job.id, within=30)).state is JobState.SUCCEEDED
    assert "callback_url" not in world.providers["vidu"].requests_for("create")[0].json
    assert "notify_url" not in world.providers["hidream"].requests_for("submit_img2video")[0].json
    assert world.providers["vidu"].callbacks_sent == []


@pytest.mark.world(run_seconds=1.0)
async def test_forged_stale_and_replayed_vidu_callbacks_are_refused_and_change_nothing(world: World) -> None:
    public = callbacks_on(world)
    vidu: FakeVidu = world.providers["vidu"]
    vidu.outcomes.append(Outcome(run_seconds=600))
    async with world.running():
        job = await world.job_for(await world.animate("vidu"))
        running = await world.reaches(job.id, lambda seen: seen.state is JobState.RUNNING)

        def processing_sent() -> list[SentCallback]:
            return [sent for sent in vidu.callbacks_sent if sent.event == "processing" and sent.status == 200]

        await world.discord.wait_until(lambda: bool(processing_sent()), timeout=15)
        [processing] = processing_sent()
        url = f"{public}/callbacks/vidu"
        asked = queries(world, "vidu")
        success = json.dumps({**json.loads(processing.body), "state": "success"}).encode()

        forged = vidu.sign_callback(url, success)
        forged["X-HMAC-SIGNATURE"] = forged["X-HMAC-SIGNATURE"][::-1]
        stale = vidu.sign_callback(url, success, date=formatdate(timeval=None, usegmt=True).replace("2026", "2025"))
        assert await post(url, success, forged) == 401
        assert await post(url, success, stale) == 401
        assert await post(url, success, processing.headers) == 401

        after = await world.store.get_job(job.id)
        assert after.state is JobState.RUNNING
        assert after.next_check_at == running.next_check_at
        assert queries(world, "vidu") == asked


@pytest.mark.world(run_seconds=3.0)
async def test_a_forged_hidream_callback_never_puts_its_video_on_discord(world: World) -> None:
    public = callbacks_on(world)
    hidream: FakeHiDream = world.providers["hidream"]
    async with world.running():
        job = await world.job_for(await world.animate("hidream"))
        running = await world.reaches(job.id, lambda seen: seen.state is JobState.RUNNING)
        forged = {
            "code": 0,
            "result": {
                "task_id": running.task_id,
                "sub_task_results": [
                    {"sub_task_id": "s", "task_status": 1, "video": "https://evil.example/v.mp4"},
                ],
            },
        }
        assert await post(f"{public}/callbacks/hidream", json.dumps(forged).encode()) == 200
        # The forged "done" only made the bot ask HiDream, which says the task is still running.
        await world.reaches(job.id, lambda seen: queries(world, "hidream") >= 1 and seen.lease_owner is None)
        assert (await world.store.get_job(job.id)).state is JobState.RUNNING
        done = await world.finished(job.id, within=30)
    assert done.state is JobState.SUCCEEDED
    assert done.video_url is not None
    assert done.video_url.startswith(hidream.base_url)
    posted = json.dumps([request.json for request in world.discord.requests_to(None, r".*")], default=str)
    assert "evil.example" not in posted


@pytest.mark.world(run_seconds=1.0)
async def test_a_job_whose_callbacks_are_all_lost_still_finishes_by_polling(world: World) -> None:
    callbacks_on(world, poll_seconds=2)
    vidu: FakeVidu = world.providers["vidu"]
    vidu.drop_callbacks = True
    async with world.running():
        job = await world.job_for(await world.animate("vidu"))
        done = await world.finished(job.id, within=60)
    assert done.state is JobState.SUCCEEDED
    assert vidu.callbacks_sent == []
    assert vidu.callback_count["dropped"] >= 1
    card = world.discord.message(done.message_id or 0)
    assert card is not None
    assert "Done" in status_of(card)


@pytest.mark.world(run_seconds=1.0)
async def test_a_flood_of_bogus_callbacks_does_not_keep_commands_from_being_answered(world: World) -> None:
    public = callbacks_on(world)
    async with world.running():
        url = f"{public}/callbacks/vidu"
        connector = aiohttp.TCPConnector(limit=50)
        async with aiohttp.ClientSession(connector=connector) as flooder:

            async def bogus(number: int) -> int:
                headers = {"X-HMAC-SIGNATURE": "bogus", "Date": formatdate(usegmt=True), "x-request-nonce": str(number)}
                async with flooder.post(url, data=b'{"id": "x", "state": "success"}', headers=headers) as response:
                    return response.status

            flood = asyncio.gather(*(bogus(number) for number in range(1000)))
            interaction = await world.discord.push_interaction(world.discord.slash("quota"))
            statuses = await flood
        await world.discord.wait_until(lambda: bool(answer(world, interaction)) or bool(_embeds(world, interaction)))
        record = world.discord.interaction(interaction)
        assert record.acknowledged
        # The fake refuses a first response that comes after Discord's 3 s window.
        assert [callback.status < 300 for callback in record.callbacks] == [True]
        assert set(statuses) <= {401, 429}
        assert 401 in statuses
        # The bot still takes and finishes work after the flood.
        job = await world.job_for(await world.animate("vidu"))
        assert (await world.finished(job.id, within=30)).state is JobState.SUCCEEDED


def _embeds(world: World, interaction: Any) -> list[Any]:
    callbacks = world.discord.callbacks(interaction)
    return list(callbacks[0].data.get("embeds", [])) if callbacks else []
