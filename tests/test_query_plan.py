"""Precedence is one statement, and it reads through the unique index, not a scan."""

from __future__ import annotations

import json

import asyncpg
import pytest

from tierset.core.values import MAX_READ_BYTES
from tierset.store.database import query
from tierset.store.migrate import migrate


def _nodes(node: dict) -> list[dict]:
    found = [node]
    for child in node.get("Plans", []):
        found.extend(_nodes(child))
    return found


async def test_precedence_query_uses_the_level_scope_key_index(db, new_account, new_retailer):
    account = await new_account()
    retailer = await new_retailer(account)
    # Enough rows that, without the index, the planner would have to scan them all. The
    # seeding is set-up, not a request: it may outlast the server's statement timeout when
    # the machine is busy.
    async with db.acquire() as connection, connection.transaction():
        await connection.execute("SET LOCAL statement_timeout = 0")
        await connection.execute(
            """INSERT INTO settings (level, account_id, key, type, value)
               SELECT 'ACCOUNT', $1, 'PLAN.KEY.' || n, 'STRING', '"x"'
                 FROM generate_series(1, 20000) AS n""",
            account,
        )
        await connection.execute("ANALYZE settings")

    # Both forms: a PLATFORM caller's (any account) and a confined caller's (its own).
    for visible_to in (None, account):
        explained = await db.fetchval(
            "EXPLAIN (FORMAT JSON) " + query("effective_settings"),
            "RETAILER",
            retailer,
            ["PLAN.KEY.1", "PLAN.KEY.2"],
            visible_to,
            MAX_READ_BYTES,
        )
        nodes = _nodes(json.loads(explained)[0]["Plan"])
        on_settings = [n for n in nodes if n.get("Relation Name") == "settings"]

        assert on_settings, "the plan must read the settings table"
        assert all(n["Node Type"] != "Seq Scan" for n in on_settings)
        assert {n.get("Index Name") for n in nodes} >= {"settings_level_scope_key"}


@pytest.fixture(scope="module")
async def history_dsn(create_database) -> str:
    """A database of its own with 20k settings and 20k log rows over 200 accounts (fake
    revisions would collide with the session's own)."""
    dsn = await create_database()
    connection = await asyncpg.connect(dsn)
    await migrate(connection)
    await connection.execute(
        """INSERT INTO accounts (id, display_name) SELECT n, 'a' FROM generate_series(1, 200) n;
           INSERT INTO retailers (id, account_id, display_name)
           SELECT n, n, 'r' FROM generate_series(1, 200) n;
           INSERT INTO settings (level, account_id, key, type, value)
           SELECT 'ACCOUNT', 1 + n % 200, 'PLAN.KEY.' || n, 'STRING', '"x"'
             FROM generate_series(1, 20000) AS n;
           INSERT INTO change_log (revision, seq, operation, level, account_id,
                                   owner_account_id, key, setting_id, new_type, new_value,
                                   new_version, actor_user_id)
           SELECT n, 0, 'PUT', 'ACCOUNT', 1 + n % 200, 1 + n % 200, 'PLAN.KEY.' || n, n,
                  'STRING', '"x"', 1, n % 50
             FROM generate_series(1, 20000) AS n;
           UPDATE revision_counter SET revision = 20000;
           ANALYZE"""
    )
    await connection.close()
    return dsn


async def _plan_nodes(connection, statement: str, *args) -> list[dict]:
    explained = await connection.fetchval("EXPLAIN (FORMAT JSON) " + query(statement), *args)
    return _nodes(json.loads(explained)[0]["Plan"])


def _no_seq_scan(nodes: list[dict], *tables: str) -> None:
    for table in tables:
        on_table = [n for n in nodes if n.get("Relation Name") == table]
        assert on_table, f"the plan must read {table}"
        assert all(n["Node Type"] != "Seq Scan" for n in on_table), f"a seq scan on {table}"


CHANGES_FILTERS = {
    # kind, scope id, visible_to, key, low, high, min revision
    "tail after a revision": (None, None, None, None, None, None, 19_990),
    "an account": ("ACCOUNT", 7, None, None, None, None, None),
    "a retailer": ("RETAILER", 7, None, None, None, None, None),
    "a confined caller": (None, None, 7, None, None, None, 19_000),
    "a key": (None, None, None, "PLAN.KEY.77", None, None, None),
    "a prefix": (None, None, None, None, "PLAN.KEY.77", "PLAN.KEY.77\U0010ffff", None),
}


@pytest.mark.parametrize("order", ["changes_oldest_first", "changes_newest_first"])
@pytest.mark.parametrize("filters", list(CHANGES_FILTERS), ids=list(CHANGES_FILTERS))
async def test_change_log_pages_read_through_indexes(history_dsn, order, filters):
    connection = await asyncpg.connect(history_dsn)
    try:
        kind, scope_id, visible_to, key, low, high, min_revision = CHANGES_FILTERS[filters]
        nodes = await _plan_nodes(
            connection,
            order,
            kind,
            scope_id,
            visible_to,
            key,
            low,
            high,
            min_revision,
            None,
            None,
            None,
            None,
            None,
            None,
            51,
            MAX_READ_BYTES,
        )
    finally:
        await connection.close()
    _no_seq_scan(nodes, "change_log")


