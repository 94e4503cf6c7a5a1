"""The ledger as the scheduler's truth: claims with leases, caps counted in the ledger, conditional
writes, admission inside the write, retention, and queries that stay bounded."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from bot.store import Admission, InvalidTransition, JobState, LimitReached, NewJob, Store
from bot.store.engines import MIGRATIONS

LEASE = timedelta(minutes=5)


class Clock:
    def __init__(self) -> None:
        self.current = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.current

    def advance(self, **delta: float) -> None:
        self.current += timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def store(ledger: Path | str, clock: Clock) -> AsyncIterator[Store]:
    opened = await Store.open(ledger, now=clock)
    yield opened
    await opened.close()


def new_job(**overrides: Any) -> NewJob:
    values: dict[str, Any] = {
        "channel_id": 10,
        "user_id": 1,
        "guild_id": 100,
        "provider": "vidu",
        "operation": "image_to_video",
        "params": {"prompt": "a wave"},
        "media": {"file": "x.png", "kind": "image"},
    }
    values.update(overrides)
    return NewJob(**values)


async def claim(store: Store, provider: str = "vidu", *, owner: str = "a", **options: Any) -> list[int]:
    options.setdefault("max_running", None)
    options.setdefault("per_minute", {})
    options.setdefault("limit", 64)
    result = await store.claim_submits(provider, owner=owner, lease=LEASE, **options)
    return [job.id for job in result.jobs]


async def test_a_claim_moves_queued_jobs_to_submitting_under_a_lease(store: Store, clock: Clock) -> None:
    job = await store.create_job(new_job())
    assert await claim(store) == [job.id]
    claimed = await store.get_job(job.id)
    assert claimed is not None
    assert claimed.state is JobState.SUBMITTING
    assert claimed.lease_owner == "a"
    assert claimed.lease_until == clock.current + LEASE
    assert claimed.submit_attempts == 1
    assert await claim(store, owner="b") == []


async def test_the_running_cap_is_counted_in_the_ledger(store: Store) -> None:
    jobs = [await store.create_job(new_job(user_id=n)) for n in range(5)]
    assert len(await claim(store, max_running=2)) == 2
    assert await claim(store, max_running=2) == []
    await store.transition(jobs[0].id, JobState.FAILED, owner="a")
    assert len(await claim(store, max_running=2)) == 1


async def test_a_per_minute_cap_says_when_it_frees_up(store: Store, clock: Clock) -> None:
    for _ in range(3):
        await store.create_job(new_job(provider="hidream", operation="stylize"))
    first = clock.current
    assert len(await claim(store, "hidream", per_minute={"stylize": 2})) == 2
    clock.advance(seconds=10)
    result = await store.claim_submits(
        "hidream", owner="a", lease=LEASE, max_running=None, per_minute={"stylize": 2}, limit=64
    )
    assert result.jobs == []
    assert result.blocked_until == first + timedelta(seconds=60)
    clock.advance(seconds=51)
    assert len(await claim(store, "hidream", per_minute={"stylize": 2})) == 1


async def test_a_paused_provider_gets_no_submits_until_the_pause_ends(store: Store, clock: Clock) -> None:
    await store.create_job(new_job())
    await store.pause_provider("vidu", clock.current + timedelta(seconds=30))
    assert await claim(store) == []
    clock.advance(seconds=31)
    assert len(await claim(store)) == 1


async def test_a_job_not_yet_due_is_not_claimed(store: Store, clock: Clock) -> None:
    job = await store.create_job(new_job())
    [claimed] = await claim(store)
    later = clock.current + timedelta(seconds=20)
    await store.transition(job.id, JobState.QUEUED, owner="a", not_before=later, next_check_at=later)
    assert await claim(store) == []
    clock.advance(seconds=21)
    assert await claim(store) == [claimed]


async def test_fair_order_serves_each_member_in_turn(store: Store) -> None:
    alice = [(await store.create_job(new_job(user_id=1))).id for _ in range(3)]
    bob = (await store.create_job(new_job(user_id=2))).id
    carol = (await store.create_job(new_job(user_id=3))).id
    order = [job_id for job_id, _ in await store.queue_order("vidu")]
    assert order == [alice[0], bob, carol, alice[1], alice[2]]
    assert await claim(store, max_running=1) == [alice[0]]
    # Alice has a job out now, so everyone else goes before her next one.
    assert [job_id for job_id, _ in await store.queue_order("vidu")] == [bob, carol, alice[1], alice[2]]


async def test_a_transition_by_someone_without_the_lease_is_refused(store: Store) -> None:
    job = await store.create_job(new_job())
    await claim(store, owner="a")
    with pytest.raises(InvalidTransition):
        await store.transition(job.id, JobState.RUNNING, expect={JobState.SUBMITTING}, owner="b", task_id="t")
    moved = await store.transition(job.id, JobState.RUNNING, expect={JobState.SUBMITTING}, owner="a", task_id="t")
    assert moved.lease_owner is None


async def test_an_expired_lease_lets_another_holder_take_the_work(store: Store, clock: Clock) -> None:
    job = await store.create_job(new_job())
    await claim(store, owner="a")
    taken = await store.claim_due("vidu", JobState.SUBMITTING, owner="b", lease=LEASE, limit=10, horizon=timedelta(0))
    assert taken == []
    clock.advance(minutes=6)
    taken = await store.claim_due("vidu", JobState.SUBMITTING, owner="b", lease=LEASE, limit=10, horizon=timedelta(0))
    assert [claimed.id for claimed in taken] == [job.id]
    assert await store.release({job.id: {"provider_status": "late"}}, owner="a") == []
    assert await store.release({job.id: {"provider_status": "mine"}}, owner="b") == [job.id]


async def test_cancel_request_only_lands_on_a_job_being_sent(store: Store) -> None:
    job = await store.create_job(new_job())
    assert not await store.request_cancel(job.id)
    await claim(store)
    assert await store.request_cancel(job.id)
    sent = await store.get_job(job.id)
    assert sent is not None
    assert sent.cancel_requested


async def test_the_admission_is_checked_inside_the_write(store: Store, clock: Clock) -> None:
    admission = Admission(day_start=clock.current.replace(hour=0), active_per_user=1)
    results = await asyncio.gather(
        *(store.create_job(new_job(), admission=admission) for _ in range(8)), return_exceptions=True
    )
    created = [result for result in results if not isinstance(result, BaseException)]
    refused = [result for result in results if isinstance(result, LimitReached)]
    assert len(created) == 1
    assert len(refused) == 7
    assert refused[0].limit == "active"


async def test_daily_limits_are_per_member_and_per_server(store: Store, clock: Clock) -> None:
    admission = Admission(day_start=clock.current.replace(hour=0), per_user_per_day=2, per_guild_per_day=3)
    for _ in range(2):
        await store.create_job(new_job(user_id=1), admission=admission)
    with pytest.raises(LimitReached) as mine:
        await store.create_job(new_job(user_id=1), admission=admission)
    assert mine.value.limit == "user_day"
    await store.create_job(new_job(user_id=2), admission=admission)
    with pytest.raises(LimitReached) as server:
        await store.create_job(new_job(user_id=3), admission=admission)
    assert server.value.limit == "guild_day"


def query_plan(path: Path, sql: str, params: tuple[Any, ...]) -> str:
    with closing(sqlite3.connect(path)) as connection:
        return " | ".join(str(row[-1]) for row in connection.execute(f"EXPLAIN QUERY PLAN {sql}", params))


def test_the_quota_query_reads_by_index_not_the_whole_history(tmp_path: Path) -> None:
    async def make() -> None:
        store = await Store.open(tmp_path / "bot.db")
        await store.close()

    asyncio.run(make())
    from bot.store.store import _USAGE

    plan = query_plan(tmp_path / "bot.db", _USAGE, (1, 1, "2026-01-01", 1, "2026-01-01"))
    assert "SCAN jobs" not in plan
    assert "jobs_by_user_day" in plan
    assert "jobs_by_guild_day" in plan


async def test_retention_forgets_dead_tokens_and_old_finished_jobs(store: Store, clock: Clock) -> None:
    token_job = await store.create_job(
        new_job(interaction_token="secret", application_id=5, token_expires_at=clock.current + timedelta(minutes=15))
    )
    old = await store.create_job(new_job())
    await store.transition(old.id, JobState.CANCELLED)
    await store.mark_delivered(old.id)
    child = await store.create_job(new_job(parent_id=old.id))
    undelivered = await store.create_job(new_job())
    await store.transition(undelivered.id, JobState.FAILED)

    clock.advance(days=91)
    pruned = await store.prune(tokens_before=clock.current, jobs_before=clock.current - timedelta(days=90))

    assert pruned.tokens == 1
    assert pruned.jobs == 1
    kept = await store.get_job(token_job.id)
    assert kept is not None
    assert kept.interaction_token is None
    assert await store.get_job(old.id) is None
    assert await store.events(old.id) == []
    orphan = await store.get_job(child.id)
    assert orphan is not None
    assert orphan.parent_id is None
    # An announcement still owed is never pruned away.
    assert await store.get_job(undelivered.id) is not None


async def test_a_delivery_is_claimed_once_and_retried_when_it_fails(store: Store, clock: Clock) -> None:
    job = await store.create_job(new_job())
    await store.transition(job.id, JobState.FAILED, error_reason="no")
    [claimed] = await store.claim_deliveries(owner="a", lease=LEASE, limit=10)
    assert claimed.delivery_attempts == 1
    assert await store.claim_deliveries(owner="b", lease=LEASE, limit=10) == []
    await store.delivery_failed(job.id, owner="a", retry_at=clock.current + timedelta(seconds=30), detail="500")
    assert await store.claim_deliveries(owner="b", lease=LEASE, limit=10) == []
    clock.advance(seconds=31)
    [again] = await store.claim_deliveries(owner="b", lease=LEASE, limit=10)
    assert again.delivery_attempts == 2
    await store.delivery_failed(job.id, owner="b", retry_at=None, detail="given up")
    clock.advance(days=1)
    assert await store.claim_deliveries(owner="b", lease=LEASE, limit=10) == []


# Several processes on one ledger: each process is a store of its own (its own connections).


@pytest.fixture
async def processes(ledger: Path | str, clock: Clock, store: Store) -> AsyncIterator[list[Store]]:
    """Four more stores on the test's ledger, as four processes would open it (after ``store`` migrated it)."""
    opened = [await Store.open(ledger, now=clock) for _ in range(4)]
    yield opened
    for each in opened:
        await each.close()


