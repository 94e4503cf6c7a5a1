"""The lease keeper: a live process's claims stay its own; a stopped keeper lets them run out."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

from bot.jobs.inputs import InputStore
from bot.jobs.leases import LeaseKeeper
from bot.jobs.scheduler import Scheduler
from bot.store import JobState, NewJob, Store

LEASE = timedelta(seconds=0.6)


def new_job(user_id: int) -> NewJob:
    return NewJob(
        channel_id=1,
        user_id=user_id,
        provider="vidu",
        operation="image_to_video",
        params={},
        media={"file": "x.png", "kind": "image"},
    )


async def test_the_keeper_renews_the_leases_of_its_owners_only(ledger: Path | str) -> None:
    store = await Store.open(ledger)
    counts: list[int] = []
    keeper = LeaseKeeper(store, ["mine", "mine-too"], LEASE, process="this", on_count=counts.append)
    try:
        ids = [(await store.create_job(new_job(user))).id for user in range(3)]
        for job_id, owner in zip(ids, ["mine", "mine-too", "theirs"], strict=True):
            claim = await store.claim_submits(
                "vidu", owner=owner, lease=LEASE, max_running=None, per_minute={}, limit=1
            )
            assert [job.id for job in claim.jobs] == [job_id]
        taken = {job.id: job.lease_until for job in await store.get_jobs(ids)}

        await keeper.start()

        async def renewed_twice() -> None:
            while True:
                jobs = await store.get_jobs(ids[:2])
                if all(job.lease_until and job.lease_until >= taken[job.id] + LEASE * 2 for job in jobs):
                    return
                await asyncio.sleep(0.05)

        async with asyncio.timeout(30):
            await renewed_twice()
        mine, mine_too, theirs = await store.get_jobs(ids)
        assert theirs.lease_until == taken[theirs.id]
        # A claimed send is due when its lease would run out, so nobody sees it due while it is renewed.
        assert mine.next_check_at == mine.lease_until
        assert mine_too.state is JobState.SUBMITTING
        assert counts[0] == 1
        assert set(counts) == {1}
    finally:
        await keeper.stop()
        await store.close()


async def test_a_starting_process_leaves_the_poll_schedule_of_a_shared_ledger_alone(
    ledger: Path | str, tmp_path: Path
) -> None:
    """Moving every unheld running job to "now" is right after a restart of the only process; on a shared
    ledger those jobs were just polled by a live process, and a newcomer would poll them again at once."""
    store = await Store.open(ledger)
    scheduler = Scheduler(store, {}, InputStore(tmp_path / "inputs"))
    try:
        job = await store.create_job(new_job(1))
        claim = await store.claim_submits("vidu", owner="other", lease=LEASE, max_running=None, per_minute={}, limit=1)
        assert [sent.id for sent in claim.jobs] == [job.id]
        await store.transition(job.id, JobState.RUNNING, owner="other", task_id="t1")
        polled = await store.claim_due(
            "vidu", JobState.RUNNING, owner="other", lease=LEASE, limit=1, horizon=timedelta(hours=1)
        )
        assert [running.id for running in polled] == [job.id]
        later = store.now() + timedelta(minutes=1)
        assert await store.release({job.id: {"next_check_at": later}}, owner="other") == [job.id]

        await scheduler.start()

        [after] = await store.get_jobs([job.id])
        if store.shared:
            assert after.next_check_at == later
        else:
            assert after.next_check_at is not None
            assert after.next_check_at < later
    finally:
        await scheduler.stop()
        await store.close()
