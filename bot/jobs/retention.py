"""What the bot forgets, and when: kept inputs, interaction tokens past their life, old finished jobs."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import timedelta

from bot.jobs.inputs import InputStore
from bot.store import Store

log = logging.getLogger(__name__)

#: Discord's interaction tokens live this long; the ledger keeps none past it.
TOKEN_LIFETIME = timedelta(minutes=15)


class Retention:
    """Runs the ledger's and the input folder's pruning at most once per ``every`` seconds."""

    def __init__(
        self,
        store: Store,
        inputs: InputStore,
        *,
        input_retention: timedelta,
        job_retention: timedelta | None,
        every: float = 600.0,
    ) -> None:
        self.store = store
        self.inputs = inputs
        self.input_retention = input_retention
        self.job_retention = job_retention
        self.every = every
        self._next = 0.0

    async def __call__(self) -> None:
        if time.monotonic() < self._next:
            return
        self._next = time.monotonic() + self.every
        await self.run()

    async def run(self) -> None:
        now = self.store.now()
        pruned = await self.store.prune(
            tokens_before=now,
            jobs_before=now - self.job_retention if self.job_retention is not None else None,
        )
        inputs = await asyncio.to_thread(self.inputs.prune, self.input_retention.total_seconds())
        if pruned.jobs or pruned.events or inputs:
            log.info(
                "Retention: removed %d finished jobs, %d events and %d kept inputs", pruned.jobs, pruned.events, inputs
            )
