"""`tierset serve` minus credential verification: the reference for what authentication costs.

Usage: like ``tierset serve`` (same environment). The server is built by the
product's own start_app with its call pipeline and handlers; only
Authenticator.authenticate is replaced by one that trusts every call as a fixed
PLATFORM caller, without parsing the header, hashing the secret or looking it
up. The pipeline still sets the caller on each call, as it must for the
handlers to run. Bench only: never a way to run tierset.
"""

from __future__ import annotations

from collections.abc import Callable

import uvloop

from tierset.api import server
from tierset.auth.authenticator import Authenticator
from tierset.core.authz import Principal, Role
from tierset.ops import logs
from tierset.ops.config import Config

TRUSTED = Principal(
    user_id=0,
    username="bench-trusted",
    account_id=1,
    roles=frozenset({Role.PLATFORM}),
    credential_kind="API_TOKEN",
    credential_id=0,
)


class TrustingAuthenticator(Authenticator):
    """Answers every call with TRUSTED: no parsing, no digest, no cache lookup."""

    # The pipeline's signature exactly: it passes the source too (one taking only `values`
    # failed every call with a TypeError, i.e. INTERNAL, and the pair with it).
    async def authenticate(
        self, values: list[str], source: str | Callable[[], str] = "unknown"
    ) -> Principal:
        return TRUSTED


if __name__ == "__main__":
    config = Config.from_env()
    logs.configure(config)
    server.Authenticator = TrustingAuthenticator  # type: ignore[misc]
    dsn = config.database_url.reveal() if config.database_url else None
    uvloop.run(server.serve(config, dsn))