async def claim_rounds(store: Store, owner: str, rounds: int, **options: Any) -> list[int]:
    claimed: list[int] = []
    for _ in range(rounds):
        claimed += await claim(store, owner=owner, **options)
        await asyncio.sleep(0)
    return claimed


async def race_claims(store: Store, processes: list[Store], clock: Clock, **options: Any) -> list[list[int]]:
    """Several races of four processes claiming sends at once; what each race claimed."""
    races = []
    # A race that overshoots needs one claimer to count before another commits and pick after: likely, not
    # certain, in any one race, so there are several.
    for _ in range(6):
        for user in range(40):
            await store.create_job(new_job(user_id=user))
        rounds = [claim_rounds(each, f"p{n}", 30, **options) for n, each in enumerate(processes)]
        races.append([job_id for taken in await asyncio.gather(*rounds) for job_id in taken])
        for job in await store.unfinished_jobs():
            await store.transition(job.id, JobState.CANCELLED)
        clock.advance(seconds=61)
    return races


async def test_claimers_in_several_processes_hold_the_running_cap_together(
    store: Store, processes: list[Store], clock: Clock
) -> None:
    for claimed in await race_claims(store, processes, clock, max_running=5, limit=2):
        assert len(claimed) == 5
        assert len(set(claimed)) == 5


