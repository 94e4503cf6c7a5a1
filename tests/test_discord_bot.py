"""The bot end to end: the real discord.py client against the fake Discord and the fake providers."""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
from typing import Any

import pytest

from bot.health import probe_url
from bot.store import JobState
from simulators.fake_providers import Outcome, build_mp4
from tests.conftest import image_bytes
from tests.discord_world import KEYS, World, announcements, answer, click, status_of, world

__all__ = ["world"]


async def test_commands_follow_the_contract_and_the_capability_tables(world: World) -> None:
    async with world.running():
        guild = world.discord.guild
        names = sorted(command["name"] for command in world.discord.commands(guild))
        assert names == ["animate", "jobs", "quota", "settings", "status", "stylize"]
        animate = world.discord.command("animate", guild)
        subcommands = {option["name"]: option for option in animate["options"]}
        assert sorted(subcommands) == ["hidream", "pixverse", "vidu"]
        pixverse = {option["name"]: option for option in subcommands["pixverse"]["options"]}
        assert list(pixverse) == [
            "image",
            "prompt",
            "model",
            "duration",
            "quality",
            "motion_mode",
            "camera_movement",
            "style",
            "seed",
            "negative_prompt",
            "audio",
            "multi_clip",
            "thinking",
            "sound_effect",
            "lip_sync_text",
            "lip_sync_voice",
        ]
        assert [choice["value"] for choice in pixverse["model"]["choices"]] == [
            "v3.5",
            "v4",
            "v4.5",
            "v5",
            "v5.5",
            "v5.6",
            "v6",
            "c1",
        ]
        assert (pixverse["duration"]["min_value"], pixverse["duration"]["max_value"]) == (1, 15)
        assert pixverse["prompt"]["max_length"] == 2048
        assert all(option["description"] for option in pixverse.values())
        hidream = {option["name"]: option for option in subcommands["hidream"]["options"]}
        assert list(hidream) == [
            "image",
            "prompt",
            "negative_prompt",
            "resolution",
            "camera_horizontal",
            "camera_vertical",
            "camera_depth",
            "motion_strength",
        ]
        assert (hidream["camera_depth"]["min_value"], hidream["camera_depth"]["max_value"]) == (-5, 5)
        vidu = [option["name"] for option in subcommands["vidu"]["options"]]
        assert vidu == [
            "image",
            "prompt",
            "model",
            "duration",
            "resolution",
            "movement_amplitude",
            "seed",
            "audio",
            "voice_id",
            "off_peak",
            "recommend_prompt",
        ]
        stylize = [option["name"] for option in world.discord.command("stylize", guild)["options"]]
        assert stylize == ["video", "style", "prompt"]
        jobs = [option["name"] for option in world.discord.command("jobs", guild)["options"]]
        assert jobs == ["list", "show", "cancel"]


@pytest.mark.world(disabled=("pixverse", "hidream"))
async def test_a_provider_without_credentials_registers_nothing(world: World) -> None:
    async with world.running():
        guild = world.discord.guild
        assert sorted(command["name"] for command in world.discord.commands(guild)) == [
            "animate",
            "jobs",
            "quota",
            "settings",
            "status",
        ]
        animate = world.discord.command("animate", guild)
        assert [option["name"] for option in animate["options"]] == ["vidu"]


@pytest.mark.parametrize("provider", ["hidream", "pixverse", "vidu"])
async def test_animate_from_command_to_delivered_video(world: World, provider: str) -> None:
    async with world.running():
        interaction = await world.animate(provider)
        job = await world.job_for(interaction)
        done = await world.finished(job.id)

        assert done.state is JobState.SUCCEEDED
        record = world.discord.interaction(interaction)
        assert record.callbacks[0].type == 5  # deferred, public
        card = world.discord.original(interaction)
        assert card is not None
        assert not card.ephemeral
        assert "Done" in status_of(card)
        assert card.embeds[0]["thumbnail"]["url"].startswith("attachment://input")
        assert [attachment.filename for attachment in card.attachments] == ["input.jpg"]
        assert "job:reroll:" in " ".join(card.custom_ids())
        [announcement] = announcements(world, done)
        assert announcement.content == f"<@{done.user_id}> your video from job {done.id} is ready."
        [video] = announcement.attachments
        assert video.filename == f"job-{done.id}.mp4"
        assert video.data[4:8] == b"ftyp"
        assert len(world.providers[provider].tasks) == 1


