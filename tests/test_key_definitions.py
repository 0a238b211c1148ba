"""Key definitions: DefineKey, GetKeyDefinition, ListKeyDefinitions, DeleteKeyDefinition.

A definition fixes a key's type, may carry a JSON Schema (Draft 2020-12) every value must
satisfy (a failing value names the JSON path) and the levels allowed to set the key. It
is written only over stored values that satisfy it (DEFINITION_CONFLICT listing the
offending scopes), and a write of a defined key is checked against it in the same
transaction, even when the writing process's copy of the definitions is stale.
"""

from __future__ import annotations

import json

import asyncpg
import grpc
import pytest

from tests.helpers import define_key, error_info, field_violations, put_setting
from tierset.core.authz import Role
from tierset.core.values import Level, SettingType
from tierset.store.database import ScopeRef, Store
from tierset.store.keytypes import DefinitionsChanged
from tierset.v1 import settings_pb2

INTEGER = settings_pb2.SETTING_TYPE_INTEGER
STRING = settings_pb2.SETTING_TYPE_STRING
JSON = settings_pb2.SETTING_TYPE_JSON
GLOBAL = settings_pb2.SETTING_LEVEL_GLOBAL
ACCOUNT = settings_pb2.SETTING_LEVEL_ACCOUNT
RETAILER = settings_pb2.SETTING_LEVEL_RETAILER

LIMITS_SCHEMA = {
    "type": "object",
    "properties": {
        "limits": {"type": "array", "items": {"type": "integer", "maximum": 100}},
        "name": {"type": "string"},
    },
    "required": ["limits"],
}


@pytest.fixture
async def scopes(new_account, new_retailer) -> tuple[int, int]:
    account = await new_account()
    return account, await new_retailer(account)


def _scope(level: int, scopes: tuple[int, int]) -> settings_pb2.Scope | None:
    account, retailer = scopes
    return {
        GLOBAL: None,
        ACCOUNT: settings_pb2.Scope(account_id=account),
        RETAILER: settings_pb2.Scope(retailer_id=retailer),
    }[level]


async def _refused(call) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await call
    return refused.value


async def _log_rows(db: asyncpg.Pool, key: str) -> int:
    return await db.fetchval("SELECT count(*) FROM change_log WHERE key = $1", key)


async def test_a_definition_is_defined_read_redefined_and_deleted(settings_stub, unique_key):
    key = unique_key("DEF")
    created = await define_key(
        settings_stub,
        key,
        JSON,
        schema=LIMITS_SCHEMA,
        secret=True,
        levels=(RETAILER, ACCOUNT),
        description="per-store limits",
    )
    assert created.created
    definition = created.definition
    assert (definition.key, definition.type, definition.description, definition.secret) == (
        key,
        JSON,
        "per-store limits",
        True,
    )
    assert json.loads(definition.value_schema) == LIMITS_SCHEMA
    assert list(definition.allowed_levels) == [ACCOUNT, RETAILER]  # least specific first
    assert definition.version == 1 and definition.updated_by.startswith("user-")

    got = await settings_stub.GetKeyDefinition(settings_pb2.GetKeyDefinitionRequest(key=key))
    assert got.definition == definition

    again = await define_key(settings_stub, key, JSON, description="all levels")
    assert not again.created and again.definition.version == 2
    assert list(again.definition.allowed_levels) == [GLOBAL, ACCOUNT, RETAILER]
    assert again.definition.value_schema == "" and not again.definition.secret

    deleted = await settings_stub.DeleteKeyDefinition(
        settings_pb2.DeleteKeyDefinitionRequest(key=key)
    )
    assert deleted.definition.version == 2
    for call in (
        settings_stub.GetKeyDefinition(settings_pb2.GetKeyDefinitionRequest(key=key)),
        settings_stub.DeleteKeyDefinition(settings_pb2.DeleteKeyDefinitionRequest(key=key)),
    ):
        error = await _refused(call)
        assert error.code() == grpc.StatusCode.NOT_FOUND
        assert error_info(error).reason == "KEY_DEFINITION_NOT_FOUND"


