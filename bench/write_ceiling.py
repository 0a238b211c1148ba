"""The write ceiling of the revision counter: Store.write (and write + delete) with 1 and 8
concurrent writers against a raw-SQL upsert baseline, on an embedded PostgreSQL of its own.

`python bench/write_ceiling.py [durable]`: 3 s per figure. Part 2 of issue 12 folds this
into `make bench`; docs/performance.md records what it measured.
"""

from __future__ import annotations

import asyncio
import pathlib
import socket
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable

import asyncpg

from tierset.core.values import Level, SettingType
from tierset.ops.embedded import EmbeddedPostgres
from tierset.store.database import ScopeRef, Store
from tierset.store.migrate import migrate

SECONDS = 3.0
RAW_UPSERT = """
INSERT INTO settings (level, account_id, key, type, value, create_revision, mod_revision)
VALUES ('ACCOUNT', $1, $2, 'INTEGER', $3::text::jsonb, 0, 0)
ON CONFLICT (level, scope_id, key)
DO UPDATE SET value = EXCLUDED.value, version = settings.version + 1
"""


async def rate(writers: int, one: Callable[[int, int], Awaitable[None]]) -> float:
    """Operations per second of `writers` loops calling one(writer, n) for SECONDS."""
    done = 0

    async def loop(writer: int) -> None:
        nonlocal done
        end = time.monotonic() + SECONDS
        while time.monotonic() < end:
            await one(writer, done)
            done += 1

    start = time.monotonic()
    await asyncio.gather(*(loop(w) for w in range(writers)))
    return done / (time.monotonic() - start)


async def main(durable: bool) -> None:
    folder = pathlib.Path(tempfile.mkdtemp(prefix="tierset-ceiling-"))
    folder.chmod(0o755)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cluster = EmbeddedPostgres(folder, port, durable=durable)
    cluster.start()
    try:
        connection = await asyncpg.connect(cluster.dsn)
        await migrate(connection)
        await connection.close()
        pool = await asyncpg.create_pool(cluster.dsn, min_size=8, max_size=8)
        store = Store(pool)
        account = (await store.create_account(None, "bench")).id
        scope = ScopeRef(Level.ACCOUNT, account)

        async def put(w: int, n: int) -> None:
            await store.write(scope, f"K{w}.{n % 50}", SettingType.INTEGER, str(n))

        async def raw(w: int, n: int) -> None:
            await pool.execute(RAW_UPSERT, account, f"R{w}.{n % 50}", str(n))

        async def put_delete(w: int, n: int) -> None:
            await store.write(scope, f"D{w}.{n}", SettingType.INTEGER, "1")
            await store.delete(scope, f"D{w}.{n}")

        for writers in (1, 8):
            print(
                f"{writers} writer(s): Store.write {await rate(writers, put):.0f}/s,"
                f" raw upsert {await rate(writers, raw):.0f}/s,"
                f" write+delete pairs {await rate(writers, put_delete):.0f}/s"
            )
        await pool.close()
    finally:
        cluster.stop("immediate")


if __name__ == "__main__":
    asyncio.run(main(durable="durable" in sys.argv[1:]))
