"""The console's pages: accounts → an account (its matrix, its retailers) → a retailer;
a key's page (every level, the edit forms, its history); a scope's history.

Each page is read through the API as the signed-in user (pages.Visit): ListAccounts,
ListRetailers, ListSettings then ExplainSettings for a matrix page of at most 100 keys,
ListChanges for history. Nothing is read any other way.
"""

from __future__ import annotations

import heapq
from typing import Any

import grpc
from starlette.responses import RedirectResponse, Response

from tierset.gateway.calls import backend
from tierset.gateway.console import matrix
from tierset.gateway.console.pages import Place, Visit, failure, place, signed_in_page
from tierset.v1 import accounts_pb2, settings_pb2

# Keys per matrix page: ExplainSettings explains at most 100 keys, and a watch follows
# at most TIERSET_WATCH_MAX_KEYS (100 by default).
MATRIX_PAGE = 100
HISTORY_PAGE = 50


@signed_in_page
async def home(visit: Visit) -> Response:
    """PLATFORM users start at the accounts; everyone else at their own account."""
    target = (
        "/console/accounts" if visit.platform else f"/console/accounts/{visit.caller.account_id}"
    )
    return RedirectResponse(target, status_code=303)


@signed_in_page
async def accounts(visit: Visit) -> Response:
    """GET /console/accounts: every account (PLATFORM only; the server refuses others)."""
    message = accounts_pb2.ListAccountsRequest(
        page_size=100, page_token=visit.request.query_params.get("page", "")
    )
    reply = await backend(visit.request).accounts.ListAccounts(message, **visit.options(message))
    return visit.render(
        "accounts.html", accounts=list(reply.accounts), next_page=reply.next_page_token
    )


@signed_in_page
async def open_account(visit: Visit) -> Response:
    """GET /console/accounts/open?id=N: the accounts page's "open an account" form."""
    ident = visit.request.query_params.get("id", "").strip()
    target = f"/console/accounts/{ident}" if ident else "/console/accounts"
    return RedirectResponse(target, status_code=303)


async def load_matrix(
    visit: Visit, here: Place, prefix: str, page: str
) -> tuple[list[matrix.Row], str, int]:
    """One page of the scope's keys, explained: (rows, next page token, revision)."""
    stub = backend(visit.request).settings
    listing = settings_pb2.ListSettingsRequest(
        scope=here.scope, key_prefix=prefix, page_size=MATRIX_PAGE, page_token=page
    )
    listed = await stub.ListSettings(listing, **visit.options(listing))
    keys = [setting.key for setting in listed.settings]
    if not keys:
        return [], listed.next_page_token, listed.revision
    explain = settings_pb2.ExplainSettingsRequest(scope=here.scope, keys=keys)
    explained = await stub.ExplainSettings(explain, **visit.options(explain))
    return [matrix.row_of(e) for e in explained.keys], listed.next_page_token, explained.revision


async def matrix_context(visit: Visit, here: Place) -> dict[str, Any]:
    """What the matrix (the page, or the fragment the live script fetches) is made of."""
    prefix = visit.request.query_params.get("prefix", "")
    page = visit.request.query_params.get("page", "")
    try:
        rows, next_page, revision = await load_matrix(visit, here, prefix, page)
        filter_error = ""
    except grpc.aio.AioRpcError as error:
        if error.code() is not grpc.StatusCode.INVALID_ARGUMENT:
            raise
        # A bad prefix (or page token) is the filter's error, shown beside it.
        rows, next_page, revision, filter_error = [], "", 0, failure(error)[1]
    return {
        "place": here,
        "rows": rows,
        "prefix": prefix,
        "page": page,
        "next_page": next_page,
        "revision": revision,
        "filter_error": filter_error,
    }


