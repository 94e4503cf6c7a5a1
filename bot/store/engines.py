"""The two databases the ledger runs on, behind one small interface the store writes its SQL against.

SQL is written once with ``?`` placeholders in the subset both dialects share; the few places where they
differ (row locks, advisory locks, notifications, the schema version) are methods and attributes here.
SQLite is the embedded ledger of one process: ``BEGIN IMMEDIATE`` makes every transaction the only
writer, so its row and advisory locks are nothing. PostgreSQL is the ledger several processes share:
claims skip rows another transaction holds, and a per-name advisory lock serialises what must be counted
and claimed in one step.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias

import aiosqlite
import asyncpg

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).with_name("migrations")
_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
#: The channel that tells other processes the ledger changed; it carries nothing else.
CHANNEL = "ledger_changed"
#: The advisory lock held while migrations run, so two processes starting together do not race.
_MIGRATION_LOCK = "bot:migrations"


class StoreError(Exception):
    """The database cannot be used; the message says why in one sentence."""


def migrations(folder: Path) -> list[tuple[int, Path]]:
    """The migration files in order, numbered from 1 without gaps."""
    found = sorted(
        (int(match.group(1)), path)
        for path in folder.iterdir()
        if (match := _MIGRATION_NAME.match(path.name)) is not None
    )
    if [number for number, _ in found] != list(range(1, len(found) + 1)):
        raise StoreError(f"The migrations in {folder} are not numbered 0001, 0002, ... without gaps.")
    return found


class Transaction(Protocol):
    """One transaction on the ledger."""

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Any]: ...

    async def fetch_held(self, sql: str, params: Sequence[Any] = (), *, skip_locked: bool = False) -> list[Any]:
        """Rows of a SELECT that stay held until the transaction ends; with ``skip_locked``, rows another
        transaction holds are left out instead of waited for (a claim)."""

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement; returns the number of rows it changed."""

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None: ...

    async def lock(self, name: str) -> None:
        """Hold ``name`` until the transaction ends; another transaction locking it waits."""

    async def notify(self) -> None:
        """Wake the other processes once the transaction commits."""


