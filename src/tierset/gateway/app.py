"""The gateway app: the routing table, the error handlers, and the gRPC channel's lifespan."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc
from starlette.applications import Starlette
from starlette.convertors import Convertor, register_url_convertor
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tierset.core.values import CLIENT_MAX_RECEIVE_BYTES
from tierset.gateway import console, errors, fluentcart, fluentcommerce, oauth, openapi, probes, sse
from tierset.gateway.calls import Backend, request_id
from tierset.gateway.console.session import Sealer
from tierset.gateway.envelope import RequestEnvelope
from tierset.ops.config import Config
from tierset.ops.metrics import HttpMetricsMiddleware

log = logging.getLogger("tierset.gateway")

Endpoint = Callable[[Request], Awaitable[Response]]

# TIERSET_GRPC_TARGET may name every server pod (Kubernetes: dns:///<headless service>);
# round_robin spreads calls over all of them. The default, pick_first, would send every
# call of this gateway to one pod over its single HTTP/2 connection.
CHANNEL_OPTIONS = (
    ("grpc.lb_policy_name", "round_robin"),
    ("grpc.max_receive_message_length", CLIENT_MAX_RECEIVE_BYTES),
)


class _KeyList(Convertor[str]):
    """A path segment that may be empty, so an empty key list reaches the server (a 400)."""

    regex = "[^/]*"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("keylist", _KeyList())


def route(path: str, **methods: Endpoint) -> Route:
    """One path and its handler per method; other methods get the family's 405."""

    async def dispatch(request: Request) -> Response:
        method = "GET" if request.method == "HEAD" else request.method
        return await methods[method](request)

    return Route(path, dispatch, methods=list(methods), name=path)


# The whole HTTP surface. Path parameters keep the reference's names.
ROUTES = [
    # Fluent Commerce Settings API
    route(
        "/api/v4.1/settings/account/{accountId}/{key:keylist}",
        GET=fluentcommerce.get_account_settings,
        PUT=fluentcommerce.put_account_setting,
        DELETE=fluentcommerce.delete_account_setting,
    ),
    route(
        "/api/v4.1/settings/retailer/{retailerId}/{key:keylist}",
        GET=fluentcommerce.get_retailer_settings,
        PUT=fluentcommerce.put_retailer_setting,
        DELETE=fluentcommerce.delete_retailer_setting,
    ),
    # Watching them: Server-Sent Events over WatchSettings
    route(
        "/api/v4.1/settings/account/{accountId}/{key:keylist}/watch",
        GET=sse.watch_account_settings,
    ),
    route(
        "/api/v4.1/settings/retailer/{retailerId}/{key:keylist}/watch",
        GET=sse.watch_retailer_settings,
    ),
    # FluentCart integration settings
    route(
        "/wp-json/fluent-cart/v2/integration/global-settings",
        GET=fluentcart.get_global_settings,
        POST=fluentcart.save_global_settings,
    ),
    # OAuth 2.0 token endpoint (password and refresh grants), as Fluent Commerce serves it
    route("/oauth/token", POST=oauth.token),
    # Operations
    route("/healthz", GET=probes.healthz),
    route("/readyz", GET=probes.readyz),
    route("/openapi.json", GET=openapi.serve),
]


async def _on_gateway_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, errors.GatewayError)
    log.info("request %s: refused: %s", request_id(request), error.failure.reason)
    return errors.response(error.failure, errors.family_of(request.url.path))


async def _on_rpc_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, grpc.aio.AioRpcError)
    failure = errors.from_rpc_error(error)
    level = (
        logging.WARNING if errors.STATUS_TABLE[failure.code].http_status >= 500 else logging.INFO
    )
    log.log(level, "request %s: gRPC %s %s", request_id(request), failure.code.name, failure.reason)
    return errors.response(failure, errors.family_of(request.url.path))


async def _on_http_exception(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    family = errors.family_of(request.url.path)
    if error.status_code == 405:
        allow = (error.headers or {}).get("Allow", "")
        return errors.method_not_allowed(family, allow)
    return errors.route_not_found(family)


def create_app(config: Config) -> Starlette:
    """The gateway, opening its channel to `config.grpc_target` for the app's lifetime."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with grpc.aio.insecure_channel(
            config.grpc_target, options=CHANNEL_OPTIONS
        ) as channel:
            app.state.backend = Backend.over(channel, config)
            yield

    secret = config.console_client_secret

    app = Starlette(
        # The REST table (what openapi.json describes), then the web console's HTML pages
        # with their own session (gateway/console).
        routes=[*ROUTES, *console.mount()],
        # Metrics outermost, so every response counts, by route template (never raw path).
        middleware=[Middleware(HttpMetricsMiddleware), Middleware(RequestEnvelope)],
        exception_handlers={
            errors.GatewayError: _on_gateway_error,
            grpc.aio.AioRpcError: _on_rpc_error,
            HTTPException: _on_http_exception,
        },
        lifespan=lifespan,
    )
    # The console signs in as its OAuth client; without one it says it is not configured.
    app.state.console_client = (config.console_client_id, secret.reveal() if secret else "")
    app.state.console_sealer = Sealer(secret.reveal()) if secret else None
    # No redirects: Starlette's trailing-slash redirect builds its Location from the Host
    # header (an open redirect, and a POST of credentials replayed there). A path with a
    # slash too many is the family's 404 like any other unknown path.
    app.router.redirect_slashes = False
    return app
