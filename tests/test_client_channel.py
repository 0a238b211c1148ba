"""The channel helpers tools and tests use: `insecure_channel(target, token)` sends the
token on every call, server-streaming calls (a watch) included."""

from __future__ import annotations

import grpc

from tests.conftest import Caller
from tierset import client
from tierset.api.server import App
from tierset.v1 import settings_pb2, settings_pb2_grpc


async def test_the_token_is_sent_on_a_streaming_call(server: App, platform_caller: Caller) -> None:
    async with client.insecure_channel(f"127.0.0.1:{server.port}", platform_caller.token) as ch:
        stub = settings_pb2_grpc.SettingsServiceStub(ch)
        # An account that does not exist: an authenticated caller hears NOT_FOUND, an
        # anonymous one UNAUTHENTICATED.
        call = stub.WatchSettings(
            settings_pb2.WatchSettingsRequest(
                scope=settings_pb2.Scope(account_id=987_654_321), keys=["A"]
            )
        )
        try:
            async for _ in call:
                raise AssertionError("a watch of an unknown account sent a message")
        except grpc.aio.AioRpcError as error:
            assert error.code() == grpc.StatusCode.NOT_FOUND, error
