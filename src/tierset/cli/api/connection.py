"""Where the API is and who calls it: the address, TLS, credentials, and the calls.

Everything is read once, from the parsed command line and the environment passed in
(no module reads ``os.environ`` on its own); a flag overrides its variable. The
variables are those ``make run`` writes to ``.data/demo-credentials.env``:

* ``--address`` / ``TIERSET_ADDRESS``: the server, ``host:port`` (127.0.0.1:50051);
* ``--token`` / ``TIERSET_TOKEN``: an API token or an OAuth access token (Bearer);
* ``--username`` / ``TIERSET_USERNAME`` with ``TIERSET_APP_PASSWORD``: an application
  password (HTTP Basic);
* ``--username`` / ``TIERSET_USERNAME`` with ``TIERSET_PASSWORD``, ``TIERSET_CLIENT_ID``
  and ``TIERSET_CLIENT_SECRET``: the OAuth password grant.

``--auth`` picks one kind; by default the first complete one of token, application
password, password grant. Passwords are never flags (a command line is visible to
every user of the machine); a token may be, for a one-off call, but the variable is
better. No complete credential is a usage error (exit 2), before
anything is sent.

Every call carries a deadline (``--timeout``) except a watch, which runs until
interrupted. A failed call is raised as :class:`tierset.client.TiersetError` (code,
reason, metadata), the one error type the commands report.
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import grpc

from tierset.cli.api import UsageError
from tierset.client import CHANNEL_OPTIONS, ApiToken, AppPassword, Credentials, OAuthPassword
from tierset.client.errors import TiersetError, from_rpc_error
from tierset.v1 import accounts_pb2_grpc, settings_pb2_grpc

DEFAULT_ADDRESS = "127.0.0.1:50051"
AUTH_KINDS = ("token", "app-password", "password")

T = TypeVar("T")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The connection options every API command takes."""
    group = parser.add_argument_group("connection (flags override the variables)")
    group.add_argument(
        "--address",
        metavar="HOST:PORT",
        help=f"the gRPC server, host:port (TIERSET_ADDRESS, else {DEFAULT_ADDRESS})",
    )
    group.add_argument("--token", help="API token or access token (TIERSET_TOKEN)")
    group.add_argument(
        "--username",
        help="user for TIERSET_APP_PASSWORD or the password grant (TIERSET_USERNAME)",
    )
    group.add_argument(
        "--auth",
        choices=AUTH_KINDS,
        help="which credential to use; default: the first complete one of these",
    )
    group.add_argument("--tls", action="store_true", help="TLS with the system's roots")
    group.add_argument(
        "--ca-file", type=Path, metavar="PEM", help="TLS with this PEM root certificate"
    )
    group.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="seconds per call (default 10)",
    )


def credentials(args: argparse.Namespace, env: Mapping[str, str]) -> Credentials:
    """The credential the flags and variables name (see the module's table)."""
    token = args.token or env.get("TIERSET_TOKEN")
    username = args.username or env.get("TIERSET_USERNAME")
    app_password = env.get("TIERSET_APP_PASSWORD")
    password, client_id, client_secret = (
        env.get("TIERSET_PASSWORD"),
        env.get("TIERSET_CLIENT_ID"),
        env.get("TIERSET_CLIENT_SECRET"),
    )
    # A flag names what it wants: --token alone beats a TIERSET_APP_PASSWORD, --username
    # a TIERSET_TOKEN of someone else.
    kind = args.auth or ("token" if args.token else None)
    if kind is None and args.username:
        kind = "app-password" if app_password else "password"
    if kind in (None, "token") and token:
        return ApiToken(token)
    if kind in (None, "app-password") and username and app_password:
        return AppPassword(username, app_password)
    if kind in (None, "password") and username and password and client_id and client_secret:
        return OAuthPassword(client_id, client_secret, username, password)
    needs = {
        None: "TIERSET_TOKEN (or --token)",
        "token": "TIERSET_TOKEN (or --token)",
        "app-password": "TIERSET_USERNAME (or --username) and TIERSET_APP_PASSWORD",
        "password": "TIERSET_USERNAME (or --username), TIERSET_PASSWORD, TIERSET_CLIENT_ID"
        " and TIERSET_CLIENT_SECRET",
    }[kind]
    raise UsageError(
        f"no credentials: set {needs}; after `make run`, source .data/demo-credentials.env"
    )


class Session:
    """One channel to the server and the calls over it, as one caller."""

    def __init__(self, args: argparse.Namespace, env: Mapping[str, str]) -> None:
        self.target = args.address or env.get("TIERSET_ADDRESS") or DEFAULT_ADDRESS
        self._credentials = credentials(args, env)
        self._timeout = args.timeout
        if args.tls or args.ca_file:
            try:
                roots = args.ca_file.read_bytes() if args.ca_file else None
            except OSError as error:
                raise UsageError(f"--ca-file: {error.strerror}: {args.ca_file}") from None
            self._channel = grpc.aio.secure_channel(
                self.target, grpc.ssl_channel_credentials(roots), options=CHANNEL_OPTIONS
            )
        else:
            self._channel = grpc.aio.insecure_channel(self.target, options=CHANNEL_OPTIONS)
        self.settings = settings_pb2_grpc.SettingsServiceStub(self._channel)
        self.accounts = accounts_pb2_grpc.AccountServiceStub(self._channel)

    async def __aenter__(self) -> Session:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._channel.close(None)

    async def _metadata(self) -> tuple[tuple[str, str], ...]:
        try:
            return (("authorization", await self._credentials.header(self._channel)),)
        except grpc.RpcError as error:  # the password grant was refused
            raise from_rpc_error(error) from None

    async def call(self, method: Callable[..., Awaitable[T]], request: Any) -> T:
        """One unary call; no retries: a person or a script at the other end decides."""
        metadata = await self._metadata()
        try:
            return await method(request, metadata=metadata, timeout=self._timeout)
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None

    async def stream(self, method: Callable[..., Any], request: Any) -> AsyncIterator[Any]:
        """The messages of one server-streaming call, without a deadline."""
        call = method(request, metadata=await self._metadata())
        try:
            async for message in call:
                yield message
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None
        finally:
            call.cancel()


__all__ = ["Session", "TiersetError", "add_arguments", "credentials"]