async def test_stylize_from_command_to_delivered_video(world: World) -> None:
    async with world.running():
        attachment = world.discord.add_attachment("clip.mp4", build_mp4(duration=2.0), "video/mp4")
        payload = world.discord.slash("stylize", options={"style": "ink_wash"}, attachments={"video": attachment})
        interaction = await world.discord.push_interaction(payload)
        job = await world.job_for(interaction)
        done = await world.finished(job.id)
    assert (done.state, done.operation, done.params) == (JobState.SUCCEEDED, "stylize", {"style": "ink_wash"})
    assert world.providers["hidream"].route_count("submit_video_edit") == 1


@pytest.mark.parametrize(
    ("provider", "options", "expected"),
    [
        ("pixverse", {"model": "v5", "duration": 10}, "PixVerse v5 makes videos of 5 or 8 seconds; change `duration`."),
        ("vidu", {"model": "viduq2", "movement_amplitude": "large"}, "Vidu viduq2 ignores `movement_amplitude`"),
        ("vidu", {"audio": True, "off_peak": True}, "Vidu cannot make audio in off-peak mode"),
    ],
)
async def test_invalid_options_get_one_ephemeral_answer_and_nothing_is_created(
    world: World, provider: str, options: dict[str, Any], expected: str
) -> None:
    async with world.running():
        interaction = await world.animate(provider, **options)
        await world.discord.wait_until(lambda: world.discord.interaction(interaction).acknowledged)
        [callback] = world.discord.callbacks(interaction)
        assert callback.type == 4
        assert callback.data["flags"] & 64
        assert expected in callback.data["content"]
        assert await world.store.jobs_of_user(world.discord.user.id) == []
    assert not world.providers[provider].requests


async def test_an_attachment_that_is_not_an_image_is_refused_at_once(world: World) -> None:
    async with world.running():
        attachment = world.discord.add_attachment("notes.txt", b"hello", "text/plain")
        payload = world.discord.slash(
            "animate", subcommand="vidu", options={"prompt": "x"}, attachments={"image": attachment}
        )
        interaction = await world.discord.push_interaction(payload)
        await world.discord.wait_until(lambda: world.discord.interaction(interaction).acknowledged)
        [callback] = world.discord.callbacks(interaction)
        assert callback.type == 4
        assert callback.data["flags"] & 64
        assert callback.data["content"] == "`notes.txt` is not an image; attach a PNG, JPEG or WebP picture."
        assert not world.discord.cdn_requests


async def test_an_image_the_provider_cannot_take_is_explained_privately(world: World) -> None:
    async with world.running():
        interaction = await world.animate("vidu", image=image_bytes(1000, 200))
        await world.discord.wait_until(lambda: bool(world.discord.followups(interaction)), timeout=10)
        [followup] = world.discord.followups(interaction)
        assert followup.ephemeral
        assert "5:1" in followup.content
        assert "crop" in followup.content
        original = world.discord.original(interaction)
        assert original is None or original.deleted
        assert await world.store.jobs_of_user(world.discord.user.id) == []
    assert not world.providers["vidu"].tasks


