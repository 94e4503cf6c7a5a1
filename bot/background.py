"""Background tasks that are never fired and forgotten: each is kept, and its failure is logged with an id."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)


class TaskSet:
    """Keeps references to running tasks, logs any that fail, and calls ``on_done`` after each ends."""

    def __init__(self, on_done: Callable[[], None] = lambda: None) -> None:
        self.tasks: set[asyncio.Task[Any]] = set()
        self._on_done = on_done

    def spawn(self, coro: Awaitable[Any], name: str) -> None:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        task.set_name(name)
        self.tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("Error %s in %s", secrets.token_hex(4), task.get_name(), exc_info=task.exception())
        self._on_done()

    async def drain(self, grace: float) -> None:
        """Give running tasks ``grace`` seconds, then cancel what is left."""
        if not self.tasks:
            return
        _, pending = await asyncio.wait(set(self.tasks), timeout=grace)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
