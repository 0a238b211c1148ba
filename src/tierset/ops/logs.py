"""Structured logs: one JSON object per line, a request id per call, and no secrets.

Every line carries ``time``, ``level``, ``logger``, ``message`` and ``request_id`` (the id
of the call being served, from :data:`REQUEST_ID`), plus any ``extra=`` fields. Before a
line is written, :class:`Redactor` masks what must never reach a log: the configured
database URL and its password, any ``scheme://user:password@`` credentials, and the values
of fields or headers named like credentials (``authorization``, ``x-api-key``, ...).
Configured once, by :func:`configure`, from the ``tierset`` command.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from collections.abc import Iterable
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TextIO
from urllib.parse import urlsplit

from tierset.ops.config import Config

MASK = "**********"

# The id of the call being served; the call pipeline sets it for the call's task.
REQUEST_ID: ContextVar[str | None] = ContextVar("tierset_request_id", default=None)
REQUEST_ID_HEADER = "x-request-id"
# What we accept from a caller: short and printable, so a log line cannot be forged with it.
_ACCEPTABLE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}")


def new_request_id() -> str:
    """A fresh request id (32 hex digits: 128 random bits, as a uuid4 has 122)."""
    # Without building a UUID object: this runs for every call that brings no id.
    return os.urandom(16).hex()


def accept_request_id(value: str | None) -> str:
    """The caller's request id when it is acceptable, else a fresh one."""
    if value and _ACCEPTABLE_REQUEST_ID.fullmatch(value):
        return value
    return new_request_id()


# Field and header names whose values are credentials, compared in lower case.
SENSITIVE_NAMES = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "x-api-key",
        "api_key",
        "api-key",
        "password",
        "secret",
        "token",
        "database_url",
        "dsn",
    }
)
# scheme://user:PASSWORD@host — the password part.
_URL_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s:/@]*:)([^\s@/]+)(@)")
# "authorization: Bearer abc", "x-api-key=abc", "'authorization': 'abc'" in free text.
_HEADER_VALUE = re.compile(
    r"(?i)((?:proxy-)?authorization|x-api-key|api[_-]key|password)"
    r"(['\"]?\s*[:=]\s*['\"]?)((?:bearer|basic)\s+)?([^\s'\",;}]+)"
)


def _may_name_a_credential(text: str) -> bool:
    """False only when _HEADER_VALUE cannot match `text`: ASCII text without the lower-case
    name every match holds (x-api-key holds api-key), as most log text is. Text beyond
    ASCII always goes to the pattern, whose case-insensitive match also finds names spelt
    with letters outside ASCII (PASSWORD with the long s, U+017F)."""
    if not text.isascii():
        return True
    lowered = text.lower()
    return (
        "authorization" in lowered
        or "password" in lowered
        or "api-key" in lowered
        or "api_key" in lowered
    )


class Redactor:
    """Masks known secret values and credential-shaped text in log fields."""

    def __init__(self) -> None:
        self._secrets: set[str] = set()
        # Longest first, so a DSN is masked whole before its password inside it is. Sorted
        # when a secret is added, not for every string of every line.
        self._longest_first: list[str] = []

    def add(self, secret: str) -> None:
        """Masks `secret` wherever it appears from now on (ignored when trivially short)."""
        if len(secret) >= 4:
            self._secrets.add(secret)
            self._longest_first = sorted(self._secrets, key=len, reverse=True)

    def text(self, text: str) -> str:
        """`text` with every secret masked."""
        for secret in self._longest_first:
            if secret in text:
                text = text.replace(secret, MASK)
        # Each pattern only where it can match (a line's strings rarely hold either): an
        # access line has half a dozen strings, and the two patterns were most of its cost.
        if "://" in text:
            text = _URL_PASSWORD.sub(rf"\g<1>{MASK}\g<3>", text)
        if _may_name_a_credential(text):
            text = _HEADER_VALUE.sub(rf"\g<1>\g<2>\g<3>{MASK}", text)
        return text

    def value(self, value: Any, name: str = "") -> Any:
        """`value` (a field named `name`) with secrets masked, recursing into containers."""
        if name.lower() in SENSITIVE_NAMES and value not in (None, ""):
            return MASK
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {str(k): self.value(v, str(k)) for k, v in value.items()}
        if isinstance(value, list | tuple):
            # Metadata arrives as (name, value) pairs: treat a pair as a named field.
            if len(value) == 2 and isinstance(value[0], str) and not isinstance(value, list):
                return [value[0], self.value(value[1], value[0])]
            return [self.value(item) for item in value]
        if isinstance(value, bool | int | float) or value is None:
            return value
        return self.text(str(value))


REDACTOR = Redactor()

# Attributes every LogRecord has; anything else on a record came from `extra=`. uvicorn's
# `color_message` repeats the message with terminal colour codes: noise in a JSON line.
_RECORD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {
    "message",
    "asctime",
    "color_message",
}


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object on one line, redacted."""

    def __init__(self, redactor: Redactor = REDACTOR) -> None:
        super().__init__()
        self._redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None) or REQUEST_ID.get(),
        }
        for name, value in vars(record).items():
            if name not in _RECORD_ATTRIBUTES and name not in entry:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        redacted = self._redactor.value(entry)
        return json.dumps(redacted, ensure_ascii=False, default=str)


def json_handler(stream: TextIO) -> logging.Handler:
    """A handler writing redacted JSON lines to `stream`."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    return handler


def database_secrets(config: Config) -> Iterable[str]:
    """The configured database URL and the password inside it."""
    if config.database_url is None:
        return ()
    url = config.database_url.reveal()
    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    return (url, password) if password else (url,)


def configure(config: Config, stream: TextIO | None = None) -> None:
    """Sends every log record of the process, as JSON lines, to `stream` (default stderr)."""
    for secret in database_secrets(config):
        REDACTOR.add(secret)
    # What a line never shows (JsonFormatter leaves a record's own attributes out): the
    # process's and thread's ids and names, each looked up for every record. Not collecting
    # them is the logging HOWTO's "Optimization"; the gateway writes a line per request.
    # (The caller's file and line are still found: without them `stack_info` is lost too.)
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging.basicConfig(
        level=config.log_level, handlers=[json_handler(stream or sys.stderr)], force=True
    )
