"""ETags and conditional PUTs on the Fluent Commerce paths: HTTP's preconditions as
PutSettingRequest.expected_version.

A GET of one key answers the *effective* setting, which may be inherited from a
higher level, so its ETag names the level as well as the version it read:
``"ACCOUNT.3"``. A PUT writes the setting stored at the path's own level, so:

* ``If-Match: "<path level>.N"`` → expected_version N (409 when it moved on);
* ``If-Match: "<higher level>.N"`` (the client read an inherited value, so no
  override existed) → expected_version 0: the PUT only creates the override,
  409 when someone created it meanwhile. The inherited setting's own version is
  not checked: the write does not change it;
* ``If-None-Match: *`` → expected_version 0 (create only);
* neither → unconditional, last write wins (atomically, on the server).

A DELETE removes the setting stored at the path's level: ``If-Match`` maps as for a
PUT (an inherited ETag means "there was no override": 404 while there still is none,
409 once someone created one); ``If-None-Match`` means nothing for a delete (400).

Refused with a 400 naming the header: an ETag this path's GET cannot have issued
(malformed, weak, a list, a lower level than the path's), ``If-Match: *`` (the
server has no "any version, but it must exist" condition), ``If-None-Match``
with anything but ``*``, and both headers at once.
"""

from __future__ import annotations

import re

from starlette.requests import Request

from tierset.core.reasons import Reason
from tierset.gateway.errors import GatewayError, bad_request
from tierset.v1 import settings_pb2

INT64_MAX = 2**63 - 1
IF_MATCH = "If-Match"
IF_NONE_MATCH = "If-None-Match"
_ETAG = re.compile(r'"(GLOBAL|ACCOUNT|RETAILER)\.([1-9][0-9]{0,18})"')
# Most general first: a path may be conditioned on its own level or one above it.
_LEVELS = ("GLOBAL", "ACCOUNT", "RETAILER")
_LEVEL_PREFIX = "SETTING_LEVEL_"


def level_name(level: settings_pb2.SettingLevel) -> str:
    """``ACCOUNT`` for SETTING_LEVEL_ACCOUNT."""
    return settings_pb2.SettingLevel.Name(level).removeprefix(_LEVEL_PREFIX)


def etag(level: str, version: int) -> str:
    """The strong ETag of a setting read (or written) at `level` with `version`."""
    return f'"{level}.{version}"'


def etag_of(setting: settings_pb2.Setting) -> str:
    """The ETag of a setting GetSettings returned."""
    return etag(level_name(setting.level), setting.version)


def _refused(header: str, description: str) -> GatewayError:
    return bad_request(header, description, Reason.BAD_PRECONDITION)


def _from_if_match(value: str, path_level: str) -> int:
    if value == "*":
        raise _refused(
            IF_MATCH,
            "If-Match: * is not supported; send the ETag a GET of this key returned, or "
            "If-None-Match: * to create only.",
        )
    match = _ETAG.fullmatch(value)
    if match is None or int(match[2]) > INT64_MAX:
        raise _refused(
            IF_MATCH,
            'If-Match must be one ETag a GET of this key returned, e.g. "ACCOUNT.3".',
        )
    level, version = match[1], int(match[2])
    if _LEVELS.index(level) > _LEVELS.index(path_level):
        raise _refused(
            IF_MATCH, f"If-Match names a {level} version; this path's GET never returns one."
        )
    return version if level == path_level else 0


def expected_version(request: Request, path_level: str) -> int | None:
    """The expected_version a PUT's precondition headers ask for; None when it has none."""
    if_match = request.headers.get(IF_MATCH)
    if_none_match = request.headers.get(IF_NONE_MATCH)
    if if_match is not None and if_none_match is not None:
        raise _refused(IF_MATCH, "Send If-Match or If-None-Match, not both.")
    if if_none_match is not None:
        if if_none_match.strip() != "*":
            raise _refused(IF_NONE_MATCH, "If-None-Match on a PUT must be * (create only).")
        return 0
    if if_match is not None:
        return _from_if_match(if_match.strip(), path_level)
    return None


def delete_expected_version(request: Request, path_level: str) -> int | None:
    """The expected_version a DELETE's If-Match asks for; None when it has none."""
    if request.headers.get(IF_NONE_MATCH) is not None:
        raise _refused(IF_NONE_MATCH, "If-None-Match has no meaning on a DELETE; send If-Match.")
    if_match = request.headers.get(IF_MATCH)
    return None if if_match is None else _from_if_match(if_match.strip(), path_level)
