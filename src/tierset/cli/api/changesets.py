"""Locks and changesets: ``lock``, ``unlock``, ``apply FILE`` and ``import FILE``.

``apply FILE`` sends a changeset in the export format (:mod:`tierset.cli.api.transfer`)
as one ``ApplyChanges``: all or nothing, one revision, one reason. Each entry of
``settings``:

* ``key``; ``operation``: ``put`` (the default), ``delete``, ``lock`` or ``unlock``;
* for a put, ``type`` and ``value``;
* where: ``scope`` (``{account: N}``, ``{retailer: N}`` or ``{global: true}``), else
  ``level`` read against the file's ``scope`` (``GLOBAL``; the file scope's own level;
  ``ACCOUNT`` in a retailer's file: that retailer's account), else the file's scope;
* optionally ``expected_version``, and ``remove_overrides`` for a lock.

So an export applied as it is changes nothing. A put of exactly what its level already
stores is left out before sending: it would be UNCHANGED anyway, and an ADMIN editing
its retailer's export must not need PLATFORM because the file also lists the GLOBAL
values that retailer inherits.

``import FILE --account/--retailer`` writes the file's values into another scope, at that
scope's own level: each value the scope does not already read (same type and value,
from any level) is put; nothing is deleted. Afterwards ``diff`` of the two scopes shows
no difference for the file's keys.

Both show the server's dry run first (each change's outcome, and each affected scope's
effective value before → after) and apply only when confirmed at a terminal, or with
``--yes``; ``--dry-run`` shows and stops. Refusing without a terminal is exit 1 with
nothing written. A file is read with PyYAML's safe loader (JSON is YAML too).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tierset.cli.api import UsageError, output, scopes, values
from tierset.cli.api.commands import AddParser, list_settings, revision_type
from tierset.cli.api.connection import Session
from tierset.cli.api.scopes import Target
from tierset.v1 import accounts_pb2
from tierset.v1 import settings_pb2 as pb

_OPERATIONS = {
    "put": pb.CHANGE_OPERATION_PUT,
    "delete": pb.CHANGE_OPERATION_DELETE,
    "lock": pb.CHANGE_OPERATION_LOCK,
    "unlock": pb.CHANGE_OPERATION_UNLOCK,
}


# -- lock, unlock --------------------------------------------------------------------------


def _lockable(args: argparse.Namespace) -> Target:
    target = scopes.chosen(args, args.api_parser)
    assert target is not None
    if target.level == "RETAILER":
        raise UsageError("a lock is taken at --global or --account: nothing is below a retailer")
    return target


async def lock(args: argparse.Namespace, session: Session) -> int:
    target = _lockable(args)
    reply = await session.call(
        session.settings.LockSetting,
        pb.LockSettingRequest(
            scope=target.proto(),
            key=args.key,
            remove_overrides=args.remove_overrides,
            expected_version=args.expected_version,
            reason=args.reason,
        ),
    )
    removed = [Target.from_proto(s).label() for s in reply.removed_overrides]
    if args.output == "json":
        output.emit_json(
            {
                "scope": target.to_json(),
                "key": args.key,
                "revision": reply.revision,
                "setting": output.setting_json(reply.setting),
                "removed_overrides": [
                    Target.from_proto(s).to_json() for s in reply.removed_overrides
                ],
            }
        )
    elif reply.revision == 0:
        print(f"{args.key} of {target.label()} was locked already")
    else:
        print(
            f"locked {args.key} of {target.label()} at revision {reply.revision}"
            + (f"; removed the overrides of {', '.join(removed)}" if removed else "")
        )
    return 0


async def unlock(args: argparse.Namespace, session: Session) -> int:
    target = _lockable(args)
    reply = await session.call(
        session.settings.UnlockSetting,
        pb.UnlockSettingRequest(
            scope=target.proto(),
            key=args.key,
            expected_version=args.expected_version,
            reason=args.reason,
        ),
    )
    if args.output == "json":
        output.emit_json({"scope": target.to_json(), "key": args.key, "revision": reply.revision})
    elif reply.revision == 0:
        print(f"{args.key} of {target.label()} was not locked")
    else:
        print(f"unlocked {args.key} of {target.label()} at revision {reply.revision}")
    return 0


# -- reading a file ------------------------------------------------------------------------


def load(path: str) -> dict[str, Any]:
    """The document in `path` (``-``: stdin), checked to be an export-format file."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise UsageError(f"{path}: {error.strerror}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not UTF-8 text") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise UsageError(f"{path}: not YAML or JSON: {' '.join(str(error).split())}") from None
    if not isinstance(document, dict) or not isinstance(document.get("settings"), list):
        raise UsageError(f"{path}: expected a mapping with a list of `settings` (tierset export)")
    return document


