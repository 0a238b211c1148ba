"""The scope flags: ``--account 1111``, ``--retailer 2222``, ``--global``.

A command takes exactly one (``diff`` two, in the order given). :class:`Target` is
what they name, with the request field it becomes and how it is printed.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tierset.v1 import settings_pb2

LEVELS = ("GLOBAL", "ACCOUNT", "RETAILER")


@dataclass(frozen=True)
class Target:
    """GLOBAL, one account or one retailer."""

    level: str
    id: int | None = None

    @property
    def is_global(self) -> bool:
        return self.level == "GLOBAL"

    def proto(self) -> settings_pb2.Scope | None:
        """The request's ``scope``; None for GLOBAL (the field left unset)."""
        if self.level == "ACCOUNT":
            return settings_pb2.Scope(account_id=self.id)
        if self.level == "RETAILER":
            return settings_pb2.Scope(retailer_id=self.id)
        return None

    def level_name(self) -> str:
        """The SettingLevel a request takes, by name (protobuf accepts enum names)."""
        return f"SETTING_LEVEL_{self.level}"

    def label(self) -> str:
        """``retailer 2222``, ``account 1111``, ``GLOBAL``."""
        return "GLOBAL" if self.is_global else f"{self.level.lower()} {self.id}"

    def to_json(self) -> dict[str, Any]:
        """``{"retailer": 2222}``, ``{"account": 1111}``, ``{"global": true}``."""
        return {"global": True} if self.is_global else {self.level.lower(): self.id}

    @classmethod
    def from_proto(cls, scope: settings_pb2.Scope | None) -> Target:
        kind = scope.WhichOneof("kind") if scope is not None else None
        if kind == "account_id":
            return cls("ACCOUNT", scope.account_id)  # type: ignore[union-attr]
        if kind == "retailer_id":
            return cls("RETAILER", scope.retailer_id)  # type: ignore[union-attr]
        return cls("GLOBAL")


GLOBAL = Target("GLOBAL")


def whole_number(minimum: int, what: str) -> Callable[[str], int]:
    """An argparse ``type``: a whole number of at least `minimum`, else "not {what}"."""

    def parse(text: str) -> int:
        try:
            number = int(text)
        except ValueError:
            number = minimum - 1
        if number < minimum:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        return number

    return parse


class _Append(argparse.Action):
    """Collects scope flags in the order given, as Targets in ``args.targets``."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        value: Any,
        option_string: str | None = None,
    ) -> None:
        targets = list(getattr(namespace, "targets", None) or [])
        targets.append(Target(self.const, value if self.const != "GLOBAL" else None))
        namespace.targets = targets


def add_arguments(
    parser: argparse.ArgumentParser, *, allow_global: bool = True, count: str = "one"
) -> None:
    """The scope flags; `count` "one", "optional" or "two" (diff) is checked by
    :func:`chosen`/:func:`chosen_all` after parsing."""
    group = parser.add_argument_group("scope")
    for level in ("ACCOUNT", "RETAILER"):
        group.add_argument(
            f"--{level.lower()}",
            type=whole_number(1, "an id (a positive number)"),
            action=_Append,
            const=level,
            dest="targets",
            metavar="ID",
            help=f"a{'n' if level == 'ACCOUNT' else ''} {level.lower()}'s settings",
        )
    if allow_global:
        group.add_argument(
            "--global",
            nargs=0,
            action=_Append,
            const="GLOBAL",
            dest="targets",
            help="the platform defaults (writing them needs PLATFORM)",
        )
    parser.set_defaults(targets=None, scope_count=count, allow_global=allow_global)


def flags(allow_global: bool) -> str:
    return "--account, --retailer" + (" or --global" if allow_global else "")


def chosen_all(args: argparse.Namespace) -> list[Target]:
    return list(args.targets or [])


def chosen(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Target | None:
    """The one scope named, or None when optional and absent; argparse's error (exit 2)
    for none or several."""
    targets = chosen_all(args)
    if len(targets) == 1:
        return targets[0]
    if not targets and args.scope_count == "optional":
        return None
    parser.error(f"name one scope: {flags(args.allow_global)}")
    raise AssertionError("unreachable")  # parser.error exits
