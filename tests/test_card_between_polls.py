"""The card between the provider's answers: it counts down the time earlier jobs like it took.

With callbacks a running job is asked about only every few minutes, so the presenter draws the cards of
running jobs again on a timer, from the expected run time the ledger gives (the median of earlier succeeded
jobs of the same cost class: provider, operation, model, duration and resolution).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from bot.jobs.service import cost_class
from bot.store import JobState, NewJob, Store
from bot.store.engines import numbered
from bot.store.store import RUN_TIMES_BY_CLASS, RUN_TIMES_BY_MODEL, is_postgres
from bot.ui.cards import progress_bar
from providers import Operation, VideoProvider
from providers.hidream import HiDream
from providers.vidu import Vidu
from simulators.fake_providers import FakeClock
from tests.discord_world import REQUIRED, World, status_of, world

__all__ = ["world"]

HISTORY_START = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


class StandingClock:
    """A clock for ``Store.open(now=...)`` that moves only when told."""

    def __init__(self, start: datetime) -> None:
        self.current = start

    def __call__(self) -> datetime:
        return self.current


async def seed_history(
    ledger: Path | str, runs: Sequence[tuple[str, str | None, str | None, float]], *, start: datetime
) -> None:
    """Succeeded, announced jobs of the past: (provider, model, cost class, seconds from acceptance to success)."""
    clock = StandingClock(start)
    store = await Store.open(ledger, now=clock)
    try:
        for provider, model, cost_class, seconds in runs:
            job = await store.create_job(
                NewJob(
                    channel_id=1,
                    user_id=2,
                    provider=provider,
                    operation="image_to_video",
                    model=model,
                    params={},
                    media={},
                    cost_class=cost_class,
                )
            )
            await store.transition(job.id, JobState.SUBMITTING)
            await store.transition(job.id, JobState.RUNNING, accepted_at=clock.current)
            clock.current += timedelta(seconds=seconds)
            await store.transition(job.id, JobState.SUCCEEDED)
            await store.mark_delivered(job.id)
            clock.current += timedelta(seconds=1)
    finally:
        await store.close()


# --- the expected run time -----------------------------------------------------------------------------

FIVE_S_720 = "vidu/image_to_video/q2/5/720p"
EIGHT_S_1080 = "vidu/image_to_video/q2/8/1080p"


async def test_the_run_time_is_the_median_of_the_jobs_of_the_same_cost_class(ledger: Path | str) -> None:
    await seed_history(
        ledger,
        [
            ("vidu", "q2", FIVE_S_720, 100),
            ("vidu", "q2", EIGHT_S_1080, 400),
            ("vidu", "q2", FIVE_S_720, 120),
            ("vidu", "q2", EIGHT_S_1080, 500),
            ("vidu", "q2", FIVE_S_720, 110),
            ("vidu", "q2", EIGHT_S_1080, 450),
            ("vidu", "q3", "vidu/image_to_video/q3/5/720p", 9),
        ],
        start=HISTORY_START,
    )
    store = await Store.open(ledger)
    try:
        assert await store.median_run_seconds("vidu", "q2", cost_class=FIVE_S_720) == pytest.approx(110, abs=1e-3)
        assert await store.median_run_seconds("vidu", "q2", cost_class=EIGHT_S_1080) == pytest.approx(450, abs=1e-3)
        # Without a class, the provider and model as before.
        assert await store.median_run_seconds("vidu", "q2") == pytest.approx((120 + 400) / 2, abs=1e-3)
    finally:
        await store.close()


async def test_a_class_with_too_few_jobs_falls_back_to_the_provider_and_model(ledger: Path | str) -> None:
    await seed_history(
        ledger,
        [
            ("vidu", "q2", FIVE_S_720, 100),
            ("vidu", "q2", FIVE_S_720, 120),
            ("vidu", "q2", EIGHT_S_1080, 400),
            ("vidu", "q2", None, 300),
            ("pixverse", "q2", FIVE_S_720.replace("vidu", "pixverse"), 5),
            ("vidu", None, "vidu/image_to_video//5/720p", 7),
        ],
        start=HISTORY_START,
    )
    store = await Store.open(ledger)
    try:
        # Two of the class are not enough: the four jobs of Vidu q2, whatever their class, are.
        assert await store.median_run_seconds("vidu", "q2", cost_class=FIVE_S_720) == pytest.approx(
            (120 + 300) / 2, abs=1e-3
        )
        assert await store.median_run_seconds("vidu", "q2", cost_class="vidu/image_to_video/q2/4/360p") == (
            pytest.approx((120 + 300) / 2, abs=1e-3)
        )
        assert await store.median_run_seconds("vidu", None, cost_class="vidu/image_to_video//8/1080p") == pytest.approx(
            7, abs=1e-3
        )
        assert await store.median_run_seconds("hidream", "v1", cost_class="hidream/image_to_video/v1//") is None
    finally:
        await store.close()


# --- the query plan over a large ledger ------------------------------------------------------------------

LEDGER_SIZE = 100_000

#: 100,000 jobs over three providers, four models (and none) and 48 cost classes, most of them succeeded.
FILL_SQLITE = """
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
INSERT INTO jobs (key, channel_id, user_id, provider, operation, model, params, media, state, cost_class,
                  created_at, accepted_at, finished_at, updated_at)
