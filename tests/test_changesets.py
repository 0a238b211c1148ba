"""Changesets (issue 14): ApplyChanges applies puts, deletes, locks and unlocks across GLOBAL
and one account's levels and scopes all or nothing, in one transaction with one revision
and one reason; a failure names its index and writes nothing; a dry run writes nothing
and answers what would happen; the read cache and Watch see one revision."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from tests.helpers import define_key, error_info, field_violations, until_waiting_for_locks
from tests.watching import Response, watching
from tierset.core.authz import Role
from tierset.v1 import settings_pb2 as pb

PUT, DELETE = pb.CHANGE_OPERATION_PUT, pb.CHANGE_OPERATION_DELETE
LOCK, UNLOCK = pb.CHANGE_OPERATION_LOCK, pb.CHANGE_OPERATION_UNLOCK


def put(key: str, n: int, scope: pb.Scope | None = None, **fields) -> pb.SettingChange:
    change = pb.SettingChange(
        operation=PUT, key=key, type=pb.SETTING_TYPE_INTEGER, value=pb.SettingValue(integer_value=n)
    )
    if scope is not None:
        change.scope.CopyFrom(scope)
    for name, value in fields.items():
        setattr(change, name, value)
    return change


def other(operation: int, key: str, scope: pb.Scope | None = None, **fields) -> pb.SettingChange:
    change = pb.SettingChange(operation=operation, key=key, **fields)
    if scope is not None:
        change.scope.CopyFrom(scope)
    return change


def single_put(stub, scope: pb.Scope, key: str, n: int):
    """PutSetting of an INTEGER (a single write, outside any changeset)."""
    return stub.PutSetting(
        pb.PutSettingRequest(
            scope=scope,
            key=key,
            type=pb.SETTING_TYPE_INTEGER,
            value=pb.SettingValue(integer_value=n),
        )
    )


async def _refusal(call) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value


async def _state(db) -> tuple[int, int, int]:
    """(revision, settings rows, log rows): what a refused changeset must leave alone."""
    row = await db.fetchrow(
        "SELECT (SELECT revision FROM revision_counter) AS r, (SELECT count(*) FROM settings) AS s,"
        " (SELECT count(*) FROM change_log) AS c"
    )
    return row["r"], row["s"], row["c"]


@pytest.fixture
async def family(new_account, new_retailer):
    account = await new_account()
    return pb.Scope(account_id=account), pb.Scope(retailer_id=await new_retailer(account))


async def test_a_two_key_changeset_is_one_revision_in_list_changes(
    settings_stub, family, unique_key
):
    account, retailer = family
    provider, secret = unique_key(), unique_key()

    applied = await settings_stub.ApplyChanges(
        pb.ApplyChangesRequest(
            changes=[put(provider, 1, account), put(secret, 2, retailer), put(provider, 3)],
            reason="switch provider",
        )
    )
    listed = await settings_stub.ListChanges(
        pb.ListChangesRequest(min_revision=applied.revision, max_revision=applied.revision)
    )

    assert applied.revision > 0
    assert [r.outcome for r in applied.results] == [pb.CHANGE_OUTCOME_CREATED] * 3
    assert [(c.revision, c.sequence, c.key) for c in listed.changes] == [
        (applied.revision, 0, provider),
        (applied.revision, 1, secret),
        (applied.revision, 2, provider),
    ]
    assert {c.reason for c in listed.changes} == {"switch provider"}


# The checks a single put passes hold inside a changeset too: versions, locks, the value,
# the scope, one type per key and the key's definition (its schema, its levels).
FAILURES = [
    "stale version",
    "locked",
    "bad value",
    "unknown retailer",
    "other type",
    "schema",
    "level not allowed",
]


@pytest.mark.parametrize("failure", FAILURES)
@pytest.mark.parametrize("position", range(4))
async def test_a_failing_change_at_any_index_writes_nothing(
    settings_stub, db, family, unique_key, position, failure
):
    account, retailer = family
    existing, locked, defined = unique_key(), unique_key(), unique_key()
    await settings_stub.ApplyChanges(
        pb.ApplyChangesRequest(
            changes=[put(existing, 1, account), put(locked, 1), other(LOCK, locked)]
        )
    )
    await define_key(
        settings_stub,
        defined,
        schema={"type": "integer", "maximum": 10},
        levels=(pb.SETTING_LEVEL_GLOBAL, pb.SETTING_LEVEL_ACCOUNT),
    )
    changes = [
        put(unique_key(), 1, account),
        put(existing, 2, account, expected_version=1),
        put(unique_key(), 3, retailer),
        other(DELETE, unique_key(), retailer),
    ]
    if failure == "stale version":
        bad = put(existing, 9, account, expected_version=7)
        changes[1] = put(unique_key(), 2, account)  # the good change on `existing` moves away
    elif failure == "locked":
        bad = put(locked, 9, retailer)
    elif failure == "bad value":
        bad = pb.SettingChange(
            operation=PUT,
            key=unique_key(),
            type=pb.SETTING_TYPE_INTEGER,
            value=pb.SettingValue(string_value="lots"),
            scope=account,
        )
    elif failure == "other type":
        bad = pb.SettingChange(
            operation=PUT,
            key=existing,
            type=pb.SETTING_TYPE_STRING,
            value=pb.SettingValue(string_value="lots"),
            scope=retailer,
        )
        changes[1] = put(unique_key(), 2, account)
    elif failure == "schema":
        bad = put(defined, 11, account)
    elif failure == "level not allowed":
        bad = put(defined, 5, retailer)
    else:
        bad = put(unique_key(), 1, pb.Scope(retailer_id=2**62))
    changes[position] = bad
    before = await _state(db)

    error = await _refusal(settings_stub.ApplyChanges(pb.ApplyChangesRequest(changes=changes)))

    assert await _state(db) == before
    info = error_info(error)
    assert info.metadata["index"] == str(position)
    assert error.details().startswith(f"changes[{position}]")
    expected = {
        "stale version": (grpc.StatusCode.ABORTED, "VERSION_MISMATCH"),
        "locked": (grpc.StatusCode.FAILED_PRECONDITION, "KEY_LOCKED"),
        "bad value": (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT"),
        "unknown retailer": (grpc.StatusCode.NOT_FOUND, "RETAILER_NOT_FOUND"),
        "other type": (grpc.StatusCode.FAILED_PRECONDITION, "TYPE_MISMATCH"),
        "schema": (grpc.StatusCode.INVALID_ARGUMENT, "SCHEMA_VIOLATION"),
        "level not allowed": (grpc.StatusCode.FAILED_PRECONDITION, "LEVEL_NOT_ALLOWED"),
    }[failure]
    assert (error.code(), info.reason) == expected
    if failure == "bad value":
        assert all(f.startswith(f"changes[{position}].") for f in field_violations(error))


async def test_expected_versions_are_checked_as_the_changeset_goes(
    settings_stub, db, family, unique_key
):
    account, retailer = family
    key, lockable = unique_key(), unique_key()
    await settings_stub.ApplyChanges(
        pb.ApplyChangesRequest(changes=[put(key, 1, account), put(lockable, 1, account)])
    )

    applied = await settings_stub.ApplyChanges(
        pb.ApplyChangesRequest(
            changes=[
                put(key, 2, account, expected_version=1),
                put(key, 3, retailer, expected_version=0),
                other(LOCK, lockable, account, expected_version=1),
            ]
        )
    )
    stale = await _refusal(
        settings_stub.ApplyChanges(
            pb.ApplyChangesRequest(
                changes=[
                    put(unique_key(), 1, account),
                    other(DELETE, key, account, expected_version=1),
                ]
            )
        )
    )

    assert [(r.outcome, r.version) for r in applied.results] == [
        (pb.CHANGE_OUTCOME_UPDATED, 2),
        (pb.CHANGE_OUTCOME_CREATED, 1),
        (pb.CHANGE_OUTCOME_LOCKED, 1),
    ]
    assert stale.code() is grpc.StatusCode.ABORTED
    assert error_info(stale).metadata == {"key": key, "current_version": "2", "index": "1"}


async def test_unchanged_changes_spend_no_revision(settings_stub, db, family, unique_key):
    account, _ = family
    key = unique_key()
    first = await settings_stub.ApplyChanges(pb.ApplyChangesRequest(changes=[put(key, 1, account)]))
    before = await _state(db)

    again = await settings_stub.ApplyChanges(
        pb.ApplyChangesRequest(changes=[put(key, 1, account), other(DELETE, unique_key(), account)])
    )

    assert first.revision > 0 and again.revision == 0
    assert [r.outcome for r in again.results] == [pb.CHANGE_OUTCOME_UNCHANGED] * 2
    assert await _state(db) == before


async def test_a_dry_run_writes_nothing_and_answers_before_and_after(
    settings_stub, db, new_account, new_retailer, unique_key
):
    account_id = await new_account()
    retailers = [await new_retailer(account_id) for _ in range(2)]
    account, first, second = (
        pb.Scope(account_id=account_id),
        pb.Scope(retailer_id=retailers[0]),
        pb.Scope(retailer_id=retailers[1]),
    )
    key = unique_key()
    await settings_stub.ApplyChanges(
        pb.ApplyChangesRequest(changes=[put(key, 1), put(key, 7, second)])
    )
    before = await _state(db)

    dry = await settings_stub.ApplyChanges(
        pb.ApplyChangesRequest(changes=[put(key, 2, account), put(key, 7, second)], dry_run=True)
    )

    assert await _state(db) == before
    assert dry.revision == 0
    assert [r.outcome for r in dry.results] == [
        pb.CHANGE_OUTCOME_CREATED,
        pb.CHANGE_OUTCOME_UNCHANGED,
    ]
    effects = {
        (e.scope.WhichOneof("kind"), getattr(e.scope, e.scope.WhichOneof("kind"))): (
            (e.before.level, e.before.value.integer_value),
            (e.after.level, e.after.value.integer_value),
        )
        for e in dry.effects
    }
    assert effects == {
        ("account_id", account_id): ((pb.SETTING_LEVEL_GLOBAL, 1), (pb.SETTING_LEVEL_ACCOUNT, 2)),
        ("retailer_id", retailers[0]): (
            (pb.SETTING_LEVEL_GLOBAL, 1),
            (pb.SETTING_LEVEL_ACCOUNT, 2),
        ),
    }  # the second retailer keeps its own 7: no effect
    assert not dry.effects_truncated
    assert first.retailer_id == retailers[0]


async def test_a_dry_run_of_a_lock_shows_the_overrides_it_removes(
    settings_stub, db, family, unique_key
):
    _, retailer = family
    key = unique_key()
    await settings_stub.ApplyChanges(
        pb.ApplyChangesRequest(changes=[put(key, 1), put(key, 5, retailer)])
    )

    dry = await settings_stub.ApplyChanges(
        pb.ApplyChangesRequest(changes=[other(LOCK, key, remove_overrides=True)], dry_run=True)
    )

    assert dry.results[0].outcome == pb.CHANGE_OUTCOME_LOCKED
    assert [s.retailer_id for s in dry.results[0].removed_overrides] == [retailer.retailer_id]
    [effect] = dry.effects
    assert effect.scope.retailer_id == retailer.retailer_id
    assert (effect.before.value.integer_value, effect.after.value.integer_value) == (5, 1)
    locked = await db.fetchval(
        "SELECT lock_revision FROM settings WHERE key = $1 AND level = 'GLOBAL'", key
    )
    assert locked is None


@pytest.mark.parametrize(("count", "accepted"), [(1000, True), (1001, False)])
async def test_a_thousand_changes_are_accepted_and_one_more_refused(
    settings_stub, db, family, unique_key, count, accepted
):
    account, _ = family
    prefix = unique_key() + "."
    request = pb.ApplyChangesRequest(
        changes=[put(f"{prefix}{i}", i, account) for i in range(count)]
    )

    if accepted:
        applied = await settings_stub.ApplyChanges(request)
        rows = await db.fetch(
            "SELECT DISTINCT revision FROM change_log WHERE key LIKE $1", prefix + "%"
        )
        assert [r["revision"] for r in rows] == [applied.revision]
        assert len(applied.results) == count
        return
    before = await _state(db)
    error = await _refusal(settings_stub.ApplyChanges(request))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "at most 1,000" in error.details()
    assert await _state(db) == before


async def test_a_changeset_spans_one_account(settings_stub, make_caller, new_account, unique_key):
    own, other_account = await new_account(), await new_account()
    key = unique_key()

    spanning = await _refusal(
        settings_stub.ApplyChanges(
            pb.ApplyChangesRequest(
                changes=[
                    put(key, 1, pb.Scope(account_id=own)),
                    put(key, 1, pb.Scope(account_id=other_account)),
                ]
            )
        )
    )
    twice = await _refusal(
        settings_stub.ApplyChanges(
            pb.ApplyChangesRequest(changes=[put(key, 1), other(DELETE, key)])
        )
    )

    assert spanning.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(spanning).metadata["index"] == "1"
    assert twice.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(twice).metadata["index"] == "1"


async def test_a_changeset_can_create_and_lock_a_global_value(settings_stub, family, unique_key):
    account, _ = family
    key = unique_key()

    applied = await settings_stub.ApplyChanges(
        pb.ApplyChangesRequest(changes=[put(key, 1), other(LOCK, key)])
    )
    refused = await _refusal(single_put(settings_stub, account, key, 2))

    assert [r.outcome for r in applied.results] == [
        pb.CHANGE_OUTCOME_CREATED,
        pb.CHANGE_OUTCOME_LOCKED,
    ]
    assert error_info(refused).metadata["lock_revision"] == str(applied.revision)


async def test_a_single_put_waiting_for_the_counter_sees_a_lock_committed_meanwhile(
    settings_stub, db, family, unique_key
):
    """A GLOBAL value created and locked by a changeset while an ACCOUNT put of the same key
    waits for the revision counter: the put's own snapshot predates the GLOBAL row, and
    still it is refused (the lock check takes a fresh snapshot after the counter)."""
    account, _ = family
    for _ in range(10):
        key = unique_key()
        async with db.acquire() as holder, holder.transaction():
            # Locked, not updated: waiters then queue on this row version in order (an
            # update would send each to the new version, racing, when it commits).
            await holder.execute("SELECT 1 FROM revision_counter WHERE only_row FOR UPDATE")
            # The changeset and the put both queue behind the held counter, changeset first.
            changeset = asyncio.ensure_future(
                settings_stub.ApplyChanges(
                    pb.ApplyChangesRequest(changes=[put(key, 1), other(LOCK, key)])
                )
            )
            await until_waiting_for_locks(db, 1)
            single = asyncio.ensure_future(single_put(settings_stub, account, key, 2))
            await until_waiting_for_locks(db, 2)
        await changeset
        error = await _refusal(single)
        assert error_info(error).reason == "KEY_LOCKED"


async def test_changesets_racing_single_writes_keep_revisions_in_commit_order(
    settings_stub, db, family, unique_key
):
    account, retailer = family
    key = unique_key()
    start = (await _state(db))[0]

    async def single(n: int):
        return await single_put(settings_stub, account, key, n)

    async def changeset(n: int):
        return await settings_stub.ApplyChanges(
            pb.ApplyChangesRequest(changes=[put(key, 1000 + n, account), put(key, n, retailer)])
        )

    done = await asyncio.gather(*(single(n) if n % 2 else changeset(n) for n in range(30)))

    rows = await db.fetch(
        "SELECT revision, seq, level::text, new_version FROM change_log"
        " WHERE revision > $1 AND key = $2 ORDER BY revision, seq",
        start,
        key,
    )
    revisions = sorted({r["revision"] for r in rows})
    assert revisions == sorted(d.revision for d in done)  # one revision per call, no extra
    account_versions = [r["new_version"] for r in rows if r["level"] == "ACCOUNT"]
    assert account_versions == list(range(1, 31))  # versions grow with revision: commit order
    for d in done:
        if isinstance(d, pb.ApplyChangesResponse):
            assert [r["seq"] for r in rows if r["revision"] == d.revision] == [0, 1]


async def test_watch_sees_a_changeset_as_one_message_at_its_revision(
    settings_stub, family, unique_key
):
    account, retailer = family
    first, second = unique_key(), unique_key()
    async with watching(settings_stub, scope=retailer, keys=[first, second]) as stream:
        snapshot = await stream.next()
        assert snapshot.kind == Response.KIND_SNAPSHOT

        applied = await settings_stub.ApplyChanges(
            pb.ApplyChangesRequest(
                changes=[put(first, 1, account), put(second, 2, retailer), put(first, 3)]
            )
        )
        message = await stream.next()
        locked = await settings_stub.ApplyChanges(
            pb.ApplyChangesRequest(changes=[other(LOCK, first, account)])
        )
        after = await settings_stub.ApplyChanges(
            pb.ApplyChangesRequest(changes=[put(second, 4, retailer)])
        )
        lock = await stream.next()
        following = await stream.next()

    assert (message.kind, message.revision) == (Response.KIND_EVENTS, applied.revision)
    assert [(e.key, e.setting.value.integer_value) for e in message.events] == sorted(
        [(first, 1), (second, 2)]
    )
    # The lock changed no value, but the retailer hears it (the ACCOUNT value it inherits).
    assert lock.revision == locked.revision
    assert [(e.key, e.setting.lock.revision, e.previous.HasField("lock")) for e in lock.events] == [
        (first, locked.revision, False)
    ]
    assert after.revision == following.revision


async def test_the_read_cache_sees_a_changeset(settings_stub, family, unique_key):
    account, retailer = family
    key = unique_key()
    await settings_stub.ApplyChanges(pb.ApplyChangesRequest(changes=[put(key, 1, account)]))
    read = pb.GetSettingsRequest(scope=retailer, keys=[key])
    assert (await settings_stub.GetSettings(read)).settings[0].value.integer_value == 1

    await settings_stub.ApplyChanges(
        pb.ApplyChangesRequest(changes=[put(key, 2, account), other(LOCK, key, account)])
    )
    again = (await settings_stub.GetSettings(read)).settings[0]

    assert again.value.integer_value == 2 and again.HasField("lock")


@pytest.mark.parametrize(
    ("role", "target", "expected"),
    [
        (Role.ADMIN, "own", grpc.StatusCode.OK),
        (Role.ADMIN, "other", grpc.StatusCode.PERMISSION_DENIED),
        (Role.ADMIN, "global", grpc.StatusCode.PERMISSION_DENIED),
        (Role.VIEWER, "own", grpc.StatusCode.PERMISSION_DENIED),
        (Role.PLATFORM, "other", grpc.StatusCode.OK),
        (Role.PLATFORM, "global", grpc.StatusCode.OK),
    ],
)
async def test_who_may_apply_a_changeset(
    settings_stub, db, make_caller, new_account, new_retailer, unique_key, role, target, expected
):
    own, other_account = await new_account(), await new_account()
    caller = await make_caller(role, account_id=own)
    key = unique_key()
    scope = {
        "own": pb.Scope(retailer_id=await new_retailer(own)),
        "other": pb.Scope(retailer_id=await new_retailer(other_account)),
        "global": None,
    }[target]
    changes = [put(unique_key(), 1, pb.Scope(account_id=own)), put(key, 1, scope)]
    if target == "other":
        changes = changes[1:]
    before = await _state(db)

    try:
        await settings_stub.ApplyChanges(
            pb.ApplyChangesRequest(changes=changes), metadata=caller.metadata
        )
        code = grpc.StatusCode.OK
    except grpc.aio.AioRpcError as error:
        code = error.code()

    assert code == expected
    if code is not grpc.StatusCode.OK:
        assert await _state(db) == before
