"""Who may do what over gRPC: role x operation x own/other account, every cell asserted.

A scope of another account answers PERMISSION_DENIED whether or not it
exists; only PLATFORM (which may act on any account) ever learns NOT_FOUND.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc
import pytest

from tests.helpers import error_info
from tierset.core.authz import Role
from tierset.v1 import (
    accounts_pb2,
    integrations_pb2,
    settings_pb2,
)

OK = grpc.StatusCode.OK
DENIED = grpc.StatusCode.PERMISSION_DENIED


@dataclass
class World:
    """The caller's account and retailer, and another account's."""

    own_account: int
    own_retailer: int
    other_account: int
    other_retailer: int

    def account(self, whose: str) -> int:
        return self.own_account if whose == "own" else self.other_account

    def retailer(self, whose: str) -> int:
        return self.own_retailer if whose == "own" else self.other_retailer


async def _get_settings_account(stubs, world, whose, key, md):
    scope = settings_pb2.Scope(account_id=world.account(whose))
    await stubs.settings.GetSettings(
        settings_pb2.GetSettingsRequest(scope=scope, keys=[key]), metadata=md
    )


async def _get_settings_retailer(stubs, world, whose, key, md):
    scope = settings_pb2.Scope(retailer_id=world.retailer(whose))
    await stubs.settings.GetSettings(
        settings_pb2.GetSettingsRequest(scope=scope, keys=[key]), metadata=md
    )


def _put(scope):
    async def put(stubs, world, whose, key, md):
        await stubs.settings.PutSetting(
            settings_pb2.PutSettingRequest(
                scope=scope(world, whose),
                key=key,
                type=settings_pb2.SETTING_TYPE_INTEGER,
                value=settings_pb2.SettingValue(integer_value=7),
            ),
            metadata=md,
        )

    return put


_put_account = _put(lambda w, whose: settings_pb2.Scope(account_id=w.account(whose)))
_put_retailer = _put(lambda w, whose: settings_pb2.Scope(retailer_id=w.retailer(whose)))


def _account_scope(w, whose):
    return settings_pb2.Scope(account_id=w.account(whose))


def _retailer_scope(w, whose):
    return settings_pb2.Scope(retailer_id=w.retailer(whose))


def _delete(scope):
    # The caller's own cells delete something that exists, as PLATFORM writes it first.
    async def delete(stubs, world, whose, key, md):
        await stubs.settings.PutSetting(
            settings_pb2.PutSettingRequest(
                scope=scope(world, whose),
                key=key,
                type=settings_pb2.SETTING_TYPE_INTEGER,
                value=settings_pb2.SettingValue(integer_value=1),
            )
        )
        await stubs.settings.DeleteSetting(
            settings_pb2.DeleteSettingRequest(scope=scope(world, whose), key=key), metadata=md
        )

    return delete


def _list_settings(scope):
    async def list_settings(stubs, world, whose, key, md):
        await stubs.settings.ListSettings(
            settings_pb2.ListSettingsRequest(scope=scope(world, whose)), metadata=md
        )

    return list_settings


def _explain(scope):
    async def explain(stubs, world, whose, key, md):
        await stubs.settings.ExplainSettings(
            settings_pb2.ExplainSettingsRequest(scope=scope(world, whose), keys=[key]), metadata=md
        )

    return explain


def _list_changes(scope):
    async def list_changes(stubs, world, whose, key, md):
        await stubs.settings.ListChanges(
            settings_pb2.ListChangesRequest(scope=scope(world, whose)), metadata=md
        )

    return list_changes


def _restore(level, scope):
    async def restore(stubs, world, whose, key, md):
        await stubs.settings.RestoreSettings(
            settings_pb2.RestoreSettingsRequest(
                level=level, scope=scope(world, whose), keys=[key], revision=1
            ),
            metadata=md,
        )

    return restore


async def _get_at_revision(stubs, world, whose, key, md):
    current = await stubs.settings.ListChanges(
        settings_pb2.ListChangesRequest(newest_first=True, page_size=1)
    )
    await stubs.settings.GetSettings(
        settings_pb2.GetSettingsRequest(
            scope=_retailer_scope(world, whose), keys=[key], at_revision=current.revision
        ),
        metadata=md,
    )


async def _get_account(stubs, world, whose, key, md):
    await stubs.accounts.GetAccount(
        accounts_pb2.GetAccountRequest(account_id=world.account(whose)), metadata=md
    )


async def _get_retailer(stubs, world, whose, key, md):
    await stubs.accounts.GetRetailer(
        accounts_pb2.GetRetailerRequest(retailer_id=world.retailer(whose)), metadata=md
    )


async def _create_retailer(stubs, world, whose, key, md):
    await stubs.accounts.CreateRetailer(
        accounts_pb2.CreateRetailerRequest(
            account_id=world.account(whose), display_name="New retailer"
        ),
        metadata=md,
    )


async def test_only_platform_chooses_retailer_ids(
    stubs, make_caller, new_account, new_retailer, next_id
):
    """An ADMIN cannot probe other accounts' retailer ids by trying to take them."""
    admin = await make_caller(Role.ADMIN)
    someone_elses = await new_retailer(await new_account())
    for wanted in (someone_elses, next_id()):  # taken elsewhere, or free: the same answer
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stubs.accounts.CreateRetailer(
                accounts_pb2.CreateRetailerRequest(
                    retailer_id=wanted, account_id=admin.account_id, display_name="Mine"
                ),
                metadata=admin.metadata,
            )
        assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED
    chosen_by_server = await stubs.accounts.CreateRetailer(
        accounts_pb2.CreateRetailerRequest(account_id=admin.account_id, display_name="Mine"),
        metadata=admin.metadata,
    )
    assert chosen_by_server.retailer.account_id == admin.account_id


