"""How the API commands print: aligned tables for people, JSON for scripts, one-line errors.

* Tables: a header row in capitals, columns padded to their widest cell, two spaces
  apart, nothing trailing. A cell is one line: values longer than :data:`CELL_WIDTH`
  characters are cut with ``…`` (``-o json`` always has them whole).
* JSON: one document per command (``watch``: one object per line), keys in a stable
  order, UTF-8; settings as :func:`setting_json` shapes them.
* Errors: ``error: CODE (REASON): message`` on stderr, one line, clipped; the caller
  exits 1. Nothing here ever prints a traceback.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from tierset.cli.api import values
from tierset.client.errors import TiersetError
from tierset.v1 import settings_pb2

CELL_WIDTH = 60
_MESSAGE_WIDTH = 400
UNSET = "-"


def table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """`rows` under `headers`, each column as wide as its widest cell."""
    lines = [list(headers), *([_cell(c) for c in row] for row in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(headers))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def _cell(text: str) -> str:
    one_line = text.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    return one_line if len(one_line) <= CELL_WIDTH else one_line[: CELL_WIDTH - 1] + "…"


def emit_json(document: Any) -> None:
    """`document` as indented JSON on stdout."""
    print(json.dumps(document, indent=2, ensure_ascii=False, default=str))


def emit_line(document: Any) -> None:
    """`document` as one line of JSON on stdout, flushed (a watch's events)."""
    print(json.dumps(document, ensure_ascii=False, separators=(",", ":"), default=str), flush=True)


def note(text: str) -> None:
    """A message for the person at the terminal (stderr), never part of the output."""
    print(text, file=sys.stderr)


def error_line(error: TiersetError) -> str:
    """``error: PERMISSION_DENIED (PERMISSION_DENIED): ...``: the code, the server's
    reason and its message on one line."""
    label = f"{error.code.name} ({error.reason})" if error.reason else error.code.name
    message = " ".join((error.message or "").split())
    if len(message) > _MESSAGE_WIDTH:
        message = message[: _MESSAGE_WIDTH - 1] + "…"
    details = ", ".join(f"{k}={v}" for k, v in sorted(error.metadata.items()))
    return f"error: {label}: {message}" + (f" [{details}]" if details else "")


def timestamp(stamp: Timestamp) -> str | None:
    """RFC 3339 in UTC, to the second; None for an unset timestamp."""
    if not stamp.seconds and not stamp.nanos:
        return None
    moment = datetime.fromtimestamp(stamp.seconds, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def setting_json(setting: settings_pb2.Setting) -> dict[str, Any]:
    """One setting for ``-o json``: its value decoded (JSON as JSON, not as text)."""
    return {
        "key": setting.key,
        "type": values.type_name(setting.type),
        "value": values.plain(setting),
        "level": values.level_name(setting.level),
        "version": setting.version,
        "mod_revision": setting.mod_revision,
        "create_revision": setting.create_revision,
        "update_time": timestamp(setting.update_time),
        "locked": _lock_json(setting.lock) if setting.HasField("lock") else None,
    }


def _lock_json(lock: settings_pb2.SettingLock) -> dict[str, Any]:
    return {
        "by": lock.actor.username or None,
        "at": timestamp(lock.lock_time),
        "revision": lock.revision,
    }


def level_cell(setting: settings_pb2.Setting) -> str:
    """``ACCOUNT``, or ``ACCOUNT (locked)`` when levels below cannot override it."""
    locked = " (locked)" if setting.HasField("lock") else ""
    return values.level_name(setting.level) + locked


def value_cell(setting: settings_pb2.Setting | None) -> str:
    return UNSET if setting is None else values.shown_setting(setting)
