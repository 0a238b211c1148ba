"""What the console shows of settings, made from the API's messages: pure, no I/O.

A scope's settings are a matrix: one row per key, one column per level that applies to
the scope (GLOBAL and ACCOUNT for an account; RETAILER too for a retailer), and the
effective value. ExplainSettings says which level wins and which values it shadows; a
row keeps every level's value, so what a winner hides stays visible. Values are text
here, rendered by the templates with autoescaping: whatever a value holds is shown,
never interpreted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from tierset.v1 import settings_pb2

LEVELS = ("GLOBAL", "ACCOUNT", "RETAILER")
TYPES = ("STRING", "INTEGER", "BOOLEAN", "JSON", "LOB")
# A matrix cell shows this many characters of a value; the key's page shows all of it.
CELL_CHARS = 120


def level_name(level: int) -> str:
    """GLOBAL, ACCOUNT or RETAILER for a SettingLevel."""
    return settings_pb2.SettingLevel.Name(level).removeprefix("SETTING_LEVEL_")


def type_name(setting_type: int) -> str:
    """STRING, INTEGER, ... for a SettingType."""
    return settings_pb2.SettingType.Name(setting_type).removeprefix("SETTING_TYPE_")


# What a secret value the caller may not see reads as (the server sent no value).
MASKED = "•••••• (secret)"


def value_text(setting: settings_pb2.Setting) -> str:
    """A setting's value as a person reads it (JSON as its text, booleans as true/false; a
    secret the server masked for this caller as MASKED)."""
    if setting.value_masked:
        return MASKED
    kind = setting.value.WhichOneof("kind")
    if kind == "integer_value":
        return str(setting.value.integer_value)
    if kind == "boolean_value":
        return "true" if setting.value.boolean_value else "false"
    if kind == "string_value":
        return setting.value.string_value
    if kind == "json_value":
        return setting.value.json_value
    return ""


def clipped(text: str, chars: int = CELL_CHARS) -> str:
    return text if len(text) <= chars else text[: chars - 1] + "…"


@dataclass(frozen=True)
class Cell:
    """One level's value of one key."""

    level: str
    value: str
    type: str
    version: int
    mod_revision: int
    winner: bool
    shadowed: bool
    username: str = ""
    changed: datetime | None = None
    reason: str = ""
    # Set when the value is locked (LockSetting): who locked it and when.
    locked_by: str | None = None
    locked_at: datetime | None = None

    @property
    def locked(self) -> bool:
        return self.locked_by is not None

    @property
    def short(self) -> str:
        return clipped(self.value)


@dataclass(frozen=True)
class Row:
    """One key: its value at each level that has one, and which wins."""

    key: str
    cells: dict[str, Cell] = field(default_factory=dict)
    winner: str = ""

    @property
    def type(self) -> str:
        """The key's type, as its values have it ("" for a key no level sets)."""
        return next((cell.type for cell in self.cells.values()), "")

    @property
    def effective(self) -> Cell | None:
        return self.cells.get(self.winner)

    def locked_above(self, level: str) -> Cell | None:
        """The locked value of a less specific level than `level`, which refuses overrides
        at `level` (the server's rule; the page only says so)."""
        for above in LEVELS[: LEVELS.index(level)]:
            cell = self.cells.get(above)
            if cell is not None and cell.locked:
                return cell
        return None


def row_of(explanation: settings_pb2.KeyExplanation) -> Row:
    """A matrix row from one key's explanation."""
    cells: dict[str, Cell] = {}
    winner = (
        level_name(explanation.winner)
        if explanation.winner != settings_pb2.SETTING_LEVEL_UNSPECIFIED
        else ""
    )
    for level_value in explanation.levels:
        setting = level_value.setting
        level = level_name(setting.level)
        cells[level] = Cell(
            level=level,
            value=value_text(setting),
            type=type_name(setting.type),
            version=setting.version,
            mod_revision=setting.mod_revision,
            winner=level == winner,
            shadowed=level_value.shadowed,
            username=level_value.last_actor.username if level_value.HasField("last_actor") else "",
            changed=(
                level_value.last_change_time.ToDatetime()
                if level_value.HasField("last_change_time")
                else None
            ),
            reason=level_value.last_reason,
            locked_by=setting.lock.actor.username if setting.HasField("lock") else None,
            locked_at=setting.lock.lock_time.ToDatetime() if setting.HasField("lock") else None,
        )
    return Row(key=explanation.key, cells=cells, winner=winner)


@dataclass(frozen=True)
class ChangeView:
    """One change-log entry as the history lists it: old → new, who, when, why."""

    revision: int
    time: datetime
    operation: str
    level: str
    scope: str
    key: str
    old: str | None
    new: str | None
    username: str
    reason: str
    # Where a restore of this change writes: "GLOBAL", "ACCOUNT:<id>" or "RETAILER:<id>".
    target: str


def scope_label(change: settings_pb2.Change) -> str:
    if not change.HasField("scope"):
        return "GLOBAL"
    kind = change.scope.WhichOneof("kind")
    if kind == "retailer_id":
        return f"retailer {change.scope.retailer_id}"
    return f"account {change.scope.account_id}"


def change_view(change: settings_pb2.Change) -> ChangeView:
    return ChangeView(
        revision=change.revision,
        time=change.change_time.ToDatetime(),
        operation=settings_pb2.ChangeOperation.Name(change.operation).removeprefix(
            "CHANGE_OPERATION_"
        ),
        level=level_name(change.level),
        scope=scope_label(change),
        key=change.key,
        old=value_text(change.old_setting) if change.HasField("old_setting") else None,
        new=value_text(change.new_setting) if change.HasField("new_setting") else None,
        username=change.actor.username,
        reason=change.reason,
        target=target_of(change),
    )


def target_of(change: settings_pb2.Change) -> str:
    if not change.HasField("scope"):
        return "GLOBAL"
    if change.scope.WhichOneof("kind") == "retailer_id":
        return f"RETAILER:{change.scope.retailer_id}"
    return f"ACCOUNT:{change.scope.account_id}"
