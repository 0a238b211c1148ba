"""Runs one API command: its parser's shared options, the session, and the exit code.

The one place where what a command raises becomes what the person sees: a refusal or
a failure of the server is one line and exit 1, bad usage argparse's message and exit
2, Ctrl-C during a watch a quiet exit 0 (during anything else, 130, as shells expect),
a closed stdout (``| head``) a quiet exit. Nothing escapes as a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable, Mapping

from tierset.cli.api import UsageError, changesets, commands, connection, output, transfer
from tierset.cli.api.commands import Handler
from tierset.client.errors import TiersetError

SETTINGS_SECTION = (
    "Settings, through the gRPC API (TIERSET_ADDRESS and the credentials that"
    " .data/demo-credentials.env exports; see 'tierset get -h')"
)
TRANSFER_SECTION = "Locks, changesets, export, import and compare, through the API"


def add_commands(
    add_parser: Callable[..., argparse.ArgumentParser], section: Callable[[str], None]
) -> None:
    """Adds every API command; `section(title)` starts a group of the top-level help."""

    def add(
        name: str,
        help_text: str,
        handler: Handler,
        outputs: tuple[str, str] = ("table", "json"),
    ) -> argparse.ArgumentParser:
        parser = add_parser(name, help=help_text)
        parser.set_defaults(api_action=handler, api_parser=parser)
        made.append(parser)
        parser.add_argument(
            "-o",
            "--output",
            choices=outputs,
            default=outputs[0],
            help=f"{outputs[0]} (default) or {outputs[1]}",
        )
        return parser

    made: list[argparse.ArgumentParser] = []
    section(SETTINGS_SECTION)
    commands.add_commands(add)
    section(TRANSFER_SECTION)
    changesets.add_commands(add)
    transfer.add_commands(add)
    for parser in made:  # last, so that -h shows a command's own options first
        connection.add_arguments(parser)


async def _execute(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    async with connection.Session(args, env) as session:
        code: int = await args.api_action(args, session)
        return code


def run(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> int:
    """Runs the parsed command; returns its exit code."""
    try:
        return asyncio.run(_execute(args, os.environ if env is None else env))
    except UsageError as error:
        args.api_parser.error(str(error))  # exits 2, as argparse does
    except TiersetError as error:
        output.note(output.error_line(error))
    except KeyboardInterrupt:
        # The end of a watch; anything else was cut short.
        return 0 if args.api_action is commands.watch else 130
    except BrokenPipeError:
        # The reader went away (`| head`): say nothing more, on a stdout that is gone.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except OSError as error:
        output.note(f"error: {error.strerror or error}: {error.filename or ''}".rstrip(": "))
    except Exception as error:  # a bug here: still one line, never a traceback at a prompt
        output.note(f"error: {type(error).__name__}: {error} (a bug in tierset; please report)")
    return 1
