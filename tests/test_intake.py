"""A command acknowledged with "thinking…" is in the ledger before Discord hears it: a bot killed between
the acknowledgement and the job finishes it after a restart, or tells the member nothing was billed."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.jobs.inputs import InputStore
from bot.store import Intake, IntakeKind, JobState, Store, intake_job_key
from simulators.fake_discord import FakeDiscord
from simulators.fake_providers import FakePixVerse
from tests.conftest import image_bytes
from tests.discord_world import (
    World,
    answer,
    click,
    world,
)
from tests.test_shutdown import KEY, start_bot

__all__ = ["world"]


@pytest.fixture
async def fakes() -> AsyncIterator[tuple[FakeDiscord, FakePixVerse]]:
    async with FakeDiscord() as discord_fake, FakePixVerse(api_key=KEY, run_seconds=0.5) as pixverse:
        yield discord_fake, pixverse


async def kill(process: asyncio.subprocess.Process) -> None:
    process.send_signal(signal.SIGKILL)
    await asyncio.wait_for(process.communicate(), timeout=20)


async def stop(process: asyncio.subprocess.Process) -> bytes:
    process.send_signal(signal.SIGTERM)
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
    return stderr


async def killed_while_reading(discord_fake: FakeDiscord, pixverse: FakePixVerse, tmp_path: Path) -> Any:
    """/animate pixverse, acknowledged; the bot is killed while it downloads the attachment."""
    process = await start_bot(discord_fake, pixverse, tmp_path)
    discord_fake.hold_cdn()
    attachment = discord_fake.add_attachment("cat.png", image_bytes(), "image/png")
    interaction = await discord_fake.push_interaction(
        discord_fake.slash("animate", subcommand="pixverse", options={"prompt": "x"}, attachments={"image": attachment})
    )
    await discord_fake.wait_until(
        lambda: bool(discord_fake.callbacks(interaction)) and bool(discord_fake.cdn_requests), timeout=15
    )
    assert discord_fake.callbacks(interaction)[0].type == 5  # "thinking…"
    await kill(process)
    discord_fake.release_cdn()
    return interaction


def original(discord_fake: FakeDiscord, interaction: Any) -> Any:
    """The interaction's response message (its card, once there is one), or None before it exists."""
    record = discord_fake.interaction(interaction)
    return None if record.original_id is None else discord_fake.message(record.original_id)


def says(discord_fake: FakeDiscord, interaction: Any, words: str) -> bool:
    message = original(discord_fake, interaction)
    return message is not None and words in message.content + str(message.embeds)


def videos(discord_fake: FakeDiscord) -> list[Any]:
    """The announcements of finished jobs (they mention their owner)."""
    return [m for m in discord_fake.messages(discord_fake.channel.id) if m.content.startswith("<@")]


def custom_ids(message: Any) -> list[str]:
    return [item["custom_id"] for row in message.components for item in row["components"] if "custom_id" in item]


@pytest.mark.subprocess
async def test_killed_before_the_bytes_were_read_the_member_is_told_and_retry_makes_the_job(
    fakes: tuple[FakeDiscord, FakePixVerse], tmp_path: Path
) -> None:
    discord_fake, pixverse = fakes
    interaction = await killed_while_reading(discord_fake, pixverse, tmp_path)

    process = await start_bot(discord_fake, pixverse, tmp_path)
    try:
        await discord_fake.wait_until(lambda: says(discord_fake, interaction, "restarted"), timeout=20)
        told = original(discord_fake, interaction)
        assert "nothing was billed" in told.content
        assert custom_ids(told) == [f"intake:{interaction.id}"]
        assert pixverse.tasks == {}

        retry = await discord_fake.push_interaction(discord_fake.click(f"intake:{interaction.id}"))
        await discord_fake.wait_until(lambda: says(discord_fake, retry, "Done"), timeout=30)
        await discord_fake.wait_until(lambda: len(videos(discord_fake)) == 1, timeout=15)
        assert len(pixverse.tasks) == 1
    finally:
        stderr = await stop(process)
    assert b"Traceback" not in stderr