SELECT 'fill-' || i, 1, i % 500,
       CASE i % 3 WHEN 0 THEN 'vidu' WHEN 1 THEN 'pixverse' ELSE 'hidream' END,
       'image_to_video', CASE WHEN i % 100 = 7 THEN NULL ELSE 'm' || (i % 4) END, '{}', '{}',
       CASE WHEN i % 10 = 0 THEN 'failed' WHEN i % 50 = 1 THEN 'running' ELSE 'succeeded' END,
       CASE i % 3 WHEN 0 THEN 'vidu' WHEN 1 THEN 'pixverse' ELSE 'hidream' END
           || '/image_to_video/m' || (i % 4) || '/' || (i % 4) || '/' || (i % 12),
       printf('2025-%02d-%02dT%02d:00:00.000000+00:00', 1 + i % 12, 1 + i % 28, i % 24),
       printf('2025-%02d-%02dT%02d:00:10.000000+00:00', 1 + i % 12, 1 + i % 28, i % 24),
       printf('2025-%02d-%02dT%02d:%02d:00.000000+00:00', 1 + i % 12, 1 + i % 28, i % 24, 1 + i % 50),
       printf('2025-%02d-%02dT%02d:59:00.000000+00:00', 1 + i % 12, 1 + i % 28, i % 24)
FROM n
"""
FILL_POSTGRES = """
INSERT INTO jobs (key, channel_id, user_id, provider, operation, model, params, media, state, cost_class,
                  created_at, accepted_at, finished_at, updated_at)
SELECT 'fill-' || i, 1, i % 500,
       (ARRAY['vidu', 'pixverse', 'hidream'])[1 + i % 3],
       'image_to_video', CASE WHEN i % 100 = 7 THEN NULL ELSE 'm' || (i % 4) END, '{}', '{}',
       CASE WHEN i % 10 = 0 THEN 'failed' WHEN i % 50 = 1 THEN 'running' ELSE 'succeeded' END,
       (ARRAY['vidu', 'pixverse', 'hidream'])[1 + i % 3] || '/image_to_video/m' || (i % 4) || '/' || (i % 4)
           || '/' || (i % 12),
       format('2025-%s-%sT%s:00:00.000000+00:00', lpad((1 + i % 12)::text, 2, '0'),
              lpad((1 + i % 28)::text, 2, '0'), lpad((i % 24)::text, 2, '0')),
       format('2025-%s-%sT%s:00:10.000000+00:00', lpad((1 + i % 12)::text, 2, '0'),
              lpad((1 + i % 28)::text, 2, '0'), lpad((i % 24)::text, 2, '0')),
       format('2025-%s-%sT%s:%s:00.000000+00:00', lpad((1 + i % 12)::text, 2, '0'),
              lpad((1 + i % 28)::text, 2, '0'), lpad((i % 24)::text, 2, '0'), lpad((1 + i % 50)::text, 2, '0')),
       format('2025-%s-%sT%s:59:00.000000+00:00', lpad((1 + i % 12)::text, 2, '0'),
              lpad((1 + i % 28)::text, 2, '0'), lpad((i % 24)::text, 2, '0'))
