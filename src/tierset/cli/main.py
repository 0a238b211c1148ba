"""The ``tierset`` command: read and change settings through the API
(:mod:`tierset.cli.api`), run the server, migrate, run everything for development, and
administer accounts, users and credentials in the database (:mod:`tierset.cli.admin`).

``tierset -h`` lists the commands in sections, so that those that go through the API
(and its checks, as whoever the credentials name) are never mistaken for those that
work in the database directly (as the local operator). It is plain text: argparse
prints DESCRIPTION and the sections as they are."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import ipaddress
import logging
import os
import signal
import sys
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import asyncpg

from tierset.cli import admin
from tierset.cli.api import run as api
from tierset.cli.bootstrap import bootstrap_demo, console_client_env
from tierset.ops import logs
from tierset.ops.config import Config, ConfigError
from tierset.ops.datadir import DATA_FOLDER, embedded_data_dir
from tierset.ops.embedded import EmbeddedPostgres, EmbeddedPostgresError
from tierset.store.migrate import migrate

log = logging.getLogger("tierset")

DESCRIPTION = (
    "Typed, layered settings. Read and change them through the gRPC API, run the server"
    " and the REST gateway, and administer accounts, retailers, users and their"
    " credentials in the database. Run 'tierset COMMAND -h' for a command's options."
)
ADMIN_SECTION = (
    "Administration, directly in the database (DATABASE_URL, else the embedded"
    " PostgreSQL of make run), as the local operator"
)
RUN_SECTION = "Running tierset"
_HELP_WIDTH = 88


class _SectionedCommands(argparse._SubParsersAction):
    """Subcommands listed in sections in ``tierset -h``: each parser added goes under the
    section last started with :meth:`section`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sections: dict[str, list[tuple[str, str]]] = {}
        self._current = ""

    def section(self, title: str) -> None:
        self._current = title
        self.sections.setdefault(title, [])

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        # Without `help`, argparse lists no choice of its own: the sections do.
        help_text = kwargs.pop("help", "")
        kwargs.setdefault("description", help_text[:1].upper() + help_text[1:] + ".")
        self.sections[self._current].append((name, help_text))
        return super().add_parser(name, **kwargs)

    def listing(self) -> str:
        width = max(len(name) for entries in self.sections.values() for name, _ in entries)
        return "\n\n".join(
            textwrap.fill(title + ":", _HELP_WIDTH, break_on_hyphens=False)
            + "\n"
            + "\n".join(f"  {name.ljust(width)}  {text}" for name, text in entries)
            for title, entries in self.sections.items()
        )


def _run(coroutine: object) -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on every platform we ship
        asyncio.run(coroutine)  # type: ignore[arg-type]
    else:
        uvloop.run(coroutine)  # type: ignore[arg-type]


def _dev_data_dir(config: Config) -> Path:
    """Where `tierset dev` keeps its data (see tierset.datadir): ./.data outside a checkout."""
    return embedded_data_dir(config.data_dir, Path.cwd()) or Path(DATA_FOLDER)


def _database(config: Config, data_dir: Path) -> tuple[str | None, EmbeddedPostgres | None]:
    """The DSN to use, starting the embedded PostgreSQL when no database is configured."""
    if config.has_database:
        return (config.database_url.reveal() if config.database_url else None), None
    embedded = EmbeddedPostgres(data_dir / "postgres", config.embedded_pg_port)
    log.info("no DATABASE_URL: starting embedded PostgreSQL in %s", embedded.data_dir)
    return embedded.start(), embedded


async def _migrate(dsn: str | None) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        applied = await migrate(connection)
    finally:
        await connection.close()
    print(f"applied migrations: {applied}" if applied else "schema is up to date")


# The server and the gateway are imported by the commands that run them (here and below):
# importing them takes longer than a whole `tierset get`, which needs neither.


def _serve(config: Config, dsn: str | None) -> None:
    """One server process, or `config.processes` of them sharing the port."""
    from tierset.api.processes import run_workers
    from tierset.api.server import serve

    if config.processes <= 1:
        _run(serve(config, dsn))
        return
    if config.migrate_on_start:
        _run(_migrate(dsn))
    code = run_workers(config, dsn)
    if code:
        raise SystemExit(code)


def command_serve(config: Config) -> None:
    """Serves gRPC against DATABASE_URL (or PG*)."""
    if not config.has_database:
        raise SystemExit("tierset serve needs DATABASE_URL (or PGHOST); `tierset dev` embeds one")
    _serve(config, config.database_url.reveal() if config.database_url else None)


def command_migrate(config: Config) -> None:
    """Applies pending migrations to DATABASE_URL (or PG*) and exits."""
    if not config.has_database:
        raise SystemExit("tierset migrate needs DATABASE_URL (or PGHOST)")
    _run(_migrate(config.database_url.reveal() if config.database_url else None))


async def _prepare_dev(config: Config, dsn: str | None, data_dir: Path) -> None:
    """Migrates and creates the demo credentials on a first start."""
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    try:
        async with pool.acquire() as connection:
            await migrate(connection)
        await bootstrap_demo(pool, data_dir, config.grpc_address)
    finally:
        await pool.close()


def command_gateway(config: Config) -> None:
    """Serves the REST gateway, calling the gRPC server at TIERSET_GRPC_TARGET."""
    from tierset.gateway import serve as gateway
    from tierset.gateway.processes import run_gateway_processes

    if config.gateway_processes > 1:
        code = run_gateway_processes(config)
        if code:
            raise SystemExit(code)
        return
    _run(gateway.serve(config))


