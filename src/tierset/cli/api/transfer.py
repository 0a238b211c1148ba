"""Export a scope's settings to a file, and compare the effective settings of two scopes.

The export format (YAML by default, or the same document as JSON)::

    format: tierset/v1
    scope: {retailer: 2222}
    revision: 57
    settings:
    - key: PAYMENT.PROVIDER
      type: JSON
      level: RETAILER
      value: [{name: AFTERPAY}]

``settings`` are the scope's effective settings (``--level-only``: only those set at
its own level), ordered by key, each with its type and the level it comes from. Values
are what the server answered for the caller, with secrets masked: a key whose definition
says it is secret is written ``masked: true`` with no value, whether the server masked it
(a VIEWER) or the caller may read it and did not ask (``--secrets`` writes what the
server sends). ``import`` and ``apply`` refuse a masked entry: its value is not in the
file, and writing a placeholder would overwrite the secret. YAML is read and written
with PyYAML's safe loader and dumper only, so a file never builds Python objects.

``diff`` compares the effective settings of two scopes (or one scope at two
revisions) key by key, by type and value (JSON numbers compared exactly, ``1.5`` equal
to ``1.50``); where a value comes from is shown but is no difference by itself.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import yaml

from tierset.cli.api import UsageError, output, scopes, values
from tierset.cli.api.commands import AddParser, list_settings, revision_type
from tierset.cli.api.connection import Session
from tierset.cli.api.scopes import Target
from tierset.v1 import settings_pb2 as pb

FORMAT = "tierset/v1"


def _entry(setting: pb.Setting, secret_keys: frozenset[str]) -> dict[str, Any]:
    entry = {
        "key": setting.key,
        "type": values.type_name(setting.type),
        "level": values.level_name(setting.level),
    }
    if setting.value_masked or setting.key in secret_keys:
        return entry | {"masked": True}
    return entry | {"value": values.plain(setting)}


async def _secret_keys(session: Session) -> frozenset[str]:
    """The keys whose definitions say they are secret (every page of ListKeyDefinitions)."""
    secret: set[str] = set()
    token = ""
    while True:
        reply: Any = await session.call(
            session.settings.ListKeyDefinitions,
            pb.ListKeyDefinitionsRequest(page_size=500, page_token=token),
        )
        secret.update(d.key for d in reply.definitions if d.secret)
        token = reply.next_page_token
        if not token:
            return frozenset(secret)


def dump(document: dict[str, Any], as_json: bool) -> str:
    """The document as the export format's text (YAML or JSON)."""
    if as_json:
        return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=100)


async def export(args: argparse.Namespace, session: Session) -> int:
    target = scopes.chosen(args, args.api_parser)
    assert target is not None
    settings, revision = await list_settings(
        session, target, prefix=args.prefix, level_only=args.level_only, revision=args.revision
    )
    secret_keys = frozenset() if args.secrets else await _secret_keys(session)
    document = {
        "format": FORMAT,
        "scope": target.to_json(),
        "revision": revision,
        "settings": [_entry(s, secret_keys) for s in settings],
    }
    print(dump(document, args.output == "json"), end="")
    output.note(f"exported {len(settings)} settings of {target.label()} at revision {revision}")
    return 0


def _sides(args: argparse.Namespace) -> list[tuple[Target, int | None]]:
    """The two things compared: two scopes now, or one scope at one or two revisions
    (one: that revision against now)."""
    targets, revisions = scopes.chosen_all(args), list(args.revision or [])
    if len(targets) == 2 and not revisions:
        return [(targets[0], None), (targets[1], None)]
    if len(targets) == 1 and len(revisions) in (1, 2):
        return [
            (targets[0], revisions[0]),
            (targets[0], revisions[1] if len(revisions) == 2 else None),
        ]
    raise UsageError(
        "compare two scopes (e.g. --retailer 2222 --retailer 3333), or one scope at"
        " one or two revisions (--retailer 2222 --revision 40 [--revision 57])"
    )


def _cell(setting: pb.Setting | None) -> str:
    if setting is None:
        return output.UNSET
    return f"{output.value_cell(setting)} ({values.level_name(setting.level)})"


async def diff(args: argparse.Namespace, session: Session) -> int:
    sides = _sides(args)
    read = []
    for target, revision in sides:
        settings, read_at = await list_settings(
            session, target, prefix=args.prefix, revision=revision
        )
        read.append(({s.key: s for s in settings}, read_at))
    (left, left_at), (right, right_at) = read
    differing = [
        key
        for key in sorted(left.keys() | right.keys())
        if key not in left
        or key not in right
        or values.exact(left[key]) != values.exact(right[key])
    ]
    labels = [
        f"{target.label()} @ {revision if revision is not None else 'now'}"
        for target, revision in sides
    ]
    if args.output == "json":
        output.emit_json(
            {
                "left": {"scope": sides[0][0].to_json(), "revision": left_at},
                "right": {"scope": sides[1][0].to_json(), "revision": right_at},
                "differences": [
                    {
                        "key": key,
                        "left": output.setting_json(left[key]) if key in left else None,
                        "right": output.setting_json(right[key]) if key in right else None,
                    }
                    for key in differing
                ],
            }
        )
    elif differing:
        rows = [[key, _cell(left.get(key)), _cell(right.get(key))] for key in differing]
        print(output.table(("KEY", *labels), rows))
    else:
        print(f"no differences between {labels[0]} and {labels[1]}")
    return 0


def add_commands(add: AddParser) -> None:
    """Adds export and diff (import and apply: :mod:`tierset.cli.api.changesets`)."""
    p = add(
        "export",
        "a scope's settings with types and levels, as YAML or JSON",
        export,
        ("yaml", "json"),
    )
    scopes.add_arguments(p)
    p.add_argument("--prefix", default="", help="only keys starting with this")
    p.add_argument(
        "--level-only", action="store_true", help="only what is set at the scope's own level"
    )
    p.add_argument("--revision", type=revision_type, help="as it stood after this revision")
    p.add_argument(
        "--secrets",
        action="store_true",
        help="write secret values the caller may read (masked by default)",
    )

    p = add(
        "diff", "compare the effective settings of two scopes, or of one at two revisions", diff
    )
    scopes.add_arguments(p, count="two")
    p.add_argument(
        "--revision",
        type=revision_type,
        action="append",
        help="with one scope: compare it at this revision (give two, or one against now)",
    )
    p.add_argument("--prefix", default="", help="only keys starting with this")
