"""``python -m bot``: the composition root. Builds everything, runs the bot, closes in reverse order."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

import aiohttp
import discord

from bot.check import render, run_checks
from bot.compose import assemble
from bot.config import ConfigError, Settings, load_settings
from bot.health import probe_url
from bot.logs import setup_logging
from bot.store import StoreError

log = logging.getLogger("bot")


async def run(settings: Settings) -> None:
    """Run the bot until it is stopped; every resource is closed on the way out."""
    async with aiohttp.ClientSession() as session, assemble(settings, session) as bot:
        stopped = asyncio.Event()

        async def stop() -> None:
            await bot.close()
            stopped.set()

        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, lambda: asyncio.ensure_future(stop()))
        token = settings.discord_token.get_secret_value()
        if bot.connects_gateway:
            await bot.start(token)
            return
        # login() runs setup_hook, which starts the scheduler and the presenter; they need only the REST API.
        await bot.login(token)
        log.info("No gateway (SHARD_IDS=none): this process schedules and presents over the REST API only")
        await stopped.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bot", description="Run the image-to-video Discord bot.")
    parser.add_argument(
        "command",
        nargs="?",
        default="run",
        choices=("run", "check", "health"),
        help="run the bot (default); check the configuration and every credential; "
        "health: ask the running bot's /healthz (exit 0 when healthy)",
    )
    command = parser.parse_args(argv).command
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"The configuration is not usable:\n{exc}", file=sys.stderr)
        return 2
    if command == "health":
        healthy, said = probe_url(f"http://127.0.0.1:{settings.health_port}/healthz")
        print(said)
        return 0 if healthy else 1
    if command == "check":
        rows = asyncio.run(run_checks(settings))
        print(render(rows))
        return 0 if all(row.ok for row in rows) else 1
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
