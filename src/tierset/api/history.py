"""Proto conversions of the history RPCs: requests to service arguments, results to messages.

Nothing here decides anything (services.history does); it only maps fields. A
timestamp filter left unset is "no bound"; the store's JSON values become typed
SettingValues as GetSettings shows them.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from google.protobuf import timestamp_pb2

from tierset.core import errors
from tierset.core.values import LEVEL_TO_PROTO, TYPE_TO_PROTO, Level, encode_value
from tierset.services.history import ChangeFilter
from tierset.store.database import Explanation, ScopeRef, StoredSetting
from tierset.store.revisions import Actor, Change
from tierset.v1 import settings_pb2

LEVEL_FROM_PROTO: dict[int, Level] = {
    int(number): level for level, number in LEVEL_TO_PROTO.items()
}


def level_from_proto(number: int, field: str = "level") -> Level:
    """The level a request names, or INVALID_ARGUMENT for none or an unknown one."""
    level = LEVEL_FROM_PROTO.get(number)
    if level is None:
        raise errors.bad_field(field, "level must be GLOBAL, ACCOUNT or RETAILER")
    return level


def _time(stamp: timestamp_pb2.Timestamp, field: str) -> datetime:
    try:
        return stamp.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError):  # outside years 1..9999, or nanos out of range
        raise errors.bad_field(field, f"{field} is not a valid timestamp") from None


def scope_from_proto(scope: settings_pb2.Scope, field: str = "scope") -> ScopeRef:
    """The scope a request names, or INVALID_ARGUMENT when it names none or a bad id."""
    kind = scope.WhichOneof("kind")
    if kind is None:
        raise errors.bad_field(field, "scope must name an account_id or a retailer_id")
    scope_id = getattr(scope, kind)
    if scope_id <= 0:
        raise errors.bad_field(f"{field}.{kind}", f"{kind} must be a positive integer")
    level = Level.ACCOUNT if kind == "account_id" else Level.RETAILER
    return ScopeRef(level, scope_id)


def change_filter(request: settings_pb2.ListChangesRequest, scope: ScopeRef | None) -> ChangeFilter:
    """The filters of a ListChanges request (scope already converted)."""
    return ChangeFilter(
        scope=scope,
        global_only=request.global_only,
        key=request.key,
        key_prefix=request.key_prefix,
        min_revision=request.min_revision if request.HasField("min_revision") else None,
        max_revision=request.max_revision if request.HasField("max_revision") else None,
        min_time=_time(request.min_time, "min_time") if request.HasField("min_time") else None,
        max_time=_time(request.max_time, "max_time") if request.HasField("max_time") else None,
        actor_user_id=request.actor_user_id if request.HasField("actor_user_id") else None,
        newest_first=request.newest_first,
    )


def actor_to_proto(actor: Actor) -> settings_pb2.Actor:
    """Who made a change; unknown fields are left at their zero value."""
    return settings_pb2.Actor(
        user_id=actor.user_id or 0,
        username=actor.username or "",
        credential_kind=actor.credential_kind or "",
        credential_id=actor.credential_id or 0,
        request_id=actor.request_id or "",
    )


def _scope_of(change: Change) -> settings_pb2.Scope | None:
    if change.level is Level.ACCOUNT:
        return settings_pb2.Scope(account_id=change.account_id)
    if change.level is Level.RETAILER:
        return settings_pb2.Scope(retailer_id=change.retailer_id)
    return None


_OPERATIONS = {
    "PUT": settings_pb2.CHANGE_OPERATION_PUT,
    "DELETE": settings_pb2.CHANGE_OPERATION_DELETE,
    "LOCK": settings_pb2.CHANGE_OPERATION_LOCK,
    "UNLOCK": settings_pb2.CHANGE_OPERATION_UNLOCK,
}


def change_to_proto(change: Change) -> settings_pb2.Change:
    """One log row as the API shows it; old and new side as Settings at the change's level."""
    message = settings_pb2.Change(
        revision=change.revision,
        sequence=change.seq,
        operation=_OPERATIONS[change.operation],
        level=LEVEL_TO_PROTO[change.level],
        scope=_scope_of(change),
        owner_account_id=change.owner_account_id or 0,
        key=change.key,
        actor=actor_to_proto(change.actor),
        reason=change.reason or "",
    )
    message.change_time.FromDatetime(change.change_time)
    if change.old_type is not None and change.old_value is not None:
        message.old_setting.CopyFrom(
            settings_pb2.Setting(
                id=change.setting_id,
                key=change.key,
                type=TYPE_TO_PROTO[change.old_type],
                value=None if change.masked else encode_value(change.old_type, change.old_value),
                level=LEVEL_TO_PROTO[change.level],
                version=change.old_version or 0,
                value_masked=change.masked,
            )
        )
    if change.new_type is not None and change.new_value is not None:
        new = settings_pb2.Setting(
            id=change.setting_id,
            key=change.key,
            type=TYPE_TO_PROTO[change.new_type],
            value=None if change.masked else encode_value(change.new_type, change.new_value),
            level=LEVEL_TO_PROTO[change.level],
            version=change.new_version or 0,
            # A lock changes no value: its last change and write are not this row's.
            mod_revision=change.revision if change.operation in ("PUT", "DELETE") else 0,
            value_masked=change.masked,
        )
        if change.operation in ("PUT", "DELETE"):
            new.update_time.FromDatetime(change.change_time)
        if change.operation == "LOCK":
            new.lock.actor.CopyFrom(actor_to_proto(change.actor))
            new.lock.lock_time.FromDatetime(change.change_time)
            new.lock.revision = change.revision
        message.new_setting.CopyFrom(new)
    return message


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def timestamp_of(moment: datetime) -> timestamp_pb2.Timestamp:
    """`moment` as a Timestamp, exactly (whole microseconds); a naive one is UTC, as
    Timestamp.FromDatetime takes it. Built in one call: FromDatetime's time tuple and
    calendar arithmetic were a visible share of building an uncached read's answer."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    seconds, micros = divmod((moment - _EPOCH) // _MICROSECOND, 1_000_000)
    return timestamp_pb2.Timestamp(seconds=seconds, nanos=micros * 1000)


def setting_to_proto(setting: StoredSetting) -> settings_pb2.Setting:
    """A resolved setting as the API shows it."""
    message = settings_pb2.Setting(
        id=setting.id,
        key=setting.key,
        type=TYPE_TO_PROTO[setting.type],
        # A masked secret has no value at all (services/keydefs.py).
        value=None if setting.masked else encode_value(setting.type, setting.value),
        level=LEVEL_TO_PROTO[setting.level],
        version=setting.version,
        create_revision=setting.create_revision,
        mod_revision=setting.mod_revision,
        value_masked=setting.masked,
        update_time=timestamp_of(setting.update_time),
    )
    if setting.lock is not None:
        message.lock.actor.CopyFrom(actor_to_proto(setting.lock.actor))
        message.lock.lock_time.FromDatetime(setting.lock.time)
        message.lock.revision = setting.lock.revision
    return message


def explanation_to_proto(explanation: Explanation) -> settings_pb2.KeyExplanation:
    """How one key resolves: every level's value, the winner first, the rest shadowed."""
    message = settings_pb2.KeyExplanation(
        key=explanation.key,
        winner=(
            LEVEL_TO_PROTO[explanation.winner]
            if explanation.winner is not None
            else settings_pb2.SETTING_LEVEL_UNSPECIFIED
        ),
    )
    for index, entry in enumerate(explanation.levels):
        level = settings_pb2.LevelValue(
            setting=setting_to_proto(entry.setting),
            shadowed=index > 0,
            last_reason=entry.reason or "",
        )
        if entry.last_change_time is not None:
            level.last_actor.CopyFrom(actor_to_proto(entry.actor))
            level.last_change_time.FromDatetime(entry.last_change_time)
        message.levels.append(level)
    return message
