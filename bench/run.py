"""`make bench`: tierset's reads and writes against the limits of this machine.

Starts an embedded PostgreSQL, seeds a realistic data set, and runs every
workload for a fixed time at concurrency 64 from a separate load process
(bench/loader.py, kept for the whole run, running bench/load.py's client and the
others), next to three references measured in the same run:

* a bare grpc.aio server answering same-sized bytes with no work (gRPC's limit),
* the precedence SQL over asyncpg with no gRPC (the database's limit),
* etcd, the peer, serving a Range of one key through its gRPC API.

Every tierset call authenticates as the product requires (an API token made in
each bench database); the REST workloads go through `tierset gateway` with wrk
(bench/http_load.py); authentication's own cost is measured against a server
that trusts every call (bench/trusting_server.py).

This module measures; bench/report.py prints the workload table and, last, the one
table of every target with its verdict (the targets and how each is judged are
bench/targets.py), and writes JSON, a PNG chart and py-spy profiles under results/
(not committed). Each outermost step's wall time is printed as it ends and
summed in the report, and the bench's own total is a target (under 10 minutes).

Helper processes (servers, load clients, etcd, py-spy) are started with
``subprocess.Popen``, never with the event loop's subprocess support: uvloop's
forks the whole process, and a fork while gRPC's threads are live (the bench
holds channels to the servers it measures) hung `make bench` inside ``fork()``.
CPython's Popen execs through vfork/posix_spawn with no at-fork handlers run, so
there is nothing left to deadlock. Every step has a time limit (`step`): a
stuck step prints which one it was and the bench exits non-zero.

A workload is one line in `workloads()`: a name, which target serves it, the
gRPC method (or HTTP) and its requests. Adding one served by another target
means adding that target to `TARGETS`. Differences smaller than the machine's
noise are measured in alternating rounds on servers running side by side: the
cached reads against the bare server (`measure_against_bare`, the cached-read
target, whose rounds are also the table's rows for both), and the shipped server
against its variants (`measure_variants`: authentication, the access log, the
auth cache).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import faulthandler
import importlib
import json
import logging
import os
import pickle
import platform
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import conditions
import grpc
import report
import targets
import uvloop

from tierset import client
from tierset.auth.authenticator import Authenticator
from tierset.auth.credentials import CredentialStore, Kind
from tierset.core.authz import Principal, Role
from tierset.ops import logs
from tierset.ops.embedded import EmbeddedPostgres
from tierset.store.database import query
from tierset.store.migrate import migrate
from tierset.v1 import settings_pb2, settings_pb2_grpc

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = ROOT / "results"
CONCURRENCY = 64

ACCOUNTS, KEYS_PER_ACCOUNT, RETAILERS, GLOBALS = 1_000, 50, 10_000, 100
OVERRIDING_EVERY, OVERRIDDEN_KEYS = 5, 10  # every 5th retailer overrides keys 1-10
DISTINCT_REQUESTS = 1_000  # per read workload; all fit the default cache


def key_name(n: int) -> str:
    return f"BENCH.KEY.{n:03d}"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# --- the data set -----------------------------------------------------------


async def create_database(admin_dsn: str, name: str) -> str:
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    dsn = admin_dsn.rsplit("/", 1)[0] + f"/{name}"
    connection = await asyncpg.connect(dsn)
    try:
        await migrate(connection)
    finally:
        await connection.close()
    return dsn


async def seed_main(dsn: str) -> int:
    """1,000 accounts x 50 keys, 10,000 retailers (every 5th overrides 10 keys), 100 GLOBALs."""
    connection = await asyncpg.connect(dsn)
    try:
        # Loading, not serving: no server is listening yet, so skip the NOTIFY triggers.
        await connection.execute("SET session_replication_role = replica")
        await connection.execute(
            "INSERT INTO accounts (id, display_name)"
            " SELECT n, 'Account ' || n FROM generate_series(1, $1) n",
            ACCOUNTS,
        )
        await connection.execute(
            "INSERT INTO retailers (id, account_id, display_name)"
            " SELECT n, (n - 1) % $1 + 1, 'Retailer ' || n FROM generate_series(1, $2) n",
            ACCOUNTS,
            RETAILERS,
        )
        # One type per key (migration 0007): every level holds these keys as STRING, so the
        # bench's puts (STRING) are accepted at any level.
        rows: list[tuple[Any, ...]] = [
            ("GLOBAL", None, None, key_name(k), "STRING", json.dumps(f"default {k}"))
            for k in range(1, GLOBALS + 1)
        ]
        rows += [
            ("ACCOUNT", a, None, key_name(k), "STRING", json.dumps(f"account {a} value {k}"))
            for a in range(1, ACCOUNTS + 1)
            for k in range(1, KEYS_PER_ACCOUNT + 1)
        ]
        rows += [
            ("RETAILER", None, r, key_name(k), "STRING", json.dumps(f"retailer {r} key {k}"))
            for r in range(OVERRIDING_EVERY, RETAILERS + 1, OVERRIDING_EVERY)
            for k in range(1, OVERRIDDEN_KEYS + 1)
        ]
        await connection.copy_records_to_table(
            "settings",
            records=rows,
            columns=["level", "account_id", "retailer_id", "key", "type", "value"],
        )
        await connection.execute("VACUUM ANALYZE")
        return len(rows)
    finally:
        await connection.close()


@contextlib.asynccontextmanager
async def indexes_built_after(connection: asyncpg.Connection, table: str) -> AsyncIterator[None]:
    """A bulk load into `table` with its secondary indexes (those behind no constraint)
    dropped, then each built once from its own definition: a million rows inserted into
    five or six live indexes far larger than shared_buffers took most of the seeding."""
    indexes = await connection.fetch(
        "SELECT indexname, indexdef FROM pg_indexes i"
        " WHERE schemaname = current_schema() AND tablename = $1 AND NOT EXISTS ("
        "   SELECT 1 FROM pg_constraint c"
        "    WHERE c.conindid = to_regclass(quote_ident(i.schemaname) || '.'"
        "                                   || quote_ident(i.indexname)))",
        table,
    )
    for index in indexes:
        await connection.execute(f'DROP INDEX "{index["indexname"]}"')
    yield
    await connection.execute("SET maintenance_work_mem = '256MB'")
    for index in indexes:
        await connection.execute(index["indexdef"])


async def seed_sized(dsn: str, accounts: int) -> int:
    """`accounts` accounts with one retailer each and 50 ACCOUNT keys each, in SQL."""
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute("SET session_replication_role = replica")
        await connection.execute(
            "INSERT INTO accounts (id, display_name)"
            " SELECT n, 'A' || n FROM generate_series(1, $1) n",
            accounts,
        )
        await connection.execute(
            "INSERT INTO retailers (id, account_id, display_name)"
            " SELECT n, n, 'R' || n FROM generate_series(1, $1) n",
            accounts,
        )
        async with indexes_built_after(connection, "settings"):
            await connection.execute(
                "INSERT INTO settings (level, account_id, key, type, value)"
                " SELECT 'ACCOUNT', a, 'BENCH.KEY.' || lpad(k::text, 3, '0'), 'INTEGER',"
                "        to_jsonb(a * 100 + k)"
                "   FROM generate_series(1, $1) a, generate_series(1, $2) k",
                accounts,
                KEYS_PER_ACCOUNT,
            )
        await connection.execute("VACUUM ANALYZE")
        return int(await connection.fetchval("SELECT count(*) FROM settings"))
    finally:
        await connection.close()


# The change log's bench (bench/history_load.py): 200 accounts with a retailer each and
# 50 keys, DELETE_KEYS more per account to delete (accounts 1-100 over gRPC, 101-200 raw).
HISTORY_ACCOUNTS = 200
DELETE_KEYS = 500
LOG_ROWS = {"log_10k": 10_000, "log_1m": 1_000_000}
# The log's rows belong to this many accounts (500 each at 10k), so that a page of 100 of
# one account's history is a full page at both sizes and only the log's size differs.
LOG_ACCOUNTS = 20


async def seed_history(dsn: str) -> int:
    """The writes' database: seed_sized's data plus the keys the delete workloads remove."""
    await seed_sized(dsn, HISTORY_ACCOUNTS)
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute("SET session_replication_role = replica")
        await connection.execute(
            "INSERT INTO settings (level, account_id, key, type, value)"
            " SELECT 'ACCOUNT', a, 'DEL.KEY.' || lpad(k::text, 4, '0'), 'INTEGER', to_jsonb(k)"
            "   FROM generate_series(1, $1) a, generate_series(1, $2) k",
            HISTORY_ACCOUNTS,
            DELETE_KEYS,
        )
        await connection.execute("VACUUM ANALYZE")
        return int(await connection.fetchval("SELECT count(*) FROM settings"))
    finally:
        await connection.close()


async def seed_log(dsn: str, rows: int) -> int:
    """seed_sized's data and `rows` change-log rows of its keys, in ONE INSERT ... SELECT
    (not through the API), the counter moved to the last of them."""
    await seed_sized(dsn, HISTORY_ACCOUNTS)
    connection = await asyncpg.connect(dsn)
    try:
        # Loading, not serving: skip the log's NOTIFY trigger (one pg_notify per row, a
        # million distinct payloads queued at commit, for nobody listening).
        await connection.execute("SET session_replication_role = replica")
        async with indexes_built_after(connection, "change_log"):
            await connection.execute(
                "INSERT INTO change_log (revision, seq, operation, level, account_id,"
                "                        owner_account_id, key, setting_id, new_type, new_value,"
                "                        new_version)"
                " SELECT g, 0, 'PUT', 'ACCOUNT', g % $2 + 1, g % $2 + 1,"
                "        'BENCH.KEY.' || lpad(((g / $2) % 50 + 1)::text, 3, '0'), 0, 'INTEGER',"
                "        to_jsonb(g), g / ($2 * 50) + 1"
                "   FROM generate_series(1, $1) g",
                rows,
                LOG_ACCOUNTS,
            )
        await connection.execute("UPDATE revision_counter SET revision = $1", rows)
        await connection.execute("VACUUM ANALYZE")
        return int(await connection.fetchval("SELECT count(*) FROM change_log"))
    finally:
        await connection.close()


async def prewarm(dsn: str) -> dict[str, int]:
    """Reads every table and index of the database once, in order, into the operating
    system's page cache (pg_prewarm's ``read`` mode; shared_buffers hold far less than a
    million rows). This VM's page cache does not keep what the seeds wrote: the first
    round of at_revision reads at 1M log rows once ran at 68/s against 1,076-1,222/s in
    the rounds after it, with iowait 23 % and PostgreSQL's backends 42 % in
    IO:DataFileRead, random 8 KB reads from the disk. That is the cost of a cold cache,
    not of the log's size, so the flat step warms both sizes alike before its rounds.
    Returns the blocks read per relation; empty when pg_prewarm is not installed."""
    connection = await asyncpg.connect(dsn)
    try:
        try:
            await connection.execute("CREATE EXTENSION IF NOT EXISTS pg_prewarm")
        except asyncpg.PostgresError as error:
            print(f"  prewarm skipped: {error}", flush=True)
            return {}
        rows = await connection.fetch(
            "SELECT c.relname, pg_prewarm(c.oid, 'read') AS blocks FROM pg_class c"
            " WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'i')"
            " ORDER BY c.relname"
        )
        return {row["relname"]: row["blocks"] for row in rows}
    finally:
        await connection.close()


async def make_token(dsn: str) -> str:
    """A PLATFORM user in account 1 and its API token: every call needs a credential."""
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=1)
    try:
        credentials = CredentialStore(pool)
        user = await credentials.create_user(1, "bench", None, frozenset({Role.PLATFORM}))
        return (await credentials.issue(user.id, Kind.API_TOKEN, name="bench")).secret
    finally:
        await pool.close()


# --- requests -----------------------------------------------------------------


def read_requests(
    level: str, keys: int, scopes: int, rng: random.Random
) -> list[settings_pb2.GetSettingsRequest]:
    made = []
    for _ in range(DISTINCT_REQUESTS):
        scope_id = rng.randint(1, scopes)
        scope = (
            settings_pb2.Scope(account_id=scope_id)
            if level == "ACCOUNT"
            else settings_pb2.Scope(retailer_id=scope_id)
        )
        # Keys across every level: overridden ones (1-10), account ones, GLOBAL-only ones.
        names = [key_name(k) for k in rng.sample(range(1, GLOBALS + 1), keys)]
        made.append(settings_pb2.GetSettingsRequest(scope=scope, keys=names))
    return made


# --- targets: what serves a workload --------------------------------------------


@dataclass
class Running:
    """A started target: where to send calls, which processes serve, and the credential."""

    address: str
    pids: list[int]
    metadata: list[tuple[str, str]] = field(default_factory=list)
    # The tierset gRPC server behind it (itself, or the one behind a gateway).
    grpc_address: str = ""
    processes: int = 1


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def cpu_seconds(pids: list[int]) -> float:
    """User+system CPU of the processes and their children so far."""
    total = 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    for pid in pids:
        for each in (pid, *_children(pid)):
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / ticks
    return total


# --- helper processes and steps -------------------------------------------------

# Every helper process still running, so a stuck bench can stop them all on its way out.
CHILDREN: set[subprocess.Popen[bytes]] = set()


def launch(
    command: list[str], env: dict[str, str] | None = None, **kw: Any
) -> subprocess.Popen[bytes]:
    """Starts a helper without forking this process (see the module docstring)."""
    child = subprocess.Popen(command, env=env, close_fds=True, **kw)
    CHILDREN.add(child)
    return child


async def finished(child: subprocess.Popen[bytes], limit_seconds: float | None = None) -> int:
    """Waits for `child` to exit, off the event loop; TimeoutError after `limit_seconds`."""
    try:
        code = await asyncio.to_thread(child.wait, limit_seconds)
    except subprocess.TimeoutExpired:
        raise TimeoutError from None
    CHILDREN.discard(child)
    return code


async def output_of(child: subprocess.Popen[bytes]) -> tuple[bytes, bytes]:
    """`child`'s whole stdout and stderr (for those started with pipes), once it exits."""
    out, err = await asyncio.to_thread(child.communicate)
    CHILDREN.discard(child)
    return out or b"", err or b""


