"""The authenticator's cache, keyed by the ``authorization`` value as sent.

A cached Bearer call is answered from one dict lookup (no parsing, no digest, no
query), and that cache keeps the old guarantees: a revocation empties it at once in
this process, every spelling of a revoked secret included; losing the revocation
listener empties it whole. Against the real credential store and PostgreSQL; lookups
are counted by a subclass of the real store.
"""

from __future__ import annotations

import base64

import pytest

from tierset.auth.authenticator import Authenticator
from tierset.auth.credentials import CredentialStore, Kind
from tierset.core import errors
from tierset.core.authz import Role


class _CountedLookups(CredentialStore):
    """The real credential store, counting the lookups that reach the database."""

    def __init__(self, pool) -> None:
        super().__init__(pool)
        self.lookups = 0

    async def principal_row(self, secret_digest):
        self.lookups += 1
        return await super().principal_row(secret_digest)


async def test_a_cached_bearer_call_queries_nothing_and_a_revocation_ends_it_at_once(
    make_caller, db
):
    caller = await make_caller(Role.VIEWER)
    credentials = _CountedLookups(db)
    authenticator = Authenticator(credentials, cache_seconds=60, cache_size=10)
    header = [f"Bearer {caller.token}"]
    first = await authenticator.authenticate(header)
    again = await authenticator.authenticate(header)
    assert again == first
    assert again.credential_id == caller.token_id
    assert credentials.lookups == 1  # the second call came from the cache

    authenticator.forget(await CredentialStore(db).revoke(caller.token_id, Kind.API_TOKEN))
    with pytest.raises(errors.TiersetError) as raised:
        await authenticator.authenticate(header)
    assert raised.value.reason == "CREDENTIALS_INVALID"
    assert credentials.lookups == 2  # asked the database again, which refused it


async def test_every_spelling_of_a_revoked_token_is_forgotten(make_caller, db):
    caller = await make_caller(Role.VIEWER)
    authenticator = Authenticator(_CountedLookups(db), cache_seconds=60, cache_size=10)
    spellings = [f"Bearer {caller.token}", f"bearer {caller.token}", f"  Bearer  {caller.token} "]
    for spelling in spellings:
        assert (await authenticator.authenticate([spelling])).credential_id == caller.token_id

    authenticator.forget(await CredentialStore(db).revoke(caller.token_id, Kind.API_TOKEN))
    for spelling in spellings:
        with pytest.raises(errors.TiersetError) as raised:
            await authenticator.authenticate([spelling])
        assert raised.value.reason == "CREDENTIALS_INVALID", spelling


async def test_losing_the_listener_empties_the_cache(make_caller, db):
    caller = await make_caller(Role.VIEWER)
    credentials = _CountedLookups(db)
    authenticator = Authenticator(credentials, cache_seconds=60, cache_size=10)
    header = [f"Bearer {caller.token}"]
    await authenticator.authenticate(header)
    # Revoked while the listener was down: the notification is lost, the cache emptied.
    await CredentialStore(db).revoke(caller.token_id, Kind.API_TOKEN)
    authenticator.forget_all()
    with pytest.raises(errors.TiersetError) as raised:
        await authenticator.authenticate(header)
    assert raised.value.reason == "CREDENTIALS_INVALID"
    assert credentials.lookups == 2


async def test_a_cached_header_is_still_refused_as_the_wrong_scheme(make_caller, db):
    caller = await make_caller(Role.VIEWER)
    authenticator = Authenticator(_CountedLookups(db), cache_seconds=60, cache_size=10)
    await authenticator.authenticate([f"Bearer {caller.token}"])
    # The same secret as a Basic password is another header: not a cache hit, and an API
    # token is never an application password.
    with pytest.raises(errors.TiersetError) as raised:
        await authenticator.authenticate([f"Basic {_basic(caller.username, caller.token)}"])
    assert raised.value.reason == "CREDENTIALS_INVALID"


def _basic(username: str, password: str) -> str:
    return base64.b64encode(f"{username}:{password}".encode()).decode()