@pytest.mark.world(run_seconds=4.0)
async def test_progress_edits_are_spaced_and_only_on_change(world: World) -> None:
    async with world.running():
        interaction = await world.animate("hidream")
        job = await world.job_for(interaction)
        await world.finished(job.id)
        card = world.discord.original(interaction)
        assert card is not None
        # Each snapshot is the card as it was, stamped with when it got that way; the first is the deferral.
        edits = [snapshot["at"] for snapshot in card.history[1:]]
        edits.append(card.edited_at)
        gaps = [later - earlier for earlier, later in itertools.pairwise(edits)]
        progress_lines = [
            str(snapshot["embeds"][0]["fields"][0]["value"]) for snapshot in card.history if snapshot.get("embeds")
        ]
    assert any("▰" in line for line in progress_lines)
    assert len(edits) >= 3
    # Every progress edit keeps PROGRESS_EDIT_SECONDS apart; only the final card may follow sooner.
    assert all(gap >= 0.95 for gap in gaps[:-1])
    assert len(progress_lines) == len(set(progress_lines))


@pytest.mark.world(run_seconds=2.0)
async def test_the_card_keeps_updating_after_the_interaction_token_expires(world: World) -> None:
    async with world.running():
        interaction = await world.animate("vidu")
        job = await world.job_for(interaction)
        # The first render goes out with the token, which lives then; only after it does the clock jump.
        rendered = rf"/webhooks/\d+/[^/]+/messages/{job.message_id}"
        await world.discord.wait_until(lambda: bool(world.discord.requests_to("PATCH", rendered)))
        world.discord.advance(15 * 60 + 1)
        done = await world.finished(job.id)
        card = world.discord.original(interaction)
        assert card is not None
        assert "Done" in status_of(card)
        edits = world.discord.requests_to("PATCH", rf"/channels/{job.channel_id}/messages/{card.id}")
        assert edits
        assert all(request.bot_auth for request in edits)
        [announcement] = announcements(world, done)
        posted = world.discord.requests_to("POST", rf"/channels/{job.channel_id}/messages")
        assert len(posted) == 1
        assert posted[0].bot_auth
        assert announcement.nonce is not None
        late = [
            request
            for request in world.discord.requests_to(None, r"/webhooks/.*")
            if request.at > world.discord.interaction(interaction).pushed_at + 15 * 60
        ]
        assert late == []
        assert world.discord.rate_limited == []


@pytest.mark.world(run_seconds=1.5)
async def test_a_restart_in_the_middle_of_a_job_delivers_exactly_once(world: World) -> None:
    async with world.running():
        interaction = await world.animate("pixverse")
        job = await world.job_for(interaction)
        await world.reaches(job.id, lambda job: job.state is JobState.RUNNING)
    async with world.running():
        done = await world.finished(job.id)
        await asyncio.sleep(0.3)
        assert len(announcements(world, done)) == 1
        card = world.discord.original(interaction)
        assert card is not None
        assert "Done" in status_of(card)
    assert len(world.providers["pixverse"].tasks) == 1


@pytest.mark.world(run_seconds=1.0, settings={"max_active_jobs_per_user": 0})
async def test_fifty_jobs_finishing_together_in_one_channel_are_delivered_fast_without_a_429(world: World) -> None:
    async with world.running():
        interactions = [await world.animate("pixverse") for _ in range(50)]
        jobs = [await world.job_for(interaction, within=30) for interaction in interactions]
        done = [await world.finished(job.id, within=60) for job in jobs]
        assert {job.state for job in done} == {JobState.SUCCEEDED}
        delays = [(job.delivered_at - job.finished_at).total_seconds() for job in done]  # type: ignore[operator]
        assert max(delays) <= 5.0
        assert world.discord.rate_limited == []
        assert sum(len(announcements(world, job)) for job in done) == 50


