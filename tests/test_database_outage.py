"""PostgreSQL stops and starts again under load: calls fail fast with UNAVAILABLE, health
goes NOT_SERVING and back to SERVING, the service recovers by itself, and every write that
was acknowledged before, during and after the outage is there afterwards.

The test has a PostgreSQL of its own (stopping the session's would break other tests)."""

from __future__ import annotations

from tierset.cli.soak import inprocess as soak


async def test_a_postgres_restart_under_load_loses_nothing_acknowledged(
    own_postgres, start_app_with
):
    app = await start_app_with(soak.soak_config(), own_postgres.dsn)

    report = await soak.run(own_postgres, app.port, seconds=4, workers=6, outage_seconds=1.5)

    print("\n".join(report.lines()))
    # Calls during the outage failed, as UNAVAILABLE only, and none of them hung.
    assert report.by_status["UNAVAILABLE"] > 0
    assert set(report.by_status) == {"OK", "UNAVAILABLE"}
    assert report.slowest_failure_seconds < 5
    # Health followed the database down and back up.
    assert "NOT_SERVING" in report.health
    assert report.health[0] == "SERVING"
    assert report.health[report.health.index("NOT_SERVING") :][-1] == "SERVING"
    # The pool reconnected by itself: writes were acknowledged after the restart.
    assert report.acknowledged_by_phase["before"] > 0
    assert report.acknowledged_by_phase["after"] > 0
    # Nothing acknowledged is missing; no read saw a wrong value.
    assert report.found == len(report.acknowledged)
    assert report.missing == [] and report.wrong_reads == 0