class StepTimeout(Exception):
    """A bench step that did not finish within its limit."""


def _abandon(name: str, seconds: float, pg_data: Path | None) -> None:
    """The watchdog's last resort for an event loop stuck outright (say, inside fork())."""
    print(f"\nbench step {name!r} is stuck (limit {seconds:.0f}s); threads:", file=sys.stderr)
    faulthandler.dump_traceback(all_threads=True)
    for child in list(CHILDREN):
        with contextlib.suppress(OSError):
            child.kill()
    pid_file = pg_data / "postmaster.pid" if pg_data else None
    if pid_file is not None and pid_file.exists():
        with contextlib.suppress(OSError, ValueError):
            os.kill(int(pid_file.read_text().split()[0]), signal.SIGQUIT)  # immediate stop
    os._exit(3)


# Where the embedded PostgreSQL keeps its data (its pid file), for _abandon.
PG_DATA: list[Path] = []
# The steps under way, innermost last (steps run one at a time), and each outermost
# step's wall time, for the report.
_OPEN_STEPS: list[str] = []
STEP_SECONDS: dict[str, float] = {}


@contextlib.asynccontextmanager
async def step(name: str, seconds: float) -> AsyncIterator[None]:
    """Runs a step that must end within `seconds`, or fails loudly naming it.

    Two guards: asyncio's timeout, which cancels the step and lets the clean-up run; and,
    30 s later, a watchdog thread for a loop too stuck to notice (a blocking system call),
    which prints every thread's stack, kills the helpers and exits with status 3.
    """
    watchdog = threading.Timer(
        seconds + 30, _abandon, args=(name, seconds, PG_DATA[0] if PG_DATA else None)
    )
    watchdog.daemon = True
    watchdog.start()
    outermost = not _OPEN_STEPS
    _OPEN_STEPS.append(name)
    began = time.monotonic()
    try:
        async with asyncio.timeout(seconds):
            yield
    except TimeoutError:
        raise StepTimeout(f"bench step {name!r} did not finish within {seconds:.0f}s") from None
    finally:
        watchdog.cancel()
        _OPEN_STEPS.pop()
        if outermost:
            # Where the bench's ten minutes go: each outermost step's wall time.
            STEP_SECONDS[name] = STEP_SECONDS.get(name, 0.0) + time.monotonic() - began
            print(f"  [{name}: {time.monotonic() - began:.0f} s]", flush=True)


@contextlib.asynccontextmanager
async def process(
    command: list[str], env: dict[str, str] | None = None, log: Path | None = None
) -> AsyncIterator[subprocess.Popen[bytes]]:
    output = log.open("ab") if log else subprocess.DEVNULL
    started = launch(command, env, stdout=output, stderr=subprocess.STDOUT)
    try:
        yield started
    finally:
        if started.poll() is None:
            started.send_signal(signal.SIGTERM)
            try:
                await finished(started, 20)
            except TimeoutError:
                started.kill()
                await finished(started)
        CHILDREN.discard(started)
        if log:
            output.close()  # type: ignore[union-attr]


def tierset_target(
    database: str,
    cache: bool = True,
    processes: int = 1,
    env: dict[str, str] | None = None,
    trusting: bool = False,
) -> Callable[[Bench], contextlib.AbstractAsyncContextManager[Running]]:
    """A `tierset serve` on one of the bench databases, configured as in production
    (INFO logs, to a file; the access line off, as shipped) unless `env` says otherwise.

    `trusting`: bench/trusting_server.py instead, which skips credential verification.
    """

    @contextlib.asynccontextmanager
    async def start(bench: Bench) -> AsyncIterator[Running]:
        address = f"127.0.0.1:{free_port()}"
        server_env = {
            **os.environ,
            "DATABASE_URL": bench.databases[database],
            "TIERSET_GRPC_ADDRESS": address,
            "TIERSET_CACHE_MAX_ENTRIES": "10000" if cache else "0",
            "TIERSET_PROCESSES": str(processes),
            "TIERSET_METRICS_ADDRESS": "",  # several servers run at once; metrics still count
            **(env or {}),
        }
        command = (
            [sys.executable, str(BENCH / "trusting_server.py")]
            if trusting
            else [sys.executable, "-m", "tierset.cli", "serve"]
        )
        async with process(command, server_env, bench.work / "servers.log") as server:
            async with asyncio.timeout(60):
                await client.wait_until_serving(address)
            if processes > 1:
                await asyncio.sleep(3)  # healthy is the first worker; let the others bind too
            token = bench.tokens[database]
            credential = [("authorization", f"Bearer {token}")]
            yield Running(address, [server.pid], credential, address, processes)

    return start


def gateway_target(processes: int) -> Callable[[Bench], Any]:
    """`tierset gateway` with `processes` processes, in front of a cached `tierset serve`."""

    @contextlib.asynccontextmanager
    async def start(bench: Bench) -> AsyncIterator[Running]:
        port = free_port()
        async with tierset_target("main")(bench) as grpc_server:
            env = {
                **os.environ,
                "TIERSET_HTTP_ADDRESS": f"127.0.0.1:{port}",
                "TIERSET_GRPC_TARGET": grpc_server.address,
                "TIERSET_GATEWAY_PROCESSES": str(processes),
            }
            command = [sys.executable, "-m", "tierset.cli", "gateway"]
            async with process(command, env, bench.work / "servers.log") as gateway:
                await wait_port(f"127.0.0.1:{port}")
                if processes > 1:
                    await asyncio.sleep(3)  # the first process answers; let the others bind
                yield Running(
                    f"http://127.0.0.1:{port}",
                    [gateway.pid, *grpc_server.pids],
                    grpc_server.metadata,
                    grpc_server.address,
                )

    return start


# The responses the bare servers answer with: tierset's own, one per cached-read variant.
RESPONSES = tuple(f"{keys}-{level}" for level in targets.LEVELS for keys in targets.KEYS)


def bare_workload_name(keys: int, level: str) -> str:
    return targets.bare_name(keys, level)


def bare_target(response_of: str) -> Callable[[Bench], Any]:
    """The bare grpc.aio server, answering with the bytes of a real tierset response."""

    @contextlib.asynccontextmanager
    async def start(bench: Bench) -> AsyncIterator[Running]:
        port = free_port()
        response = bench.work / f"response-{response_of}.bin"
        response.write_bytes(bench.responses[response_of])
        command = [sys.executable, str(BENCH / "bare_server.py"), str(port), str(response)]
        async with process(command, log=bench.work / "servers.log") as server:
            address = f"127.0.0.1:{port}"
            await wait_port(address)
            yield Running(address, [server.pid])

    return start


