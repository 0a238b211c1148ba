"""asyncpg's InterfaceError is not an outage: only a lost or closed connection is UNAVAILABLE.

asyncpg raises InterfaceError both for a connection that is gone and for misuse of its API
(a connection used after it went back to the pool, a transaction used twice). Misuse is a
bug: the client must see INTERNAL (not a retryable UNAVAILABLE) and the log must hold the
stack trace. A connection PostgreSQL ended, or one found closed when the call used it, is
an outage: UNAVAILABLE.

A small servicer of the test's own, behind the server's real call pipeline on a real
channel and its own real pool, does each of these to asyncpg.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import grpc
import pytest
from google.protobuf import empty_pb2

from tests.conftest import open_channel
from tests.helpers import error_info
from tierset.api.pipeline import Pipeline
from tierset.auth.authenticator import Authenticator
from tierset.auth.credentials import CredentialStore
from tierset.store.database import PoolClient

SERVICE = "tierset.test.DatabaseProbe"


class _Probe(PoolClient):
    """Three ways a call can meet asyncpg's connection errors."""

    async def released_connection(self, _request: Any, _context: Any) -> empty_pb2.Empty:
        async with self._acquire() as connection:
            pass
        await connection.fetchval("SELECT 1")  # misuse: it went back to the pool
        return empty_pb2.Empty()

    async def closed_connection(self, _request: Any, _context: Any) -> empty_pb2.Empty:
        async with self._acquire() as connection:
            closed = asyncio.Event()
            connection.add_termination_listener(lambda _connection: closed.set())
            await self._end_session_of(connection)
            await asyncio.wait_for(closed.wait(), 5)  # asyncpg has seen the connection close
            await connection.fetchval("SELECT 1")
        return empty_pb2.Empty()

    async def terminated_backend(self, _request: Any, _context: Any) -> empty_pb2.Empty:
        async with self._acquire() as connection:
            await self._end_session_of(connection)
            await connection.fetchval("SELECT 1")  # at once: PostgreSQL's goodbye is in flight
        return empty_pb2.Empty()

    async def _end_session_of(self, connection: Any) -> None:
        pid = await connection.fetchval("SELECT pg_backend_pid()")
        async with self._acquire() as other:
            await other.execute("SELECT pg_terminate_backend($1, 5000)", pid)


def _add_probe(probe: _Probe, server: Any) -> None:
    handlers = {
        name: grpc.unary_unary_rpc_method_handler(
            getattr(probe, attribute),
            request_deserializer=empty_pb2.Empty.FromString,
            response_serializer=empty_pb2.Empty.SerializeToString,
        )
        for name, attribute in (
            ("ReleasedConnection", "released_connection"),
            ("ClosedConnection", "closed_connection"),
            ("TerminatedBackend", "terminated_backend"),
        )
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))


@pytest.fixture(scope="module")
async def probe_port(database_url: str, db: asyncpg.Pool) -> AsyncIterator[int]:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=3)
    authenticator = Authenticator(CredentialStore(db), cache_seconds=60, cache_size=10)
    server = grpc.aio.server()
    Pipeline(authenticator, access_log=False).register(server, _add_probe, _Probe(pool, 5.0))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield port
    await server.stop(None)
    await pool.close()


async def _call(port: int, token: str, method: str) -> grpc.aio.AioRpcError:
    async with open_channel(port, token) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await channel.unary_unary(
                f"/{SERVICE}/{method}",
                request_serializer=empty_pb2.Empty.SerializeToString,
                response_deserializer=empty_pb2.Empty.FromString,
            )(empty_pb2.Empty(), timeout=10)
    return raised.value


async def test_interface_misuse_is_internal_and_logged_with_its_stack(
    probe_port, platform_caller, caplog
):
    with caplog.at_level(logging.ERROR):
        error = await _call(probe_port, platform_caller.token, "ReleasedConnection")

    assert error.code() == grpc.StatusCode.INTERNAL
    assert error.details() == "internal error"  # nothing of the exception reaches the client
    assert error_info(error).reason == "INTERNAL"
    logged = [r for r in caplog.records if r.exc_info and r.exc_info[0] is not None]
    assert any(issubclass(r.exc_info[0], asyncpg.InterfaceError) for r in logged), caplog.text
    assert "Traceback" in caplog.text


@pytest.mark.parametrize("method", ["ClosedConnection", "TerminatedBackend"])
async def test_a_lost_or_closed_connection_is_unavailable(probe_port, platform_caller, method):
    error = await _call(probe_port, platform_caller.token, method)

    assert error.code() == grpc.StatusCode.UNAVAILABLE, error.details()
    assert error_info(error).reason == "BACKEND_UNAVAILABLE"