def _lock(rpc):
    # The caller's own cells lock (or unlock) a value that exists, as PLATFORM writes
    # (and, for an unlock, locks) it first.
    async def lock(stubs, world, whose, key, md):
        scope = _account_scope(world, whose)
        await stubs.settings.PutSetting(
            settings_pb2.PutSettingRequest(
                scope=scope,
                key=key,
                type=settings_pb2.SETTING_TYPE_INTEGER,
                value=settings_pb2.SettingValue(integer_value=1),
            )
        )
        if rpc == "UnlockSetting":
            await stubs.settings.LockSetting(settings_pb2.LockSettingRequest(scope=scope, key=key))
            request = settings_pb2.UnlockSettingRequest(scope=scope, key=key)
        else:
            request = settings_pb2.LockSettingRequest(scope=scope, key=key)
        await getattr(stubs.settings, rpc)(request, metadata=md)

    return lock


def _apply_changes(scope, dry_run=False):
    async def apply(stubs, world, whose, key, md):
        change = settings_pb2.SettingChange(
            operation=settings_pb2.CHANGE_OPERATION_PUT,
            scope=scope(world, whose),
            key=key,
            type=settings_pb2.SETTING_TYPE_INTEGER,
            value=settings_pb2.SettingValue(integer_value=3),
        )
        await stubs.settings.ApplyChanges(
            settings_pb2.ApplyChangesRequest(changes=[change], dry_run=dry_run), metadata=md
        )

    return apply


