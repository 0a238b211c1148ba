"""What every console page shares: the templates, the signed-in visit, and failures.

A signed-in page first asks the server who its token belongs to (GetCaller): that both
checks the token (revoked or expired: the cookie is cleared and the sign-in page shown)
and says what to offer (edit controls only with SETTINGS_EDIT, GLOBAL's only with
PLATFORM). What is offered is a courtesy; the server refuses what the caller may not do,
and the console shows the server's message.

A failed call is shown as a page with the status the gateway's one table gives its gRPC
code (errors.STATUS_TABLE) and the server's message when it was written for clients.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import Message
from jinja2 import Environment, PackageLoader, StrictUndefined
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.templating import Jinja2Templates

from tierset.core.reasons import Reason
from tierset.gateway import errors
from tierset.gateway.calls import backend, call_options
from tierset.gateway.console import session as sessions
from tierset.gateway.console.csrf import FormRefused, read_form
from tierset.gateway.console.csrf import check as check_csrf
from tierset.gateway.console.session import Session
from tierset.v1 import accounts_pb2, auth_pb2, settings_pb2

SIGN_IN_PATH = "/console/sign-in"
INT64_MAX = 2**63 - 1

templates = Jinja2Templates(
    env=Environment(
        loader=PackageLoader("tierset.gateway.console", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
    )
)


@dataclass(frozen=True)
class Visit:
    """A request of a signed-in session, and who the server says the caller is."""

    request: Request
    session: Session
    caller: auth_pb2.GetCallerResponse

    def options(self, message: Message) -> dict[str, Any]:
        """A stub call's keyword arguments, authenticated as this session."""
        return call_options(self.request, message, session_token=self.session.token)

    @property
    def can_edit(self) -> bool:
        return "SETTINGS_EDIT" in self.caller.permissions

    @property
    def platform(self) -> bool:
        return "PLATFORM" in self.caller.permissions

    def may_edit(self, level: str) -> bool:
        """Whether to offer edit controls for `level` (the server decides either way)."""
        return self.platform if level == "GLOBAL" else self.can_edit

    def render(self, name: str, status: int = 200, **context: Any) -> Response:
        return render(self.request, self.session, name, status, visit=self, **context)


def render(
    request: Request, session: Session | None, name: str, status: int = 200, **context: Any
) -> Response:
    """Template `name` with the session's CSRF token for its forms."""
    context.setdefault("visit", None)
    return templates.TemplateResponse(
        request,
        name,
        {"csrf": session.csrf if session else "", **context},
        status_code=status,
    )


@dataclass(frozen=True)
class Place:
    """The scope a page is about: an account, or a retailer and its account."""

    kind: str  # "accounts" or "retailers"
    id: int
    account_id: int
    name: str

    @property
    def level(self) -> str:
        return "ACCOUNT" if self.kind == "accounts" else "RETAILER"

    @property
    def levels(self) -> tuple[str, ...]:
        """The levels that apply to this scope, least specific first."""
        return (
            ("GLOBAL", "ACCOUNT") if self.kind == "accounts" else ("GLOBAL", "ACCOUNT", "RETAILER")
        )

    @property
    def scope(self) -> settings_pb2.Scope:
        if self.kind == "accounts":
            return settings_pb2.Scope(account_id=self.id)
        return settings_pb2.Scope(retailer_id=self.id)

    def scope_of(self, level: str) -> settings_pb2.Scope | None:
        """The scope a write at `level` goes to from this page (None: GLOBAL)."""
        if level == "GLOBAL":
            return None
        if level == "ACCOUNT":
            return settings_pb2.Scope(account_id=self.account_id)
        return settings_pb2.Scope(retailer_id=self.id)

    @property
    def path(self) -> str:
        return f"/console/{self.kind}/{self.id}"


class NotFound(Exception):
    """A console path naming no page (a bad id, an unknown kind)."""


def path_id(request: Request, name: str = "id") -> int:
    raw = str(request.path_params[name])
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 19) or not 0 < int(raw) <= INT64_MAX:
        raise NotFound
    return int(raw)


async def place(visit: Visit) -> Place:
    """The page's account or retailer, as the server shows it to this caller."""
    kind = visit.request.path_params["kind"]
    ident = path_id(visit.request)
    stub = backend(visit.request).accounts
    if kind == "accounts":
        account_request = accounts_pb2.GetAccountRequest(account_id=ident)
        account = (await stub.GetAccount(account_request, **visit.options(account_request))).account
        return Place(kind, ident, ident, account.display_name)
    if kind == "retailers":
        retailer_request = accounts_pb2.GetRetailerRequest(retailer_id=ident)
        reply = await stub.GetRetailer(retailer_request, **visit.options(retailer_request))
        return Place(kind, ident, reply.retailer.account_id, reply.retailer.display_name)
    raise NotFound


def to_sign_in(request: Request, *, ended: bool = False) -> Response:
    """A redirect to the sign-in page; `ended` says the session was ended by the server."""
    response = RedirectResponse(SIGN_IN_PATH + ("?ended=1" if ended else ""), status_code=303)
    if ended:
        sessions.clear(request, response)
    return response


def failure(error: grpc.aio.AioRpcError) -> tuple[int, str, str]:
    """(HTTP status, message, reason) for a failed call, as the gateway's table maps it."""
    found = errors.from_rpc_error(error)
    row = found.row or errors.STATUS_TABLE[found.code]
    message = found.message if found.trusted and found.message else row.title
    return row.http_status, message, found.reason


def failure_page(
    request: Request, session: Session | None, visit: Visit | None, error: Exception
) -> Response:
    """The page answering a failure: the sign-in page for an ended session, else an error."""
    if isinstance(error, grpc.aio.AioRpcError):
        if error.code() is grpc.StatusCode.UNAUTHENTICATED:
            return to_sign_in(request, ended=True)
        status, message, reason = failure(error)
    elif isinstance(error, FormRefused):
        status, message, reason = error.status, error.message, ""
    else:
        status, message, reason = 404, "There is no such page in the console.", Reason.NOT_FOUND
    return render(
        request, session, "error.html", status, visit=visit, message=message, reason=reason
    )


Endpoint = Callable[[Request], Awaitable[Response]]
Handler = Callable[[Visit], Awaitable[Response]]
FormHandler = Callable[[Visit, dict[str, str]], Awaitable[Response]]


def signed_in_page(handler: Handler) -> Endpoint:
    """An endpoint for signed-in sessions only: others go to the sign-in page."""
    return _signed_in(handler, None)


def signed_in_form(handler: FormHandler) -> Endpoint:
    """A POST endpoint for signed-in sessions: the form is read and its CSRF token checked
    before any call is made (a refused form is a 403 page)."""
    return _signed_in(None, handler)


def _signed_in(page: Handler | None, form: FormHandler | None) -> Endpoint:
    async def endpoint(request: Request) -> Response:
        session = sessions.from_request(request)
        visit: Visit | None = None
        try:
            fields: dict[str, str] = {}
            if form is not None:
                fields = await read_form(request)
                check_csrf(session, fields)
            if session is None or not session.signed_in:
                return to_sign_in(request)
            caller_request = auth_pb2.GetCallerRequest()
            caller = await backend(request).auth.GetCaller(
                caller_request,
                **call_options(request, caller_request, session_token=session.token),
            )
            visit = Visit(request, session, caller)
            if page is not None:
                return await page(visit)
            assert form is not None
            return await form(visit, fields)
        except (grpc.aio.AioRpcError, FormRefused, NotFound) as error:
            return failure_page(request, session, visit, error)

    return endpoint
