"""Plain Python values for what the API returns: scopes, settings, changes, watch messages.

A :class:`Setting`'s ``value`` is the Python value of its type: ``int`` for INTEGER,
``bool`` for BOOLEAN, ``str`` for STRING and LOB, and the decoded JSON (dict, list, str,
int, float, bool or None) for JSON. Types are named by their enum suffix ("INTEGER").
Conversions in both directions live here and nowhere else.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from tierset.v1 import settings_pb2


@dataclass(frozen=True)
class Scope:
    """One account or one retailer; ``GLOBAL`` (neither) for platform defaults."""

    account_id: int | None = None
    retailer_id: int | None = None

    @classmethod
    def account(cls, account_id: int) -> Scope:
        return cls(account_id=account_id)

    @classmethod
    def retailer(cls, retailer_id: int) -> Scope:
        return cls(retailer_id=retailer_id)

    @property
    def is_global(self) -> bool:
        return self.account_id is None and self.retailer_id is None

    def to_proto(self) -> settings_pb2.Scope:
        if self.account_id is not None:
            return settings_pb2.Scope(account_id=self.account_id)
        if self.retailer_id is not None:
            return settings_pb2.Scope(retailer_id=self.retailer_id)
        raise ValueError("the GLOBAL scope has no Scope message")

    def label(self) -> str:
        """``account:1``, ``retailer:2`` or ``global``: how the last-known-good file names it."""
        if self.account_id is not None:
            return f"account:{self.account_id}"
        if self.retailer_id is not None:
            return f"retailer:{self.retailer_id}"
        return "global"


GLOBAL = Scope()


def _type_name(value: int) -> str:
    return settings_pb2.SettingType.Name(value).removeprefix("SETTING_TYPE_")


def _level_name(value: int) -> str:
    return settings_pb2.SettingLevel.Name(value).removeprefix("SETTING_LEVEL_")


@dataclass(frozen=True)
class Lock:
    """A lock on a value (no account or retailer below may override it): the revision that
    took it, when (``time``: RFC 3339, UTC) and by whom."""

    revision: int
    time: str
    username: str

    @classmethod
    def from_proto(cls, message: settings_pb2.SettingLock) -> Lock:
        return cls(message.revision, message.lock_time.ToJsonString(), message.actor.username)


@dataclass(frozen=True)
class Setting:
    """One effective (or level) setting as the server resolved it; ``lock`` is set while
    its value is locked (a view hears a lock and an unlock as events)."""

    key: str
    type: str
    value: Any
    level: str
    version: int
    mod_revision: int = 0
    create_revision: int = 0
    lock: Lock | None = None

    @classmethod
    def from_proto(cls, message: settings_pb2.Setting) -> Setting:
        return cls(
            key=message.key,
            type=_type_name(message.type),
            value=decode_value(message.type, message.value),
            level=_level_name(message.level),
            version=message.version,
            mod_revision=message.mod_revision,
            create_revision=message.create_revision,
            lock=Lock.from_proto(message.lock) if message.HasField("lock") else None,
        )

    def to_json(self) -> dict[str, Any]:
        data = {
            "key": self.key,
            "type": self.type,
            "value": self.value,
            "level": self.level,
            "version": self.version,
            "mod_revision": self.mod_revision,
            "create_revision": self.create_revision,
        }
        if self.lock is not None:
            data["lock"] = {
                "revision": self.lock.revision,
                "time": self.lock.time,
                "username": self.lock.username,
            }
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Setting:
        # A file written before locks were kept has no "lock".
        lock = data.get("lock")
        return cls(**{**data, "lock": None if lock is None else Lock(**lock)})


def decode_value(setting_type: int, value: settings_pb2.SettingValue) -> Any:
    """The Python value of a SettingValue as the server sends it (the field of its type)."""
    kind = value.WhichOneof("kind")
    if kind == "json_value":
        return json.loads(value.json_value)
    if kind is None:
        return None
    return getattr(value, kind)


def encode_value(value: Any, setting_type: str | None) -> tuple[int, settings_pb2.SettingValue]:
    """(SettingType, SettingValue) for a Python value; the type is inferred when not given.

    Inference: bool → BOOLEAN, int → INTEGER, str → STRING, anything else → JSON.
    """
    if setting_type is None:
        if isinstance(value, bool):
            setting_type = "BOOLEAN"
        elif isinstance(value, int):
            setting_type = "INTEGER"
        elif isinstance(value, str):
            setting_type = "STRING"
        else:
            setting_type = "JSON"
    try:
        type_value = settings_pb2.SettingType.Value(f"SETTING_TYPE_{setting_type.upper()}")
    except ValueError:
        raise ValueError(
            f"unknown setting type {setting_type!r}: one of LOB, STRING, INTEGER, BOOLEAN, JSON"
        ) from None
    name = setting_type.upper()
    if name in ("STRING", "LOB") and isinstance(value, str):
        return type_value, settings_pb2.SettingValue(string_value=value)
    if name == "INTEGER" and isinstance(value, int) and not isinstance(value, bool):
        return type_value, settings_pb2.SettingValue(integer_value=value)
    if name == "BOOLEAN" and isinstance(value, bool):
        return type_value, settings_pb2.SettingValue(boolean_value=value)
    # JSON, or a value of another Python type: the server decodes and checks it.
    return type_value, settings_pb2.SettingValue(json_value=json.dumps(value))


@dataclass(frozen=True)
class Read:
    """What ``get`` returns: the settings that exist, by key, and the revision read at."""

    revision: int
    settings: dict[str, Setting]

    def __getitem__(self, key: str) -> Setting:
        return self.settings[key]

    def __contains__(self, key: object) -> bool:
        return key in self.settings

    def value(self, key: str, default: Any = None) -> Any:
        setting = self.settings.get(key)
        return default if setting is None else setting.value


@dataclass(frozen=True)
class Written:
    """What ``put`` returns."""

    version: int
    created: bool
    revision: int


@dataclass(frozen=True)
class Deleted:
    """What ``delete`` returns: the revision, and the setting now inherited (if any)."""

    revision: int
    effective: Setting | None


@dataclass(frozen=True)
class Change:
    """One entry of the change log (``history``)."""

    revision: int
    operation: str
    level: str
    key: str
    old: Setting | None
    new: Setting | None
    username: str
    reason: str

    @classmethod
    def from_proto(cls, message: settings_pb2.Change) -> Change:
        return cls(
            revision=message.revision,
            operation=settings_pb2.ChangeOperation.Name(message.operation).removeprefix(
                "CHANGE_OPERATION_"
            ),
            level=_level_name(message.level),
            key=message.key,
            old=Setting.from_proto(message.old_setting)
            if message.HasField("old_setting")
            else None,
            new=Setting.from_proto(message.new_setting)
            if message.HasField("new_setting")
            else None,
            username=message.actor.username,
            reason=message.reason,
        )


def _optional(message: Any, name: str) -> Setting | None:
    """The Setting in field `name` of `message`, or None when it is unset."""
    return Setting.from_proto(getattr(message, name)) if message.HasField(name) else None


@dataclass(frozen=True)
class Event:
    """A change of one watched key's effective value; ``setting`` None: no longer set."""

    key: str
    setting: Setting | None
    previous: Setting | None


@dataclass(frozen=True)
class WatchMessage:
    """One message of a watch: kind SNAPSHOT (``settings``), EVENTS (``events``) or PROGRESS."""

    kind: str
    revision: int
    settings: list[Setting] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)

    @classmethod
    def from_proto(cls, message: settings_pb2.WatchSettingsResponse) -> WatchMessage:
        return cls(
            kind=settings_pb2.WatchSettingsResponse.Kind.Name(message.kind).removeprefix("KIND_"),
            revision=message.revision,
            settings=[Setting.from_proto(s) for s in message.settings],
            events=[
                Event(
                    key=e.key,
                    setting=Setting.from_proto(e.setting) if e.HasField("setting") else None,
                    previous=Setting.from_proto(e.previous) if e.HasField("previous") else None,
                )
                for e in message.events
            ],
        )