async def wait_port(address: str) -> None:
    host, port = address.rsplit(":", 1)
    for _ in range(200):
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection(host, int(port))
            writer.close()
            return
        await asyncio.sleep(0.05)
    raise RuntimeError(f"nothing listens on {address}")


@contextlib.asynccontextmanager
async def etcd_target(bench: Bench) -> AsyncIterator[Running]:
    """A single-member etcd on loopback with a temp data dir, holding one key."""
    etcd = shutil.which("etcd")
    if etcd is None:
        raise RuntimeError("etcd is not installed (Debian: apt-get install etcd-server)")
    client, peer = f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"
    command = [
        etcd,
        "--name=bench",
        f"--data-dir={bench.work / 'etcd'}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=bench={peer}",
        "--log-level=error",
    ]
    async with process(command, log=bench.work / "etcd.log") as server:
        address = client.removeprefix("http://")
        await wait_port(address)
        kv = bench.etcd
        async with grpc.aio.insecure_channel(address) as channel:
            put = channel.unary_unary(
                "/etcdserverpb.KV/Put",
                request_serializer=kv.PutRequest.SerializeToString,
                response_deserializer=kv.PutResponse.FromString,
            )
            value = json.dumps({"retailer": 5, "key": 1}).encode()
            for _ in range(100):
                try:
                    await put(kv.PutRequest(key=b"BENCH.KEY.001", value=value), timeout=2)
                    break
                except grpc.aio.AioRpcError:
                    await asyncio.sleep(0.1)
        yield Running(address, [server.pid])


def cores() -> int:
    """The cores this process may run on (its affinity, else the machine's count)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


# The scaling step: N server processes on one port for each N of targets.scaling_sizes.
SCALING = targets.scaling_sizes(cores())

TARGETS: dict[str, Callable[[Bench], Any]] = {
    "tierset": tierset_target("main"),
    "tierset-uncached": tierset_target("main", cache=False),
    **{f"tierset-{n}proc": tierset_target("main", processes=n) for n in SCALING},
    **{
        f"tierset-{n}proc-uncached": tierset_target("main", cache=False, processes=n)
        for n in SCALING
    },
    "tierset-10k": tierset_target("size_10k", cache=False),
    "tierset-1m": tierset_target("size_1m", cache=False),
    **{f"bare-{variant}": bare_target(variant) for variant in RESPONSES},
    "etcd": etcd_target,
    "gateway": gateway_target(1),
    "gateway-2proc": gateway_target(2),
    "tierset-history": tierset_target("history"),
    "tierset-log10k": tierset_target("log_10k", cache=False),
    "tierset-log1m": tierset_target("log_1m", cache=False),
}
# The database each history target (bench/history_load.py) works on; "sql-history" is the
# bare asyncpg client, no server.
HISTORY_DATABASES = {
    "tierset-history": "history",
    "sql-history": "history",
    "tierset-log10k": "log_10k",
    "tierset-log1m": "log_1m",
}

# Measured side by side in alternating rounds on one workload (`measure_variants`): the
# server as shipped and three variants of it, each compared with it. Their differences
# are below what this machine's noise allows between two separate runs. One step for all
# three (they were three pairs, each with its own copy of the shipped server).
VARIANTS_OF = "GetSettings 1 key retailer, cached"
SHIPPED = ("as shipped (API token verification cached, access log off)", tierset_target("main"))
VARIANTS: list[tuple[str, Callable[[Bench], Any]]] = [
    ("verification skipped (trusting server)", tierset_target("main", trusting=True)),
    ("access log on", tierset_target("main", env={"TIERSET_ACCESS_LOG": "true"})),
    (
        "API token verified on every call (auth cache off)",
        tierset_target("main", env={"TIERSET_AUTH_CACHE_SECONDS": "0"}),
    ),
]
PAIR_ROUNDS, PAIR_ROUND_SECONDS, PAIR_WARMUP_SECONDS = 4, 2.0, 0.5

# The cached-read target (targets.CACHED): a cached GetSettings at least that share of the
# bare server's rate, 1 and 10 keys, account and retailer. Settled by interleaved rounds
# (`measure_against_bare`): one tierset server and a bare server per variant run side by
# side and take turns, the same load client, concurrency and process count for each, so
# machine noise hits all. The bare server answers with the bytes tierset answered to the
# same variant (RESPONSES) and is sent the same request bytes. These rounds are also the
# table's rows for the cached reads and the bare servers (no separate runs of them).
TARGET_ROUNDS = 4
TARGET_WORKLOADS = tuple(
    (targets.cached_name(keys, level), bare_workload_name(keys, level), f"bare-{keys}-{level}")
    for level in targets.LEVELS
    for keys in targets.KEYS
)


# --- workloads ------------------------------------------------------------------

GET = "/tierset.v1.SettingsService/GetSettings"
BARE = "/bench.Bare/Answer"
RANGE = "/etcdserverpb.KV/Range"


@dataclass
class Workload:
    """One measured line of the table."""

    name: str
    target: str
    method: str
    requests: list[bytes]
    # Which workloads it is compared with (names), and how it is labelled in the chart.
    baselines: list[str] = field(default_factory=list)
    kind: str = "tierset"
    # Which client drives it: the gRPC load client or wrk over HTTP (target "sql": raw SQL).
    client: str = "grpc"
    # GetSettings requests sent once before the warm-up, so that a cached workload
    # starts with every answer in the server's cache, whatever ran before it.
    primer: list[bytes] = field(default_factory=list)
    # Measured in interleaved rounds (`measure_against_bare`, `measure_flat`), not on its own.
    interleaved: bool = False


def workloads(bench: Bench) -> list[Workload]:
    rng = random.Random(6)  # noqa: S311 - a reproducible data set, not a secret

    def encoded(messages: list[Any]) -> list[bytes]:
        return [m.SerializeToString() for m in messages]

    reads = {
        (level, keys): encoded(
            read_requests(level, keys, ACCOUNTS if level == "ACCOUNT" else RETAILERS, rng)
        )
        for level in ("ACCOUNT", "RETAILER")
        for keys in (1, 10)
    }
    sized = encoded(read_requests("RETAILER", 10, 200, rng))
    range_request = bench.etcd.RangeRequest(key=b"BENCH.KEY.001").SerializeToString()
    made = [
        Workload(
            targets.bare_name(keys, level.lower()),
            f"bare-{keys}-{level.lower()}",
            BARE,
            requests,
            [],
            "limit",
            interleaved=True,
        )
        for (level, keys), requests in reads.items()
    ]
    made += [
        Workload("etcd Range, 1 key", "etcd", RANGE, [range_request], [], "peer"),
        Workload("raw SQL, 1 key", "sql", "", reads["RETAILER", 1], [], "limit"),
        Workload("raw SQL, 10 keys", "sql", "", reads["RETAILER", 10], [], "limit"),
    ]
    for cached, target in ((True, "tierset"), (False, "tierset-uncached")):
        label = "cached" if cached else "uncached"
        for (level, keys), requests in reads.items():
            # Against the bare server sent the same requests (the interleaved rounds').
            bare = targets.bare_name(keys, level.lower(), same_request=True)
            sql = "raw SQL, 1 key" if keys == 1 else "raw SQL, 10 keys"
            made.append(
                Workload(
                    f"GetSettings {keys} key{'s' if keys > 1 else ''} {level.lower()}, {label}",
                    target,
                    GET,
                    requests,
                    [bare] if cached else [bare, sql],
                    primer=requests if cached else [],
                    interleaved=cached,
                )
            )
    for keys in (1, 10):
        paths = [
            rest_path(m)
            for m in map(settings_pb2.GetSettingsRequest.FromString, reads["RETAILER", keys])
        ]
        grpc_name = f"GetSettings {keys} key{'s' if keys > 1 else ''} retailer, cached"
        for target, processes in (("gateway", ""), ("gateway-2proc", ", 2 gateway processes")):
            made.append(
                Workload(
                    f"REST GET {keys} key{'s' if keys > 1 else ''} retailer{processes}",
                    target,
                    "GET",
                    paths,
                    [grpc_name]
                    if not processes
                    else [grpc_name, f"REST GET {keys} key{'s' if keys > 1 else ''} retailer"],
                    client="http",
                    primer=reads["RETAILER", keys],
                )
            )
    # (No separate "PutSetting" row: "PutSetting with log" below is the same call, every
    # put writes the log, and it is the one judged against raw SQL.)
    for n in SCALING:  # N server processes on one port, against one
        for cached in (True, False):
            made.append(
                Workload(
                    targets.scaled_name(n, cached),
                    f"tierset-{n}proc" if cached else f"tierset-{n}proc-uncached",
                    GET,
                    reads["RETAILER", 1],
                    [targets.single(cached)],
                    primer=reads["RETAILER", 1] if cached else [],
                )
            )
    made += [
        Workload(
            "GetSettings 10 keys retailer, uncached, 10k settings",
            "tierset-10k",
            GET,
            sized,
            [],
        ),
        Workload(
            "GetSettings 10 keys retailer, uncached, 1M settings",
            "tierset-1m",
            GET,
            sized,
            ["GetSettings 10 keys retailer, uncached, 10k settings"],
        ),
    ]
    raw_put = "raw SQL upsert + log + counter"
    raw_delete = "raw SQL delete + log + counter + inherited read"
    changes_10k = "ListChanges 100 of an account, 10k log rows"
    at_10k = "GetSettings 10 keys at_revision, 10k log rows"
    made += [
        Workload(raw_put, "sql-history", "raw-put", [], [], "limit", client="history"),
        Workload(raw_delete, "sql-history", "raw-delete", [], [], "limit", client="history"),
        Workload("PutSetting with log", "tierset-history", "put", [], [raw_put], client="history"),
        Workload("DeleteSetting", "tierset-history", "delete", [], [raw_delete], client="history"),
        Workload(changes_10k, "tierset-log10k", "changes", [], [], client="history"),
        Workload(
            "ListChanges 100 of an account, 1M log rows",
            "tierset-log1m",
            "changes",
            [],
            [changes_10k],
            client="history",
        ),
        Workload(at_10k, "tierset-log10k", "at-revision", [], [], client="history"),
        Workload(
            "GetSettings 10 keys at_revision, 1M log rows",
            "tierset-log1m",
            "at-revision",
            [],
            [at_10k],
            client="history",
        ),
    ]
    paired = {name for _, large, small, _ in targets.FLAT_PAIRS for name in (large, small)}
    return [dataclasses.replace(w, interleaved=True) if w.name in paired else w for w in made]


def rest_path(request: settings_pb2.GetSettingsRequest) -> bytes:
    """The gateway's Fluent Commerce path for the same read."""
    level = request.scope.WhichOneof("kind")
    scope = "account" if level == "account_id" else "retailer"
    scope_id = getattr(request.scope, str(level))
    return f"/api/v4.1/settings/{scope}/{scope_id}/{','.join(request.keys)}".encode()