class Engine(Protocol):
    """A database the ledger runs on."""

    #: Whether other processes may share this ledger (so a lease of another owner may be alive).
    shared: bool

    def transaction(self) -> contextlib.AbstractAsyncContextManager[Transaction]: ...

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Any]: ...

    async def schema_version(self) -> int: ...

    async def listen(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` whenever another transaction notified (nothing for a one-process ledger)."""

    async def close(self) -> None: ...


# SQLite.


class _SqliteTransaction:
    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return list(await self._db.execute_fetchall(sql, params))

    async def fetch_held(self, sql: str, params: Sequence[Any] = (), *, skip_locked: bool = False) -> list[Any]:
        # BEGIN IMMEDIATE already made this transaction the only writer.
        return await self.fetch(sql, params)

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        cursor = await self._db.execute(sql, params)
        return int(cursor.rowcount)

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        await self._db.executemany(sql, rows)

    async def lock(self, name: str) -> None:
        pass

    async def notify(self) -> None:
        pass


class SqliteEngine:
    """One connection in WAL mode; a lock keeps each transaction whole."""

    shared = False

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path, migrations_folder: Path) -> SqliteEngine:
        files = migrations(migrations_folder)
        if str(path) != ":memory:":
            path.parent.mkdir(parents=True, exist_ok=True)
        db = await aiosqlite.connect(path, isolation_level=None)
        try:
            db.row_factory = aiosqlite.Row
            await db.execute("PRAGMA busy_timeout = 5000")
            await _sqlite_refuse_newer(db, path, files)
            await db.execute("PRAGMA journal_mode = WAL")
            await db.execute("PRAGMA foreign_keys = ON")
            await db.execute("PRAGMA synchronous = NORMAL")
            await _sqlite_migrate(db, path, files)
        except BaseException:
            await db.close()
            raise
        return cls(db)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        async with self._lock:
            try:
                await self._db.execute("BEGIN IMMEDIATE")
                yield _SqliteTransaction(self._db)
            except BaseException:
                # A cancelled await may still have its BEGIN run on the connection's thread; the
                # ROLLBACK queues behind it. If the BEGIN itself failed there is nothing to undo.
                with contextlib.suppress(sqlite3.OperationalError):
                    await self._db.execute("ROLLBACK")
                raise
            await self._db.execute("COMMIT")

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        # Reads share the connection with transactions, so they wait for them: never a half-done write.
        async with self._lock:
            return list(await self._db.execute_fetchall(sql, params))

    async def schema_version(self) -> int:
        rows = await self.fetch("PRAGMA user_version")
        return int(rows[0][0]) if rows else 0

    async def listen(self, callback: Callable[[], None]) -> None:
        pass

    async def close(self) -> None:
        await self._db.close()


async def _sqlite_user_version(db: aiosqlite.Connection) -> int:
    async with db.execute("PRAGMA user_version") as cursor:
        row = await cursor.fetchone()
    return int(row[0]) if row else 0


async def _sqlite_refuse_newer(db: aiosqlite.Connection, path: Path, files: list[tuple[int, Path]]) -> None:
    _refuse_newer(await _sqlite_user_version(db), files, str(path))


async def _sqlite_migrate(db: aiosqlite.Connection, path: Path, files: list[tuple[int, Path]]) -> None:
    current = await _sqlite_user_version(db)
    pending = [(number, file) for number, file in files if number > current]
    if not pending:
        return
    script = "".join(file.read_text(encoding="utf-8") + "\n" for _, file in pending)
    try:
        await db.executescript(f"BEGIN IMMEDIATE;\n{script}\nPRAGMA user_version = {pending[-1][0]};\nCOMMIT;")
    except sqlite3.Error as exc:
        if db.in_transaction:
            await db.execute("ROLLBACK")
        raise _migration_failed(str(path), pending, exc) from exc


def _refuse_newer(current: int, files: list[tuple[int, Path]], where: str) -> None:
    latest = files[-1][0] if files else 0
    if current > latest:
        raise StoreError(
            f"The database {where} was written by a newer version of the bot (schema {current}, this one knows "
            f"up to {latest}); run the newer version or point DATABASE_URL at another database."
        )


def _migration_failed(where: str, pending: list[tuple[int, Path]], exc: Exception) -> StoreError:
    names = ", ".join(file.name for _, file in pending)
    return StoreError(
        f"Updating the database {where} failed in {names} ({exc}); nothing was changed, so fix the migration "
        "or restore the previous version of the bot."
    )


# PostgreSQL.

if TYPE_CHECKING:
    _Connection: TypeAlias = asyncpg.Connection[Any] | asyncpg.pool.PoolConnectionProxy[Any]


@lru_cache(maxsize=512)
def numbered(sql: str) -> str:
    """The statement with PostgreSQL's numbered placeholders for the shared ``?`` ones."""
    parts = sql.split("?")
    return "".join(part + (f"${index}" if index < len(parts) else "") for index, part in enumerate(parts, 1))


def _changed(status: str) -> int:
    # asyncpg returns the command tag: "UPDATE 3", "DELETE 0", "INSERT 0 1".
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0


class _PostgresTransaction:
    def __init__(self, connection: _Connection) -> None:
        self._connection = connection

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return list(await self._connection.fetch(numbered(sql), *params))

    async def fetch_held(self, sql: str, params: Sequence[Any] = (), *, skip_locked: bool = False) -> list[Any]:
        clause = " FOR UPDATE SKIP LOCKED" if skip_locked else " FOR UPDATE"
        return await self.fetch(sql + clause, params)

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        return _changed(await self._connection.execute(numbered(sql), *params))

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        await self._connection.executemany(numbered(sql), rows)

    async def lock(self, name: str) -> None:
        await self._connection.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", name)

    async def notify(self) -> None:
        await self._connection.execute(f"NOTIFY {CHANNEL}")


class PostgresEngine:
    """A pool of connections to a PostgreSQL server several processes share."""

    shared = True

    def __init__(self, pool: asyncpg.Pool[Any], where: str) -> None:
        self._pool = pool
        self._where = where
        self._listener: asyncpg.pool.PoolConnectionProxy[Any] | None = None
        self._callbacks: list[Callable[[], None]] = []

    @classmethod
    async def open(cls, url: str, migrations_folder: Path, *, pool_size: int = 10) -> PostgresEngine:
        files = migrations(migrations_folder)
        where = _redacted(url)
        try:
            pool = await asyncpg.create_pool(url, min_size=1, max_size=pool_size)
        except (OSError, asyncpg.PostgresError) as exc:
            raise StoreError(
                f"The PostgreSQL ledger at {where} cannot be reached ({type(exc).__name__}); check DATABASE_URL "
                "and that the server is running."
            ) from exc
        try:
            async with pool.acquire() as connection:
                await _postgres_migrate(connection, where, files)
        except BaseException:
            await pool.close()
            raise
        return cls(pool, where)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        async with self._pool.acquire() as connection, connection.transaction():
            yield _PostgresTransaction(connection)

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return list(await self._pool.fetch(numbered(sql), *params))

    async def schema_version(self) -> int:
        return await _postgres_version(self._pool)

    async def listen(self, callback: Callable[[], None]) -> None:
        self._callbacks.append(callback)
        if self._listener is None:
            listener = await self._pool.acquire()
            await listener.add_listener(CHANNEL, self._notified)
            self._listener = listener

    def _notified(self, *_: Any) -> None:
        for callback in self._callbacks:
            callback()

    async def close(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(asyncpg.PostgresError, OSError):
                await self._listener.remove_listener(CHANNEL, self._notified)
            await self._pool.release(self._listener)
            self._listener = None
        await self._pool.close()


def _redacted(url: str) -> str:
    """The URL without its password, for messages."""
    return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", url)


async def _postgres_version(connection: Any) -> int:
    exists = await connection.fetchval("SELECT to_regclass('schema_version') IS NOT NULL")
    if not exists:
        return 0
    return int(await connection.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_version"))


async def _postgres_migrate(connection: _Connection, where: str, files: list[tuple[int, Path]]) -> None:
    async with connection.transaction():
        # Held to the end of this transaction: a second process starting now waits, then finds nothing to do.
        await connection.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", _MIGRATION_LOCK)
        current = await _postgres_version(connection)
        _refuse_newer(current, files, where)
        pending = [(number, file) for number, file in files if number > current]
        if not pending:
            return
        try:
            async with connection.transaction():
                await connection.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY)")
                for number, file in pending:
                    await connection.execute(file.read_text(encoding="utf-8"))
                    await connection.execute("INSERT INTO schema_version (version) VALUES ($1)", number)
        except asyncpg.PostgresError as exc:
            raise _migration_failed(where, pending, exc) from exc
