"""CSRF: every form the console serves carries its session's token; every POST must too.

The synchronizer-token pattern: the token is random per session (session.py), sealed in
the session cookie and written into each form as the hidden field ``csrf``. A POST is
carried out only when that field equals the session's token (compared in constant time);
otherwise it is refused with 403 before any call is made. A cross-site page can make the
browser send the cookie (were it not ``SameSite=Strict``) but cannot read a page to learn
the token, so it cannot forge the field. The GET forms (the prefix filter) change nothing
and carry no token, so it never lands in a URL, a history or a log.

Form bodies are read here too, bounded: ``application/x-www-form-urlencoded`` UTF-8 of at
most :data:`MAX_FORM_BYTES` (a LOB value is at most 1 MiB, percent-encoded up to three times
that) and :data:`MAX_FORM_FIELDS` fields; a field sent twice is refused, as the OAuth form
is, since which copy counts must not depend on who reads it.
"""

from __future__ import annotations

import hmac
from urllib.parse import parse_qsl

from starlette.requests import Request

from tierset.gateway import jsonbody
from tierset.gateway.console.session import Session

FIELD = "csrf"
MAX_FORM_BYTES = 4 * 1024 * 1024
MAX_FORM_FIELDS = 20


class FormRefused(Exception):
    """A POST that is not carried out: a bad body or a missing or wrong CSRF token."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


async def read_form(request: Request) -> dict[str, str]:
    """The POSTed form's fields, or FormRefused (400) when it is not a form we can read."""
    body = await jsonbody.read_limited(request, MAX_FORM_BYTES)
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if body and media_type != "application/x-www-form-urlencoded":
        raise FormRefused(415, "The form must be sent as application/x-www-form-urlencoded.")
    try:
        pairs = parse_qsl(
            body.decode("ascii"),
            keep_blank_values=True,
            encoding="utf-8",
            errors="strict",
            max_num_fields=MAX_FORM_FIELDS,
        )
    except (UnicodeDecodeError, ValueError):
        raise FormRefused(400, "The form is not form-encoded UTF-8.") from None
    fields: dict[str, str] = {}
    for name, value in pairs:
        if name in fields:
            raise FormRefused(400, f"The form sends {name} more than once.")
        fields[name] = value
    return fields


def check(session: Session | None, fields: dict[str, str]) -> None:
    """Raises FormRefused (403) unless the form carries `session`'s CSRF token."""
    sent = fields.get(FIELD, "")
    if session is None or not sent or not hmac.compare_digest(sent, session.csrf):
        raise FormRefused(
            403,
            "This form was not sent from a page of this console session (its security token"
            " is missing or stale). Reload the page and try again.",
        )
