"""The history RPCs through gRPC: deletes, listings, explanations, the log, restores, past reads.

Against the session server over a real channel (compaction against a server and a
database of the test's own: it would cut the session's history). Each level set is a
value naming its level, so an answer says where it came from.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import uuid

import asyncpg
import grpc
import pytest

from tests.conftest import make_caller_in, open_channel
from tests.helpers import error_info, field_violations
from tests.test_cli import tierset
from tierset.core.authz import Role
from tierset.store.migrate import migrate
from tierset.v1 import settings_pb2, settings_pb2_grpc

LEVELS = ("GLOBAL", "ACCOUNT", "RETAILER")
COMBINATIONS = [frozenset(c) for n in (1, 2, 3) for c in itertools.combinations(LEVELS, n)]
PROTO_LEVEL = {
    "GLOBAL": settings_pb2.SETTING_LEVEL_GLOBAL,
    "ACCOUNT": settings_pb2.SETTING_LEVEL_ACCOUNT,
    "RETAILER": settings_pb2.SETTING_LEVEL_RETAILER,
}


def _name(levels) -> str:
    return "+".join(level for level in LEVELS if level in levels)


@dataclasses.dataclass
class Tree:
    account: int
    retailer: int

    def scope(self, level: str) -> settings_pb2.Scope | None:
        if level == "ACCOUNT":
            return settings_pb2.Scope(account_id=self.account)
        if level == "RETAILER":
            return settings_pb2.Scope(retailer_id=self.retailer)
        return None


@pytest.fixture
async def tree(new_account, new_retailer) -> Tree:
    account = await new_account()
    return Tree(account, await new_retailer(account))


def _string(text: str) -> settings_pb2.SettingValue:
    return settings_pb2.SettingValue(string_value=text)


async def _set(stub, tree: Tree, level: str, key: str, text: str, metadata=(), reason=""):
    if level == "GLOBAL":
        return await stub.SetGlobal(
            settings_pb2.SetGlobalRequest(
                key=key, type=settings_pb2.SETTING_TYPE_STRING, value=_string(text), reason=reason
            ),
            metadata=metadata,
        )
    return await stub.PutSetting(
        settings_pb2.PutSettingRequest(
            scope=tree.scope(level),
            key=key,
            type=settings_pb2.SETTING_TYPE_STRING,
            value=_string(text),
            reason=reason,
        ),
        metadata=metadata,
    )


async def _delete(stub, tree: Tree, level: str, key: str, metadata=(), **fields):
    if level == "GLOBAL":
        return await stub.DeleteGlobal(
            settings_pb2.DeleteGlobalRequest(key=key, **fields), metadata=metadata
        )
    return await stub.DeleteSetting(
        settings_pb2.DeleteSettingRequest(scope=tree.scope(level), key=key, **fields),
        metadata=metadata,
    )


async def _effective(stub, scope, key, **fields) -> str | None:
    read = await stub.GetSettings(
        settings_pb2.GetSettingsRequest(scope=scope, keys=[key], **fields)
    )
    return read.settings[0].value.string_value if read.settings else None


async def _refused(call) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call
    return raised.value


async def _log_rows(db, key: str) -> int:
    return await db.fetchval("SELECT count(*) FROM change_log WHERE key = $1", key)


# --- the log records every acknowledged change once, with its caller ----------------------


async def test_every_acknowledged_change_is_logged_once_with_its_caller(
    settings_stub, db, tree, make_caller, unique_key
):
    admin = await make_caller(Role.ADMIN, account_id=tree.account)
    key = unique_key("LOG")

    def as_admin(request_id: str):
        return (*admin.metadata, ("x-request-id", request_id))

    first = await _set(settings_stub, tree, "ACCOUNT", key, "one", as_admin("req-put-1"), "first")
    second = await _set(settings_stub, tree, "ACCOUNT", key, "two", as_admin("req-put-2"))
    deleted = await _delete(settings_stub, tree, "ACCOUNT", key, as_admin("req-del"), reason="gone")
    restored = await settings_stub.RestoreSettings(
        settings_pb2.RestoreSettingsRequest(
            level=settings_pb2.SETTING_LEVEL_ACCOUNT,
            scope=tree.scope("ACCOUNT"),
            keys=[key],
            revision=second.revision,
            reason="undo",
        ),
        metadata=as_admin("req-restore"),
    )
    changes = (
        await settings_stub.ListChanges(
            settings_pb2.ListChangesRequest(scope=tree.scope("ACCOUNT"), key=key)
        )
    ).changes

    assert [c.revision for c in changes] == [
        first.revision,
        second.revision,
        deleted.revision,
        restored.revision,
    ]
    assert first.revision < second.revision < deleted.revision < restored.revision
    for change in changes:
        assert change.actor.user_id == admin.user_id
        assert change.actor.username == admin.username
        assert change.actor.credential_kind == "API_TOKEN"
        assert change.actor.credential_id == admin.token_id
    assert [c.actor.request_id for c in changes] == [
        "req-put-1",
        "req-put-2",
        "req-del",
        "req-restore",
    ]
    assert [c.operation for c in changes] == [
        settings_pb2.CHANGE_OPERATION_PUT,
        settings_pb2.CHANGE_OPERATION_PUT,
        settings_pb2.CHANGE_OPERATION_DELETE,
        settings_pb2.CHANGE_OPERATION_PUT,
    ]
    olds = [
        c.old_setting.value.string_value if c.HasField("old_setting") else None for c in changes
    ]
    news = [
        c.new_setting.value.string_value if c.HasField("new_setting") else None for c in changes
    ]
    assert olds == [None, "one", "two", None]
    assert news == ["one", "two", None, "two"]
    assert [c.reason for c in changes] == [
        "first",
        "",
        "gone",
        f"restore to revision {second.revision}: undo",
    ]
    assert await _log_rows(db, key) == 4


async def test_refused_and_failed_writes_leave_no_log_row(
    settings_stub, db, tree, make_caller, unique_key
):
    viewer = await make_caller(Role.VIEWER, account_id=tree.account)
    key = unique_key("NOLOG")
    await _set(settings_stub, tree, "ACCOUNT", key, "one")
    before = await _log_rows(db, key)

    refusals = [
        _set(settings_stub, tree, "ACCOUNT", key, "two", viewer.metadata),
        _delete(settings_stub, tree, "ACCOUNT", key, viewer.metadata),
        _delete(settings_stub, tree, "ACCOUNT", key, expected_version=7),
        _delete(settings_stub, tree, "RETAILER", key),  # nothing set there
        _set(settings_stub, tree, "ACCOUNT", key, "two", reason="nul \x00 inside"),
    ]
    codes = [(await _refused(call)).code() for call in refusals]

    assert codes == [
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.INVALID_ARGUMENT,
    ]
    assert await _log_rows(db, key) == before == 1


# --- delete: the key inherits again ------------------------------------------------------


@pytest.mark.parametrize("present", COMBINATIONS, ids=_name)
async def test_delete_inherits_for_every_combination(settings_stub, tree, unique_key, present):
    for deleted in present:
        key = unique_key("DEL")
        for level in present:
            await _set(settings_stub, tree, level, key, level.lower())
        remaining = [level for level in LEVELS if level in present and level != deleted]
        # Read first, so the server's read cache holds the answer the delete must drop.
        before = await settings_stub.GetSettings(
            settings_pb2.GetSettingsRequest(scope=tree.scope("RETAILER"), keys=[key])
        )
        assert before.settings[0].value.string_value == max(present, key=LEVELS.index).lower()

        response = await _delete(settings_stub, tree, deleted, key)

        # What the deleted scope now inherits: the most specific level below it.
        below = [level for level in remaining if LEVELS.index(level) < LEVELS.index(deleted)]
        if deleted != "GLOBAL":  # a GLOBAL delete leaves nothing to inherit
            assert response.HasField("effective") == bool(below)
            assert response.effective.value.string_value == (below[-1].lower() if below else "")
        assert response.revision > 0
        after = await settings_stub.GetSettings(
            settings_pb2.GetSettingsRequest(scope=tree.scope("RETAILER"), keys=[key])
        )
        assert after.revision >= response.revision > before.revision
        # The retailer reads the most specific level left.
        assert await _effective(settings_stub, tree.scope("RETAILER"), key) == (
            remaining[-1].lower() if remaining else None
        )


async def test_delete_with_a_stale_version_is_aborted_and_a_missing_one_not_found(
    settings_stub, tree, unique_key
):
    key = unique_key("STALE")
    written = await _set(settings_stub, tree, "RETAILER", key, "x")
    await _set(settings_stub, tree, "RETAILER", key, "y")

    stale = await _refused(_delete(settings_stub, tree, "RETAILER", key, expected_version=1))
    assert written.version == 1
    assert stale.code() == grpc.StatusCode.ABORTED
    assert error_info(stale).reason == "VERSION_MISMATCH"
    assert error_info(stale).metadata["current_version"] == "2"

    await _delete(settings_stub, tree, "RETAILER", key, expected_version=2)
    missing = await _refused(_delete(settings_stub, tree, "RETAILER", key))
    assert missing.code() == grpc.StatusCode.NOT_FOUND
    assert error_info(missing).reason == "SETTING_NOT_FOUND"


@pytest.mark.parametrize("role", [Role.VIEWER, Role.ADMIN])
@pytest.mark.parametrize("level", ["ACCOUNT", "RETAILER"])
async def test_cross_account_deletes_are_refused_like_writes(
    settings_stub,
    db,
    tree,
    new_account,
    new_retailer,
    make_caller,
    next_id,
    unique_key,
    role,
    level,
):
    caller = await make_caller(role, account_id=await new_account())
    key = unique_key("XDEL")
    await _set(settings_stub, tree, level, key, "theirs")
    missing = Tree(next_id(), next_id())

    answers = []
    for target in (tree, missing):
        error = await _refused(_delete(settings_stub, target, level, key, caller.metadata))
        answers.append((error.code(), error.details(), error_info(error).reason))

    assert answers[0] == answers[1]
    assert answers[0][0] == grpc.StatusCode.PERMISSION_DENIED
    assert await _effective(settings_stub, tree.scope(level), key) == "theirs"
    assert await _log_rows(db, key) == 1


async def test_delete_global_needs_platform(settings_stub, tree, make_caller, unique_key):
    admin = await make_caller(Role.ADMIN, account_id=tree.account)
    key = unique_key("GDEL")
    await _set(settings_stub, tree, "GLOBAL", key, "g")

    refused = await _refused(_delete(settings_stub, tree, "GLOBAL", key, admin.metadata))

    assert refused.code() == grpc.StatusCode.PERMISSION_DENIED
    assert (await _delete(settings_stub, tree, "GLOBAL", key)).revision > 0
    assert await _effective(settings_stub, tree.scope("ACCOUNT"), key) is None


# --- listing -------------------------------------------------------------------------------


async def _list_all(stub, request: settings_pb2.ListSettingsRequest, between=None) -> list:
    found, token, pages = [], "", 0
    while True:
        request.page_token = token
        page = await stub.ListSettings(request)
        found.extend((s.key, s.value.string_value, s.level) for s in page.settings)
        pages += 1
        token = page.next_page_token
        if not token:
            return found
        if between is not None:
            await between(pages)


async def test_list_by_prefix_level_only_and_across_pages_while_writing(
    settings_stub, tree, unique_key
):
    prefix = unique_key("LST") + "."
    for n in range(7):
        await _set(settings_stub, tree, "ACCOUNT", f"{prefix}{n:02}", f"a{n}")
    await _set(settings_stub, tree, "RETAILER", f"{prefix}03", "r3")
    await _set(settings_stub, tree, "GLOBAL", f"{prefix}99", "g99")
    await _set(settings_stub, tree, "ACCOUNT", unique_key("OTHER"), "outside the prefix")

    async def write_meanwhile(pages: int) -> None:
        # New keys before and after the cursor, and a change of one already listed.
        await _set(settings_stub, tree, "ACCOUNT", f"{prefix}{pages:02}x", "new")
        await _set(settings_stub, tree, "ACCOUNT", f"{prefix}00", "changed")

    effective = await _list_all(
        settings_stub,
        settings_pb2.ListSettingsRequest(
            scope=tree.scope("RETAILER"), key_prefix=prefix, page_size=2
        ),
        write_meanwhile,
    )
    level_only = await _list_all(
        settings_stub,
        settings_pb2.ListSettingsRequest(
            scope=tree.scope("RETAILER"), key_prefix=prefix, level_only=True, page_size=2
        ),
    )

    keys = [key for key, _, _ in effective]
    assert keys == sorted(keys)
    assert len(keys) == len(set(keys))  # none twice across pages
    original = {f"{prefix}{n:02}" for n in range(7)} | {f"{prefix}99"}
    assert original <= set(keys)  # every key that existed throughout, exactly once
    by_key = {key: (value, level) for key, value, level in effective}
    assert by_key[f"{prefix}03"] == ("r3", settings_pb2.SETTING_LEVEL_RETAILER)
    assert by_key[f"{prefix}05"] == ("a5", settings_pb2.SETTING_LEVEL_ACCOUNT)
    assert by_key[f"{prefix}99"] == ("g99", settings_pb2.SETTING_LEVEL_GLOBAL)
    assert level_only == [(f"{prefix}03", "r3", settings_pb2.SETTING_LEVEL_RETAILER)]


async def test_a_page_token_is_bound_to_its_listing(settings_stub, tree, unique_key):
    prefix = unique_key("TOK") + "."
    for n in range(3):
        await _set(settings_stub, tree, "ACCOUNT", f"{prefix}{n}", "v")
    first = await settings_stub.ListSettings(
        settings_pb2.ListSettingsRequest(
            scope=tree.scope("ACCOUNT"), key_prefix=prefix, page_size=1
        )
    )
    changes = await settings_stub.ListChanges(
        settings_pb2.ListChangesRequest(scope=tree.scope("ACCOUNT"), page_size=1)
    )
    misuses = [
        settings_pb2.ListSettingsRequest(
            scope=tree.scope("RETAILER"), key_prefix=prefix, page_token=first.next_page_token
        ),
        settings_pb2.ListSettingsRequest(
            scope=tree.scope("ACCOUNT"),
            key_prefix=prefix,
            level_only=True,
            page_token=first.next_page_token,
        ),
        settings_pb2.ListSettingsRequest(
            scope=tree.scope("ACCOUNT"), key_prefix=prefix, page_token=changes.next_page_token
        ),
        settings_pb2.ListSettingsRequest(scope=tree.scope("ACCOUNT"), page_token="garbage!"),
    ]
    for request in misuses:
        error = await _refused(settings_stub.ListSettings(request))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error_info(error).reason == "INVALID_PAGE_TOKEN"
    other_filter = await _refused(
        settings_stub.ListChanges(
            settings_pb2.ListChangesRequest(
                scope=tree.scope("ACCOUNT"), newest_first=True, page_token=changes.next_page_token
            )
        )
    )
    assert error_info(other_filter).reason == "INVALID_PAGE_TOKEN"
    # The same fields continue where the first page stopped.
    second = await settings_stub.ListSettings(
        settings_pb2.ListSettingsRequest(
            scope=tree.scope("ACCOUNT"),
            key_prefix=prefix,
            page_size=1,
            page_token=first.next_page_token,
        )
    )
    assert [s.key for s in second.settings] == [f"{prefix}1"]


# --- explain -------------------------------------------------------------------------------


@pytest.mark.parametrize("present", COMBINATIONS, ids=_name)
async def test_explain_for_every_combination(settings_stub, tree, make_caller, unique_key, present):
    admin = await make_caller(Role.ADMIN, account_id=tree.account)
    key, unset = unique_key("EXP"), unique_key("UNSET")
    for level in present:
        metadata = () if level == "GLOBAL" else admin.metadata
        await _set(settings_stub, tree, level, key, level.lower(), metadata, f"why {level}")

    response = await settings_stub.ExplainSettings(
        settings_pb2.ExplainSettingsRequest(scope=tree.scope("RETAILER"), keys=[key, unset]),
        metadata=admin.metadata,
    )

    explained, nothing = response.keys
    ordered = [level for level in reversed(LEVELS) if level in present]
    assert explained.key == key
    assert explained.winner == PROTO_LEVEL[ordered[0]]
    assert [lv.setting.level for lv in explained.levels] == [PROTO_LEVEL[x] for x in ordered]
    assert [lv.setting.value.string_value for lv in explained.levels] == [
        x.lower() for x in ordered
    ]
    assert [lv.shadowed for lv in explained.levels] == [False] + [True] * (len(ordered) - 1)
    for level_value, level in zip(explained.levels, ordered, strict=True):
        assert level_value.last_reason == f"why {level}"
        assert level_value.setting.version == 1
        assert level_value.setting.mod_revision > 0
        if level != "GLOBAL":
            assert level_value.last_actor.username == admin.username
    assert nothing.key == unset
    assert nothing.winner == settings_pb2.SETTING_LEVEL_UNSPECIFIED
    assert list(nothing.levels) == []
    assert response.revision >= max(lv.setting.mod_revision for lv in explained.levels)


# --- reads at a revision -------------------------------------------------------------------


async def test_reads_at_a_revision_equal_a_replay_of_the_log(settings_stub, tree, unique_key):
    keys = [unique_key("AT"), unique_key("AT")]
    steps = [
        ("set", "GLOBAL", 0, "g0"),
        ("set", "ACCOUNT", 0, "a0"),
        ("set", "RETAILER", 1, "r1"),
        ("set", "RETAILER", 0, "r0"),
        ("delete", "ACCOUNT", 0, None),
        ("set", "ACCOUNT", 1, "a1"),
        ("delete", "RETAILER", 0, None),
        ("delete", "RETAILER", 1, None),
        ("set", "GLOBAL", 0, "g0b"),
    ]
    for action, level, index, text in steps:
        if action == "set":
            await _set(settings_stub, tree, level, keys[index], text)
        else:
            await _delete(settings_stub, tree, level, keys[index])

    # The replay: each level's value per key, from the log's own entries.
    log = []
    for key in keys:
        for target in ({"scope": tree.scope("RETAILER")}, {"global_only": True}):
            log += (
                await settings_stub.ListChanges(settings_pb2.ListChangesRequest(key=key, **target))
            ).changes
    # The retailer's scope includes nothing of the account's level: ask for it too.
    for key in keys:
        log += (
            await settings_stub.ListChanges(
                settings_pb2.ListChangesRequest(key=key, scope=tree.scope("ACCOUNT"))
            )
        ).changes
    unique = {(c.revision, c.sequence): c for c in log}
    ordered = [unique[k] for k in sorted(unique)]
    state: dict[tuple[str, int], str] = {}
    checked = 0
    for change in ordered:
        if change.HasField("new_setting"):
            state[(change.key, change.level)] = change.new_setting.value.string_value
        else:
            state.pop((change.key, change.level), None)
        for key in keys:
            expected = next(
                (
                    state[(key, PROTO_LEVEL[level])]
                    for level in reversed(LEVELS)
                    if (key, PROTO_LEVEL[level]) in state
                ),
                None,
            )
            past = await _effective(
                settings_stub, tree.scope("RETAILER"), key, at_revision=change.revision
            )
            assert past == expected, (change.revision, key)
            listed = await settings_stub.ListSettings(
                settings_pb2.ListSettingsRequest(
                    scope=tree.scope("RETAILER"), key_prefix=key, at_revision=change.revision
                )
            )
            assert [s.value.string_value for s in listed.settings] == (
                [] if expected is None else [expected]
            )
            assert listed.revision == change.revision
            checked += 1
    assert len(ordered) == len(steps)
    assert checked == 2 * len(steps)


async def test_a_revision_after_the_current_one_is_out_of_range(settings_stub, tree, unique_key):
    key = unique_key("FUT")
    current = (await _set(settings_stub, tree, "ACCOUNT", key, "v")).revision

    error = await _refused(
        settings_stub.GetSettings(
            settings_pb2.GetSettingsRequest(
                scope=tree.scope("ACCOUNT"), keys=[key], at_revision=current + 10**9
            )
        )
    )

    assert error.code() == grpc.StatusCode.OUT_OF_RANGE
    assert error_info(error).reason == "FUTURE_REVISION"


# --- restore -------------------------------------------------------------------------------


async def test_restore_round_trip(settings_stub, tree, unique_key):
    kept, removed, added = unique_key("RS"), unique_key("RS"), unique_key("RS")
    await _set(settings_stub, tree, "RETAILER", kept, "before")
    mark = (await _set(settings_stub, tree, "RETAILER", removed, "was here")).revision
    await _set(settings_stub, tree, "RETAILER", kept, "after")
    await _delete(settings_stub, tree, "RETAILER", removed)
    await _set(settings_stub, tree, "RETAILER", added, "new")
    request = settings_pb2.RestoreSettingsRequest(
        level=settings_pb2.SETTING_LEVEL_RETAILER,
        scope=tree.scope("RETAILER"),
        keys=[kept, removed, added],
        revision=mark,
        reason="roll back",
    )

    scope = tree.scope("RETAILER")
    assert await _effective(settings_stub, scope, kept) == "after"  # now in the read cache
    restored = await settings_stub.RestoreSettings(request)
    again = await settings_stub.RestoreSettings(request)

    assert sorted(restored.changed_keys) == sorted([kept, removed, added])
    assert restored.revision > mark
    assert await _effective(settings_stub, scope, kept) == "before"
    assert await _effective(settings_stub, scope, removed) == "was here"
    assert await _effective(settings_stub, scope, added) is None
    logged = (
        await settings_stub.ListChanges(
            settings_pb2.ListChangesRequest(
                scope=scope, min_revision=restored.revision, max_revision=restored.revision
            )
        )
    ).changes
    assert len(logged) == 3
    assert {c.reason for c in logged} == {f"restore to revision {mark}: roll back"}
    assert again.revision == 0 and list(again.changed_keys) == []


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"level": settings_pb2.SETTING_LEVEL_ACCOUNT}, "scope"),  # level without its scope
        ({"level": settings_pb2.SETTING_LEVEL_UNSPECIFIED, "scope": "ACCOUNT"}, "level"),
        ({"level": settings_pb2.SETTING_LEVEL_RETAILER, "scope": "ACCOUNT"}, "scope"),
        (
            {"level": settings_pb2.SETTING_LEVEL_ACCOUNT, "scope": "ACCOUNT", "revision": 0},
            "revision",
        ),
    ],
)
async def test_restore_refuses_a_bad_request_naming_the_field(settings_stub, tree, fields, field):
    fields = {"revision": 1, **fields}
    if "scope" in fields:
        fields["scope"] = tree.scope(fields["scope"])
    error = await _refused(
        settings_stub.RestoreSettings(settings_pb2.RestoreSettingsRequest(keys=["K"], **fields))
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in field_violations(error)


# --- who may read whose history ------------------------------------------------------------


@pytest.mark.parametrize("role", list(Role))
async def test_who_sees_which_changes(
    settings_stub, new_account, new_retailer, make_caller, unique_key, role
):
    own, other = Tree(0, 0), Tree(0, 0)
    for tree in (own, other):
        tree.account = await new_account()
        tree.retailer = await new_retailer(tree.account)
    caller = await make_caller(role, account_id=own.account)
    key = unique_key("WHO")
    revisions = {
        "global": (await _set(settings_stub, own, "GLOBAL", key, "g")).revision,
        "own account": (await _set(settings_stub, own, "ACCOUNT", key, "a")).revision,
        "own retailer": (await _set(settings_stub, own, "RETAILER", key, "r")).revision,
        "other account": (await _set(settings_stub, other, "ACCOUNT", key, "a")).revision,
        "other retailer": (await _set(settings_stub, other, "RETAILER", key, "r")).revision,
    }

    async def seen(**fields) -> set[str] | grpc.StatusCode:
        try:
            page = await settings_stub.ListChanges(
                settings_pb2.ListChangesRequest(key=key, **fields), metadata=caller.metadata
            )
        except grpc.aio.AioRpcError as error:
            return error.code()
        return {
            name for name, rev in revisions.items() if rev in {c.revision for c in page.changes}
        }

    everything = await seen()
    own_scope = await seen(scope=own.scope("ACCOUNT"))
    other_scope = await seen(scope=other.scope("ACCOUNT"))
    other_retailer = await seen(scope=other.scope("RETAILER"))
    global_only = await seen(global_only=True)

    if role is Role.PLATFORM:
        assert everything == set(revisions)
        assert other_scope == {"other account", "other retailer"}
        assert other_retailer == {"other retailer"}
    else:
        assert everything == {"global", "own account", "own retailer"}
        assert other_scope == grpc.StatusCode.PERMISSION_DENIED
        assert other_retailer == grpc.StatusCode.PERMISSION_DENIED
    assert own_scope == {"own account", "own retailer"}
    assert global_only == {"global"}


# --- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (settings_pb2.ListSettingsRequest(page_size=501), "page_size"),
        (settings_pb2.ListSettingsRequest(page_size=-1), "page_size"),
        (settings_pb2.ListSettingsRequest(key_prefix="bad prefix"), "key_prefix"),
        (settings_pb2.ListSettingsRequest(at_revision=-1), "at_revision"),
        (settings_pb2.ListChangesRequest(key="A", key_prefix="A"), "key_prefix"),
        (settings_pb2.ListChangesRequest(min_revision=5, max_revision=4), "max_revision"),
        (settings_pb2.ListChangesRequest(actor_user_id=0), "actor_user_id"),
        (settings_pb2.ListChangesRequest(page_size=10_000), "page_size"),
        (settings_pb2.DeleteGlobalRequest(key="K", reason="x" * 1001), "reason"),
        (settings_pb2.DeleteGlobalRequest(key="K", reason="a\x00b"), "reason"),
        (settings_pb2.DeleteGlobalRequest(key=""), "key"),
    ],
    ids=lambda value: value if isinstance(value, str) else type(value).__name__,
)
async def test_bad_input_names_the_field(settings_stub, request_, field):
    method = {
        settings_pb2.ListSettingsRequest: settings_stub.ListSettings,
        settings_pb2.ListChangesRequest: settings_stub.ListChanges,
        settings_pb2.DeleteGlobalRequest: settings_stub.DeleteGlobal,
    }[type(request_)]
    error = await _refused(method(request_))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in field_violations(error)


# --- compaction ----------------------------------------------------------------------------


async def _prepared_database(create_database) -> str:
    dsn = await create_database()
    connection = await asyncpg.connect(dsn)
    try:
        await migrate(connection)
    finally:
        await connection.close()
    return dsn


async def test_compaction_boundaries_through_the_api_and_the_cli(
    create_database, start_app_with, server_config
):
    dsn = await _prepared_database(create_database)
    # Retention off in the server: the CLI compacts, once, when the test says so.
    app = await start_app_with(
        dataclasses.replace(server_config, history_retention_days=0, metrics_address=""), dsn
    )
    caller = await make_caller_in(dsn, Role.PLATFORM)
    async with open_channel(app.port, caller.token) as channel:
        stub = settings_pb2_grpc.SettingsServiceStub(channel)
        tree = Tree(caller.account_id, 0)
        revisions = [
            (await _set(stub, tree, "ACCOUNT", "CMP.KEY", str(n))).revision for n in range(3)
        ]
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=1)
        try:
            await pool.execute("UPDATE change_log SET change_time = now() - interval '10 days'")
        finally:
            await pool.close()
        later = [(await _set(stub, tree, "ACCOUNT", "CMP.KEY", str(n))).revision for n in (3, 4)]

        code, _, err = await tierset(dsn, "history", "compact", "--older-than-days", "5")
        assert code == 0, err
        assert f"after revision {revisions[-1]}" in err

        scope = tree.scope("ACCOUNT")
        below = revisions[-1] - 1
        calls = [
            stub.GetSettings(
                settings_pb2.GetSettingsRequest(scope=scope, keys=["CMP.KEY"], at_revision=below)
            ),
            stub.ListSettings(settings_pb2.ListSettingsRequest(scope=scope, at_revision=below)),
            stub.ListChanges(settings_pb2.ListChangesRequest(min_revision=below + 1)),
            stub.RestoreSettings(
                settings_pb2.RestoreSettingsRequest(
                    level=settings_pb2.SETTING_LEVEL_ACCOUNT,
                    scope=scope,
                    keys=["CMP.KEY"],
                    revision=below,
                )
            ),
        ]
        for call in calls:
            error = await _refused(call)
            assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert error_info(error).reason == "REVISION_COMPACTED"
            assert error_info(error).metadata["compacted_revision"] == str(revisions[-1])
        # At the compacted revision the state is still known; the log holds what follows.
        at_boundary = await stub.GetSettings(
            settings_pb2.GetSettingsRequest(
                scope=scope, keys=["CMP.KEY"], at_revision=revisions[-1]
            )
        )
        assert [s.value.string_value for s in at_boundary.settings] == ["2"]
        remaining = await stub.ListChanges(settings_pb2.ListChangesRequest())
        assert [c.revision for c in remaining.changes] == later


async def test_servers_compact_on_their_own_by_the_retention(
    create_database, start_app_with, server_config
):
    dsn = await _prepared_database(create_database)
    first = await start_app_with(
        dataclasses.replace(server_config, history_retention_days=0, metrics_address=""), dsn
    )
    caller = await make_caller_in(dsn, Role.PLATFORM)
    async with open_channel(first.port, caller.token) as channel:
        stub = settings_pb2_grpc.SettingsServiceStub(channel)
        tree = Tree(caller.account_id, 0)
        old = (await _set(stub, tree, "ACCOUNT", f"OLD.{uuid.uuid4().hex}", "v")).revision
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=1)
    try:
        await pool.execute("UPDATE change_log SET change_time = now() - interval '3 days'")
        # Two servers with retention on: both try at start, one at a time compacts.
        compacting = dataclasses.replace(
            server_config, history_retention_days=2, history_compact_interval_seconds=0.2
        )
        for _ in range(2):
            await start_app_with(dataclasses.replace(compacting, metrics_address=""), dsn)
        compacted = 0
        for _ in range(300):  # waits for an event, not a duration: up to a minute
            compacted = await pool.fetchval("SELECT compacted_revision FROM revision_counter")
            if compacted >= old:
                break
            await asyncio.sleep(0.2)
        assert compacted == old
        assert await pool.fetchval("SELECT count(*) FROM change_log") == 0
    finally:
        await pool.close()
