"""``python -m bot``: the composition root. Builds everything, runs the bot, closes in reverse order."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

import aiohttp
import discord

from bot.app import AnimateBot
from bot.config import ConfigError, Settings, load_settings
from bot.inputs import InputStore
from bot.jobs import JobService
from bot.logs import setup_logging
from bot.providers import build_providers
from bot.scheduling import tracker_settings
from bot.store import Store, StoreError
from bot.tracker import Tracker

log = logging.getLogger("bot")


async def run(settings: Settings) -> None:
    """Run the bot until it is stopped; every resource is closed on the way out."""
    async with aiohttp.ClientSession() as session:
        providers = build_providers(settings, session)
        if providers:
            log.info("Providers enabled: %s", ", ".join(sorted(providers)))
        else:
            log.warning("No provider has an API key; set HIDREAM_API_KEY, PIXVERSE_API_KEY or VIDU_API_KEY.")
        store = await Store.open(settings.database_path)
        try:
            inputs = InputStore(settings.inputs_folder)
            pruned = inputs.prune(settings.input_retention_hours * 3600)
            if pruned:
                log.info("Removed %d inputs older than %g hours", pruned, settings.input_retention_hours)
            tracker = Tracker(store, providers, inputs, tracker_settings(settings))
            jobs = JobService(providers, tracker, inputs, session)
            async with AnimateBot(
                settings=settings, providers=providers, store=store, tracker=tracker, jobs=jobs
            ) as bot:
                loop = asyncio.get_running_loop()
                for signum in (signal.SIGTERM, signal.SIGINT):
                    loop.add_signal_handler(signum, lambda: asyncio.ensure_future(bot.close()))
                await bot.start(settings.discord_token.get_secret_value())
        finally:
            await store.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bot", description="Run the image-to-video Discord bot.")
    parser.parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"The bot cannot start:\n{exc}", file=sys.stderr)
        return 2
    setup_logging(settings.log_level)
    try:
        asyncio.run(run(settings))
    except StoreError as exc:
        print(f"The bot cannot start: {exc}", file=sys.stderr)
        return 2
    except discord.LoginFailure:
        print(
            "The bot cannot start: Discord refused DISCORD_TOKEN; copy the token again from the developer portal.",
            file=sys.stderr,
        )
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
