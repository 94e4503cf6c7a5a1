"""``python -m bot migrate-ledger FROM TO``: a SQLite ledger moved onto PostgreSQL, jobs and all."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest

from bot.__main__ import main
from bot.store import GuildSettings, Intake, IntakeKind, JobState, NewJob, Store


def new_job(user_id: int, **overrides: object) -> NewJob:
    values: dict[str, object] = {
        "channel_id": 10,
        "user_id": user_id,
        "guild_id": 1234567890123456789,
        "provider": "vidu",
        "operation": "image_to_video",
        "params": {"prompt": "a wave", "duration": 4},
        "media": {"file": "in.png", "kind": "image"},
        "message_id": 987654321098765432,
    }
    values.update(overrides)
    return NewJob(**values)  # type: ignore[arg-type]


async def a_lived_in_ledger(path: Path) -> dict[str, object]:
    store = await Store.open(path)
    try:
        queued = await store.create_job(new_job(1))
        running = await store.create_job(new_job(2))
        await store.transition(running.id, JobState.SUBMITTING)
        await store.transition(running.id, JobState.RUNNING, task_id="vidu-task-1", progress=40.0)
        done = await store.create_job(new_job(3))
        await store.transition(done.id, JobState.FAILED, error_reason="refused")
        await store.mark_delivered(done.id)
        child = await store.create_job(new_job(3, parent_id=done.id))
        await store.save_guild_settings(GuildSettings(1234567890123456789, max_active_per_user=2), by=5)
        await store.record_intake(
            Intake(
                interaction_id=1111111111111111111,
                kind=IntakeKind.COMMAND,
                channel_id=10,
                user_id=4,
                provider="pixverse",
                operation="image_to_video",
                params={"prompt": "x"},
                created_at=store.now(),
            ),
            owner="old",
            lease=timedelta(seconds=30),
        )
        return {
            "jobs": await store.get_jobs([queued.id, running.id, done.id, child.id]),
            "events": {job_id: await store.events(job_id) for job_id in (queued.id, running.id, done.id)},
        }
    finally:
        await store.close()


# The command runs its own event loop, as from a shell: these tests are synchronous around it.


def test_a_sqlite_ledger_moves_to_postgresql_with_its_jobs_events_settings_and_intakes(
    tmp_path: Path, postgres_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bot.db"
    before = asyncio.run(a_lived_in_ledger(path))

    assert main(["migrate-ledger", f"sqlite:///{path}", postgres_url]) == 0
    said = capsys.readouterr().out
    assert "4 jobs" in said
    assert "1 intakes" in said
    asyncio.run(check_moved(postgres_url, before))


async def check_moved(postgres_url: str, before: dict[str, object]) -> None:
    moved = await Store.open(postgres_url)
    try:
        jobs = before["jobs"]
        assert isinstance(jobs, list)
        assert await moved.get_jobs([job.id for job in jobs]) == jobs
        events = before["events"]
        assert isinstance(events, dict)
        for job_id, history in events.items():
            assert await moved.events(job_id) == history
        assert (await moved.guild_settings(1234567890123456789)).max_active_per_user == 2
        assert (await moved.get_intake(1111111111111111111)) is not None
        # The scheduler picks the moved jobs up where they were, and new jobs take fresh ids.
        assert [job.state for job in await moved.unfinished_jobs()] == [
            JobState.QUEUED,
            JobState.RUNNING,
            JobState.QUEUED,
        ]
        fresh = await moved.create_job(new_job(9))
        assert fresh.id > max(job.id for job in jobs)
    finally:
        await moved.close()


def test_a_target_that_already_holds_jobs_is_left_alone(
    tmp_path: Path, postgres_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bot.db"
    asyncio.run(a_lived_in_ledger(path))
    assert main(["migrate-ledger", f"sqlite:///{path}", postgres_url]) == 0
    capsys.readouterr()

    assert main(["migrate-ledger", f"sqlite:///{path}", postgres_url]) == 2
    said = capsys.readouterr().err
    assert said.strip() == (
        "The ledger was not copied: The target ledger already holds jobs; copy into a new, empty database."
    )
    asyncio.run(count_unfinished(postgres_url, expected=3))


async def count_unfinished(postgres_url: str, *, expected: int) -> None:
    moved = await Store.open(postgres_url)
    try:
        assert len(await moved.unfinished_jobs()) == expected
    finally:
        await moved.close()


def test_a_wrong_url_or_a_missing_file_is_one_sentence(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["migrate-ledger", "mysql://bot:hunter2@db/bot", f"sqlite:///{tmp_path / 'new.db'}"]) == 2
    said = capsys.readouterr().err
    assert "starts with sqlite:/// (then a path) or postgresql://" in said
    assert "hunter2" not in said

    assert main(["migrate-ledger", f"sqlite:///{tmp_path / 'none.db'}", f"sqlite:///{tmp_path / 'new.db'}"]) == 2
    assert "There is no ledger at" in capsys.readouterr().err
    assert not (tmp_path / "new.db").exists()
