"""The bot against a Discord and providers that behave as the real ones do on a bad day: tokens that die
early, small upload limits, expired video links, network failures and over-long link buttons."""

from __future__ import annotations

import io
import re
from typing import Any

import pytest
from PIL import Image

from bot.store import JobState
from simulators.fake_discord import FakeMessage
from tests.discord_world import World, announcements, click, status_of, world

__all__ = ["world"]


def photo_like_png(width: int = 800, height: int = 600) -> bytes:
    """A PNG of several hundred KB (its noise defeats PNG's compression) that still shrinks to a small JPEG."""
    noise = Image.effect_noise((width, height), 40).convert("L")
    ramp = Image.linear_gradient("L").resize((width, height))
    image = Image.merge("RGB", (ramp, noise, ramp.rotate(90).resize((width, height))))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def link_urls(message: FakeMessage) -> list[str]:
    found: list[str] = []

    def walk(items: list[dict[str, Any]]) -> None:
        for item in items:
            if isinstance(item.get("url"), str):
                found.append(item["url"])
            walk(item.get("components", []))

    walk(message.components)
    return found


async def animate_with_limit(world: World, provider: str, image: bytes, limit: int) -> Any:
    attachment = world.discord.add_attachment("photo.png", image, "image/png")
    payload = world.discord.slash(
        "animate",
        subcommand=provider,
        options={"prompt": "a wave"},
        attachments={"image": attachment},
        attachment_size_limit=limit,
    )
    return await world.discord.push_interaction(payload)


# §1: an interaction token that stops working.


@pytest.mark.world(run_seconds=4.0)
@pytest.mark.parametrize(("status", "code"), [(401, 50027), (404, 10015)])
async def test_a_token_that_dies_mid_job_costs_one_failed_request(world: World, status: int, code: int) -> None:
    async with world.running():
        interaction = await world.animate("pixverse")
        job = await world.job_for(interaction)
        await world.reaches(job.id, lambda job: job.state is JobState.RUNNING)
        world.discord.revoke_token(interaction, status=status, after=5)
        world.discord.advance(5)
        done = await world.finished(job.id, within=30)

        card = world.discord.original(interaction)
        assert card is not None
        assert "Done" in status_of(card)
        assert "job:cancel:" not in " ".join(card.custom_ids())
        assert "job:reroll:" in " ".join(card.custom_ids())
        [announcement] = announcements(world, done)
        assert announcement.content.startswith(f"<@{done.user_id}> your video from job {done.id} is ready")
        assert [request.code for request in world.discord.failed_requests()] == [code]
        assert world.discord.failed_requests(interaction) == world.discord.failed_requests()
        revoked_at = world.discord.interaction(interaction).revoked_at
        assert revoked_at is not None
        through_bot = world.discord.requests_to("PATCH", rf"/channels/{done.channel_id}/messages/{card.id}")
        assert len(through_bot) >= 2
        assert all(request.bot_auth and request.status == 200 for request in through_bot)
        late_webhook = [
            request for request in world.discord.requests_to(None, r"/webhooks/.*") if request.at >= revoked_at
        ]
        assert len(late_webhook) == 1
        assert done.token_dead_at is not None
        assert done.interaction_token is None


# §2: the card's thumbnail.


async def test_the_thumbnail_is_a_small_copy_that_fits_a_small_upload_limit(world: World) -> None:
    image = photo_like_png()
    limit = 50 * 1024
    async with world.running():
        interaction = await animate_with_limit(world, "pixverse", image, limit)
        job = await world.job_for(interaction)
        done = await world.finished(job.id)
    assert done.state is JobState.SUCCEEDED
    assert int(done.media["size"]) > limit
    card = world.discord.original(interaction)
    assert card is not None
    assert "Done" in status_of(card)
    [thumbnail] = card.attachments
    assert thumbnail.filename == "input.jpg"
    assert len(thumbnail.data) <= limit
    with Image.open(io.BytesIO(thumbnail.data)) as shown:
        assert shown.format == "JPEG"
        assert max(shown.size) == 320
    assert card.embeds[0]["thumbnail"]["url"] == "attachment://input.jpg"
    assert not [request for request in world.discord.failed_requests() if request.status == 413]


async def test_no_thumbnail_when_even_the_small_copy_is_over_the_limit(world: World) -> None:
    async with world.running():
        interaction = await animate_with_limit(world, "vidu", photo_like_png(), 1024)
        job = await world.job_for(interaction)
        await world.finished(job.id)
    card = world.discord.original(interaction)
    assert card is not None
    assert "Done" in status_of(card)
    assert card.attachments == []
    assert "thumbnail" not in card.embeds[0]
    assert world.discord.failed_requests() == []


# §8: messages that are true.


async def test_an_expired_video_link_is_announced_as_such_with_a_retry(world: World) -> None:
    world.providers["vidu"].media_expired = True
    async with world.running():
        interaction = await world.animate("vidu")
        job = await world.job_for(interaction)
        done = await world.finished(job.id)
        [announcement] = announcements(world, done)
        assert "too large" not in announcement.content
        assert "could not be fetched" in announcement.content
        assert not announcement.attachments
        assert f"job:retry:{done.id}" in announcement.custom_ids()

        world.providers["vidu"].media_expired = False
        await click(world, f"job:retry:{done.id}")
        again = await world.reaches(done.id + 1, lambda job: job is not None and job.parent_id == done.id)
    assert again.params == done.params


async def test_a_card_that_fails_to_open_tells_the_user_the_job_exists(world: World) -> None:
    world.discord.drop_connection("PATCH", r"^/webhooks/\d+/[^/]+/messages/\d+$")
    async with world.running():
        interaction = await world.animate("hidream")
        job = await world.job_for(interaction)
        done = await world.finished(job.id)
        card = world.discord.original(interaction)
        assert card is not None
        told = [str(snapshot["content"]) for snapshot in card.history] + [card.content]
        notes = [text for text in told if f"Job {job.id}" in text]
        assert notes
        assert all("try again" not in text.lower() for text in told)
        assert not card.deleted
        assert "Done" in status_of(card)
        assert card.content == ""
        assert world.discord.requests_to("DELETE", r"/webhooks/.*") == []
        assert all("try again" not in message.content.lower() for message in world.discord.followups(interaction))
        assert [job.id for job in await world.store.jobs_of_user(world.discord.user.id)] == [done.id]
    assert done.state is JobState.SUCCEEDED


async def test_a_long_signed_video_url_goes_into_the_text_not_a_button(world: World) -> None:
    world.providers["pixverse"].media_query = "?OSSAccessKeyId=x&Expires=1&Signature=" + "s" * 600
    async with world.running():
        interaction = await world.animate("pixverse")
        job = await world.job_for(interaction)
        done = await world.finished(job.id)
        card = world.discord.original(interaction)
    assert done.video_url is not None
    assert len(done.video_url) > 512
    assert card is not None
    assert "Done" in status_of(card)
    assert link_urls(card) == []
    assert done.video_url in card.content
    assert world.discord.failed_requests() == []
    assert re.search(r"job:reroll:\d+", " ".join(card.custom_ids()))