async def test_claimers_in_several_processes_hold_the_per_minute_cap_together(
    store: Store, processes: list[Store], clock: Clock
) -> None:
    for claimed in await race_claims(store, processes, clock, per_minute={"image_to_video": 4}, limit=2):
        assert len(claimed) == 4
        assert len(set(claimed)) == 4


async def test_due_polls_are_leased_to_one_process_each(store: Store, processes: list[Store]) -> None:
    for user in range(60):
        await store.create_job(new_job(user_id=user))
    await claim(store, owner="sender")
    sent = [job.id for job in await store.unfinished_jobs()]
    await store.release({job_id: {"next_check_at": store.now()} for job_id in sent}, owner="sender")
    for job_id in sent:
        await store.transition(job_id, JobState.RUNNING, expect={JobState.SUBMITTING}, task_id=f"t{job_id}")

    async def poll_rounds(each: Store, owner: str) -> list[int]:
        polled: list[int] = []
        for _ in range(8):
            batch = await each.claim_due(
                "vidu", JobState.RUNNING, owner=owner, lease=LEASE, limit=10, horizon=timedelta(0)
            )
            polled += [job.id for job in batch]
            await asyncio.sleep(0)
        return polled

    rounds = await asyncio.gather(*(poll_rounds(each, f"p{n}") for n, each in enumerate(processes)))
    polled = [job_id for batch in rounds for job_id in batch]
    assert sorted(polled) == sorted(sent)
    assert len({owner for owner, batch in enumerate(rounds) if batch}) >= 1