@signed_in_page
async def scope_page(visit: Visit) -> Response:
    """GET /console/{accounts|retailers}/{id}: the scope's settings matrix."""
    here = await place(visit)
    context = await matrix_context(visit, here)
    retailers: list[accounts_pb2.Retailer] = []
    more_retailers = False
    if here.kind == "accounts":
        message = accounts_pb2.ListRetailersRequest(account_id=here.id, page_size=100)
        reply = await backend(visit.request).accounts.ListRetailers(
            message, **visit.options(message)
        )
        retailers, more_retailers = list(reply.retailers), bool(reply.next_page_token)
    return visit.render("scope.html", retailers=retailers, more_retailers=more_retailers, **context)


@signed_in_page
async def matrix_fragment(visit: Visit) -> Response:
    """GET .../matrix: the matrix table alone, which live.js swaps in after a change."""
    here = await place(visit)
    return visit.render("_matrix.html", **await matrix_context(visit, here))


@signed_in_page
async def open_key(visit: Visit) -> Response:
    """GET .../key?key=K: the "open or add a key" form's target, redirecting to its page."""
    key = visit.request.query_params.get("key", "").strip()
    kind, ident = visit.request.path_params["kind"], visit.request.path_params["id"]
    target = f"/console/{kind}/{ident}" + (f"/keys/{key}" if key else "")
    return RedirectResponse(target, status_code=303)


async def key_history(visit: Visit, here: Place, key: str) -> list[matrix.ChangeView]:
    """The key's changes at every level this scope reads from, newest first."""
    stub = backend(visit.request).settings
    requests = (
        settings_pb2.ListChangesRequest(
            scope=settings_pb2.Scope(account_id=here.account_id),
            key=key,
            newest_first=True,
            page_size=HISTORY_PAGE,
        ),
        settings_pb2.ListChangesRequest(
            global_only=True, key=key, newest_first=True, page_size=HISTORY_PAGE
        ),
    )
    pages = [
        (await stub.ListChanges(message, **visit.options(message))).changes for message in requests
    ]
    mine = {"GLOBAL", f"ACCOUNT:{here.account_id}", f"RETAILER:{here.id}"}
    merged = heapq.merge(*pages, key=lambda c: (c.revision, c.sequence), reverse=True)
    views = [matrix.change_view(c) for c in merged]
    return [view for view in views if view.target in mine][:HISTORY_PAGE]


async def render_key_page(
    visit: Visit,
    here: Place,
    key: str,
    *,
    errors: dict[str, str] | None = None,
    sent: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    """The key's page; `errors` and `sent` keep a refused form's message and value."""
    message = settings_pb2.ExplainSettingsRequest(scope=here.scope, keys=[key])
    explained = await backend(visit.request).settings.ExplainSettings(
        message, **visit.options(message)
    )
    row = matrix.row_of(explained.keys[0])
    return visit.render(
        "key.html",
        status,
        place=here,
        row=row,
        key=key,
        history=await key_history(visit, here, key),
        errors=errors or {},
        sent=sent or {},
        types=matrix.TYPES,
        saved=visit.request.query_params.get("saved", ""),
    )


@signed_in_page
async def key_page(visit: Visit) -> Response:
    """GET /console/{kind}/{id}/keys/{key}"""
    return await render_key_page(visit, await place(visit), visit.request.path_params["key"])


@signed_in_page
async def history_page(visit: Visit) -> Response:
    """GET /console/{kind}/{id}/history: the scope's changes, newest first."""
    here = await place(visit)
    prefix = visit.request.query_params.get("prefix", "")
    message = settings_pb2.ListChangesRequest(
        scope=here.scope,
        key_prefix=prefix,
        newest_first=True,
        page_size=HISTORY_PAGE,
        page_token=visit.request.query_params.get("page", ""),
    )
    reply = await backend(visit.request).settings.ListChanges(message, **visit.options(message))
    return visit.render(
        "history.html",
        place=here,
        prefix=prefix,
        history=[matrix.change_view(c) for c in reply.changes],
        next_page=reply.next_page_token,
    )