def _scope(data: Any, where: str) -> Target:
    """A Target from ``{account: N}``, ``{retailer: N}`` or ``{global: true}``."""
    if isinstance(data, dict) and len(data) == 1:
        ((kind, value),) = data.items()
        if kind == "global" and value is True:
            return Target("GLOBAL")
        if kind in ("account", "retailer") and type(value) is int and value > 0:
            return Target(kind.upper(), value)
    raise UsageError(f"{where}: a scope is {{account: ID}}, {{retailer: ID}} or {{global: true}}")


@dataclass
class _Resolver:
    """Where an entry goes: its scope, else its level against the file's scope."""

    session: Session
    file_scope: Target | None
    _accounts: dict[int, int]

    async def target(self, entry: dict[str, Any], where: str) -> Target:
        if "scope" in entry:
            return _scope(entry["scope"], where + ".scope")
        level = entry.get("level")
        base = self.file_scope
        if base is None:
            raise UsageError(f"{where}: no scope (give the entry a scope, or the file one)")
        if level is None or level == base.level:
            return base
        if level == "GLOBAL":
            return Target("GLOBAL")
        if level == "ACCOUNT" and base.level == "RETAILER":
            assert base.id is not None
            return Target("ACCOUNT", await self._account_of(base.id))
        raise UsageError(f"{where}.level: {level!r} cannot be read against {base.label()}")

    async def _account_of(self, retailer_id: int) -> int:
        if retailer_id not in self._accounts:
            reply = await self.session.call(
                self.session.accounts.GetRetailer,
                accounts_pb2.GetRetailerRequest(retailer_id=retailer_id),
            )
            self._accounts[retailer_id] = reply.retailer.account_id
        return self._accounts[retailer_id]


def _put(entry: dict[str, Any], target: Target, where: str) -> pb.SettingChange:
    if entry.get("masked"):
        raise UsageError(
            f"{where}: {entry.get('key')} is masked in this file (a secret): its value is not"
            " there; remove the entry, or export it with --secrets"
        )
    setting_type = entry.get("type")
    if setting_type not in values.TYPES or "value" not in entry:
        raise UsageError(
            f"{where}: a put needs a type (one of {', '.join(values.TYPES)}) and a value"
        )
    return pb.SettingChange(
        operation=pb.CHANGE_OPERATION_PUT,
        scope=target.proto(),
        key=_key(entry, where),
        type=f"SETTING_TYPE_{setting_type}",
        value=values.encode(entry["value"], setting_type),
        expected_version=_version(entry, where),
    )


def _key(entry: dict[str, Any], where: str) -> str:
    key = entry.get("key")
    if not isinstance(key, str) or not key:
        raise UsageError(f"{where}: every entry needs a key")
    return key


def _version(entry: dict[str, Any], where: str) -> int | None:
    version = entry.get("expected_version")
    if version is not None and (type(version) is not int or version < 0):
        raise UsageError(f"{where}.expected_version: a version (0 or more)")
    return version


async def _changes(session: Session, document: dict[str, Any]) -> list[pb.SettingChange]:
    """The file's entries as changes, in order."""
    file_scope = _scope(document["scope"], "scope") if "scope" in document else None
    resolver = _Resolver(session, file_scope, {})
    changes = []
    for index, entry in enumerate(document["settings"]):
        where = f"settings[{index}]"
        if not isinstance(entry, dict):
            raise UsageError(f"{where}: an entry is a mapping (key, type, value, ...)")
        operation = entry.get("operation", "put")
        if operation not in _OPERATIONS:
            raise UsageError(f"{where}.operation: one of {', '.join(_OPERATIONS)}")
        target = await resolver.target(entry, where)
        if operation == "put":
            changes.append(_put(entry, target, where))
            continue
        changes.append(
            pb.SettingChange(
                operation=_OPERATIONS[operation],
                scope=target.proto(),
                key=_key(entry, where),
                expected_version=_version(entry, where),
                remove_overrides=bool(entry.get("remove_overrides", False)),
            )
        )
    return changes


