"""Lease returns: poll answers that arrive together are written in one ledger transaction, each caller learns
only about the jobs it still held, and a failed write reaches every caller whose part was in it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.background import TaskSet
from bot.jobs.returns import LeaseReturns
from bot.store import JobState, NewJob, Store

LEASE = timedelta(minutes=5)


class TickingClock:
    """Each reading one microsecond later: every ledger transaction stamps its rows with its own time."""

    def __init__(self) -> None:
        self.current = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.current += timedelta(microseconds=1)
        return self.current


@pytest.fixture
async def store(ledger: Path | str) -> AsyncIterator[Store]:
    opened = await Store.open(ledger, now=TickingClock())
    yield opened
    await opened.close()


async def running_jobs(store: Store, count: int, owner: str) -> list[int]:
    for user in range(count):
        await store.create_job(
            NewJob(
                channel_id=1,
                user_id=user,
                provider="pixverse",
                operation="image_to_video",
                params={},
                media={"file": "x.png", "kind": "image"},
            )
        )
    claim = await store.claim_submits(
        "pixverse", owner=owner, lease=LEASE, max_running=None, per_minute={}, limit=count
    )
    for job in claim.jobs:
        await store.transition(job.id, JobState.RUNNING, owner=owner, task_id=f"t{job.id}")
    ids = [job.id for job in claim.jobs]
    leased = await store.claim_due(
        "pixverse", JobState.RUNNING, owner=owner, lease=LEASE, limit=count, horizon=timedelta(hours=1)
    )
    assert sorted(job.id for job in leased) == sorted(ids)
    return ids


async def test_returns_that_arrive_together_share_one_transaction(store: Store) -> None:
    ids = await running_jobs(store, 40, "me")
    work = TaskSet()
    returns = LeaseReturns(store, "me", work.spawn)

    answers = await asyncio.gather(*(returns.give_back({job_id: {"progress": 0.5}}, read=[job_id]) for job_id in ids))

    assert [[job.id for job in answer] for answer in answers] == [[job_id] for job_id in ids]
    jobs = await store.get_jobs(ids)
    assert all(job.progress == 0.5 and job.lease_owner is None for job in jobs)
    # Forty returns, not forty transactions: those that arrive before a write starts, or while it runs, go together.
    assert len({job.updated_at for job in jobs}) <= 2


async def test_a_job_taken_over_meanwhile_is_neither_changed_nor_read(store: Store) -> None:
    mine, lost = await running_jobs(store, 2, "me")
    await store.release({lost: {}}, owner="me")
    work = TaskSet()
    returns = LeaseReturns(store, "me", work.spawn)

    answer = await returns.give_back({mine: {"progress": 0.3}, lost: {"progress": 0.9}}, read=[mine, lost])

    assert [job.id for job in answer] == [mine]
    by_id = {job.id: job for job in await store.get_jobs([mine, lost])}
    assert by_id[mine].progress == 0.3
    assert by_id[lost].progress is None


async def test_a_failed_write_fails_every_return_in_it(store: Store) -> None:
    first, second = await running_jobs(store, 2, "me")
    work = TaskSet()
    returns = LeaseReturns(store, "me", work.spawn)

    assert await returns.give_back({first: {"progress": 0.1}}) == []
    await store.claim_due("pixverse", JobState.RUNNING, owner="me", lease=LEASE, limit=1, horizon=timedelta(hours=1))
    results = await asyncio.gather(
        returns.give_back({second: {"state": "succeeded"}}),
        returns.give_back({first: {"progress": 0.2}}),
        return_exceptions=True,
    )

    # One write for both, refused for a column nobody may set: neither part of it landed.
    assert all(isinstance(result, ValueError) for result in results)
    by_id = {job.id: job for job in await store.get_jobs([first, second])}
    assert by_id[first].progress == 0.1
    assert by_id[second].lease_owner == "me"
