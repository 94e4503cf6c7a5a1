"""The throwaway PostgreSQL server the tests use: each test gets its own empty database."""

from __future__ import annotations

import asyncpg

from tests.postgres import PostgresServer

seen: list[str] = []


async def tables(url: str) -> list[str]:
    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    finally:
        await connection.close()
    return [row["tablename"] for row in rows]


async def databases(server: PostgresServer) -> set[str]:
    connection = await asyncpg.connect(server.server_url)
    try:
        return {row["datname"] for row in await connection.fetch("SELECT datname FROM pg_database")}
    finally:
        await connection.close()


async def test_a_test_gets_an_empty_database_of_its_own(postgres_url: str, postgres_server: PostgresServer) -> None:
    assert await tables(postgres_url) == []
    connection = await asyncpg.connect(postgres_url)
    try:
        await connection.execute("CREATE TABLE marker (id INTEGER)")
    finally:
        await connection.close()
    assert "@" in postgres_url
    assert ":" not in postgres_url.split("//", 1)[1].split("@", 1)[0]
    seen.append(postgres_url)


async def test_the_next_test_gets_another_and_the_last_one_is_gone(
    postgres_url: str, postgres_server: PostgresServer
) -> None:
    assert await tables(postgres_url) == []
    names = await databases(postgres_server)
    assert postgres_url.rsplit("/", 1)[1] in names
    for earlier in seen:
        assert earlier != postgres_url
        assert earlier.rsplit("/", 1)[1] not in names
