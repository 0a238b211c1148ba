"""A refused read of another account's retailer looks exactly like a read of a missing one.

The README promises that ids of other accounts cannot be probed. Timing would break that
promise if the two refusals did different work, so these tests pin the work itself (no
timing): the statements each refusal runs, in order, and what the read cache holds after.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest

from tests.helpers import error_info
from tierset.core.authz import Role
from tierset.core.values import Level
from tierset.store.database import ScopeRef, queries
from tierset.v1 import settings_pb2

KEYS = ["PROBE.A", "PROBE.B"]


def _scope(retailer_id: int) -> ScopeRef:
    return ScopeRef(Level.RETAILER, retailer_id)


class StatementLog:
    """The named statements (sql/queries.sql) a server's one pool connection runs."""

    def __init__(self) -> None:
        self._names = {text: name for name, text in queries().items()}
        self.names: list[str] = []

    def __call__(self, record) -> None:
        name = self._names.get(record.query, "<unnamed>")
        # Not the health probe's (on its own schedule), nor the credential lookup (the
        # authentication cache decides when that runs, the same way for both).
        if name not in ("ping", "principal_by_digest"):
            self.names.append(name)

    async def during(self, call) -> list[str]:
        """The statements run while `call` is awaited."""
        await asyncio.sleep(0)  # loggers run on the next loop turn: let earlier ones land
        self.names.clear()
        await call
        await asyncio.sleep(0)
        return list(self.names)


@pytest.fixture
async def one_connection_server(start_server) -> AsyncIterator[tuple[object, StatementLog]]:
    """A server whose pool has exactly one connection, with every statement it runs logged.

    Its periodic change-log compaction is off: its round at start-up runs on that same
    connection and would land in whichever call it overlaps."""
    running = await start_server(pool_min_size=1, pool_max_size=1, history_retention_days=0)
    statements = StatementLog()
    async with running.app.pool.acquire() as connection:
        connection.add_query_logger(statements)
    await running.app.listener.wait_connected(5)
    yield running, statements


def _read(retailer_id: int) -> settings_pb2.GetSettingsRequest:
    return settings_pb2.GetSettingsRequest(
        scope=settings_pb2.Scope(retailer_id=retailer_id), keys=KEYS
    )


async def _refused(stub, retailer_id: int, metadata) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.GetSettings(_read(retailer_id), metadata=metadata)
    assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error_info(raised.value).reason == "PERMISSION_DENIED"


async def test_refused_read_of_existing_retailer_runs_what_a_missing_one_runs(
    one_connection_server, make_caller, new_account, new_retailer, next_id
):
    running, statements = one_connection_server
    cache = running.app.cache
    other_account = await new_account()
    foreign_retailer = await new_retailer(other_account)
    missing_retailer = next_id()  # never registered
    prober = await make_caller(Role.ADMIN)

    foreign = [
        await statements.during(_refused(running.settings, foreign_retailer, prober.metadata))
        for _ in range(2)
    ]
    missing = [
        await statements.during(_refused(running.settings, missing_retailer, prober.metadata))
        for _ in range(2)
    ]

    assert foreign == missing == [["effective_settings"], ["effective_settings"]]
    assert cache.key(_scope(foreign_retailer), KEYS) not in cache
    assert not any(key[1] in (foreign_retailer, missing_retailer) for key in cache._entries)


async def test_a_cached_answer_is_not_served_to_a_caller_who_may_not_see_it(
    one_connection_server, make_caller, new_account, new_retailer, next_id
):
    running, statements = one_connection_server
    cache = running.app.cache
    owner = await make_caller(Role.VIEWER)
    retailer = await new_retailer(owner.account_id)
    # The owner's own read is cached, as it should be...
    await running.settings.GetSettings(_read(retailer), metadata=owner.metadata)
    assert cache.key(_scope(retailer), KEYS) in cache
    prober = await make_caller(Role.ADMIN)

    # ...but for a caller of another account it is no hit: it costs what a missing one costs.
    foreign = await statements.during(_refused(running.settings, retailer, prober.metadata))
    missing = await statements.during(_refused(running.settings, next_id(), prober.metadata))

    assert foreign == missing == ["effective_settings"]
    # And the owner is still answered from the cache.
    assert (
        await statements.during(
            running.settings.GetSettings(_read(retailer), metadata=owner.metadata)
        )
        == []
    )
