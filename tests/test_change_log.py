"""The change log's invariant, at the store level over the session's PostgreSQL.

Every committed change takes exactly one revision, in commit order, and one log row
with its actor and its old and new sides; a refused write takes neither. A reader
tailing the log by "revision > last" sees every change exactly once, in order.
"""

from __future__ import annotations

import asyncio
import json
import random
import time

import asyncpg
import pytest

from tests.helpers import until_waiting_for_locks
from tierset.core.errors import Code, TiersetError
from tierset.core.values import Level, SettingType
from tierset.store.database import ScopeRef, Store, query
from tierset.store.migrate import available_migrations, migrate
from tierset.store.revisions import Actor


@pytest.fixture
def store(db) -> Store:
    return Store(db)


async def _account(store: Store, next_id) -> ScopeRef:
    return ScopeRef(Level.ACCOUNT, (await store.create_account(next_id(), "log test")).id)


async def test_a_tailing_reader_sees_every_change_once_in_commit_order(store, next_id):
    scope = await _account(store, next_id)
    start, _ = await store.current_revision()
    writers, duration = 8, 3.0
    acknowledged: dict[int, tuple[str, str, str | None, str | None]] = {}
    done = asyncio.Event()

    async def writer(n: int) -> None:
        rng = random.Random(n)
        actor = Actor(
            user_id=n,
            username=f"writer-{n}",
            credential_kind="API_TOKEN",
            credential_id=100 + n,
            request_id=f"req-{n}",
        )
        values: dict[str, str | None] = {}
        end = time.monotonic() + duration
        while time.monotonic() < end:
            key = f"TAIL.W{n}.K{rng.randrange(4)}"
            old = values.get(key)
            if old is not None and rng.random() < 0.3:
                result = await store.delete(scope, key, actor=actor, reason=f"d{n}")
                acknowledged[result.revision] = ("DELETE", key, old, None)
                values[key] = None
            elif old is not None and rng.random() < 0.2:
                with pytest.raises(TiersetError) as refused:  # stale: leaves nothing
                    await store.write(scope, key, SettingType.INTEGER, "0", 10**6, actor)
                assert refused.value.code == Code.ABORTED
            else:
                new = str(rng.randrange(10**9))
                result = await store.write(
                    scope, key, SettingType.INTEGER, new, actor=actor, reason=f"p{n}"
                )
                acknowledged[result.revision] = ("PUT", key, old, new)
                values[key] = new

    async def reader() -> list:
        seen, last = [], start
        while True:
            finished = done.is_set()
            page = await store.changes(min_revision=last + 1, page_size=50)
            for change in page.changes:
                assert change.revision > last, "a revision below one already seen"
                last = change.revision
                seen.append(change)
            if finished and not page.changes:
                return seen
            if not page.changes:
                await asyncio.sleep(0.01)

    tail = asyncio.create_task(reader())
    await asyncio.gather(*(writer(n) for n in range(writers)))
    done.set()
    seen = await tail
    end, _ = await store.current_revision()

    assert len(seen) >= writers  # every writer starts with a put
    assert [c.revision for c in seen] == list(range(start + 1, end + 1)), "no gap, no repeat"
    assert sorted(acknowledged) == [c.revision for c in seen]
    for change in seen:
        operation, key, old, new = acknowledged[change.revision]
        assert (change.operation, change.key, change.seq) == (operation, key, 0)
        assert (change.old_value, change.new_value) == (old, new)
        writer_n = int(key.split(".")[1][1:])
        assert change.actor == Actor(
            writer_n, f"writer-{writer_n}", "API_TOKEN", 100 + writer_n, f"req-{writer_n}"
        )
        assert change.reason == ("d" if operation == "DELETE" else "p") + str(writer_n)
        assert change.owner_account_id == scope.id


async def test_a_delete_waiting_for_the_counter_inherits_a_value_committed_meanwhile(
    store, db, next_id
):
    """A GLOBAL value put while an ACCOUNT delete of the same key waits for the revision
    counter: the delete's one statement (0009) began before that put committed, and still
    it answers with the GLOBAL value it now inherits, at the next revision."""
    scope = await _account(store, next_id)
    key = f"LOG.RACE.{next_id()}"
    await store.write(scope, key, SettingType.INTEGER, "1")
    async with db.acquire() as holder:
        async with holder.transaction():
            put = await holder.fetchrow(
                query("put_setting"),
                "GLOBAL",
                None,
                None,
                key,
                "INTEGER",
                "2",
                None,
                *Actor().columns(),
                "",
                None,
            )
            deleting = asyncio.ensure_future(store.delete(scope, key))
            await until_waiting_for_locks(db)
        deleted = await deleting
    assert deleted.revision == put["revision"] + 1
    assert deleted.effective is not None
    assert (deleted.effective.level, deleted.effective.value) == (Level.GLOBAL, "2")


