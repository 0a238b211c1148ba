"""The rules for keys and typed values, in one place.

A value is stored as JSON in a ``jsonb`` column whatever its type: a STRING is
a JSON string, an INTEGER a JSON number, and so on. :func:`decode_value`
checks a proposed value against its type and returns the JSON text to store;
:func:`encode_value` turns stored JSON text back into the proto form.

Every form a value can be sent in (``string_value``, ``integer_value``,
``boolean_value``, ``json_value``) of every type passes the same rules: a
JSON setting sent as ``string_value`` is the JSON string it holds, checked
like any other JSON value.

Limits (documented in the README and the proto):

* keys: 1..255 characters of ``A-Z a-z 0-9 . _ -``, starting with a letter
  or digit; at most 100 keys per read;
* STRING: at most 4,096 characters; LOB: at most 1 MiB of UTF-8;
* JSON: at most 1 MiB of JSON text, both as sent and as stored, nested at
  most 32 deep;
* numbers: finite, and at most 1,000 digits once written out in full;
* INTEGER: -2**63 .. 2**63-1;
* no NUL character anywhere (PostgreSQL text and jsonb cannot hold it).

Numbers are stored as PostgreSQL's ``numeric`` keeps them: every digit and
the scale as sent, written out in plain decimal notation, with no negative
zero (``1E+2`` reads back as ``100``, ``1.50`` as ``1.50``, ``-0`` as
``0``). :func:`stored_number` says how. The limits count a number as it is
stored, because that is what every later read costs: ``1e-999`` is six
characters sent and 1,001 stored, so a 1 MiB array of them would be read
back as 150 MB.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any

from tierset.core.errors import FieldViolation, TiersetError, bad_field, invalid_argument
from tierset.v1 import settings_pb2

KEY_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}")
# A list of well-formed keys joined by newlines (which KEY_PATTERN never matches).
_KEY_LIST_PATTERN = re.compile(rf"(?:{KEY_PATTERN.pattern})(?:\n(?:{KEY_PATTERN.pattern}))*")
MAX_KEY_LENGTH = 255
MAX_KEYS_PER_READ = 100
MAX_STRING_CHARS = 4096
MAX_LOB_BYTES = 1024 * 1024
# What one read may return in all, in bytes of values as stored (the database refuses a
# larger read before sending it); 100 keys of LOB size would be 100 MiB in one message.
MAX_READ_BYTES = 16 * 1024 * 1024
# What tierset's own clients (the gateway, tierset.client) accept in one message: a read
# at MAX_READ_BYTES plus the envelope. gRPC's default, 4 MiB, is below legitimate reads.
CLIENT_MAX_RECEIVE_BYTES = MAX_READ_BYTES + 1024 * 1024
MAX_JSON_BYTES = 1024 * 1024
MAX_JSON_DEPTH = 32
MAX_NUMBER_DIGITS = 1000
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


class SettingType(StrEnum):
    """A value's type; the names are the API's and the database enum's labels."""

    LOB = "LOB"
    STRING = "STRING"
    INTEGER = "INTEGER"
    BOOLEAN = "BOOLEAN"
    JSON = "JSON"


class Level(StrEnum):
    """Where a setting is stored, least specific first."""

    GLOBAL = "GLOBAL"
    ACCOUNT = "ACCOUNT"
    RETAILER = "RETAILER"


TYPE_FROM_PROTO = {
    settings_pb2.SETTING_TYPE_LOB: SettingType.LOB,
    settings_pb2.SETTING_TYPE_STRING: SettingType.STRING,
    settings_pb2.SETTING_TYPE_INTEGER: SettingType.INTEGER,
    settings_pb2.SETTING_TYPE_BOOLEAN: SettingType.BOOLEAN,
    settings_pb2.SETTING_TYPE_JSON: SettingType.JSON,
}
TYPE_TO_PROTO = {name: number for number, name in TYPE_FROM_PROTO.items()}
LEVEL_TO_PROTO = {
    Level.GLOBAL: settings_pb2.SETTING_LEVEL_GLOBAL,
    Level.ACCOUNT: settings_pb2.SETTING_LEVEL_ACCOUNT,
    Level.RETAILER: settings_pb2.SETTING_LEVEL_RETAILER,
}


