"""`make bench` says what the machine was doing while each workload ran
(bench/conditions.py): the host's steal and I/O wait, and a sampling profile of where
PostgreSQL's backends were. A slow figure with the server idle is then explained by its
own row, not guessed at afterwards."""

from __future__ import annotations

import asyncio
import importlib
import uuid

import asyncpg
import pytest

from tests.conftest import free_port


@pytest.fixture(scope="module")
def conditions(bench_path):
    return importlib.import_module("conditions")


def test_steal_and_iowait_are_shares_of_all_the_cpu_time_between_two_reads(conditions):
    # user nice system idle iowait irq softirq steal
    before = [100, 0, 50, 800, 10, 0, 0, 40]
    after = [160, 0, 70, 900, 30, 0, 0, 140]
    assert conditions.host_shares(before, after) == {
        "steal": pytest.approx(100 / 300),
        "iowait": pytest.approx(20 / 300),
    }


async def test_a_window_samples_where_postgresqls_backends_wait(conditions, admin_dsn):
    sleeper = await asyncpg.connect(admin_dsn)
    try:
        async with conditions.Conditions(admin_dsn) as window:
            await sleeper.execute("SELECT pg_sleep(0.6)")
        found = window.figures()
    finally:
        await sleeper.close()
    assert found["pg"]["looks"] >= 3
    # Other tests' backends may be active too; the sleeper is in every look.
    assert found["pg"]["states"]["Timeout:PgSleep"] > 0
    assert found["pg"]["active_backends"] >= 1
    assert 0 <= found["host"]["steal"] <= 1 and 0 <= found["host"]["iowait"] <= 1


async def test_a_window_without_a_database_still_reports_the_host(conditions):
    # Nothing listens on the port, and no DSN at all: the host's figures, no profile.
    for dsn in (f"postgresql://nobody@127.0.0.1:{free_port()}/x", None):
        async with conditions.Conditions(dsn) as window:
            await asyncio.sleep(0.05)
        found = window.figures()
        assert found["pg"] == {"looks": 0, "active_backends": 0.0, "states": {}}
        assert set(found["host"]) == {"steal", "iowait"}


def test_rounds_pool_their_looks(conditions):
    one = {
        "host": {"steal": 0.1, "iowait": 0.0},
        "pg": {"looks": 10, "active_backends": 2.0, "states": {"CPU": 0.5, "IO:WALSync": 0.5}},
    }
    other = {
        "host": {"steal": 0.3, "iowait": 0.2},
        "pg": {"looks": 10, "active_backends": 1.0, "states": {"CPU": 1.0}},
    }
    found = conditions.merged([one, other])
    assert found["host"] == {"steal": pytest.approx(0.2), "iowait": pytest.approx(0.1)}
    assert found["pg"]["looks"] == 20
    assert found["pg"]["active_backends"] == pytest.approx(1.5)
    # 10 + 10 busy looks on CPU, 10 in WALSync: by backends, not by rounds.
    assert found["pg"]["states"] == {
        "CPU": pytest.approx(2 / 3),
        "IO:WALSync": pytest.approx(1 / 3),
    }


def test_the_report_names_the_waits_of_workloads_that_kept_postgresql_busy(report):
    busy = {
        "rps": 100.0,
        "p50_ms": 200.0,
        "p99_ms": 2000.0,
        "client_cpu_cores": 0.04,
        "server_cpu_cores": 0.09,
        "errors": {},
        "kind": "tierset",
        "baselines": [],
        "host": {"steal": 0.42, "iowait": 0.03},
        "pg": {"looks": 50, "active_backends": 8.0, "states": {"LWLock:WALWrite": 0.9, "CPU": 0.1}},
    }
    idle = busy | {"pg": {"looks": 50, "active_backends": 0.1, "states": {"CPU": 1.0}}}
    results = {"slow read": busy, "cached read": idle}
    lines = report.database_lines(results)
    assert lines[1:] == [
        "  slow read: steal 42%, iowait 3%; PostgreSQL 8.0 active: LWLock:WALWrite 90%, CPU 10%"
    ]
    (row,) = [line for line in report.workload_table(results) if line.startswith("slow read")]
    assert "  42%     3%" in row


async def test_prewarm_reads_every_table_and_index_of_the_database(bench, admin_dsn):
    name = f"bench_prewarm_{uuid.uuid4().hex[:8]}"
    dsn = await bench.create_database(admin_dsn, name)
    try:
        blocks = await bench.prewarm(dsn)
        admin = await asyncpg.connect(dsn)
        try:
            relations = await admin.fetch(
                "SELECT relname, pg_relation_size(oid) / 8192 AS blocks FROM pg_class"
                " WHERE relnamespace = current_schema()::regnamespace AND relkind IN ('r', 'i')"
            )
        finally:
            await admin.close()
        # Every table and index of the schema, each read to its last block.
        assert blocks == {r["relname"]: r["blocks"] for r in relations}
        assert "settings" in blocks and "change_log_setting_revision" in blocks
    finally:
        admin = await asyncpg.connect(admin_dsn)
        try:
            await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        finally:
            await admin.close()
