"""Announcing finished jobs: a claimed step of the ledger's own, exactly once across crashes and races."""

from __future__ import annotations

import sqlite3
from contextlib import closing

import pytest

from bot.store import JobState
from tests.conftest import image_bytes
from tests.discord_world import REQUIRED, World, announcements, world
from tests.fakes import FakeClock, build_mp4

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
    assert len(announcements(world, done)) == 1


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
