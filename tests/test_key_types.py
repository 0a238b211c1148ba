"""One type per key: a write of another type than the key has at any other level (or
scope) is refused, FAILED_PRECONDITION / TYPE_MISMATCH naming the type and where it is
set, over gRPC and REST; nothing is written, no revision spent, no log row. Two racing
writes of different types never both land. `tierset check` reports databases written
before the rule with mixed types, and changes nothing.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import asyncpg
import grpc
import pytest

from tests.helpers import error_info, put_setting
from tests.test_cli import tierset
from tierset.core.authz import Role
from tierset.store.migrate import migrate
from tierset.v1 import settings_pb2

INTEGER = settings_pb2.SETTING_TYPE_INTEGER
STRING = settings_pb2.SETTING_TYPE_STRING


@dataclass
class Tree:
    """Two accounts; the first with two retailers."""

    account: int
    retailer: int
    other_account: int
    other_retailer: int

    def scope(self, where: str) -> settings_pb2.Scope | None:
        return {
            "GLOBAL": None,
            "ACCOUNT": settings_pb2.Scope(account_id=self.account),
            "RETAILER": settings_pb2.Scope(retailer_id=self.retailer),
            "ACCOUNT2": settings_pb2.Scope(account_id=self.other_account),
            "RETAILER2": settings_pb2.Scope(retailer_id=self.other_retailer),
        }[where]

    def named(self, where: str) -> str:
        """How the error names the place: 'GLOBAL', 'ACCOUNT 1111', 'RETAILER 2222'."""
        scope = self.scope(where)
        if scope is None:
            return "GLOBAL"
        if scope.HasField("account_id"):
            return f"ACCOUNT {scope.account_id}"
        return f"RETAILER {scope.retailer_id}"

    def rest_path(self, where: str, key: str) -> str:
        scope = self.scope(where)
        assert scope is not None
        if scope.HasField("account_id"):
            return f"/api/v4.1/settings/account/{scope.account_id}/{key}"
        return f"/api/v4.1/settings/retailer/{scope.retailer_id}/{key}"


@pytest.fixture
async def tree(new_account, new_retailer) -> Tree:
    account = await new_account()
    return Tree(
        account, await new_retailer(account), await new_account(), await new_retailer(account)
    )


async def put(stub, scope, key, type_, value, metadata=None):
    return await put_setting(stub, scope, key, type_, value, metadata)


async def footprint(db: asyncpg.Pool, key: str) -> tuple[int, int, int]:
    """(the revision counter, the key's stored rows, the key's log rows)."""
    async with db.acquire() as connection:
        return (
            await connection.fetchval("SELECT revision FROM revision_counter"),
            await connection.fetchval("SELECT count(*) FROM settings WHERE key = $1", key),
            await connection.fetchval("SELECT count(*) FROM change_log WHERE key = $1", key),
        )


# (where the key is set first, as INTEGER; where a STRING is then written)
PAIRS = [
    (first, second)
    for first in ("GLOBAL", "ACCOUNT", "RETAILER")
    for second in ("GLOBAL", "ACCOUNT", "RETAILER")
    if first != second
] + [("ACCOUNT", "ACCOUNT2"), ("RETAILER", "RETAILER2")]


@pytest.mark.parametrize(("first", "second"), PAIRS, ids=[f"{a}-then-{b}" for a, b in PAIRS])
async def test_a_second_type_at_another_level_is_refused(
    settings_stub, db, tree, unique_key, first, second
):
    key = unique_key("X.MAX")
    await put(settings_stub, tree.scope(first), key, INTEGER, 50)
    before = await footprint(db, key)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await put(settings_stub, tree.scope(second), key, STRING, "lots")
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    info = error_info(refused.value)
    assert info.reason == "TYPE_MISMATCH"
    assert f"{key} is INTEGER at {tree.named(first)}" in refused.value.details()
    assert dict(info.metadata) == {
        "key": key,
        "existing_type": "INTEGER",
        "where": tree.named(first),
    }
    assert await footprint(db, key) == before  # nothing written, no revision, no log row
    # The key's own type is still welcome there.
    await put(settings_stub, tree.scope(second), key, INTEGER, 7)


REST_PAIRS = [(a, b) for a, b in PAIRS if b != "GLOBAL"]


@pytest.mark.parametrize(
    ("first", "second"), REST_PAIRS, ids=[f"{a}-then-{b}" for a, b in REST_PAIRS]
)
async def test_rest_answers_a_second_type_400_in_the_documented_shape(
    settings_stub, http, rest_auth_headers, db, tree, unique_key, first, second
):
    key = unique_key("X.MAX")
    await put(settings_stub, tree.scope(first), key, INTEGER, 50)
    before = await footprint(db, key)
    response = await http.put(
        tree.rest_path(second, key),
        json={"setting": {"value": "lots", "type": "STRING"}},
        headers=rest_auth_headers,
    )
    assert response.status_code == 400
    body = response.json()
    assert body["message"] == "Bad Request" and body["code"] == "400"
    [entry] = body["error"]
    assert entry["code"] == "TYPE_MISMATCH"
    assert f"{key} is INTEGER at {tree.named(first)}" in entry["message"]
    assert await footprint(db, key) == before


async def test_the_only_value_of_a_key_may_change_type(settings_stub, tree, unique_key):
    key = unique_key()
    await put(settings_stub, tree.scope("ACCOUNT"), key, INTEGER, 1)
    written = await put(settings_stub, tree.scope("ACCOUNT"), key, STRING, "one")
    assert written.version == 2


async def test_another_accounts_scope_is_not_named_to_a_confined_caller(
    settings_stub, make_caller, tree, unique_key
):
    key = unique_key()
    await put(settings_stub, tree.scope("ACCOUNT2"), key, INTEGER, 1)
    admin = await make_caller(Role.ADMIN, account_id=tree.account)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await put(settings_stub, tree.scope("ACCOUNT"), key, STRING, "x", admin.metadata)
    assert error_info(refused.value).reason == "TYPE_MISMATCH"
    assert str(tree.other_account) not in refused.value.details()
    assert dict(error_info(refused.value).metadata)["where"] == "another account"


async def test_a_restore_to_another_type_is_refused(settings_stub, db, tree, unique_key):
    key = unique_key()
    first = await put(settings_stub, tree.scope("ACCOUNT"), key, INTEGER, 1)
    await put(settings_stub, tree.scope("ACCOUNT"), key, STRING, "now a string")
    await put(settings_stub, tree.scope("RETAILER"), key, STRING, "override")
    before = await footprint(db, key)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await settings_stub.RestoreSettings(
            settings_pb2.RestoreSettingsRequest(
                level=settings_pb2.SETTING_LEVEL_ACCOUNT,
                scope=tree.scope("ACCOUNT"),
                keys=[key],
                revision=first.revision,
            )
        )
    assert error_info(refused.value).reason == "TYPE_MISMATCH"
    assert f"STRING at {tree.named('RETAILER')}" in refused.value.details()
    assert await footprint(db, key) == before


async def _waiting_for_locks(monitor: asyncpg.Connection, count: int) -> None:
    """Returns once `count` backends of this database wait for a lock (bounded): the
    first writer waits for the blocker, the second one behind it."""
    async with asyncio.timeout(10):
        while True:
            waiting = await monitor.fetchval(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            if waiting >= count:
                return
            await asyncio.sleep(0.01)


@pytest.mark.parametrize("round_", range(4))
async def test_two_racing_writes_of_different_types_never_both_land(
    settings_stub, db, database_url, tree, unique_key, round_
):
    """Both writes start (their statements' snapshots taken) while the counter is held,
    so each would see no other value of the key in its own snapshot: only the check made
    after the counter is granted, with a fresh snapshot, keeps the second one out."""
    key = unique_key("RACE")
    # Connections of their own: the server's pool is the writers'.
    blocker = await asyncpg.connect(database_url)
    monitor = await asyncpg.connect(database_url)
    try:
        transaction = blocker.transaction()
        await transaction.start()
        await blocker.execute("SELECT 1 FROM revision_counter FOR UPDATE")
        racers = [
            asyncio.ensure_future(put(settings_stub, tree.scope("ACCOUNT"), key, INTEGER, 5)),
            asyncio.ensure_future(put(settings_stub, tree.scope("RETAILER"), key, STRING, "x")),
        ]
        if round_ % 2:
            racers.reverse()
        try:
            await _waiting_for_locks(monitor, 2)
        finally:
            await transaction.rollback()
    finally:
        await blocker.close()
        await monitor.close()
    outcomes = await asyncio.gather(*racers, return_exceptions=True)
    refused = [o for o in outcomes if isinstance(o, grpc.aio.AioRpcError)]
    assert len(refused) == 1, outcomes
    assert error_info(refused[0]).reason == "TYPE_MISMATCH"
    types = await db.fetch("SELECT DISTINCT type::text FROM settings WHERE key = $1", key)
    assert len(types) == 1


MIXED_ROWS = """
INSERT INTO accounts (id, display_name) VALUES (1111, 'Acme'), (3333, 'Globex');
INSERT INTO retailers (id, account_id, display_name) VALUES (2222, 1111, 'Acme Auckland');
INSERT INTO settings (level, account_id, retailer_id, key, type, value) VALUES
    ('ACCOUNT', 1111, NULL, 'X.MAX', 'INTEGER', '50'),
    ('RETAILER', NULL, 2222, 'X.MAX', 'STRING', '"lots"'),
    ('GLOBAL', NULL, NULL, 'X.MAX', 'INTEGER', '10'),
    ('ACCOUNT', 3333, NULL, 'FINE.KEY', 'BOOLEAN', 'true'),
    ('GLOBAL', NULL, NULL, 'FINE.KEY', 'BOOLEAN', 'false');
"""


async def test_tierset_check_reports_mixed_types_and_changes_nothing(create_database):
    dsn = await create_database()
    connection = await asyncpg.connect(dsn)
    try:
        await migrate(connection)
        assert (await tierset(dsn, "check"))[0] == 0  # nothing mixed yet
        await connection.execute(MIXED_ROWS)  # as a database from before the rule holds them
        before = await connection.fetch("SELECT * FROM settings ORDER BY id")
        code, out, err = await tierset(dsn, "check")
        assert code == 1, err
        lines = out.splitlines()
        assert lines[0] == "KEY\tTYPE\tCOUNT\tWHERE"
        assert lines[1:] == [
            "X.MAX\tSTRING\t1\tRETAILER 2222",
            "X.MAX\tINTEGER\t2\tGLOBAL, ACCOUNT 1111",
        ]
        assert "1 keys have more than one type (X.MAX)" in err
        assert "Traceback" not in err
        assert await connection.fetch("SELECT * FROM settings ORDER BY id") == before
    finally:
        await connection.close()
