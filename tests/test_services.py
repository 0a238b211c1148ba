"""The service layer as the admin CLI calls it: the local operator, on the real database.

What gRPC shows of the services is covered by the RPC tests; this covers what only
the other door sees: the operator principal (PLATFORM's permissions, a name no user
can have, named in the logs) and that it gets the same checks as a gRPC caller.
"""

from __future__ import annotations

import logging
import uuid

import pytest

from tierset.auth.credentials import CredentialStore, Kind, check_username
from tierset.core import authz, errors
from tierset.core.authz import Principal, Role
from tierset.core.reasons import Reason
from tierset.core.values import TYPE_TO_PROTO, Level, SettingType
from tierset.services.accounts import AccountService
from tierset.services.credentials import CredentialService
from tierset.services.settings import IncomingValue, SettingsService
from tierset.store.database import ScopeRef, Store

JSON_TYPE = TYPE_TO_PROTO[SettingType.JSON]


def _viewer(account_id: int) -> Principal:
    return Principal(1, "someone", account_id, frozenset({Role.VIEWER}), "API_TOKEN", 1)


def _json(text: str) -> IncomingValue:
    return IncomingValue(len(text), lambda key, setting_type: text)


async def test_the_operator_may_do_what_platform_may_on_any_account(db, next_id):
    operator = authz.operator()
    accounts, settings = AccountService(Store(db)), SettingsService(Store(db))
    account = await accounts.create_account(operator, next_id(), "Operated")
    retailer = await accounts.create_retailer(operator, next_id(), account.id, "Shop")
    key = f"OPS.{uuid.uuid4().hex[:8].upper()}"
    await settings.set_global(operator, key, JSON_TYPE, _json('"g"'), None)
    await settings.put(
        operator, ScopeRef(Level.ACCOUNT, account.id), key, JSON_TYPE, _json('"a"'), None
    )
    resolution = await settings.resolve(operator, ScopeRef(Level.RETAILER, retailer.id), [key])
    assert [(s.key, s.level, s.value) for s in resolution.settings] == [(key, Level.ACCOUNT, '"a"')]
    # Not its own account's, and still allowed: it acts on any account.
    assert operator.acts_on_any_account and account.id != operator.account_id


def test_no_user_can_be_named_like_the_operator():
    with pytest.raises(errors.TiersetError) as refused:
        check_username(authz.operator().username)
    assert refused.value.reason is Reason.INVALID_ARGUMENT


async def test_the_operator_is_named_in_the_logs(db, next_id, caplog):
    caplog.set_level(logging.INFO, logger="tierset.services")
    account = await AccountService(Store(db)).create_account(authz.operator(), None, "Logged")
    assert f"account {account.id} created by local operator" in caplog.messages


@pytest.mark.parametrize(
    ("name", "description"),
    [
        ("", "display_name is required"),
        ("  ", "display_name is required"),
        ("nul\x00name", "display_name must not contain the NUL character (\\u0000)"),
    ],
)
async def test_the_operator_gets_the_checks_a_grpc_caller_gets(db, name, description):
    with pytest.raises(errors.TiersetError) as refused:
        await AccountService(Store(db)).create_account(authz.operator(), None, name)
    assert refused.value.code is errors.Code.INVALID_ARGUMENT
    assert [(v.field, v.description) for v in refused.value.violations] == [
        ("display_name", description)
    ]


async def test_credential_administration_is_platforms_alone(db, next_id):
    service = CredentialService(CredentialStore(db))
    viewer = _viewer(next_id())
    with pytest.raises(errors.TiersetError) as refused:
        await service.issue(viewer, "anyone", Kind.API_TOKEN, "x")
    assert (refused.value.code, refused.value.reason) == (
        errors.Code.PERMISSION_DENIED,
        Reason.PERMISSION_DENIED,
    )
    with pytest.raises(errors.TiersetError) as refused:
        await service.revoke(authz.operator(), Kind.APP_PASSWORD, 999_999_999)
    assert refused.value.reason is Reason.APP_PASSWORD_NOT_FOUND
