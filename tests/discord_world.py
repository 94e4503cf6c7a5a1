"""The end-to-end world: the bot as `python -m bot` builds it, the fake Discord and the fake providers."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.compose import assemble
from bot.config import Settings
from bot.store import Job
from bot.ui.app import AnimateBot
from simulators.fake_discord import FakeDiscord, FakeMessage, connect_client
from simulators.fake_providers import FakeHiDream, FakePixVerse, FakeVidu
from tests.conftest import image_bytes


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


KEYS = {"hidream": "hd-bot-key", "pixverse": "pv-bot-key", "vidu": "vd-bot-key"}
REQUIRED = {"hidream": {}, "pixverse": {"prompt": "a wave"}, "vidu": {"prompt": "a wave"}}


@dataclass
class World:
    discord: FakeDiscord
    providers: dict[str, Any]
    tmp: Path
    session: aiohttp.ClientSession
    bot: AnimateBot | None = None
    disabled: tuple[str, ...] = ()
    health_port: int = field(default_factory=free_port)
    overrides: dict[str, Any] = field(default_factory=dict)

    def settings(self) -> Settings:
        values: dict[str, Any] = {
            "discord_token": self.discord.token,
            "discord_guild_ids": (self.discord.guild.id,),
            "database_url": f"sqlite:///{self.tmp / 'data' / 'bot.db'}",
            "poll_interval_seconds": 0.05,
            "progress_edit_seconds": 1,
            "http_timeout_seconds": 5,
            "health_port": self.health_port,
            "health_host": "127.0.0.1",
        }
        for name, fake in self.providers.items():
            values[f"{name}_api_key"] = "" if name in self.disabled else KEYS[name]
            values[f"{name}_base_url"] = fake.base_url
        values.update(self.overrides)
        return Settings(_env_file=None, **values)

    def now(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self.discord.clock.offset)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[AnimateBot]:
        async with (
            assemble(self.settings(), self.session, now=self.now, guild_ready_timeout=0.1) as bot,
            connect_client(self.discord, bot),
        ):
            self.bot = bot
            try:
                yield bot
            finally:
                self.bot = None

    @property
    def store(self) -> Any:
        assert self.bot is not None
        return self.bot.store

    async def animate(self, provider: str, *, image: bytes | None = None, user: Any = None, **options: Any) -> Any:
        attachment = self.discord.add_attachment("cat.png", image or image_bytes(640, 360), "image/png")
        payload = self.discord.slash(
            "animate",
            subcommand=provider,
            options={**REQUIRED[provider], **options},
            attachments={"image": attachment},
            user=user,
        )
        return await self.discord.push_interaction(payload)

    async def job_for(self, interaction: Any, within: float = 10.0) -> Job:
        """The job a command created, found by the card the interaction turned into."""
        async with asyncio.timeout(within):
            while True:
                record = self.discord.interaction(interaction)
                if record.original_id is not None:
                    for job in await self.store.jobs_of_user(record.user_id, limit=100):
                        if job.message_id == record.original_id:
                            return job  # type: ignore[no-any-return]
                await asyncio.sleep(0.02)

    async def finished(self, job_id: int, within: float = 15.0) -> Job:
        """The job once it ended and its end was announced."""
        return await self.reaches(job_id, lambda job: job.state.finished and job.delivered, within)

    async def reaches(self, job_id: int, done: Callable[[Job], bool], within: float = 15.0) -> Job:
        async with asyncio.timeout(within):
            while True:
                job = await self.store.get_job(job_id)
                if done(job):
                    return job  # type: ignore[no-any-return]
                await asyncio.sleep(0.02)


@pytest.fixture
async def world(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[World]:
    marker = request.node.get_closest_marker("world")
    options: dict[str, Any] = dict(marker.kwargs) if marker else {}
    run = options.get("run_seconds", 0.5)
    async with (
        FakeDiscord() as discord_fake,
        FakeHiDream(api_key=KEYS["hidream"], run_seconds=run, queue_seconds=0.05) as hd,
        FakePixVerse(api_key=KEYS["pixverse"], run_seconds=run, queue_seconds=0.05) as pv,
        FakeVidu(api_key=KEYS["vidu"], run_seconds=run, queue_seconds=0.05) as vd,
        aiohttp.ClientSession() as session,
    ):
        yield World(
            discord_fake,
            {"hidream": hd, "pixverse": pv, "vidu": vd},
            tmp_path,
            session,
            disabled=tuple(options.get("disabled", ())),
            overrides=dict(options.get("settings", {})),
        )


def status_of(message: FakeMessage) -> str:
    return str(message.embeds[0]["fields"][0]["value"])


def announcements(world: World, job: Job) -> list[FakeMessage]:
    return [
        message
        for message in world.discord.messages(job.channel_id)
        if re.search(rf"\bjob {job.id}\b", message.content) and message.content.startswith(f"<@{job.user_id}>")
    ]


async def click(world: World, custom_id: str, *, user: Any = None) -> Any:
    return await world.discord.push_interaction(world.discord.click(custom_id, user=user))


def answer(world: World, interaction: Any) -> str:
    """What an ephemeral reply said, whether sent at once or as a followup."""
    callbacks = world.discord.callbacks(interaction)
    if callbacks and callbacks[0].type == 4:
        return str(callbacks[0].data.get("content", ""))
    return " ".join(message.content for message in world.discord.followups(interaction))
