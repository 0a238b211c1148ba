"""Request bodies in, JSON text out: strict, size-limited, and exact with numbers.

A body must be ``application/json`` (UTF-8), at most the configured size, and
valid JSON by RFC 8259 (no ``NaN`` or ``Infinity``, which Python would accept).
Setting values keep every digit: numbers are parsed as ``int`` and ``Decimal``
and written back as they came, because the server stores JSON numbers exactly.
"""

from __future__ import annotations

import json
import math
from decimal import Decimal
from typing import Any

from starlette.requests import Request

from tierset.gateway.errors import bad_request

JSON_MEDIA_TYPE = "application/json"


class _OutOfRange(ValueError):
    """A JSON number that a double cannot hold (1e400 would become infinity)."""


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise _OutOfRange(text)
    return number


def check_content_type(request: Request, expected: str = JSON_MEDIA_TYPE) -> None:
    """Raises a 400 unless the body is declared as `expected` (UTF-8 JSON by default)."""
    header = request.headers.get("content-type", "")
    media_type, *params = (part.strip().lower() for part in header.split(";"))
    charset = next((p.partition("=")[2].strip('"') for p in params if p.startswith("charset=")), "")
    if media_type != expected or charset not in ("", "utf-8"):
        raise bad_request(
            "Content-Type",
            f"Content-Type must be {expected} (UTF-8).",
            "UNSUPPORTED_MEDIA_TYPE",
        )


async def read_limited(request: Request, max_bytes: int) -> bytes:
    """The body, refusing (before reading it all) one larger than `max_bytes`."""
    too_large = bad_request(
        "body", f"The request body is larger than {max_bytes} bytes.", "BODY_TOO_LARGE"
    )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request, max_bytes: int, *, exact_numbers: bool) -> Any:
    """The parsed JSON body; `exact_numbers` parses fractions as Decimal instead of float."""
    check_content_type(request)
    body = await read_limited(request, max_bytes)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise bad_request(
            "body", "The request body is not valid UTF-8.", "MALFORMED_JSON"
        ) from None
    try:
        return json.loads(
            text,
            parse_constant=_reject_constant,
            parse_float=Decimal if exact_numbers else _finite_float,
        )
    except _OutOfRange:
        raise bad_request(
            "body", "The request body has a number too large to represent.", "NUMBER_OUT_OF_RANGE"
        ) from None
    except (ValueError, RecursionError):
        raise bad_request("body", "The request body is not valid JSON.", "MALFORMED_JSON") from None


def dumps_exact(value: Any) -> str:
    """JSON text of a value parsed by `read_json(exact_numbers=True)`, every digit kept.

    ASCII-only, so text the server must judge (an unpaired surrogate, say) reaches
    it as a JSON escape rather than failing to encode here.
    """
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        members = (json.dumps(k) + ":" + dumps_exact(v) for k, v in value.items())
        return "{" + ",".join(members) + "}"
    if isinstance(value, list):
        return "[" + ",".join(dumps_exact(item) for item in value) + "]"
    return json.dumps(value)