def check_key(key: str, field: str = "key") -> str:
    """Returns the key if it is well formed, else raises INVALID_ARGUMENT naming it."""
    if not key:
        raise bad_field(field, "key must not be empty")
    if len(key) > MAX_KEY_LENGTH:
        raise bad_field(field, f"key {key[:40]!r}... is longer than {MAX_KEY_LENGTH} characters")
    if not KEY_PATTERN.fullmatch(key):
        raise bad_field(
            field,
            f"key {key!r} must start with a letter or digit and contain only "
            "letters, digits, '.', '_' and '-'",
        )
    return key


def check_keys(keys: list[str]) -> list[str]:
    """Checks a read's key list: 1..100 well-formed keys, none twice."""
    if not keys:
        raise bad_field("keys", "at least one key is required")
    if len(keys) > MAX_KEYS_PER_READ:
        raise bad_field("keys", f"at most {MAX_KEYS_PER_READ} keys may be read at once")
    # Every read checks its keys: a well-formed list passes in one regex over the joined
    # keys and one set; only a bad one is taken apart key by key below, for the violations
    # naming each. The count of separators proves no key brought one of its own ("A\nB"
    # would otherwise pass as two well-formed keys).
    joined = "\n".join(keys)
    if (
        joined.count("\n") == len(keys) - 1
        and _KEY_LIST_PATTERN.fullmatch(joined)
        and len(set(keys)) == len(keys)
    ):
        return keys
    violations: list[FieldViolation] = []
    seen: set[str] = set()
    for index, key in enumerate(keys):
        try:
            check_key(key, f"keys[{index}]")
        except TiersetError as error:
            violations.extend(error.violations)
            continue
        if key in seen:
            violations.append(FieldViolation(f"keys[{index}]", f"key {key!r} is repeated"))
        seen.add(key)
    if violations:
        raise invalid_argument("; ".join(v.description for v in violations), violations)
    return keys


def unstorable_text(text: str) -> str | None:
    """Why PostgreSQL could not store this text (NUL, unpaired surrogate), or None."""
    if "\x00" in text:
        return "must not contain the NUL character (\\u0000)"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "must not contain unpaired UTF-16 surrogates"
    return None


def _json_depth_exceeds(value: Any, limit: int) -> bool:
    # Iterative, so a hostile document cannot exhaust the interpreter's stack; only
    # containers are visited, a megabyte of numbers is one list.
    stack: list[tuple[Any, int]] = [(value, 1)] if isinstance(value, dict | list) else []
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        children = node.values() if isinstance(node, dict) else node
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def _first_unstorable(value: Any) -> str | None:
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            problem = unstorable_text(node)
            if problem:
                return problem
        elif isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return None


