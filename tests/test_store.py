"""bot.store: the job ledger on a real SQLite file — migrations, the state machine, delivery and races."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import shutil
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import closing
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from bot.store import (
    FINISHED,
    UNFINISHED,
    Intake,
    IntakeKind,
    InvalidTransition,
    Job,
    JobEvent,
    JobState,
    NewJob,
    Store,
    StoreError,
    can_transition,
    intake_job_key,
)
from bot.store.models import TRANSITIONS

QUEUED = JobState.QUEUED
SUBMITTING = JobState.SUBMITTING
RUNNING = JobState.RUNNING
SUCCEEDED = JobState.SUCCEEDED
FAILED = JobState.FAILED
REJECTED = JobState.REJECTED
CANCELLED = JobState.CANCELLED
TIMED_OUT = JobState.TIMED_OUT

#: The project's own migrations folder, found from the repository layout rather than from the store module.
MIGRATIONS_DIR = Path(__file__).resolve().parents[1] / "bot" / "store" / "migrations" / "sqlite"
MIGRATION_FILES = sorted(MIGRATIONS_DIR.glob("[0-9][0-9][0-9][0-9]_*.sql"))
LATEST = len(MIGRATION_FILES)

#: The state machine as designed, written out by hand so a change to TRANSITIONS cannot go unnoticed.
ALLOWED = frozenset(
    {
        (QUEUED, SUBMITTING),
        (QUEUED, CANCELLED),
        (QUEUED, FAILED),
        (QUEUED, TIMED_OUT),
        (SUBMITTING, RUNNING),
        (SUBMITTING, QUEUED),
        (SUBMITTING, FAILED),
        (SUBMITTING, REJECTED),
        (SUBMITTING, CANCELLED),
        (RUNNING, SUCCEEDED),
        (RUNNING, FAILED),
        (RUNNING, REJECTED),
        (RUNNING, CANCELLED),
        (RUNNING, TIMED_OUT),
    }
)
PAIRS = list(itertools.product(JobState, repeat=2))
PAIR_IDS = [f"{current}->{wanted}" for current, wanted in PAIRS]

#: Allowed steps that take a fresh (queued) job to each state.
PATHS: dict[JobState, tuple[JobState, ...]] = {
    QUEUED: (),
    SUBMITTING: (SUBMITTING,),
    RUNNING: (SUBMITTING, RUNNING),
    SUCCEEDED: (SUBMITTING, RUNNING, SUCCEEDED),
    FAILED: (FAILED,),
    REJECTED: (SUBMITTING, REJECTED),
    CANCELLED: (CANCELLED,),
    TIMED_OUT: (TIMED_OUT,),
}

START = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)


class Clock:
    """A hand-driven clock for ``Store.open(now=...)``; every reading moves it on by ``tick``."""

    def __init__(self, start: datetime = START, tick: timedelta = timedelta(seconds=1)) -> None:
        self.current = start
        self.tick = tick

    def __call__(self) -> datetime:
        reading = self.current
        self.current = reading + self.tick
        return reading


Opener = Callable[..., Awaitable[Store]]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "jobs.db"


@pytest.fixture
async def open_store(clock: Clock) -> AsyncIterator[Opener]:
    """Opens stores (with the test clock unless told otherwise) and closes every one of them afterwards."""
    opened: list[Store] = []

    async def opener(path: Path | str, *, inject_clock: bool = True, **options: Any) -> Store:
        if inject_clock:
            options.setdefault("now", clock)
        store = await Store.open(path, **options)
        opened.append(store)
        return store

    yield opener
    for store in opened:
        await store.close()


@pytest.fixture
async def store(open_store: Opener, ledger: Path | str) -> Store:
    return await open_store(ledger)


@pytest.fixture
async def sqlite_store(open_store: Opener, db_path: Path) -> Store:
    """For what only SQLite shows: its file, its pragmas, a second plain connection."""
    return await open_store(db_path)


def new_job(**overrides: Any) -> NewJob:
    values: dict[str, Any] = {
        "channel_id": 2002,
        "user_id": 3003,
        "provider": "pixverse",
        "operation": "image_to_video",
        "params": {"prompt": "a cat on a skateboard", "duration": 5},
        "media": {"path": "/var/media/in.png", "kind": "image", "format": "png", "size": 48213},
        "guild_id": 1001,
        "model": "v5",
    }
    values.update(overrides)
    return NewJob(**values)


async def walk_to(store: Store, state: JobState, **overrides: Any) -> Job:
    """A new job brought to ``state`` through allowed transitions only."""
    job = await store.create_job(new_job(**overrides))
    for step in PATHS[state]:
        job = await store.transition(job.id, step, detail=f"walk to {state}")
    assert job.state is state
    return job


def plain_rows(path: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Rows read through a separate, plain sqlite3 connection."""
    with closing(sqlite3.connect(path)) as connection:
        return connection.execute(sql, params).fetchall()


def copy_real_migrations(folder: Path) -> None:
    folder.mkdir()
    for file in MIGRATION_FILES:
        shutil.copy(file, folder / file.name)


# --- opening ----------------------------------------------------------------------------------


def test_the_project_has_migrations() -> None:
    assert LATEST >= 1
    assert [int(file.name[:4]) for file in MIGRATION_FILES] == list(range(1, LATEST + 1))


async def test_open_creates_the_file_and_its_parent_folders(tmp_path: Path, open_store: Opener) -> None:
    path = tmp_path / "not" / "yet" / "there" / "jobs.db"
    assert not path.parent.exists()
    store = await open_store(path)
    assert path.is_file()
    assert await store.schema_version() == LATEST


