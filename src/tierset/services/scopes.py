"""Authorising on a scope: which account owns it, then the policy's check.

The policy (core.authz) is pure; the owner of a retailer is the store's to know,
so the services look it up here and pass it in. An account scope is owned by
itself, so a caller confined to its own account is refused without a database
round trip.
"""

from __future__ import annotations

from tierset.core import authz
from tierset.core.authz import Permission, Principal
from tierset.core.values import Level
from tierset.store.database import ScopeRef, Store


async def authorize_scope(
    principal: Principal, permission: Permission, scope: ScopeRef, store: Store
) -> None:
    """Checks `permission` on the account owning `scope` before anything is read or written."""
    if permission not in principal.permissions:
        raise authz.denied(permission)  # no need to ask the database whose scope it is
    if scope.level is Level.ACCOUNT:
        authz.require(principal, permission, scope.id)
    else:
        authz.require(principal, permission, await store.retailer_account(scope.id))
