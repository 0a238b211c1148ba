"""gRPC handlers of AccountService: accounts and the retailers under them."""

from __future__ import annotations

import grpc

from tierset.core import authz, errors
from tierset.core.authz import Permission
from tierset.core.values import Level, unstorable_text
from tierset.store.database import AccountRow, RetailerRow, ScopeRef, Store
from tierset.v1 import accounts_pb2, accounts_pb2_grpc

MAX_NAME_CHARS = 200


def _check_name(name: str) -> str:
    if not name.strip():
        raise errors.bad_field("display_name", "display_name is required")
    if len(name) > MAX_NAME_CHARS:
        raise errors.bad_field(
            "display_name", f"display_name must be at most {MAX_NAME_CHARS} characters"
        )
    problem = unstorable_text(name)
    if problem:
        raise errors.bad_field("display_name", f"display_name {problem}")
    return name


def _check_id(value: int, field: str, *, optional: bool = False) -> int | None:
    if optional and value == 0:
        return None
    if value <= 0:
        raise errors.bad_field(field, f"{field} must be a positive integer")
    return value


def account_to_proto(row: AccountRow) -> accounts_pb2.Account:
    """An account as the API shows it."""
    message = accounts_pb2.Account(id=row.id, display_name=row.display_name)
    message.create_time.FromDatetime(row.create_time)
    return message


def retailer_to_proto(row: RetailerRow) -> accounts_pb2.Retailer:
    """A retailer as the API shows it."""
    message = accounts_pb2.Retailer(
        id=row.id, account_id=row.account_id, display_name=row.display_name
    )
    message.create_time.FromDatetime(row.create_time)
    return message


class AccountService(accounts_pb2_grpc.AccountServiceServicer):
    """Accounts and their retailers; precedence reads a retailer's account from here."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def CreateAccount(
        self, request: accounts_pb2.CreateAccountRequest, context: grpc.aio.ServicerContext
    ) -> accounts_pb2.CreateAccountResponse:
        authz.require_platform(authz.current_principal())
        account_id = _check_id(request.account_id, "account_id", optional=True)
        row = await self._store.create_account(account_id, _check_name(request.display_name))
        return accounts_pb2.CreateAccountResponse(account=account_to_proto(row))

    async def GetAccount(
        self, request: accounts_pb2.GetAccountRequest, context: grpc.aio.ServicerContext
    ) -> accounts_pb2.GetAccountResponse:
        account_id = _check_id(request.account_id, "account_id")
        assert account_id is not None
        authz.require(authz.current_principal(), Permission.SETTINGS_VIEW, account_id)
        row = await self._store.get_account(account_id)
        return accounts_pb2.GetAccountResponse(account=account_to_proto(row))

    async def CreateRetailer(
        self, request: accounts_pb2.CreateRetailerRequest, context: grpc.aio.ServicerContext
    ) -> accounts_pb2.CreateRetailerResponse:
        retailer_id = _check_id(request.retailer_id, "retailer_id", optional=True)
        account_id = _check_id(request.account_id, "account_id")
        assert account_id is not None
        principal = authz.current_principal()
        authz.require(principal, Permission.RETAILERS_MANAGE, account_id)
        if retailer_id is not None:
            # Retailer ids are global: letting an account's ADMIN choose one would tell it,
            # by ALREADY_EXISTS, which ids other accounts hold. Only PLATFORM chooses ids.
            authz.require_platform(principal)
        row = await self._store.create_retailer(
            retailer_id, account_id, _check_name(request.display_name)
        )
        return accounts_pb2.CreateRetailerResponse(retailer=retailer_to_proto(row))

    async def GetRetailer(
        self, request: accounts_pb2.GetRetailerRequest, context: grpc.aio.ServicerContext
    ) -> accounts_pb2.GetRetailerResponse:
        retailer_id = _check_id(request.retailer_id, "retailer_id")
        assert retailer_id is not None
        await authz.authorize_scope(
            authz.current_principal(),
            Permission.SETTINGS_VIEW,
            ScopeRef(Level.RETAILER, retailer_id),
            self._store,
        )
        row = await self._store.get_retailer(retailer_id)
        return accounts_pb2.GetRetailerResponse(retailer=retailer_to_proto(row))