# --- running ------------------------------------------------------------------


@dataclass
class Bench:
    args: argparse.Namespace
    work: Path
    databases: dict[str, str] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    primed: set[tuple[str, str]] = field(default_factory=set)
    responses: dict[str, bytes] = field(default_factory=dict)
    etcd: Any = None
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    # The cluster's superuser DSN: conditions.Conditions samples pg_stat_activity with it.
    admin_dsn: str | None = None


async def drive(
    bench: Bench,
    workload: Workload,
    running: Running | None,
    seconds: float | None = None,
    warmup: float | None = None,
) -> dict[str, Any]:
    """Runs one workload from a separate load process; returns its figures."""
    seconds = bench.args.seconds if seconds is None else seconds
    warmup = bench.args.warmup if warmup is None else warmup
    if workload.primer and running and (running.address, workload.name) not in bench.primed:
        await prime(running, workload.primer)
        bench.primed.add((running.address, workload.name))
    spec: dict[str, Any] = {
        "concurrency": CONCURRENCY,
        "seconds": seconds,
        "warmup_seconds": warmup,
    }
    if workload.client == "http":
        assert running is not None
        paths_file = bench.work / "paths.txt"
        header = dict(running.metadata)["authorization"]
        paths_file.write_text("\n".join([header, *(p.decode() for p in workload.requests)]))
        spec |= {"target": running.address, "paths_file": str(paths_file)}
        script = "http_load.py"
    elif workload.client == "history":
        database = HISTORY_DATABASES[workload.target]
        rows = LOG_ROWS.get(database, 1)
        raw = workload.method.startswith("raw-")
        spec |= {
            "mode": workload.method,
            "dsn": bench.databases[database],
            "pool": 10,
            # The reads go to the accounts (and their retailers) the log's rows belong to.
            "accounts": LOG_ACCOUNTS if database in LOG_ROWS else HISTORY_ACCOUNTS,
            "delete_keys": DELETE_KEYS,
            # gRPC deletes accounts 1-100's keys, the raw client 101-200's.
            "delete_accounts": (101, 200) if raw else (1, 100),
            # at_revision anywhere in the log's second half: the replay reaches that far.
            "revisions": (rows // 2, rows),
        }
        if running is not None:
            spec |= {"target": running.address, "metadata": running.metadata}
        script = "history_load.py"
    elif workload.target == "sql":
        spec |= {
            "dsn": bench.databases["main"],
            "pool": 10,
            "reads": [
                [
                    "ACCOUNT" if m.scope.HasField("account_id") else "RETAILER",
                    m.scope.account_id or m.scope.retailer_id,
                    list(m.keys),
                ]
                for m in map(settings_pb2.GetSettingsRequest.FromString, workload.requests)
            ],
        }
        script = "sql_load.py"
    else:
        assert running is not None
        requests_file = bench.work / "requests.pickle"
        requests_file.write_bytes(pickle.dumps(workload.requests))
        spec |= {
            "target": running.address,
            "method": workload.method,
            "requests_file": str(requests_file),
            "processes": bench.args.client_processes,
            "metadata": running.metadata,
        }
        script = "load.py"
    cpu_before = cpu_seconds(running.pids) if running else 0.0
    async with conditions.Conditions(bench.admin_dsn) as window:
        result = await LOADER.run(script, spec)
    result |= window.figures()
    if "error" in result:
        raise RuntimeError(f"the load client failed on {workload.name}: {result['error']}")
    if running:
        # Includes the warm-up, as the client's figure does.
        result["server_cpu_cores"] = (cpu_seconds(running.pids) - cpu_before) / (seconds + warmup)
    return result


class Loader:
    """The one load process (bench/loader.py), started on first use and kept for the run.

    A fresh Python per workload (and two more for load.py's client processes) cost 3-5 s
    of imports each on the loaded box, more than a 2.5 s interleaved round itself; the
    kept process runs each workload's client in its own window and reports that window
    alone. A step that runs out of time kills it mid-workload; the next starts another.
    """

    def __init__(self) -> None:
        self.child: subprocess.Popen[bytes] | None = None

    async def run(self, script: str, spec: dict[str, Any]) -> dict[str, Any]:
        if self.child is None or self.child.poll() is not None:
            self.child = launch(
                [sys.executable, str(BENCH / "loader.py")],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )
        child = self.child
        assert child.stdin is not None and child.stdout is not None
        order = (json.dumps({"script": script, "spec": spec}) + "\n").encode()
        try:
            await asyncio.to_thread(child.stdin.write, order)
            await asyncio.to_thread(child.stdin.flush)
            line = await asyncio.to_thread(child.stdout.readline)
        except (asyncio.CancelledError, BrokenPipeError):
            self.stop()  # out of time, or the process died: leave no load running
            raise
        if not line:
            self.stop()
            return {"error": "the load process ended without an answer"}
        return dict(json.loads(line))

    def stop(self) -> None:
        if self.child is not None:
            self.child.kill()
            self.child.wait()
            for pipe in (self.child.stdin, self.child.stdout):
                if pipe is not None:
                    pipe.close()
            CHILDREN.discard(self.child)
            self.child = None


LOADER = Loader()


async def per_call_costs(iterations: int = 20_000) -> dict[str, float]:
    """Microseconds per call of two steps too small for the pairs to resolve in the noise,
    timed in this process: verifying a cached API token (tierset's Authenticator, as
    the call pipeline calls it) and writing one access-log line (tierset's JSON
    formatter with its redaction, as the pipeline logs it) to /dev/null.
    """
    token = "tsk_" + "x" * 43
    principal = Principal(1, "bench", 1, frozenset({Role.PLATFORM}), Kind.API_TOKEN.value, 1)
    authenticator = Authenticator(CredentialStore(None), 3600, 10)  # type: ignore[arg-type]
    # Warm, as after a first call (no database here: the lookup itself is not what is timed).
    values = [f"Bearer {token}"]
    authenticator._remember(values[0], principal, None, authenticator._generation, bearer=True)
    started = time.perf_counter()
    for _ in range(iterations):
        await authenticator.authenticate(values)
    verify = (time.perf_counter() - started) / iterations * 1e6

    method = GET
    with open(os.devnull, "w") as sink:
        handler = logs.json_handler(sink)
        access = logging.getLogger("bench.access")
        access.propagate = False
        access.addHandler(handler)
        access.setLevel(logging.INFO)
        started = time.perf_counter()
        for _ in range(iterations):
            access.info(
                "%s %s",
                method,
                "OK",
                extra={"grpc_method": method, "grpc_code": "OK", "duration_ms": 0.5},
            )
        line = (time.perf_counter() - started) / iterations * 1e6
        access.removeHandler(handler)
    return {"verify_cached_token_us": verify, "access_log_line_us": line}


async def prime(running: Running, requests: list[bytes]) -> None:
    """Sends each read once (64 at a time), so the server's cache holds every answer.

    With several server processes each connection lands on one of them (by the
    kernel's hash), so six connections each send every read: a process is
    missed only with odds of 1 in 32.
    """

    async def through_one_connection() -> None:
        async with grpc.aio.insecure_channel(
            running.grpc_address, options=[("grpc.use_local_subchannel_pool", 1)]
        ) as channel:
            call = channel.unary_unary(GET)
            for start in range(0, len(requests), CONCURRENCY):
                await asyncio.gather(
                    *(
                        call(q, metadata=running.metadata, timeout=10)
                        for q in requests[start : start + CONCURRENCY]
                    )
                )

    await asyncio.gather(
        *(through_one_connection() for _ in range(1 if running.processes == 1 else 6))
    )


@contextlib.asynccontextmanager
async def started(
    bench: Bench, starters: dict[str, Callable[[Bench], Any]]
) -> AsyncIterator[dict[str, Running]]:
    """Starts several targets at once (their start is seconds of Python imports each on a
    loaded box) and stops them all; one that fails to start stops the others."""
    async with contextlib.AsyncExitStack() as stack:
        running: dict[str, Running] = {}

        async def start(name: str) -> None:
            running[name] = await stack.enter_async_context(starters[name](bench))

        async with asyncio.TaskGroup() as group:
            for name in starters:
                group.create_task(start(name))
        yield running


def combined(results: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
    """One table row from alternating rounds: the rate over all rounds; p50 and p99 the
    medians of the rounds'; CPU the mean."""
    middle = len(results) // 2
    return {
        "requests": sum(r["requests"] for r in results),
        "rps": sum(r["requests"] for r in results) / (seconds * len(results)),
        "p50_ms": sorted(r["p50_ms"] for r in results)[middle],
        "p99_ms": sorted(r["p99_ms"] for r in results)[middle],
        "errors": {k: v for r in results for k, v in r["errors"].items()},
        "server_cpu_cores": sum(r.get("server_cpu_cores", 0.0) for r in results) / len(results),
        "client_cpu_cores": sum(r["client_cpu_cores"] for r in results) / len(results),
        "rounds": [r["rps"] for r in results],
    } | conditions.merged([r for r in results if "host" in r])


def record_rounds(
    bench: Bench, name: str, results: list[dict[str, Any]], kind: str, baselines: list[str]
) -> None:
    """A workload measured in rounds becomes one row of the table, printed with each
    round's rate."""
    bench.results[name] = combined(results, PAIR_ROUND_SECONDS) | {
        "kind": kind,
        "baselines": baselines,
    }
    rates = ", ".join(f"{r:.0f}" for r in bench.results[name]["rounds"])
    print(f"  {name:<55} {bench.results[name]['rps']:>8.0f}/s  rounds {rates}", flush=True)


# The flat targets (targets.FLAT_PAIRS), each read at 1M rows and at 10k in paired rounds.
FLAT_ROUNDS = 4
# The database each flat pair's server reads.
FLAT_DATABASES = {"tierset-10k": "size_10k", "tierset-1m": "size_1m"} | HISTORY_DATABASES


async def measure_flat(bench: Bench, made: list[Workload], wanted: Callable[[str], bool]) -> None:
    """Each flat pair's reads, at 1M rows and at 10k, with all their servers up at once and
    driven back to back in rounds, the order alternating: a stall of the host or of the
    database then lands on a round, not on the whole of one side, as it did when each ran
    once on its own (targets.flat judges the median of the rounds' ratios). Each
    database is read into the page cache first (`prewarm`). The rounds are the table's
    rows for these reads."""
    by_name = {w.name: w for w in made}
    pairs = [
        (by_name[large], by_name[small])
        for _, large, small, _ in targets.FLAT_PAIRS
        if wanted(large) or wanted(small)
    ]
    servers = {w.target: TARGETS[w.target] for pair in pairs for w in pair}
    rounds: dict[str, list[dict[str, Any]]] = {}
    for database in sorted({FLAT_DATABASES[target] for target in servers}):
        blocks = await prewarm(bench.databases[database])
        print(f"  {database}: {sum(blocks.values()) * 8 / 1024:,.0f} MiB read ahead", flush=True)
    async with started(bench, servers) as running:
        for n in range(FLAT_ROUNDS):
            for pair in pairs:
                for workload in pair if n % 2 == 0 else pair[::-1]:
                    result = await drive(
                        bench,
                        workload,
                        running[workload.target],
                        PAIR_ROUND_SECONDS,
                        PAIR_WARMUP_SECONDS,
                    )
                    rounds.setdefault(workload.name, []).append(result)
    for name, results in rounds.items():
        record_rounds(bench, name, results, by_name[name].kind, by_name[name].baselines)


async def measure_variants(bench: Bench, workload: Workload) -> None:
    """The shipped server and each of VARIANTS up at once, driven in alternating rounds
    (the order reversed every other round), so drift hits all alike; each variant's row
    is compared with the shipped server's."""
    servers = dict([SHIPPED, *VARIANTS])
    rounds: dict[str, list[dict[str, Any]]] = {label: [] for label in servers}
    async with started(bench, servers) as running:
        for n in range(PAIR_ROUNDS):
            order = list(servers) if n % 2 == 0 else list(servers)[::-1]
            for label in order:
                rounds[label].append(
                    await drive(
                        bench, workload, running[label], PAIR_ROUND_SECONDS, PAIR_WARMUP_SECONDS
                    )
                )
    shipped = f"{workload.name}: {SHIPPED[0]}"
    for label, results in rounds.items():
        name = f"{workload.name}: {label}"
        record_rounds(bench, name, results, "tierset", [] if name == shipped else [shipped])


async def measure_against_bare(bench: Bench, made: list[Workload]) -> dict[str, Any]:
    """Cached GetSettings against the bare server in alternating rounds, for each variant
    of TARGET_WORKLOADS (1 and 10 keys, account and retailer); the cached-read target.

    Each round drives the bare server twice: with tierset's requests exactly as tierset
    gets them, its ``authorization`` header included (the verdict: the same request
    bytes in, the same response bytes out), and with no header at all (how this step
    measured before; shown beside it). gRPC carries a header it does not know as a
    literal on every call, and the client and server sides of that cost the bare server
    about 15-25 % of its rate on this box, which is no part of what tierset adds.

    The rounds are also the table's rows for the cached reads and the bare servers
    (``..., same request`` for the one sent the header). Returns, per cached workload,
    the rates over all rounds, each round's rates and the ratios.
    """
    by_name = {w.name: w for w in made}
    rounds: dict[str, list[dict[str, Any]]] = {}
    async with TARGETS["tierset"](bench) as tierset:
        await capture_responses(bench, tierset, made)
        bare_servers = {target: TARGETS[target] for _, _, target in TARGET_WORKLOADS}
        async with started(bench, bare_servers) as bare:
            for n in range(TARGET_ROUNDS):
                for cached, reference, target in TARGET_WORKLOADS:
                    same_request = dataclasses.replace(bare[target], metadata=tierset.metadata)
                    turns = [
                        (cached, cached, tierset),
                        (reference, f"{reference}, same request", same_request),
                        (reference, reference, bare[target]),
                    ]
                    # Alternate which goes first, so neither always follows the other.
                    for workload, name, running in turns if n % 2 == 0 else turns[::-1]:
                        result = await drive(
                            bench,
                            by_name[workload],
                            running,
                            PAIR_ROUND_SECONDS,
                            PAIR_WARMUP_SECONDS,
                        )
                        rounds.setdefault(name, []).append(result)
    for name, results in rounds.items():
        workload = by_name[name.removesuffix(", same request")]
        bench.results[name] = combined(results, PAIR_ROUND_SECONDS) | {
            "kind": workload.kind,
            "baselines": workload.baselines,
        }
    found: dict[str, Any] = {"rounds": TARGET_ROUNDS}
    for cached, reference, _ in TARGET_WORKLOADS:
        mine = bench.results[cached]["rps"]
        theirs = bench.results[f"{reference}, same request"]["rps"]
        headerless = bench.results[reference]["rps"]
        found[cached] = {
            "rps": mine,
            "bare_rps": theirs,
            "ratio": mine / theirs if theirs else 0.0,
            "rounds": bench.results[cached]["rounds"],
            "bare_rounds": bench.results[f"{reference}, same request"]["rounds"],
            "bare_no_header_rps": headerless,
            "ratio_to_bare_no_header": mine / headerless if headerless else 0.0,
            "bare_no_header_rounds": bench.results[reference]["rounds"],
        }
        print(
            f"  {cached} vs bare, interleaved: {mine:.0f}/s vs {theirs:.0f}/s (same request)"
            f" = {found[cached]['ratio']:.2f}x; vs {headerless:.0f}/s (no header) ="
            f" {found[cached]['ratio_to_bare_no_header']:.2f}x",
            flush=True,
        )
    return found


async def capture_responses(bench: Bench, running: Running, made: list[Workload]) -> None:
    """Real tierset responses, so that each bare server answers with the same bytes as
    tierset does for its variant (the largest of 50)."""
    by_name = {w.name: w for w in made}
    async with grpc.aio.insecure_channel(running.address) as channel:
        call = channel.unary_unary(GET)
        for level in targets.LEVELS:
            for keys in targets.KEYS:
                workload = by_name[targets.cached_name(keys, level)]
                sizes = [
                    (len(r := await call(q, metadata=running.metadata)), r)
                    for q in workload.requests[:50]
                ]
                bench.responses[f"{keys}-{level}"] = max(sizes)[1]


async def measure_propagation(bench: Bench, samples: int = 200) -> dict[str, Any]:
    """Write through one server process, poll another until it reads the new value."""
    async with (
        TARGETS["tierset"](bench) as writer,
        TARGETS["tierset"](bench) as reader,
        grpc.aio.insecure_channel(writer.address) as write_channel,
        grpc.aio.insecure_channel(reader.address) as read_channel,
    ):
        stubs = (
            settings_pb2_grpc.SettingsServiceStub(write_channel),
            settings_pb2_grpc.SettingsServiceStub(read_channel),
        )
        credential = writer.metadata

        async def put(request: settings_pb2.PutSettingRequest) -> Any:
            return await stubs[0].PutSetting(request, metadata=credential)

        async def get(request: settings_pb2.GetSettingsRequest) -> Any:
            return await stubs[1].GetSettings(request, metadata=credential)

        scope = settings_pb2.Scope(retailer_id=OVERRIDING_EVERY)
        read = settings_pb2.GetSettingsRequest(scope=scope, keys=["BENCH.PROPAGATION"])
        delays, polls = [], []
        for n in range(samples):
            await get(read)  # the reader holds the old value in its cache
            await put(
                settings_pb2.PutSettingRequest(
                    scope=scope,
                    key="BENCH.PROPAGATION",
                    type=settings_pb2.SETTING_TYPE_INTEGER,
                    value=settings_pb2.SettingValue(integer_value=n),
                )
            )
            written = time.perf_counter()
            tries = 0
            while True:
                tries += 1
                reply = await get(read)
                if reply.settings and reply.settings[0].value.integer_value == n:
                    break
            delays.append((time.perf_counter() - written) * 1000)
            polls.append(tries)
    delays.sort()
    return {
        "samples": samples,
        "p50_ms": delays[len(delays) // 2],
        "p99_ms": delays[int(len(delays) * 0.99)],
        "max_ms": delays[-1],
        "first_read_fresh": sum(1 for p in polls if p == 1) / samples,
    }


async def measure_view(bench: Bench, made: list[Workload], samples: int = 200) -> dict[str, Any]:
    """The client's live view: the cost of one read from memory (one thread, a typed
    getter), compared with GetSettings and etcd's Range at concurrency 64; and the time
    from sending a write to the view of another process applying it."""
    for name in ("etcd Range, 1 key", "GetSettings 1 key retailer, cached"):
        if name not in bench.results:  # run with --only view: measure the references too
            workload = next(w for w in made if w.name == name)
            async with TARGETS[workload.target](bench) as running:
                bench.results[name] = await drive(bench, workload, running) | {
                    "kind": workload.kind,
                    "baselines": workload.baselines,
                }
    key, reads = "BENCH.VIEW", 2_000_000
    scope = client.Scope.retailer(OVERRIDING_EVERY)
    async with TARGETS["tierset"](bench) as running:
        token = bench.tokens["main"]
        async with client.Client(running.address, client.ApiToken(token)) as tierset:
            await tierset.put(scope, key, 0)
            view = await tierset.view(scope, keys=[key])
            get_int = view.get_int
            started = time.perf_counter_ns()
            for _ in range(reads):
                get_int(key, 0)
            read_ns = (time.perf_counter_ns() - started) / reads
            await view.close()
            # A helper started by launch(), never the loop's forking spawn (see the module
            # docstring: a fork while gRPC's threads are live hung the bench); its lines are
            # read off the event loop.
            probe = launch(
                [
                    sys.executable,
                    str(BENCH / "view_probe.py"),
                    running.address,
                    token,
                    str(OVERRIDING_EVERY),
                    key,
                ],
                stdout=subprocess.PIPE,
            )
            assert probe.stdout is not None
            probe_lines = probe.stdout
            try:
                assert (await asyncio.to_thread(probe_lines.readline)).strip() == b"ready"
                delays = []
                for n in range(1, samples + 1):
                    sent = time.monotonic_ns()
                    written = await tierset.put(scope, key, n)
                    while True:
                        value, applied = (await asyncio.to_thread(probe_lines.readline)).split()
                        if int(value) == n:
                            break
                    delays.append((int(applied) - sent) / 1e6)
                    assert written.version > 0
            finally:
                probe.terminate()
                await finished(probe, limit_seconds=30)
    delays.sort()
    etcd = bench.results["etcd Range, 1 key"]["rps"]
    get = bench.results["GetSettings 1 key retailer, cached"]["rps"]
    return {
        "read_ns": read_ns,
        "reads_per_second": 1e9 / read_ns,
        "vs_etcd_range": 1e9 / read_ns / etcd if etcd else None,
        "vs_get_settings": 1e9 / read_ns / get if get else None,
        "samples": samples,
        "p50_ms": delays[len(delays) // 2],
        "p99_ms": delays[int(len(delays) * 0.99)],
        "max_ms": delays[-1],
    }


FANOUT_SIZES = (1_000, 10_000)
FANOUT_PROBES = 2  # client processes holding the streams
# How long the probes may take to open their streams; those not open by then are given up
# and the rest measured (a loaded box once took over six minutes to open 10,000, and the
# step ran out of time with no figure at all). 10,000 opened in 18 s on a quiet box.
FANOUT_OPEN_SECONDS = {1_000: 60.0, 10_000: 150.0}
FANOUT_STREAMS_PER_CHANNEL = 500  # each channel is its own connection
FANOUT_KEY = "BENCH.FANOUT"  # a GLOBAL key no retailer overrides


def rss_bytes(pid: int) -> int:
    """Resident memory of `pid` and its children, from /proc."""
    total = 0
    for each in (pid, *_children(pid)):
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            for line in Path(f"/proc/{each}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
    return total


async def measure_fanout(bench: Bench, watchers: int) -> dict[str, Any]:
    """`watchers` WatchSettings streams on one server process, one GLOBAL write.

    The streams live in FANOUT_PROBES separate processes (bench/watch_probe.py), all
    watching one retailer's FANOUT_KEY; once every one holds its snapshot, the server's
    RSS is read, the key is written once through the API, and each probe reports when
    each stream received the change (time.time()). The commit time is the log row's
    ``change_time`` (PostgreSQL's clock, the same machine's): the write's transaction
    start, a little before its commit, so the delay includes the write's own commit, never
    less. Not the write's answer: at 10,000 watchers the server queues that answer behind
    the fan-out it set off, so most streams received the change before the writer did.
    Each size gets a fresh server, so its RSS is not left over from the other size.
    """
    limit = str(watchers + 100)
    env = {
        "TIERSET_WATCH_MAX_STREAMS": limit,
        "TIERSET_GRPC_MAX_STREAMING_CALLS": limit,
        "TIERSET_GRPC_MAX_STREAMS_PER_CONNECTION": str(FANOUT_STREAMS_PER_CHANNEL + 100),
    }
    async with (
        tierset_target("main", env=env)(bench) as running,
        grpc.aio.insecure_channel(running.address) as channel,
    ):
        stub = settings_pb2_grpc.SettingsServiceStub(channel)

        async def set_global(n: int) -> None:
            await stub.SetGlobal(
                settings_pb2.SetGlobalRequest(
                    key=FANOUT_KEY,
                    type=settings_pb2.SETTING_TYPE_INTEGER,
                    value=settings_pb2.SettingValue(integer_value=n),
                ),
                metadata=running.metadata,
            )

        await set_global(0)  # the key exists; the watched write is an update
        await asyncio.sleep(1)  # let the server settle before its baseline RSS
        rss_before = rss_bytes(running.pids[0])
        connections_before = await server_connections(bench.databases["main"])
        probes = []
        for n in range(FANOUT_PROBES):
            share = watchers // FANOUT_PROBES + (n < watchers % FANOUT_PROBES)
            spec = bench.work / f"fanout-{watchers}-{n}.json"
            spec.write_text(
                json.dumps(
                    {
                        "target": running.address,
                        "metadata": running.metadata,
                        "streams": share,
                        "channels": max(1, -(-share // FANOUT_STREAMS_PER_CHANNEL)),
                        "retailer_id": 1,
                        "key": FANOUT_KEY,
                        "wait_seconds": 60,
                        "open_seconds": FANOUT_OPEN_SECONDS[watchers],
                        "result_file": str(spec.with_suffix(".result.json")),
                    }
                )
            )
            probes.append(
                launch(
                    [sys.executable, str(BENCH / "watch_probe.py"), str(spec)],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                )
            )
        opened_at = time.monotonic()
        readies = [
            (await asyncio.to_thread(p.stdout.readline)).decode().split()  # type: ignore[union-attr]
            for p in probes
        ]
        open_seconds = time.monotonic() - opened_at
        if any(not r or r[0] != "ready" for r in readies):
            outputs = [await output_of(p) for p in probes]
            raise RuntimeError(f"a watch probe failed: {[e[-300:] for _, e in outputs]}")
        opened = sum(int(r[1]) for r in readies)
        await asyncio.sleep(1)  # streams registered; RSS with them open
        rss_with = rss_bytes(running.pids[0])
        connections_with = await server_connections(bench.databases["main"])
        await set_global(1)
        answered = time.time()
        for p in probes:  # written: each probe's wait for the change starts now
            p.stdin.write(b"written\n")  # type: ignore[union-attr]
            p.stdin.flush()  # type: ignore[union-attr]
        committed = await commit_time(bench.databases["main"])
        received: list[float | None] = []
        open_errors: Counter[str] = Counter()
        ended_errors: Counter[str] = Counter()
        for p in probes:
            _, err = await output_of(p)
            if p.returncode:
                raise RuntimeError(f"a watch probe failed: {err.decode()[-300:]}")
            found = json.loads(Path(p.args[-1]).with_suffix(".result.json").read_text())
            received += found["received"]
            open_errors.update(found["open_errors"])
            ended_errors.update(found["ended_errors"])
    delays = sorted((t - committed) * 1000 for t in received if t is not None)
    result: dict[str, Any] = {
        "watchers": watchers,
        "opened": opened,
        "open_errors": dict(open_errors),
        "ended_errors": dict(ended_errors),
        "received": len(delays),
        "write_answered_after_commit_ms": round((answered - committed) * 1000, 2),
        "open_seconds": round(open_seconds, 1),
        "server_rss_before_mb": round(rss_before / 2**20, 1),
        "server_rss_with_watchers_mb": round(rss_with / 2**20, 1),
        "rss_per_watcher_kb": round((rss_with - rss_before) / max(opened, 1) / 1024, 1),
        # The server's PostgreSQL connections by application_name, before the streams
        # opened and with all of them open (docs/operations.md's sizing table uses them).
        "server_connections_before": connections_before,
        "server_connections_with_watchers": connections_with,
    }
    if delays:
        result |= {
            "min_ms": round(delays[0], 2),
            "p50_ms": round(delays[len(delays) // 2], 2),
            "p99_ms": round(delays[min(len(delays) - 1, int(len(delays) * 0.99))], 2),
            "max_ms": round(delays[-1], 2),
        }
    return result


async def server_connections(dsn: str) -> dict[str, int]:
    """Connections to `dsn`'s database by application_name, tierset's only (the pool is
    "tierset", the LISTEN connection "tierset-listener"); this query's own is not counted."""
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch(
            "SELECT application_name, count(*) AS n FROM pg_stat_activity"
            " WHERE datname = current_database() AND application_name LIKE 'tierset%'"
            "   AND pid <> pg_backend_pid()"
            " GROUP BY application_name ORDER BY application_name"
        )
        return {row["application_name"]: int(row["n"]) for row in rows}
    finally:
        await connection.close()


async def commit_time(dsn: str) -> float:
    """When the last write of FANOUT_KEY happened, by its change-log row (epoch seconds)."""
    connection = await asyncpg.connect(dsn)
    try:
        return float(
            await connection.fetchval(
                "SELECT extract(epoch FROM change_time) FROM change_log"
                " WHERE key = $1 ORDER BY revision DESC LIMIT 1",
                FANOUT_KEY,
            )
        )
    finally:
        await connection.close()


# --- changesets (issue 14) ----------------------------------------------------------

CHANGESET_RUNS = 10  # 1,000-change changesets timed one after another
CHANGESET_SECONDS = 5.0  # each round of the 10-change throughput, per side
CHANGESET_ROUNDS = 2  # alternating rounds of tierset and raw SQL
CHANGESET_CONCURRENCY = 16
CHANGESET_ACCOUNT = 7  # a seeded account (seed_main): its ACCOUNT level takes the puts


def _changeset(prefix: str, size: int, n: int) -> settings_pb2.ApplyChangesRequest:
    scope = settings_pb2.Scope(account_id=CHANGESET_ACCOUNT)
    return settings_pb2.ApplyChangesRequest(
        changes=[
            settings_pb2.SettingChange(
                operation=settings_pb2.CHANGE_OPERATION_PUT,
                scope=scope,
                key=f"{prefix}.{i}",
                type=settings_pb2.SETTING_TYPE_INTEGER,
                value=settings_pb2.SettingValue(integer_value=n),
            )
            for i in range(size)
        ],
        reason="bench",
    )


async def _sql_changeset(pool: asyncpg.Pool, prefix: str, size: int, n: int) -> None:
    """What one ApplyChanges of `size` puts runs, from a bare asyncpg client: the same
    named statements (the counter first, then one changeset_put per change) in one
    transaction, with no gRPC, no authorisation and no validation."""
    async with pool.acquire() as connection, connection.transaction():
        revision = await connection.fetchval(query("changeset_take_revision"))
        for seq in range(size):
            await connection.fetchrow(
                query("changeset_put"),
                "ACCOUNT",
                CHANGESET_ACCOUNT,
                None,
                f"{prefix}.{seq}",
                "INTEGER",
                str(n),
                None,
                revision,
                seq,
                None,
                "bench",
                None,
                None,
                None,
                "bench",
            )


# Calls refused in the changeset step, by status: counted, not fatal (on the loaded box a
# call once waited past the pool's acquire timeout, UNAVAILABLE, and the whole bench died).
CHANGESET_ERRORS: Counter[str] = Counter()


async def _rate(call: Callable[[int], Any], seconds: float, concurrency: int) -> float:
    """Successful calls per second of `call(n)` from `concurrency` coroutines for `seconds`."""
    done = 0
    numbers = iter(range(10**9))
    stop = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < stop:
            try:
                await call(next(numbers))
            except grpc.aio.AioRpcError as error:
                CHANGESET_ERRORS[error.code().name] += 1
                continue
            done += 1

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done / (time.perf_counter() - began)


async def measure_changesets(bench: Bench) -> dict[str, Any]:
    """A 1,000-put changeset's latency over CHANGESET_RUNS runs, and 10-put changesets'
    throughput against the same statements from a bare asyncpg client (a pool as large
    as the server's), in alternating rounds at the same concurrency."""
    dsn = bench.databases["main"]
    async with (
        TARGETS["tierset"](bench) as running,
        grpc.aio.insecure_channel(running.address) as channel,
    ):
        stub = settings_pb2_grpc.SettingsServiceStub(channel)
        metadata = running.metadata
        latencies = []
        with contextlib.suppress(grpc.aio.AioRpcError):  # a warm-up: its failure is no figure
            await stub.ApplyChanges(_changeset("BENCH.CS1000", 1000, -1), metadata=metadata)
        for n in range(CHANGESET_RUNS):
            started = time.perf_counter()
            try:
                await stub.ApplyChanges(_changeset("BENCH.CS1000", 1000, n), metadata=metadata)
            except grpc.aio.AioRpcError as error:
                CHANGESET_ERRORS[error.code().name] += 1
                continue
            latencies.append((time.perf_counter() - started) * 1000)
        latencies.sort()

        async def via_tierset(n: int) -> None:
            await stub.ApplyChanges(_changeset("BENCH.CS10", 10, n), metadata=metadata)

        pool = await asyncpg.create_pool(dsn, min_size=10, max_size=10)
        try:

            async def via_sql(n: int) -> None:
                await _sql_changeset(pool, "BENCH.CS10", 10, n)

            await _rate(via_tierset, 1.0, CHANGESET_CONCURRENCY)  # warm both up
            await _rate(via_sql, 1.0, CHANGESET_CONCURRENCY)
            rates: dict[str, list[float]] = {"tierset": [], "sql": []}
            for _ in range(CHANGESET_ROUNDS):
                rates["sql"].append(await _rate(via_sql, CHANGESET_SECONDS, CHANGESET_CONCURRENCY))
                rates["tierset"].append(
                    await _rate(via_tierset, CHANGESET_SECONDS, CHANGESET_CONCURRENCY)
                )
        finally:
            await pool.close()
    tierset_rate = sum(rates["tierset"]) / len(rates["tierset"])
    sql_rate = sum(rates["sql"]) / len(rates["sql"])
    latencies = latencies or [0.0]  # every 1,000-put run refused: see "errors"
    return {
        "runs": CHANGESET_RUNS,
        "p50_ms_1000": latencies[len(latencies) // 2],
        "p99_ms_1000": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
        "max_ms_1000": latencies[-1],
        "tierset_per_second_10": tierset_rate,
        "sql_per_second_10": sql_rate,
        "ratio_10": tierset_rate / sql_rate if sql_rate else 0.0,
        "concurrency": CHANGESET_CONCURRENCY,
        "target": targets.WRITES,
        "errors": dict(CHANGESET_ERRORS),
    }


# Issue 14's target (targets.SCHEMA): a put of a key with a JSON Schema definition costs
# less than that much more than the same put of an undefined key.
SCHEMA_ROUNDS = 6
SCHEMA_PUTS_PER_ROUND = 400
# Unmeasured puts of each key first (a whole round of 400 once; the first few are the cold
# ones, and 400 more sequential puts took 10-20 s of the loaded bench's time).
SCHEMA_WARM_PUTS = 80
# Below the server's pool (10), so no put waits for a connection, only for the counter.
SCHEMA_IN_FLIGHT = 8
SCHEMA_KEYS = ("BENCH.SCHEMA.DEFINED", "BENCH.SCHEMA.PLAIN")
# What a definition's schema typically checks: an object's members, their types, an
# array's items, bounds, an enum, required members.
SCHEMA = {
    "type": "object",
    "properties": {
        "provider": {"enum": ["STRIPE", "BRAINTREE", "PAYPAL", "AFTERPAY"]},
        "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
        "enabled": {"type": "boolean"},
        "limits": {
            "type": "array",
            "items": {"type": "integer", "minimum": 0, "maximum": 100000},
            "maxItems": 50,
        },
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
    },
    "required": ["provider", "currency", "limits"],
    "additionalProperties": False,
}
SCHEMA_VALUE = {
    "provider": "STRIPE",
    "currency": "AUD",
    "enabled": True,
    "limits": list(range(100, 2100, 100)),
    "labels": {"en": "Card", "fr": "Carte", "de": "Karte"},
}


async def measure_schema_cost(bench: Bench) -> dict[str, Any]:
    """A SetGlobal of a JSON value to a key defined with SCHEMA, against the same put of an
    undefined key, on one server: SCHEMA_ROUNDS alternating rounds of
    SCHEMA_PUTS_PER_ROUND sequential puts each (one client, so each put's latency is its
    cost end to end: decode, the definitions' check, the statement and its commit)."""
    async with (
        tierset_target("main")(bench) as running,
        grpc.aio.insecure_channel(running.address) as channel,
    ):
        stub = settings_pb2_grpc.SettingsServiceStub(channel)
        await stub.DefineKey(
            settings_pb2.DefineKeyRequest(
                definition=settings_pb2.KeyDefinition(
                    key=SCHEMA_KEYS[0],
                    type=settings_pb2.SETTING_TYPE_JSON,
                    value_schema=json.dumps(SCHEMA),
                )
            ),
            metadata=running.metadata,
        )
        request = settings_pb2.SetGlobalRequest(
            type=settings_pb2.SETTING_TYPE_JSON,
            value=settings_pb2.SettingValue(json_value=json.dumps(SCHEMA_VALUE)),
        )

        async def round_ms(key: str, in_flight: int, puts: int = SCHEMA_PUTS_PER_ROUND) -> float:
            """Milliseconds per put: one after the other (latency), or `in_flight` writers
            at once, each on keys of its own (throughput, the counter serialising them)."""
            started = time.perf_counter()

            async def writer(n: int) -> None:
                mine = settings_pb2.SetGlobalRequest()
                mine.CopyFrom(request)
                mine.key = key if in_flight == 1 else f"{key}.{n}"
                for _ in range(puts // in_flight):
                    try:
                        await stub.SetGlobal(mine, metadata=running.metadata)
                    except grpc.aio.AioRpcError as error:
                        # Counted, not fatal: a stalled disk on a shared box can push a
                        # put past the statement timeout; the figure says how many.
                        errors[error.code().name] += 1

            await asyncio.gather(*(writer(n) for n in range(in_flight)))
            return (time.perf_counter() - started) * 1000 / puts

        for n in range(SCHEMA_IN_FLIGHT):  # the concurrent writers' keys, defined alike
            await stub.DefineKey(
                settings_pb2.DefineKeyRequest(
                    definition=settings_pb2.KeyDefinition(
                        key=f"{SCHEMA_KEYS[0]}.{n}",
                        type=settings_pb2.SETTING_TYPE_JSON,
                        value_schema=json.dumps(SCHEMA),
                    )
                ),
                metadata=running.metadata,
            )
        found: dict[str, Any] = {}
        errors: Counter[str] = Counter()
        for in_flight, name in ((1, "sequential"), (SCHEMA_IN_FLIGHT, "concurrent")):
            for key in SCHEMA_KEYS:  # warm: connections, statements, the definitions' copy
                await round_ms(key, in_flight, SCHEMA_WARM_PUTS)
            rounds: dict[str, list[float]] = {key: [] for key in SCHEMA_KEYS}
            for n in range(SCHEMA_ROUNDS):
                for key in SCHEMA_KEYS if n % 2 == 0 else reversed(SCHEMA_KEYS):
                    rounds[key].append(await round_ms(key, in_flight))
            defined, plain = (sorted(rounds[key])[SCHEMA_ROUNDS // 2] for key in SCHEMA_KEYS)
            found[name] = {
                "with_schema_ms": round(defined, 3),
                "without_ms": round(plain, 3),
                "overhead": round(defined / plain - 1, 4),
                "rounds_ms": rounds,
            }
    return await asyncio.to_thread(schema_check_cost) | {
        "rounds": SCHEMA_ROUNDS,
        "puts_per_round": SCHEMA_PUTS_PER_ROUND,
        "in_flight": SCHEMA_IN_FLIGHT,
        "value_bytes": len(json.dumps(SCHEMA_VALUE)),
        **found,
        # The target is judged on the worse of the two.
        "overhead": max(found["sequential"]["overhead"], found["concurrent"]["overhead"]),
        "errors": dict(errors),
    }


def schema_check_cost() -> dict[str, float]:
    """The definitions' check of one put alone (KeyRules.check_write: type, level, the
    schema), in-process: the part of a put's cost a schema adds, without the commit's noise."""
    from tierset.core.values import Level, SettingType
    from tierset.services.keydefs import KeyDefinition, KeyRules
    from tierset.store.definitions import DefinitionRow

    row = DefinitionRow(
        SCHEMA_KEYS[0], SettingType.JSON, "", json.dumps(SCHEMA), False, tuple(Level)
    )
    rules = KeyRules(1, {row.key: KeyDefinition(row)})
    value = json.dumps(SCHEMA_VALUE)
    rules.check_write(Level.GLOBAL, row.key, SettingType.JSON, value)  # compiles the schema
    runs = 2000
    started = time.perf_counter()
    for _ in range(runs):
        rules.check_write(Level.GLOBAL, row.key, SettingType.JSON, value)
    return {"check_us": round((time.perf_counter() - started) * 1e6 / runs, 1)}


async def profile(bench: Bench, target: str, workload: Workload) -> dict[str, Any]:
    """py-spy on the server while the load runs; the hottest functions by own time."""
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if spy is None:
        return {"error": "py-spy not installed"}
    out = RESULTS / f"profile-{target}.txt"
    async with TARGETS[target](bench) as running:
        if workload.primer:
            # Before the recorder starts: priming's misses are not the workload profiled.
            await prime(running, workload.primer)
            bench.primed.add((running.address, workload.name))
        recorder = launch(
            [
                spy,
                "record",
                "--pid",
                str(running.pids[0]),
                "--duration",
                str(int(bench.args.seconds + bench.args.warmup)),
                "--rate",
                "200",
                "--format",
                "raw",
                "--output",
                str(out),
                "--nonblocking",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        await drive(bench, workload, running)
        _, err = await output_of(recorder)
    if recorder.returncode or not out.exists():
        return {"error": err.decode(errors="replace").strip()[-300:]}
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in out.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        n = int(count)
        total += n
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n

    def share(counter: Counter[str]) -> list[tuple[str, float]]:
        return [(f, round(100 * c / total, 1)) for f, c in counter.most_common(15)]

    return {"samples": total, "own_percent": share(own), "inclusive_percent": share(inclusive)}


def load_etcd_protos(work: Path) -> Any:
    """Generates the etcd KV messages from bench/etcd_kv.proto into a temp dir."""
    out = work / "etcd_gen"
    out.mkdir()
    from grpc_tools import protoc

    if protoc.main(["protoc", f"-I{BENCH}", f"--python_out={out}", str(BENCH / "etcd_kv.proto")]):
        raise RuntimeError("protoc failed on bench/etcd_kv.proto")
    sys.path.insert(0, str(out))
    return importlib.import_module("etcd_kv_pb2")


def machine() -> dict[str, Any]:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "nproc": os.cpu_count(),
        "cores": cores(),
        "cpu": model,
        "python": platform.python_version(),
    }


async def main(args: argparse.Namespace) -> None:
    begun = time.monotonic()
    RESULTS.mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="tierset-bench-"))
    work.chmod(0o755)  # the embedded PostgreSQL may run as `postgres`
    bench = Bench(args, work)
    bench.etcd = load_etcd_protos(work)
    cluster = EmbeddedPostgres(work / "pg", free_port())
    PG_DATA.append(work / "pg")
    # A workload's own time, plus what starting its load client and the servers may take.
    per_workload = args.seconds + args.warmup + 60
    try:
        async with step("start PostgreSQL and seed", 300):
            admin = await asyncio.to_thread(cluster.start)
            bench.admin_dsn = admin
            print(f"seeding ({machine()['nproc']} cores, {machine()['cpu']}) ...", flush=True)
            # The databases one after another (CREATE DATABASE copies a template), their
            # data at once: the two million-row seeds overlap on two cores.
            seeds = {
                "main": seed_main,
                "size_10k": lambda dsn: seed_sized(dsn, 200),
                "size_1m": lambda dsn: seed_sized(dsn, 20_000),
                "history": seed_history,
                **{
                    name: (lambda dsn, count=count: seed_log(dsn, count))
                    for name, count in LOG_ROWS.items()
                },
            }
            for name in seeds:
                bench.databases[name] = await create_database(
                    admin, "bench" if name == "main" else name
                )
            seed_seconds: dict[str, float] = {}

            async def timed(name: str, seed: Callable[[str], Any]) -> int:
                began = time.monotonic()
                count = int(await seed(bench.databases[name]))
                seed_seconds[name] = round(time.monotonic() - began)
                return count

            counts = await asyncio.gather(*(timed(name, seed) for name, seed in seeds.items()))
            rows = dict(zip(seeds, counts, strict=True))
            print(f"seconds per database, seeded at once: {seed_seconds}", flush=True)
            for name, dsn in bench.databases.items():
                bench.tokens[name] = await make_token(dsn)
            print(f"seeded {rows} in {time.monotonic() - begun:.0f}s", flush=True)
            connection = await asyncpg.connect(admin)
            pg_version = await connection.fetchval("SHOW server_version")
            await connection.close()

        made = workloads(bench)
        wanted = [part for part in (args.only or "").split("|") if part]

        def only(name: str) -> bool:
            return not wanted or any(part in name for part in wanted)

        # First the interleaved rounds of the cached reads and the bare servers: the
        # cached-read target, and the table's rows for both.
        against_bare: dict[str, Any] = {}
        if any(only(cached) or only(reference) for cached, reference, _ in TARGET_WORKLOADS):
            per_round = PAIR_ROUND_SECONDS + PAIR_WARMUP_SECONDS + 30
            turns = 3 * len(TARGET_WORKLOADS) * TARGET_ROUNDS
            async with step("cached vs bare, interleaved", 120 + turns * per_round):
                against_bare = await measure_against_bare(bench, made)
        order: list[str] = []
        for w in made:
            if w.target not in order:
                order.append(w.target)
        for target in order:
            todo = [w for w in made if w.target == target and only(w.name) and not w.interleaved]
            if not todo:
                continue
            starter = TARGETS.get(target)
            async with (
                step(f"target {target}", 90 + per_workload * len(todo)),
                starter(bench) if starter else contextlib.nullcontext() as running,
            ):
                for workload in todo:
                    async with step(f"workload {workload.name}", per_workload):
                        result = await drive(bench, workload, running)
                    bench.results[workload.name] = result | {
                        "kind": workload.kind,
                        "baselines": workload.baselines,
                    }
                    print(
                        f"  {workload.name:<55} {result['rps']:>8.0f}/s"
                        f"  p50 {result['p50_ms']:6.2f} ms  p99 {result['p99_ms']:6.2f} ms",
                        flush=True,
                    )
        flat_pairs = [pair[1:3] for pair in targets.FLAT_PAIRS]
        if any(only(name) for pair in flat_pairs for name in pair):
            per_round = PAIR_ROUND_SECONDS + PAIR_WARMUP_SECONDS + 30
            async with step(
                "flat reads, 1M vs 10k rows, interleaved",
                120 + 2 * len(flat_pairs) * FLAT_ROUNDS * per_round,
            ):
                await measure_flat(bench, made, only)
        if only(VARIANTS_OF) or any(only(label) for label, _ in VARIANTS):
            workload = next(w for w in made if w.name == VARIANTS_OF)
            per_round = PAIR_ROUND_SECONDS + PAIR_WARMUP_SECONDS + 30
            async with step(
                "shipped server vs its variants, interleaved",
                120 + (1 + len(VARIANTS)) * PAIR_ROUNDS * per_round,
            ):
                await measure_variants(bench, workload)
        async with step("write -> visible propagation", 180):
            propagation = await measure_propagation(bench)
        fanout = []
        if only("fan-out"):
            for watchers in FANOUT_SIZES:
                # The opening is bounded (FANOUT_OPEN_SECONDS); the rest is the write, a
                # wait of at most 60 s for it to arrive, and stopping the server. A size that
                # still runs out of time is reported as such, and the bench goes on.
                seconds = 180 if watchers <= 1000 else 300
                try:
                    async with step(f"fan-out {watchers} watchers", seconds):
                        fanout.append(await measure_fanout(bench, watchers))
                except StepTimeout as error:
                    fanout.append({"watchers": watchers, "error": str(error)})
                print("  " + report.fanout_line(fanout[-1]), flush=True)
        changesets: dict[str, Any] = {}
        if only("changeset"):
            seconds = 2 * CHANGESET_ROUNDS * CHANGESET_SECONDS + 180
            async with step("changesets: 1,000-put latency, 10-put vs raw SQL", seconds):
                changesets = await measure_changesets(bench)
            print("  " + report.changeset_line(changesets), flush=True)
        schema_cost: dict[str, Any] = {}
        if only("schema"):
            async with step("put with a JSON Schema against one without", 240):
                schema_cost = await measure_schema_cost(bench)
            print("  " + report.schema_line(schema_cost), flush=True)
        async with step("per-call costs", 120):
            costs = await per_call_costs()
        view: dict[str, Any] = {}
        if only("view"):
            async with step(
                "client view: reads from memory, write -> view", 120 + 3 * per_workload
            ):
                view = await measure_view(bench, made)
        profiles = {}
        if args.profile:
            one_key = next(w for w in made if w.name == "GetSettings 1 key retailer, cached")
            for target in ("tierset", "tierset-uncached"):
                async with step(f"profile {target}", 90 + per_workload):
                    profiles[target] = await profile(bench, target, one_key)
            # The gateway's own process (the gRPC server behind it is not sampled).
            rest = next(w for w in made if w.name == "REST GET 1 key retailer")
            async with step("profile gateway", 90 + per_workload):
                profiles["gateway"] = await profile(bench, "gateway", rest)
    except StepTimeout as error:
        print(f"\nFAILED: {error}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None
    finally:
        for child in list(CHILDREN):  # a step that failed may have left its helpers running
            child.kill()
        cluster.stop()
        shutil.rmtree(work, ignore_errors=True)
    elapsed = time.monotonic() - begun
    print(f"\nbench took {elapsed:.0f}s", flush=True)
    measured = {
        "concurrency": CONCURRENCY,
        "results": bench.results,
        "propagation": propagation,
        "client_view": view,
        "per_call_costs": costs,
        "cached_vs_bare": against_bare,
        "watch_fanout": fanout,
        "changesets": changesets,
        "schema_cost": schema_cost,
        "profiles": profiles,
        "step_seconds": STEP_SECONDS,
        "elapsed_seconds": elapsed,
    }
    info = machine() | {
        "postgresql": pg_version,
        "seconds_per_workload": args.seconds,
        "concurrency": CONCURRENCY,
        "client_processes": args.client_processes,
        "load_average": " ".join(f"{n:.1f}" for n in os.getloadavg()),
    }
    report.publish(measured, info, RESULTS, partial=bool(wanted))


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measured time per workload")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured time before it")
    parser.add_argument(
        "--client-processes", type=int, default=2, help="load client processes sharing the 64"
    )
    parser.add_argument("--no-profile", dest="profile", action="store_false")
    parser.add_argument(
        "--only", help="run only workloads whose name contains this (or one of A|B|...)"
    )
    return parser.parse_args()


if __name__ == "__main__":
    uvloop.run(main(arguments()))
