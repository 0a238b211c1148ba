"""The change log's workloads: writes with the log and counter, and history reads.

Usage: ``python bench/history_load.py SPEC.json`` prints a JSON result, like load.py.
``spec["mode"]`` says what runs, at ``spec["concurrency"]`` for ``spec["seconds"]``
after ``spec["warmup_seconds"]``:

* ``put`` / ``delete``: PutSetting / DeleteSetting over gRPC. Each worker has its own
  slice of the keys seeded for deletion (run.py's ``seed_history``), so a delete never
  finds its key already gone.
* ``raw-put`` / ``raw-delete``: the same upsert (or delete), change-log insert and counter
  bump (and, for a delete, the read of what the scope now inherits), as one statement
  from a bare asyncpg pool of a server's size: the database's limit for a logged write,
  with nothing of tierset's in the way.
* ``changes``: ListChanges, newest first, a page of 100 of one account's history.
* ``at-revision``: GetSettings of 10 keys of a retailer at a random retained revision.
"""

from __future__ import annotations

import asyncio
import json
import random
import resource
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import uvloop

from tierset.v1 import settings_pb2, settings_pb2_grpc

RAW_PUT = """
WITH rev AS (
    UPDATE revision_counter SET revision = revision + 1 WHERE only_row = true RETURNING revision
), up AS (
    INSERT INTO settings AS s (level, account_id, key, type, value, create_revision, mod_revision)
    SELECT 'ACCOUNT', $1, $2, 'INTEGER', $3::text::jsonb, rev.revision, rev.revision FROM rev
    ON CONFLICT (level, scope_id, key) DO UPDATE
       SET value = EXCLUDED.value, version = s.version + 1, mod_revision = EXCLUDED.mod_revision
    RETURNING s.*
)
INSERT INTO change_log (revision, seq, operation, level, account_id, owner_account_id, key,
                        setting_id, new_type, new_value, new_version)
SELECT rev.revision, 0, 'PUT', 'ACCOUNT', $1, $1, $2, up.id, up.type, up.value, up.version
  FROM rev, up
"""
# A delete answers with what the scope now inherits (for these ACCOUNT deletes, the key's
# GLOBAL value), so the baseline reads it too, in the same statement as DeleteSetting
# does (migration 0009): the database's limit for the whole of what a delete needs.
RAW_DELETE = """
WITH rev AS (
    UPDATE revision_counter SET revision = revision + 1 WHERE only_row = true RETURNING revision
), gone AS (
    DELETE FROM settings WHERE level = 'ACCOUNT' AND scope_id = $1 AND key = $2 RETURNING *
), logged AS (
    INSERT INTO change_log (revision, seq, operation, level, account_id, owner_account_id, key,
                            setting_id, old_type, old_value, old_version)
    SELECT rev.revision, 0, 'DELETE', 'ACCOUNT', $1, $1, $2, gone.id, gone.type, gone.value,
           gone.version
      FROM rev, gone
    RETURNING revision
)
SELECT rev.revision, gone.id AS deleted_id, (SELECT count(*) FROM logged) AS logged,
       eff.id, eff.type::text AS type, eff.value::text AS value, eff.version
  FROM rev LEFT JOIN gone ON true
  LEFT JOIN LATERAL (
      SELECT s.* FROM settings s WHERE s.level = 'GLOBAL' AND s.scope_id = 0 AND s.key = $2
  ) eff ON true
"""


