"""First start of ``make run``: a demo account, retailer and users, and their credentials.

Runs only while the database has no user at all. The credentials are written to
``<data dir>/demo-credentials.env`` (mode 0600), so that ``source
.data/demo-credentials.env`` makes the README's sample calls work. They are
never printed: the output of a background ``make run`` lands in log files, so
the banner says only where the file is and how to load it.

All of it is one transaction, and the file is written before it commits: a
failure anywhere leaves no user behind, so the next start finds none and does
it all again (overwriting a file whose secrets were never committed). An
advisory lock makes two first starts at once take turns.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import os
import shlex
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg

from tierset.auth.credentials import CredentialStore, Kind, new_secret
from tierset.core import errors
from tierset.core.authz import Role
from tierset.core.reasons import Reason
from tierset.ops.config import Config
from tierset.store.database import Store, query

DEMO_ACCOUNT_ID = 1111
DEMO_RETAILER_ID = 2222
PLATFORM_ACCOUNT_ID = 1
DEMO_ADMIN = "demo-admin"
DEMO_PLATFORM = "demo-platform"
DEMO_CLIENT_ID = "demo-client"
CREDENTIALS_FILE = "demo-credentials.env"


async def _ensure_scopes(connection: asyncpg.Connection) -> None:
    """The demo scopes, keeping any that exist already (made by an admin command)."""
    store = Store(connection)
    for account_id, name in (
        (DEMO_ACCOUNT_ID, "Demo account"),
        (PLATFORM_ACCOUNT_ID, "Platform operations"),
    ):
        await _create_unless_exists(
            connection,
            functools.partial(store.create_account, account_id, name),
            Reason.ACCOUNT_EXISTS,
        )
    await _create_unless_exists(
        connection,
        functools.partial(
            store.create_retailer, DEMO_RETAILER_ID, DEMO_ACCOUNT_ID, "Demo retailer"
        ),
        Reason.RETAILER_EXISTS,
    )


async def _create_unless_exists(
    connection: asyncpg.Connection, create: Callable[[], Awaitable[object]], exists_reason: str
) -> None:
    # In a savepoint: a refused insert would otherwise abort the whole first start.
    try:
        async with connection.transaction():
            await create()
    except errors.TiersetError as error:
        if error.reason != exists_reason:
            raise


async def bootstrap_demo(pool: asyncpg.Pool, data_dir: Path, grpc_address: str) -> Path | None:
    """Creates the demo set-up unless any user exists; returns the credentials file."""
    async with pool.acquire() as connection, connection.transaction():
        await connection.execute(query("lock_demo_bootstrap"))
        credentials = CredentialStore(connection)
        if await credentials.count_users() > 0:
            return None
        await _ensure_scopes(connection)
        values = await _create_demo_credentials(credentials, grpc_address)
        path = await asyncio.to_thread(write_credentials_file, data_dir, values)
    print(_instructions(path, grpc_address), flush=True)
    return path


async def _create_demo_credentials(
    credentials: CredentialStore, grpc_address: str
) -> dict[str, str]:
    """The demo users and their credentials, as the variables of the credentials file."""
    password = new_secret("")
    admin = await credentials.create_user(
        DEMO_ACCOUNT_ID, DEMO_ADMIN, password, frozenset({Role.ADMIN})
    )
    # The platform operator is not a member of a customer's account: what it keeps per
    # account (its integration settings) must not land in that customer's.
    platform = await credentials.create_user(
        PLATFORM_ACCOUNT_ID, DEMO_PLATFORM, None, frozenset({Role.PLATFORM})
    )
    token = await credentials.issue(admin.id, Kind.API_TOKEN, name="demo")
    platform_token = await credentials.issue(platform.id, Kind.API_TOKEN, name="demo")
    app_password = await credentials.issue(admin.id, Kind.APP_PASSWORD, name="demo")
    client_id, client_secret = await credentials.create_oauth_client(DEMO_CLIENT_ID, "Demo client")
    basic = base64.b64encode(f"{DEMO_ADMIN}:{app_password.secret}".encode()).decode()
    return {
        "TIERSET_ADDRESS": grpc_address,
        "TIERSET_ACCOUNT_ID": str(DEMO_ACCOUNT_ID),
        "TIERSET_RETAILER_ID": str(DEMO_RETAILER_ID),
        "TIERSET_USERNAME": DEMO_ADMIN,
        "TIERSET_PASSWORD": password,
        "TIERSET_TOKEN": token.secret,
        "TIERSET_PLATFORM_TOKEN": platform_token.secret,
        "TIERSET_APP_PASSWORD": app_password.secret,
        "TIERSET_BASIC": basic,
        "TIERSET_CLIENT_ID": client_id,
        "TIERSET_CLIENT_SECRET": client_secret,
    }


def console_client_env(config: Config, data_dir: Path) -> dict[str, str]:
    """The web console's OAuth client for `tierset dev`'s gateway: the demo client from the
    credentials file, unless TIERSET_CONSOLE_CLIENT_ID is configured (or there is no file)."""
    path = data_dir / CREDENTIALS_FILE
    if config.console_client_id or not path.exists():
        return {}
    found: dict[str, str] = {}
    for line in path.read_text().splitlines():
        words = shlex.split(line, comments=True)
        if len(words) == 2 and words[0] == "export" and "=" in words[1]:
            name, _, value = words[1].partition("=")
            found[name] = value
    if not (found.get("TIERSET_CLIENT_ID") and found.get("TIERSET_CLIENT_SECRET")):
        return {}
    return {
        "TIERSET_CONSOLE_CLIENT_ID": found["TIERSET_CLIENT_ID"],
        "TIERSET_CONSOLE_CLIENT_SECRET": found["TIERSET_CLIENT_SECRET"],
    }


def write_credentials_file(data_dir: Path, values: dict[str, str]) -> Path:
    """Writes the demo credentials as shell exports, readable by the owner only."""
    path = data_dir / CREDENTIALS_FILE
    data_dir.mkdir(parents=True, exist_ok=True)
    # Created 0600 from the start: the secrets are never readable by others.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as out:
        out.write(
            "# tierset demo credentials, written by the first `make run`. Keep them private.\n"
            f"# {DEMO_ADMIN} is ADMIN of account {DEMO_ACCOUNT_ID} (TIERSET_TOKEN, the"
            " application password, the password grant);\n"
            f"# {DEMO_PLATFORM} is PLATFORM (TIERSET_PLATFORM_TOKEN: GLOBAL settings, accounts).\n"
        )
        for name, value in values.items():
            out.write(f"export {name}={shlex.quote(value)}\n")
    path.chmod(0o600)
    return path


def _instructions(path: Path, grpc_address: str) -> str:
    """What the first start prints: where the credentials are, never the credentials."""
    return f"""
================ tierset: first start ================
Created account {DEMO_ACCOUNT_ID}, retailer {DEMO_RETAILER_ID}, users {DEMO_ADMIN} (ADMIN)
and {DEMO_PLATFORM} (PLATFORM), and their credentials. They are never printed;
they are in this file, readable by you only (mode 0600). Load them with:

  source {path}

gRPC: send the metadata  authorization: Bearer $TIERSET_TOKEN
  grpcurl -plaintext -H "authorization: Bearer $TIERSET_TOKEN" \\
    -d '{{"scope": {{"retailer_id": {DEMO_RETAILER_ID}}}, "keys": ["PAYMENT.PROVIDER"]}}' \\
    {grpc_address} tierset.v1.SettingsService/GetSettings
REST: send the same header (Authorization: Bearer $TIERSET_TOKEN), or HTTP Basic
  with {DEMO_ADMIN} and $TIERSET_APP_PASSWORD (Authorization: Basic $TIERSET_BASIC),
  or get a token from POST /oauth/token (grant_type=password, username, password,
  client_id=$TIERSET_CLIENT_ID, client_secret, scope=api).
PLATFORM calls (GLOBAL settings, new accounts) use $TIERSET_PLATFORM_TOKEN.
======================================================
"""