async def test_definitions_are_listed_by_key_in_pages(settings_stub, unique_key):
    prefix = unique_key("LIST")
    keys = [f"{prefix}.{n}" for n in range(5)]
    for key in reversed(keys):
        await define_key(settings_stub, key)
    listed, token, pages = [], "", 0
    while True:
        page = await settings_stub.ListKeyDefinitions(
            settings_pb2.ListKeyDefinitionsRequest(page_size=2, page_token=token)
        )
        assert len(page.definitions) <= 2
        listed += [d.key for d in page.definitions]
        pages += 1
        token = page.next_page_token
        if not token:
            break
    assert listed == sorted(listed)  # bytewise key order, each once
    assert [k for k in listed if k.startswith(prefix)] == keys
    assert pages >= 3
    error = await _refused(
        settings_stub.ListKeyDefinitions(
            settings_pb2.ListKeyDefinitionsRequest(page_token="not-a-token")
        )
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize(
    "value",
    [{"limits": []}, {"limits": [1, 100], "name": "x"}, {"limits": [0], "extra": True}],
    ids=["empty", "at-maximum", "extra-member"],
)
async def test_values_matching_the_schema_are_written(settings_stub, scopes, unique_key, value):
    key = unique_key("SCHEMA")
    await define_key(settings_stub, key, JSON, schema=LIMITS_SCHEMA)
    written = await put_setting(settings_stub, _scope(ACCOUNT, scopes), key, JSON, value)
    assert written.version == 1


@pytest.mark.parametrize(
    ("value", "path"),
    [
        ({"limits": [1, 2, 500]}, "$.limits[2]"),
        ({"limits": [1, "two"]}, "$.limits[1]"),
        ({"limits": [1], "name": 7}, "$.name"),
        ({"name": "no limits"}, "$"),
        ([1, 2], "$"),
    ],
    ids=["too-large", "not-an-integer", "wrong-member-type", "missing-member", "not-an-object"],
)
async def test_a_value_failing_the_schema_is_refused_naming_the_json_path(
    settings_stub, db, scopes, unique_key, value, path
):
    key = unique_key("SCHEMA")
    await define_key(settings_stub, key, JSON, schema=LIMITS_SCHEMA)
    for level in (GLOBAL, ACCOUNT, RETAILER):
        error = await _refused(put_setting(settings_stub, _scope(level, scopes), key, JSON, value))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error_info(error).reason == "SCHEMA_VIOLATION"
        assert f"at {path}:" in field_violations(error)["value"]
    assert await _log_rows(db, key) == 0


async def test_rest_answers_a_schema_violation_400_naming_the_path(
    settings_stub, http, rest_auth_headers, scopes, unique_key
):
    key = unique_key("SCHEMA")
    await define_key(settings_stub, key, JSON, schema=LIMITS_SCHEMA)
    response = await http.put(
        f"/api/v4.1/settings/account/{scopes[0]}/{key}",
        json={"setting": {"value": {"limits": [1, 2, 500]}, "type": "JSON"}},
        headers=rest_auth_headers,
    )
    assert response.status_code == 400
    [entry] = response.json()["error"]
    assert entry["code"] == "value" and "$.limits[2]" in entry["message"]


@pytest.mark.parametrize(
    ("schema", "wrong"),
    [
        ("{not json", "not valid JSON"),
        (json.dumps({"type": 5}), "not a valid JSON Schema"),
        (json.dumps({"minimum": "one"}), "not a valid JSON Schema"),
        (json.dumps({"$ref": "https://example.com/schema.json"}), "is not local"),
        (json.dumps({"const": "\u0000"}), "NUL"),
        (json.dumps({"$ref": "#/$defs/missing"}), "points at nothing"),
        (json.dumps({"$ref": "#"}), "refers to itself without end"),
        (json.dumps({"pattern": "("}), "not a valid JSON Schema"),
    ],
    ids=[
        "not-json",
        "bad-type",
        "bad-minimum",
        "remote-ref",
        "unstorable",
        "dangling-ref",
        "endless-ref",
        "bad-regex",
    ],
)
async def test_an_invalid_schema_is_refused_on_define(settings_stub, unique_key, schema, wrong):
    key = unique_key("BADSCHEMA")
    request = settings_pb2.DefineKeyRequest(
        definition=settings_pb2.KeyDefinition(key=key, type=JSON, value_schema=schema)
    )
    error = await _refused(settings_stub.DefineKey(request))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert wrong in field_violations(error)["definition.value_schema"]
    error = await _refused(
        settings_stub.GetKeyDefinition(settings_pb2.GetKeyDefinitionRequest(key=key))
    )
    assert error.code() == grpc.StatusCode.NOT_FOUND


async def test_a_definition_over_stored_values_that_fail_it_lists_the_offenders(
    settings_stub, scopes, unique_key
):
    account, retailer = scopes
    key = unique_key("OVER")
    await put_setting(settings_stub, None, key, JSON, {"limits": [1]})
    await put_setting(settings_stub, _scope(ACCOUNT, scopes), key, JSON, {"limits": [50]})
    await put_setting(settings_stub, _scope(RETAILER, scopes), key, JSON, {"limits": [7, 500]})

    cases = [
        # (definition, the offenders it must list, those it must not)
        (
            {"setting_type": JSON, "schema": LIMITS_SCHEMA},
            [f"RETAILER {retailer}: $.limits[1]"],
            ["GLOBAL", f"ACCOUNT {account}"],
        ),
        (
            {"setting_type": STRING},
            ["GLOBAL: JSON, not STRING", f"ACCOUNT {account}: JSON", f"RETAILER {retailer}: JSON"],
            [],
        ),
        (
            {"setting_type": JSON, "levels": (GLOBAL, ACCOUNT)},
            [f"RETAILER {retailer}: RETAILER is not an allowed level"],
            [f"ACCOUNT {account}"],
        ),
    ]
    for arguments, listed, unlisted in cases:
        error = await _refused(define_key(settings_stub, key, **arguments))
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
        info = error_info(error)
        assert info.reason == "DEFINITION_CONFLICT"
        assert info.metadata["offenders"] == str(len(listed))
        for offender in listed:
            assert offender in error.details()
        for fine in unlisted:
            assert fine not in error.details()
        missing = await _refused(
            settings_stub.GetKeyDefinition(settings_pb2.GetKeyDefinitionRequest(key=key))
        )
        assert missing.code() == grpc.StatusCode.NOT_FOUND  # nothing was defined


async def test_a_redefinition_over_failing_values_keeps_the_old_one(
    settings_stub, scopes, unique_key
):
    key = unique_key("REDEF")
    await define_key(settings_stub, key, INTEGER, schema={"maximum": 1000})
    await put_setting(settings_stub, _scope(ACCOUNT, scopes), key, INTEGER, 500)
    error = await _refused(define_key(settings_stub, key, INTEGER, schema={"maximum": 100}))
    assert error_info(error).reason == "DEFINITION_CONFLICT"
    assert f"ACCOUNT {scopes[0]}: $:" in error.details()
    kept = await settings_stub.GetKeyDefinition(settings_pb2.GetKeyDefinitionRequest(key=key))
    assert json.loads(kept.definition.value_schema) == {"maximum": 1000}
    assert kept.definition.version == 1


LEVEL_CASES = [
    ((ACCOUNT,), {GLOBAL: False, ACCOUNT: True, RETAILER: False}),
    ((GLOBAL,), {GLOBAL: True, ACCOUNT: False, RETAILER: False}),
    ((ACCOUNT, RETAILER), {GLOBAL: False, ACCOUNT: True, RETAILER: True}),
    ((), {GLOBAL: True, ACCOUNT: True, RETAILER: True}),
]


@pytest.mark.parametrize(
    ("allowed", "accepted"),
    LEVEL_CASES,
    ids=["account-only", "global-only", "account-and-retailer", "every-level"],
)
async def test_only_the_allowed_levels_may_set_a_defined_key(
    settings_stub, db, scopes, unique_key, allowed, accepted
):
    key = unique_key("LEVELS")
    await define_key(settings_stub, key, INTEGER, levels=allowed)
    for level, ok in accepted.items():
        call = put_setting(settings_stub, _scope(level, scopes), key, INTEGER, 1)
        if ok:
            await call
            continue
        before = await _log_rows(db, key)
        error = await _refused(call)
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
        info = error_info(error)
        assert info.reason == "LEVEL_NOT_ALLOWED"
        assert info.metadata["level"] == settings_pb2.SettingLevel.Name(level).removeprefix(
            "SETTING_LEVEL_"
        )
        assert await _log_rows(db, key) == before


async def test_a_defined_keys_type_is_enforced_at_every_level(settings_stub, scopes, unique_key):
    key = unique_key("TYPED")
    await define_key(settings_stub, key, INTEGER)
    for level in (GLOBAL, ACCOUNT, RETAILER):
        error = await _refused(put_setting(settings_stub, _scope(level, scopes), key, STRING, "x"))
        assert error_info(error).reason == "TYPE_MISMATCH"
        assert f"{key} is INTEGER at its definition" in error.details()


async def test_a_restore_to_a_value_the_schema_now_refuses_is_refused(
    settings_stub, db, scopes, unique_key
):
    key = unique_key("RESTORE")
    first = await put_setting(settings_stub, _scope(ACCOUNT, scopes), key, INTEGER, 500)
    await put_setting(settings_stub, _scope(ACCOUNT, scopes), key, INTEGER, 5)
    await define_key(settings_stub, key, INTEGER, schema={"maximum": 100})
    before = await _log_rows(db, key)
    error = await _refused(
        settings_stub.RestoreSettings(
            settings_pb2.RestoreSettingsRequest(
                level=ACCOUNT, scope=_scope(ACCOUNT, scopes), keys=[key], revision=first.revision
            )
        )
    )
    assert error_info(error).reason == "SCHEMA_VIOLATION"
    assert await _log_rows(db, key) == before


async def test_a_write_checked_against_stale_definitions_is_refused_and_writes_nothing(
    settings_stub, db, scopes, unique_key
):
    """The store side of the check: a write passes the definitions version it was checked
    against, and the statement refuses it once that version has moved on."""
    key = unique_key("STALE")
    store = Store(db)
    stale = await db.fetchval("SELECT definitions_version FROM revision_counter")
    await define_key(settings_stub, key, INTEGER, schema={"maximum": 100})
    revision = await db.fetchval("SELECT revision FROM revision_counter")
    with pytest.raises(DefinitionsChanged):
        await store.write(
            ScopeRef(Level.ACCOUNT, scopes[0]),
            key,
            SettingType.INTEGER,
            "500",
            definitions_version=stale,
        )
    assert await db.fetchval("SELECT revision FROM revision_counter") == revision
    assert await _log_rows(db, key) == 0


async def test_another_server_checks_a_write_against_a_definition_it_just_made(
    settings_stub, start_server, scopes, unique_key
):
    """Each process keeps its own copy of the definitions; a write on another server right
    after a define there is still checked against the new definition."""
    other = await start_server()
    warm = unique_key("WARM")
    await put_setting(other.settings, _scope(ACCOUNT, scopes), warm, INTEGER, 1)  # loads its copy
    for attempt in range(5):
        key = unique_key(f"FRESH{attempt}")
        await define_key(settings_stub, key, INTEGER, schema={"maximum": 100})
        error = await _refused(
            put_setting(other.settings, _scope(ACCOUNT, scopes), key, INTEGER, 500)
        )
        assert error_info(error).reason == "SCHEMA_VIOLATION"


@pytest.mark.parametrize("role", [Role.ADMIN, Role.VIEWER])
async def test_only_platform_writes_definitions_and_everyone_reads_them(
    settings_stub, make_caller, unique_key, role
):
    key = unique_key("PERM")
    await define_key(settings_stub, key)
    caller = await make_caller(role)
    for call in (
        define_key(settings_stub, key, STRING, metadata=caller.metadata),
        settings_stub.DeleteKeyDefinition(
            settings_pb2.DeleteKeyDefinitionRequest(key=key), metadata=caller.metadata
        ),
    ):
        error = await _refused(call)
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    got = await settings_stub.GetKeyDefinition(
        settings_pb2.GetKeyDefinitionRequest(key=key), metadata=caller.metadata
    )
    assert got.definition.type == INTEGER
    listed = await settings_stub.ListKeyDefinitions(
        settings_pb2.ListKeyDefinitionsRequest(page_size=500), metadata=caller.metadata
    )
    assert listed.definitions
