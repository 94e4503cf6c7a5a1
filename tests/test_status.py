"""/status: each provider's health and load as the ledger records it, jobs in flight and this server's usage; the
ledger's figures on SQLite and PostgreSQL, then end to end through the fake Discord and the fake providers."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from bot.store import Job, JobState, NewJob, Store
from simulators.fake_providers import Outcome
from tests.bench_status import IN_FLIGHT, measure
from tests.conftest import LedgerClock
from tests.discord_world import World, world

__all__ = ["world"]


def new_job(provider: str, model: str | None, operation: str = "image_to_video") -> NewJob:
    return NewJob(
        channel_id=10,
        user_id=1,
        guild_id=100,
        provider=provider,
        operation=operation,
        model=model,
        params={"prompt": "a wave"},
        media={"file": "x.png", "kind": "image"},
    )


async def ran(
    store: Store,
    clock: LedgerClock,
    state: JobState,
    *,
    provider: str = "vidu",
    model: str | None = "viduq2",
    operation: str = "image_to_video",
    seconds: float = 60,
) -> Job:
    """A job accepted by its provider now, then ended in ``state`` ``seconds`` later (the clock moves on)."""
    job = await store.create_job(new_job(provider, model, operation))
    await store.transition(job.id, JobState.SUBMITTING)
    await store.transition(job.id, JobState.RUNNING, accepted_at=clock.current)
    clock.current += timedelta(seconds=seconds)
    return await store.transition(job.id, state)


async def test_the_ledger_gives_each_providers_health_and_load(store: Store, clock: LedgerClock) -> None:
    # Two days ago: a success that is too old for the run times.
    await ran(store, clock, JobState.SUCCEEDED, seconds=5000)
    clock.current += timedelta(days=2)
    # Three hours ago: successes inside the last day, outside the last hour.
    await ran(store, clock, JobState.SUCCEEDED, seconds=100)
    await ran(store, clock, JobState.SUCCEEDED, model="viduq3-turbo", seconds=30)
    await ran(store, clock, JobState.FAILED, seconds=10)
    clock.current += timedelta(hours=3)
    # The last hour: two errors (failed, timed out) among six ended jobs; rejected and cancelled are no errors.
    await ran(store, clock, JobState.SUCCEEDED, seconds=60)
    last_vidu = await ran(store, clock, JobState.SUCCEEDED, seconds=80)
    await ran(store, clock, JobState.FAILED, seconds=5)
    await ran(store, clock, JobState.TIMED_OUT, seconds=5)
    await ran(store, clock, JobState.REJECTED, seconds=5)
    cancelled = await store.create_job(new_job("vidu", "viduq2"))
    await store.transition(cancelled.id, JobState.CANCELLED)
    await ran(store, clock, JobState.SUCCEEDED, provider="hidream", model=None, operation="stylize", seconds=40)
    await ran(store, clock, JobState.SUCCEEDED, provider="hidream", model=None, seconds=20)
    await ran(store, clock, JobState.SUCCEEDED, provider="hidream", model=None, seconds=30)
    # Waiting and running now: PixVerse has two in its queue, one being sent and one running.
    for _ in range(2):
        await store.create_job(new_job("pixverse", "v5"))
    sending = await store.create_job(new_job("pixverse", "v5"))
    await store.transition(sending.id, JobState.SUBMITTING)
    running = await store.create_job(new_job("pixverse", "v5"))
    await store.transition(running.id, JobState.SUBMITTING)
    await store.transition(running.id, JobState.RUNNING)
    # A provider this bot no longer knows still holds a job in flight.
    await store.create_job(new_job("retired", None))
    clock.current += timedelta(minutes=1)

    figures = await store.provider_figures(["hidream", "pixverse", "vidu"], now=clock.current)

    vidu = figures["vidu"]
    assert vidu.last_success == last_vidu.finished_at
    assert (vidu.errors_last_hour, vidu.ended_last_hour) == (2, 6)
    # The day's successes: viduq2 took 100, 60 and 80 s; viduq3-turbo 30 s.
    assert vidu.run_seconds == {"viduq2": 80, "viduq3-turbo": 30}
    assert (vidu.queued, vidu.running) == (0, 0)
    hidream = figures["hidream"]
    assert hidream.run_seconds == {"stylize": 40, "image_to_video": 25}
    assert (hidream.errors_last_hour, hidream.ended_last_hour) == (0, 3)
    pixverse = figures["pixverse"]
    assert (pixverse.queued, pixverse.running) == (2, 2)
    assert pixverse.last_success is None
    assert (pixverse.ended_last_hour, pixverse.run_seconds) == (0, {})
    assert figures["retired"].queued == 1
    assert sum(provider.in_flight for provider in figures.values()) == 5


async def test_a_ledger_with_no_jobs_gives_empty_figures_for_the_asked_providers(
    store: Store, clock: LedgerClock
) -> None:
    figures = await store.provider_figures(["hidream", "vidu"], now=clock.current)
    assert set(figures) == {"hidream", "vidu"}
    empty = figures["vidu"]
    assert (empty.queued, empty.running, empty.ended_last_hour, empty.errors_last_hour) == (0, 0, 0, 0)
    assert (empty.last_success, empty.run_seconds) == (None, {})


# End to end.


async def slash(world: World, name: str, *, subcommand: str | None = None, user: Any = None, **options: Any) -> Any:
    interaction = await world.discord.push_interaction(
        world.discord.slash(name, subcommand=subcommand, options=options, user=user or world.discord.owner)
    )
    await world.discord.wait_until(lambda: world.discord.interaction(interaction).acknowledged)
    return interaction


def embed_of(world: World, interaction: Any) -> dict[str, Any]:
    [callback] = world.discord.callbacks(interaction)
    assert callback.type == 4
    assert callback.data["flags"] & 64
    [embed] = callback.data["embeds"]
    return dict(embed)


def fields(embed: dict[str, Any]) -> dict[str, str]:
    return {field["name"]: field["value"] for field in embed["fields"]}


@pytest.mark.world(settings={"vidu_max_running": 1, "max_active_jobs_per_user": 0})
async def test_an_admin_sees_each_providers_health_and_load_and_the_servers_usage(world: World) -> None:
    world.providers["pixverse"].outcomes.append(Outcome("failed"))
    world.providers["vidu"].outcomes.append(Outcome(run_seconds=300))
    async with world.running():
        await slash(world, "settings", subcommand="limits", server_daily=10)
        done = await world.finished((await world.job_for(await world.animate("hidream"))).id)
        assert done.state is JobState.SUCCEEDED
        failed = await world.finished((await world.job_for(await world.animate("pixverse"))).id)
        assert failed.state is JobState.FAILED
        running = await world.job_for(await world.animate("vidu"))
        await world.reaches(running.id, lambda job: job.state is JobState.RUNNING)
        queued = await world.job_for(await world.animate("vidu"))
        await world.reaches(queued.id, lambda job: job.queue_position == 1)
        quota = fields(embed_of(world, await slash(world, "quota")))

        status = embed_of(world, await slash(world, "status"))

        shown = fields(status)
        assert done.finished_at is not None
        assert done.accepted_at is not None
        took = round((done.finished_at - done.accepted_at).total_seconds())
        assert shown["HiDream"] == (
            "Enabled\n"
            f"Last success: <t:{int(done.finished_at.timestamp())}:R>\n"
            "Errors in the last hour: 0% (0 of 1 ended jobs)\n"
            f"Median run time (last 24 h): image to video {took} s\n"
            "Queue: 0 waiting · 0 running"
        )
        assert shown["PixVerse"] == (
            "Enabled\n"
            "Last success: never\n"
            "Errors in the last hour: 100% (1 of 1 ended jobs)\n"
            "Median run time (last 24 h): no successes\n"
            "Queue: 0 waiting · 0 running"
        )
        assert shown["Vidu"] == (
            "Enabled\n"
            "Last success: never\n"
            "Errors in the last hour: no jobs\n"
            "Median run time (last 24 h): no successes\n"
            "Queue: 1 waiting · 1 running"
        )
        assert status["description"] == "2 jobs in flight on every server (1 waiting, 1 running)."
        # The same numbers /quota shows: the failed job is given back.
        assert shown["This server today"].startswith(f"Jobs: {quota['This server today']}\n")
        assert quota["This server today"] == "3 of 10 used, 7 left"


@pytest.mark.world(disabled=("hidream",))
async def test_status_is_for_members_who_manage_the_server(world: World) -> None:
    async with world.running():
        command = world.discord.command("status", world.discord.guild)
        assert str(command["default_member_permissions"]) == str(1 << 5)
        [synced] = [entry for sync in world.discord.syncs for entry in sync.payload if entry["name"] == "status"]
        assert str(synced["default_member_permissions"]) == str(1 << 5)
        assert synced.get("contexts") == [0] or synced.get("dm_permission") is False

        refused = await slash(world, "status", user=world.discord.user)
        [callback] = world.discord.callbacks(refused)
        assert callback.data["flags"] & 64
        assert callback.data.get("embeds") in (None, [])
        assert callback.data["content"] == "Only members who can manage this server can see the bot's status."

        await slash(world, "settings", subcommand="provider", provider="vidu", enabled=False)
        shown = fields(embed_of(world, await slash(world, "status")))
        assert shown["HiDream"] == "Not configured on this bot"
        assert shown["Vidu"].startswith("Turned off on this server\n")
        assert shown["PixVerse"].startswith("Enabled\n")


async def test_the_bench_ledger_holds_what_the_bench_says() -> None:
    measured = await measure(total=3000, rounds=2)
    assert measured.in_flight == sum(IN_FLIGHT.values())
    assert measured.ended_last_hour > 0
