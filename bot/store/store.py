"""The only module that writes SQL: the job ledger on aiosqlite.

WAL journal, foreign keys on, timestamps as ISO-8601 UTC text. Numbered migration files are applied
at start in one transaction and the schema version is kept in ``PRAGMA user_version``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosqlite

from bot.store.models import (
    GuildSettings,
    InvalidTransition,
    Job,
    JobEvent,
    JobState,
    NewJob,
    can_transition,
)

MIGRATIONS = Path(__file__).with_name("migrations")
_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")

#: Columns other code may set; everything else is owned by the ledger itself.
UPDATABLE = frozenset(
    {
        "message_id",
        "task_id",
        "progress",
        "queue_position",
        "provider_status",
        "video_url",
        "cover_url",
        "credits",
        "error_kind",
        "error_reason",
        "submit_attempts",
        "poll_failures",
        "cancel_requested",
        "submitted_at",
        "accepted_at",
        "started_at",
        "progress_at",
        "not_before",
        "interaction_token",
        "token_expires_at",
    }
)


@dataclass(frozen=True, slots=True)
class Usage:
    """How many jobs count against a member's and a server's limits."""

    active: int
    user_today: int
    guild_today: int


class StoreError(Exception):
    """The database cannot be used; the message says why in one sentence."""


def utc_now() -> datetime:
    return datetime.now(UTC)


def migrations(folder: Path = MIGRATIONS) -> list[tuple[int, Path]]:
    """The migration files in order, numbered from 1 without gaps."""
    found = sorted(
        (int(match.group(1)), path)
        for path in folder.iterdir()
        if (match := _MIGRATION_NAME.match(path.name)) is not None
    )
    if [number for number, _ in found] != list(range(1, len(found) + 1)):
        raise StoreError(f"The migrations in {folder} are not numbered 0001, 0002, ... without gaps.")
    return found


class Store:
    """The job ledger. One connection; a lock keeps each transaction whole."""

    def __init__(self, db: aiosqlite.Connection, *, now: Callable[[], datetime] = utc_now) -> None:
        self._db = db
        self._now = now
        self._lock = asyncio.Lock()

    @classmethod
    async def open(
        cls, path: Path | str, *, now: Callable[[], datetime] = utc_now, migrations_folder: Path = MIGRATIONS
    ) -> Store:
        """Open (or create) the database at ``path`` and bring its schema up to date."""
        path = Path(path)
        files = migrations(migrations_folder)
        if str(path) != ":memory:":
            path.parent.mkdir(parents=True, exist_ok=True)
        db = await aiosqlite.connect(path, isolation_level=None)
        try:
            db.row_factory = aiosqlite.Row
            await db.execute("PRAGMA busy_timeout = 5000")
            await _refuse_newer(db, path, files)
            await db.execute("PRAGMA journal_mode = WAL")
            await db.execute("PRAGMA foreign_keys = ON")
            await db.execute("PRAGMA synchronous = NORMAL")
            await _migrate(db, path, files)
        except BaseException:
            await db.close()
            raise
        return cls(db, now=now)

    async def close(self) -> None:
        await self._db.close()

    async def check_writable(self) -> bool:
        """Whether the ledger can take a write right now (takes and releases the write lock)."""
        try:
            async with self._transaction():
                pass
        except sqlite3.Error:
            return False
        return True

    async def schema_version(self) -> int:
        rows = await self._rows("PRAGMA user_version")
        return int(rows[0][0]) if rows else 0

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._lock:
            try:
                await self._db.execute("BEGIN IMMEDIATE")
                yield self._db
            except BaseException:
                # A cancelled await may still have its BEGIN run on the connection's thread; the
                # ROLLBACK queues behind it. If the BEGIN itself failed there is nothing to undo.
                with contextlib.suppress(sqlite3.OperationalError):
                    await self._db.execute("ROLLBACK")
                raise
            await self._db.execute("COMMIT")

    async def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[aiosqlite.Row]:
        # Reads share the connection with transactions, so they wait for them: never a half-done write.
        async with self._lock:
            return list(await self._db.execute_fetchall(sql, params))

    def _stamp(self) -> str:
        return self._now().astimezone(UTC).isoformat(timespec="microseconds")

    # Jobs.

    async def create_job(self, new: NewJob) -> Job:
        """Record a new job, queued."""
        now = self._stamp()
        async with self._transaction() as db:
            cursor = await db.execute(
                "INSERT INTO jobs (key, guild_id, channel_id, user_id, message_id, provider, operation, model,"
                " params, media, state, created_at, updated_at, application_id, interaction_token,"
                " token_expires_at, upload_limit, parent_id)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    new.key,
                    new.guild_id,
                    new.channel_id,
                    new.user_id,
                    new.message_id,
                    new.provider,
                    new.operation,
                    new.model,
                    json.dumps(new.params, sort_keys=True),
                    json.dumps(new.media, sort_keys=True),
                    JobState.QUEUED.value,
                    now,
                    now,
                    new.application_id,
                    new.interaction_token,
                    _column_value(new.token_expires_at),
                    new.upload_limit,
                    new.parent_id,
                ),
            )
            job_id = cursor.lastrowid
            assert job_id is not None
            await _add_event(db, job_id, now, None, JobState.QUEUED, "created")
            return await _fetch(db, job_id)

    async def get_job(self, job_id: int) -> Job | None:
        jobs = await self._select("SELECT * FROM jobs WHERE id = ?", (job_id,))
        return jobs[0] if jobs else None

    async def get_jobs(self, job_ids: Sequence[int]) -> list[Job]:
        """The jobs with these ids, in id order; ids with no job are left out."""
        found: list[Job] = []
        for start in range(0, len(job_ids), 500):
            chunk = list(job_ids[start : start + 500])
            marks = ", ".join("?" for _ in chunk)
            found += await self._select(f"SELECT * FROM jobs WHERE id IN ({marks}) ORDER BY id", chunk)  # noqa: S608
        return sorted(found, key=lambda job: job.id)

    async def get_job_by_key(self, key: str) -> Job | None:
        jobs = await self._select("SELECT * FROM jobs WHERE key = ?", (key,))
        return jobs[0] if jobs else None

    async def unfinished_jobs(self) -> list[Job]:
        """Every job not yet in a finished state, oldest first."""
        return await self._select("SELECT * FROM jobs WHERE state IN ('queued', 'submitting', 'running') ORDER BY id")

    async def undelivered_jobs(self) -> list[Job]:
        """Finished jobs whose end has not been announced yet, oldest first."""
        return await self._select(
            "SELECT * FROM jobs WHERE delivery = 'pending'"
            " AND state IN ('succeeded', 'failed', 'rejected', 'cancelled', 'timed_out') ORDER BY id"
        )

    async def jobs_of_user(self, user_id: int, *, limit: int = 10) -> list[Job]:
        return await self._select("SELECT * FROM jobs WHERE user_id = ? ORDER BY id DESC LIMIT ?", (user_id, limit))

    async def _select(self, sql: str, params: Sequence[Any] = ()) -> list[Job]:
        return [Job.from_row(row) for row in await self._rows(sql, params)]

    async def transition(
        self,
        job_id: int,
        to_state: JobState,
        *,
        detail: str = "",
        expect: Iterable[JobState] | None = None,
        **fields: Any,
    ) -> Job:
        """Move a job to ``to_state`` and set ``fields``, recording the change as an event.

        Raises InvalidTransition when the state machine refuses, or when ``expect`` is given and the
        job is no longer in one of those states (someone else moved it first).
        """
        columns = _checked_columns(fields)
        now = self._stamp()
        async with self._transaction() as db:
            rows = list(await db.execute_fetchall("SELECT state FROM jobs WHERE id = ?", (job_id,)))
            row = rows[0] if rows else None
            if row is None:
                raise KeyError(job_id)
            current = JobState(row["state"])
            allowed = set(expect) if expect is not None else None
            if not can_transition(current, to_state) or (allowed is not None and current not in allowed):
                raise InvalidTransition(job_id, current, to_state)
            values = dict(columns)
            values["state"] = to_state.value
            values["updated_at"] = now
            if to_state.finished:
                values["finished_at"] = now
                values["queue_position"] = None
            assignments = ", ".join(f"{name} = ?" for name in values)
            await db.execute(f"UPDATE jobs SET {assignments} WHERE id = ?", (*values.values(), job_id))  # noqa: S608
            await _add_event(db, job_id, now, current, to_state, detail)
            return await _fetch(db, job_id)

    async def update_jobs(self, updates: Mapping[int, Mapping[str, Any]]) -> None:
        """Set fields of many jobs in one transaction, without changing their state."""
        if not updates:
            return
        now = self._stamp()
        grouped: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}
        for job_id, fields in updates.items():
            columns = _checked_columns(fields)
            names = tuple(sorted(columns))
            grouped.setdefault(names, []).append((*(columns[name] for name in names), now, job_id))
        async with self._transaction() as db:
            for names, rows in grouped.items():
                assignments = "".join(f"{name} = ?, " for name in names)
                await db.executemany(f"UPDATE jobs SET {assignments}updated_at = ? WHERE id = ?", rows)  # noqa: S608

    async def mark_token_dead(self, job_id: int) -> None:
        """Record that Discord refused the job's interaction token; the token is forgotten with it."""
        now = self._stamp()
        async with self._transaction() as db:
            await db.execute(
                "UPDATE jobs SET token_dead_at = ?, interaction_token = NULL, updated_at = ?"
                " WHERE id = ? AND token_dead_at IS NULL",
                (now, now, job_id),
            )

    async def mark_delivered(self, job_id: int) -> bool:
        """Record that a finished job's end was announced; False if it already was (or is not finished)."""
        now = self._stamp()
        async with self._transaction() as db:
            cursor = await db.execute(
                "UPDATE jobs SET delivery = 'delivered', delivered_at = ?, updated_at = ?"
                " WHERE id = ? AND delivery = 'pending'"
                " AND state IN ('succeeded', 'failed', 'rejected', 'cancelled', 'timed_out')",
                (now, now, job_id),
            )
            if cursor.rowcount != 1:
                return False
            job = await _fetch(db, job_id)
            await _add_event(db, job_id, now, job.state, job.state, "delivered")
            return True

    async def events(self, job_id: int) -> list[JobEvent]:
        rows = await self._rows("SELECT * FROM job_events WHERE job_id = ? ORDER BY id", (job_id,))
        return [
            JobEvent(
                job_id=row["job_id"],
                at=datetime.fromisoformat(row["at"]),
                from_state=JobState(row["from_state"]) if row["from_state"] else None,
                to_state=JobState(row["to_state"]),
                detail=row["detail"],
            )
            for row in rows
        ]

    # Server settings and usage.

    async def guild_settings(self, guild_id: int) -> GuildSettings:
        """A server's settings; defaults for a server that never changed any."""
        rows = await self._rows("SELECT * FROM guild_settings WHERE guild_id = ?", (guild_id,))
        return GuildSettings.from_row(rows[0]) if rows else GuildSettings(guild_id)

    async def save_guild_settings(self, settings: GuildSettings, *, by: int | None) -> None:
        now = self._stamp()
        async with self._transaction() as db:
            await db.execute(
                "INSERT INTO guild_settings (guild_id, disabled_providers, allowed_channels, max_active_per_user,"
                " max_jobs_per_user_per_day, max_jobs_per_guild_per_day, log_channel_id, allow_dm, updated_at,"
                " updated_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (guild_id) DO UPDATE SET disabled_providers = excluded.disabled_providers,"
                " allowed_channels = excluded.allowed_channels, max_active_per_user = excluded.max_active_per_user,"
                " max_jobs_per_user_per_day = excluded.max_jobs_per_user_per_day,"
                " max_jobs_per_guild_per_day = excluded.max_jobs_per_guild_per_day,"
                " log_channel_id = excluded.log_channel_id, allow_dm = excluded.allow_dm,"
                " updated_at = excluded.updated_at, updated_by = excluded.updated_by",
                (
                    settings.guild_id,
                    json.dumps(sorted(settings.disabled_providers)),
                    json.dumps(sorted(settings.allowed_channels)),
                    settings.max_active_per_user,
                    settings.max_jobs_per_user_per_day,
                    settings.max_jobs_per_guild_per_day,
                    settings.log_channel_id,
                    int(settings.allow_dm),
                    now,
                    by,
                ),
            )

    async def usage(self, *, user_id: int, guild_id: int | None, since: datetime) -> Usage:
        """Jobs that count against limits: running now, and started since ``since``.

        Jobs that failed, were refused by moderation, or were cancelled before the provider started
        them are given back and do not count.
        """
        stamp = since.astimezone(UTC).isoformat(timespec="microseconds")
        guild = guild_id if guild_id is not None else -1
        rows = await self._rows(
            "SELECT"
            " COALESCE(SUM(user_id = ? AND state IN ('queued', 'submitting', 'running')), 0),"
            " COALESCE(SUM(user_id = ? AND created_at >= ? AND counted), 0),"
            " COALESCE(SUM(guild_id = ? AND created_at >= ? AND counted), 0)"
            " FROM (SELECT user_id, guild_id, state, created_at,"
            "   state NOT IN ('failed', 'rejected') AND NOT (state IN ('cancelled', 'timed_out')"
            "   AND started_at IS NULL) AS counted"
            " FROM jobs WHERE user_id = ? OR guild_id = ?)",
            (user_id, user_id, stamp, guild, stamp, user_id, guild),
        )
        active, mine, server = (int(value) for value in rows[0])
        return Usage(active=active, user_today=mine, guild_today=server)

    async def median_run_seconds(self, provider: str, model: str | None, *, recent: int = 50) -> float | None:
        """The median time from acceptance to success of the recent jobs of a provider and model."""
        rows = await self._rows(
            "SELECT (julianday(finished_at) - julianday(accepted_at)) * 86400.0 AS seconds FROM jobs"
            " WHERE state = 'succeeded' AND provider = ? AND model IS ? AND accepted_at IS NOT NULL"
            " ORDER BY finished_at DESC LIMIT ?",
            (provider, model, recent),
        )
        values = sorted(float(row["seconds"]) for row in rows)
        if not values:
            return None
        middle = len(values) // 2
        return values[middle] if len(values) % 2 else (values[middle - 1] + values[middle]) / 2


