"""Credits: what each job cost (or is expected to), what members and servers spent, and server budgets that
refuse a job before anything is billed; the ledger on SQLite and PostgreSQL, then end to end through the fake
Discord and the fake providers."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from bot.store import Admission, Job, JobState, LimitReached, NewJob, Store
from simulators.fake_providers.vidu import CREDITS_PER_SECOND
from tests.conftest import LedgerClock
from tests.discord_world import World, answer, world

__all__ = ["world"]

CLASS = "vidu/image_to_video/viduq2/5/720p"


def new_job(**overrides: Any) -> NewJob:
    values: dict[str, Any] = {
        "channel_id": 10,
        "user_id": 1,
        "guild_id": 100,
        "provider": "vidu",
        "operation": "image_to_video",
        "params": {"prompt": "a wave"},
        "media": {"file": "x.png", "kind": "image"},
        "cost_class": CLASS,
    }
    values.update(overrides)
    return NewJob(**values)


async def ended(store: Store, state: JobState, *, credits: float | None = None, **overrides: Any) -> Job:
    """A job taken to ``state``; ``credits`` is what the provider reported when it accepted the job."""
    job = await store.create_job(new_job(**overrides))
    if state in (JobState.FAILED, JobState.CANCELLED):
        return await store.transition(job.id, state)
    await store.transition(job.id, JobState.SUBMITTING)
    job = await store.transition(job.id, JobState.RUNNING, credits=credits)
    if state is JobState.RUNNING:
        return job
    return await store.transition(job.id, state)


def budgets(clock: LedgerClock, *, day: int = 0, month: int = 0) -> Admission:
    today = clock.current.replace(hour=0)
    return Admission(day_start=today, month_start=today.replace(day=1), credits_per_day=day, credits_per_month=month)


async def test_the_estimate_is_the_median_cost_of_earlier_succeeded_jobs_of_the_class(store: Store) -> None:
    first = await store.create_job(new_job())
    assert first.cost_class == CLASS
    assert first.estimated_credits is None
    for cost in (10, 40, 20):
        await ended(store, JobState.SUCCEEDED, credits=cost)
    await ended(store, JobState.RUNNING, credits=1000)
    await ended(store, JobState.FAILED)
    assert (await store.create_job(new_job())).estimated_credits == 20
    assert await store.estimate_credits(CLASS) == 20
    assert (await store.create_job(new_job(cost_class="vidu/image_to_video/viduq2/8/1080p"))).estimated_credits is None


async def test_spending_counts_what_the_job_quotas_count(store: Store, clock: LedgerClock) -> None:
    await ended(store, JobState.SUCCEEDED, credits=20)
    await ended(store, JobState.SUCCEEDED, credits=5, user_id=2)
    await ended(store, JobState.SUCCEEDED, credits=7, user_id=2, guild_id=200)
    await ended(store, JobState.REJECTED, credits=30)
    await ended(store, JobState.FAILED)
    await ended(store, JobState.CANCELLED)
    waiting = await store.create_job(new_job())
    assert waiting.estimated_credits == 7  # the median of 20, 5 and 7, held while it waits
    clock.current += timedelta(days=1)
    today = clock.current.replace(hour=0)
    await ended(store, JobState.SUCCEEDED, credits=3)

    spent = await store.credit_usage(user_id=1, guild_id=100, day_start=today, month_start=today.replace(day=1))
    assert (spent.user_today, spent.user_month) == (3, 30)
    assert (spent.guild_today, spent.guild_month) == (3, 35)
    next_month = today.replace(month=7, day=1)
    later = await store.credit_usage(user_id=2, guild_id=200, day_start=next_month, month_start=next_month)
    assert (later.user_today, later.user_month, later.guild_today, later.guild_month) == (0, 0, 0, 0)
    alone = await store.credit_usage(user_id=2, guild_id=None, day_start=today, month_start=today.replace(day=1))
    assert (alone.user_month, alone.guild_month) == (12, 0)


async def test_a_job_whose_estimate_would_overrun_the_daily_budget_is_not_written(
    store: Store, clock: LedgerClock
) -> None:
    for _ in range(2):
        await ended(store, JobState.SUCCEEDED, credits=20)
    admission = budgets(clock, day=55)
    with pytest.raises(LimitReached) as refused:
        await store.create_job(new_job(), admission=admission)
    assert refused.value.limit == "credits_day"
    assert refused.value.estimate == 20
    assert refused.value.credits is not None
    assert refused.value.credits.guild_today == 40
    assert len(await store.jobs_of_user(1, limit=10)) == 2

    # Another server's budget is its own; a class without history goes through while anything is left.
    assert (await store.create_job(new_job(guild_id=200), admission=admission)).estimated_credits == 20
    unknown = await store.create_job(new_job(cost_class="vidu/image_to_video/viduq2/8/1080p"), admission=admission)
    assert unknown.estimated_credits is None


async def test_the_monthly_budget_counts_earlier_days(store: Store, clock: LedgerClock) -> None:
    await ended(store, JobState.SUCCEEDED, credits=20)
    clock.current += timedelta(days=3)
    with pytest.raises(LimitReached) as refused:
        await store.create_job(new_job(), admission=budgets(clock, day=100, month=30))
    assert refused.value.limit == "credits_month"
    await store.create_job(new_job(), admission=budgets(clock, day=100, month=40))
    with pytest.raises(LimitReached) as spent:
        await store.create_job(new_job(cost_class="other"), admission=budgets(clock, day=100, month=40))
    assert spent.value.limit == "credits_month"  # nothing left: even a job of unknown cost waits


async def test_commands_racing_each_other_cannot_overrun_a_budget_together(store: Store, clock: LedgerClock) -> None:
    await ended(store, JobState.SUCCEEDED, credits=20)
    admission = budgets(clock, day=120)
    results = await asyncio.gather(
        *(store.create_job(new_job(user_id=10 + n), admission=admission) for n in range(8)), return_exceptions=True
    )
    created = [result for result in results if isinstance(result, Job)]
    refused = [result for result in results if isinstance(result, LimitReached)]
    assert len(created) == 5, results
    assert len(refused) == 3
    assert {result.limit for result in refused} == {"credits_day"}


# End to end: the fake Vidu reports each job's credits when it accepts it.

VIDU_COST = 5 * CREDITS_PER_SECOND["720p"]


async def slash(world: World, name: str, **options: Any) -> Any:
    subcommand = options.pop("subcommand", None)
    # Settings need the server's owner; everything else is asked by the member who starts the jobs.
    user = world.discord.owner if name == "settings" else None
    interaction = await world.discord.push_interaction(
        world.discord.slash(name, subcommand=subcommand, options=options, user=user)
    )
    await world.discord.wait_until(lambda: world.discord.interaction(interaction).acknowledged)
    return interaction


def fields(world: World, interaction: Any) -> dict[str, str]:
    embed = world.discord.callbacks(interaction)[0].data["embeds"][0]
    return {field["name"]: field["value"] for field in embed.get("fields", [])}


def card_status(world: World, job: Job) -> str:
    message = world.discord.message(job.message_id or 0)
    if message is None or not message.embeds:
        return ""
    return next(field["value"] for field in message.embeds[0]["fields"] if field["name"] == "Status")


@pytest.mark.world(run_seconds=1.0)
async def test_cards_lists_and_quota_show_what_jobs_cost(world: World) -> None:
    async with world.running():
        job = await world.finished((await world.job_for(await world.animate("vidu", duration=5))).id)
        assert job.state is JobState.SUCCEEDED
        assert job.credits == VIDU_COST
        await world.discord.wait_until(lambda: f"Cost: {VIDU_COST} credits" in card_status(world, job))

        listed = await slash(world, "jobs", subcommand="list")
        description = world.discord.callbacks(listed)[0].data["embeds"][0]["description"]
        assert f"`{job.id}` Vidu viduq2 · image to video · ✅ Done · {VIDU_COST} credits" in description

        shown = await slash(world, "jobs", subcommand="show", job_id=job.id)
        assert f"Cost: {VIDU_COST} credits" in fields(world, shown)["Status"]

        quota = fields(world, await slash(world, "quota"))
        assert quota["Your credits"] == f"today {VIDU_COST} credits · this month {VIDU_COST} credits"
        assert quota["This server's credits"] == f"today {VIDU_COST} credits\nthis month {VIDU_COST} credits"


@pytest.mark.world(run_seconds=1.0)
async def test_a_server_budget_refuses_a_job_before_anything_is_billed(world: World) -> None:
    async with world.running():
        shown = fields(world, await slash(world, "settings", subcommand="limits", credits_per_day=VIDU_COST + 5))
        assert shown["Credits per day"] == f"{VIDU_COST + 5} credits"
        assert shown["Credits per month"] == "no budget"
        first = await world.finished((await world.job_for(await world.animate("vidu", duration=5))).id)
        creates = world.providers["vidu"].route_count("create")

        interaction = await world.animate("vidu", duration=5)
        await world.discord.wait_until(lambda: bool(answer(world, interaction)))
        text = answer(world, interaction)
        assert text.startswith(
            f"This server's credit budget today is {VIDU_COST + 5} credits; 5 are left and this job would cost "
            f"about {VIDU_COST}, and the budget resets <t:"
        ), text
        assert world.providers["vidu"].route_count("create") == creates
        assert len(await world.store.jobs_of_user(first.user_id, limit=10)) == 1

        quota = fields(world, await slash(world, "quota"))
        assert quota["This server's credits"].startswith(
            f"today {VIDU_COST} of {VIDU_COST + 5} credits, 5 left\nthis month {VIDU_COST} credits"
        )

        # 0 takes the budget away again.
        await slash(world, "settings", subcommand="limits", credits_per_day=0)
        again = await world.job_for(await world.animate("vidu", duration=5))
        assert again.estimated_credits == VIDU_COST


@pytest.mark.world(run_seconds=30, settings={"vidu_max_running": 1, "max_active_jobs_per_user": 0})
async def test_a_waiting_card_shows_the_expected_cost(world: World) -> None:
    async with world.running():
        first = await world.finished((await world.job_for(await world.animate("vidu", duration=5))).id, within=60)
        assert first.credits == VIDU_COST
        running = await world.job_for(await world.animate("vidu", duration=5))
        await world.reaches(running.id, lambda job: job.state is JobState.RUNNING)
        waiting = await world.job_for(await world.animate("vidu", duration=5))
        assert waiting.estimated_credits == VIDU_COST
        await world.discord.wait_until(lambda: f"Cost: about {VIDU_COST} credits" in card_status(world, waiting))