# operation → {(role, own/other): expected code}
SCOPED = {
    "GetSettings(account)": (_get_settings_account, {Role.VIEWER: "own", Role.ADMIN: "own"}),
    "GetSettings(retailer)": (_get_settings_retailer, {Role.VIEWER: "own", Role.ADMIN: "own"}),
    "PutSetting(account)": (_put_account, {Role.ADMIN: "own"}),
    "PutSetting(retailer)": (_put_retailer, {Role.ADMIN: "own"}),
    "GetAccount": (_get_account, {Role.VIEWER: "own", Role.ADMIN: "own"}),
    "GetRetailer": (_get_retailer, {Role.VIEWER: "own", Role.ADMIN: "own"}),
    "CreateRetailer": (_create_retailer, {Role.ADMIN: "own"}),
    "DeleteSetting(account)": (_delete(_account_scope), {Role.ADMIN: "own"}),
    "DeleteSetting(retailer)": (_delete(_retailer_scope), {Role.ADMIN: "own"}),
    "ListSettings(account)": (
        _list_settings(_account_scope),
        {Role.VIEWER: "own", Role.ADMIN: "own"},
    ),
    "ListSettings(retailer)": (
        _list_settings(_retailer_scope),
        {Role.VIEWER: "own", Role.ADMIN: "own"},
    ),
    "ExplainSettings(account)": (_explain(_account_scope), {Role.VIEWER: "own", Role.ADMIN: "own"}),
    "ExplainSettings(retailer)": (
        _explain(_retailer_scope),
        {Role.VIEWER: "own", Role.ADMIN: "own"},
    ),
    "ListChanges(account)": (
        _list_changes(_account_scope),
        {Role.VIEWER: "own", Role.ADMIN: "own"},
    ),
    "ListChanges(retailer)": (
        _list_changes(_retailer_scope),
        {Role.VIEWER: "own", Role.ADMIN: "own"},
    ),
    "RestoreSettings(account)": (
        _restore(settings_pb2.SETTING_LEVEL_ACCOUNT, _account_scope),
        {Role.ADMIN: "own"},
    ),
    "RestoreSettings(retailer)": (
        _restore(settings_pb2.SETTING_LEVEL_RETAILER, _retailer_scope),
        {Role.ADMIN: "own"},
    ),
    "GetSettings(at_revision)": (_get_at_revision, {Role.VIEWER: "own", Role.ADMIN: "own"}),
    "LockSetting(account)": (_lock("LockSetting"), {Role.ADMIN: "own"}),
    "UnlockSetting(account)": (_lock("UnlockSetting"), {Role.ADMIN: "own"}),
    "ApplyChanges(account)": (_apply_changes(_account_scope), {Role.ADMIN: "own"}),
    "ApplyChanges(retailer)": (_apply_changes(_retailer_scope), {Role.ADMIN: "own"}),
    # A dry run writes nothing, yet it reads as a write would: authorised as one.
    "ApplyChanges(retailer, dry run)": (
        _apply_changes(_retailer_scope, dry_run=True),
        {Role.ADMIN: "own"},
    ),
}


def expected_code(allowed: dict[Role, str], role: Role, whose: str) -> grpc.StatusCode:
    """The code a cell of SCOPED must answer (the REST matrix reuses it)."""
    if role is Role.PLATFORM:
        return OK  # PLATFORM acts on any account
    return OK if allowed.get(role) == whose else DENIED


SCOPED_CELLS = [
    pytest.param(op, role, whose, expected_code(allowed, role, whose), id=f"{op}-{role}-{whose}")
    for op, (_, allowed) in SCOPED.items()
    for role in Role
    for whose in ("own", "other")
]


@dataclass
class Stubs:
    settings: object
    accounts: object
    integrations: object


@pytest.fixture
def stubs(settings_stub, accounts_stub, integrations_stub) -> Stubs:
    return Stubs(settings_stub, accounts_stub, integrations_stub)


@pytest.fixture
async def world(new_account, new_retailer) -> World:
    own, other = await new_account(), await new_account()
    return World(own, await new_retailer(own), other, await new_retailer(other))


async def _code(call) -> grpc.StatusCode:
    try:
        await call
    except grpc.aio.AioRpcError as error:
        if error.code() is DENIED:
            assert error_info(error).reason == "PERMISSION_DENIED"
        return error.code()
    return OK


@pytest.mark.parametrize(("operation", "role", "whose", "expected"), SCOPED_CELLS)
async def test_scoped_operation(
    stubs, world, make_caller, unique_key, operation, role, whose, expected
):
    caller = await make_caller(role, account_id=world.own_account)
    run, _ = SCOPED[operation]

    code = await _code(run(stubs, world, whose, unique_key(), caller.metadata))

    assert code == expected


@pytest.mark.parametrize(
    ("role", "expected"), [(Role.VIEWER, DENIED), (Role.ADMIN, DENIED), (Role.PLATFORM, OK)]
)
async def test_set_global(settings_stub, make_caller, unique_key, role, expected):
    caller = await make_caller(role)
    request = settings_pb2.SetGlobalRequest(
        key=unique_key(),
        type=settings_pb2.SETTING_TYPE_BOOLEAN,
        value=settings_pb2.SettingValue(boolean_value=True),
    )
    assert await _code(settings_stub.SetGlobal(request, metadata=caller.metadata)) == expected


