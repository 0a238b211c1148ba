"""Request bodies in, JSON text out: strict, size-limited, and exact with numbers.

A body must be ``application/json`` (UTF-8), at most the configured size (else
413), and valid JSON by RFC 8259 (no ``NaN`` or ``Infinity``, which Python would
accept) with no member twice in one object (Python would keep the last: the
client and the server would disagree on what was sent). Setting values keep
every digit: numbers are parsed as ``int`` and ``Decimal`` and written back as
they came, because the server stores JSON numbers exactly; text is written back
as UTF-8, so the server measures the bytes the client sent. A large body is parsed
(and, by its caller, written back) in a worker thread, off the event loop.
"""

from __future__ import annotations

import json
import math
import re
from decimal import Decimal
from typing import Any

from starlette.requests import Request

from tierset.core.reasons import Reason
from tierset.gateway.errors import CONTENT_TOO_LARGE, bad_request, too_large
from tierset.ops.large_reads import off_loop

JSON_MEDIA_TYPE = "application/json"


class _OutOfRange(ValueError):
    """A JSON number that a double cannot hold (1e400 would become infinity)."""


class _DuplicateMember(ValueError):
    """An object with the same member name twice."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    members: dict[str, Any] = {}
    for name, value in pairs:
        if name in members:
            raise _DuplicateMember(name)
        members[name] = value
    return members


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
            Reason.UNSUPPORTED_MEDIA_TYPE,
        )


async def read_limited(request: Request, max_bytes: int) -> bytes:
    """The body, refusing (before reading it all) one larger than `max_bytes`."""
    refused = too_large(
        CONTENT_TOO_LARGE,
        "body",
        f"The request body is larger than {max_bytes} bytes.",
        Reason.BODY_TOO_LARGE,
    )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise refused
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise refused
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request, max_bytes: int, *, exact_numbers: bool) -> Any:
    """The parsed JSON body; `exact_numbers` parses fractions as Decimal instead of float."""
    value, _ = await read_json_sized(request, max_bytes, exact_numbers=exact_numbers)
    return value


async def read_json_sized(
    request: Request, max_bytes: int, *, exact_numbers: bool
) -> tuple[Any, int]:
    """:func:`read_json`, and the body's size in bytes (for :func:`off_loop` after it).

    A body over ``LARGE_READ_BYTES`` is parsed in a worker thread (ops.large_reads.off_loop),
    as the server converts large values: parsing 2 MB takes a good part of a second, and
    on the event loop it would stall every other connection of this process meanwhile.
    """
    check_content_type(request)
    body = await read_limited(request, max_bytes)
    return await off_loop(len(body), lambda: _parse(body, exact_numbers)), len(body)


def _parse(body: bytes, exact_numbers: bool) -> Any:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise bad_request(
            "body", "The request body is not valid UTF-8.", Reason.MALFORMED_JSON
        ) from None
    try:
        return json.loads(
            text,
            parse_constant=_reject_constant,
            parse_float=Decimal if exact_numbers else _finite_float,
            object_pairs_hook=_unique_members,
        )
    except _DuplicateMember as duplicate:
        # ASCII-escaped: the name may hold anything, an unpaired surrogate included.
        name = json.dumps(duplicate.name[:100])
        raise bad_request(
            "body",
            f"The request body has the member {name} more than once in one object.",
            Reason.DUPLICATE_MEMBER,
        ) from None
    except _OutOfRange:
        raise bad_request(
            "body",
            "The request body has a number too large to represent.",
            Reason.NUMBER_OUT_OF_RANGE,
        ) from None
    except (ValueError, RecursionError):
        raise bad_request(
            "body", "The request body is not valid JSON.", Reason.MALFORMED_JSON
        ) from None


_SURROGATE = re.compile("[\ud800-\udfff]")


def _escape_surrogate(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def _plain_json(value: Any) -> str:
    # Text stays UTF-8 as the client sent it (an escaped "\u00e9" is 6 bytes, "é" 2): the
    # server's size limits must count what was sent. Only an unpaired surrogate, which a
    # protobuf string cannot carry, goes on as its JSON escape, for the server to judge.
    return _SURROGATE.sub(_escape_surrogate, json.dumps(value, ensure_ascii=False))


def dumps_exact(value: Any) -> str:
    """JSON text of a value parsed by `read_json(exact_numbers=True)`, every digit kept."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        members = (_plain_json(k) + ":" + dumps_exact(v) for k, v in value.items())
        return "{" + ",".join(members) + "}"
    if isinstance(value, list):
        return "[" + ",".join(dumps_exact(item) for item in value) + "]"
    return _plain_json(value)
