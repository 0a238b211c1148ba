"""The gateway spreads its calls over every server it is given, not just the first.

In Kubernetes TIERSET_GRPC_TARGET is ``dns:///tierset-server-headless:50051``: one
address per server pod. Here the ``ipv4:`` resolver names two real servers (replicas on
the session database) the same way; each server's own read cache shows which calls it
answered.
"""

from __future__ import annotations

import dataclasses

import httpx

from tests.conftest import running_gateway

CALLS = 20


async def test_calls_through_the_gateway_reach_every_server(
    start_server, gateway_config, new_account, rest_auth_headers
):
    first, second = await start_server(), await start_server()
    assert first.app.cache is not None and second.app.cache is not None
    account = await new_account()
    config = dataclasses.replace(
        gateway_config,
        grpc_target=f"ipv4:127.0.0.1:{first.app.port},127.0.0.1:{second.app.port}",
    )

    async with (
        running_gateway(config) as base_url,
        httpx.AsyncClient(base_url=base_url, trust_env=False, timeout=10) as client,
    ):
        for n in range(CALLS):  # a distinct key each time: one cache entry per call
            response = await client.get(
                f"/api/v4.1/settings/account/{account}/BALANCE.K{n}", headers=rest_auth_headers
            )
            assert response.status_code == 200, response.text

    answered = (len(first.app.cache), len(second.app.cache))
    assert sum(answered) == CALLS
    assert min(answered) > 0, f"one server answered every call: {answered}"
