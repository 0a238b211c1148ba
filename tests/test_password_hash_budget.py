"""Password checks stay within their memory budget, and the excess is refused, not queued.

Each argon2id check holds 64 MiB while it runs. A real `tierset serve` process on a
database of its own gets a budget of one check at a time and a burst of concurrent
password grants from 127.0.0.1; its peak resident memory (VmHWM in /proc) must stay
within the budget plus a generous allowance, and the grants it had no room for must be
answered UNAVAILABLE / PASSWORD_HASHING_BUSY at once rather than wait in an unbounded
queue. The burst is bounded in count and time.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import asyncpg
import grpc

from tests.conftest import free_port, open_channel, start_serve
from tests.helpers import error_info
from tierset import client
from tierset.auth.credentials import CredentialStore
from tierset.core.authz import Role
from tierset.store.database import Store
from tierset.v1 import auth_pb2, auth_pb2_grpc

MIB = 1024 * 1024
BUDGET_BYTES = 64 * MIB  # one argon2id check (memory cost 64 MiB) at a time
# What the process may grow by over its idle size during the burst: the budget, plus room
# for gRPC buffers, asyncpg records and allocator slack. Without the budget the same
# burst ran six checks at once on a 2-CPU machine (the default thread pool), +384 MiB.
ALLOWED_GROWTH_BYTES = BUDGET_BYTES + 64 * MIB
ATTEMPTS = 24
PASSWORD = "correct horse battery staple"


def _status_bytes(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024  # reported in kB
    raise AssertionError(f"{field} not in /proc/{pid}/status")


async def _user_and_client(dsn: str) -> tuple[str, str, str]:
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=1)
    try:
        account = await Store(pool).create_account(None, "hash budget")
        credentials = CredentialStore(pool)
        user = await credentials.create_user(
            account.id, "budget-user", PASSWORD, frozenset({Role.VIEWER})
        )
        client_id, client_secret = await credentials.create_oauth_client(None, "budget")
        return user.username, client_id, client_secret
    finally:
        await pool.close()


async def test_concurrent_password_grants_stay_within_the_hashing_memory_budget(create_database):
    dsn = await create_database()
    port = free_port()
    process = await start_serve(
        dsn,
        port,
        TIERSET_METRICS_ADDRESS="",
        TIERSET_LOG_LEVEL="WARNING",
        TIERSET_PASSWORD_HASH_MEMORY_BUDGET_BYTES=str(BUDGET_BYTES),
        TIERSET_PASSWORD_HASH_WAIT_SECONDS="0.5",
        # The burst comes from one address for one user: the password-guess throttle
        # reserves each attempt in flight, so with its default (10) a burst arriving
        # faster than hashes settle is partly AUTH_THROTTLED. This test is about the
        # hashing budget alone: the throttle is off (0).
        TIERSET_AUTH_THROTTLE_USER_SOURCE_FAILURES="0",
    )
    try:
        async with asyncio.timeout(60):
            await client.wait_until_serving(f"127.0.0.1:{port}")
        username, client_id, client_secret = await _user_and_client(dsn)
        grant = auth_pb2.CreateTokenRequest(
            grant_type="password",
            username=username,
            password=PASSWORD,
            client_id=client_id,
            client_secret=client_secret,
        )
        idle_bytes = _status_bytes(process.pid, "VmRSS")

        async with open_channel(port) as channel, asyncio.timeout(120):
            auth = auth_pb2_grpc.AuthServiceStub(channel)
            results = await asyncio.gather(
                *(auth.CreateToken(grant, timeout=60) for _ in range(ATTEMPTS)),
                return_exceptions=True,
            )
        peak_bytes = _status_bytes(process.pid, "VmHWM")
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(process.communicate(), timeout=20)

    growth = peak_bytes - idle_bytes
    assert growth < ALLOWED_GROWTH_BYTES, (
        f"peak RSS grew by {growth / MIB:.0f} MiB (idle {idle_bytes / MIB:.0f} MiB); "
        f"allowed {ALLOWED_GROWTH_BYTES / MIB:.0f} MiB"
    )
    issued = [r for r in results if isinstance(r, auth_pb2.CreateTokenResponse)]
    refused = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(issued) + len(refused) == ATTEMPTS, results
    assert issued, "the budget must let some checks through"
    assert refused, "a burst beyond the budget must be refused, not all queued"
    assert {(e.code(), error_info(e).reason) for e in refused} == {
        (grpc.StatusCode.UNAVAILABLE, "PASSWORD_HASHING_BUSY")
    }
