"""Precedence is one statement, and it reads through the unique index, not a scan."""

from __future__ import annotations

import json

from tierset.core.values import MAX_READ_BYTES
from tierset.store.database import query


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
