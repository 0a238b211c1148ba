"""Accounts and the retailers under them: creating and reading, with their checks.

Ids are positive; ``None`` means the server chooses one. A display name is 1-200
characters of storable text, not only spaces. Ids are checked before the caller's
permission (a wrong id is wrong whoever asks), names after it. Listings page by id
(keyset: a page is one index range scan whatever its offset); a page token names the
listing it continues and the last id it returned. Retailer ids are
global, so only PLATFORM may choose one: letting an account's ADMIN choose would
tell it, by ALREADY_EXISTS, which ids other accounts hold.
"""

from __future__ import annotations

import logging
from typing import Any, TypeVar

from tierset.core import authz, errors
from tierset.core.authz import Permission, Principal
from tierset.core.reasons import Reason
from tierset.core.values import Level, unstorable_text
from tierset.services.history import check_page_size
from tierset.services.scopes import authorize_scope
from tierset.store.database import AccountRow, RetailerRow, ScopeRef, Store
from tierset.store.revisions import decode_token, encode_token

log = logging.getLogger(__name__)

MAX_NAME_CHARS = 200


def check_name(name: str, field: str = "display_name") -> str:
    """A display name, or INVALID_ARGUMENT naming `field`."""
    if not name.strip():
        raise errors.bad_field(field, f"{field} is required")
    if len(name) > MAX_NAME_CHARS:
        raise errors.bad_field(field, f"{field} must be at most {MAX_NAME_CHARS} characters")
    problem = unstorable_text(name)
    if problem:
        raise errors.bad_field(field, f"{field} {problem}")
    return name


def check_id(value: int | None, field: str, *, optional: bool = False) -> int | None:
    """A positive id; None only where `optional` (the server chooses)."""
    if value is None and optional:
        return None
    if value is None or value <= 0:
        raise errors.bad_field(field, f"{field} must be a positive integer")
    return value


def _required_id(value: int, field: str) -> int:
    checked = check_id(value, field)
    assert checked is not None
    return checked


class AccountService:
    """Accounts and their retailers; precedence reads a retailer's account from here."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def create_account(
        self, principal: Principal, account_id: int | None, display_name: str
    ) -> AccountRow:
        """A new account (PLATFORM only); `account_id` None lets the server choose."""
        authz.require_platform(principal)
        chosen = check_id(account_id, "account_id", optional=True)
        row = await self._store.create_account(chosen, check_name(display_name))
        log.info("account %d created by %s", row.id, principal.username)
        return row

    async def get_account(self, principal: Principal, account_id: int) -> AccountRow:
        """An account the caller may view."""
        checked = _required_id(account_id, "account_id")
        authz.require(principal, Permission.SETTINGS_VIEW, checked)
        return await self._store.get_account(checked)

    async def create_retailer(
        self,
        principal: Principal,
        retailer_id: int | None,
        account_id: int,
        display_name: str,
    ) -> RetailerRow:
        """A new retailer of `account_id`; only PLATFORM may choose its id."""
        chosen = check_id(retailer_id, "retailer_id", optional=True)
        owner = _required_id(account_id, "account_id")
        authz.require(principal, Permission.RETAILERS_MANAGE, owner)
        if chosen is not None:
            authz.require_platform(principal)
        row = await self._store.create_retailer(chosen, owner, check_name(display_name))
        log.info("retailer %d of account %d created by %s", row.id, owner, principal.username)
        return row

    async def get_retailer(self, principal: Principal, retailer_id: int) -> RetailerRow:
        """A retailer the caller may view (its account's settings)."""
        checked = _required_id(retailer_id, "retailer_id")
        await authorize_scope(
            principal, Permission.SETTINGS_VIEW, ScopeRef(Level.RETAILER, checked), self._store
        )
        return await self._store.get_retailer(checked)

    async def list_accounts(
        self, principal: Principal, page_size: int, page_token: str
    ) -> tuple[list[AccountRow], str]:
        """A page of every account (PLATFORM only) and the next page's token ("" at the end)."""
        size = check_page_size(page_size)
        authz.require_platform(principal)
        after: Any = 0
        if page_token:
            (after,) = decode_token("accounts", page_token, (int,))
        rows = await self._store.list_accounts(after, size + 1)
        return _page("accounts", rows, size, [])

    async def list_retailers(
        self, principal: Principal, account_id: int, page_size: int, page_token: str
    ) -> tuple[list[RetailerRow], str]:
        """A page of `account_id`'s retailers and the next page's token ("" at the end)."""
        owner = _required_id(account_id, "account_id")
        size = check_page_size(page_size)
        authz.require(principal, Permission.SETTINGS_VIEW, owner)
        after: Any = 0
        if page_token:
            token_owner, after = decode_token("retailers", page_token, (int, int))
            if token_owner != owner:
                raise errors.bad_field(
                    "page_token",
                    "page_token belongs to another account's listing",
                    Reason.INVALID_PAGE_TOKEN,
                )
        if principal.acts_on_any_account:
            # An unknown account is NOT_FOUND, not an empty list; only PLATFORM gets this far
            # with an account other than its own (the caller's own account exists).
            await self._store.get_account(owner)
        rows = await self._store.list_retailers(owner, after, size + 1)
        return _page("retailers", rows, size, [owner])


_Row = TypeVar("_Row", AccountRow, RetailerRow)


def _page(kind: str, rows: list[_Row], size: int, bound: list[object]) -> tuple[list[_Row], str]:
    """The first `size` of `rows` (fetched one over) and the token continuing after them."""
    if len(rows) <= size:
        return rows, ""
    page = rows[:size]
    return page, encode_token(kind, [*bound, page[-1].id])
