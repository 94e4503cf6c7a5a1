"""The discord.py Bot subclass: holds what the composition root built and wires the Discord side."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime

import discord
from discord.ext import commands

from bot.config import Settings
from bot.i18n.commands import CommandTranslator
from bot.jobs.scheduler import Scheduler
from bot.jobs.service import JobService
from bot.store import Store
from bot.ui.buttons import IntakeRetry, JobButton, StyleMenu
from bot.ui.intake import IntakeDesk
from bot.ui.presenter import Presenter
from bot.ui.tree import JobTree
from providers import VideoProvider

log = logging.getLogger(__name__)

#: Loaded in order; each module has ``async def setup(bot)``.
COGS = ("cogs.animate", "cogs.jobs", "cogs.settings", "cogs.status")


class AnimateBot(commands.AutoShardedBot):
    """Builds nothing itself: everything arrives from the composition root (``bot/compose.py``).

    It connects the gateway shards SHARD_IDS names (all of SHARD_COUNT when empty, none for SHARD_IDS=none);
    everything else is set up alike in every process.
    """

    def __init__(
        self,
        *,
        settings: Settings,
        providers: Mapping[str, VideoProvider],
        store: Store,
        scheduler: Scheduler,
        jobs: JobService,
        presenter: Presenter,
        intakes: IntakeDesk,
        now: Callable[[], datetime],
        **options: object,
    ) -> None:
        shard_ids = settings.gateway_shard_ids
        if shard_ids:
            options["shard_ids"] = shard_ids
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=discord.Intents.default(),
            help_command=None,
            tree_cls=JobTree,
            shard_count=settings.shard_count,
            **options,  # type: ignore[arg-type]
        )
        self.settings = settings
        self.providers = providers
        self.store = store
        self.scheduler = scheduler
        self.jobs = jobs
        self.now = now
        self.presenter = presenter
        self.intakes = intakes

    async def setup_hook(self) -> None:
        # Before the sync: the translator adds each language's descriptions and choice names to the payload.
        await self.tree.set_translator(CommandTranslator())
        self.add_dynamic_items(JobButton, StyleMenu, IntakeRetry)
        for name in COGS:
            await self.load_extension(name)
        if self.syncs_commands:
            await self.sync_commands()
        self.scheduler.subscribe(self.presenter.on_job)
        self.presenter.start(self)
        await self.scheduler.start()
        # After the scheduler has taken over the leases of the process before (SQLite: one process).
        self.intakes.start()

    @property
    def connects_gateway(self) -> bool:
        """False for a process with SHARD_IDS=none: it only schedules and presents, over the REST API."""
        return self.settings.gateway_shard_ids != []

    @property
    def syncs_commands(self) -> bool:
        """One process syncs the application commands: the one connecting shard 0."""
        shard_ids = self.settings.gateway_shard_ids
        return shard_ids is None or 0 in shard_ids

    async def gateway_ok(self) -> bool:
        """The health check's view of the gateway: every shard of this process connected (none by design: ok)."""
        if not self.connects_gateway:
            return not self.is_closed()
        shards = self.shards.values()
        return self.is_ready() and not self.is_closed() and bool(shards) and not any(s.is_closed() for s in shards)

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
        # Stop taking commands first, then let the scheduler finish its writes; jobs stay resumable.
        assert isinstance(self.tree, JobTree)
        self.tree.closing = True
        await self.intakes.stop()
        await self.scheduler.stop()
        await self.presenter.stop()
        await super().close()

    async def on_ready(self) -> None:
        log.info("Connected to Discord as %s in %d servers", self.user, len(self.guilds))
