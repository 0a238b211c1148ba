"""The console's forms: sign in and out, and the writes (put, inherit, lock, unlock,
restore).

Every POST reads its form (bounded) and checks its CSRF token before anything else
(csrf.py). A write is one API call as the signed-in user; when it succeeds the browser
is sent back to the key's page (303, so a reload does not post again); when the server
refuses it, the key's page is shown again with the server's message beside the form
and the value that was sent, with the status the gateway's table gives the refusal.

Values are sent as the API takes them: STRING and LOB as text (a textarea's CRLF line
breaks, which every browser sends, turned back into LF), anything else as JSON text
(``42``, ``true``, ``{"a": 1}``), so the server, not the console, decides what a type
accepts.
"""

from __future__ import annotations

import grpc
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from tierset.gateway.calls import backend, call_options
from tierset.gateway.console import csrf, matrix
from tierset.gateway.console import session as sessions
from tierset.gateway.console.csrf import FormRefused
from tierset.gateway.console.pages import (
    SIGN_IN_PATH,
    Place,
    Visit,
    failure,
    failure_page,
    place,
    render,
    signed_in_form,
)
from tierset.gateway.console.views import render_key_page
from tierset.v1 import auth_pb2, settings_pb2

NOT_CONFIGURED = (
    "The console is not configured: set TIERSET_CONSOLE_CLIENT_ID and"
    " TIERSET_CONSOLE_CLIENT_SECRET to an OAuth client (see docs/console.md)."
)


def _configured(request: Request) -> bool:
    return request.app.state.console_sealer is not None


async def sign_in_form(request: Request) -> Response:
    """GET /console/sign-in: the form, with a (signed-out) session for its CSRF token."""
    if not _configured(request):
        return render(request, None, "sign_in.html", 503, error=NOT_CONFIGURED, ended=False)
    session = sessions.from_request(request) or sessions.anonymous()
    if session.signed_in:
        return RedirectResponse("/console/", status_code=303)
    response = render(
        request,
        session,
        "sign_in.html",
        error="",
        ended=request.query_params.get("ended") == "1",
    )
    sessions.store(request, response, session)
    return response


async def sign_in(request: Request) -> Response:
    """POST /console/sign-in: the OAuth password grant, as the console's client."""
    if not _configured(request):
        return render(request, None, "sign_in.html", 503, error=NOT_CONFIGURED, ended=False)
    session = sessions.from_request(request)
    try:
        fields = await csrf.read_form(request)
        csrf.check(session, fields)
    except FormRefused as refused:
        return failure_page(request, session, None, refused)
    assert session is not None
    client_id, client_secret = request.app.state.console_client
    username = fields.get("username", "")
    message = auth_pb2.CreateTokenRequest(
        grant_type="password",
        client_id=client_id,
        client_secret=client_secret,
        username=username,
        password=fields.get("password", ""),
        scope="api",
    )
    try:
        grant = await backend(request).auth.CreateToken(message, **call_options(request, message))
    except grpc.aio.AioRpcError as error:
        status, text, _ = failure(error)
        return render(
            request, session, "sign_in.html", status, error=text, ended=False, username=username
        )
    response = RedirectResponse("/console/", status_code=303)
    sessions.store(
        request, response, sessions.signed_in(username, grant.access_token, grant.expires_in)
    )
    return response


async def sign_out(request: Request) -> Response:
    """POST /console/sign-out: forgets the session (see session.py on the token itself)."""
    session = sessions.from_request(request)
    try:
        csrf.check(session, await csrf.read_form(request))
    except FormRefused as refused:
        return failure_page(request, session, None, refused)
    response = RedirectResponse(SIGN_IN_PATH, status_code=303)
    sessions.clear(request, response)
    return response


def _level(fields: dict[str, str]) -> str:
    level = fields.get("level", "")
    if level not in matrix.LEVELS:
        raise FormRefused(400, "The form names no level (GLOBAL, ACCOUNT or RETAILER).")
    return level


def setting_value(type_name: str, text: str) -> settings_pb2.SettingValue:
    """The value as the API takes it for `type_name` (see the module)."""
    if type_name in ("STRING", "LOB"):
        return settings_pb2.SettingValue(string_value=text.replace("\r\n", "\n"))
    return settings_pb2.SettingValue(json_value=text.replace("\r\n", "\n"))


def setting_type(type_name: str) -> settings_pb2.SettingType:
    if type_name in matrix.TYPES:
        return settings_pb2.SettingType.Value(f"SETTING_TYPE_{type_name}")  # type: ignore[return-value]
    return settings_pb2.SETTING_TYPE_UNSPECIFIED  # the server refuses it, naming the field


