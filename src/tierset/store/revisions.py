"""The change log's vocabulary: who changed something, what a change was, page tokens.

Every committed change takes exactly one revision of one store-wide counter,
in commit order (migration 0005 explains how and what it costs), and is
written to the change log in the same transaction. So:

- a reader that has seen revision N and asks for ``revision > N`` misses nothing;
- every read reports the revision its snapshot saw: all changes up to it, none after;
- a refused or failed write leaves no log row and spends no revision;
- revisions have no gaps in the log except at or below ``compacted_revision``
  (removed by compaction, or numbered by the migration without history).

Asking for anything below the compacted revision is FAILED_PRECONDITION with reason
REVISION_COMPACTED and the compacted revision in the error's metadata, so a client
knows to re-read instead of trusting a partial history.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime

from tierset.core import errors
from tierset.core.reasons import Reason
from tierset.core.values import Level, SettingType

# The largest Unicode code point: above every key (keys are ASCII), so [prefix,
# prefix + TOP) is exactly the keys starting with prefix in the C collation.
_TOP = "\U0010ffff"


@dataclass(frozen=True)
class Actor:
    """Who made a change, as the log records it; every field may be unknown (None)."""

    user_id: int | None = None
    username: str | None = None
    credential_kind: str | None = None
    credential_id: int | None = None
    request_id: str | None = None

    def columns(self) -> tuple[int | None, str | None, str | None, int | None, str | None]:
        """The log's actor columns, in statement order."""
        return (
            self.user_id,
            self.username,
            self.credential_kind,
            self.credential_id,
            self.request_id,
        )


NO_ACTOR = Actor()


@dataclass(frozen=True)
class Change:
    """One row of the change log; values are JSON text, None for "there was none"."""

    revision: int
    seq: int
    change_time: datetime
    operation: str
    level: Level
    account_id: int | None
    retailer_id: int | None
    owner_account_id: int | None
    key: str
    setting_id: int
    old_type: SettingType | None
    old_value: str | None
    old_version: int | None
    new_type: SettingType | None
    new_value: str | None
    new_version: int | None
    actor: Actor
    reason: str
    # The key is a secret this caller may not see: the values hold nothing (services/keydefs.py).
    masked: bool = False


def key_range(prefix: str) -> tuple[str, str]:
    """The [low, high) key range of the keys starting with `prefix` ('' : every key)."""
    return prefix, prefix + _TOP


def revision_compacted(compacted_revision: int) -> errors.TiersetError:
    """A request for history the log no longer holds."""
    return errors.failed_precondition(
        f"the change log holds revisions after {compacted_revision} only; re-read the"
        " current state instead",
        Reason.REVISION_COMPACTED,
        compacted_revision=str(compacted_revision),
    )


def future_revision(field: str, revision: int, current: int) -> errors.TiersetError:
    """A request for a revision the store has not reached."""
    error = errors.out_of_range(
        field,
        f"revision {revision} is after the current revision {current}",
        Reason.FUTURE_REVISION,
    )
    error.metadata["current_revision"] = str(current)
    return error


def check_readable(revision: int, compacted: int, current: int, field: str) -> None:
    """Raises unless the state after `revision` can be answered from the log."""
    if revision < compacted:
        raise revision_compacted(compacted)
    if revision > current:
        raise future_revision(field, revision, current)


def encode_token(kind: str, position: list[object]) -> str:
    """An opaque page token: which listing it continues and where it stopped."""
    raw = json.dumps([kind, *position], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(kind: str, token: str, shape: tuple[type, ...]) -> list[object]:
    """The position in a token made by :func:`encode_token` for `kind`, or INVALID_ARGUMENT."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        decoded = json.loads(raw)
    except (binascii.Error, ValueError):
        decoded = None
    if (
        not isinstance(decoded, list)
        or len(decoded) != len(shape) + 1
        or decoded[0] != kind
        or not all(type(value) is wanted for value, wanted in zip(decoded[1:], shape, strict=True))
    ):
        raise errors.bad_field(
            "page_token",
            "page_token is not a token this listing returned",
            Reason.INVALID_PAGE_TOKEN,
        )
    return decoded[1:]
