"""The Makefile's promises to a newcomer: `make run` installs what serving needs, no more."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def planned_commands(tmp_path: Path, target: str) -> str:
    """What `make <target>` would run on a fresh checkout (no virtualenv yet)."""
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy(ROOT / name, tmp_path / name)
    return subprocess.run(
        ["make", "-n", target], cwd=tmp_path, capture_output=True, text=True, check=True
    ).stdout


def test_make_run_installs_the_package_without_the_dev_tools(tmp_path):
    plan = planned_commands(tmp_path, "run")
    assert "pip install --quiet -e ." in plan
    assert "[dev]" not in plan
    assert "tierset dev" in plan


def test_make_test_installs_the_dev_tools(tmp_path):
    assert "-e '.[dev]'" in planned_commands(tmp_path, "test")
