"""Keeps this process's leases alive while it runs, so that only a dead process's work is taken over,
and counts the processes sharing the ledger (each renewal is also this process's heartbeat)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable, Sequence
from datetime import timedelta

from bot.store import Store

log = logging.getLogger(__name__)


class LeaseKeeper:
    """Renews every lease held under ``owners`` three times per lease period, until stopped."""

    def __init__(
        self,
        store: Store,
        owners: Sequence[str],
        lease: timedelta,
        *,
        process: str | None = None,
        on_count: Callable[[int], None] = lambda count: None,
    ) -> None:
        self.store = store
        self.owners = tuple(owners)
        self.lease = lease
        self.process = process or self.owners[0]
        #: Told how many processes share the ledger (this one included) after every renewal.
        self.on_count = on_count
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.renew()
        self._task = asyncio.create_task(self._run(), name="lease keeper")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(Exception):
            await self.store.forget_process(self.process)

    async def renew(self) -> int:
        renewed = await self.store.renew_leases(self.owners, self.lease)
        self.on_count(await self.store.heartbeat(self.process, alive_within=self.lease))
        return renewed

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.lease.total_seconds() / 3)
            try:
                await self.renew()
            except Exception:
                # The next round tries again; leases run out only if every round in a period fails.
                log.exception("Renewing the leases failed (error %s)", secrets.token_hex(4))