async def test_each_write_and_delete_logs_its_whole_old_and_new_side(store, next_id):
    scope = await _account(store, next_id)
    actor = Actor(7, "alice", "ACCESS_TOKEN", 70, "r-1")
    created = await store.write(scope, "LOG.ONE", SettingType.STRING, '"a"', actor=actor)
    updated = await store.write(scope, "LOG.ONE", SettingType.JSON, '{"b": 1}', 1, actor, "why")
    deleted = await store.delete(scope, "LOG.ONE", 2, actor, "gone")
    assert created.revision + 1 == updated.revision == deleted.revision - 1
    assert (created.create_revision, created.mod_revision) == (created.revision,) * 2
    assert (updated.create_revision, updated.mod_revision) == (created.revision, updated.revision)

    page = await store.changes(scope=scope, key="LOG.ONE")
    rows = [
        (
            c.operation,
            c.old_type,
            c.old_value,
            c.old_version,
            c.new_type,
            c.new_value,
            c.new_version,
            c.reason,
        )
        for c in page.changes
    ]
    assert rows == [
        ("PUT", None, None, None, SettingType.STRING, '"a"', 1, ""),
        ("PUT", SettingType.STRING, '"a"', 1, SettingType.JSON, '{"b": 1}', 2, "why"),
        ("DELETE", SettingType.JSON, '{"b": 1}', 2, None, None, None, "gone"),
    ]
    assert {c.actor for c in page.changes} == {actor}


ABORTED, NOT_FOUND = Code.ABORTED, Code.NOT_FOUND
UNKNOWN_RETAILER = ScopeRef(Level.RETAILER, 987_654_321)
UNKNOWN_ACCOUNT = ScopeRef(Level.ACCOUNT, 987_654_321)
# Each refusal, made at an account holding REF.KEY at version 1, and its status.
REFUSED = {
    "stale expected version": (
        lambda s, a: s.write(a, "REF.KEY", SettingType.INTEGER, "2", 5),
        ABORTED,
    ),
    "create-only of an existing key": (
        lambda s, a: s.write(a, "REF.KEY", SettingType.INTEGER, "2", 0),
        ABORTED,
    ),
    "update-only of a missing key": (
        lambda s, a: s.write(a, "REF.NONE", SettingType.INTEGER, "2", 1),
        ABORTED,
    ),
    "delete of a missing key": (lambda s, a: s.delete(a, "REF.NONE"), NOT_FOUND),
    "stale delete": (lambda s, a: s.delete(a, "REF.KEY", 9), ABORTED),
    "versioned delete of a missing key": (lambda s, a: s.delete(a, "REF.NONE", 1), NOT_FOUND),
    "write to an unknown retailer": (
        lambda s, a: s.write(UNKNOWN_RETAILER, "REF.KEY", SettingType.INTEGER, "2"),
        NOT_FOUND,
    ),
    "delete at an unknown account": (lambda s, a: s.delete(UNKNOWN_ACCOUNT, "REF.KEY"), NOT_FOUND),
    "restore below the compacted revision": (
        lambda s, a: s.restore(a, ["REF.KEY"], -1),
        Code.FAILED_PRECONDITION,
    ),
}


@pytest.mark.parametrize("refusal", list(REFUSED), ids=list(REFUSED))
async def test_a_refused_change_spends_no_revision_and_leaves_no_log_row(store, next_id, refusal):
    scope = await _account(store, next_id)
    await store.write(scope, "REF.KEY", SettingType.INTEGER, "1")
    before, _ = await store.current_revision()
    attempt, status = REFUSED[refusal]
    with pytest.raises(TiersetError) as refused:
        await attempt(store, scope)
    assert refused.value.code == status
    after, _ = await store.current_revision()
    assert after == before
    assert (await store.changes(min_revision=before + 1)).changes == []


async def test_migration_brings_existing_settings_forward_without_inventing_history(
    create_database,
):
    connection = await asyncpg.connect(await create_database())
    try:
        await connection.execute(
            "CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        for migration in available_migrations():
            if migration.version < 5:
                await connection.execute(migration.sql)
                await connection.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                    migration.version,
                    migration.name,
                )
        await connection.execute("INSERT INTO accounts (id, display_name) VALUES (1, 'old')")
        # Written out of id order, so the numbering must follow update_time.
        for key, age in (("OLD.B", 1), ("OLD.A", 3), ("OLD.C", 2)):
            await connection.execute(
                "INSERT INTO settings (level, account_id, key, type, value, update_time)"
                " VALUES ('ACCOUNT', 1, $1, 'INTEGER', '1', now() - make_interval(days => $2))",
                key,
                age,
            )
        later = [m.version for m in available_migrations() if m.version >= 5]
        assert await migrate(connection) == later  # 0005 and every migration after it
        numbered = await connection.fetch(
            "SELECT key, create_revision, mod_revision FROM settings ORDER BY key"
        )
        counter = await connection.fetchrow("SELECT * FROM revision_counter")
        log_rows = await connection.fetchval("SELECT count(*) FROM change_log")
    finally:
        await connection.close()
    assert [tuple(r) for r in numbered] == [("OLD.A", 1, 1), ("OLD.B", 3, 3), ("OLD.C", 2, 2)]
    assert (counter["revision"], counter["compacted_revision"]) == (3, 3)
    assert log_rows == 0


async def test_after_the_migration_writes_continue_the_count_and_older_reads_are_compacted(
    create_database,
):
    dsn = await create_database()
    connection = await asyncpg.connect(dsn)
    try:
        await migrate(connection)
    finally:
        await connection.close()
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    try:
        store = Store(pool)
        scope = ScopeRef(Level.ACCOUNT, (await store.create_account(None, "a")).id)
        first = await store.write(scope, "NEW.KEY", SettingType.STRING, json.dumps("x"))
        assert first.revision == 1
        assert (await store.resolve_at(scope, ["NEW.KEY"], 0)).settings == []
    finally:
        await pool.close()