@pytest.mark.subprocess
async def test_killed_after_the_bytes_were_kept_the_restart_makes_the_job_in_the_same_card(
    fakes: tuple[FakeDiscord, FakePixVerse], tmp_path: Path
) -> None:
    discord_fake, pixverse = fakes
    interaction = await killed_while_reading(discord_fake, pixverse, tmp_path)
    # The state a kill just after the download leaves: the bytes on disk, named in the intake record.
    store = await Store.open(tmp_path / "bot.db")
    try:
        name = InputStore(tmp_path / "inputs").keep_upload(interaction.id, image_bytes())
        await store.intake_upload_kept(interaction.id, name)
    finally:
        await store.close()

    process = await start_bot(discord_fake, pixverse, tmp_path)
    try:
        await discord_fake.wait_until(lambda: says(discord_fake, interaction, "Done"), timeout=30)
        await discord_fake.wait_until(lambda: len(videos(discord_fake)) == 1, timeout=15)
    finally:
        await stop(process)

    store = await Store.open(tmp_path / "bot.db")
    try:
        [job] = await store.jobs_of_user(discord_fake.user.id)
        assert job.key == intake_job_key(interaction.id)
        assert job.state is JobState.SUCCEEDED
        assert job.delivered
        assert job.message_id == discord_fake.interaction(interaction).original_id
        assert await store.get_intake(interaction.id) is None
    finally:
        await store.close()
    assert len(pixverse.tasks) == 1
    assert len(videos(discord_fake)) == 1


# In one process, with the fake Discord's clock.


async def test_a_job_made_from_a_command_takes_its_key_from_the_interaction(world: World) -> None:
    async with world.running():
        interaction = await world.animate("vidu")
        job = await world.job_for(interaction)
        assert job.key == intake_job_key(interaction.id)
        assert await world.store.get_intake(interaction.id) is None


async def test_refused_commands_leave_no_intake(world: World) -> None:
    async with world.running():
        bad_option = await world.animate("vidu", duration=99)
        not_an_image = await world.animate("vidu", image=b"this is not a picture")
        await world.discord.wait_until(
            lambda: bool(answer(world, bad_option)) and bool(answer(world, not_an_image)), timeout=10
        )
        assert "duration" in answer(world, bad_option)
        assert "image" in answer(world, not_an_image).lower()
        for refused in (bad_option, not_an_image):
            assert await world.store.get_intake(refused.id) is None
        assert world.providers["vidu"].tasks == {}
        assert [path.name for path in world.tmp.rglob("upload-*")] == []


async def closed_intake(world: World, interaction_id: int) -> Intake:
    async with asyncio.timeout(10):
        while True:
            intake = await world.store.get_intake(interaction_id)
            if intake is not None and intake.closed_at is not None:
                return intake
            await asyncio.sleep(0.02)


async def test_an_intake_whose_token_ran_out_during_the_downtime_is_closed_and_nothing_is_made(
    world: World,
) -> None:
    async with world.running():
        world.discord.hold_cdn()
        interaction = await world.animate("pixverse")
        await world.discord.wait_until(lambda: bool(world.discord.cdn_requests), timeout=10)
        intake = await world.store.get_intake(interaction.id)
        assert intake is not None
        assert intake.kind is IntakeKind.COMMAND
    world.discord.clock.advance(16 * 60)
    world.discord.release_cdn()

    async with world.running():
        closed = await closed_intake(world, interaction.id)
        assert closed.outcome == "expired"
        assert await world.store.jobs_of_user(world.discord.user.id) == []
    assert world.providers["pixverse"].tasks == {}


async def test_a_reroll_click_is_recorded_and_its_job_keyed_by_the_click(world: World) -> None:
    async with world.running():
        first = await world.job_for(await world.animate("vidu"))
        await world.finished(first.id)
        retry = await click(world, f"job:reroll:{first.id}")
        again = await world.job_for(retry)
        assert again.key == intake_job_key(retry.id)
        assert again.parent_id == first.id
        assert (await world.finished(again.id)).state is JobState.SUCCEEDED
        assert await world.store.get_intake(retry.id) is None


@pytest.mark.subprocess
async def test_a_sigterm_lets_a_command_in_flight_make_its_job_and_stops_cleanly(
    fakes: tuple[FakeDiscord, FakePixVerse], tmp_path: Path
) -> None:
    discord_fake, pixverse = fakes
    process = await start_bot(discord_fake, pixverse, tmp_path)
    discord_fake.hold_cdn()
    attachment = discord_fake.add_attachment("cat.png", image_bytes(), "image/png")
    interaction = await discord_fake.push_interaction(
        discord_fake.slash("animate", subcommand="pixverse", options={"prompt": "x"}, attachments={"image": attachment})
    )
    await discord_fake.wait_until(lambda: bool(discord_fake.cdn_requests), timeout=15)

    process.send_signal(signal.SIGTERM)
    discord_fake.release_cdn()
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=60)

    assert process.returncode == 0, stderr.decode()
    assert b"Traceback" not in stderr
    store = await Store.open(tmp_path / "bot.db")
    try:
        [job] = await store.jobs_of_user(discord_fake.user.id)
        assert job.key == intake_job_key(interaction.id)
        assert await store.get_intake(interaction.id) is None
    finally:
        await store.close()