@pytest.mark.parametrize(
    ("role", "expected"), [(Role.VIEWER, DENIED), (Role.ADMIN, DENIED), (Role.PLATFORM, OK)]
)
@pytest.mark.parametrize(
    "operation",
    [
        "DeleteGlobal",
        "RestoreSettings(global)",
        "LockSetting(global)",
        "UnlockSetting(global)",
        "ApplyChanges(global)",
    ],
)
async def test_global_history_writes(
    settings_stub, make_caller, unique_key, operation, role, expected
):
    caller = await make_caller(role)
    key = unique_key()
    written = await settings_stub.SetGlobal(
        settings_pb2.SetGlobalRequest(
            key=key,
            type=settings_pb2.SETTING_TYPE_BOOLEAN,
            value=settings_pb2.SettingValue(boolean_value=True),
        )
    )
    if operation == "DeleteGlobal":
        call = settings_stub.DeleteGlobal(
            settings_pb2.DeleteGlobalRequest(key=key), metadata=caller.metadata
        )
    elif operation == "LockSetting(global)":
        call = settings_stub.LockSetting(
            settings_pb2.LockSettingRequest(key=key), metadata=caller.metadata
        )
    elif operation == "UnlockSetting(global)":
        await settings_stub.LockSetting(settings_pb2.LockSettingRequest(key=key))
        call = settings_stub.UnlockSetting(
            settings_pb2.UnlockSettingRequest(key=key), metadata=caller.metadata
        )
    elif operation == "ApplyChanges(global)":
        change = settings_pb2.SettingChange(operation=settings_pb2.CHANGE_OPERATION_DELETE, key=key)
        call = settings_stub.ApplyChanges(
            settings_pb2.ApplyChangesRequest(changes=[change]), metadata=caller.metadata
        )
    else:
        call = settings_stub.RestoreSettings(
            settings_pb2.RestoreSettingsRequest(
                level=settings_pb2.SETTING_LEVEL_GLOBAL, keys=[key], revision=written.revision - 1
            ),
            metadata=caller.metadata,
        )
    assert await _code(call) == expected


@pytest.mark.parametrize(
    ("role", "expected"), [(Role.VIEWER, DENIED), (Role.ADMIN, DENIED), (Role.PLATFORM, OK)]
)
async def test_create_account(accounts_stub, make_caller, next_id, role, expected):
    caller = await make_caller(role)
    request = accounts_pb2.CreateAccountRequest(account_id=next_id(), display_name="New")
    assert await _code(accounts_stub.CreateAccount(request, metadata=caller.metadata)) == expected


# Integration settings are the caller's account's: only who asks matters.
INTEGRATION_SETTINGS = {Role.VIEWER: DENIED, Role.ADMIN: OK, Role.PLATFORM: OK}


@pytest.mark.parametrize(("role", "expected"), INTEGRATION_SETTINGS.items())
@pytest.mark.parametrize("operation", ["SetGlobalSettings", "GetGlobalSettings"])
async def test_integration_settings(integrations_stub, make_caller, operation, role, expected):
    caller = await make_caller(role)
    if operation == "SetGlobalSettings":
        call = integrations_stub.SetGlobalSettings(
            integrations_pb2.SetGlobalSettingsRequest(
                integration_name="slack",
                integration={"string_value": '{"enabled": false}'},
                data_type=integrations_pb2.INTEGRATION_DATA_TYPE_STRINGIFY,
            ),
            metadata=caller.metadata,
        )
    else:
        call = integrations_stub.GetGlobalSettings(
            integrations_pb2.GetGlobalSettingsRequest(settings_key="slack"),
            metadata=caller.metadata,
        )
    assert await _code(call) == expected


