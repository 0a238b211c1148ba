"""The console's session: a cookie sealed with AES-GCM, holding the bearer token.

Where the session lives, and why: **in the cookie, encrypted and authenticated**, not in
a table of the gateway's memory. The gateway runs as several processes sharing one port
(``TIERSET_GATEWAY_PROCESSES``) and as several pods behind a Service; a table in one
process would sign a user out whenever the next connection landed in another. The key is
derived (HKDF-SHA256) from the console's OAuth client secret, which every gateway serving
the console already shares, so no second secret has to be deployed; rotating that secret
ends every session.

The invariants:

* **The token never reaches JavaScript or the logs.** The cookie is ``HttpOnly`` (and
  sealed: its bytes say nothing without the key); ``Session`` keeps the token out of its
  repr; the envelope logs paths, never cookies.
* **A cookie that does not open is no session.** Tampered, truncated, sealed with another
  key or past its expiry: :func:`open_cookie` answers None and the visitor signs in again.
* **Every session has a CSRF token** (csrf.py), a signed-out one too, so the sign-in form
  is protected like every other; signing in issues a new one (no fixation).
* **The session ends with its token.** Its expiry is the access token's; the server
  decides the rest: a page whose call comes back UNAUTHENTICATED (the token revoked, the
  user's password changed) clears the cookie and shows the sign-in page.

Signing out clears the cookie. The API has no call to revoke an access token, so the
token itself stays valid on the server until it expires (``TIERSET_ACCESS_TOKEN_SECONDS``);
nothing but the sealed cookie ever held it, and that is gone from the browser.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import secrets
import time
from dataclasses import dataclass, field, replace

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from starlette.requests import Request
from starlette.responses import Response

COOKIE_NAME = "tierset_console"
COOKIE_PATH = "/console"
# A signed-out session (only its CSRF token) lives for a day: long enough to fill the form.
ANONYMOUS_SECONDS = 24 * 3600
_NONCE_BYTES = 12
# Far above a real session (a token, a username, a CSRF token); a longer cookie is not ours.
_MAX_COOKIE_CHARS = 4000


@dataclass(frozen=True)
class Session:
    """One browser's session: signed in when `token` is set."""

    csrf: str
    expires_at: float
    token: str = field(default="", repr=False)
    username: str = ""

    @property
    def signed_in(self) -> bool:
        return bool(self.token)


def anonymous() -> Session:
    """A signed-out session with a fresh CSRF token."""
    return Session(csrf=secrets.token_urlsafe(32), expires_at=time.time() + ANONYMOUS_SECONDS)


def signed_in(username: str, token: str, expires_in: int) -> Session:
    """A session for a token just issued (a new CSRF token, so none from before carries over)."""
    return replace(anonymous(), token=token, username=username, expires_at=time.time() + expires_in)


class Sealer:
    """Seals sessions into cookie values and opens them, with one key."""

    def __init__(self, client_secret: str) -> None:
        key = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=b"tierset console session v1"
        ).derive(client_secret.encode())
        self._aead = AESGCM(key)

    def seal(self, session: Session) -> str:
        plain = json.dumps(
            [session.csrf, session.expires_at, session.token, session.username],
            separators=(",", ":"),
        ).encode()
        nonce = os.urandom(_NONCE_BYTES)
        sealed = nonce + self._aead.encrypt(nonce, plain, COOKIE_NAME.encode())
        return base64.urlsafe_b64encode(sealed).decode().rstrip("=")

    def open(self, value: str) -> Session | None:
        if len(value) > _MAX_COOKIE_CHARS:
            return None
        try:
            raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
            plain = self._aead.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], COOKIE_NAME.encode())
            csrf, expires_at, token, username = json.loads(plain)
        except (binascii.Error, InvalidTag, ValueError, TypeError):
            return None
        if not (isinstance(csrf, str) and isinstance(expires_at, int | float)):
            return None
        if expires_at <= time.time():
            return None
        return Session(csrf, float(expires_at), str(token), str(username))


def sealer(request: Request) -> Sealer:
    """The app's sealer (made once, from the configured client secret)."""
    found: Sealer = request.app.state.console_sealer
    return found


def from_request(request: Request) -> Session | None:
    """The request's session, or None when it has no cookie that opens."""
    value = request.cookies.get(COOKIE_NAME)
    return None if value is None else sealer(request).open(value)


def store(request: Request, response: Response, session: Session) -> None:
    """Sets the cookie carrying `session` on `response`."""
    response.set_cookie(
        COOKIE_NAME,
        sealer(request).seal(session),
        max_age=max(1, int(session.expires_at - time.time())),
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        # Secure when the browser reached us over TLS (directly, or through a trusted proxy
        # whose X-Forwarded-Proto uvicorn believes): over plain HTTP it would never be sent.
        secure=request.url.scheme == "https",
    )


def clear(request: Request, response: Response) -> None:
    """Removes the session cookie."""
    response.delete_cookie(
        COOKIE_NAME,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
