"""Gives leases back in combined ledger writes: what poll answers change arrives many times a second, and one
transaction per answer would spend the ledger (and, on SQLite, its one writer) on commits."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

from bot.store import Job, Store

Spawn = Callable[[Awaitable[Any], str], None]


@dataclass
class _Return:
    updates: Mapping[int, Mapping[str, Any]]
    read: Collection[int]
    done: asyncio.Future[list[Job]]


class LeaseReturns:
    """Group commit for lease releases: the first return is written at once; returns that arrive while a
    write is under way wait for the next one, which writes them all in one transaction.

    Each caller gets back, read after the write, those of the jobs it asked to ``read`` that it still held.
    """

    def __init__(self, store: Store, owner: str, spawn: Spawn) -> None:
        self.store = store
        self.owner = owner
        self._spawn = spawn
        self._waiting: list[_Return] = []
        self._writing = False

    async def give_back(self, updates: Mapping[int, Mapping[str, Any]], *, read: Collection[int] = ()) -> list[Job]:
        done: asyncio.Future[list[Job]] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Return(updates, read, done))
        if not self._writing:
            self._writing = True
            self._spawn(self._write(), "give leases back")
        return await done

    async def _write(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                try:
                    jobs = await self._write_batch(batch)
                except BaseException as exc:
                    for item in batch:
                        if not item.done.done():
                            item.done.set_exception(exc if isinstance(exc, Exception) else asyncio.CancelledError())
                    if not isinstance(exc, Exception):
                        raise
                    continue
                for item in batch:
                    if not item.done.done():
                        item.done.set_result([jobs[job_id] for job_id in item.read if job_id in jobs])
        finally:
            self._writing = False
            for item in self._waiting:
                if not item.done.done():
                    item.done.cancel()
            self._waiting = []

    async def _write_batch(self, batch: list[_Return]) -> dict[int, Job]:
        updates: dict[int, Mapping[str, Any]] = {}
        wanted: set[int] = set()
        for item in batch:
            updates.update(item.updates)
            wanted.update(item.read)
        held = set(await self.store.release(updates, owner=self.owner))
        shown = sorted(wanted & held)
        return {job.id: job for job in await self.store.get_jobs(shown)} if shown else {}