FROM generate_series(1, $1) AS i
"""


async def query_plans(ledger: Path | str, queries: Sequence[tuple[str, tuple[Any, ...]]]) -> list[str]:
    """Fill the (migrated) ledger with a large history, let the database gather its statistics, and explain."""
    if is_postgres(ledger):
        connection = await asyncpg.connect(str(ledger))
        try:
            await connection.execute(FILL_POSTGRES, LEDGER_SIZE)
            await connection.execute("ANALYZE jobs")
            return [
                "\n".join(row[0] for row in await connection.fetch(f"EXPLAIN {numbered(sql)}", *params))
                for sql, params in queries
            ]
        finally:
            await connection.close()
    with closing(sqlite3.connect(ledger)) as db:
        db.execute(FILL_SQLITE, (LEDGER_SIZE,))
        db.commit()
        db.execute("ANALYZE")
        return [
            " | ".join(str(row[-1]) for row in db.execute(f"EXPLAIN QUERY PLAN {sql}", params))
            for sql, params in queries
        ]


async def test_the_run_time_query_probes_indexes_on_both_ledgers(ledger: Path | str) -> None:
    store = await Store.open(ledger)
    await store.close()
    same_model = RUN_TIMES_BY_MODEL.format(same_model="model = ?")
    by_class, by_model, by_null_model = await query_plans(
        ledger,
        [
            (f"{RUN_TIMES_BY_CLASS} UNION ALL {same_model}", ("vidu/image_to_video/m0/0/0", 50, "vidu", "m0", 50)),
            (same_model, ("pixverse", "m3", 50)),
            (RUN_TIMES_BY_MODEL.format(same_model="model IS NULL"), ("pixverse", 50)),
        ],
    )
    for plan in (by_class, by_model, by_null_model):
        assert "Seq Scan" not in plan
        assert "SCAN jobs" not in plan.replace("SCAN jobs USING", "")
        assert "Sort" not in plan
        assert "TEMP B-TREE" not in plan
    assert "jobs_run_times_by_class" in by_class
    assert "jobs_finished_by_model" in by_class
    assert "jobs_finished_by_model" in by_model
    assert "jobs_finished_by_model" in by_null_model


# --- end to end: the card moves on without the provider being asked -----------------------------------------


def class_and_model(provider: type[VideoProvider], name: str, params: dict[str, Any]) -> tuple[str, str | None]:
    """The cost class and model a job of these options gets (the job's own record is checked against it)."""
    resolved = provider.capabilities[Operation.IMAGE_TO_VIDEO].resolve(params)
    model = resolved.get("model")
    return cost_class(name, Operation.IMAGE_TO_VIDEO, resolved), str(model) if model else None


def provider_requests(fake: Any) -> int:
    return sum(fake.route_count(route) for route in fake.route_names)


async def card_status(world: World, interaction: Any, wanted: Callable[[str], bool], within: float = 15.0) -> str:
    """The card's status text once it satisfies ``wanted``."""
    async with asyncio.timeout(within):
        while True:
            card = world.discord.original(interaction)
            if card is not None and card.embeds and wanted(status := status_of(card)):
                return status
            await asyncio.sleep(0.02)


#: Earlier jobs of the class took 345 s: a job accepted a moment ago has "About 6 min left" for 45 s.
TYPICAL_SECONDS = 345.0


@pytest.mark.world(run_seconds=3600, settings={"poll_interval_seconds": 3600})
async def test_between_polls_the_card_counts_down_the_minutes_earlier_jobs_took(world: World) -> None:
    vidu_class, vidu_model = class_and_model(Vidu, "vidu", REQUIRED["vidu"])
    # Three of the job's class, and four of the same model at another length and resolution that took far longer.
    history = [("vidu", vidu_model, vidu_class, TYPICAL_SECONDS)] * 3
    history += [("vidu", vidu_model, "vidu/image_to_video/other/16/1080p", 1800.0)] * 4
    await seed_history(world.tmp / "data" / "bot.db", history, start=datetime.now(UTC) - timedelta(days=1))
    vidu = world.providers["vidu"]
    async with world.running() as bot:
        bot.presenter.refresh_seconds = 0.1
        interaction = await world.animate("vidu")
        job = await world.job_for(interaction)
        job = await world.reaches(job.id, lambda job: job.state is JobState.RUNNING)
        assert job.cost_class == vidu_class

        first = await card_status(world, interaction, lambda status: "min left" in status)
        assert "About 6 min left" in first
        asked = provider_requests(vidu)

        world.discord.advance(60)
        later = await card_status(world, interaction, lambda status: "About 5 min left" in status)

        # Discord stops honouring the interaction's token: the next minute goes through the bot token.
        world.discord.revoke_token(interaction)
        world.discord.advance(60)
        last = await card_status(world, interaction, lambda status: "About 4 min left" in status)
        assert (await world.reaches(job.id, lambda job: job.token_dead_at is not None)).token_dead_at is not None

        assert provider_requests(vidu) == asked
        assert vidu.route_count("creations") == 0
        for status in (first, later, last):
            assert "%" not in status
            assert "Generating" in status
    refused = [request for request in world.discord.requests_to("PATCH", r"/webhooks/.*") if request.status == 401]
    assert len(refused) == 1
    assert world.discord.requests_to("PATCH", rf"/channels/\d+/messages/{job.message_id}")


@pytest.mark.world(run_seconds=600)
async def test_a_percentage_from_the_provider_replaces_the_countdown(world: World) -> None:
    hidream_class, hidream_model = class_and_model(HiDream, "hidream", REQUIRED["hidream"])
    await seed_history(
        world.tmp / "data" / "bot.db",
        [("hidream", hidream_model, hidream_class, TYPICAL_SECONDS)] * 3,
        start=datetime.now(UTC) - timedelta(days=1),
    )
    # HiDream's time stands still while its task waits in its queue: its answers bring no percentage yet.
    hidream_time = FakeClock()
    world.providers["hidream"].clock = hidream_time
    async with world.running() as bot:
        bot.presenter.refresh_seconds = 0.1
        interaction = await world.animate("hidream")
        job = await world.job_for(interaction)
        await world.reaches(job.id, lambda job: job.state is JobState.RUNNING)
        waiting = await card_status(world, interaction, lambda status: "min left" in status)
        assert "About 6 min left" in waiting

        # Half of the task's 600 s later, the next answer says 50 %.
        hidream_time.advance(300.05)
        status = await card_status(world, interaction, lambda status: progress_bar(0.5) in status)
        assert "Expected <t:" in status
        assert "left" not in status
        assert "longer than usual" not in status
