"""Pointing the real discord.py at a FakeDiscord: route patching and a connected-client context manager."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import TypeVar

import discord
import discord.gateway
import discord.http
import yarl

from .server import FakeDiscord

ClientT = TypeVar("ClientT", bound=discord.Client)


@contextlib.contextmanager
def patch_discord(fake: FakeDiscord) -> Iterator[None]:
    """Point ``Route.BASE`` and ``DiscordWebSocket.DEFAULT_GATEWAY`` at the fake; restore them afterwards."""
    old_base = discord.http.Route.BASE
    old_gateway = discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    discord.http.Route.BASE = fake.api_url
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(fake.gateway_url)
    try:
        yield
    finally:
        discord.http.Route.BASE = old_base
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = old_gateway


@contextlib.asynccontextmanager
async def connect_client(
    fake: FakeDiscord,
    client: ClientT,
    *,
    token: str | None = None,
    timeout: float = 10.0,  # noqa: ASYNC109
) -> AsyncIterator[ClientT]:
    """Run ``client.start()`` against the fake until ``on_ready``; close it cleanly on exit.

    Build the client with ``guild_ready_timeout=0.1`` or readiness waits the default 2 s. If the client task
    dies while the block runs (a gateway parse error, say), its exception is raised on exit.
    """
    with patch_discord(fake):
        task = asyncio.create_task(client.start(token or fake.token), name="fake-discord-client")
        body_failed = False
        try:
            await _wait_ready(client, task, timeout)
            yield client
        except BaseException:
            body_failed = True
            raise
        finally:
            await _shutdown(client, task, timeout, raise_errors=not body_failed)


async def _wait_ready(client: discord.Client, task: asyncio.Task[None], limit: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while True:
        if task.done():
            task.result()
            raise RuntimeError("the client stopped before it became ready")
        if client.is_ready():
            return
        if loop.time() > deadline:
            raise TimeoutError(f"the client was not ready after {limit} s")
        await asyncio.sleep(0.01)


async def _shutdown(client: discord.Client, task: asyncio.Task[None], limit: float, *, raise_errors: bool) -> None:
    if not client.is_closed():
        await client.close()
    try:
        await asyncio.wait_for(asyncio.shield(task), limit)
    except TimeoutError:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        if raise_errors:
            raise
    except Exception:
        if raise_errors:
            raise


@contextlib.asynccontextmanager
async def worker_client(
    fake: FakeDiscord, *, token: str | None = None, intents: discord.Intents | None = None
) -> AsyncIterator[discord.Client]:
    """A logged-in client without a gateway connection, like a worker process editing messages by id."""
    with patch_discord(fake):
        client = discord.Client(intents=intents or discord.Intents.none())
        async with client:
            await client.login(token or fake.token)
            yield client
