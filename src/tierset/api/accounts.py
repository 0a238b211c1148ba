"""gRPC adapter of AccountService: accounts and the retailers under them.

The checks (ids, display names, who may create what) live in
:mod:`tierset.services.accounts`; a proto id of 0 means "the server chooses".
"""

from __future__ import annotations

import grpc

from tierset.core import authz
from tierset.services import accounts as service
from tierset.store.database import AccountRow, RetailerRow, Store
from tierset.v1 import accounts_pb2, accounts_pb2_grpc


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


def _chosen(proto_id: int) -> int | None:
    # proto3 has no "absent" for an int64: 0 asks the server to choose.
    return None if proto_id == 0 else proto_id


class AccountService(accounts_pb2_grpc.AccountServiceServicer):
    """Accounts and their retailers; precedence reads a retailer's account from here."""

    def __init__(self, store: Store) -> None:
        self._accounts = service.AccountService(store)

    async def CreateAccount(
        self, request: accounts_pb2.CreateAccountRequest, context: grpc.aio.ServicerContext
    ) -> accounts_pb2.CreateAccountResponse:
        row = await self._accounts.create_account(
            authz.current_principal(), _chosen(request.account_id), request.display_name
        )
        return accounts_pb2.CreateAccountResponse(account=account_to_proto(row))

    async def GetAccount(
        self, request: accounts_pb2.GetAccountRequest, context: grpc.aio.ServicerContext
    ) -> accounts_pb2.GetAccountResponse:
        row = await self._accounts.get_account(authz.current_principal(), request.account_id)
        return accounts_pb2.GetAccountResponse(account=account_to_proto(row))

    async def CreateRetailer(
        self, request: accounts_pb2.CreateRetailerRequest, context: grpc.aio.ServicerContext
    ) -> accounts_pb2.CreateRetailerResponse:
        row = await self._accounts.create_retailer(
            authz.current_principal(),
            _chosen(request.retailer_id),
            request.account_id,
            request.display_name,
        )
        return accounts_pb2.CreateRetailerResponse(retailer=retailer_to_proto(row))

    async def GetRetailer(
        self, request: accounts_pb2.GetRetailerRequest, context: grpc.aio.ServicerContext
    ) -> accounts_pb2.GetRetailerResponse:
        row = await self._accounts.get_retailer(authz.current_principal(), request.retailer_id)
        return accounts_pb2.GetRetailerResponse(retailer=retailer_to_proto(row))

    async def ListAccounts(
        self, request: accounts_pb2.ListAccountsRequest, context: grpc.aio.ServicerContext
    ) -> accounts_pb2.ListAccountsResponse:
        rows, token = await self._accounts.list_accounts(
            authz.current_principal(), request.page_size, request.page_token
        )
        return accounts_pb2.ListAccountsResponse(
            accounts=[account_to_proto(row) for row in rows], next_page_token=token
        )

    async def ListRetailers(
        self, request: accounts_pb2.ListRetailersRequest, context: grpc.aio.ServicerContext
    ) -> accounts_pb2.ListRetailersResponse:
        rows, token = await self._accounts.list_retailers(
            authz.current_principal(), request.account_id, request.page_size, request.page_token
        )
        return accounts_pb2.ListRetailersResponse(
            retailers=[retailer_to_proto(row) for row in rows], next_page_token=token
        )