async def test_open_sets_wal_for_other_connections_too(sqlite_store: Store, db_path: Path) -> None:
    await sqlite_store.create_job(new_job())
    assert plain_rows(db_path, "PRAGMA journal_mode") == [("wal",)]
    assert plain_rows(db_path, "PRAGMA user_version") == [(LATEST,)]


async def test_schema_version_is_the_number_of_migration_files(store: Store) -> None:
    assert await store.schema_version() == LATEST


async def test_foreign_keys_are_on_so_deleting_a_job_deletes_its_events(sqlite_store: Store, db_path: Path) -> None:
    doomed = await walk_to(sqlite_store, RUNNING)
    kept = await walk_to(sqlite_store, SUBMITTING)
    assert len(await sqlite_store.events(doomed.id)) == 3

    async with sqlite_store._transaction() as db:
        await db.execute("DELETE FROM jobs WHERE id = ?", (doomed.id,))

    assert await sqlite_store.get_job(doomed.id) is None
    assert await sqlite_store.events(doomed.id) == []
    assert plain_rows(db_path, "SELECT COUNT(*) FROM job_events WHERE job_id = ?", (doomed.id,)) == [(0,)]
    assert len(await sqlite_store.events(kept.id)) == 2

    # Control: a connection without the pragma leaves the events behind, so the cascade above is the store's doing.
    with closing(sqlite3.connect(db_path)) as connection:
        connection.execute("DELETE FROM jobs WHERE id = ?", (kept.id,))
        connection.commit()
    assert len(await sqlite_store.events(kept.id)) == 2


# --- migrations -------------------------------------------------------------------------------


async def test_reopening_keeps_the_data_and_does_not_migrate_again(
    open_store: Opener, db_path: Path, clock: Clock
) -> None:
    first = await open_store(db_path)
    job = await first.create_job(new_job(key="survivor"))
    job = await first.transition(job.id, SUBMITTING, task_id="task-1")
    events = await first.events(job.id)
    await first.close()

    second = await open_store(str(db_path))
    assert await second.schema_version() == LATEST
    assert await second.get_job(job.id) == job
    assert await second.get_job_by_key("survivor") == job
    assert await second.events(job.id) == events
    assert plain_rows(db_path, "SELECT COUNT(*) FROM jobs") == [(1,)]


async def test_a_newer_database_refuses_to_open_in_one_sentence(open_store: Opener, db_path: Path) -> None:
    first = await open_store(db_path)
    await first.create_job(new_job())
    await first.close()
    with closing(sqlite3.connect(db_path)) as connection:
        connection.execute(f"PRAGMA user_version = {LATEST + 1}")
        connection.commit()

    with pytest.raises(StoreError) as caught:
        await open_store(db_path)

    message = str(caught.value)
    assert str(db_path) in message
    assert "run the newer version" in message
    assert "DATABASE_URL" in message
    without_path = message.replace(str(db_path), "<file>")
    assert "\n" not in without_path
    assert without_path.endswith(".")
    assert without_path.count(".") == 1, without_path
    # Nothing was changed: same version, same data.
    assert plain_rows(db_path, "PRAGMA user_version") == [(LATEST + 1,)]
    assert plain_rows(db_path, "SELECT COUNT(*) FROM jobs") == [(1,)]


@pytest.mark.parametrize(
    "names",
    [
        ("0001_jobs.sql", "0003_more.sql"),
        ("0002_jobs.sql",),
        ("0001_jobs.sql", "0001_again.sql"),
    ],
    ids=["gap", "not-from-one", "duplicate"],
)
async def test_a_migrations_folder_with_a_gap_is_refused(
    tmp_path: Path, open_store: Opener, names: tuple[str, ...]
) -> None:
    folder = tmp_path / "migrations"
    folder.mkdir()
    for index, name in enumerate(names):
        sql = MIGRATION_FILES[0].read_text(encoding="utf-8") if index == 0 else "CREATE TABLE more (x INTEGER);"
        (folder / name).write_text(sql, encoding="utf-8")
    path = tmp_path / "jobs.db"

    with pytest.raises(StoreError, match="without gaps") as caught:
        await open_store(path, migrations_folder=folder)

    assert str(folder) in str(caught.value)
    assert plain_rows(path, "PRAGMA user_version") == [(0,)]
    assert plain_rows(path, "SELECT name FROM sqlite_master") == []


BAD_MIGRATION = """
CREATE TABLE extra (x INTEGER);
ALTER TABLE jobs ADD COLUMN note TEXT;
THIS IS NOT SQL;
"""


async def test_a_failing_migration_leaves_an_existing_database_at_its_old_version(
    tmp_path: Path, open_store: Opener, db_path: Path
) -> None:
    folder = tmp_path / "migrations"
    copy_real_migrations(folder)
    first = await open_store(db_path, migrations_folder=folder)
    job = await first.create_job(new_job())
    await first.close()
    columns_before = plain_rows(db_path, "SELECT name FROM pragma_table_info('jobs')")

    (folder / f"{LATEST + 1:04d}_broken.sql").write_text(BAD_MIGRATION, encoding="utf-8")
    with pytest.raises(
        StoreError, match=rf"\.db failed in .*{LATEST + 1:04d}_broken\.sql .*syntax error.*nothing was changed"
    ):
        await open_store(db_path, migrations_folder=folder)

    assert plain_rows(db_path, "PRAGMA user_version") == [(LATEST,)]
    assert plain_rows(db_path, "SELECT name FROM sqlite_master WHERE name = 'extra'") == []
    assert plain_rows(db_path, "SELECT name FROM pragma_table_info('jobs')") == columns_before
    again = await open_store(db_path)
    assert await again.schema_version() == LATEST
    assert await again.get_job(job.id) == job
    await again.close()

    # Once the migration is fixed it is applied, exactly once.
    (folder / f"{LATEST + 1:04d}_broken.sql").write_text("CREATE TABLE extra (x INTEGER);\n", encoding="utf-8")
    fixed = await open_store(db_path, migrations_folder=folder)
    assert await fixed.schema_version() == LATEST + 1
    assert await fixed.get_job(job.id) == job
    await fixed.close()
    reopened = await open_store(db_path, migrations_folder=folder)
    assert await reopened.schema_version() == LATEST + 1
    assert plain_rows(db_path, "SELECT name FROM sqlite_master WHERE name = 'extra'") == [("extra",)]