async def _write(visit: Visit, call: str, fields: dict[str, str]) -> Response:
    """Carries out one write form; the key's page again, with the outcome."""
    here = await place(visit)
    level = _level(fields)
    key = fields.get("key", "")
    stub = backend(visit.request).settings
    reason = fields.get("reason", "")
    scope = here.scope_of(level)
    try:
        if call == "put":
            value = setting_value(fields.get("type", ""), fields.get("value", ""))
            kind = setting_type(fields.get("type", ""))
            if scope is None:
                glob = settings_pb2.SetGlobalRequest(key=key, type=kind, value=value, reason=reason)
                revision = (await stub.SetGlobal(glob, **visit.options(glob))).revision
            else:
                put = settings_pb2.PutSettingRequest(
                    scope=scope, key=key, type=kind, value=value, reason=reason
                )
                revision = (await stub.PutSetting(put, **visit.options(put))).revision
        elif call == "inherit":
            if scope is None:
                gone = settings_pb2.DeleteGlobalRequest(key=key, reason=reason)
                revision = (await stub.DeleteGlobal(gone, **visit.options(gone))).revision
            else:
                delete = settings_pb2.DeleteSettingRequest(scope=scope, key=key, reason=reason)
                revision = (await stub.DeleteSetting(delete, **visit.options(delete))).revision
        elif call in ("lock", "unlock"):
            revision = await _lock(visit, call, scope, key, fields, reason)
        else:
            revision = await _restore(visit, fields, key, reason)
    except grpc.aio.AioRpcError as error:
        if error.code() is grpc.StatusCode.UNAUTHENTICATED:
            raise
        status, text, _ = failure(error)
        return await _refused(visit, here, key, level, fields, status, text)
    return RedirectResponse(f"{here.path}/keys/{key}?saved={revision}", status_code=303)


async def _refused(
    visit: Visit, here: Place, key: str, level: str, fields: dict[str, str], status: int, text: str
) -> Response:
    try:
        return await render_key_page(
            visit,
            here,
            key,
            errors={level: text},
            sent={level: fields.get("value", "")},
            status=status,
        )
    except grpc.aio.AioRpcError as error:
        if error.code() is not grpc.StatusCode.INVALID_ARGUMENT:
            raise
        # The key itself is bad: there is no key page to show the message on.
        raise FormRefused(status, text) from None


async def _lock(
    visit: Visit,
    call: str,
    scope: settings_pb2.Scope | None,
    key: str,
    fields: dict[str, str],
    reason: str,
) -> int:
    """LockSetting or UnlockSetting of the GLOBAL (scope None) or the ACCOUNT value; a
    retailer's level is sent as such and refused by the server (nothing is below it)."""
    stub = backend(visit.request).settings
    if call == "lock":
        lock = settings_pb2.LockSettingRequest(
            scope=scope,
            key=key,
            remove_overrides=fields.get("remove_overrides") == "true",
            reason=reason,
        )
        return (await stub.LockSetting(lock, **visit.options(lock))).revision
    unlock = settings_pb2.UnlockSettingRequest(scope=scope, key=key, reason=reason)
    return (await stub.UnlockSetting(unlock, **visit.options(unlock))).revision


async def _restore(visit: Visit, fields: dict[str, str], key: str, reason: str) -> int:
    """RestoreSettings for the one key at the level and scope the history row names."""
    level = _level(fields)
    target = fields.get("target", "")
    revision = fields.get("revision", "")
    if not (revision.isascii() and revision.isdigit() and len(revision) <= 18):
        raise FormRefused(400, "The form names no revision to restore.")
    scope = None
    if level != "GLOBAL":
        kind, _, ident = target.partition(":")
        if kind != level or not (ident.isascii() and ident.isdigit() and len(ident) <= 18):
            raise FormRefused(400, "The form names no scope to restore.")
        field = "account_id" if level == "ACCOUNT" else "retailer_id"
        scope = settings_pb2.Scope(**{field: int(ident)})
    message = settings_pb2.RestoreSettingsRequest(
        level=f"SETTING_LEVEL_{level}",
        scope=scope,
        keys=[key],
        revision=int(revision),
        reason=reason,
    )
    reply = await backend(visit.request).settings.RestoreSettings(message, **visit.options(message))
    return reply.revision


@signed_in_form
async def put(visit: Visit, fields: dict[str, str]) -> Response:
    """POST .../put: PutSetting, or SetGlobal for the GLOBAL level."""
    return await _write(visit, "put", fields)


@signed_in_form
async def inherit(visit: Visit, fields: dict[str, str]) -> Response:
    """POST .../inherit: DeleteSetting (DeleteGlobal for GLOBAL): the key inherits again."""
    return await _write(visit, "inherit", fields)


@signed_in_form
async def lock(visit: Visit, fields: dict[str, str]) -> Response:
    """POST .../lock: LockSetting; levels below the value cannot override it."""
    return await _write(visit, "lock", fields)


@signed_in_form
async def unlock(visit: Visit, fields: dict[str, str]) -> Response:
    """POST .../unlock: UnlockSetting."""
    return await _write(visit, "unlock", fields)


@signed_in_form
async def restore(visit: Visit, fields: dict[str, str]) -> Response:
    """POST .../restore: RestoreSettings of one key to its value after a revision."""
    return await _write(visit, "restore", fields)
