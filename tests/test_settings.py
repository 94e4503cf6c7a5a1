"""Server admins: /settings changes behaviour at once, /quota counts what is charged, limits hold across
a restart; end to end through the fake Discord."""

from __future__ import annotations

from typing import Any

import pytest

from bot.store import JobState
from simulators.fake_providers import Outcome
from tests.discord_world import World, answer, world

__all__ = ["world"]


async def settings(world: World, subcommand: str, *, user: Any = None, **options: Any) -> str:
    interaction = await world.discord.push_interaction(
        world.discord.slash("settings", subcommand=subcommand, options=options, user=user or world.discord.owner)
    )
    await world.discord.wait_until(lambda: world.discord.interaction(interaction).acknowledged)
    callback = world.discord.callbacks(interaction)[0]
    if callback.data.get("embeds"):
        embed = callback.data["embeds"][0]
        return " ".join(f"{field['name']}: {field['value']}" for field in embed["fields"])
    return answer(world, interaction)


async def refused(world: World, provider: str, **kwargs: Any) -> str:
    interaction = await world.animate(provider, **kwargs)
    await world.discord.wait_until(lambda: world.discord.interaction(interaction).acknowledged)
    [callback] = world.discord.callbacks(interaction)
    assert callback.type == 4
    assert callback.data["flags"] & 64
    return str(callback.data["content"])


async def test_only_members_who_manage_the_server_change_settings(world: World) -> None:
    async with world.running():
        command = world.discord.command("settings", world.discord.guild)
        assert str(command["default_member_permissions"]) == str(1 << 5)
        assert command["contexts"] == [0] or command.get("dm_permission") is False
        member = world.discord.add_user("mallory")
        world.discord.add_member(world.discord.guild, member)
        text = await settings(world, "provider", user=member, provider="vidu", enabled=False)
        assert text == "Only members who can manage this server can change the bot's settings."
        assert "Vidu off" not in await settings(world, "show")


async def test_each_setting_changes_behaviour_at_once(world: World) -> None:
    async with world.running():
        assert "Vidu off" in await settings(world, "provider", provider="vidu", enabled=False)
        assert (
            await refused(world, "vidu") == "Vidu is turned off on this server; pick another provider or ask an admin."
        )
        await settings(world, "provider", provider="vidu", enabled=True)

        other = world.discord.add_channel(world.discord.guild, "videos")
        shown = await settings(world, "channel", channel=other.id, allowed=True)
        assert f"<#{other.id}>" in shown
        assert (
            await refused(world, "pixverse")
            == f"The bot works only in <#{other.id}> on this server; start your job there."
        )
        await settings(world, "all_channels")

        log = world.discord.add_channel(world.discord.guild, "bot-log")
        await settings(world, "log_channel", channel=log.id)
        job = await world.finished((await world.job_for(await world.animate("vidu"))).id)
        await world.discord.wait_until(lambda: bool(world.discord.messages(log.id)))
        [line] = world.discord.messages(log.id)
        assert line.content.startswith(f"Job {job.id} · Vidu viduq2 · image to video · <@{job.user_id}> · done in ")


@pytest.mark.world(run_seconds=30)
async def test_active_and_daily_limits_answer_with_the_limit_and_the_reset(world: World) -> None:
    async with world.running():
        await settings(world, "limits", active=1)
        running = await world.job_for(await world.animate("hidream"))
        text = await refused(world, "hidream")
        assert text == (
            "You have 1 unfinished jobs, the most this server allows at once (1); start another when one ends."
        )
        cancel = await world.discord.push_interaction(
            world.discord.slash("jobs", subcommand="cancel", options={"job_id": running.id})
        )
        await world.discord.wait_until(lambda: world.discord.interaction(cancel).acknowledged)
        await world.reaches(running.id, lambda job: job.state is JobState.CANCELLED)

        await settings(world, "limits", active=0, server_daily=1)
        await world.job_for(await world.animate("hidream"))
        text = await refused(world, "pixverse")
        assert text.startswith("This server has used all 1 of its jobs for today; the count resets <t:")


async def test_failed_jobs_are_given_back_and_limits_hold_across_a_restart(world: World) -> None:
    world.providers["vidu"].outcomes.append(Outcome("failed"))
    async with world.running():
        await settings(world, "limits", per_member_daily=1)
        failed = await world.finished((await world.job_for(await world.animate("vidu"))).id)
        assert failed.state is JobState.FAILED
        done = await world.finished((await world.job_for(await world.animate("vidu"))).id)
        assert done.state is JobState.SUCCEEDED
        quota = await world.discord.push_interaction(world.discord.slash("quota"))
        await world.discord.wait_until(lambda: world.discord.interaction(quota).acknowledged)
        fields = {
            field["name"]: field["value"] for field in world.discord.callbacks(quota)[0].data["embeds"][0]["fields"]
        }
        assert fields["Your jobs today"] == "1 of 1 used, 0 left"
        assert fields["Unfinished now"] == "0 of 3 used, 3 left"
    async with world.running():
        text = await refused(world, "vidu")
        assert text.startswith("You have used all 1 of your jobs for today on this server; the count resets <t:")


@pytest.mark.world(run_seconds=1.0, settings={"max_active_jobs_per_user": 0})
async def test_results_go_by_dm_only_where_the_server_allows_it(world: World) -> None:
    async with world.running():
        await settings(world, "dm", allowed=False)
        job = await world.job_for(await world.animate("pixverse"))
        world.discord.advance(15 * 60 + 1)
        world.discord.forbid(job.channel_id)
        done = await world.finished(job.id)
        assert done.state is JobState.SUCCEEDED
        assert world.discord.messages(world.discord.dm_channel(done.user_id)) == []


@pytest.mark.world(run_seconds=30, settings={"vidu_max_running": 1, "max_active_jobs_per_user": 0})
async def test_a_saturated_provider_serves_people_in_turn_and_cards_show_it(world: World) -> None:
    async with world.running():
        bob = world.discord.add_user("bob")
        world.discord.add_member(world.discord.guild, bob)
        alice_jobs = [await world.job_for(await world.animate("vidu")) for _ in range(3)]
        bob_job = await world.job_for(await world.animate("vidu", user=bob))
        await world.reaches(alice_jobs[0].id, lambda job: job.state is JobState.RUNNING)

        # Positions settle as the queue changes: Bob's one job goes before Alice's second and third.
        await world.reaches(bob_job.id, lambda job: job.queue_position == 1)
        await world.reaches(alice_jobs[1].id, lambda job: job.queue_position == 2)
        await world.reaches(alice_jobs[2].id, lambda job: job.queue_position == 3)

        def card(job_id: int) -> str:
            message_id = {job.id: job.message_id for job in [*alice_jobs, bob_job]}[job_id]
            message = world.discord.message(message_id or 0)
            return str(message.embeds) if message else ""

        await world.discord.wait_until(lambda: "Number 1 in line" in card(bob_job.id), timeout=10)
        await world.discord.wait_until(lambda: "Number 3 in line" in card(alice_jobs[2].id), timeout=10)
