"""The web console: server-rendered pages under ``/console/``, an adapter over the API.

Like the REST paths, every page calls the gRPC server through the gateway's one channel
(calls.Backend), as the signed-in user; it never reaches the store. Its parts:

* session.py: the sealed session cookie (why it lives in the cookie is written there);
* csrf.py: the token every POST form must carry, and bounded form reading;
* pages.py: templates, the signed-in visit, how a failure is shown;
* views.py, actions.py, live.py: the pages, the forms, the live matrix;
* templates/ and static/ (a stylesheet and one script, live.js): every asset is served
  from here, nothing from another host.

Every console response carries a Content-Security-Policy that allows scripts, styles
and connections from this origin only (no inline script, no ``'unsafe-inline'``),
``frame-ancestors 'none'`` with ``X-Frame-Options: DENY`` (no framing, so no
clickjacking) and ``Referrer-Policy: same-origin``; the envelope adds
``Cache-Control: no-store`` and ``nosniff`` as on every gateway response.
"""

from __future__ import annotations

from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route, Router
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tierset.gateway.console import actions, live, views

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
)


class SecurityHeaders:
    """Adds :data:`HEADERS` to every response of the app it wraps."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)


async def _to_console(_: object) -> Response:
    # A path-only Location: never built from the Host header (see app.py on redirects).
    return RedirectResponse("/console/", status_code=308)


_SCOPE = "/{kind:str}/{id:str}"

ROUTES: list[BaseRoute] = [
    # First: "/static/x.css" would match the scope pages' pattern too.
    Mount("/static", StaticFiles(packages=[("tierset.gateway.console", "static")])),
    Route("/", views.home, methods=["GET"]),
    Route("/sign-in", actions.sign_in_form, methods=["GET"]),
    Route("/sign-in", actions.sign_in, methods=["POST"]),
    Route("/sign-out", actions.sign_out, methods=["POST"]),
    Route("/accounts", views.accounts, methods=["GET"]),
    Route("/accounts/open", views.open_account, methods=["GET"]),
    Route(_SCOPE, views.scope_page, methods=["GET"]),
    Route(_SCOPE + "/matrix", views.matrix_fragment, methods=["GET"]),
    Route(_SCOPE + "/events", live.events, methods=["GET"]),
    Route(_SCOPE + "/key", views.open_key, methods=["GET"]),
    Route(_SCOPE + "/keys/{key:str}", views.key_page, methods=["GET"]),
    Route(_SCOPE + "/history", views.history_page, methods=["GET"]),
    Route(_SCOPE + "/put", actions.put, methods=["POST"]),
    Route(_SCOPE + "/inherit", actions.inherit, methods=["POST"]),
    Route(_SCOPE + "/restore", actions.restore, methods=["POST"]),
    Route(_SCOPE + "/lock", actions.lock, methods=["POST"]),
    Route(_SCOPE + "/unlock", actions.unlock, methods=["POST"]),
]


def mount() -> list[BaseRoute]:
    """The console's routes for the gateway's table: ``/console`` and everything under it."""
    return [
        Route("/console", _to_console, methods=["GET"]),
        Mount("/console", app=SecurityHeaders(Router(routes=ROUTES))),
    ]
