"""Announcing finished jobs: a claimed step of the ledger's own, exactly once across crashes and races."""

from __future__ import annotations

import asyncio
import sqlite3
from contextlib import closing
from typing import Any

import pytest

from bot.store import JobEvent, JobState, Store
from bot.ui.presenter import ChannelBudget
from simulators.fake_providers import FakeClock, build_mp4
from tests.conftest import image_bytes
from tests.discord_world import REQUIRED, World, announcements, world

__all__ = ["world"]


def columns(world: World) -> set[str]:
    with closing(sqlite3.connect(world.tmp / "data" / "bot.db")) as connection:
        return {row[1] for row in connection.execute("PRAGMA table_info(jobs)")}


def forget_the_delivery(world: World, job_id: int) -> None:
    """The ledger as a crash leaves it when the announcement went out and its record did not."""
    with closing(sqlite3.connect(world.tmp / "data" / "bot.db")) as connection:
        connection.execute(
            "UPDATE jobs SET delivery = 'pending', delivered_at = NULL WHERE id = ?",
            (job_id,),
        )
        if "announce_started_at" in columns(world):
            connection.execute(
                "UPDATE jobs SET announce_started_at = finished_at, delivery_next_at = finished_at WHERE id = ?",
                (job_id,),
            )
        connection.commit()


async def test_a_crash_between_the_announcement_and_its_record_does_not_announce_again(world: World) -> None:
    async with world.running():
        interaction = await world.animate("vidu")
        job = await world.job_for(interaction)
        done = await world.finished(job.id)
    assert done.state is JobState.SUCCEEDED
    assert len(announcements(world, done)) == 1
    forget_the_delivery(world, job.id)

    async with world.running():
        again = await world.finished(job.id)
        assert again.delivered
    assert len(announcements(world, done)) == 1


async def test_an_announcement_that_fails_is_tried_again_and_posted_once(world: World) -> None:
    # The first announcement (the interaction's followup) is lost on the network.
    world.discord.drop_connection("POST", r"^/webhooks/\d+/[^/]+$")
    async with world.running():
        interaction = await world.animate("vidu")
        job = await world.job_for(interaction)
        done = await world.finished(job.id, within=30)
        assert done.delivery_attempts == 2
        details = [event.detail for event in await world.store.events(job.id)]
    assert any(detail.startswith("announcement failed") for detail in details)
    [announcement] = announcements(world, done)
    assert announcement.custom_ids() == []
    [*_, posted] = world.discord.requests_to("POST", r"/webhooks/\d+/[^/]+")
    assert_mentions_only(posted.json, done.user_id)


def video_of_size(size: int) -> bytes:
    """A playable MP4 of exactly ``size`` bytes."""
    header = len(build_mp4(payload_size=0))
    return build_mp4(payload_size=size - header)


@pytest.mark.parametrize(("over_the_limit", "attached"), [(0, True), (1, False)])
async def test_a_video_exactly_at_the_upload_limit_is_attached_and_one_byte_over_is_linked(
    world: World, over_the_limit: int, attached: bool
) -> None:
    limit = 300 * 1024
    world.providers["vidu"].video_bytes = video_of_size(limit + over_the_limit)
    image = world.discord.add_attachment("cat.png", image_bytes(640, 360), "image/png")
    payload = world.discord.slash(
        "animate",
        subcommand="vidu",
        options=REQUIRED["vidu"],
        attachments={"image": image},
        attachment_size_limit=limit,
    )
    async with world.running():
        job = await world.job_for(await world.discord.push_interaction(payload))
        done = await world.finished(job.id)
    assert (done.state, done.upload_limit) == (JobState.SUCCEEDED, limit)

    [announcement] = announcements(world, done)
    if attached:
        [video] = announcement.attachments
        assert (video.filename, len(video.data)) == (f"job-{done.id}.mp4", limit)
        assert str(done.video_url) not in announcement.content
    else:
        assert announcement.attachments == []
        assert "too large to upload here" in announcement.content
        assert str(done.video_url) in announcement.content


