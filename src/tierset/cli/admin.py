"""The ``tierset`` administration commands: accounts, retailers, users, credentials, history,
and ``tierset check`` (keys stored with more than one type).

They talk straight to the database named by DATABASE_URL (or PG*), or to the
embedded PostgreSQL of ``make run`` when none is set, and apply pending
migrations first. The embedded one is found from any folder (TIERSET_DATA_DIR,
else the ``.data`` of the checkout holding the working folder; see
:mod:`tierset.ops.datadir`); a running server is used on whatever port it listens
on, a stopped one is started for the command and stopped after, and a missing
one is an error naming what to set: no command ever creates a database.
Every command goes through the service layer as the local operator
(:func:`tierset.core.authz.operator`, PLATFORM's permissions), so it gets the same
checks as a gRPC call: a refusal is one line on stderr naming the option at fault,
exit code 1 (2 for usage errors, from argparse). A secret is printed once, on
stdout, as ``NAME=value``; everything else goes to stderr. Revocations reach
running servers at once (PostgreSQL NOTIFY), or within TIERSET_AUTH_CACHE_SECONDS
at worst.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from tierset.auth.credentials import CredentialStore, Kind, new_secret
from tierset.core import authz, errors
from tierset.core.authz import Principal, Role
from tierset.ops.config import Config
from tierset.ops.datadir import embedded_data_dir
from tierset.ops.embedded import EmbeddedPostgres, EmbeddedPostgresError
from tierset.services.accounts import AccountService
from tierset.services.credentials import CredentialService
from tierset.services.definitions import KeyDefinitionsService
from tierset.services.history import HistoryService
from tierset.services.keydefs import Definitions
from tierset.store.database import Store
from tierset.store.definitions import DefinitionStore
from tierset.store.migrate import migrate

LIST_HEADER = "ID\tNAME\tCREATED\tSTATE"
COMPACT_COMMAND = "history compact"


@dataclass(frozen=True)
class Services:
    """What a command calls: the same services as gRPC, as the local operator."""

    principal: Principal
    accounts: AccountService
    credentials: CredentialService
    history: HistoryService
    keys: KeyDefinitionsService
    # TIERSET_HISTORY_RETENTION_DAYS, the default of `history compact --older-than-days`.
    retention_days: int = 90


Action = Callable[[argparse.Namespace, Services], Awaitable[None]]


def _note(text: str) -> None:
    print(text, file=sys.stderr)


def _secret(name: str, value: str) -> None:
    print(f"{name}={value}")


def _read_password(args: argparse.Namespace) -> str | None:
    """The password from stdin (--password-stdin), else a generated one, printed once."""
    if getattr(args, "no_password", False):
        return None
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise errors.bad_field("password", "an empty password was given on stdin")
        return password
    password = new_secret("")
    _secret("TIERSET_PASSWORD", password)
    return password


async def account_create(args: argparse.Namespace, do: Services) -> None:
    row = await do.accounts.create_account(do.principal, args.id, args.name)
    print(f"TIERSET_ACCOUNT_ID={row.id}")


async def retailer_create(args: argparse.Namespace, do: Services) -> None:
    row = await do.accounts.create_retailer(do.principal, args.id, args.account, args.name)
    print(f"TIERSET_RETAILER_ID={row.id}")


async def user_create(args: argparse.Namespace, do: Services) -> None:
    roles = frozenset(Role(r) for r in args.role)
    password = _read_password(args)
    user = await do.credentials.create_user(
        do.principal, args.account, args.username, password, roles
    )
    _note(f"created user {user.username} ({', '.join(sorted(roles))}) in account {args.account}")


async def user_set_password(args: argparse.Namespace, do: Services) -> None:
    password = _read_password(args)
    assert password is not None
    revoked = await do.credentials.set_password(do.principal, args.username, password)
    _note(f"password changed; revoked {len(revoked)} OAuth tokens of {args.username}")


def _issue(kind: Kind, variable: str, label: str) -> Action:
    async def action(args: argparse.Namespace, do: Services) -> None:
        user, issued = await do.credentials.issue(do.principal, args.username, kind, args.name)
        _note(f"created {label} {issued.id} ({args.name!r}) for {user.username}; shown once")
        _secret(variable, issued.secret)

    return action


def _list(kind: Kind) -> Action:
    async def action(args: argparse.Namespace, do: Services) -> None:
        records = await do.credentials.list_of(do.principal, args.username, kind)
        # Tab-separated under a header row, like `ps`: `tail -n +2 | cut -f1` gives the ids.
        print(LIST_HEADER)
        for record in records:
            state = "active" if record.revoke_time is None else f"revoked {record.revoke_time:%c}"
            print(f"{record.id}\t{record.name or ''}\t{record.create_time:%Y-%m-%d}\t{state}")

    return action


def _revoke(kind: Kind, label: str) -> Action:
    async def action(args: argparse.Namespace, do: Services) -> None:
        await do.credentials.revoke(do.principal, kind, args.id)
        _note(f"revoked {label} {args.id}")

    return action


async def oauth_client_create(args: argparse.Namespace, do: Services) -> None:
    client_id, secret = await do.credentials.create_oauth_client(
        do.principal, args.client_id, args.name
    )
    _note(f"registered OAuth client {client_id!r}; the secret is shown once")
    print(f"TIERSET_CLIENT_ID={client_id}")
    _secret("TIERSET_CLIENT_SECRET", secret)


async def oauth_client_revoke(args: argparse.Namespace, do: Services) -> None:
    await do.credentials.revoke_oauth_client(do.principal, args.client_id)
    _note(f"revoked OAuth client {args.client_id!r} and its tokens")


async def history_compact(args: argparse.Namespace, do: Services) -> None:
    days = do.retention_days if args.older_than_days is None else args.older_than_days
    if args.older_than_days is None and days == 0:
        _note("TIERSET_HISTORY_RETENTION_DAYS is 0 (keep the whole log): nothing compacted")
        return
    compacted = await do.history.compact(do.principal, days)
    if compacted is None:
        _note("another process is compacting the change log right now; nothing done")
    else:
        _note(f"change log compacted: history kept after revision {compacted}")


class Found(Exception):
    """A check found what it looks for: the command exits 1 (after its report)."""


async def check_types(args: argparse.Namespace, do: Services) -> None:
    """Reports keys stored with more than one type (written before one type per key was
    enforced), each type with where it is set; changes nothing. Exit 1 when any exist."""
    mixed = await do.keys.mixed_types(do.principal)
    if not mixed:
        _note("every key has one type at every level")
        return
    print("KEY\tTYPE\tCOUNT\tWHERE")
    for found in mixed:
        more = ", ..." if found.count > len(found.scopes) else ""
        print(f"{found.key}\t{found.type}\t{found.count}\t{', '.join(found.scopes)}{more}")
    keys = sorted({found.key for found in mixed})
    _note(
        f"{len(keys)} keys have more than one type ({', '.join(keys[:10])}"
        f"{', ...' if len(keys) > 10 else ''}): writes of them are refused (TYPE_MISMATCH) until"
        " each has one type; delete the values of the wrong type, or write them again"
        " with the right one. Nothing was changed."
    )
    raise Found


# The option each field of the services' errors came from (a command may say otherwise).
FLAGS = {
    "account_id": "--account",
    "display_name": "--name",
    "name": "--name",
    "username": "--username",
    "client_id": "--client-id",
    "id": "--id",
    "password": "password",
    "roles": "--role",
    "retention_days": "--older-than-days",
}


def describe(error: errors.TiersetError, flags: dict[str, str]) -> str:
    """One line for a refused command, naming the option at fault ("--id: ...")."""
    if not error.violations:
        return error.message
    return "; ".join(
        f"{flags.get(v.field) or FLAGS.get(v.field, v.field)}: {v.description}"
        for v in error.violations
    )


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds the administration commands to the ``tierset`` parser."""

    def group(name: str, help_text: str) -> argparse._SubParsersAction[argparse.ArgumentParser]:
        return sub.add_parser(name, help=help_text).add_subparsers(dest="action", required=True)

    def command(
        parent: argparse._SubParsersAction[argparse.ArgumentParser],
        name: str,
        help_text: str,
        action: Action,
    ) -> argparse.ArgumentParser:
        parser = parent.add_parser(name, help=help_text)
        parser.set_defaults(admin_action=action)
        return parser

    accounts = group("account", "accounts")
    p = command(accounts, "create", "create an account (prints its id)", account_create)
    p.set_defaults(flags={"account_id": "--id"})
    p.add_argument("--id", type=int, help="the id to give it (default: the next free one)")
    p.add_argument("--name", required=True, help="display name")

    retailers = group("retailer", "retailers")
    p = command(retailers, "create", "register a retailer under an account", retailer_create)
    p.set_defaults(flags={"retailer_id": "--id"})
    p.add_argument("--id", type=int, help="the id to give it (default: the next free one)")
    p.add_argument("--account", type=int, required=True, help="the owning account id")
    p.add_argument("--name", required=True, help="display name")

    users = group("user", "users and their passwords")
    p = command(users, "create", "create a user with roles", user_create)
    p.add_argument("--account", type=int, required=True, help="the user's account id")
    p.add_argument("--username", required=True)
    p.add_argument(
        "--role",
        action="append",
        required=True,
        choices=[r.value for r in Role],
        help="repeat for several roles",
    )
    p.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    p.add_argument(
        "--no-password",
        action="store_true",
        help="no password (the user authenticates with tokens or application passwords)",
    )
    p = command(
        users, "set-password", "change a password (revokes OAuth tokens)", user_set_password
    )
    p.add_argument("--username", required=True)
    p.add_argument("--password-stdin", action="store_true", help="read the password from stdin")

    for noun, kind, variable, label in (
        ("app-password", Kind.APP_PASSWORD, "TIERSET_APP_PASSWORD", "application password"),
        ("token", Kind.API_TOKEN, "TIERSET_TOKEN", "API token"),
    ):
        parent = group(noun, f"{label}s")
        p = command(
            parent, "create", f"create an {label} (printed once)", _issue(kind, variable, label)
        )
        p.add_argument("--username", required=True)
        p.add_argument("--name", required=True, help="what it is for, e.g. 'billing service'")
        p = command(parent, "list", f"a user's {label}s", _list(kind))
        p.add_argument("--username", required=True)
        p = command(parent, "revoke", f"revoke an {label} by id", _revoke(kind, label))
        p.add_argument("--id", type=int, required=True)

    clients = group("oauth-client", "OAuth clients for the password grant")
    p = command(clients, "create", "register a client (secret printed once)", oauth_client_create)
    p.add_argument("--name", required=True, help="display name")
    p.add_argument("--client-id", help="the client_id to use (default: generated)")
    p = command(clients, "revoke", "retire a client and its tokens", oauth_client_revoke)
    p.add_argument("--client-id", required=True)

    p = sub.add_parser(
        "check", help="report keys stored with more than one type (exit 1 if any); no changes"
    )
    p.set_defaults(admin_action=check_types)

    # One command named "history compact" (main() joins the two words): `tierset history`
    # alone is the API's reading of the change log.
    p = sub.add_parser(COMPACT_COMMAND, help="remove change log entries older than the retention")
    p.set_defaults(admin_action=history_compact)
    p.add_argument(
        "--older-than-days",
        type=int,
        help="keep this many days (default: TIERSET_HISTORY_RETENTION_DAYS)",
    )