def _same(change: pb.SettingChange, stored: pb.Setting | None) -> bool:
    if stored is None:
        return False
    sent = pb.Setting(type=change.type, value=change.value)
    # The value sent as JSON text compares by its decoded form, as the server stores it.
    return values.exact(_as_stored(sent)) == values.exact(stored)


def _as_stored(setting: pb.Setting) -> pb.Setting:
    """A put's value in the field a read would answer (JSON text decoded for a scalar)."""
    if setting.value.WhichOneof("kind") != "json_value" or setting.type == pb.SETTING_TYPE_JSON:
        return setting
    decoded = json.loads(setting.value.json_value)
    return pb.Setting(
        type=setting.type, value=values.encode(decoded, values.type_name(setting.type))
    )


async def _without_unchanged_puts(
    session: Session, changes: list[pb.SettingChange]
) -> tuple[list[pb.SettingChange], int]:
    """`changes` less the puts (without an expected version) of what their level already
    stores; and how many were left out."""
    stored: dict[Target, dict[str, pb.Setting]] = {}
    kept = []
    for change in changes:
        target = Target.from_proto(change.scope if change.HasField("scope") else None)
        if change.operation == pb.CHANGE_OPERATION_PUT and not change.HasField("expected_version"):
            if target not in stored:
                listed, _ = await list_settings(session, target, level_only=True)
                stored[target] = {s.key: s for s in listed}
            if _same(change, stored[target].get(change.key)):
                continue
        kept.append(change)
    return kept, len(changes) - len(kept)


# -- the plan and its confirmation ---------------------------------------------------------


def _change_row(index: int, change: pb.SettingChange, result: pb.ChangeResult) -> list[str]:
    target = Target.from_proto(change.scope if change.HasField("scope") else None)
    operation = pb.ChangeOperation.Name(change.operation).removeprefix("CHANGE_OPERATION_")
    shown = (
        output.value_cell(_as_stored(pb.Setting(type=change.type, value=change.value)))
        if change.operation == pb.CHANGE_OPERATION_PUT
        else ""
    )
    outcome = pb.ChangeOutcome.Name(result.outcome).removeprefix("CHANGE_OUTCOME_")
    return [str(index), operation, target.label(), change.key, shown, outcome]


def _effect_row(effect: pb.EffectChange) -> list[str]:
    before = effect.before if effect.HasField("before") else None
    after = effect.after if effect.HasField("after") else None
    return [
        Target.from_proto(effect.scope if effect.HasField("scope") else None).label(),
        effect.key,
        f"{output.value_cell(before)} → {output.value_cell(after)}",
    ]


def _plan_json(changes: list[pb.SettingChange], reply: pb.ApplyChangesResponse) -> dict[str, Any]:
    return {
        "changes": [
            {
                "operation": pb.ChangeOperation.Name(c.operation).removeprefix("CHANGE_OPERATION_"),
                "scope": Target.from_proto(c.scope if c.HasField("scope") else None).to_json(),
                "key": c.key,
                "outcome": pb.ChangeOutcome.Name(r.outcome).removeprefix("CHANGE_OUTCOME_"),
            }
            for c, r in zip(changes, reply.results, strict=True)
        ],
        "effects": [
            {
                "scope": Target.from_proto(e.scope if e.HasField("scope") else None).to_json(),
                "key": e.key,
                "before": output.setting_json(e.before) if e.HasField("before") else None,
                "after": output.setting_json(e.after) if e.HasField("after") else None,
            }
            for e in reply.effects
        ],
        "effects_truncated": reply.effects_truncated,
    }


def _changes_count(count: int) -> str:
    return f"{count} change" + ("" if count == 1 else "s")


def _confirmed(args: argparse.Namespace, count: int) -> bool:
    """--yes, or a "y" typed at a terminal; never a guess from a pipe."""
    if args.yes:
        return True
    if args.file == "-" or not sys.stdin.isatty():
        output.note("not applied: confirm at a terminal, or pass --yes")
        return False
    sys.stderr.write(f"apply {_changes_count(count)}? [y/N] ")
    sys.stderr.flush()
    return sys.stdin.readline().strip().lower() in ("y", "yes")


