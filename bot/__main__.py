"""``python -m bot``: the composition root. Builds everything, runs the bot, closes in reverse order."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import aiohttp
import discord

from bot.check import render, run_checks
from bot.compose import assemble
from bot.config import ConfigError, Settings, ledger_location, load_settings
from bot.health import probe_url
from bot.logs import setup_logging
from bot.store import Store, StoreError

log = logging.getLogger("bot")

#: Gateway close codes for shard settings Discord will not take: 4010 invalid shard, 4011 sharding required.
REFUSED_SHARDS = (4010, 4011)
TRY_WITHOUT_CREDENTIALS = "To try the bot without any credentials, run `make demo` (or `python -m bot demo`)."


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


def migrate_ledger(source_url: str, target_url: str) -> int:
    """Copy every job, event, setting and intake of one ledger into a new, empty one; prints what moved."""
    try:
        source, target = (ledger_location(url) for url in (source_url, target_url))
        if isinstance(source, Path) and not source.exists():
            raise StoreError(f"There is no ledger at {source}; give the path of the existing SQLite file.")
        copied = asyncio.run(copy_ledger(source, target))
    except (ValueError, StoreError) as exc:
        print(f"The ledger was not copied: {exc}", file=sys.stderr)
        return 2
    print(", ".join(f"{count} {table}" for table, count in copied.items()) + " copied.")
    print("Point DATABASE_URL at the new ledger, and INPUTS_DIR at the old inputs folder, before starting the bot.")
    return 0


async def copy_ledger(source: Path | str, target: Path | str) -> dict[str, int]:
    old = await Store.open(source)
    try:
        new = await Store.open(target)
        try:
            return await old.copy_into(new)
        finally:
            await new.close()
    finally:
        await old.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bot", description="Run the image-to-video Discord bot.")
    parser.add_argument(
        "command",
        nargs="?",
        default="run",
        choices=("run", "check", "health", "migrate-ledger", "demo"),
        help="run the bot (default); check the configuration and every credential; "
        "demo: the bot against simulated Discord and providers, shown on http://127.0.0.1:8765 (no credentials); "
        "health: ask the running bot's /healthz (exit 0 when healthy); "
        "migrate-ledger FROM TO: copy a ledger (sqlite:///… or postgresql://…) into a new, empty one",
    )
    parser.add_argument(
        "urls", nargs="*", metavar="URL", help="for migrate-ledger: the ledger to copy, then the new one"
    )
    arguments = parser.parse_args(argv)
    command = arguments.command
    if command == "migrate-ledger":
        if len(arguments.urls) != 2:
            parser.error("migrate-ledger needs two database URLs: the ledger to copy, then the new one")
        return migrate_ledger(*arguments.urls)
    if arguments.urls:
        parser.error(f"{command} takes no URLs")
    if command == "demo":
        # The one way from the bot to the simulators, taken only when asked for; imported by name so that nothing
        # of the simulators is part of the bot's own import graph (or of its type check).
        demo: Callable[[], int] = importlib.import_module("simulators.demo").main
        return demo()
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"The configuration is not usable:\n{exc}", file=sys.stderr)
        if "DISCORD_TOKEN is not set" in str(exc):
            print(TRY_WITHOUT_CREDENTIALS, file=sys.stderr)
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
    except discord.ConnectionClosed as exc:
        if exc.code not in REFUSED_SHARDS:
            raise
        print(
            f"The bot cannot start: Discord refused its gateway shards (close code {exc.code}); set SHARD_COUNT to "
            "the number of shards Discord asks for, the same in every process, and SHARD_IDS to ids below it.",
            file=sys.stderr,
        )
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