def _checked_columns(fields: Mapping[str, Any]) -> dict[str, Any]:
    unknown = set(fields) - UPDATABLE
    if unknown:
        raise ValueError(f"not updatable: {', '.join(sorted(unknown))}")
    return {name: _column_value(value) for name, value in fields.items()}


def _column_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="microseconds")
    if isinstance(value, bool):
        return int(value)
    return value


async def _fetch(db: aiosqlite.Connection, job_id: int) -> Job:
    rows = list(await db.execute_fetchall("SELECT * FROM jobs WHERE id = ?", (job_id,)))
    row = rows[0] if rows else None
    assert row is not None
    return Job.from_row(row)


async def _add_event(
    db: aiosqlite.Connection, job_id: int, at: str, from_state: JobState | None, to_state: JobState, detail: str
) -> None:
    await db.execute(
        "INSERT INTO job_events (job_id, at, from_state, to_state, detail) VALUES (?, ?, ?, ?, ?)",
        (job_id, at, from_state.value if from_state else None, to_state.value, detail),
    )


async def _user_version(db: aiosqlite.Connection) -> int:
    async with db.execute("PRAGMA user_version") as cursor:
        row = await cursor.fetchone()
    return int(row[0]) if row else 0


async def _refuse_newer(db: aiosqlite.Connection, path: Path, files: list[tuple[int, Path]]) -> None:
    current = await _user_version(db)
    latest = files[-1][0] if files else 0
    if current > latest:
        raise StoreError(
            f"The database {path} was written by a newer version of the bot (schema {current}, this one knows "
            f"up to {latest}); run the newer version or point DATABASE_URL at another file."
        )


async def _migrate(db: aiosqlite.Connection, path: Path, files: list[tuple[int, Path]]) -> None:
    current = await _user_version(db)
    pending = [(number, file) for number, file in files if number > current]
    if not pending:
        return
    script = "".join(file.read_text(encoding="utf-8") + "\n" for _, file in pending)
    try:
        await db.executescript(f"BEGIN IMMEDIATE;\n{script}\nPRAGMA user_version = {pending[-1][0]};\nCOMMIT;")
    except sqlite3.Error as exc:
        if db.in_transaction:
            await db.execute("ROLLBACK")
        names = ", ".join(file.name for _, file in pending)
        raise StoreError(
            f"Updating the database {path} failed in {names} ({exc}); nothing was changed, so fix the migration "
            "or restore the previous version of the bot."
        ) from exc
