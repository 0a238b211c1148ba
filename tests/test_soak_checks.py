"""The soak's checks can fail: fabricated histories with one thing lost, duplicated or out of
order are counted, and a real run whose database is tampered with behind its back fails.

Without these, a report of zeros could mean a checker that never looks."""

from __future__ import annotations

import pytest

from tierset.cli.soak import checks, run
from tierset.cli.soak.records import ACKED, UNCERTAIN, LogRow, Op, Read, Records, WatchLog

ACCOUNT = ("account", 1)
RETAILER = ("retailer", 2)
PARENTS = {RETAILER: ACCOUNT}
A = ("account", 1, "SOAK.K")
R = ("retailer", 2, "SOAK.K")

# A history: put a1 (rev 1), put r1 at the retailer (rev 2), put a2 (rev 3), delete r1
# (rev 4: the retailer inherits a2 again).
OPS = [
    Op(A, "put", "a1", "grpc", 1.0, 1.1, ACKED),
    Op(R, "put", "r1", "grpc", 2.0, 2.1, ACKED),
    Op(A, "put", "a2", "rest", 3.0, 3.1, ACKED),
    Op(R, "delete", "r1", "grpc", 4.0, 4.1, ACKED),
]
LOG = [
    LogRow(1, 0, A, "PUT", None, "a1"),
    LogRow(2, 0, R, "PUT", None, "r1"),
    LogRow(3, 0, A, "PUT", "a1", "a2"),
    LogRow(4, 0, R, "DELETE", "r1", None),
]
FINAL = {A: "a2"}
# What a watcher of the retailer must receive: the snapshot at 0, then r1, (a2 is shadowed
# by r1 at revision 3: no event), then a2 inherited at 4.
RETAILER_STREAM = [
    ("SNAPSHOT", 0, {}),
    ("EVENTS", 1, {"SOAK.K": "a1"}),
    ("EVENTS", 2, {"SOAK.K": "r1"}),
    ("EVENTS", 4, {"SOAK.K": "a2"}),
    ("PROGRESS", 5, {}),
]


def _records(ops=OPS) -> Records:
    return Records(ops=list(ops))


def _watch(messages) -> dict[str, int]:
    log = WatchLog("w", RETAILER, "SOAK.", messages=list(messages))
    return checks.watch_stream(log, checks.Timeline(LOG, RETAILER, "SOAK.", PARENTS), 5)


def test_a_faithful_history_counts_nothing():
    assert checks.writes_missing(_records(), FINAL) == 0
    assert checks.log_rows(_records(), LOG) == (0, 0, 0)
    assert _watch(RETAILER_STREAM) == dict.fromkeys(
        ("missed", "duplicated", "out_of_order", "unknown"), 0
    )


@pytest.mark.parametrize(
    ("messages", "counted"),
    [
        pytest.param(RETAILER_STREAM[:2] + RETAILER_STREAM[3:], "missed", id="missed-event"),
        pytest.param(RETAILER_STREAM[:3], "missed", id="never-reached-the-end"),
        pytest.param(
            [("SNAPSHOT", 2, {"SOAK.K": "a1"}), *RETAILER_STREAM[3:]], "missed", id="bad-snapshot"
        ),
        pytest.param(
            [*RETAILER_STREAM[:3], RETAILER_STREAM[2], *RETAILER_STREAM[3:]],
            "duplicated",
            id="replayed-revision",
        ),
        pytest.param(
            [RETAILER_STREAM[0], RETAILER_STREAM[2], RETAILER_STREAM[1], *RETAILER_STREAM[3:]],
            "out_of_order",
            id="out-of-order",
        ),
        pytest.param(
            [*RETAILER_STREAM[:3], ("EVENTS", 3, {"SOAK.K": "a2"}), *RETAILER_STREAM[3:]],
            "unknown",
            id="shadowed-change-leaked",
        ),
    ],
)
def test_a_watch_stream_that_lost_duplicated_or_reordered_is_counted(messages, counted):
    counts = _watch(messages)
    assert counts[counted] > 0, counts


@pytest.mark.parametrize(
    ("log", "index"),
    [
        pytest.param(LOG[:2] + LOG[3:], 0, id="row-missing"),
        pytest.param([*LOG, LogRow(5, 0, A, "PUT", "a2", "a2")], 1, id="row-duplicated"),
        pytest.param([*LOG, LogRow(5, 0, A, "PUT", "a2", "zz")], 2, id="row-nobody-wrote"),
    ],
)
def test_log_rows_missing_duplicated_or_unknown_are_counted(log, index):
    assert checks.log_rows(_records(), log)[index] > 0


def test_an_acknowledged_write_missing_from_the_final_state_is_counted():
    assert checks.writes_missing(_records(), {A: "a1"}) == 1
    assert checks.writes_missing(_records(), {}) == 1
    # An unacknowledged write after the last acknowledged one may or may not have landed.
    maybe = [*OPS, Op(A, "put", "a3", "grpc", 5.0, 5.1, UNCERTAIN)]
    assert checks.writes_missing(_records(maybe), {A: "a3"}) == 0
    assert checks.writes_missing(_records(maybe), {A: "a2"}) == 0


def test_a_changeset_partly_logged_is_counted():
    ops = [
        Op(A, "put", "c1", "changeset", 1.0, 1.1, ACKED, changeset=1),
        Op(R, "put", "c2", "changeset", 1.0, 1.1, ACKED, changeset=1),
    ]
    whole = [LogRow(1, 0, A, "PUT", None, "c1"), LogRow(1, 1, R, "PUT", None, "c2")]
    assert checks.changesets_partial(_records(ops), whole) == 0
    assert checks.changesets_partial(_records(ops), whole[:1]) == 1
    split = [whole[0], LogRow(2, 0, R, "PUT", None, "c2")]
    assert checks.changesets_partial(_records(ops), split) == 1


@pytest.mark.parametrize(
    ("seen", "started", "ok"),
    [
        pytest.param(("account", "a2"), 10.0, True, id="current"),
        pytest.param(("account", "a1"), 3.5, True, id="a1-while-a2-in-flight"),
        pytest.param(("account", "a1"), 10.0, False, id="stale"),
        pytest.param(("account", "zz"), 10.0, False, id="never-written"),
        pytest.param(("retailer", "r1"), 10.0, False, id="deleted-override"),
        pytest.param(None, 10.0, False, id="nothing"),
    ],
)
def test_wrong_reads_are_counted(seen, started, ok):
    records = _records()
    records.reads.append(Read(RETAILER, started, ("SOAK.K",), {"SOAK.K": seen}, "grpc"))
    assert checks.wrong_reads(records, PARENTS, grace=0.5) == (0 if ok else 1)


async def test_a_run_whose_database_lost_a_row_behind_its_back_fails(soak_cluster):
    async def tamper(cluster, account, retailer):
        # One acknowledged change vanishes from the log, one value from the settings.
        await cluster.fetch(
            "DELETE FROM change_log WHERE (revision, seq) = (SELECT revision, seq FROM"
            " change_log WHERE owner_account_id = $1 ORDER BY revision LIMIT 1)",
            account[1],
        )
        await cluster.fetch(
            "DELETE FROM settings WHERE id = (SELECT id FROM settings WHERE account_id = $1"
            " ORDER BY id LIMIT 1)",
            account[1],
        )

    result = await run.run(soak_cluster, run.Spec((), 2.0, 2, 0.5), tamper=tamper)

    assert not result.ok
    for check in (
        "acknowledged writes missing",
        "log rows missing (acknowledged changes)",
        "client views differing from the database",
    ):
        assert result.failures[check] > 0, result.failures
