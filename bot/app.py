"""The discord.py Bot subclass; the cogs that give it commands arrive with the Discord issue."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import discord
from discord.ext import commands

from bot.config import Settings
from bot.tracker import Tracker
from providers import VideoProvider

log = logging.getLogger(__name__)


class AnimateBot(commands.Bot):
    """Holds what the composition root built; builds nothing itself."""

    def __init__(self, *, settings: Settings, providers: Mapping[str, VideoProvider], tracker: Tracker) -> None:
        super().__init__(command_prefix=commands.when_mentioned, intents=discord.Intents.default(), help_command=None)
        self.settings = settings
        self.providers = providers
        self.tracker = tracker

    async def on_ready(self) -> None:
        log.info("Connected to Discord as %s in %d servers", self.user, len(self.guilds))
