"""Accounts and retailers: a retailer belongs to exactly one existing account."""

from __future__ import annotations

import grpc
import pytest

from tests.helpers import field_violations
from tierset.core.authz import Role
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


async def test_list_accounts_pages_by_id(accounts_stub, new_account):
    made = [await new_account() for _ in range(3)]
    seen: list[int] = []
    token = ""
    while True:
        page = await accounts_stub.ListAccounts(
            accounts_pb2.ListAccountsRequest(page_size=2, page_token=token)
        )
        assert len(page.accounts) <= 2
        seen.extend(account.id for account in page.accounts)
        token = page.next_page_token
        if not token:
            break
    assert seen == sorted(seen) and len(seen) == len(set(seen))
    assert set(made) <= set(seen)


async def test_list_retailers_of_an_account(accounts_stub, new_account, new_retailer, make_caller):
    account, other = await new_account(), await new_account()
    retailers = [await new_retailer(account) for _ in range(3)]
    await new_retailer(other)
    first = await accounts_stub.ListRetailers(
        accounts_pb2.ListRetailersRequest(account_id=account, page_size=2)
    )
    rest = await accounts_stub.ListRetailers(
        accounts_pb2.ListRetailersRequest(account_id=account, page_token=first.next_page_token)
    )
    assert [r.id for r in [*first.retailers, *rest.retailers]] == retailers
    assert rest.next_page_token == ""
    # The token continues only its own account's listing.
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await accounts_stub.ListRetailers(
            accounts_pb2.ListRetailersRequest(account_id=other, page_token=first.next_page_token)
        )
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "page_token" in field_violations(raised.value)


async def test_listing_is_confined_to_the_callers_account(
    accounts_stub, new_account, new_retailer, make_caller, next_id
):
    viewer = await make_caller(Role.VIEWER)
    own = await new_retailer(viewer.account_id)
    listed = await accounts_stub.ListRetailers(
        accounts_pb2.ListRetailersRequest(account_id=viewer.account_id), metadata=viewer.metadata
    )
    assert [r.id for r in listed.retailers] == [own]
    refused = (
        accounts_stub.ListAccounts(accounts_pb2.ListAccountsRequest(), metadata=viewer.metadata),
        accounts_stub.ListRetailers(
            accounts_pb2.ListRetailersRequest(account_id=await new_account()),
            metadata=viewer.metadata,
        ),
        accounts_stub.ListRetailers(
            accounts_pb2.ListRetailersRequest(account_id=next_id()), metadata=viewer.metadata
        ),
    )
    for call in refused:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await call
        assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await accounts_stub.ListRetailers(accounts_pb2.ListRetailersRequest(account_id=next_id()))
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