async def test_a_job_already_delivered_is_never_announced_again(world: World) -> None:
    # Without Read Message History the bot cannot find its earlier announcement: the ledger alone decides.
    world.discord.hide_history(world.discord.channel)
    async with world.running() as bot:
        first = await world.job_for(await world.animate("vidu"))
        delivered = await world.finished(first.id)
        # A late hint that the job finished (the scheduler publishes every change, in order, but late).
        await bot.presenter.on_job(delivered)
        second = await world.job_for(await world.animate("vidu"))
        await world.finished(second.id)
    assert len(announcements(world, delivered)) == 1

    async with world.running():
        third = await world.job_for(await world.animate("vidu"))
        await world.finished(third.id)
    assert len(announcements(world, delivered)) == 1


async def test_an_announcement_sent_again_after_its_answer_was_lost_leaves_one_message(world: World) -> None:
    # The bot may not read the channel's history, so after the lost answer it cannot see that the
    # announcement was posted: only Discord's enforced nonce keeps the second send from posting again.
    world.discord.hide_history(world.discord.channel)
    world.discord.drop_connection("POST", r"^/channels/\d+/messages$", after=True)
    # Vidu's time stands still until the token is revoked, so the job cannot end while the token works.
    vidu_time = FakeClock()
    world.providers["vidu"].clock = vidu_time
    async with world.running():
        interaction = await world.animate("vidu")
        job = await world.job_for(interaction)
        await world.reaches(job.id, lambda job: job.task_id is not None)
        # The token dies, so the announcement goes to the channel with the bot token.
        world.discord.revoke_token(interaction)
        vidu_time.advance(60)
        done = await world.finished(job.id, within=30)
    sends = world.discord.requests_to("POST", rf"/channels/{done.channel_id}/messages")
    assert len(sends) == 2
    assert done.delivery_attempts == 2
    [announcement] = announcements(world, done)
    assert announcement.content.startswith(f"<@{done.user_id}> your video from job {done.id} is ready")


async def announcement_failures(world: World, job_id: int, count: int) -> list[JobEvent]:
    async with asyncio.timeout(15):
        while True:
            failures = [
                event for event in await world.store.events(job_id) if event.detail.startswith("announcement failed")
            ]
            if len(failures) >= count:
                return failures
            await asyncio.sleep(0.02)


async def test_a_failed_announcement_is_tried_again_after_two_then_fifteen_seconds(world: World) -> None:
    world.discord.drop_connection("POST", r"^/webhooks/\d+/[^/]+$", times=2)
    async with world.running():
        job = await world.job_for(await world.animate("vidu"))
        for count, wait in enumerate((2.0, 15.0), start=1):
            failure = max(await announcement_failures(world, job.id, count), key=lambda event: event.at)
            pending = await world.store.get_job(job.id)
            assert not pending.delivered
            assert pending.delivery_next_at is not None
            assert abs((pending.delivery_next_at - failure.at).total_seconds() - wait) < 1.0


def assert_mentions_only(body: dict[str, Any], user_id: int) -> None:
    mentions = body["allowed_mentions"]
    assert (mentions["parse"], mentions["users"]) == ([], [user_id])


def channel_post(world: World, channel_id: int) -> Any:
    [post] = world.discord.requests_to("POST", rf"/channels/{channel_id}/messages")
    assert post.bot_auth
    return post


@pytest.mark.world(run_seconds=1.0)
async def test_the_channel_announcement_attaches_the_video_mentions_only_its_owner_and_carries_the_nonce(
    world: World,
) -> None:
    async with world.running():
        job = await world.job_for(await world.animate("vidu"))
        world.discord.advance(15 * 60 + 1)
        done = await world.finished(job.id)
    post = channel_post(world, done.channel_id)
    assert post.json["content"].startswith(f"<@{done.user_id}> your video from job {done.id} is ready")
    assert_mentions_only(post.json, done.user_id)
    assert (post.json["nonce"], post.json["enforce_nonce"]) == (done.key[:25], True)
    # The card still shows the job, so the announcement carries neither a copy of it nor buttons.
    assert not post.json.get("embeds")
    assert not post.json.get("components")
    [video] = post.files
    assert video.filename == f"job-{done.id}.mp4"
    assert video.data == world.discord.message(announcements(world, done)[0].id).file(video.filename)  # type: ignore[union-attr]