def delete_slice(spec: dict[str, Any], worker: int) -> list[tuple[int, str]]:
    """The (account, key) pairs worker `worker` deletes: its own share of the seeded ones."""
    first, last = spec["delete_accounts"]
    pairs = [
        (account, f"DEL.KEY.{k:04}")
        for k in range(1, spec["delete_keys"] + 1)
        for account in range(first, last + 1)
    ]
    return pairs[worker :: spec["concurrency"]]


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    # This run's CPU alone: bench/loader.py runs many in one process.
    before = resource.getrusage(resource.RUSAGE_SELF)
    cpu_before = before.ru_utime + before.ru_stime
    mode = spec["mode"]
    concurrency = spec["concurrency"]
    rng = random.Random(12)  # noqa: S311 - a reproducible load, not a secret
    pool: asyncpg.Pool | None = None
    channel: grpc.aio.Channel | None = None
    if mode.startswith("raw-"):
        pool = await asyncpg.create_pool(spec["dsn"], min_size=spec["pool"], max_size=spec["pool"])
    else:
        channel = grpc.aio.insecure_channel(spec["target"])
    stub = settings_pb2_grpc.SettingsServiceStub(channel) if channel else None
    metadata = [tuple(pair) for pair in spec.get("metadata", [])]
    accounts = spec["accounts"]

    def call(worker: int) -> Callable[[int], Awaitable[Any]]:
        slice_ = delete_slice(spec, worker) if mode.endswith("delete") else []
        if mode == "put":
            assert stub is not None

            def put(n: int) -> Awaitable[Any]:
                return stub.PutSetting(
                    settings_pb2.PutSettingRequest(
                        scope=settings_pb2.Scope(account_id=(worker + n) % accounts + 1),
                        key=f"PUT.KEY.{n % 500:03}",
                        type=settings_pb2.SETTING_TYPE_INTEGER,
                        value=settings_pb2.SettingValue(integer_value=n),
                    ),
                    metadata=metadata,
                )

            return put
        if mode == "delete":
            assert stub is not None

            def delete(n: int) -> Awaitable[Any]:
                account, key = slice_[n]
                return stub.DeleteSetting(
                    settings_pb2.DeleteSettingRequest(
                        scope=settings_pb2.Scope(account_id=account), key=key
                    ),
                    metadata=metadata,
                )

            return delete
        if mode == "raw-put":
            assert pool is not None
            return lambda n: pool.execute(
                RAW_PUT, (worker + n) % accounts + 1, f"PUT.KEY.{n % 500:03}", str(n)
            )
        if mode == "raw-delete":
            assert pool is not None
            return lambda n: pool.fetchrow(RAW_DELETE, *slice_[n])
        if mode == "changes":
            assert stub is not None
            return lambda n: stub.ListChanges(
                settings_pb2.ListChangesRequest(
                    scope=settings_pb2.Scope(account_id=rng.randint(1, accounts)),
                    newest_first=True,
                    page_size=100,
                ),
                metadata=metadata,
            )
        if mode == "at-revision":
            assert stub is not None
            low, high = spec["revisions"]
            keys = [f"BENCH.KEY.{k:03}" for k in range(1, 11)]
            return lambda n: stub.GetSettings(
                settings_pb2.GetSettingsRequest(
                    scope=settings_pb2.Scope(retailer_id=rng.randint(1, accounts)),
                    keys=keys,
                    at_revision=rng.randint(low, high),
                ),
                metadata=metadata,
            )
        raise SystemExit(f"unknown mode {mode!r}")

    warm_until = time.perf_counter() + spec["warmup_seconds"]
    stop_at = warm_until + spec["seconds"]
    latencies: list[float] = []
    errors: dict[str, int] = {}
    exhausted = 0

    async def worker(w: int) -> None:
        nonlocal exhausted
        one = call(w)
        n = 0
        while (started := time.perf_counter()) < stop_at:
            try:
                await one(n)
            except IndexError:
                exhausted += 1  # every key of this worker's slice is deleted: stop early
                return
            except grpc.aio.AioRpcError as error:
                errors[error.code().name] = errors.get(error.code().name, 0) + 1
            n += 1
            if started >= warm_until:
                latencies.append(time.perf_counter() - started)

    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    if pool is not None:
        await pool.close()
    if channel is not None:
        await channel.close(None)
    latencies.sort()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = usage.ru_utime + usage.ru_stime - cpu_before

    def percentile(p: float) -> float:
        if not latencies:
            return 0.0
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000

    if exhausted:
        errors["KEYS_EXHAUSTED"] = exhausted  # the figure would be low: seed more keys
    return {
        "requests": len(latencies),
        "rps": len(latencies) / spec["seconds"],
        "p50_ms": percentile(0.5),
        "p99_ms": percentile(0.99),
        "errors": errors,
        "client_cpu_cores": cpu / (spec["seconds"] + spec["warmup_seconds"]),
    }


if __name__ == "__main__":
    print(json.dumps(uvloop.run(run(json.loads(Path(sys.argv[1]).read_text())))))