async def _execute(
    action: Action, args: argparse.Namespace, dsn: str | None, config: Config
) -> None:
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    try:
        async with pool.acquire() as connection:
            await migrate(connection)
        services = Services(
            authz.operator(),
            AccountService(Store(pool)),
            CredentialService(CredentialStore(pool)),
            HistoryService(Store(pool)),
            KeyDefinitionsService(Definitions(DefinitionStore(pool))),
            config.history_retention_days,
        )
        await action(args, services)
    finally:
        await pool.close()


def _embedded_database(config: Config) -> tuple[str, EmbeddedPostgres | None]:
    """The DSN of `make run`'s embedded PostgreSQL, and the cluster when this command had to
    start it (and so stops it after). Never creates one: a command reading credentials must
    not leave a new database behind in whatever folder it ran in."""
    cwd = Path.cwd()
    data_dir = embedded_data_dir(config.data_dir, cwd)
    if data_dir is None:
        raise EmbeddedPostgresError(
            f"no database to use: DATABASE_URL is not set and {cwd} is not inside a tierset"
            " checkout; set DATABASE_URL, or TIERSET_DATA_DIR to the data folder of the"
            " `make run` to use (its checkout's .data)"
        )
    cluster = EmbeddedPostgres(data_dir / "postgres", config.embedded_pg_port)
    if not cluster.exists():
        found_by = "TIERSET_DATA_DIR" if config.data_dir is not None else "the checkout"
        raise EmbeddedPostgresError(
            f"no embedded database in {data_dir} ({found_by}); start `make run` there once,"
            " or set TIERSET_DATA_DIR to the data folder `make run` uses, or DATABASE_URL"
        )
    if cluster.running_port() is not None:
        return cluster.start(create=False), None  # `make run` owns it: left running
    return cluster.start(create=False), cluster


def run(args: argparse.Namespace, config: Config) -> None:
    """Runs one administration command against the configured or embedded database."""
    embedded = None
    if config.has_database:
        dsn = config.database_url.reveal() if config.database_url else None
    else:
        dsn, embedded = _embedded_database(config)
    try:
        asyncio.run(_execute(args.admin_action, args, dsn, config))
    except errors.TiersetError as error:
        print(f"error: {describe(error, getattr(args, 'flags', {}))}", file=sys.stderr)
        raise SystemExit(1) from None
    except Found:
        raise SystemExit(1) from None
    except asyncpg.PostgresError as error:
        # The services should have refused it first; the class says what, the text could
        # echo data, and a traceback helps no one at a prompt.
        print(f"error: the database refused the command ({type(error).__name__})", file=sys.stderr)
        raise SystemExit(1) from None
    finally:
        if embedded is not None:
            embedded.stop()
