"""The only module that writes SQL: the job ledger, on SQLite (one process) or PostgreSQL (several).

Timestamps are ISO-8601 UTC text of one fixed width on both, so that comparing them compares moments.
Numbered migration files (one folder per database, the same numbers in both) are applied at start.
Nothing here assumes that only this process touches a job: every change is conditional on the state it
read, and claims skip rows another process holds.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from bot.store.engines import MIGRATIONS, Engine, PostgresEngine, SqliteEngine, StoreError, Transaction, migrations
from bot.store.models import (
    ERROR_STATES,
    Admission,
    CreditUsage,
    GuildSettings,
    Intake,
    InvalidTransition,
    Job,
    JobEvent,
    JobState,
    LimitReached,
    NewJob,
    ProviderFigures,
    Usage,
    can_transition,
)

__all__ = [
    "MIGRATIONS",
    "DueTimes",
    "Pruned",
    "Store",
    "StoreError",
    "SubmitClaim",
    "TaskReport",
    "migrations",
    "utc_now",
]

POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_postgres(location: Path | str) -> bool:
    return isinstance(location, str) and location.startswith(POSTGRES_SCHEMES)


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
        "next_check_at",
        "lease_owner",
        "lease_until",
        "queue_priority",
        "delivery_attempts",
        "delivery_next_at",
        "announce_started_at",
    }
)


#: Submits per minute are counted over this rolling window.
SUBMIT_WINDOW = timedelta(seconds=60)


@dataclass(frozen=True, slots=True)
class SubmitClaim:
    """Jobs claimed for sending, and when a per-minute cap next lets one more go (if that held them)."""

    jobs: list[Job]
    blocked_until: datetime | None


@dataclass(frozen=True, slots=True)
class DueTimes:
    """The earliest moment of each kind of scheduled work."""

    #: Polls of running jobs and checks of jobs being sent (including leases that run out).
    checks: datetime | None
    #: Per provider, the earliest queued job's moment.
    queued: dict[str, datetime]
    delivery: datetime | None
    #: Per provider, the earliest poll of a running job, and the earliest check of a job being sent (both
    #: also in ``checks``).
    polls: dict[str, datetime] = field(default_factory=dict)
    sends: datetime | None = None


@dataclass(frozen=True, slots=True)
class TaskReport:
    """What the ledger made of a callback about a provider task."""

    #: The nonce was seen before within its window: a replay, and nothing changed.
    replayed: bool = False
    #: Unfinished jobs of that task (or sent under that key).
    jobs: tuple[int, ...] = ()
    #: Of those, the jobs made due for a check now (a report that the task finished).
    woken: tuple[int, ...] = ()
    #: Jobs whose start was recorded just now (their card can say so).
    started: tuple[int, ...] = ()
    #: A job of that task exists but has already ended.
    ended: bool = False

    @property
    def known(self) -> bool:
        return bool(self.jobs) or self.ended


@dataclass(frozen=True, slots=True)
class Pruned:
    tokens: int
    jobs: int
    events: int


def utc_now() -> datetime:
    return datetime.now(UTC)


class Store:
    """The job ledger."""

    def __init__(self, engine: Engine, *, now: Callable[[], datetime] = utc_now) -> None:
        self._engine = engine
        self._now = now

    @classmethod
    async def open(
        cls,
        location: Path | str,
        *,
        now: Callable[[], datetime] = utc_now,
        migrations_folder: Path | None = None,
        pool_size: int = 10,
    ) -> Store:
        """Open the ledger (a SQLite file, or a ``postgresql://`` URL) and bring its schema up to date."""
        engine: Engine
        if is_postgres(location):
            folder = migrations_folder or MIGRATIONS / "postgresql"
            engine = await PostgresEngine.open(str(location), folder, pool_size=pool_size)
        else:
            engine = await SqliteEngine.open(Path(location), migrations_folder or MIGRATIONS / "sqlite")
        return cls(engine, now=now)

    @property
    def shared(self) -> bool:
        """Whether other processes may work on this ledger at the same time."""
        return self._engine.shared

    async def close(self) -> None:
        await self._engine.close()

    async def listen(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` when another process queued or changed a job (only a wake-up call)."""
        await self._engine.listen(callback)

    async def check_writable(self) -> bool:
        """Whether the ledger can take a write right now."""
        try:
            async with self._engine.transaction() as db:
                await db.execute("UPDATE provider_state SET provider = provider WHERE provider IS NULL")
        except (sqlite3.Error, asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
            return False
        return True

    async def schema_version(self) -> int:
        return await self._engine.schema_version()

    def _transaction(self) -> AbstractAsyncContextManager[Transaction]:
        return self._engine.transaction()

    async def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return await self._engine.fetch(sql, params)

    def _stamp(self) -> str:
        return self._now().astimezone(UTC).isoformat(timespec="microseconds")

    # Jobs.

    async def create_job(self, new: NewJob, *, admission: Admission | None = None) -> Job:
        """Record a new job, queued and due at once, and remove the intake record it comes from.

        A job whose key is already in the ledger is not written again: the existing job is returned
        (an intake finished twice, after a restart or by a second process, makes one job).
        With ``admission``, the member's and the server's usage is counted in the same transaction, so
        that commands racing each other cannot all slip under a limit; raises LimitReached instead.
        """
        now = self._stamp()
        async with self._transaction() as db:
            # Only a job that may be refused needs the look first; otherwise the insert finds a known key itself.
            existing = await _scalar(db, "SELECT id FROM jobs WHERE key = ?", (new.key,)) if admission else None
            if existing is not None:
                await _drop_intake(db, new.intake_id)
                return await _fetch(db, int(existing))
            estimate = await _estimate(db, new.cost_class) if new.cost_class else None
            if admission is not None:
                await _admit(db, new, admission, estimate)
            inserted = await db.fetch(
                "INSERT INTO jobs (key, guild_id, channel_id, user_id, message_id, provider, operation, model,"
                " params, media, state, created_at, updated_at, application_id, interaction_token,"
                " token_expires_at, upload_limit, parent_id, next_check_at, cost_class, estimated_credits, language)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (key) DO NOTHING RETURNING *",
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
                    now,
                    new.cost_class,
                    estimate,
                    new.language,
                ),
            )
            if not inserted:
                # Another process made the job from the same intake a moment ago.
                await _drop_intake(db, new.intake_id)
                return await _fetch(db, int(await _scalar(db, "SELECT id FROM jobs WHERE key = ?", (new.key,))))
            job = Job.from_row(inserted[0])
            await db.notify()
            await _add_event(db, job.id, now, None, JobState.QUEUED, "created")
            await _drop_intake(db, new.intake_id)
            return job

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
        owner: str | None = None,
        **fields: Any,
    ) -> Job:
        """Move a job to ``to_state`` and set ``fields``, recording the change as an event.

        Raises InvalidTransition when the state machine refuses, when ``expect`` is given and the job
        is no longer in one of those states (someone else moved it first), or when ``owner`` is given
        and no longer holds the job's lease. Every transition releases the lease.
        """
        columns = _checked_columns(fields)
        now = self._stamp()
        async with self._transaction() as db:
            rows = await db.fetch_held("SELECT state, lease_owner FROM jobs WHERE id = ?", (job_id,))
            row = rows[0] if rows else None
            if row is None:
                raise KeyError(job_id)
            current = JobState(row["state"])
            allowed = set(expect) if expect is not None else None
            if (
                not can_transition(current, to_state)
                or (allowed is not None and current not in allowed)
                or (owner is not None and row["lease_owner"] != owner)
            ):
                raise InvalidTransition(job_id, current, to_state)
            values: dict[str, Any] = {"lease_owner": None, "lease_until": None}
            values.update(columns)
            values["state"] = to_state.value
            values["updated_at"] = now
            if to_state is JobState.QUEUED:
                values.setdefault("next_check_at", columns.get("not_before") or now)
            if to_state.finished:
                values["finished_at"] = now
                values["queue_position"] = None
                values["next_check_at"] = None
                values["delivery_next_at"] = now
            assignments = [f"{name} = ?" for name in values]
            params = list(values.values())
            if to_state is JobState.RUNNING and "next_check_at" in values:
                # A callback came while the job was being sent: its first check is due now.
                at = list(values).index("next_check_at")
                assignments[at] = "next_check_at = CASE WHEN wake_pending = 1 THEN ? ELSE ? END"
                params[at : at + 1] = [now, values["next_check_at"]]
            sql = f"UPDATE jobs SET {', '.join(assignments)} WHERE id = ? RETURNING *"  # noqa: S608
            updated = await db.fetch(sql, (*params, job_id))
            await _add_event(db, job_id, now, current, to_state, detail)
            await db.notify()
            return Job.from_row(updated[0])

    async def update_jobs(self, updates: Mapping[int, Mapping[str, Any]]) -> None:
        """Set fields of many jobs in one transaction, without changing their state."""
        if not updates:
            return
        now = self._stamp()
        grouped: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}
        # Rows are always changed in id order, so that two processes' transactions never wait on each other.
        for job_id, fields in sorted(updates.items()):
            columns = _checked_columns(fields)
            names = tuple(sorted(columns))
            grouped.setdefault(names, []).append((*(columns[name] for name in names), now, job_id))
        async with self._transaction() as db:
            for names, rows in grouped.items():
                assignments = "".join(f"{name} = ?, " for name in names)
                await db.executemany(f"UPDATE jobs SET {assignments}updated_at = ? WHERE id = ?", rows)  # noqa: S608

    async def set_queue_positions(self, positions: Mapping[int, int]) -> None:
        """Show each job's place in its queue; a job claimed meanwhile keeps none."""
        now = self._stamp()
        async with self._transaction() as db:
            await db.executemany(
                "UPDATE jobs SET queue_position = ?, updated_at = ? WHERE id = ? AND state = 'queued'",
                [(position, now, job_id) for job_id, position in sorted(positions.items())],
            )

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
            changed = await db.execute(
                "UPDATE jobs SET delivery = 'delivered', delivered_at = ?, updated_at = ?,"
                " lease_owner = NULL, lease_until = NULL, delivery_next_at = NULL"
                " WHERE id = ? AND delivery = 'pending'"
                " AND state IN ('succeeded', 'failed', 'rejected', 'cancelled', 'timed_out')",
                (now, now, job_id),
            )
            if changed != 1:
                return False
            job = await _fetch(db, job_id)
            await _add_event(db, job_id, now, job.state, job.state, "delivered")
            return True

    # The scheduler's claims. Each one reads and writes in one transaction, so a job is worked on by
    # one holder at a time; a lease that runs out lets anyone take the work over.

    def now(self) -> datetime:
        return self._now()

    async def claim_submits(
        self,
        provider: str,
        *,
        owner: str,
        lease: timedelta,
        max_running: int | None,
        per_minute: Mapping[str, int],
        limit: int,
    ) -> SubmitClaim:
        """Move the due queued jobs the provider has room for to ``submitting``, in fair order, leased.

        Claimers of one provider take turns (in every process), so that the caps they count hold.
        """
        async with self._transaction() as db:
            await db.lock(f"submits:{provider}")
            now = self._now()
            stamp = _column_value(now)
            until = _column_value(now + lease)
            paused = await _scalar(db, "SELECT paused_until FROM provider_state WHERE provider = ?", (provider,))
            if paused is not None and paused > stamp:
                return SubmitClaim([], datetime.fromisoformat(paused))
            free = limit
            if max_running is not None:
                busy = await _scalar(
                    db,
                    "SELECT COUNT(*) FROM jobs WHERE provider = ? AND state IN ('submitting', 'running')"
                    " AND state IN ('queued', 'submitting', 'running')",
                    (provider,),
                )
                free = min(limit, max_running - int(busy or 0))
                if free <= 0:
                    return SubmitClaim([], None)
            window_start = _column_value(now - SUBMIT_WINDOW)
            used: dict[str, int] = {}
            oldest: dict[str, str] = {}
            for operation in per_minute:
                rows = list(
                    await db.fetch(
                        "SELECT COUNT(*), MIN(submitted_at) FROM jobs"
                        " WHERE provider = ? AND operation = ? AND submitted_at > ?",
                        (provider, operation, window_start),
                    )
                )
                used[operation] = int(rows[0][0])
                if rows[0][1] is not None:
                    oldest[operation] = rows[0][1]
            candidates = await db.fetch(
                _FAIR_ORDER + " WHERE q.next_check_at <= ? ORDER BY turn, q.queue_priority, last_sent, q.id LIMIT ?",
                (provider, provider, window_start, stamp, free + sum(used.values()) + len(per_minute)),
            )
            picked: list[tuple[int, int]] = []
            blocked: list[datetime] = []
            for row in candidates:
                operation = row["operation"]
                cap = per_minute.get(operation)
                if cap is not None and used.get(operation, 0) >= cap:
                    if operation in oldest:
                        blocked.append(datetime.fromisoformat(oldest[operation]) + SUBMIT_WINDOW)
                    continue
                used[operation] = used.get(operation, 0) + 1
                picked.append((row["id"], row["submit_attempts"] + 1))
                if len(picked) >= free:
                    break
            claimed: list[int] = []
            # Picked in fair order, changed in id order, like every change of many rows (no deadlocks).
            for job_id, attempt in sorted(picked):
                # A cancel may have ended the job since it was read; it is then not sent.
                if not await db.execute(
                    "UPDATE jobs SET state = 'submitting', lease_owner = ?, lease_until = ?, next_check_at = ?,"
                    " submitted_at = ?, submit_attempts = ?, queue_position = NULL, updated_at = ?"
                    " WHERE id = ? AND state = 'queued'",
                    (owner, until, until, stamp, attempt, stamp, job_id),
                ):
                    continue
                claimed.append(job_id)
                await _add_event(
                    db, job_id, stamp, JobState.QUEUED, JobState.SUBMITTING, f"sending (attempt {attempt})"
                )
            order = {job_id: rank for rank, (job_id, _) in enumerate(picked)}
            jobs = [await _fetch(db, job_id) for job_id in sorted(claimed, key=order.__getitem__)]
            return SubmitClaim(jobs, min(blocked) if blocked and not jobs else None)

    async def claim_due(
        self, provider: str, state: JobState, *, owner: str, lease: timedelta, limit: int, horizon: timedelta
    ) -> list[Job]:
        """Lease the provider's jobs in ``state`` that are due (or due within ``horizon``), earliest first."""
        now = self._now()
        stamp = _column_value(now)
        until = _column_value(now + lease)
        async with self._transaction() as db:
            rows = await db.fetch_held(
                "SELECT id FROM jobs WHERE provider = ? AND state = ? AND next_check_at <= ?"
                " AND state IN ('queued', 'submitting', 'running')"
                " AND (lease_until IS NULL OR lease_until <= ?) ORDER BY next_check_at LIMIT ?",
                (provider, state.value, _column_value(now + horizon), stamp, limit),
                skip_locked=True,
            )
            # Until the lease runs out, the job is not due: a lost lease makes it due again by itself. The check
            # about to go out answers any callback that came before it.
            also = "next_check_at = ?, wake_pending = 0" if state is JobState.RUNNING else "next_check_at = ?"
            return await _lease(db, rows, owner, until, also, (until,), order="next_check_at")

    async def release(self, updates: Mapping[int, Mapping[str, Any]], *, owner: str) -> list[int]:
        """Set fields of jobs this owner holds and give their leases back; returns the ids it still held."""
        if not updates:
            return []
        now = self._stamp()
        held: list[int] = []
        async with self._transaction() as db:
            ids = sorted(updates)
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                marks = ", ".join("?" for _ in chunk)
                rows = await db.fetch_held(
                    f"SELECT id FROM jobs WHERE id IN ({marks}) AND lease_owner = ? ORDER BY id",  # noqa: S608
                    (*chunk, owner),
                )
                held.extend(int(row[0]) for row in rows)
            # Rows that set the same columns go in one statement: a poll round releases many jobs at once.
            statements: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}
            for job_id in held:
                columns = _checked_columns(updates[job_id])
                values = [value for name, value in columns.items() for value in _release_values(name, value, now)]
                statements.setdefault(tuple(columns), []).append((*values, now, job_id))
            for names, values in statements.items():
                # A callback that came while the job was leased makes its next check due at once.
                assignments = "".join(
                    f"{name} = CASE WHEN wake_pending = 1 THEN ? ELSE ? END, "
                    if name == "next_check_at"
                    else f"{name} = ?, "
                    for name in names
                )
                await db.executemany(
                    f"UPDATE jobs SET {assignments}lease_owner = NULL, lease_until = NULL, updated_at = ?"  # noqa: S608
                    " WHERE id = ?",
                    values,
                )
        return held

    async def renew_leases(self, owners: Sequence[str], lease: timedelta) -> int:
        """Extend every lease these owners still hold to ``lease`` from now; returns the jobs renewed.

        A job whose lease another process took over is not touched: its owner changed.
        """
        if not owners:
            return 0
        stamp = self._now()
        until = _column_value(stamp + lease)
        marks = ", ".join("?" for _ in owners)
        async with self._transaction() as db:
            # Locked in id order first, as a release locks its rows, and only the rows locked here are changed:
            # an update by owner would also meet rows leased since, in the table's order, and deadlock with a
            # release holding some of them. Those were leased a moment ago and need no renewal yet.
            held = await db.fetch_held(f"SELECT id FROM jobs WHERE lease_owner IN ({marks}) ORDER BY id", owners)  # noqa: S608
            ids = [int(row[0]) for row in held]
            renewed = 0
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                # A claimed job is next due when its lease would run out: kept in step, so nobody sees it due.
                renewed += await db.execute(
                    "UPDATE jobs SET lease_until = ?, next_check_at = CASE WHEN state IN"  # noqa: S608
                    " ('queued', 'submitting', 'running') THEN ? ELSE next_check_at END"
                    f" WHERE id IN ({', '.join('?' for _ in chunk)}) AND lease_owner IN ({marks})",
                    (until, until, *chunk, *owners),
                )
            await db.execute(
                f"UPDATE intakes SET lease_until = ? WHERE lease_owner IN ({marks}) AND closed_at IS NULL",  # noqa: S608
                (until, *owners),
            )
            return renewed

    async def heartbeat(self, process: str, *, alive_within: timedelta) -> int:
        """Record that ``process`` is alive now; returns how many processes were seen within ``alive_within``."""
        now = self._now()
        async with self._transaction() as db:
            await db.execute(
                "INSERT INTO processes (name, seen_at) VALUES (?, ?)"
                " ON CONFLICT (name) DO UPDATE SET seen_at = excluded.seen_at",
                (process, _column_value(now)),
            )
            await db.execute("DELETE FROM processes WHERE seen_at < ?", (_column_value(now - alive_within * 10),))
            alive = await _scalar(
                db, "SELECT COUNT(*) FROM processes WHERE seen_at >= ?", (_column_value(now - alive_within),)
            )
            return int(alive)

    async def forget_process(self, process: str) -> None:
        """A process that stops cleanly stops counting at once."""
        async with self._transaction() as db:
            await db.execute("DELETE FROM processes WHERE name = ?", (process,))

    async def expire_leases(self) -> int:
        """Make every lease run out now: for a ledger only this process uses, after a restart."""
        now = self._stamp()
        async with self._transaction() as db:
            changed = await db.execute(
                "UPDATE jobs SET lease_until = ?,"
                " next_check_at = CASE WHEN next_check_at IS NULL OR next_check_at > ? THEN ? ELSE next_check_at END"
                " WHERE lease_owner IS NOT NULL",
                (now, now, now),
            )
            await db.execute(
                "UPDATE jobs SET lease_owner = NULL, lease_until = NULL, delivery_next_at = ?"
                " WHERE lease_owner IS NOT NULL AND state IN ('succeeded', 'failed', 'rejected', 'cancelled',"
                " 'timed_out') AND delivery = 'pending'",
                (now,),
            )
            await db.execute("UPDATE intakes SET lease_until = ? WHERE lease_owner IS NOT NULL", (now,))
            return changed

    async def spread_checks(self, over: timedelta) -> int:
        """Bring every running job's next poll forward into the coming ``over``, the first at once, in
        the order they were due: after a restart nobody knows what happened while the bot was down."""
        now = self._now()
        async with self._transaction() as db:
            rows = list(
                await db.fetch(
                    "SELECT id, next_check_at FROM jobs WHERE state = 'running' AND lease_owner IS NULL"
                    " ORDER BY next_check_at, id"
                )
            )
            count = len(rows)
            moved = []
            for index, row in enumerate(rows):
                moment = _column_value(now + over * (index / count))
                if row["next_check_at"] is None or row["next_check_at"] > moment:
                    moved.append((moment, row["id"]))
            # In id order, as every other change of many rows, so that no two transactions wait on each other.
            await db.executemany(
                "UPDATE jobs SET next_check_at = ? WHERE id = ?", sorted(moved, key=lambda row: row[1])
            )
            return len(moved)

    async def report_task(
        self,
        provider: str,
        *,
        task_ids: Sequence[str],
        keys: Sequence[str] = (),
        finished: bool,
        nonce: str | None = None,
        nonce_since: datetime | None = None,
    ) -> TaskReport:
        """A provider said something about its tasks (by task id, or by the key a job was sent under).

        A report that the task finished makes each unfinished job of it due for a check now, or, while its check
        is out, as soon as that check is given back; any report records that the task started. Nothing else:
        the check decides what happened. With ``nonce``, a nonce already seen since ``nonce_since`` makes the
        report a replay that changes nothing.
        """
        now = self._stamp()
        async with self._transaction() as db:
            if nonce is not None:
                if nonce_since is not None:
                    await db.execute(
                        "DELETE FROM callback_nonces WHERE provider = ? AND seen_at < ?",
                        (provider, _column_value(nonce_since)),
                    )
                if not await db.execute(
                    "INSERT INTO callback_nonces (provider, nonce, seen_at) VALUES (?, ?, ?)"
                    " ON CONFLICT (provider, nonce) DO NOTHING",
                    (provider, nonce, now),
                ):
                    return TaskReport(replayed=True)
            conditions = []
            params: list[Any] = [provider]
            if task_ids:
                conditions.append(f"task_id IN ({', '.join('?' for _ in task_ids)})")
                params.extend(task_ids)
            if keys:
                conditions.append(f"key IN ({', '.join('?' for _ in keys)})")
                params.extend(keys)
            if not conditions:
                return TaskReport()
            rows = await db.fetch_held(
                f"SELECT id, state, task_id, started_at FROM jobs WHERE provider = ? AND ({' OR '.join(conditions)})"  # noqa: S608
                " ORDER BY id",
                params,
            )
            unfinished = [row for row in rows if JobState(row["state"]) in (JobState.SUBMITTING, JobState.RUNNING)]
            started = [
                int(row["id"])
                for row in unfinished
                if row["state"] == JobState.RUNNING.value and row["started_at"] is None
            ]
            if started:
                await db.executemany(
                    "UPDATE jobs SET started_at = ?, updated_at = ? WHERE id = ? AND started_at IS NULL",
                    [(now, now, job_id) for job_id in started],
                )
            if finished and unfinished:
                await db.executemany(
                    "UPDATE jobs SET wake_pending = 1, next_check_at = CASE WHEN lease_owner IS NULL THEN ?"
                    " ELSE next_check_at END, updated_at = ? WHERE id = ? AND state IN ('submitting', 'running')",
                    [(now, now, int(row["id"])) for row in unfinished],
                )
                await db.notify()
            ids = tuple(int(row["id"]) for row in unfinished)
            return TaskReport(
                jobs=ids,
                woken=ids if finished else (),
                started=tuple(started),
                ended=len(unfinished) < len(rows),
            )

    async def pause_provider(self, provider: str, until: datetime) -> None:
        """No submits to the provider before ``until`` (after it asked the bot to slow down)."""
        async with self._transaction() as db:
            await db.execute(
                "INSERT INTO provider_state (provider, paused_until) VALUES (?, ?)"
                " ON CONFLICT (provider) DO UPDATE SET paused_until = excluded.paused_until",
                (provider, _column_value(until)),
            )

    async def queue_order(self, provider: str) -> list[tuple[int, int | None]]:
        """The provider's queued jobs in the order they will be sent, each with the position it shows."""
        window_start = _column_value(self._now() - SUBMIT_WINDOW)
        rows = await self._rows(
            _FAIR_ORDER + " ORDER BY turn, q.queue_priority, last_sent, q.id", (provider, provider, window_start)
        )
        return [(row["id"], row["queue_position"]) for row in rows]

    async def due_times(self, providers: Sequence[str]) -> DueTimes:
        """When the scheduler next has something to do at these providers, per kind of work."""
        marks = ", ".join("?" for _ in providers) or "NULL"
        rows = await self._rows(
            "SELECT provider, state, MIN(next_check_at) FROM jobs"  # noqa: S608
            f" WHERE state IN ('queued', 'submitting', 'running') AND provider IN ({marks}) GROUP BY provider, state",
            list(providers),
        )
        queued: dict[str, datetime] = {}
        polls: dict[str, datetime] = {}
        checks: list[datetime] = []
        sends: list[datetime] = []
        for provider, state, earliest in rows:
            if earliest is None:
                continue
            moment = datetime.fromisoformat(earliest)
            if state == JobState.QUEUED.value:
                queued[provider] = moment
            else:
                checks.append(moment)
                if state == JobState.RUNNING.value:
                    polls[provider] = moment
                else:
                    sends.append(moment)
        delivery = await self._rows(
            "SELECT MIN(CASE WHEN lease_until > delivery_next_at THEN lease_until ELSE delivery_next_at END) FROM jobs"
            " WHERE delivery = 'pending' AND delivery_next_at IS NOT NULL"
            " AND state IN ('succeeded', 'failed', 'rejected', 'cancelled', 'timed_out')"
        )
        announce = delivery[0][0]
        return DueTimes(
            checks=min(checks) if checks else None,
            queued=queued,
            delivery=datetime.fromisoformat(announce) if announce else None,
            polls=polls,
            sends=min(sends) if sends else None,
        )

    async def jobs_of_other_providers(self, providers: Sequence[str]) -> list[Job]:
        """Unfinished jobs of providers not in ``providers`` (no longer configured)."""
        marks = ", ".join("?" for _ in providers) or "NULL"
        return await self._select(
            "SELECT * FROM jobs WHERE state IN ('queued', 'submitting', 'running')"  # noqa: S608
            f" AND provider NOT IN ({marks}) ORDER BY id",
            list(providers),
        )

    async def request_cancel(self, job_id: int) -> bool:
        """Ask for a job being sent to be cancelled once its send is answered; False if it is not being sent."""
        async with self._transaction() as db:
            changed = await db.execute(
                "UPDATE jobs SET cancel_requested = 1, updated_at = ? WHERE id = ? AND state = 'submitting'",
                (self._stamp(), job_id),
            )
            if changed == 1:
                await db.notify()
            return changed == 1

    async def expire_queued(self, created_before: datetime, reason: str) -> list[Job]:
        """End every job still queued that was created before ``created_before``."""
        now = self._stamp()
        async with self._transaction() as db:
            rows = await db.fetch(
                "SELECT id FROM jobs WHERE state = 'queued' AND created_at < ?"
                " AND state IN ('queued', 'submitting', 'running') ORDER BY id",
                (_column_value(created_before),),
            )
            ended = []
            for row in rows:
                changed = await db.execute(
                    "UPDATE jobs SET state = 'timed_out', error_reason = ?, finished_at = ?, updated_at = ?,"
                    " queue_position = NULL, next_check_at = NULL, delivery_next_at = ?"
                    " WHERE id = ? AND state = 'queued'",
                    (reason, now, now, now, row["id"]),
                )
                if changed == 1:
                    await _add_event(db, row["id"], now, JobState.QUEUED, JobState.TIMED_OUT, reason)
                    ended.append(await _fetch(db, row["id"]))
            return ended

    # Delivery: a claimed step of its own.

    async def claim_deliveries(self, *, owner: str, lease: timedelta, limit: int) -> list[Job]:
        """Lease finished jobs whose announcement is due, counting the attempt."""
        now = self._now()
        stamp = _column_value(now)
        until = _column_value(now + lease)
        async with self._transaction() as db:
            rows = await db.fetch_held(
                "SELECT id FROM jobs WHERE delivery = 'pending' AND delivery_next_at <= ?"
                " AND state IN ('succeeded', 'failed', 'rejected', 'cancelled', 'timed_out')"
                " AND (lease_until IS NULL OR lease_until <= ?) ORDER BY delivery_next_at LIMIT ?",
                (stamp, stamp, limit),
                skip_locked=True,
            )
            return await _lease(
                db, rows, owner, until, "delivery_attempts = delivery_attempts + 1", (), order="delivery_next_at"
            )

    async def mark_announce_started(self, job_id: int, *, owner: str) -> None:
        """An announcement is about to be sent: after a crash, look for it before sending again."""
        async with self._transaction() as db:
            await db.execute(
                "UPDATE jobs SET announce_started_at = COALESCE(announce_started_at, ?)"
                " WHERE id = ? AND lease_owner = ?",
                (self._stamp(), job_id, owner),
            )

    async def delivery_failed(self, job_id: int, *, owner: str, retry_at: datetime | None, detail: str) -> None:
        """An announcement attempt failed: try again at ``retry_at``, or never (None), recorded as an event."""
        now = self._stamp()
        async with self._transaction() as db:
            changed = await db.execute(
                "UPDATE jobs SET lease_owner = NULL, lease_until = NULL, delivery_next_at = ?, updated_at = ?"
                " WHERE id = ? AND lease_owner = ? AND delivery = 'pending'",
                (_column_value(retry_at), now, job_id, owner),
            )
            if changed == 1:
                state = JobState((await _fetch(db, job_id)).state)
                await _add_event(db, job_id, now, state, state, detail)

    # Intake: commands and clicks recorded before they are acknowledged.

    async def record_intake(self, intake: Intake, *, owner: str, lease: timedelta) -> None:
        """Write a command or click that will create a job, held by ``owner`` while it is worked on."""
        async with self._transaction() as db:
            await db.execute(
                "INSERT INTO intakes (interaction_id, kind, guild_id, channel_id, user_id, application_id,"
                " interaction_token, token_expires_at, upload_limit, message_id, provider, operation, params,"
                " source_job_id, attachment_url, attachment_name, attachment_type, attachment_size, created_at,"
                " lease_owner, lease_until, language)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    intake.interaction_id,
                    intake.kind.value,
                    intake.guild_id,
                    intake.channel_id,
                    intake.user_id,
                    intake.application_id,
                    intake.interaction_token,
                    _column_value(intake.token_expires_at),
                    intake.upload_limit,
                    intake.message_id,
                    intake.provider,
                    intake.operation,
                    json.dumps(intake.params, sort_keys=True),
                    intake.source_job_id,
                    intake.attachment_url,
                    intake.attachment_name,
                    intake.attachment_type,
                    intake.attachment_size,
                    _column_value(intake.created_at),
                    owner,
                    _column_value(self._now() + lease),
                    intake.language,
                ),
            )

    async def intake_acknowledged(self, interaction_id: int, message_id: int) -> None:
        """The deferred response exists: it becomes the job's card."""
        async with self._transaction() as db:
            await db.execute("UPDATE intakes SET message_id = ? WHERE interaction_id = ?", (message_id, interaction_id))

    async def intake_upload_kept(self, interaction_id: int, upload: str) -> None:
        """The attachment's bytes are on disk under ``upload``: the job can be made without Discord."""
        async with self._transaction() as db:
            await db.execute("UPDATE intakes SET upload = ? WHERE interaction_id = ?", (upload, interaction_id))

    async def drop_intake(self, interaction_id: int) -> None:
        """Forget an intake whose member was answered (a refusal, an error with its id)."""
        async with self._transaction() as db:
            await _drop_intake(db, interaction_id)

    async def close_intake(self, interaction_id: int, outcome: str) -> None:
        """End an intake that will not become a job; the closed row is the record of why."""
        async with self._transaction() as db:
            await db.execute(
                "UPDATE intakes SET closed_at = ?, outcome = ?, interaction_token = NULL, lease_owner = NULL,"
                " lease_until = NULL WHERE interaction_id = ? AND closed_at IS NULL",
                (self._stamp(), outcome, interaction_id),
            )

    async def get_intake(self, interaction_id: int) -> Intake | None:
        rows = await self._rows("SELECT * FROM intakes WHERE interaction_id = ?", (interaction_id,))
        return Intake.from_row(rows[0]) if rows else None

    async def claim_intakes(
        self, *, owner: str, lease: timedelta, alive: str | None = None, limit: int = 50
    ) -> list[Intake]:
        """Open intakes nobody holds (their process died before making the job), leased to ``owner``.

        Those held by ``alive`` (this process's own handlers, however slow) are never taken.
        """
        now = self._now()
        stamp = _column_value(now)
        async with self._transaction() as db:
            rows = await db.fetch_held(
                "SELECT interaction_id FROM intakes WHERE closed_at IS NULL"
                " AND (lease_until IS NULL OR lease_until <= ?) AND (lease_owner IS NULL OR lease_owner <> ?)"
                " ORDER BY created_at LIMIT ?",
                (stamp, alive or "", limit),
                skip_locked=True,
            )
            ids = [row["interaction_id"] for row in rows]
            if not ids:
                return []
            marks = ", ".join("?" for _ in ids)
            await db.execute(
                f"UPDATE intakes SET lease_owner = ?, lease_until = ? WHERE interaction_id IN ({marks})",  # noqa: S608
                (owner, _column_value(now + lease), *ids),
            )
            claimed = await db.fetch(
                f"SELECT * FROM intakes WHERE interaction_id IN ({marks}) ORDER BY created_at",  # noqa: S608
                ids,
            )
            return [Intake.from_row(row) for row in claimed]

    # Retention.

    async def prune(self, *, tokens_before: datetime, jobs_before: datetime | None) -> Pruned:
        """Forget expired interaction tokens, and finished jobs (with their events) older than the cutoff."""
        async with self._transaction() as db:
            changed = await db.execute(
                "UPDATE jobs SET interaction_token = NULL WHERE interaction_token IS NOT NULL AND token_expires_at < ?",
                (_column_value(tokens_before),),
            )
            tokens = changed
            await db.execute(
                "UPDATE intakes SET interaction_token = NULL WHERE interaction_token IS NOT NULL"
                " AND token_expires_at < ?",
                (_column_value(tokens_before),),
            )
            jobs = events = 0
            if jobs_before is not None:
                cutoff = _column_value(jobs_before)
                await db.execute("DELETE FROM intakes WHERE closed_at < ?", (cutoff,))
                old = "SELECT id FROM jobs WHERE finished_at < ? AND delivery = 'delivered'"
                await db.execute(f"UPDATE jobs SET parent_id = NULL WHERE parent_id IN ({old})", (cutoff,))  # noqa: S608
                changed = await db.execute("DELETE FROM job_events WHERE at < ?", (cutoff,))
                events = changed
                changed = await db.execute(f"DELETE FROM jobs WHERE id IN ({old})", (cutoff,))  # noqa: S608
                jobs = changed
            return Pruned(tokens=tokens, jobs=jobs, events=events)

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

    # Moving a ledger.

    async def copy_into(self, target: Store) -> dict[str, int]:
        """Copy every row of this ledger into ``target``, an empty ledger in another database, ids kept.

        Returns the rows copied per table. Nothing is written when the target already holds jobs.
        """
        async with target._transaction() as out:
            if await _scalar(out, "SELECT COUNT(*) FROM jobs", ()):
                raise StoreError("The target ledger already holds jobs; copy into a new, empty database.")
            copied: dict[str, int] = {}
            for table in _TABLES:
                rows = await self._rows(f"SELECT * FROM {table}")  # noqa: S608 - a fixed table name
                copied[table] = len(rows)
                if not rows:
                    continue
                names = list(rows[0].keys())
                marks = ", ".join("?" for _ in names)
                await out.executemany(
                    f"INSERT INTO {table} ({', '.join(names)}) VALUES ({marks})",  # noqa: S608
                    [tuple(row[name] for name in names) for row in rows],
                )
            if target.shared:
                for table in ("jobs", "job_events"):
                    # Ids were copied as they were: the next new row takes the number after the highest.
                    await out.fetch(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"  # noqa: S608
                        f" (SELECT COALESCE(MAX(id), 0) + 1 FROM {table}), false)"
                    )
            return copied

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
                " updated_by, credits_per_day, credits_per_month, language)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (guild_id) DO UPDATE SET disabled_providers = excluded.disabled_providers,"
                " allowed_channels = excluded.allowed_channels, max_active_per_user = excluded.max_active_per_user,"
                " max_jobs_per_user_per_day = excluded.max_jobs_per_user_per_day,"
                " max_jobs_per_guild_per_day = excluded.max_jobs_per_guild_per_day,"
                " log_channel_id = excluded.log_channel_id, allow_dm = excluded.allow_dm,"
                " updated_at = excluded.updated_at, updated_by = excluded.updated_by,"
                " credits_per_day = excluded.credits_per_day, credits_per_month = excluded.credits_per_month,"
                " language = excluded.language",
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
                    settings.credits_per_day,
                    settings.credits_per_month,
                    settings.language,
                ),
            )

    async def usage(self, *, user_id: int, guild_id: int | None, since: datetime) -> Usage:
        """Jobs that count against limits: unfinished now, and started since ``since``.

        Jobs that failed, were refused by moderation, or were cancelled before the provider started
        them are given back and do not count.
        """
        async with self._transaction() as db:
            return await _usage(db, user_id=user_id, guild_id=guild_id, since=_column_value(since))

    async def credit_usage(
        self, *, user_id: int, guild_id: int | None, day_start: datetime, month_start: datetime
    ) -> CreditUsage:
        """Credits a member and a server spent today and this month (see CreditUsage for what counts)."""
        async with self._transaction() as db:
            return await _credit_usage(
                db,
                user_id=user_id,
                guild_id=guild_id,
                day_start=_column_value(day_start),
                month_start=_column_value(month_start),
            )

    async def estimate_credits(self, cost_class: str) -> float | None:
        """What a job of this cost class is expected to cost; None when no earlier job of it reported a cost."""
        async with self._transaction() as db:
            return await _estimate(db, cost_class)

    async def median_run_seconds(
        self, provider: str, model: str | None, *, cost_class: str | None = None, recent: int = 50, enough: int = 3
    ) -> float | None:
        """The median time from acceptance to success of the recent succeeded jobs of a cost class (provider,
        operation, model, duration, resolution); of the provider and model when the class has fewer than
        ``enough`` of them, or none is given. One statement: each half is a probe of an index."""
        by_model = RUN_TIMES_BY_MODEL.format(same_model="model = ?" if model is not None else "model IS NULL")
        model_params = (provider, model, recent) if model is not None else (provider, recent)
        if cost_class is None:
            rows = await self._rows(by_model, model_params)
        else:
            rows = await self._rows(f"{RUN_TIMES_BY_CLASS} UNION ALL {by_model}", (cost_class, recent, *model_params))
        seconds: dict[str, list[float]] = {"class": [], "model": []}
        for row in rows:
            took = datetime.fromisoformat(row["finished_at"]) - datetime.fromisoformat(row["accepted_at"])
            seconds[row["source"]].append(took.total_seconds())
        return _median(seconds["class"] if len(seconds["class"]) >= enough else seconds["model"])

    async def unfinished_counts(self) -> dict[tuple[str, str], int]:
        """How many jobs are queued, being sent and running now, by (provider, state)."""
        rows = await self._rows(
            "SELECT provider, state, COUNT(*) AS jobs FROM jobs"
            " WHERE state IN ('queued', 'submitting', 'running') GROUP BY provider, state"
        )
        return {(row["provider"], row["state"]): int(row["jobs"]) for row in rows}

    async def provider_figures(self, providers: Sequence[str], *, now: datetime) -> dict[str, ProviderFigures]:
        """Each provider's figures for /status, in one statement: ``providers`` always, and any other provider
        that still has jobs in flight or ended some recently."""
        hour_ago = _column_value(now - timedelta(hours=1))
        day_ago = _column_value(now - timedelta(days=1))
        # A provider's last success is looked up on its own, so that it is one index probe, not a scan.
        last_success = "".join(
            " UNION ALL SELECT CAST(? AS TEXT), 'succeeded', 'last', 0, NULL,"
            " (SELECT MAX(finished_at) FROM jobs WHERE provider = ? AND state = 'succeeded')"
            for _ in providers
        )
        rows = await self._rows(
            _STATUS_FIGURES + last_success,
            (hour_ago, day_ago, *(name for provider in providers for name in (provider, provider))),
        )
        counts: dict[str, dict[str, Any]] = {name: {} for name in providers}
        runs: dict[str, dict[str, list[float]]] = {}
        for row in rows:
            provider, label, span = row["provider"], row["label"], row["span"]
            figures = counts.setdefault(provider, {})
            if span == "now":
                key = "queued" if label == JobState.QUEUED else "running"
                figures[key] = figures.get(key, 0) + int(row["jobs"])
            elif span == "hour":
                figures["ended_last_hour"] = figures.get("ended_last_hour", 0) + int(row["jobs"])
                if label in ERROR_STATES:
                    figures["errors_last_hour"] = figures.get("errors_last_hour", 0) + int(row["jobs"])
            elif span == "last" and row["ended"] is not None:
                figures["last_success"] = datetime.fromisoformat(row["ended"])
            elif span == "run":
                seconds = datetime.fromisoformat(row["ended"]) - datetime.fromisoformat(row["started"])
                runs.setdefault(provider, {}).setdefault(label, []).append(seconds.total_seconds())
        return {
            provider: ProviderFigures(
                **figures,
                run_seconds={
                    label: median
                    for label, values in sorted(runs.get(provider, {}).items())
                    if (median := _median(values)) is not None
                },
            )
            for provider, figures in counts.items()
        }


#: /status's figures as rows of (provider, label, span, jobs, started, ended): per provider and state, the jobs
#: in flight ('now') and those that ended in the last hour ('hour'); then every success of the last day with
#: its acceptance and end ('run'), labelled by model, or by operation where the provider has no models.
#: The last hour is grouped by state first: grouped by provider first, SQLite with statistics (after an ANALYZE)
#: walks all of jobs_submitted for the grouping's order instead of the last hour of jobs_finished_at.
_STATUS_FIGURES = (
    "SELECT provider, state AS label, 'now' AS span, COUNT(*) AS jobs, CAST(NULL AS TEXT) AS started,"
    " CAST(NULL AS TEXT) AS ended"
    " FROM jobs WHERE state IN ('queued', 'submitting', 'running') GROUP BY provider, state"
    " UNION ALL SELECT provider, state, 'hour', COUNT(*), NULL, NULL FROM jobs WHERE finished_at >= ?"
    " GROUP BY state, provider"
    " UNION ALL SELECT provider, COALESCE(model, operation), 'run', 0, accepted_at, finished_at FROM jobs"
    " WHERE state = 'succeeded' AND finished_at >= ? AND accepted_at IS NOT NULL"
)


#: Every table of the ledger, each after the tables it refers to.
_TABLES = ("guild_settings", "provider_state", "jobs", "job_events", "intakes")

#: The fair order of a provider's queue: a member's n-th queued job takes turn n, plus one for each of
#: their jobs already out at the provider; ties go to whoever was sent a job least recently, then to the
#: earlier job. One member's twenty jobs therefore never hold up everyone else.
_FAIR_ORDER = (
    "SELECT q.id, q.operation, q.submit_attempts, q.queue_position,"
    " q.nth + COALESCE(b.busy, 0) AS turn, COALESCE(b.last_sent, '') AS last_sent"
    " FROM (SELECT id, user_id, operation, submit_attempts, queue_position, queue_priority, next_check_at,"
    "   ROW_NUMBER() OVER (PARTITION BY user_id ORDER BY queue_priority, id) AS nth"
    "   FROM jobs WHERE provider = ? AND state = 'queued') AS q"
    " LEFT JOIN (SELECT user_id, SUM(CASE WHEN state IN ('submitting', 'running') THEN 1 ELSE 0 END) AS busy,"
    "   MAX(submitted_at) AS last_sent"
    "   FROM jobs WHERE provider = ? AND (state IN ('submitting', 'running') OR submitted_at > ?)"
    "   GROUP BY user_id) AS b ON b.user_id = q.user_id"
)


async def _scalar(db: Transaction, sql: str, params: Sequence[Any]) -> Any:
    rows = list(await db.fetch(sql, params))
    return rows[0][0] if rows else None


#: Jobs that count against a daily limit: not failed, refused, or ended before the provider started them.
_USAGE = (
    "SELECT"
    " (SELECT COUNT(*) FROM jobs WHERE user_id = ? AND state IN ('queued', 'submitting', 'running')),"
    " (SELECT COUNT(*) FROM jobs WHERE user_id = ? AND created_at >= ? AND state NOT IN ('failed', 'rejected')"
    "   AND NOT (state IN ('cancelled', 'timed_out') AND started_at IS NULL)),"
    " (SELECT COUNT(*) FROM jobs WHERE guild_id = ? AND created_at >= ? AND state NOT IN ('failed', 'rejected')"
    "   AND NOT (state IN ('cancelled', 'timed_out') AND started_at IS NULL))"
)


async def _jobs_by_ids(db: Transaction, ids: Sequence[int], *, order: str) -> list[Job]:
    marks = ", ".join("?" for _ in ids)
    sql = f"SELECT * FROM jobs WHERE id IN ({marks}) ORDER BY {order}, id"  # noqa: S608
    return [Job.from_row(row) for row in await db.fetch(sql, ids)]


async def _usage(db: Transaction, *, user_id: int, guild_id: int | None, since: str) -> Usage:
    guild = guild_id if guild_id is not None else -1
    rows = list(await db.fetch(_USAGE, (user_id, user_id, since, guild, since)))
    active, mine, server = (int(value) for value in rows[0])
    return Usage(active=active, user_today=mine, guild_today=server)


#: A job's cost as far as budgets go: what its provider reported, else what it was expected to cost.
_COUNTED_CREDITS = (
    "SELECT COALESCE(SUM(CASE WHEN created_at >= ? THEN COALESCE(credits, estimated_credits, 0) END), 0),"
    " COALESCE(SUM(COALESCE(credits, estimated_credits, 0)), 0) FROM jobs"
    " WHERE {who} = ? AND created_at >= ? AND state NOT IN ('failed', 'rejected')"
    " AND NOT (state IN ('cancelled', 'timed_out') AND started_at IS NULL)"
)


async def _credit_usage(
    db: Transaction, *, user_id: int, guild_id: int | None, day_start: str, month_start: str
) -> CreditUsage:
    async def spent(column: str, who: int) -> tuple[float, float]:
        rows = await db.fetch(_COUNTED_CREDITS.format(who=column), (day_start, who, month_start))
        today, month = next(iter(rows))
        return float(today), float(month)

    user_today, user_month = await spent("user_id", user_id)
    if guild_id is None:
        return CreditUsage(user_today, user_month)
    return CreditUsage(user_today, user_month, *await spent("guild_id", guild_id))


async def _estimate(db: Transaction, cost_class: str, *, recent: int = 25) -> float | None:
    rows = await db.fetch(
        "SELECT credits FROM jobs WHERE cost_class = ? AND state = 'succeeded' AND credits IS NOT NULL"
        " ORDER BY finished_at DESC LIMIT ?",
        (cost_class, recent),
    )
    return _median([float(row[0]) for row in rows])


#: The run times of the recent succeeded jobs of one cost class, newest first (index jobs_run_times_by_class).
RUN_TIMES_BY_CLASS = (
    "SELECT source, accepted_at, finished_at FROM (SELECT 'class' AS source, accepted_at, finished_at FROM jobs"
    " WHERE state = 'succeeded' AND cost_class = ? AND accepted_at IS NOT NULL"
    " ORDER BY finished_at DESC LIMIT ?) AS by_class"
)
#: The same of one provider and model (index jobs_finished_by_model); ``same_model`` is ``model = ?`` or
#: ``model IS NULL``, since PostgreSQL cannot use an index for ``IS NOT DISTINCT FROM``. Ordering by the one
#: model too lets PostgreSQL read ``IS NULL`` in the index's order (it sorts all the rows otherwise).
RUN_TIMES_BY_MODEL = (
    "SELECT source, accepted_at, finished_at FROM (SELECT 'model' AS source, accepted_at, finished_at FROM jobs"
    " WHERE state = 'succeeded' AND provider = ? AND {same_model} AND accepted_at IS NOT NULL"
    " ORDER BY model DESC, finished_at DESC LIMIT ?) AS by_model"
)


def _median(values: list[float]) -> float | None:
    if not values:
        return None
    values = sorted(values)
    middle = len(values) // 2
    return values[middle] if len(values) % 2 else (values[middle - 1] + values[middle]) / 2


async def _admit(db: Transaction, new: NewJob, admission: Admission, estimate: float | None = None) -> None:
    # Counting and creating are one step for each member and server, in whichever process asks.
    await db.lock(f"admit:user:{new.user_id}")
    if new.guild_id is not None:
        await db.lock(f"admit:guild:{new.guild_id}")
    usage = await _usage(db, user_id=new.user_id, guild_id=new.guild_id, since=_column_value(admission.day_start))
    if admission.active_per_user and usage.active >= admission.active_per_user:
        raise LimitReached("active", usage)
    if admission.per_user_per_day and usage.user_today >= admission.per_user_per_day:
        raise LimitReached("user_day", usage)
    if new.guild_id is not None and admission.per_guild_per_day and usage.guild_today >= admission.per_guild_per_day:
        raise LimitReached("guild_day", usage)
    if new.guild_id is None or not (admission.credits_per_day or admission.credits_per_month):
        return
    assert admission.month_start is not None
    spent = await _credit_usage(
        db,
        user_id=new.user_id,
        guild_id=new.guild_id,
        day_start=_column_value(admission.day_start),
        month_start=_column_value(admission.month_start),
    )
    cost = estimate or 0.0
    for limit, budget, used in (
        ("credits_day", admission.credits_per_day, spent.guild_today),
        ("credits_month", admission.credits_per_month, spent.guild_month),
    ):
        # Without history the cost is unknown, and the job is let through while anything is left.
        if budget and (used >= budget or used + cost > budget):
            raise LimitReached(limit, usage, credits=spent, estimate=estimate)


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


async def _fetch(db: Transaction, job_id: int) -> Job:
    rows = list(await db.fetch("SELECT * FROM jobs WHERE id = ?", (job_id,)))
    row = rows[0] if rows else None
    assert row is not None
    return Job.from_row(row)


def _release_values(name: str, value: Any, now: str) -> tuple[Any, ...]:
    return (now, value) if name == "next_check_at" else (value,)


async def _lease(
    db: Transaction,
    rows: Iterable[Any],
    owner: str,
    until: str,
    also: str,
    also_params: Sequence[Any],
    *,
    order: str,
) -> list[Job]:
    """Lease the jobs of ``rows`` (selected as due in the same transaction) to ``owner``, setting ``also``."""
    ids = [row["id"] for row in rows]
    if not ids:
        return []
    marks = ", ".join("?" for _ in ids)
    await db.execute(
        f"UPDATE jobs SET lease_owner = ?, lease_until = ?, {also} WHERE id IN ({marks})",  # noqa: S608
        (owner, until, *also_params, *ids),
    )
    return await _jobs_by_ids(db, ids, order=order)


async def _drop_intake(db: Transaction, interaction_id: int | None) -> None:
    if interaction_id is not None:
        await db.execute("DELETE FROM intakes WHERE interaction_id = ?", (interaction_id,))


async def _add_event(
    db: Transaction, job_id: int, at: str, from_state: JobState | None, to_state: JobState, detail: str
) -> None:
    await db.execute(
        "INSERT INTO job_events (job_id, at, from_state, to_state, detail) VALUES (?, ?, ?, ?, ?)",
        (job_id, at, from_state.value if from_state else None, to_state.value, detail),
    )
