"""Announcing finished jobs: a claimed step of the ledger's own, exactly once across crashes and races."""

from __future__ import annotations

import sqlite3
from contextlib import closing

from bot.store import JobState
from tests.discord_world import World, announcements, world

__all__ = ["world"]


def columns(world: World) -> set[str]:
    with closing(sqlite3.connect(world.tmp / "data" / "bot.db")) as connection:
        return {row[1] for row in connection.execute("PRAGMA table_info(jobs)")}


def forget_the_delivery(world: World, job_id: int) -> None:
    """The ledger as a crash leaves it when the announcement went out and its record did not."""
    with closing(sqlite3.connect(world.tmp / "data" / "bot.db")) as connection:
        connection.execute(
            "UPDATE jobs SET delivery = 'pending', delivered_at = NULL WHERE id = ?",
            (job_id,),
        )
        if "announce_started_at" in columns(world):
            connection.execute(
                "UPDATE jobs SET announce_started_at = finished_at, delivery_next_at = finished_at WHERE id = ?",
                (job_id,),
            )
        connection.commit()


async def test_a_crash_between_the_announcement_and_its_record_does_not_announce_again(world: World) -> None:
    async with world.running():
        interaction = await world.animate("vidu")
        job = await world.job_for(interaction)
        done = await world.finished(job.id)
    assert done.state is JobState.SUCCEEDED
    assert len(announcements(world, done)) == 1
    forget_the_delivery(world, job.id)

    async with world.running():
        again = await world.finished(job.id)
        assert again.delivered
    assert len(announcements(world, done)) == 1


async def test_an_announcement_that_fails_is_tried_again_and_posted_once(world: World) -> None:
    # The first announcement (the interaction's followup) is lost on the network.
    world.discord.drop_connection("POST", r"^/webhooks/\d+/[^/]+$")
    async with world.running():
        interaction = await world.animate("vidu")
        job = await world.job_for(interaction)
        done = await world.finished(job.id, within=30)
        assert done.delivery_attempts == 2
        details = [event.detail for event in await world.store.events(job.id)]
    assert any(detail.startswith("announcement failed") for detail in details)
    assert len(announcements(world, done)) == 1