def _may_hold_unstorable(text: str) -> bool:
    """Whether parsing `text` can yield a NUL or an unpaired surrogate: only through a
    \\u escape (raw control characters are not JSON), or a surrogate in the text itself."""
    if "\\u" in text:
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object whose members are all named once: with two alike, which one a reader
    keeps differs between parsers (jsonb keeps the last), so neither is stored."""
    members = dict(pairs)
    if len(members) != len(pairs):
        seen: set[str] = set()
        for name, _ in pairs:
            if name in seen:
                raise ValueError(f"the member {json.dumps(name)[:60]} is named twice")
            seen.add(name)
    return members


def _too_many_digits(text: str) -> ValueError:
    return ValueError(
        f"number {text[:40]} has more than {MAX_NUMBER_DIGITS} digits written out in full"
    )


def _written_digits(number: Decimal) -> int:
    """How many digits PostgreSQL writes for `number` (plain notation), computed without
    writing them: 1e-999 is 1,000 (0.000...1), 1E+5 is 6, 1.50 is 3."""
    exact = number.as_tuple()
    assert isinstance(exact.exponent, int)  # a JSON number is never NaN or infinite
    if exact.exponent >= 0:
        return 1 if exact.digits == (0,) else len(exact.digits) + exact.exponent
    decimal_places = -exact.exponent
    return max(1, len(exact.digits) - decimal_places) + decimal_places


def stored_number(text: str) -> str:
    """A JSON number token as PostgreSQL stores and reads it back: every digit and the
    scale as sent, in plain decimal notation, no negative zero (-0.0 is 0.0)."""
    number = Decimal(text)
    if _written_digits(number) > MAX_NUMBER_DIGITS:
        raise _too_many_digits(text)
    written = format(number, "f")
    return written.removeprefix("-") if number.is_zero() else written


class _NumberRules:
    """The number hooks of one parse: each number is checked, and how many bytes longer
    the document is once PostgreSQL writes its numbers out is added up.

    Only a number with an exponent is written out longer than it was sent; the others,
    nearly all of them, are checked by their length alone (a hook runs for every number
    of a document, so it must be cheap).
    """

    def __init__(self) -> None:
        self.growth = 0

    def float_(self, text: str) -> float:
        # `text` is a well-formed JSON number (the parser checked), so Decimal reads it exactly.
        if "e" in text or "E" in text:
            self.growth += max(0, len(stored_number(text)) - len(text))
        elif len(text) > MAX_NUMBER_DIGITS and _written_digits(Decimal(text)) > MAX_NUMBER_DIGITS:
            raise _too_many_digits(text)
        number = float(text)
        if not math.isfinite(number):
            raise ValueError(f"number {text[:40]} is out of range")
        return number

    @staticmethod
    def int_(text: str) -> int:
        # Written out exactly as sent (-0 as 0, shorter).
        if len(text) > MAX_NUMBER_DIGITS and len(text.lstrip("-")) > MAX_NUMBER_DIGITS:
            raise _too_many_digits(text)
        return int(text)


# A STRING or LOB sent as JSON text is longer than the string it holds (its quotes, and up
# to six characters for each escaped one); its own limit is checked once it is decoded.
MAX_ENCODED_STRING_BYTES = 6 * MAX_LOB_BYTES + 2


def parse_json_text(text: str, key: str, field: str, max_bytes: int = MAX_JSON_BYTES) -> Any:
    """Parses JSON text strictly (no NaN/Infinity), within the size and depth limits.

    The size is checked as sent and as stored: PostgreSQL writes numbers out in full
    (see :func:`stored_number`), and its text is never longer than the sent one otherwise
    (it drops spacing and writes no escape longer than JSON requires).
    """
    # surrogatepass: an unpaired surrogate is refused below, by name, not as a crash here.
    sent_bytes = len(text.encode("utf-8", "surrogatepass"))
    if sent_bytes > max_bytes:
        raise bad_field(field, f"{key}: JSON value is larger than {max_bytes} bytes")
    numbers = _NumberRules()
    try:
        value = json.loads(
            text,
            parse_constant=_reject_constant,
            object_pairs_hook=_unique_members,
            parse_float=numbers.float_,
            parse_int=numbers.int_,
        )
    except RecursionError:
        raise bad_field(
            field, f"{key}: JSON value is nested deeper than {MAX_JSON_DEPTH} levels"
        ) from None
    except ValueError as error:
        raise bad_field(field, f"{key}: value is not valid JSON ({error})") from None
    if _json_depth_exceeds(value, MAX_JSON_DEPTH):
        raise bad_field(field, f"{key}: JSON value is nested deeper than {MAX_JSON_DEPTH} levels")
    problem = _first_unstorable(value) if _may_hold_unstorable(text) else None
    if problem:
        raise bad_field(field, f"{key}: value {problem}")
    if sent_bytes + numbers.growth > max_bytes:
        raise bad_field(
            field,
            f"{key}: JSON value is larger than {max_bytes} bytes as stored"
            " (PostgreSQL writes every number out in full)",
        )
    return value


def stored_json(text: str) -> str:
    """Valid JSON text as a JSON setting reads it back: compact, object members in
    PostgreSQL's order (shorter keys first, then by bytes; the last of duplicates kept),
    numbers as :func:`stored_number` writes them. It documents (and the tests pin) what
    PostgreSQL does; the server itself never needs it."""

    def render(node: Any) -> str:
        if isinstance(node, _NumberToken):
            return stored_number(node.text)
        if isinstance(node, list):
            return "[" + ",".join(render(item) for item in node) + "]"
        if isinstance(node, dict):
            ordered = sorted(node, key=lambda name: (len(name.encode()), name.encode()))
            members = (
                json.dumps(name, ensure_ascii=False) + ":" + render(node[name]) for name in ordered
            )
            return "{" + ",".join(members) + "}"
        return json.dumps(node, ensure_ascii=False)

    return render(json.loads(text, parse_float=_NumberToken, parse_int=_NumberToken))


@dataclass(frozen=True)
class _NumberToken:
    """A number as written in JSON text, kept as text by :func:`stored_json`."""

    text: str


def decode_value(key: str, setting_type: SettingType, value: settings_pb2.SettingValue) -> str:
    """Checks a proposed value against its type and returns the JSON text to store.

    Raises INVALID_ARGUMENT naming the key and what the type expects.
    """
    field = "value"
    kind = value.WhichOneof("kind")
    if kind is None:
        raise bad_field(field, f"{key}: a value is required")
    if kind == "json_value":
        limit = MAX_JSON_BYTES if setting_type is SettingType.JSON else MAX_ENCODED_STRING_BYTES
        candidate: Any = parse_json_text(value.json_value, key, field, limit)
    elif setting_type is SettingType.JSON:
        # A JSON setting sent in another field is the JSON value it holds, and passes the
        # same rules as one sent as JSON text (size, NUL, depth).
        as_json = json.dumps(getattr(value, kind), ensure_ascii=False)
        parse_json_text(as_json, key, field)
        return as_json
    else:
        candidate = getattr(value, kind)

    expected = {
        SettingType.STRING: "a string",
        SettingType.LOB: "a string",
        SettingType.INTEGER: "a whole number between -2^63 and 2^63-1",
        SettingType.BOOLEAN: "true or false",
        SettingType.JSON: "any JSON value",
    }[setting_type]

    def wrong() -> TiersetError:
        return bad_field(field, f"{key}: type {setting_type} expects {expected}")

    if setting_type in (SettingType.STRING, SettingType.LOB):
        if not isinstance(candidate, str):
            raise wrong()
        problem = unstorable_text(candidate)
        if problem:
            raise bad_field(field, f"{key}: value {problem}")
        if setting_type is SettingType.STRING and len(candidate) > MAX_STRING_CHARS:
            raise bad_field(field, f"{key}: STRING is longer than {MAX_STRING_CHARS} characters")
        if setting_type is SettingType.LOB and len(candidate.encode("utf-8")) > MAX_LOB_BYTES:
            raise bad_field(field, f"{key}: LOB is larger than {MAX_LOB_BYTES} bytes")
    elif setting_type is SettingType.INTEGER:
        # bool is an int in Python; a JSON true is not an INTEGER.
        if isinstance(candidate, bool) or not isinstance(candidate, int):
            raise wrong()
        if not INT64_MIN <= candidate <= INT64_MAX:
            raise wrong()
    elif setting_type is SettingType.BOOLEAN:
        if not isinstance(candidate, bool):
            raise wrong()
    elif kind == "json_value":
        # Stored as sent: jsonb keeps every digit of a number that a float would round.
        return value.json_value
    return json.dumps(candidate, ensure_ascii=False, separators=(",", ":"))


# A JSON string token, escapes included (the unrolled form: no backtracking per character).
_JSON_STRING = re.compile(r'("[^"\\]*(?:\\.[^"\\]*)*")')


def compact_json(text: str) -> str:
    """PostgreSQL's jsonb text without the space it puts after every ',' and ':'.

    jsonb writes no other whitespace outside strings, so only the text between string
    tokens needs those two replacements, which run at C speed: a megabyte of numbers
    takes milliseconds, where a callback per match took a second on the event loop.
    Numbers and strings are left exactly as they are.
    """
    if '"' not in text:
        return text.replace(", ", ",").replace(": ", ":")
    parts = _JSON_STRING.split(text)  # strings at the odd indexes
    parts[0::2] = [part.replace(", ", ",").replace(": ", ":") for part in parts[0::2]]
    return "".join(parts)


def encode_value(setting_type: SettingType, stored_json: str) -> settings_pb2.SettingValue:
    """Turns a stored JSON text into the proto field that matches the type."""
    if setting_type is SettingType.JSON:
        return settings_pb2.SettingValue(json_value=stored_json)
    value = json.loads(stored_json)
    if setting_type is SettingType.INTEGER:
        return settings_pb2.SettingValue(integer_value=value)
    if setting_type is SettingType.BOOLEAN:
        return settings_pb2.SettingValue(boolean_value=value)
    return settings_pb2.SettingValue(string_value=value)


def setting_type_from_proto(number: int, field: str = "type") -> SettingType:
    """The type named by a request, or INVALID_ARGUMENT when it is unset or unknown."""
    try:
        return TYPE_FROM_PROTO[number]  # type: ignore[index]
    except KeyError:
        raise bad_field(field, "type must be one of LOB, STRING, INTEGER, BOOLEAN, JSON") from None