@pytest.mark.world(run_seconds=3.0)
async def test_a_deleted_card_does_not_stop_the_job(world: World) -> None:
    async with world.running():
        interaction = await world.animate("hidream")
        job = await world.job_for(interaction)
        card = world.discord.original(interaction)
        assert card is not None
        await world.discord.wait_until(lambda: card.edits >= 1)
        card.deleted = True
        done = await world.finished(job.id)
        [announcement] = announcements(world, done)
        assert announcement.embeds
        assert announcement.attachments[0].filename == f"job-{done.id}.mp4"
    # Once an edit finds the card gone, the presenter stops editing it.
    edits = world.discord.requests_to("PATCH", rf"/webhooks/\d+/[^/]+/messages/{card.id}")
    assert [request.status for request in edits if request.status >= 400] == [404]


async def test_the_first_render_turns_the_deferral_into_the_card_with_a_thumbnail_and_cancel(world: World) -> None:
    async with world.running():
        job = await world.job_for(await world.animate("pixverse"))
        # The deferral is the card's message from the start; the first render edits it a moment later.
        card = rf"/webhooks/\d+/[^/]+/messages/{job.message_id}"
        await world.discord.wait_until(lambda: bool(world.discord.requests_to("PATCH", card)))
        first = world.discord.requests_to("PATCH", card)[0]
    [embed] = first.json["embeds"]
    assert embed["footer"]["text"] == f"Job {job.id}"
    assert embed["thumbnail"]["url"] == "attachment://input.jpg"
    assert [file.filename for file in first.files] == ["input.jpg"]
    assert f"job:cancel:{job.id}" in str(first.json["components"])


@pytest.mark.world(run_seconds=2.0)
async def test_a_token_discord_refuses_early_is_never_used_again_and_the_card_still_ends_done(world: World) -> None:
    async with world.running():
        interaction = await world.animate("vidu")
        job = await world.job_for(interaction)
        await world.reaches(job.id, lambda job: job.task_id is not None)
        world.discord.revoke_token(interaction)
        done = await world.finished(job.id)
    assert done.token_dead_at is not None
    card = world.discord.original(interaction)
    assert card is not None
    assert "Done" in status_of(card)
    refused = [request for request in world.discord.requests_to(None, r"/webhooks/.*") if request.status == 401]
    assert len(refused) == 1


@pytest.mark.world(run_seconds=1.0)
async def test_a_forbidden_channel_falls_back_to_a_dm(world: World) -> None:
    async with world.running():
        interaction = await world.animate("pixverse")
        job = await world.job_for(interaction)
        world.discord.advance(15 * 60 + 1)
        world.discord.forbid(job.channel_id)
        done = await world.finished(job.id)
        dm = world.discord.dm_channel(done.user_id)
        [message] = world.discord.messages(dm)
        assert message.content.startswith(f"<@{done.user_id}> your video")


@pytest.mark.world(run_seconds=30)
async def test_cancel_button_for_the_owner_and_not_for_others(world: World) -> None:
    async with world.running():
        job = await world.job_for(await world.animate("hidream"))
        await world.reaches(job.id, lambda job: job.state is JobState.RUNNING)

        stranger = world.discord.add_user("mallory")
        world.discord.add_member(world.discord.guild, stranger)
        refused = await click(world, f"job:cancel:{job.id}", user=stranger)
        await world.discord.wait_until(lambda: world.discord.interaction(refused).acknowledged)
        assert "Only the person who started job" in answer(world, refused)
        assert (await world.store.get_job(job.id)).state is JobState.RUNNING

        accepted = await click(world, f"job:cancel:{job.id}")
        done = await world.finished(job.id)
        assert done.state is JobState.CANCELLED
        assert "HiDream cannot stop a job once started" in answer(world, accepted)
        card = world.discord.message(done.message_id or 0)
        assert card is not None
        assert "Cancelled" in status_of(card)
        assert f"job:retry:{done.id}" in card.custom_ids()