async def test_a_lease_its_process_renews_is_never_taken(store: Store, processes: list[Store], clock: Clock) -> None:
    job = await store.create_job(new_job())
    alive, other = processes[0], processes[1]
    assert await claim(alive, owner="alive") == [job.id]
    for _ in range(4):
        clock.advance(minutes=3)
        assert await alive.renew_leases(["alive"], LEASE) == 1
        taken = await other.claim_due(
            "vidu", JobState.SUBMITTING, owner="other", lease=LEASE, limit=10, horizon=timedelta(0)
        )
        assert taken == []
        assert (await other.due_times(["vidu"])).checks == clock.current + LEASE
    # The process dies: nobody renews, and once the lease has run out another process takes the work over.
    clock.advance(minutes=5)
    taken = await other.claim_due(
        "vidu", JobState.SUBMITTING, owner="other", lease=LEASE, limit=10, horizon=timedelta(0)
    )
    assert [each.id for each in taken] == [job.id]
    assert await alive.renew_leases(["alive"], LEASE) == 0
    assert (await store.get_job(job.id)).lease_owner == "other"  # type: ignore[union-attr]


async def test_processes_starting_together_migrate_the_shared_ledger_once(postgres_url: str) -> None:
    opened = await asyncio.gather(*(Store.open(postgres_url) for _ in range(4)))
    try:
        versions = {await each.schema_version() for each in opened}
        assert versions == {len(list((MIGRATIONS / "postgresql").glob("*.sql")))}
        job = await opened[0].create_job(new_job())
        assert (await opened[3].get_job(job.id)) is not None
    finally:
        for each in opened:
            await each.close()


async def test_a_job_queued_in_one_process_wakes_the_others(postgres_url: str) -> None:
    writer, listener = await Store.open(postgres_url), await Store.open(postgres_url)
    woken = asyncio.Event()
    try:
        await listener.listen(woken.set)
        await writer.create_job(new_job())
        async with asyncio.timeout(10):
            await woken.wait()
        # Only a wake-up call: what changed is read from the ledger.
        assert [job.state for job in await listener.unfinished_jobs()] == [JobState.QUEUED]
    finally:
        await writer.close()
        await listener.close()


async def test_processes_are_counted_while_they_beat(store: Store, processes: list[Store], clock: Clock) -> None:
    beat = timedelta(seconds=30)
    assert await processes[0].heartbeat("a", alive_within=beat) == 1
    assert await processes[1].heartbeat("b", alive_within=beat) == 2
    clock.advance(seconds=20)
    assert await processes[0].heartbeat("a", alive_within=beat) == 2
    clock.advance(seconds=15)
    # b has not been seen for 35 s: it died, or stopped without a word.
    assert await processes[0].heartbeat("a", alive_within=beat) == 1
    await processes[1].heartbeat("b", alive_within=beat)
    await processes[1].forget_process("b")
    assert await processes[0].heartbeat("a", alive_within=beat) == 1


async def test_renewing_leases_never_deadlocks_with_a_release_of_the_same_jobs(postgres_url: str) -> None:
    # A release changes its rows in id order; a renewal that locked them in the table's physical order
    # could hold a later row while waiting for an earlier one, and one of the two was aborted as a deadlock.
    store = await Store.open(postgres_url)
    releasing = await asyncpg.connect(postgres_url)
    try:
        first, second = [(await store.create_job(new_job(key=f"k{n}"))).id for n in range(2)]
        assert await claim(store, owner="alive") == [first, second]
        # The first job's row version now lies after the second's, as any later change of it leaves it.
        await store.update_jobs({first: {"progress": 0.1}})
        release = releasing.transaction()
        await release.start()
        await releasing.execute("UPDATE jobs SET lease_owner = NULL WHERE id = $1", first)
        renewal = asyncio.create_task(store.renew_leases(["alive"], LEASE))

        async def renewal_waits() -> bool:
            waiting = await releasing.fetchval(
                "SELECT COUNT(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND (query LIKE 'UPDATE jobs%' OR query LIKE 'SELECT id FROM jobs%')"
            )
            return bool(waiting)

        async with asyncio.timeout(30):
            while True:
                if await renewal_waits():
                    break
                await asyncio.sleep(0.01)
        await releasing.execute("UPDATE jobs SET lease_owner = NULL WHERE id = $1", second)
        await release.commit()
        assert await renewal == 0
    finally:
        await releasing.close()
        await store.close()