@pytest.mark.parametrize("role", [Role.VIEWER, Role.ADMIN])
@pytest.mark.parametrize("scope_field", ["account_id", "retailer_id"])
async def test_unknown_scope_is_denied_like_another_accounts(
    settings_stub, world, make_caller, next_id, role, scope_field
):
    caller = await make_caller(role, account_id=world.own_account)
    existing = world.other_account if scope_field == "account_id" else world.other_retailer
    codes = []
    for scope_id in (existing, next_id()):
        request = settings_pb2.GetSettingsRequest(
            scope=settings_pb2.Scope(**{scope_field: scope_id}), keys=["ANY.KEY"]
        )
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await settings_stub.GetSettings(request, metadata=caller.metadata)
        codes.append((raised.value.code(), raised.value.details()))

    assert codes[0] == codes[1]
    assert codes[0][0] == DENIED


@pytest.mark.parametrize("scope_field", ["account_id", "retailer_id"])
async def test_platform_learns_an_unknown_scope_does_not_exist(
    settings_stub, make_caller, next_id, scope_field
):
    caller = await make_caller(Role.PLATFORM)
    request = settings_pb2.GetSettingsRequest(
        scope=settings_pb2.Scope(**{scope_field: next_id()}), keys=["ANY.KEY"]
    )
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await settings_stub.GetSettings(request, metadata=caller.metadata)
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND


async def test_admin_reads_its_own_retailer_but_not_another_accounts(
    settings_stub, world, make_caller, unique_key
):
    key = unique_key()
    for retailer in (world.own_retailer, world.other_retailer):
        await settings_stub.PutSetting(
            settings_pb2.PutSettingRequest(
                scope=settings_pb2.Scope(retailer_id=retailer),
                key=key,
                type=settings_pb2.SETTING_TYPE_STRING,
                value=settings_pb2.SettingValue(string_value=f"value of {retailer}"),
            )
        )
    admin = await make_caller(Role.ADMIN, account_id=world.own_account)

    own = await settings_stub.GetSettings(
        settings_pb2.GetSettingsRequest(
            scope=settings_pb2.Scope(retailer_id=world.own_retailer), keys=[key]
        ),
        metadata=admin.metadata,
    )
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await settings_stub.GetSettings(
            settings_pb2.GetSettingsRequest(
                scope=settings_pb2.Scope(retailer_id=world.other_retailer), keys=[key]
            ),
            metadata=admin.metadata,
        )

    assert [s.value.string_value for s in own.settings] == [f"value of {world.own_retailer}"]
    assert raised.value.code() == DENIED
    assert str(world.other_retailer) not in raised.value.details()


@pytest.mark.parametrize(("role", "whose"), [(Role.VIEWER, "own"), (Role.ADMIN, "other")])
async def test_refused_writes_write_nothing(db, stubs, world, make_caller, unique_key, role, whose):
    caller = await make_caller(role, account_id=world.own_account)
    key = unique_key()
    for put in (_put_account, _put_retailer):
        assert await _code(put(stubs, world, whose, key, caller.metadata)) == DENIED
    assert await db.fetchval("SELECT count(*) FROM settings WHERE key = $1", key) == 0


async def test_viewer_cannot_write_but_can_read_what_an_admin_wrote(
    settings_stub, world, make_caller, unique_key
):
    viewer = await make_caller(Role.VIEWER, account_id=world.own_account)
    admin = await make_caller(Role.ADMIN, account_id=world.own_account)
    key = unique_key()
    request = settings_pb2.PutSettingRequest(
        scope=settings_pb2.Scope(account_id=world.own_account),
        key=key,
        type=settings_pb2.SETTING_TYPE_INTEGER,
        value=settings_pb2.SettingValue(integer_value=3),
    )
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await settings_stub.PutSetting(request, metadata=viewer.metadata)
    await settings_stub.PutSetting(request, metadata=admin.metadata)
    read = await settings_stub.GetSettings(
        settings_pb2.GetSettingsRequest(
            scope=settings_pb2.Scope(retailer_id=world.own_retailer), keys=[key]
        ),
        metadata=viewer.metadata,
    )

    assert raised.value.code() == DENIED
    assert error_info(raised.value).metadata["permission"] == "SETTINGS_EDIT"
    assert [s.value.integer_value for s in read.settings] == [3]
