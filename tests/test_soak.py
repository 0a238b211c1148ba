"""The short form of `make soak`: each fault in a run of its own, then the real command with
every fault in one run; the report must be all zeros and the exit status 0.

The checks themselves are proven able to fail in tests/test_soak_checks.py."""

from __future__ import annotations

import asyncio
import sys

import pytest

from tierset.cli.soak import run
from tierset.cli.soak.faults import FAULTS


@pytest.mark.parametrize("fault", FAULTS)
async def test_a_short_soak_with_one_fault_loses_nothing(soak_cluster, fault):
    result = await run.run(soak_cluster, run.Spec((fault,), 3.0, 3, 0.5))

    assert result.failures == dict.fromkeys(result.failures, 0), result.notes
    assert result.ok
    # The fault happened, and the load did work before, during and after it.
    assert any(note.startswith(f"{fault}: ") and "NOT" not in note for note in result.notes)
    assert result.figures["writes acknowledged"] > 0
    assert result.figures["  of which after the last recovery"] > 0
    assert result.figures["changesets acknowledged"] > 0
    assert result.figures["reads checked"] > 0
    assert result.figures["watch messages received"] > 0


async def test_make_soaks_short_form_reports_all_zeros_and_exits_zero():
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tierset.cli.soak",
        *("--seconds", "4", "--workers", "3", "--outage-seconds", "0.5", "--faults", "all"),
        *("--budget-seconds", "200"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=240)
    report = output.decode()

    assert process.returncode == 0, report
    assert "result: OK (nothing lost)" in report
    assert "<- FAILED" not in report
    for check in (
        "acknowledged writes missing",
        "changesets partly applied",
        "log rows missing (acknowledged changes)",
        "watch events missed",
        "client views differing from the database",
        "wrong reads",
        "answers other than OK/UNAVAILABLE",
    ):
        assert f"{check} " in report
    for fault in FAULTS:
        assert f"  {fault}: " in report
    acknowledged = int(report.split("writes acknowledged")[1].split()[0])
    assert acknowledged > 0
