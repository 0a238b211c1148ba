"""Values on the command line and back: parsed by their type, shown as compact JSON.

What a person types is parsed by the setting's type (``--type``) before anything is
sent, so a typo is a usage error (exit 2) rather than a round trip:

* ``STRING``, ``LOB``: the argument as it is;
* ``INTEGER``: a whole number (``-12``, ``50``);
* ``BOOLEAN``: ``true`` or ``false``;
* ``JSON``: JSON text. It is checked here and sent as typed, never re-encoded: the
  server keeps every digit of a number (``1.50`` stays ``1.50``), Python's float would
  not.

``-`` instead of a value reads it from stdin (one trailing newline dropped, so ``echo
x |`` gives ``x``).

Shown values are compact JSON whatever the type (``"text"``, ``50``, ``true``,
``[{"name":"AFTERPAY"}]``), so a STRING ``"50"`` never looks like an INTEGER ``50``, with
numbers as the server stores them (``1.50``). ``-o json`` decodes JSON values with
Python's json (numbers as floats, as jq reads them anyway).
Comparisons (``diff``) use :func:`exact`, which keeps JSON numbers as ``Decimal``.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any, TextIO

from tierset.cli.api import UsageError
from tierset.client.model import decode_value
from tierset.v1 import settings_pb2

TYPES = ("STRING", "LOB", "INTEGER", "BOOLEAN", "JSON")
_INTEGER = re.compile(r"[+-]?[0-9]+")


def type_name(value: int) -> str:
    """``INTEGER`` for SETTING_TYPE_INTEGER."""
    return settings_pb2.SettingType.Name(value).removeprefix("SETTING_TYPE_")


def level_name(value: int) -> str:
    """``RETAILER`` for SETTING_LEVEL_RETAILER."""
    return settings_pb2.SettingLevel.Name(value).removeprefix("SETTING_LEVEL_")


def type_value(name: str) -> int:
    return settings_pb2.SettingType.Value(f"SETTING_TYPE_{name}")


def read_argument(text: str, stdin: TextIO) -> str:
    """The value as typed, or stdin's whole text for ``-`` (less one trailing newline)."""
    if text != "-":
        return text
    data = stdin.read()
    return data[:-1] if data.endswith("\n") else data


def parse(text: str, setting_type: str) -> settings_pb2.SettingValue:
    """The SettingValue of `text` read as `setting_type`; UsageError when it is not one."""
    if setting_type in ("STRING", "LOB"):
        return settings_pb2.SettingValue(string_value=text)
    if setting_type == "INTEGER":
        if not _INTEGER.fullmatch(text.strip()):
            raise UsageError(f"{text!r} is not an INTEGER (a whole number, e.g. 50)")
        number = int(text)
        if not -(2**63) <= number < 2**63:
            raise UsageError(f"{text} is outside INTEGER's range (-2^63 to 2^63-1)")
        return settings_pb2.SettingValue(integer_value=number)
    if setting_type == "BOOLEAN":
        if text.strip().lower() not in ("true", "false"):
            raise UsageError(f"{text!r} is not a BOOLEAN (true or false)")
        return settings_pb2.SettingValue(boolean_value=text.strip().lower() == "true")
    try:
        json.loads(text, parse_float=Decimal, parse_constant=_no_constant)
    except ValueError as error:
        raise UsageError(f"the value is not JSON: {error}") from None
    return settings_pb2.SettingValue(json_value=text)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def encode(value: Any, setting_type: str) -> settings_pb2.SettingValue:
    """The SettingValue of a value read from a file (export format): its Python form."""
    if setting_type in ("STRING", "LOB") and isinstance(value, str):
        return settings_pb2.SettingValue(string_value=value)
    if setting_type == "INTEGER" and isinstance(value, int) and not isinstance(value, bool):
        return settings_pb2.SettingValue(integer_value=value)
    if setting_type == "BOOLEAN" and isinstance(value, bool):
        return settings_pb2.SettingValue(boolean_value=value)
    # JSON, or a value not of its type: the server checks it and names what is wrong.
    return settings_pb2.SettingValue(json_value=json.dumps(value, default=str))


def plain(setting: settings_pb2.Setting) -> Any:
    """The Python value of a setting as the server sent it (JSON decoded)."""
    return decode_value(setting.type, setting.value)


def exact(setting: settings_pb2.Setting) -> tuple[str, Any]:
    """(type, value) to compare two settings by: JSON numbers as Decimal, so ``1.5``
    equals ``1.50`` and no digit is lost to a float."""
    if setting.value.WhichOneof("kind") == "json_value":
        return type_name(setting.type), json.loads(setting.value.json_value, parse_float=Decimal)
    return type_name(setting.type), plain(setting)


def shown(value: Any) -> str:
    """A value as one line of compact JSON; a Decimal (from :func:`exact`) as the number it
    is, every digit kept and never in exponent notation (``1.50``, ``0.0000001``)."""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, dict):
        return "{" + ",".join(f"{shown(str(k))}:{shown(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(shown(item) for item in value) + "]"
    return json.dumps(value, ensure_ascii=False, default=str)


def shown_setting(setting: settings_pb2.Setting) -> str:
    """A setting's value as a table shows it: compact JSON, numbers exactly as stored."""
    return shown(exact(setting)[1])