async def test_retry_a_failed_job_with_the_same_settings(world: World) -> None:
    world.providers["vidu"].outcomes.append(Outcome("failed"))
    async with world.running():
        failed = await world.finished((await world.job_for(await world.animate("vidu", seed=7))).id)
        assert failed.state is JobState.FAILED
        retry = await click(world, f"job:retry:{failed.id}")
        again = await world.finished((await world.job_for(retry)).id)
    assert again.state is JobState.SUCCEEDED
    assert again.parent_id == failed.id
    assert again.params == failed.params
    assert again.id != failed.id


async def test_reroll_and_stylize_a_finished_job_also_after_a_restart(world: World) -> None:
    async with world.running():
        first = await world.finished((await world.job_for(await world.animate("pixverse", seed=11))).id)
    async with world.running():
        reroll = await click(world, f"job:reroll:{first.id}")
        rerolled = await world.finished((await world.job_for(reroll)).id)
        assert rerolled.state is JobState.SUCCEEDED
        assert rerolled.params["seed"] != 11
        assert {k: v for k, v in rerolled.params.items() if k != "seed"} == {
            k: v for k, v in first.params.items() if k != "seed"
        }

        offer = await click(world, f"job:stylize:{first.id}")
        await world.discord.wait_until(lambda: world.discord.interaction(offer).acknowledged)
        menu = world.discord.original(offer)
        assert menu is not None
        assert menu.ephemeral
        chosen = await world.discord.push_interaction(world.discord.select(f"style:{first.id}", ["watercolor"], menu))
        styled = await world.finished((await world.job_for(chosen)).id)
    assert (styled.state, styled.operation, styled.params) == (JobState.SUCCEEDED, "stylize", {"style": "watercolor"})
    assert styled.parent_id == first.id


async def test_jobs_list_show_and_cancel(world: World) -> None:
    async with world.running():
        done = await world.finished((await world.job_for(await world.animate("pixverse"))).id)
        listing = await world.discord.push_interaction(world.discord.slash("jobs", subcommand="list"))
        await world.discord.wait_until(lambda: world.discord.interaction(listing).acknowledged)
        [reply] = world.discord.callbacks(listing)
        assert reply.data["flags"] & 64
        assert f"`{done.id}`" in reply.data["embeds"][0]["description"]
        assert "[video](" in reply.data["embeds"][0]["description"]

        shown = await world.discord.push_interaction(
            world.discord.slash("jobs", subcommand="show", options={"job_id": done.id})
        )
        await world.discord.wait_until(lambda: world.discord.interaction(shown).acknowledged)
        [card] = world.discord.callbacks(shown)
        assert card.data["embeds"][0]["footer"]["text"] == f"Job {done.id}"
        assert "job:reroll" in str(card.data["components"])

        cancel = await world.discord.push_interaction(
            world.discord.slash("jobs", subcommand="cancel", options={"job_id": done.id})
        )
        await world.discord.wait_until(lambda: world.discord.interaction(cancel).acknowledged)
        assert answer(world, cancel) == f"Job {done.id} already ended (succeeded)."

        missing = await world.discord.push_interaction(
            world.discord.slash("jobs", subcommand="show", options={"job_id": 999})
        )
        await world.discord.wait_until(lambda: world.discord.interaction(missing).acknowledged)
        assert answer(world, missing) == "There is no job 999 here; `/jobs list` shows yours."


