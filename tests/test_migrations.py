"""Migrations apply once, in order, and running them again changes nothing."""

from __future__ import annotations

import asyncio

import asyncpg

from tierset.store.migrate import available_migrations, migrate


async def test_migrating_twice_applies_each_version_once(create_database):
    connection = await asyncpg.connect(await create_database())
    try:
        first = await migrate(connection)
        second = await migrate(connection)
        recorded = await connection.fetch("SELECT version FROM schema_migrations ORDER BY version")
        tables = {
            r["tablename"]
            for r in await connection.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            )
        }
    finally:
        await connection.close()
    assert first == [m.version for m in available_migrations()]
    assert second == []
    assert [r["version"] for r in recorded] == first
    assert {"accounts", "retailers", "settings", "integrations"} <= tables


async def test_concurrent_migrations_do_not_race(create_database):
    dsn = await create_database()
    connections = [await asyncpg.connect(dsn) for _ in range(4)]
    try:
        results = await asyncio.gather(*(migrate(c) for c in connections))
    finally:
        for connection in connections:
            await connection.close()
    assert sorted(results, key=len)[-1] == [m.version for m in available_migrations()]
    assert sum(len(r) for r in results) == len(available_migrations())
