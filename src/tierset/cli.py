"""The ``tierset`` command: run the server, migrate, or run everything for development."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

import asyncpg

from tierset.config import Config, ConfigError
from tierset.embedded import EmbeddedPostgres, EmbeddedPostgresError
from tierset.gateway import serve as gateway
from tierset.migrate import migrate
from tierset.server import serve

log = logging.getLogger("tierset")


def _run(coroutine: object) -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on every platform we ship
        asyncio.run(coroutine)  # type: ignore[arg-type]
    else:
        uvloop.run(coroutine)  # type: ignore[arg-type]


def _database(config: Config) -> tuple[str | None, EmbeddedPostgres | None]:
    """The DSN to use, starting the embedded PostgreSQL when no database is configured."""
    if config.has_database:
        return (config.database_url.reveal() if config.database_url else None), None
    embedded = EmbeddedPostgres(config.data_dir / "postgres", config.embedded_pg_port)
    log.info("no DATABASE_URL: starting embedded PostgreSQL in %s", embedded.data_dir)
    return embedded.start(), embedded


async def _migrate(dsn: str | None) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        applied = await migrate(connection)
    finally:
        await connection.close()
    print(f"applied migrations: {applied}" if applied else "schema is up to date")


def command_serve(config: Config) -> None:
    """Serves gRPC against DATABASE_URL (or PG*)."""
    if not config.has_database:
        raise SystemExit("tierset serve needs DATABASE_URL (or PGHOST); `tierset dev` embeds one")
    _run(serve(config, config.database_url.reveal() if config.database_url else None))


def command_migrate(config: Config) -> None:
    """Applies pending migrations to DATABASE_URL (or PG*) and exits."""
    if not config.has_database:
        raise SystemExit("tierset migrate needs DATABASE_URL (or PGHOST)")
    _run(_migrate(config.database_url.reveal() if config.database_url else None))


def command_gateway(config: Config) -> None:
    """Serves the REST gateway, calling the gRPC server at TIERSET_GRPC_TARGET."""
    _run(gateway.serve(config))


def command_dev(config: Config) -> None:
    """Everything on one machine: embedded PostgreSQL unless configured, gRPC, and the
    REST gateway as a separate child process."""
    dsn, embedded = _database(config)
    try:
        with gateway.gateway_child(config):
            _run(serve(config, dsn))
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


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``tierset`` command."""
    parser = argparse.ArgumentParser(prog="tierset", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="serve gRPC against DATABASE_URL")
    sub.add_parser("migrate", help="apply pending SQL migrations and exit")
    sub.add_parser(
        "dev", help="embedded PostgreSQL (unless DATABASE_URL is set) + gRPC + REST gateway"
    )
    sub.add_parser("gateway", help="serve the REST gateway, calling TIERSET_GRPC_TARGET")
    args = parser.parse_args(argv)
    try:
        config = Config.from_env()
    except ConfigError as error:
        raise SystemExit(f"configuration error: {error}") from None
    logging.basicConfig(
        level=config.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        COMMANDS[args.command](config)
    except EmbeddedPostgresError as error:
        print(error, file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