@pytest.mark.world(run_seconds=3.0)
async def test_with_its_card_deleted_the_channel_announcement_carries_the_final_card_and_its_buttons(
    world: World,
) -> None:
    async with world.running():
        interaction = await world.animate("hidream")
        job = await world.job_for(interaction)
        card = world.discord.original(interaction)
        assert card is not None
        world.discord.advance(15 * 60 + 1)
        await world.discord.wait_until(lambda: card.edits >= 2)
        card.deleted = True
        done = await world.finished(job.id)
    post = channel_post(world, done.channel_id)
    [embed] = post.json["embeds"]
    assert embed["footer"]["text"] == f"Job {done.id}"
    assert "Done" in embed["fields"][0]["value"]
    [announcement] = announcements(world, done)
    assert announcement.custom_ids() == [f"job:reroll:{done.id}", f"job:stylize:{done.id}"]


class HandClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_messages_older_than_an_hour_get_the_tighter_channel_budget() -> None:
    clock = HandClock()
    budget = ChannelBudget(per_window=4, window=5.0, old_per_window=2, old_window=6.0, clock=clock)
    for _ in range(2):
        assert budget.wait_time(1, old=True) == 0.0
        budget.take(1, old=True)
    assert budget.wait_time(1, old=True) == 6.0
    assert budget.wait_time(1, old=False) == 0.0
    clock.now += 6.0
    assert budget.wait_time(1, old=True) == 0.0


async def test_acquire_waits_out_even_a_short_remainder_of_the_window() -> None:
    clock = HandClock()
    budget = ChannelBudget(per_window=1, window=0.5, clock=clock)
    await budget.acquire(1, old=False)
    second = asyncio.create_task(budget.acquire(1, old=False))
    for _ in range(3):
        await asyncio.sleep(0)
    assert not second.done()
    clock.now += 0.5
    await asyncio.wait_for(second, timeout=5)
    assert budget.wait_time(1, old=False) == 0.5


@pytest.mark.parametrize(("processes", "new_allowance", "old_allowance"), [(1, 4, 2), (2, 2, 1), (4, 1, 1)])
def test_processes_sharing_the_token_split_each_channels_allowance(
    processes: int, new_allowance: int, old_allowance: int
) -> None:
    clock = HandClock()
    budget = ChannelBudget(per_window=4, window=5.0, old_per_window=2, old_window=6.0, clock=clock)
    budget.share(processes)
    for old, allowance in ((False, new_allowance), (True, old_allowance)):
        for _ in range(allowance):
            assert budget.wait_time(7, old=old) == 0.0
            budget.take(7, old=old)
        assert budget.wait_time(7, old=old) > 0


@pytest.mark.world(run_seconds=60)
async def test_a_snapshot_older_than_another_process_ending_the_job_never_redraws_its_card(world: World) -> None:
    async with world.running() as bot:
        interaction = await world.animate("vidu")
        job = await world.job_for(interaction)
        running = await world.reaches(job.id, lambda seen: seen.state is JobState.RUNNING and seen.task_id is not None)
        # Another process ends the job through its own connection to the ledger, and announces it...
        other = await Store.open(world.tmp / "data" / "bot.db")
        try:
            await other.transition(job.id, JobState.CANCELLED, error_reason="Cancelled by its owner.")
        finally:
            await other.close()
        await world.finished(job.id)
        assert job.message_id is not None
        card = world.discord.message(job.message_id)
        assert card is not None
        final = list(card.embeds)
        # ...while this process still holds the running state it polled a moment before.
        await bot.presenter.on_job(running)
        async with asyncio.timeout(15):
            while job.id in bot.presenter._dirty or bot.presenter._cards[job.id].busy:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        assert card.embeds == final
