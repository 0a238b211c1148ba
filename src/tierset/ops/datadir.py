"""Where the embedded PostgreSQL of ``make run`` keeps its data, from any working folder.

``make run`` runs ``tierset dev`` in the checkout, so its data is ``<checkout>/.data``.
The folder is, in this order:

1. ``TIERSET_DATA_DIR`` when it is set (relative to the working folder);
2. ``.data`` in the nearest folder, from the working folder up, that holds
   tierset's own ``pyproject.toml`` (``[project] name = "tierset"``): the checkout;
3. none. ``tierset dev`` then uses ``./.data``; the administration commands
   refuse, saying what to set, because they never create a database.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

DATA_FOLDER = ".data"


def _is_tierset_project(pyproject: Path) -> bool:
    try:
        with pyproject.open("rb") as source:
            return bool(tomllib.load(source).get("project", {}).get("name") == "tierset")
    except (OSError, tomllib.TOMLDecodeError):
        return False


def find_checkout(start: Path) -> Path | None:
    """The nearest folder from `start` up that is a tierset checkout, or None."""
    for folder in (start, *start.parents):
        if _is_tierset_project(folder / "pyproject.toml"):
            return folder
    return None


def embedded_data_dir(configured: Path | None, cwd: Path) -> Path | None:
    """The data folder of the embedded PostgreSQL (see the module's rules), or None."""
    if configured is not None:
        return cwd / configured
    checkout = find_checkout(cwd.resolve())
    return None if checkout is None else checkout / DATA_FOLDER