async def test_an_unexpected_error_gets_an_apology_with_an_error_id(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    # A file where the inputs folder should be: saving the prepared image fails in a way nobody planned for.
    (world.tmp / "data").mkdir()
    (world.tmp / "data" / "inputs").write_text("in the way")
    async with world.running():
        interaction = await world.animate("hidream")
        await world.discord.wait_until(lambda: bool(world.discord.followups(interaction)), timeout=10)
        text = answer(world, interaction)
    match = re.fullmatch(r"Sorry, something went wrong on our side \(error id ([0-9a-f]{8})\)\. .*", text)
    assert match is not None
    logged = [record for record in caplog.records if match.group(1) in record.getMessage()]
    assert logged
    assert logged[0].exc_info is not None


async def test_an_attachment_too_large_to_prepare_is_refused_before_downloading(world: World) -> None:
    async with world.running():
        attachment = world.discord.add_attachment("huge.png", image_bytes(), "image/png")
        attachment["size"] = 80 * 1024 * 1024
        payload = world.discord.slash(
            "animate", subcommand="pixverse", options={"prompt": "x"}, attachments={"image": attachment}
        )
        interaction = await world.discord.push_interaction(payload)
        await world.discord.wait_until(lambda: world.discord.interaction(interaction).acknowledged)
        assert answer(world, interaction) == "`huge.png` is 80 MB; attach an image under 50 MB."
        assert not world.discord.cdn_requests


async def test_a_video_over_the_upload_limit_is_linked_with_a_note(world: World) -> None:
    async with world.running():
        attachment = world.discord.add_attachment("cat.png", image_bytes(), "image/png")
        payload = world.discord.slash(
            "animate",
            subcommand="vidu",
            options={"prompt": "x"},
            attachments={"image": attachment},
            attachment_size_limit=1024,
        )
        job = await world.job_for(await world.discord.push_interaction(payload))
        done = await world.finished(job.id)
        [announcement] = announcements(world, done)
    assert not announcement.attachments
    assert done.video_url is not None
    assert done.video_url in announcement.content
    assert "provider links expire" in announcement.content


async def test_healthz_names_the_failing_part(world: World) -> None:
    url = f"http://127.0.0.1:{world.health_port}/healthz"
    async with world.running() as bot:
        async with world.session.get(url) as response:
            assert (response.status, await response.json()) == (200, {"status": "ok", "failing": []})
        assert await asyncio.to_thread(probe_url, url) == (True, '{"status": "ok", "failing": []}')
        await bot.scheduler.stop()
        async with world.session.get(url) as response:
            assert (response.status, await response.json()) == (503, {"status": "failing", "failing": ["scheduler"]})
        assert await asyncio.to_thread(probe_url, url) == (False, "failing: scheduler")
    assert (await asyncio.to_thread(probe_url, url))[0] is False


async def test_no_key_or_token_reaches_a_log_or_a_message(world: World, caplog: pytest.LogCaptureFixture) -> None:
    # Levels as `python -m bot` sets them at LOG_LEVEL=DEBUG: everything of ours, discord.py from INFO up.
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.INFO, logger="discord")
    world.providers["pixverse"].fail("generate", "echo_key")
    world.providers["vidu"].fail("creations", "echo_key", times=5)
    async with world.running():
        failed = await world.finished((await world.job_for(await world.animate("pixverse"))).id)
        recovered = await world.finished((await world.job_for(await world.animate("vidu"))).id)
        check = await world.discord.push_interaction(world.discord.slash("jobs", subcommand="list"))
        await world.discord.wait_until(lambda: world.discord.interaction(check).acknowledged)
    assert failed.state is JobState.FAILED
    assert "[redacted]" in (failed.error_reason or "")
    assert recovered.state is JobState.SUCCEEDED
    secrets = [*KEYS.values(), world.discord.token]
    secrets += [record.token for record in world.discord.interactions.values()]
    shown = " ".join(
        f"{message.content} {message.embeds}" for message in world.discord.messages(include_ephemeral=True)
    )
    shown += " ".join(
        str(callback.data) for record in world.discord.interactions.values() for callback in record.callbacks
    )
    logged = caplog.text
    assert "job " in logged
    for secret in secrets:
        assert secret not in logged
        assert secret not in shown


@pytest.mark.world(settings={"discord_guild_ids": ()})
async def test_without_guild_ids_commands_sync_globally(world: World) -> None:
    async with world.running():
        assert sorted(command["name"] for command in world.discord.commands()) == [
            "animate",
            "jobs",
            "quota",
            "settings",
            "status",
            "stylize",
        ]
        assert world.discord.commands(world.discord.guild) == []
