"""The settings commands: get, put, delete, list, explain, history, restore, watch.

Each is one handler ``async (args, session) -> exit code`` over ``SettingsService``;
:mod:`tierset.cli.api.run` turns what they raise into one line and an exit code. A
command reads or writes exactly what its RPC does, with the server's checks: nothing
here decides who may do what.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from tierset.cli.api import UsageError, output, scopes, values
from tierset.cli.api.connection import Session
from tierset.cli.api.scopes import Target
from tierset.client.errors import TiersetError
from tierset.v1 import settings_pb2 as pb

Handler = Callable[[argparse.Namespace, Session], Awaitable[int]]

_PAGE = 500
SETTING_HEADERS = ("KEY", "TYPE", "LEVEL", "VERSION", "VALUE")


def _setting_row(setting: pb.Setting) -> list[str]:
    return [
        setting.key,
        values.type_name(setting.type),
        output.level_cell(setting),
        str(setting.version),
        output.value_cell(setting),
    ]


def _json(args: argparse.Namespace) -> bool:
    return bool(args.output == "json")


async def list_settings(
    session: Session,
    target: Target,
    *,
    prefix: str = "",
    level_only: bool = False,
    revision: int | None = None,
) -> tuple[list[pb.Setting], int]:
    """Every setting of `target` under `prefix`, page after page, and the revision of
    the first page (every page is read at it when `revision` is given)."""
    settings: list[pb.Setting] = []
    token, first_revision = "", 0
    while True:
        reply = await session.call(
            session.settings.ListSettings,
            pb.ListSettingsRequest(
                scope=target.proto(),
                key_prefix=prefix,
                level_only=level_only,
                page_size=_PAGE,
                page_token=token,
                at_revision=revision,
            ),
        )
        settings.extend(reply.settings)
        first_revision = first_revision or reply.revision
        token = reply.next_page_token
        if not token:
            return settings, first_revision


async def _read(
    session: Session, target: Target, keys: list[str], revision: int | None
) -> tuple[dict[str, pb.Setting], int]:
    """The effective settings of `keys` (GLOBAL: the defaults, found by listing)."""
    if not target.is_global:
        reply = await session.call(
            session.settings.GetSettings,
            pb.GetSettingsRequest(scope=target.proto(), keys=keys, at_revision=revision),
        )
        return {s.key: s for s in reply.settings}, reply.revision
    found: dict[str, pb.Setting] = {}
    read_at = 0
    for key in keys:
        listed, read_at = await list_settings(session, target, prefix=key, revision=revision)
        found.update((s.key, s) for s in listed if s.key == key)
    return found, read_at


# -- get, put, delete --------------------------------------------------------------------


async def get(args: argparse.Namespace, session: Session) -> int:
    target = _target(args)
    found, revision = await _read(session, target, args.keys, args.revision)
    missing = [key for key in args.keys if key not in found]
    settings = [found[key] for key in args.keys if key in found]
    if _json(args):
        output.emit_json(
            {
                "scope": target.to_json(),
                "revision": revision,
                "settings": [output.setting_json(s) for s in settings],
                "missing": missing,
            }
        )
    elif settings:
        print(output.table(SETTING_HEADERS, map(_setting_row, settings)))
    if missing:
        output.note(f"error: set at no level for {target.label()}: {', '.join(missing)}")
        return 1
    return 0


async def put(args: argparse.Namespace, session: Session) -> int:
    target = _target(args)
    setting_type = args.type or await _existing_type(session, target, args.key)
    value = values.parse(values.read_argument(args.value, sys.stdin), setting_type)
    common: dict[str, Any] = {
        "key": args.key,
        "type": values.type_value(setting_type),
        "value": value,
        "expected_version": args.expected_version,
        "reason": args.reason,
    }
    if target.is_global:
        reply: Any = await session.call(session.settings.SetGlobal, pb.SetGlobalRequest(**common))
    else:
        reply = await session.call(
            session.settings.PutSetting, pb.PutSettingRequest(scope=target.proto(), **common)
        )
    if _json(args):
        output.emit_json(
            {
                "scope": target.to_json(),
                "key": args.key,
                "type": setting_type,
                "version": reply.version,
                "created": reply.created,
                "revision": reply.revision,
            }
        )
    else:
        done = "created" if reply.created else "updated"
        print(
            f"{done} {args.key} ({setting_type}) for {target.label()}:"
            f" version {reply.version}, revision {reply.revision}"
        )
    return 0


async def _existing_type(session: Session, target: Target, key: str) -> str:
    """The type `key` already has for `target` (one type per key), for a put without
    ``--type``; a usage error when it is set nowhere yet."""
    found, _ = await _read(session, target, [key], None)
    if key not in found:
        raise UsageError(
            f"--type is needed: {key} has no value for {target.label()} yet"
            f" (one of {', '.join(values.TYPES)})"
        )
    return values.type_name(found[key].type)


async def delete(args: argparse.Namespace, session: Session) -> int:
    target = _target(args)
    effective: pb.Setting | None = None
    if target.is_global:
        reply: Any = await session.call(
            session.settings.DeleteGlobal,
            pb.DeleteGlobalRequest(
                key=args.key, expected_version=args.expected_version, reason=args.reason
            ),
        )
    else:
        reply = await session.call(
            session.settings.DeleteSetting,
            pb.DeleteSettingRequest(
                scope=target.proto(),
                key=args.key,
                expected_version=args.expected_version,
                reason=args.reason,
            ),
        )
        effective = reply.effective if reply.HasField("effective") else None
    if _json(args):
        output.emit_json(
            {
                "scope": target.to_json(),
                "key": args.key,
                "revision": reply.revision,
                "effective": output.setting_json(effective) if effective else None,
            }
        )
        return 0
    now = (
        f"now inherits {output.value_cell(effective)} from {values.level_name(effective.level)}"
        if effective is not None
        else "now set at no level"
        if not target.is_global
        else "the default is gone"
    )
    print(f"deleted {args.key} for {target.label()} at revision {reply.revision}; {now}")
    return 0


# -- list, explain -------------------------------------------------------------------------


async def list_(args: argparse.Namespace, session: Session) -> int:
    target = _target(args)
    settings, revision = await list_settings(
        session, target, prefix=args.prefix, level_only=args.level_only, revision=args.revision
    )
    if _json(args):
        output.emit_json(
            {
                "scope": target.to_json(),
                "revision": revision,
                "settings": [output.setting_json(s) for s in settings],
            }
        )
    elif settings:
        print(output.table(SETTING_HEADERS, map(_setting_row, settings)))
    else:
        output.note(
            f"no settings for {target.label()}" + (f" under {args.prefix}" if args.prefix else "")
        )
    return 0


def _level_json(level: pb.LevelValue) -> dict[str, Any]:
    return {
        **output.setting_json(level.setting),
        "shadowed": level.shadowed,
        "changed_by": level.last_actor.username or None,
        "changed_at": output.timestamp(level.last_change_time),
        "reason": level.last_reason,
    }


async def explain(args: argparse.Namespace, session: Session) -> int:
    target = _target(args)
    reply = await session.call(
        session.settings.ExplainSettings,
        pb.ExplainSettingsRequest(scope=target.proto(), keys=args.keys),
    )
    if _json(args):
        output.emit_json(
            {
                "scope": target.to_json(),
                "revision": reply.revision,
                "keys": [
                    {
                        "key": k.key,
                        "winner": values.level_name(k.winner) if k.winner else None,
                        "levels": [_level_json(level) for level in k.levels],
                    }
                    for k in reply.keys
                ],
            }
        )
        return 0
    # Side by side, least specific first as the levels stack up; the winner starred.
    shown = scopes.LEVELS if target.level == "RETAILER" else scopes.LEVELS[:2]
    rows = []
    for key in reply.keys:
        by_level = {values.level_name(lv.setting.level): lv for lv in key.levels}
        cells = [key.key]
        for level in shown:
            held = by_level.get(level)
            mark = "" if held is None or held.shadowed else "* "
            locked = " (locked)" if held is not None and held.setting.HasField("lock") else ""
            cells.append(mark + output.value_cell(held.setting if held else None) + locked)
        cells.append(values.level_name(key.winner) if key.winner else "(unset)")
        rows.append(cells)
    print(output.table(("KEY", *shown, "EFFECTIVE"), rows))
    if args.details:
        print()
        print(output.table(("KEY", "LEVEL", "VERSION", "CHANGED", "BY", "REASON"), _details(reply)))
    return 0


def _details(reply: pb.ExplainSettingsResponse) -> list[list[str]]:
    return [
        [
            key.key,
            values.level_name(level.setting.level) + (" (shadowed)" if level.shadowed else ""),
            str(level.setting.version),
            output.timestamp(level.last_change_time) or output.UNSET,
            level.last_actor.username or output.UNSET,
            level.last_reason,
        ]
        for key in reply.keys
        for level in key.levels
    ]


# -- history, restore ----------------------------------------------------------------------


def _change_json(change: pb.Change) -> dict[str, Any]:
    return {
        "revision": change.revision,
        "sequence": change.sequence,
        "time": output.timestamp(change.change_time),
        "operation": _operation(change),
        "level": values.level_name(change.level),
        "scope": Target.from_proto(change.scope if change.HasField("scope") else None).to_json(),
        "key": change.key,
        "old": output.setting_json(change.old_setting) if change.HasField("old_setting") else None,
        "new": output.setting_json(change.new_setting) if change.HasField("new_setting") else None,
        "by": change.actor.username or None,
        "reason": change.reason,
    }


def _operation(change: pb.Change) -> str:
    return pb.ChangeOperation.Name(change.operation).removeprefix("CHANGE_OPERATION_")


def _change_row(change: pb.Change) -> list[str]:
    old = change.old_setting if change.HasField("old_setting") else None
    new = change.new_setting if change.HasField("new_setting") else None
    return [
        str(change.revision),
        output.timestamp(change.change_time) or output.UNSET,
        Target.from_proto(change.scope if change.HasField("scope") else None).label(),
        change.key,
        _operation(change),
        f"{output.value_cell(old)} → {output.value_cell(new)}",
        change.actor.username or output.UNSET,
        change.reason,
    ]


async def history(args: argparse.Namespace, session: Session) -> int:
    target = scopes.chosen(args, args.api_parser)
    request = pb.ListChangesRequest(
        key=args.key or "",
        key_prefix=args.prefix,
        min_revision=args.min_revision,
        max_revision=args.max_revision,
        newest_first=not args.oldest_first,
    )
    scope = target.proto() if target is not None else None
    if target is not None and target.is_global:
        request.global_only = True
    elif scope is not None:
        request.scope.CopyFrom(scope)
    changes: list[pb.Change] = []
    while len(changes) < args.limit:
        request.page_size = min(_PAGE, args.limit - len(changes))
        reply = await session.call(session.settings.ListChanges, request)
        changes.extend(reply.changes)
        if not reply.next_page_token:
            break
        request.page_token = reply.next_page_token
    if _json(args):
        output.emit_json({"changes": [_change_json(c) for c in changes]})
    elif changes:
        headers = ("REVISION", "TIME", "SCOPE", "KEY", "OP", "OLD → NEW", "BY", "REASON")
        print(output.table(headers, map(_change_row, changes)))
    else:
        output.note("no changes")
    return 0


async def restore(args: argparse.Namespace, session: Session) -> int:
    target = _target(args)
    reply = await session.call(
        session.settings.RestoreSettings,
        pb.RestoreSettingsRequest(
            level=target.level_name(),
            scope=target.proto(),
            keys=args.keys,
            revision=args.revision,
            reason=args.reason,
        ),
    )
    if _json(args):
        output.emit_json(
            {
                "scope": target.to_json(),
                "restored_from": args.revision,
                "revision": reply.revision,
                "changed_keys": list(reply.changed_keys),
            }
        )
    elif reply.changed_keys:
        print(
            f"restored {', '.join(reply.changed_keys)} of {target.label()} to their values"
            f" after revision {args.revision}, at revision {reply.revision}"
        )
    else:
        print(f"nothing to restore: {target.label()} holds revision {args.revision}'s values")
    return 0


# -- watch ---------------------------------------------------------------------------------


async def watch(args: argparse.Namespace, session: Session) -> int:
    """One line per changed key until interrupted (Ctrl-C ends it, exit 0)."""
    target = _target(args)
    if bool(args.keys) == bool(args.prefix):
        raise UsageError("give the keys to watch or --prefix, not both")
    request = pb.WatchSettingsRequest(
        scope=target.proto(),
        keys=args.keys,
        key_prefix=args.prefix,
        start_revision=args.start_revision,
    )
    last = args.start_revision
    try:
        async for message in session.stream(session.settings.WatchSettings, request):
            last = message.revision
            if message.kind == pb.WatchSettingsResponse.KIND_SNAPSHOT:
                output.note(
                    f"watching {target.label()} from revision {message.revision}"
                    f" ({len(message.settings)} set); Ctrl-C stops"
                )
            for event in message.events:
                setting = event.setting if event.HasField("setting") else None
                previous = event.previous if event.HasField("previous") else None
                if _json(args):
                    output.emit_line(
                        {
                            "revision": message.revision,
                            "key": event.key,
                            "setting": output.setting_json(setting) if setting else None,
                            "previous": output.setting_json(previous) if previous else None,
                        }
                    )
                else:
                    now = (
                        # "(ACCOUNT (locked))": a lock or unlock is a line of its own.
                        f"{output.value_cell(setting)} ({output.level_cell(setting)})"
                        if setting is not None
                        else "unset"
                    )
                    print(f"{message.revision}  {event.key}  {now}", flush=True)
    except TiersetError as error:
        if last is None:
            raise
        # Still one line: what failed, and where to pick up without a gap.
        raise TiersetError(
            error.code,
            f"{error.message} (seen up to revision {last}: resume with --start-revision {last})",
            error.reason,
            error.metadata,
        ) from None
    return 0


def _target(args: argparse.Namespace) -> Target:
    target = scopes.chosen(args, args.api_parser)
    assert target is not None  # "one": chosen() exits otherwise
    return target


# -- the parsers ---------------------------------------------------------------------------


revision_type = scopes.whole_number(0, "a revision")


AddParser = Callable[..., argparse.ArgumentParser]


def add_commands(add: AddParser) -> None:
    """Adds the settings commands; `add(name, help, handler)` makes each parser."""
    p = add("get", "the effective value of keys for a scope", get)
    scopes.add_arguments(p)
    p.add_argument("keys", nargs="+", metavar="KEY")
    p.add_argument("--revision", type=revision_type, help="as it stood after this revision")

    p = add("put", "write a value at a scope's level", put)
    scopes.add_arguments(p)
    p.add_argument("key", metavar="KEY")
    p.add_argument("value", metavar="VALUE", help="the value, parsed by --type; - reads stdin")
    p.add_argument(
        "--type",
        type=str.upper,
        choices=values.TYPES,
        help="the value's type (default: the type the key already has)",
    )
    _write_arguments(p)

    p = add("delete", "remove a scope's own value, so the key inherits again", delete)
    scopes.add_arguments(p)
    p.add_argument("key", metavar="KEY")
    _write_arguments(p)

    p = add("list", "a scope's settings, by key", list_)
    scopes.add_arguments(p)
    p.add_argument("--prefix", default="", help="only keys starting with this")
    p.add_argument(
        "--level-only", action="store_true", help="only what is set at the scope's own level"
    )
    p.add_argument("--revision", type=revision_type, help="as it stood after this revision")

    p = add("explain", "how keys resolve: every level side by side, the winner starred", explain)
    scopes.add_arguments(p, allow_global=False)
    p.add_argument("keys", nargs="+", metavar="KEY")
    p.add_argument(
        "--details", action="store_true", help="also each level's version, last change and reason"
    )

    p = add("history", "the change log, newest first", history)
    scopes.add_arguments(p, count="optional")
    p.add_argument("key", nargs="?", metavar="KEY", help="only this key")
    p.add_argument("--prefix", default="", help="only keys starting with this")
    p.add_argument("--limit", type=int, default=50, help="the most changes to show (50)")
    p.add_argument("--min-revision", type=revision_type, help="only changes at or after this")
    p.add_argument("--max-revision", type=revision_type, help="only changes at or before this")
    p.add_argument("--oldest-first", action="store_true")

    p = add("restore", "set keys of a scope back to their values after a revision", restore)
    scopes.add_arguments(p)
    p.add_argument("keys", nargs="+", metavar="KEY")
    p.add_argument(
        "--revision", type=revision_type, required=True, help="the revision to go back to"
    )
    p.add_argument("--reason", default="", help="why (recorded in the history)")

    p = add("watch", "print a line per change of the effective values, until Ctrl-C", watch)
    scopes.add_arguments(p, allow_global=False)
    p.add_argument("keys", nargs="*", metavar="KEY")
    p.add_argument("--prefix", default="", help="every key starting with this")
    p.add_argument(
        "--start-revision", type=revision_type, help="replay the changes after this revision first"
    )


def _write_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--reason", default="", help="why (recorded in the history)")
    parser.add_argument(
        "--expected-version",
        type=revision_type,
        metavar="N",
        help="write only if the stored version is this (0: only if it does not exist)",
    )
