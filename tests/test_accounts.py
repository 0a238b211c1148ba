"""Accounts and retailers: a retailer belongs to exactly one existing account."""

from __future__ import annotations

import grpc
import pytest

from tests.helpers import field_violations
from tierset.v1 import accounts_pb2


async def test_create_and_get_account_and_retailer(accounts_stub, next_id):
    account_id, retailer_id = next_id(), next_id()
    created = await accounts_stub.CreateAccount(
        accounts_pb2.CreateAccountRequest(account_id=account_id, display_name="Acme")
    )
    registered = await accounts_stub.CreateRetailer(
        accounts_pb2.CreateRetailerRequest(
            retailer_id=retailer_id, account_id=account_id, display_name="Acme Sydney"
        )
    )

    account = (
        await accounts_stub.GetAccount(accounts_pb2.GetAccountRequest(account_id=account_id))
    ).account
    retailer = (
        await accounts_stub.GetRetailer(accounts_pb2.GetRetailerRequest(retailer_id=retailer_id))
    ).retailer
    assert account == created.account
    assert (retailer.id, retailer.account_id, retailer.display_name) == (
        retailer_id,
        account_id,
        "Acme Sydney",
    )
    assert retailer == registered.retailer


async def test_server_chooses_ids_when_asked(accounts_stub):
    first = await accounts_stub.CreateAccount(accounts_pb2.CreateAccountRequest(display_name="A"))
    second = await accounts_stub.CreateAccount(accounts_pb2.CreateAccountRequest(display_name="B"))
    assert 0 < first.account.id < second.account.id


async def test_duplicate_ids_already_exist(accounts_stub, new_account, new_retailer):
    account = await new_account()
    retailer = await new_retailer(account)
    for call in (
        accounts_stub.CreateAccount(
            accounts_pb2.CreateAccountRequest(account_id=account, display_name="again")
        ),
        accounts_stub.CreateRetailer(
            accounts_pb2.CreateRetailerRequest(
                retailer_id=retailer, account_id=account, display_name="again"
            )
        ),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await call
        assert raised.value.code() == grpc.StatusCode.ALREADY_EXISTS


async def test_retailer_of_unknown_account_is_not_found(accounts_stub, next_id):
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await accounts_stub.CreateRetailer(
            accounts_pb2.CreateRetailerRequest(account_id=next_id(), display_name="orphan")
        )
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(
    ("request_message", "field"),
    [
        (accounts_pb2.CreateAccountRequest(display_name=""), "display_name"),
        (accounts_pb2.CreateAccountRequest(account_id=-1, display_name="x"), "account_id"),
        (accounts_pb2.CreateAccountRequest(display_name="x" * 201), "display_name"),
        (accounts_pb2.CreateAccountRequest(display_name="a\x00b"), "display_name"),
    ],
)
async def test_bad_account_requests_are_invalid(accounts_stub, request_message, field):
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await accounts_stub.CreateAccount(request_message)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in field_violations(raised.value)


@pytest.mark.parametrize("call", ["GetAccount", "GetRetailer"])
async def test_unknown_ids_are_not_found(accounts_stub, next_id, call):
    request = (
        accounts_pb2.GetAccountRequest(account_id=next_id())
        if call == "GetAccount"
        else accounts_pb2.GetRetailerRequest(retailer_id=next_id())
    )
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await getattr(accounts_stub, call)(request)
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
