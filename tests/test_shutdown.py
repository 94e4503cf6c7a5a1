"""SIGTERM in the middle of a job: the process stops cleanly, the job stays resumable, and a restart
finishes and announces it exactly once."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.store import JobState, Store
from simulators.fake_discord import FakeDiscord
from simulators.fake_providers import FakePixVerse
from tests.conftest import image_bytes

ROOT = Path(__file__).resolve().parent.parent
KEY = "pv-shutdown-key"


@pytest.fixture
async def fakes() -> AsyncIterator[tuple[FakeDiscord, FakePixVerse]]:
    async with FakeDiscord() as discord_fake, FakePixVerse(api_key=KEY, run_seconds=2.0) as pixverse:
        yield discord_fake, pixverse


async def start_bot(discord_fake: FakeDiscord, pixverse: FakePixVerse, tmp: Path) -> asyncio.subprocess.Process:
    env: dict[str, Any] = {
        key: value for key, value in os.environ.items() if not key.endswith(("_API_KEY", "_TOKEN", "_URL"))
    }
    env.update(
        PYTHONPATH=str(ROOT),
        FAKE_DISCORD_API=discord_fake.api_url,
        FAKE_DISCORD_GATEWAY=discord_fake.gateway_url,
        DISCORD_TOKEN=discord_fake.token,
        DISCORD_GUILD_IDS=str(discord_fake.guild.id),
        DATABASE_URL=f"sqlite:///{tmp / 'bot.db'}",
        PIXVERSE_API_KEY=KEY,
        PIXVERSE_BASE_URL=pixverse.base_url,
        POLL_INTERVAL_SECONDS="0.1",
        PROGRESS_EDIT_SECONDS="1",
        HEALTH_PORT="0",
        LOG_LEVEL="INFO",
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.bot_child", cwd=tmp, env=env, stderr=asyncio.subprocess.PIPE
    )
    await discord_fake.wait_until(lambda: len(discord_fake.syncs) >= 1, timeout=30)
    return process


async def test_sigterm_mid_job_then_restart(fakes: tuple[FakeDiscord, FakePixVerse], tmp_path: Path) -> None:
    discord_fake, pixverse = fakes
    process = await start_bot(discord_fake, pixverse, tmp_path)
    attachment = discord_fake.add_attachment("cat.png", image_bytes(), "image/png")
    interaction = await discord_fake.push_interaction(
        discord_fake.slash("animate", subcommand="pixverse", options={"prompt": "x"}, attachments={"image": attachment})
    )
    await discord_fake.wait_until(lambda: bool(pixverse.tasks), timeout=15)

    process.send_signal(signal.SIGTERM)
    assert process.stderr is not None
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=20)
    assert process.returncode == 0, stderr.decode()
    assert b"Traceback" not in stderr

    store = await Store.open(tmp_path / "bot.db")
    try:
        [job] = await store.jobs_of_user(discord_fake.user.id)
        assert job.state is JobState.RUNNING
        assert not job.delivered

        process = await start_bot(discord_fake, pixverse, tmp_path)
        try:
            async with asyncio.timeout(20):
                while not (job := await store.get_job(job.id) or job).delivered:  # noqa: ASYNC110 - another process
                    await asyncio.sleep(0.05)
        finally:
            process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(process.communicate(), timeout=20)
    finally:
        await store.close()
    assert job.state is JobState.SUCCEEDED
    assert len(pixverse.tasks) == 1
    announced = [
        message for message in discord_fake.messages() if re.search(rf"\bjob {job.id} is ready", message.content)
    ]
    assert len(announced) == 1
    card = discord_fake.original(interaction)
    assert card is not None
    assert "Done" in str(card.embeds[0]["fields"][0]["value"])