async def test_a_failing_migration_on_a_new_database_applies_nothing(tmp_path: Path, open_store: Opener) -> None:
    folder = tmp_path / "migrations"
    copy_real_migrations(folder)
    (folder / f"{LATEST + 1:04d}_broken.sql").write_text(BAD_MIGRATION, encoding="utf-8")
    path = tmp_path / "fresh.db"

    with pytest.raises(
        StoreError, match=rf"\.db failed in .*{LATEST + 1:04d}_broken\.sql .*syntax error.*nothing was changed"
    ):
        await open_store(path, migrations_folder=folder)

    assert plain_rows(path, "PRAGMA user_version") == [(0,)]
    assert plain_rows(path, "SELECT name FROM sqlite_master") == []


# --- creating jobs ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "new",
    [
        NewJob(
            channel_id=555000111222333444,
            user_id=777000111222333444,
            provider="vidu",
            operation="image_to_video",
            params={"prompt": "waves at dusk — café ✓", "duration": 8, "options": {"seed": [1, 2.5, None, True]}},
            media={"path": "/var/media/a.webp", "kind": "image", "format": "webp", "size": 10_485_760},
            guild_id=None,
            model="viduq1",
            message_id=987654321012345678,
            key="job-key-dm",
        ),
        NewJob(
            channel_id=1,
            user_id=2,
            provider="hidream",
            operation="stylize",
            params={},
            media={"path": "/var/media/b.png", "kind": "image"},
            guild_id=123456789012345678,
            model=None,
            message_id=None,
            key="job-key-guild",
        ),
    ],
    ids=["dm-with-message", "guild-without-model"],
)
async def test_create_job_round_trips_every_field(
    sqlite_store: Store, clock: Clock, db_path: Path, new: NewJob
) -> None:
    clock.current = datetime(2025, 3, 4, 17, 30, 15, 123456, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    created_at = clock.current

    job = await sqlite_store.create_job(new)

    for field in dataclasses.fields(NewJob):
        if field.name != "intake_id":  # not a column: it names the record the write removes
            assert getattr(job, field.name) == getattr(new, field.name), field.name
    assert job.state is QUEUED
    assert job.created_at == created_at
    assert job.created_at.tzinfo is UTC
    assert job.updated_at == created_at
    assert job.updated_at.tzinfo is UTC
    assert (job.task_id, job.progress, job.queue_position, job.provider_status) == (None, None, None, None)
    assert (job.video_url, job.cover_url, job.credits, job.error_kind, job.error_reason) == (None,) * 5
    assert (job.submit_attempts, job.poll_failures, job.cancel_requested) == (0, 0, False)
    assert (job.submitted_at, job.accepted_at, job.started_at, job.progress_at) == (None,) * 4
    assert (job.finished_at, job.not_before, job.delivered, job.delivered_at) == (None, None, False, None)
    assert await sqlite_store.get_job(job.id) == job
    assert await sqlite_store.get_job_by_key(new.key) == job

    events = await sqlite_store.events(job.id)
    assert events == [JobEvent(job_id=job.id, at=created_at, from_state=None, to_state=QUEUED, detail="created")]
    assert events[0].at.tzinfo is UTC

    [(params, media, created_text)] = plain_rows(
        db_path, "SELECT params, media, created_at FROM jobs WHERE id = ?", (job.id,)
    )
    assert json.loads(params) == new.params
    assert json.loads(media) == new.media
    assert created_text == "2025-03-04T12:00:15.123456+00:00"


async def test_create_job_with_the_real_clock_stamps_aware_utc(open_store: Opener, db_path: Path) -> None:
    store = await open_store(db_path, inject_clock=False)
    before = datetime.now(UTC)
    job = await store.create_job(new_job())
    after = datetime.now(UTC)
    assert job.created_at.tzinfo is UTC
    assert before <= job.created_at <= after


async def test_unknown_jobs_are_none(store: Store) -> None:
    assert await store.get_job(404) is None
    assert await store.get_job_by_key("no-such-key") is None
    assert await store.events(404) == []


async def test_a_dead_token_is_recorded_once_and_forgotten(store: Store) -> None:
    job = await store.create_job(new_job(application_id=77, interaction_token="tok", upload_limit=1024))
    assert job.token_dead_at is None

    await store.mark_token_dead(job.id)
    dead = await store.get_job(job.id)
    assert dead is not None
    assert dead.interaction_token is None
    assert dead.token_dead_at is not None
    await store.mark_token_dead(job.id)
    again = await store.get_job(job.id)
    assert again is not None
    assert again.token_dead_at == dead.token_dead_at


async def test_default_keys_are_unique(store: Store) -> None:
    first = await store.create_job(new_job())
    second = await store.create_job(new_job())
    assert first.key != second.key
    assert first.id != second.id


async def test_a_job_written_twice_under_one_key_exists_once(sqlite_store: Store, db_path: Path) -> None:
    original = await sqlite_store.create_job(new_job(key="same-key"))

    again = await sqlite_store.create_job(new_job(key="same-key", user_id=9))

    assert again == original
    assert plain_rows(db_path, "SELECT id, user_id FROM jobs") == [(original.id, original.user_id)]
    assert plain_rows(db_path, "SELECT COUNT(*) FROM job_events") == [(1,)]


# --- intake: commands recorded before they are acknowledged ---------------------------------------


def new_intake(interaction_id: int = 555, **overrides: Any) -> Intake:
    values: dict[str, Any] = {
        "interaction_id": interaction_id,
        "kind": IntakeKind.COMMAND,
        "channel_id": 2002,
        "user_id": 3003,
        "guild_id": 1001,
        "application_id": 77,
        "interaction_token": "tok-555",
        "token_expires_at": START + timedelta(minutes=15),
        "upload_limit": 10_000_000,
        "provider": "vidu",
        "operation": "image_to_video",
        "params": {"prompt": "a cat", "duration": 4},
        "attachment_url": "https://cdn.example/cat.png",
        "attachment_name": "cat.png",
        "attachment_type": "image/png",
        "attachment_size": 1234,
        "created_at": START,
    }
    values.update(overrides)
    return Intake(**values)


async def test_an_intake_round_trips_and_is_not_claimed_while_its_handler_holds_it(store: Store) -> None:
    await store.record_intake(new_intake(), owner="handler", lease=timedelta(minutes=5))
    await store.intake_acknowledged(555, 9999)
    await store.intake_upload_kept(555, "upload-555.bin")

    kept = await store.get_intake(555)
    assert kept is not None
    assert kept.params == {"prompt": "a cat", "duration": 4}
    assert (kept.message_id, kept.upload, kept.lease_owner) == (9999, "upload-555.bin", "handler")
    assert kept.token_expires_at == START + timedelta(minutes=15)
    assert await store.claim_intakes(owner="recovery", lease=timedelta(minutes=5)) == []


async def test_an_orphaned_intake_is_claimed_once_after_a_restart(store: Store) -> None:
    await store.record_intake(new_intake(), owner="dead process", lease=timedelta(minutes=5))
    await store.expire_leases()

    claimed = await store.claim_intakes(owner="recovery", lease=timedelta(minutes=5))

    assert [intake.interaction_id for intake in claimed] == [555]
    assert claimed[0].lease_owner == "recovery"
    assert await store.claim_intakes(owner="another", lease=timedelta(minutes=5)) == []


async def test_an_intake_held_by_a_live_handler_of_this_process_is_never_taken(store: Store) -> None:
    await store.record_intake(new_intake(555), owner="handler-here", lease=timedelta(seconds=1))
    await store.record_intake(new_intake(556), owner="handler-elsewhere", lease=timedelta(seconds=1))
    await store.expire_leases()

    claimed = await store.claim_intakes(owner="recovery", lease=timedelta(minutes=5), alive="handler-here")

    assert [intake.interaction_id for intake in claimed] == [556]


async def test_the_job_write_removes_its_intake_and_a_second_write_finds_the_first_job(store: Store) -> None:
    await store.record_intake(new_intake(), owner="handler", lease=timedelta(minutes=5))
    key = intake_job_key(555)

    first = await store.create_job(new_job(key=key, intake_id=555))
    second = await store.create_job(new_job(key=key, intake_id=555))

    assert second.id == first.id
    assert await store.get_intake(555) is None
    assert intake_job_key(555) == key != intake_job_key(556)


async def test_a_closed_intake_is_kept_as_the_record_until_the_job_retention(store: Store, clock: Clock) -> None:
    await store.record_intake(new_intake(), owner="handler", lease=timedelta(minutes=5))
    await store.close_intake(555, "restarted")

    closed = await store.get_intake(555)
    assert closed is not None
    assert (closed.outcome, closed.interaction_token, closed.lease_owner) == ("restarted", None, None)
    assert closed.closed_at is not None
    assert await store.claim_intakes(owner="recovery", lease=timedelta(minutes=5)) == []

    await store.prune(tokens_before=clock.current, jobs_before=closed.closed_at)
    assert await store.get_intake(555) is not None
    await store.prune(tokens_before=clock.current, jobs_before=closed.closed_at + timedelta(seconds=1))
    assert await store.get_intake(555) is None


async def test_an_intake_token_is_forgotten_after_it_expires(store: Store) -> None:
    await store.record_intake(new_intake(), owner="handler", lease=timedelta(minutes=5))
    await store.prune(tokens_before=START + timedelta(minutes=16), jobs_before=None)
    kept = await store.get_intake(555)
    assert kept is not None
    assert kept.interaction_token is None


# --- the state machine ------------------------------------------------------------------------


def test_transitions_are_the_designed_machine() -> None:
    assert set(TRANSITIONS) == set(JobState)
    assert {(current, wanted) for current, targets in TRANSITIONS.items() for wanted in targets} == ALLOWED
    assert {state for state in JobState if state.finished} == FINISHED
    assert {SUCCEEDED, FAILED, REJECTED, CANCELLED, TIMED_OUT} == FINISHED
    assert {QUEUED, SUBMITTING, RUNNING} == UNFINISHED
    assert set(JobState) == FINISHED | UNFINISHED


def test_paths_reach_their_states() -> None:
    for state, steps in PATHS.items():
        current = QUEUED
        for step in steps:
            assert (current, step) in ALLOWED
            current = step
        assert current is state


@pytest.mark.parametrize(("current", "wanted"), PAIRS, ids=PAIR_IDS)
def test_can_transition_matches_the_table(current: JobState, wanted: JobState) -> None:
    assert can_transition(current, wanted) is (wanted in TRANSITIONS[current])
    assert can_transition(current, wanted) is ((current, wanted) in ALLOWED)


@pytest.mark.parametrize(("current", "wanted"), PAIRS, ids=PAIR_IDS)
async def test_store_transition_follows_the_machine(
    store: Store, clock: Clock, current: JobState, wanted: JobState
) -> None:
    job = await walk_to(store, current)
    before = await store.get_job(job.id)
    events_before = await store.events(job.id)

    if (current, wanted) in ALLOWED:
        at = clock.current
        moved = await store.transition(job.id, wanted, detail="the step")
        assert moved.state is wanted
        assert moved.updated_at == at
        assert await store.get_job(job.id) == moved
        assert await store.events(job.id) == [
            *events_before,
            JobEvent(job_id=job.id, at=at, from_state=current, to_state=wanted, detail="the step"),
        ]
    else:
        with pytest.raises(InvalidTransition) as caught:
            await store.transition(job.id, wanted, detail="the step")
        assert (caught.value.job_id, caught.value.current, caught.value.wanted) == (job.id, current, wanted)
        assert await store.get_job(job.id) == before
        assert await store.events(job.id) == events_before


@pytest.mark.parametrize("finished", sorted(FINISHED))
async def test_finished_states_have_no_way_out(store: Store, finished: JobState) -> None:
    assert TRANSITIONS[finished] == frozenset()
    job = await walk_to(store, finished)
    events = await store.events(job.id)
    for wanted in JobState:
        assert not can_transition(finished, wanted)
        with pytest.raises(InvalidTransition):
            await store.transition(job.id, wanted, expect={finished})
    assert await store.get_job(job.id) == job
    assert await store.events(job.id) == events


async def test_expect_is_a_compare_and_set(store: Store, clock: Clock) -> None:
    job = await walk_to(store, SUBMITTING)
    events = await store.events(job.id)

    # The machine allows submitting -> running, but the caller expected the job to still be queued.
    with pytest.raises(InvalidTransition) as caught:
        await store.transition(job.id, RUNNING, expect={QUEUED})
    assert (caught.value.current, caught.value.wanted) == (SUBMITTING, RUNNING)
    with pytest.raises(InvalidTransition):
        await store.transition(job.id, CANCELLED, expect=[])
    assert await store.get_job(job.id) == job
    assert await store.events(job.id) == events

    running = await store.transition(job.id, RUNNING, expect=(QUEUED, SUBMITTING))
    assert running.state is RUNNING
    with pytest.raises(InvalidTransition):
        await store.transition(job.id, CANCELLED, expect=iter([QUEUED, SUBMITTING]))
    cancelled = await store.transition(job.id, CANCELLED, expect=(state for state in [RUNNING]))
    assert cancelled.state is CANCELLED
    assert [(event.from_state, event.to_state) for event in await store.events(job.id)][-2:] == [
        (SUBMITTING, RUNNING),
        (RUNNING, CANCELLED),
    ]


@pytest.mark.parametrize("finished", sorted(FINISHED))
async def test_finishing_sets_finished_at_and_clears_queue_position(
    store: Store, clock: Clock, finished: JobState
) -> None:
    job = await store.create_job(new_job())
    await store.update_jobs({job.id: {"queue_position": 4}})
    for step in PATHS[finished][:-1]:
        job = await store.transition(job.id, step, queue_position=2)
        assert job.finished_at is None
        assert job.queue_position == 2

    at = clock.current
    done = await store.transition(job.id, finished, queue_position=9, error_reason="the end")

    assert done.state is finished
    assert done.finished_at == at
    assert done.finished_at.tzinfo is UTC
    assert done.queue_position is None
    assert done.error_reason == "the end"
    assert await store.get_job(job.id) == done


async def test_unfinished_moves_keep_finished_at_empty(store: Store) -> None:
    job = await store.create_job(new_job())
    await store.update_jobs({job.id: {"queue_position": 7}})
    job = await store.transition(job.id, SUBMITTING)
    job = await store.transition(job.id, QUEUED, detail="requeued")
    job = await store.transition(job.id, SUBMITTING)
    job = await store.transition(job.id, RUNNING)
    assert job.finished_at is None
    assert job.queue_position == 7


async def test_transition_sets_fields_in_the_same_step(sqlite_store: Store, clock: Clock, db_path: Path) -> None:
    job = await walk_to(sqlite_store, SUBMITTING)
    accepted = datetime(2025, 6, 1, 5, 0, 0, 500000, tzinfo=timezone(timedelta(hours=-7)))

    moved = await sqlite_store.transition(
        job.id, RUNNING, task_id="task-77", accepted_at=accepted, submit_attempts=2, cancel_requested=True
    )

    assert (moved.task_id, moved.submit_attempts, moved.cancel_requested) == ("task-77", 2, True)
    assert moved.accepted_at == accepted
    assert moved.accepted_at.tzinfo is UTC
    assert plain_rows(db_path, "SELECT accepted_at, cancel_requested FROM jobs WHERE id = ?", (job.id,)) == [
        ("2025-06-01T12:00:00.500000+00:00", 1)
    ]


@pytest.mark.parametrize("field", ["state", "finished_at", "updated_at", "created_at", "delivery", "key", "bogus"])
async def test_transition_refuses_fields_it_does_not_own(store: Store, field: str) -> None:
    job = await store.create_job(new_job())
    with pytest.raises(ValueError, match=field):
        await store.transition(job.id, SUBMITTING, **{field: "x"})
    assert await store.get_job(job.id) == job
    assert len(await store.events(job.id)) == 1


async def test_transition_of_an_unknown_job_is_a_key_error(store: Store) -> None:
    with pytest.raises(KeyError):
        await store.transition(404, SUBMITTING)


# --- update_jobs ------------------------------------------------------------------------------


async def test_update_jobs_sets_different_fields_of_many_jobs_at_once(
    sqlite_store: Store, clock: Clock, db_path: Path
) -> None:
    a = await sqlite_store.create_job(new_job())
    b = await walk_to(sqlite_store, SUBMITTING)
    c = await sqlite_store.create_job(new_job())
    d = await sqlite_store.create_job(new_job())
    e = await walk_to(sqlite_store, RUNNING)
    f = await walk_to(sqlite_store, RUNNING)
    await sqlite_store.update_jobs({c.id: {"cancel_requested": True}})
    assert (await sqlite_store.get_job(c.id)).cancel_requested is True
    untouched = await sqlite_store.get_job(d.id)
    ids = (a.id, b.id, c.id, d.id, e.id, f.id)
    events = {job_id: await sqlite_store.events(job_id) for job_id in ids}
    accepted = datetime(2025, 5, 6, 9, 0, 0, 250000, tzinfo=timezone(timedelta(hours=-7)))
    not_before = datetime(2025, 5, 6, 17, 0, 0, tzinfo=UTC)
    at = clock.current

    await sqlite_store.update_jobs(
        {
            a.id: {"task_id": "task-a", "progress": 0.25, "provider_status": "processing", "queue_position": 3},
            b.id: {"accepted_at": accepted, "cancel_requested": True, "submit_attempts": 2},
            c.id: {"not_before": not_before, "poll_failures": 5, "credits": 12.5, "cancel_requested": False},
            # Same field set as f, given in another order: values must not be swapped.
            e.id: {"progress": 0.5, "video_url": "https://cdn.example/e.mp4"},
            f.id: {"video_url": "https://cdn.example/f.mp4", "progress": 0.75},
        }
    )

    a2, b2, c2, d2, e2, f2 = [await sqlite_store.get_job(job_id) for job_id in ids]
    assert (a2.task_id, a2.progress, a2.provider_status, a2.queue_position) == ("task-a", 0.25, "processing", 3)
    assert b2.accepted_at == accepted
    assert b2.accepted_at.tzinfo is UTC
    assert b2.cancel_requested is True
    assert b2.submit_attempts == 2
    assert c2.not_before == not_before
    assert c2.not_before.tzinfo is UTC
    assert (c2.poll_failures, c2.credits) == (5, 12.5)
    assert c2.cancel_requested is False
    assert (e2.progress, e2.video_url) == (0.5, "https://cdn.example/e.mp4")
    assert (f2.progress, f2.video_url) == (0.75, "https://cdn.example/f.mp4")
    assert d2 == untouched
    assert [job.state for job in (a2, b2, c2, e2, f2)] == [QUEUED, SUBMITTING, QUEUED, RUNNING, RUNNING]
    assert all(job.updated_at == at for job in (a2, b2, c2, e2, f2))
    assert {job_id: await sqlite_store.events(job_id) for job_id in ids} == events
    assert plain_rows(db_path, "SELECT accepted_at, cancel_requested FROM jobs WHERE id = ?", (b.id,)) == [
        ("2025-05-06T16:00:00.250000+00:00", 1)
    ]
    assert plain_rows(db_path, "SELECT cancel_requested FROM jobs WHERE id = ?", (c.id,)) == [(0,)]


async def test_update_jobs_with_an_unknown_field_writes_nothing(store: Store) -> None:
    a = await store.create_job(new_job())
    b = await store.create_job(new_job())

    with pytest.raises(ValueError, match="state"):
        await store.update_jobs({a.id: {"progress": 0.9}, b.id: {"progress": 0.1, "state": "succeeded"}})
    with pytest.raises(ValueError, match="finished_at"):
        await store.update_jobs({a.id: {"finished_at": datetime(2025, 1, 1, tzinfo=UTC)}})

    assert await store.get_job(a.id) == a
    assert await store.get_job(b.id) == b
    assert len(await store.events(a.id)) == 1


async def test_update_jobs_is_all_or_nothing_when_the_database_refuses(sqlite_store: Store) -> None:
    a = await sqlite_store.create_job(new_job())
    b = await sqlite_store.create_job(new_job())

    # a's update is written first; b's breaks a NOT NULL constraint, so a's must be rolled back.
    with pytest.raises(sqlite3.IntegrityError, match="NOT NULL"):
        await sqlite_store.update_jobs({a.id: {"progress": 0.5}, b.id: {"submit_attempts": None}})

    assert await sqlite_store.get_job(a.id) == a
    assert await sqlite_store.get_job(b.id) == b
    await sqlite_store.update_jobs({a.id: {"progress": 0.5}})
    assert (await sqlite_store.get_job(a.id)).progress == 0.5


async def test_update_jobs_with_nothing_to_do_changes_nothing(store: Store) -> None:
    job = await store.create_job(new_job())
    await store.update_jobs({})
    assert await store.get_job(job.id) == job


# --- delivery ---------------------------------------------------------------------------------


@pytest.mark.parametrize("unfinished", sorted(UNFINISHED))
async def test_mark_delivered_refuses_an_unfinished_job(store: Store, unfinished: JobState) -> None:
    job = await walk_to(store, unfinished)
    events = await store.events(job.id)
    assert await store.mark_delivered(job.id) is False
    assert await store.get_job(job.id) == job
    assert await store.events(job.id) == events


@pytest.mark.parametrize("finished", sorted(FINISHED))
async def test_mark_delivered_works_once_on_a_finished_job(store: Store, clock: Clock, finished: JobState) -> None:
    job = await walk_to(store, finished)
    at = clock.current

    assert await store.mark_delivered(job.id) is True
    delivered = await store.get_job(job.id)
    assert delivered.delivered is True
    assert delivered.delivered_at == at
    assert delivered.delivered_at.tzinfo is UTC
    assert delivered.state is finished
    assert delivered.finished_at == job.finished_at

    assert await store.mark_delivered(job.id) is False
    assert await store.get_job(job.id) == delivered
    events = await store.events(job.id)
    assert [event for event in events if event.detail == "delivered"] == [
        JobEvent(job_id=job.id, at=at, from_state=finished, to_state=finished, detail="delivered")
    ]
    assert len(events) == len(PATHS[finished]) + 2


async def test_mark_delivered_of_an_unknown_job_is_false(store: Store) -> None:
    assert await store.mark_delivered(404) is False


async def test_undelivered_and_unfinished_lists(store: Store) -> None:
    # Created in this order; the oldest jobs are moved last so id order differs from update order.
    running = await store.create_job(new_job())
    queued = await store.create_job(new_job())
    submitting = await walk_to(store, SUBMITTING)
    cancelled = await store.create_job(new_job())
    failed = await walk_to(store, FAILED)
    timed_out = await walk_to(store, RUNNING)
    delivered = await walk_to(store, SUCCEEDED)
    rejected = await walk_to(store, REJECTED)
    assert await store.mark_delivered(delivered.id) is True
    await store.transition(timed_out.id, TIMED_OUT)
    await store.transition(cancelled.id, CANCELLED)
    await store.update_jobs({queued.id: {"progress": 0.0}})
    await store.transition(running.id, SUBMITTING)
    await store.transition(running.id, RUNNING)

    unfinished = await store.unfinished_jobs()
    assert [job.id for job in unfinished] == [running.id, queued.id, submitting.id]
    assert [job.state for job in unfinished] == [RUNNING, QUEUED, SUBMITTING]
    assert unfinished == [await store.get_job(job.id) for job in unfinished]

    undelivered = await store.undelivered_jobs()
    assert [job.id for job in undelivered] == [cancelled.id, failed.id, timed_out.id, rejected.id]
    assert all(job.state.finished and not job.delivered for job in undelivered)
    assert undelivered == [await store.get_job(job.id) for job in undelivered]

    assert await store.mark_delivered(failed.id) is True
    assert [job.id for job in await store.undelivered_jobs()] == [cancelled.id, timed_out.id, rejected.id]


async def test_empty_store_lists_nothing(store: Store) -> None:
    assert await store.unfinished_jobs() == []
    assert await store.undelivered_jobs() == []


# --- median_run_seconds -----------------------------------------------------------------------


async def run_job(
    store: Store,
    clock: Clock,
    seconds: float,
    *,
    provider: str = "pixverse",
    model: str | None = "v5",
    end: JobState = SUCCEEDED,
    accepted: bool = True,
) -> Job:
    """A job accepted by the provider and ended ``seconds`` later."""
    job = await store.create_job(new_job(provider=provider, model=model))
    await store.transition(job.id, SUBMITTING)
    accepted_at = clock.current
    fields = {"accepted_at": accepted_at} if accepted else {}
    job = await store.transition(job.id, RUNNING, **fields)
    clock.current = accepted_at + timedelta(seconds=seconds)
    job = await store.transition(job.id, end)
    if accepted:
        assert job.finished_at - job.accepted_at == timedelta(seconds=seconds)
    return job


async def test_median_of_odd_and_even_counts(store: Store, clock: Clock) -> None:
    assert await store.median_run_seconds("pixverse", "v5") is None

    for seconds in (12.5, 100.0, 3.25):
        await run_job(store, clock, seconds)
    assert await store.median_run_seconds("pixverse", "v5") == pytest.approx(12.5, abs=1e-3)

    await run_job(store, clock, 7.75)
    assert await store.median_run_seconds("pixverse", "v5") == pytest.approx((7.75 + 12.5) / 2, abs=1e-3)

    await run_job(store, clock, 1.0)
    assert await store.median_run_seconds("pixverse", "v5") == pytest.approx(7.75, abs=1e-3)


async def test_median_is_per_provider_and_model(store: Store, clock: Clock) -> None:
    for seconds in (10, 20, 30):
        await run_job(store, clock, seconds, provider="pixverse", model="v5")
    await run_job(store, clock, 1000, provider="pixverse", model="v4")
    await run_job(store, clock, 500, provider="pixverse", model=None)
    await run_job(store, clock, 700, provider="pixverse", model=None)
    await run_job(store, clock, 7, provider="vidu", model="v5")
    # Only succeeded jobs with an acceptance time count.
    await run_job(store, clock, 9999, provider="pixverse", model="v5", end=FAILED)
    await run_job(store, clock, 9999, provider="pixverse", model="v5", end=TIMED_OUT)
    await run_job(store, clock, 9999, provider="pixverse", model="v5", accepted=False)
    await run_job(store, clock, 9999, provider="hidream", model=None, end=REJECTED)

    assert await store.median_run_seconds("pixverse", "v5") == pytest.approx(20, abs=1e-3)
    assert await store.median_run_seconds("pixverse", "v4") == pytest.approx(1000, abs=1e-3)
    assert await store.median_run_seconds("pixverse", None) == pytest.approx(600, abs=1e-3)
    assert await store.median_run_seconds("vidu", "v5") == pytest.approx(7, abs=1e-3)
    assert await store.median_run_seconds("vidu", None) is None
    assert await store.median_run_seconds("hidream", None) is None
    assert await store.median_run_seconds("pixverse", "v6") is None


async def test_median_uses_the_most_recently_finished_jobs(store: Store, clock: Clock) -> None:
    for seconds in (100, 200, 1, 2, 4):
        await run_job(store, clock, seconds)
    assert await store.median_run_seconds("pixverse", "v5") == pytest.approx(4, abs=1e-3)
    assert await store.median_run_seconds("pixverse", "v5", recent=3) == pytest.approx(2, abs=1e-3)
    assert await store.median_run_seconds("pixverse", "v5", recent=2) == pytest.approx(3, abs=1e-3)
    assert await store.median_run_seconds("pixverse", "v5", recent=4) == pytest.approx(3, abs=1e-3)


# --- jobs_of_user -----------------------------------------------------------------------------


async def test_jobs_of_user_newest_first_with_limit(store: Store) -> None:
    mine: list[Job] = []
    theirs: list[Job] = []
    for index in range(12):
        mine.append(await store.create_job(new_job(user_id=1)))
        if index % 3 == 0:
            theirs.append(await store.create_job(new_job(user_id=2)))
    newest_first = mine[::-1]

    assert await store.jobs_of_user(1, limit=3) == newest_first[:3]
    assert await store.jobs_of_user(1) == newest_first[:10]
    assert await store.jobs_of_user(1, limit=50) == newest_first
    assert await store.jobs_of_user(2) == theirs[::-1]
    assert await store.jobs_of_user(3) == []


# --- concurrency ------------------------------------------------------------------------------


async def test_racing_transitions_let_exactly_one_win(store: Store) -> None:
    job = await store.create_job(new_job())

    results = await asyncio.gather(
        *(store.transition(job.id, SUBMITTING, expect={QUEUED}, detail=f"racer {n}") for n in range(50)),
        return_exceptions=True,
    )

    winners = [index for index, result in enumerate(results) if isinstance(result, Job)]
    losers = [result for result in results if isinstance(result, InvalidTransition)]
    assert len(winners) == 1
    assert len(losers) == 49
    assert all((loser.current, loser.wanted) == (SUBMITTING, SUBMITTING) for loser in losers)
    events = await store.events(job.id)
    moves = [event for event in events if (event.from_state, event.to_state) == (QUEUED, SUBMITTING)]
    assert len(moves) == 1
    assert moves[0].detail == f"racer {winners[0]}"
    assert len(events) == 2
    assert (await store.get_job(job.id)).state is SUBMITTING


async def test_compare_and_set_race_across_two_connections(open_store: Opener, db_path: Path) -> None:
    # Submitting -> cancelled is allowed too, so only expect= stops a second winner here.
    stores = [await open_store(db_path), await open_store(db_path)]
    job = await stores[0].create_job(new_job())
    targets = [SUBMITTING, CANCELLED]

    results = await asyncio.gather(
        *(
            stores[n % 2].transition(job.id, targets[(n // 2) % 2], expect={QUEUED}, detail=f"racer {n}")
            for n in range(50)
        ),
        return_exceptions=True,
    )

    winners = [result for result in results if isinstance(result, Job)]
    losers = [result for result in results if isinstance(result, InvalidTransition)]
    assert len(winners) == 1
    assert len(losers) == 49
    final = await stores[1].get_job(job.id)
    assert final.state is winners[0].state
    assert all(loser.current is final.state for loser in losers)
    events = await stores[0].events(job.id)
    assert [(event.from_state, event.to_state) for event in events] == [(None, QUEUED), (QUEUED, final.state)]


async def test_many_concurrent_creates_all_succeed(sqlite_store: Store, db_path: Path) -> None:
    jobs = await asyncio.gather(*(sqlite_store.create_job(new_job(user_id=n)) for n in range(200)))

    assert len({job.id for job in jobs}) == 200
    assert len({job.key for job in jobs}) == 200
    assert [job.user_id for job in jobs] == list(range(200))
    assert all(job.state is QUEUED for job in jobs)
    assert plain_rows(db_path, "SELECT COUNT(*) FROM jobs") == [(200,)]
    per_job = plain_rows(db_path, "SELECT job_id, COUNT(*), MIN(detail) FROM job_events GROUP BY job_id")
    assert sorted(per_job) == sorted((job.id, 1, "created") for job in jobs)


async def test_a_cancelled_call_does_not_wedge_the_store(sqlite_store: Store, db_path: Path) -> None:
    # aiosqlite runs the BEGIN on its thread even though the awaiting task was cancelled.
    cancelled = asyncio.create_task(sqlite_store.create_job(new_job(key="cancelled")))
    await asyncio.sleep(0)
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled

    job = await sqlite_store.create_job(new_job(key="after"))

    assert await sqlite_store.get_job(job.id) == job
    assert await sqlite_store.get_job_by_key("cancelled") is None
    assert plain_rows(db_path, "SELECT key FROM jobs") == [("after",)]


async def test_a_queue_position_is_written_only_to_a_job_still_queued(store: Store) -> None:
    waiting = await store.create_job(new_job())
    claimed = await store.create_job(new_job())
    await store.transition(claimed.id, SUBMITTING, detail="claimed meanwhile")

    await store.set_queue_positions({waiting.id: 1, claimed.id: 2})

    assert (await store.get_job(waiting.id)).queue_position == 1  # type: ignore[union-attr]
    assert (await store.get_job(claimed.id)).queue_position is None  # type: ignore[union-attr]
