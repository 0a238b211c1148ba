"""tierset's own Python per cached GetSettings, timed in-process: the part a profile blurs.

Usage: ``python bench/python_path.py``. Registers the real SettingsService behind the
real call pipeline (authenticator, read cache) with a stand-in for grpc's servicer
context, fills both caches as a first call would, then times deserialise, pipeline,
handler and serialise per call, in CPU time, the best of 7 batches (the machine is
shared; the best batch is the least disturbed). No network and no gRPC core: what it
leaves out is what the bare server also pays. Bench only, never a test.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import uvloop

from tierset.api.pipeline import Pipeline
from tierset.api.settings import SettingsService
from tierset.auth.authenticator import Authenticator
from tierset.auth.credentials import CredentialStore, Kind
from tierset.cache.reads import CachedStore, ResolutionCache
from tierset.core.authz import Principal, Role
from tierset.core.values import Level, SettingType
from tierset.store.database import Resolution, ScopeRef, StoredSetting
from tierset.v1 import settings_pb2, settings_pb2_grpc

BATCHES, PER_BATCH = 7, 5000


class _Context:
    """What the pipeline and GetSettings ask of grpc's context on a successful call."""

    def __init__(self, metadata: tuple[tuple[str, str], ...]) -> None:
        self._metadata = metadata

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata

    def time_remaining(self) -> float:
        return 10.0  # the bench's load client sends a 10 s deadline

    def code(self) -> None:
        return None

    def peer(self) -> str:
        return "ipv4:127.0.0.1:1"


class _Registrar:
    def __init__(self) -> None:
        self.handlers: dict[str, Any] = {}

    def add_registered_method_handlers(self, _service: str, handlers: dict[str, Any]) -> None:
        self.handlers = handlers

    def add_generic_rpc_handlers(self, _handlers: Any) -> None:
        pass


async def time_one(keys: int) -> float:
    """Microseconds of CPU per cached read of `keys` keys."""
    token = "tsk_" + "x" * 43
    header = f"Bearer {token}"
    principal = Principal(1, "bench", 1, frozenset({Role.PLATFORM}), Kind.API_TOKEN.value, 1)
    authenticator = Authenticator(CredentialStore(None), 3600, 10)  # type: ignore[arg-type]
    authenticator._remember(header, principal, None, authenticator._generation, bearer=True)
    cache = ResolutionCache(1000)
    cache.enable()
    names = [f"BENCH.KEY_{n}" for n in range(keys)]
    settings = [
        StoredSetting(n, name, SettingType.STRING, '"v"', Level.ACCOUNT, 1, datetime.now(UTC))
        for n, name in enumerate(names)
    ]
    cache.put(
        cache.key(ScopeRef(Level.RETAILER, 5), names), Resolution(7, settings, 10), cache.generation
    )
    registrar = _Registrar()
    Pipeline(authenticator, None, access_log=False).register(
        registrar,  # type: ignore[arg-type]
        settings_pb2_grpc.add_SettingsServiceServicer_to_server,
        SettingsService(CachedStore(None, cache)),  # type: ignore[arg-type]
    )
    handler = registrar.handlers["GetSettings"]
    parse, serialize, call = (
        handler.request_deserializer,
        handler.response_serializer,
        handler.unary_unary,
    )
    raw = settings_pb2.GetSettingsRequest(
        scope=settings_pb2.Scope(retailer_id=5), keys=names
    ).SerializeToString()
    context = _Context((("authorization", header), ("user-agent", "grpc-python")))
    for _ in range(PER_BATCH):  # the first call builds the response it keeps
        serialize(await call(parse(raw), context))
    best = float("inf")
    for _ in range(BATCHES):
        started = time.process_time()
        for _ in range(PER_BATCH):
            serialize(await call(parse(raw), context))
        best = min(best, (time.process_time() - started) / PER_BATCH * 1e6)
    return best


async def main() -> None:
    for keys in (1, 10):
        print(
            f"cached GetSettings, {keys:>2} key(s): {await time_one(keys):5.1f} us of CPU per call"
        )


if __name__ == "__main__":
    uvloop.run(main())
