"""The discord.py Bot subclass: holds what the composition root built and wires the Discord side."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path

import discord
from discord.ext import commands

from bot.buttons import JobActions, JobButton, StyleMenu
from bot.config import Settings
from bot.jobs import JobService
from bot.presenter import Presenter
from bot.store import Store
from bot.tracker import Tracker
from providers import VideoProvider

log = logging.getLogger(__name__)

#: How often the running bot proves it is alive, and how old that proof may get.
HEARTBEAT_SECONDS = 30.0
HEARTBEAT_STALE_SECONDS = 120.0
#: Loaded in order; each module has ``async def setup(bot)``.
COGS = ("cogs.animate", "cogs.jobs")


class AnimateBot(commands.Bot):
    """Builds nothing itself: everything arrives from ``python -m bot`` (or a test)."""

    job_actions: JobActions

    def __init__(
        self,
        *,
        settings: Settings,
        providers: Mapping[str, VideoProvider],
        store: Store,
        tracker: Tracker,
        jobs: JobService,
        now: Callable[[], datetime],
        **options: object,
    ) -> None:
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=discord.Intents.default(),
            help_command=None,
            **options,  # type: ignore[arg-type]
        )
        self.settings = settings
        self.providers = providers
        self.store = store
        self.tracker = tracker
        self.jobs = jobs
        self._heartbeat: asyncio.Task[None] | None = None
        self.presenter = Presenter(
            self,
            store,
            jobs.inputs,
            jobs.session,
            mark_delivered=tracker.mark_delivered,
            edit_seconds=settings.progress_edit_seconds,
            can_stylize="hidream" in providers,
            now=now,
        )

    async def setup_hook(self) -> None:
        self.add_dynamic_items(JobButton, StyleMenu)
        for name in COGS:
            await self.load_extension(name)
        await self.sync_commands()
        self.tracker.subscribe(self.presenter.on_job)
        self.presenter.start()
        await self.tracker.start()
        self._heartbeat = asyncio.create_task(self._beat(), name="heartbeat")

    async def _beat(self) -> None:
        # The container's HEALTHCHECK reads this file: fresh only while Discord is connected and the
        # tracker's scheduler is alive.
        path = self.settings.heartbeat_path
        await self.wait_until_ready()
        while True:
            if self.is_ready() and not self.is_closed() and self.tracker.running:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(str(time.time()))
            await asyncio.sleep(HEARTBEAT_SECONDS)

    async def sync_commands(self) -> None:
        """To the configured servers at once, else globally (which Discord spreads within an hour)."""
        if self.settings.discord_guild_ids:
            for guild_id in self.settings.discord_guild_ids:
                guild = discord.Object(guild_id)
                self.tree.copy_global_to(guild=guild)
                synced = await self.tree.sync(guild=guild)
                log.info("Synced %d commands to server %s", len(synced), guild_id)
        else:
            synced = await self.tree.sync()
            log.info("Synced %d commands globally", len(synced))

    async def close(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        await self.tracker.stop()
        await self.presenter.stop()
        await super().close()

    async def on_ready(self) -> None:
        log.info("Connected to Discord as %s in %d servers", self.user, len(self.guilds))


def heartbeat_is_fresh(path: Path, *, max_age: float = HEARTBEAT_STALE_SECONDS) -> bool:
    """Whether the running bot touched its heartbeat recently."""
    try:
        return time.time() - float(path.read_text()) < max_age
    except (OSError, ValueError):
        return False
