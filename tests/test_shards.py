"""Gateway shards split between bot processes, and a process without a gateway (SHARD_COUNT, SHARD_IDS).

Each process is ``python -m bot`` (tests/bot_child.py) against the fake Discord. SQLite is a one-process ledger,
so processes that run at the same time each have their own file; a file changes hands only after its process
stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.store import JobState, Store
from simulators.fake_discord import FakeDiscord, FakeGuild, FakeMessage
from simulators.fake_providers import FakePixVerse
from tests.conftest import image_bytes
from tests.discord_world import free_port

pytestmark = pytest.mark.subprocess

ROOT = Path(__file__).resolve().parent.parent
KEY = "pv-shards-key"


@dataclass
class BotProcess:
    process: asyncio.subprocess.Process
    folder: Path
    health_url: str

    @property
    def log(self) -> str:
        return (self.folder / "stderr.log").read_text(errors="replace")

    async def stop(self) -> None:
        """SIGTERM, then the exit: cleanly, without a traceback."""
        self.process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(self.process.wait(), timeout=30)
        assert self.process.returncode == 0, self.log
        assert "Traceback" not in self.log


@pytest.fixture
async def fakes() -> AsyncIterator[tuple[FakeDiscord, FakePixVerse]]:
    async with FakeDiscord(shard_count=2) as discord_fake, FakePixVerse(api_key=KEY, run_seconds=2.0) as pixverse:
        yield discord_fake, pixverse


async def spawn(
    discord_fake: FakeDiscord,
    pixverse: FakePixVerse,
    folder: Path,
    guilds: list[FakeGuild],
    *,
    shard_ids: str,
    shard_count: int = 2,
) -> BotProcess:
    """``python -m bot`` with the given SHARD_COUNT and SHARD_IDS; its stderr goes to a file in ``folder``."""
    await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
    port = free_port()
    env: dict[str, Any] = {
        key: value for key, value in os.environ.items() if not key.endswith(("_API_KEY", "_TOKEN", "_URL"))
    }
    env.update(
        PYTHONPATH=str(ROOT),
        FAKE_DISCORD_API=discord_fake.api_url,
        FAKE_DISCORD_GATEWAY=discord_fake.gateway_url,
        DISCORD_TOKEN=discord_fake.token,
        DISCORD_GUILD_IDS=",".join(str(guild.id) for guild in guilds),
        DATABASE_URL=f"sqlite:///{folder / 'bot.db'}",
        PIXVERSE_API_KEY=KEY,
        PIXVERSE_BASE_URL=pixverse.base_url,
        POLL_INTERVAL_SECONDS="0.1",
        PROGRESS_EDIT_SECONDS="1",
        SHARD_COUNT=str(shard_count),
        SHARD_IDS=shard_ids,
        HEALTH_PORT=str(port),
        HEALTH_HOST="127.0.0.1",
        LOG_LEVEL="INFO",
    )
    with (folder / "stderr.log").open("wb") as stderr:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.bot_child", cwd=folder, env=env, stderr=stderr
        )
    return BotProcess(process, folder, f"http://127.0.0.1:{port}/healthz")


@contextlib.asynccontextmanager
async def bot_process(
    discord_fake: FakeDiscord, pixverse: FakePixVerse, folder: Path, shard_ids: str, guilds: list[FakeGuild]
) -> AsyncIterator[BotProcess]:
    """A bot process with SHARD_COUNT=2, once its /healthz says it is healthy; killed if the test leaves it running."""
    running = await spawn(discord_fake, pixverse, folder, guilds, shard_ids=shard_ids)
    try:
        await until_healthy(running)
        yield running
    finally:
        if running.process.returncode is None:
            running.process.kill()
            await running.process.wait()


async def until_healthy(running: BotProcess, within: float = 30.0) -> None:
    async with aiohttp.ClientSession() as session, asyncio.timeout(within):
        while True:
            assert running.process.returncode is None, running.log
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(running.health_url) as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.05)


def guilds_by_shard(discord_fake: FakeDiscord) -> dict[int, FakeGuild]:
    """The default guild and one more on the other shard, with the member alice in both."""
    home = discord_fake.guild
    other = discord_fake.add_guild("Second Guild", members=[discord_fake.user], shard=1 - discord_fake.shard_of(home))
    return {discord_fake.shard_of(guild): guild for guild in (home, other)}


def ready_announcements(messages: list[FakeMessage], job_id: int) -> list[FakeMessage]:
    return [message for message in messages if re.search(rf"\bjob {job_id} is ready", message.content)]


async def push_animate(discord_fake: FakeDiscord, guild: FakeGuild) -> Any:
    attachment = discord_fake.add_attachment("cat.png", image_bytes(), "image/png")
    return await discord_fake.push_interaction(
        discord_fake.slash(
            "animate",
            subcommand="pixverse",
            options={"prompt": "a wave"},
            attachments={"image": attachment},
            channel=guild.channels[0],
        )
    )


async def test_each_process_serves_the_guilds_of_its_shard_and_only_shard_zero_syncs(
    fakes: tuple[FakeDiscord, FakePixVerse], tmp_path: Path
) -> None:
    discord_fake, pixverse = fakes
    by_shard = guilds_by_shard(discord_fake)
    guilds = list(by_shard.values())
    async with bot_process(discord_fake, pixverse, tmp_path / "shard1", "1", guilds) as second:
        assert set(discord_fake.sessions) == {1}
        assert discord_fake.syncs == []
        async with bot_process(discord_fake, pixverse, tmp_path / "shard0", "0", guilds) as first:
            assert set(discord_fake.sessions) == {0, 1}
            assert sorted(sync.guild_id or 0 for sync in discord_fake.syncs) == sorted(guild.id for guild in guilds)
            assert [identify["shard"] for identify in discord_fake.identifies] == [[1, 2], [0, 2]]

            interaction = await push_animate(discord_fake, by_shard[1])
            channel_id = by_shard[1].channels[0].id
            await discord_fake.wait_until(
                lambda: any(
                    re.search(r"\bjob \d+ is ready", message.content) for message in discord_fake.messages(channel_id)
                ),
                timeout=30,
            )
            await first.stop()
        await second.stop()
    assert len(pixverse.tasks) == 1
    assert len(discord_fake.syncs) == len(guilds)

    served = await Store.open(tmp_path / "shard1" / "bot.db")
    idle = await Store.open(tmp_path / "shard0" / "bot.db")
    try:
        [job] = await served.jobs_of_user(discord_fake.user.id)
        assert await idle.jobs_of_user(discord_fake.user.id) == []
    finally:
        await served.close()
        await idle.close()
    assert (job.guild_id, job.state, job.delivered) == (by_shard[1].id, JobState.SUCCEEDED, True)
    assert job.message_id == discord_fake.interaction(interaction).original_id
    assert len(ready_announcements(discord_fake.messages(channel_id), job.id)) == 1


async def test_a_process_without_a_gateway_finishes_the_work_a_stopped_process_left(
    fakes: tuple[FakeDiscord, FakePixVerse], tmp_path: Path
) -> None:
    discord_fake, pixverse = fakes
    home = discord_fake.guild
    folder = tmp_path / "ledger"
    async with bot_process(discord_fake, pixverse, folder, str(discord_fake.shard_of(home)), [home]) as sharded:
        interaction = await push_animate(discord_fake, home)
        await discord_fake.wait_until(lambda: bool(pixverse.tasks), timeout=15)
        await sharded.stop()
    identified = len(discord_fake.identifies)
    assert identified == 1

    # The ledger changes hands only now that its process has stopped (SQLite is one process's ledger).
    async with bot_process(discord_fake, pixverse, folder, "none", [home]) as gatewayless:
        await discord_fake.wait_until(
            lambda: bool(ready_announcements(discord_fake.messages(home.channels[0].id), 1)), timeout=30
        )
        await gatewayless.stop()
    assert "No gateway" in gatewayless.log
    assert len(discord_fake.identifies) == identified
    assert discord_fake.sessions.keys() == {discord_fake.shard_of(home)}
    # Only the process that connects shard 0 syncs the commands; the server's id decides which shard it is on.
    assert len(discord_fake.syncs) == (1 if discord_fake.shard_of(home) == 0 else 0)
    assert len(pixverse.tasks) == 1
    card = discord_fake.original(interaction)
    assert card is not None
    assert "Done" in str(card.embeds[0]["fields"][0]["value"])


@pytest.mark.parametrize(("shard_count", "shard_ids", "code"), [(1, "", 4011), (3, "2", 4010)])
async def test_shard_settings_discord_refuses_stop_the_start_with_one_sentence(
    fakes: tuple[FakeDiscord, FakePixVerse], tmp_path: Path, shard_count: int, shard_ids: str, code: int
) -> None:
    discord_fake, pixverse = fakes
    guild = discord_fake.add_guild("Refused", shard=0)
    bot = await spawn(discord_fake, pixverse, tmp_path, [guild], shard_ids=shard_ids, shard_count=shard_count)
    await asyncio.wait_for(bot.process.wait(), timeout=45)
    assert bot.process.returncode == 2
    last = bot.log.strip().splitlines()[-1]
    assert last == (
        f"The bot cannot start: Discord refused its gateway shards (close code {code}); set SHARD_COUNT to the "
        "number of shards Discord asks for, the same in every process, and SHARD_IDS to ids below it."
    )
    assert "Traceback" not in bot.log
