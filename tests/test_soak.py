"""The short form of `make soak`: the real command, a few seconds, its report and exit status."""

from __future__ import annotations

import asyncio
import sys


async def test_short_soak_reports_nothing_lost_and_exits_zero():
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tierset.cli.soak",
        "--seconds",
        "3",
        "--workers",
        "4",
        "--outage-seconds",
        "1",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=120)
    report = output.decode()

    assert process.returncode == 0, report
    for line in ("requests sent:", "UNAVAILABLE", "writes acknowledged:", "writes found after:"):
        assert line in report
    assert "writes missing:       0" in report
    assert "result:               OK" in report
    acknowledged = int(report.split("writes acknowledged:")[1].split()[0])
    found = int(report.split("writes found after:")[1].split()[0])
    assert acknowledged == found > 0
