"""Integration settings: FluentCart's "Set Global Settings", per account.

"Global" means account-wide, as in a store: each account has its own
configuration per integration, and a caller only ever reaches its own
account's (reading them is management too: they hold API keys). A save that
sends a secret back masked, as a read showed it, keeps the stored secret.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tierset.core import authz, errors, integrations
from tierset.core.authz import Permission, Principal
from tierset.core.integrations import Integration
from tierset.store.database import Store


@dataclass(frozen=True)
class Saved:
    """A saved configuration: `config` is what the caller sent (masked secrets stay masked)."""

    entry: Integration
    integration_id: int
    created: bool
    config: dict[str, Any]


@dataclass(frozen=True)
class Current:
    """An account's configuration of one integration, secrets masked (id 0: never saved)."""

    entry: Integration
    integration_id: int
    config: dict[str, Any]


def _caller_account(principal: Principal) -> int:
    """The account whose integration settings the caller manages: its own."""
    authz.require(principal, Permission.INTEGRATIONS_MANAGE, principal.account_id)
    return principal.account_id


class IntegrationService:
    """Saves and reads integration configuration, checked against the catalogue."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def save(
        self,
        principal: Principal,
        name: str,
        integration_id: int,
        decode_config: Callable[[], dict[str, Any]],
    ) -> Saved:
        """Saves the configuration `decode_config` gives (it raises on a malformed one)."""
        account_id = _caller_account(principal)
        entry = integrations.lookup(name)
        if integration_id < 0:
            raise errors.bad_field("integration_id", "integration_id must be 0 or a saved id")
        config = integrations.validate_config(entry, decode_config())
        to_store = config
        if integrations.sends_back_masks(entry, config):
            stored = await self._store.get_integration(account_id, entry.name)
            if stored is not None:
                to_store = integrations.keep_masked_secrets(
                    entry, config, json.loads(stored.config)
                )
        saved = await self._store.save_integration(
            account_id, entry.name, json.dumps(to_store), integration_id
        )
        return Saved(entry, saved.id, saved.created, config)

    async def get(self, principal: Principal, name: str) -> Current:
        """The caller's account's configuration of `name`, or its defaults if never saved."""
        account_id = _caller_account(principal)
        entry = integrations.lookup(name)
        saved = await self._store.get_integration(account_id, entry.name)
        config = entry.defaults() if saved is None else json.loads(saved.config)
        return Current(entry, 0 if saved is None else saved.id, integrations.masked(entry, config))