# Where `tierset dev`'s gateway child calls the server from: loopback (local_target).
_DEV_GATEWAYS = (ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("::1/128"))


def dev_config(config: Config) -> Config:
    """`config` as `tierset dev` runs it: unless TIERSET_TRUSTED_GATEWAYS says otherwise,
    the server trusts its own gateway child, which calls it over loopback.

    Without that, every REST client would count as the gateway's one address for the
    password-guess throttle: one client's failures would lock out every REST sign-in.
    Trusting loopback lets any local process claim a client address, which only changes
    how its own failures are counted; on one development machine that is fine.
    """
    if config.trusted_gateways:
        return config
    return dataclasses.replace(config, trusted_gateways=_DEV_GATEWAYS)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def command_dev(config: Config) -> None:
    """Everything on one machine: embedded PostgreSQL unless configured, gRPC, and the
    REST gateway as a separate child process."""
    from tierset.gateway import serve as gateway

    config = dev_config(config)
    data_dir = _dev_data_dir(config)
    dsn, embedded = _database(config, data_dir)
    try:
        try:
            _run(_prepare_dev(config, dsn, data_dir))
        except asyncpg.PostgresError as error:
            # The demo set-up is one transaction: nothing of it was kept, and the next
            # start does it again.
            raise SystemExit(
                f"tierset dev: preparing the database failed ({type(error).__name__}: {error});"
                " nothing of the first start was kept, the next start tries again"
            ) from None
        # Until the server's own handlers take over, SIGTERM (from a shell, or from the
        # gateway's watcher when the child dies at start) ends the start as Ctrl-C does:
        # by an exception, so every `finally` runs and the embedded PostgreSQL stops.
        signal.signal(signal.SIGTERM, _interrupt)
        child: gateway.GatewayChild | None = None
        try:
            with gateway.gateway_child(config, console_client_env(config, data_dir)) as child:
                _serve(config, dsn)
        except KeyboardInterrupt:
            if child is None or child.died is None:
                raise
        if child is not None and child.died is not None:
            raise SystemExit(
                f"tierset dev: the REST gateway exited (code {child.died}), so tierset dev"
                " stopped; its log lines above say why"
            )
    finally:
        if embedded is not None:
            log.info("stopping embedded PostgreSQL")
            embedded.stop()


COMMANDS = {
    "serve": command_serve,
    "migrate": command_migrate,
    "dev": command_dev,
    "gateway": command_gateway,
}


# The options that override a variable, by the Config field they set.
OVERRIDES = ("processes", "gateway_processes")


def _config(args: argparse.Namespace) -> Config:
    """The environment's configuration with the command line's overrides, checked as one:
    ``dataclasses.replace`` builds a new Config, which validates itself (ConfigError)."""
    overrides = {
        field: getattr(args, field) for field in OVERRIDES if getattr(args, field, None) is not None
    }
    return dataclasses.replace(Config.from_env(), **overrides)


def _joined(argv: list[str]) -> list[str]:
    """`tierset history compact` is the database's compaction, one command of two words;
    `tierset history ...` otherwise reads the change log through the API."""
    if argv[:2] == admin.COMPACT_COMMAND.split():
        return [admin.COMPACT_COMMAND, *argv[2:]]
    return argv


def main(argv: list[str] | None = None, environ: Mapping[str, str] | None = None) -> None:
    """Entry point of the ``tierset`` command (`environ`: the API commands' variables,
    os.environ unless given)."""
    parser = argparse.ArgumentParser(
        prog="tierset",
        description=textwrap.fill(DESCRIPTION, _HELP_WIDTH),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.register("action", "parsers", _SectionedCommands)
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", help="one of the commands below"
    )
    assert isinstance(sub, _SectionedCommands)
    api.add_commands(sub.add_parser, sub.section)
    sub.section(ADMIN_SECTION)
    admin.add_commands(sub)
    sub.section(RUN_SECTION)
    for name, text in (
        ("serve", "serve gRPC against DATABASE_URL"),
        ("dev", "embedded PostgreSQL (unless DATABASE_URL is set) + gRPC + REST gateway"),
    ):
        sub.add_parser(name, help=text).add_argument(
            "--processes",
            type=int,
            help="server processes sharing the port (default TIERSET_PROCESSES, 1)",
        )
    sub.add_parser("migrate", help="apply pending SQL migrations and exit")
    sub.add_parser(
        "gateway", help="serve the REST gateway, calling TIERSET_GRPC_TARGET"
    ).add_argument(
        "--processes",
        dest="gateway_processes",
        type=int,
        help="gateway processes sharing the port (default TIERSET_GATEWAY_PROCESSES, 1)",
    )
    parser.epilog = sub.listing()
    args = parser.parse_args(_joined(sys.argv[1:] if argv is None else argv))
    if hasattr(args, "api_action"):
        # A client of the API: the server's configuration is not its business.
        raise SystemExit(api.run(args, os.environ if environ is None else environ))
    try:
        config = _config(args)
    except ConfigError as error:
        # One line naming the variable, exit 2 (a usage error, as argparse's): nothing has
        # started, so there is nothing to trace back.
        print(f"tierset: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    logs.configure(config)
    try:
        if hasattr(args, "admin_action"):
            admin.run(args, config)
        else:
            COMMANDS[args.command](config)
    except EmbeddedPostgresError as error:
        print(error, file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