async def _run_changeset(
    args: argparse.Namespace, session: Session, changes: list[pb.SettingChange], what: str
) -> int:
    if not changes:
        if args.output == "json":
            output.emit_json({"changes": [], "effects": [], "revision": 0, "applied": False})
        else:
            print(f"nothing to {what}: every value is already there")
        return 0
    plan = await session.call(
        session.settings.ApplyChanges,
        pb.ApplyChangesRequest(changes=changes, reason=args.reason, dry_run=True),
    )
    as_json = args.output == "json"
    if not as_json:
        rows = [
            _change_row(i, c, r) for i, (c, r) in enumerate(zip(changes, plan.results, strict=True))
        ]
        print(output.table(("#", "OP", "SCOPE", "KEY", "VALUE", "OUTCOME"), rows))
        if plan.effects:
            print()
            print(
                output.table(
                    ("SCOPE", "KEY", "EFFECTIVE BEFORE → AFTER"), map(_effect_row, plan.effects)
                )
            )
        if plan.effects_truncated:
            output.note("(more scopes are affected than the dry run lists)")
    if args.dry_run or not _confirmed(args, len(changes)):
        if as_json:
            output.emit_json({**_plan_json(changes, plan), "revision": 0, "applied": False})
        return 0 if args.dry_run else 1
    reply = await session.call(
        session.settings.ApplyChanges, pb.ApplyChangesRequest(changes=changes, reason=args.reason)
    )
    if as_json:
        output.emit_json(
            {**_plan_json(changes, reply), "revision": reply.revision, "applied": True}
        )
    elif reply.revision:
        print(f"applied {_changes_count(len(changes))} at revision {reply.revision}")
    else:
        print("applied: every change was unchanged, no revision taken")
    return 0


async def apply(args: argparse.Namespace, session: Session) -> int:
    document = load(args.file)
    changes, left_out = await _without_unchanged_puts(session, await _changes(session, document))
    if left_out:
        output.note(f"left out {left_out} puts of values already stored")
    return await _run_changeset(args, session, changes, "apply")


async def import_(args: argparse.Namespace, session: Session) -> int:
    target = scopes.chosen(args, args.api_parser)
    assert target is not None
    document = load(args.file)
    current, _ = await list_settings(session, target)
    reads = {s.key: s for s in current}
    changes = []
    for index, entry in enumerate(document["settings"]):
        where = f"settings[{index}]"
        if not isinstance(entry, dict) or entry.get("operation", "put") != "put":
            raise UsageError(f"{where}: import takes values only (key, type, value); use apply")
        change = _put(entry, target, where)
        if not _same(change, reads.get(change.key)):
            changes.append(change)
    return await _run_changeset(args, session, changes, "import")


# -- the parsers ---------------------------------------------------------------------------


def add_commands(add: AddParser) -> None:
    for name, text, handler in (
        ("lock", "lock a GLOBAL or ACCOUNT value: levels below cannot override it", lock),
        ("unlock", "remove a lock", unlock),
    ):
        p = add(name, text, handler)
        scopes.add_arguments(p)
        p.add_argument("key", metavar="KEY")
        if name == "lock":
            p.add_argument(
                "--remove-overrides",
                action="store_true",
                help="delete the values below that override it, in the same revision",
            )
        p.add_argument("--reason", default="", help="why (recorded in the history)")
        p.add_argument(
            "--expected-version",
            type=revision_type,
            metavar="N",
            help="only if the value has this version",
        )

    p = add("apply", "apply a changeset file (the export format) as one revision", apply)
    p.add_argument(
        "file", metavar="FILE", help="YAML or JSON; - reads stdin (then --yes is needed)"
    )
    _changeset_arguments(p)

    p = add("import", "write a file's values into a scope, as one changeset", import_)
    scopes.add_arguments(p, allow_global=False)
    p.add_argument("file", metavar="FILE", help="an export (YAML or JSON); - reads stdin")
    _changeset_arguments(p)


def _changeset_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--reason", default="", help="why (recorded with every change)")
    parser.add_argument("--yes", action="store_true", help="apply without asking (scripts)")
    parser.add_argument(
        "--dry-run", action="store_true", help="show what would change, write nothing"
    )