async def test_listing_and_reads_at_a_revision_read_through_indexes(history_dsn):
    connection = await asyncpg.connect(history_dsn)
    try:
        high = "PLAN.KEY.1\U0010ffff"
        listing = await _plan_nodes(
            connection,
            "list_settings",
            "RETAILER",
            7,
            False,
            "",
            "PLAN.KEY.1",
            high,
            101,
            None,
            MAX_READ_BYTES,
        )
        listing_at = await _plan_nodes(
            connection,
            "list_settings_at_revision",
            "RETAILER",
            7,
            False,
            "",
            "PLAN.KEY.1",
            high,
            101,
            None,
            MAX_READ_BYTES,
            19_000,
        )
        reading_at = await _plan_nodes(
            connection,
            "settings_at_revision",
            "RETAILER",
            7,
            ["PLAN.KEY.7", "PLAN.KEY.207"],
            None,
            19_000,
        )
    finally:
        await connection.close()
    _no_seq_scan(listing, "settings")
    _no_seq_scan(listing_at, "settings", "change_log")
    _no_seq_scan(reading_at, "settings", "change_log")


async def test_the_watch_hubs_log_read_and_re_resolution_read_through_indexes(history_dsn):
    """A doorbell's two statements (services/watch.py): the log after a revision by the
    primary key, each affected (level, scope, key) by the settings and log indexes, and a
    prefix watch's first read by the settings index."""
    connection = await asyncpg.connect(history_dsn)
    try:
        log = await _plan_nodes(connection, "watch_log", 19_990, 20_990)
        states = await _plan_nodes(
            connection,
            "watch_level_states",
            ["RETAILER", "ACCOUNT", "GLOBAL"],
            [7, 7, 0],
            ["PLAN.KEY.7", "PLAN.KEY.7", "PLAN.KEY.7"],
            19_000,
        )
        ranged = await _plan_nodes(
            connection, "watch_range_levels", 7, 7, "PLAN.KEY.7", "PLAN.KEY.7\U0010ffff", 301
        )
    finally:
        await connection.close()
    _no_seq_scan(log, "change_log")
    _no_seq_scan(states, "change_log", "settings")
    _no_seq_scan(ranged, "settings")
    # A setting's lock at a revision: found among lock, unlock and delete rows only (0009),
    # not by walking every put of the key.
    assert "change_log_lock_rows" in {n.get("Index Name") for n in states}


@pytest.mark.parametrize("level", ["GLOBAL", "ACCOUNT"])
async def test_a_locks_search_for_overrides_reads_through_an_index(history_dsn, level):
    """A lock (and a dry run of one) looks for the values below it: over 20k settings it
    must not scan the table, however many accounts there are."""
    connection = await asyncpg.connect(history_dsn)
    try:
        for statement in ("lock_overrides", "delete_overrides_at_revision"):
            args: tuple[object, ...] = (level, 7, "PLAN.KEY.77")
            if statement == "delete_overrides_at_revision":
                args += (20_001, 0, None, None, None, None, None, "")
            nodes = await _plan_nodes(connection, statement, *args)
            _no_seq_scan(nodes, "settings")
            used = {n.get("Index Name") for n in nodes}
            # By key (a GLOBAL lock), or by the account's retailers (an ACCOUNT lock).
            assert used & {"settings_override_key", "settings_level_scope_key"}, used
    finally:
        await connection.close()


async def test_the_type_check_of_a_write_probes_the_type_key_index(create_database):
    """One type per key is checked on every write (tierset_check_key_type): its probe must
    stay one index lookup for a hot key held by every account with one type, where the
    row estimates make a sequential scan look cheap. The function's own plan is read
    through auto_explain's nested statements, sent to this session as LOG messages."""
    connection = await asyncpg.connect(await create_database())
    try:
        await migrate(connection)
        await connection.execute(
            """INSERT INTO accounts (id, display_name)
               SELECT n, 'a' FROM generate_series(1, 20000) AS n;
               INSERT INTO settings (level, account_id, key, type, value)
               SELECT 'ACCOUNT', n, 'HOT.KEY', 'INTEGER', '1' FROM generate_series(1, 20000) n;
               INSERT INTO settings (level, account_id, key, type, value)
               SELECT 'ACCOUNT', n, 'COLD.' || n, 'STRING', '"x"'
                 FROM generate_series(1, 20000) n;
               ANALYZE settings"""
        )
        plans: list[str] = []
        connection.add_log_listener(lambda _, message: plans.append(message.message))
        await connection.execute(
            """LOAD 'auto_explain';
               SET auto_explain.log_min_duration = 0;
               SET auto_explain.log_nested_statements = on;
               SET auto_explain.log_format = 'json';
               SET client_min_messages = log"""
        )
        # Past plpgsql's five custom plans, so the cached generic plan is the one checked.
        for account in range(1, 9):
            await connection.fetchval(
                "SELECT tierset_check_key_type('ACCOUNT', $1, 'HOT.KEY', 'INTEGER')", account
            )
        probes = [
            json.loads(text.split("\n", 1)[1])
            for text in plans
            if "FROM settings s" in text and "Query Text" in text
        ]
        assert len(probes) >= 8
        for probe in probes:
            nodes = _nodes(probe["Plan"])
            assert all(n["Node Type"] != "Seq Scan" for n in nodes)
            assert {n.get("Index Name") for n in nodes} >= {"settings_type_key"}
    finally:
        await connection.close()
