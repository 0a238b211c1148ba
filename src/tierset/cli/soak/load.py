"""The soak's load: writers and readers over gRPC and over the REST gateway, recording every
operation, read and answer in :class:`~.records.Records` until told to stop.

Writers (PutSetting and DeleteSetting, REST PUT and DELETE, and ApplyChanges changesets of
2 to 4 changes) own their targets (one account-level and one retailer-level target per key), so
each target's operations run one at a time and its final value has one answer. A writer
deletes only a target whose last write was an acknowledged put (so a delete never meets a
missing key, which would be a refusal rather than a fault's effect); otherwise it puts a
fresh value. Readers read any keys of either scope, effective values, by GetSettings,
ListSettings (every page) and REST GET, and record what they saw for the checks.

Every call has a deadline, so a hang shows up as DEADLINE_EXCEEDED (an unexpected answer),
never as a stuck run. After a failure a client waits `BACKOFF_SECONDS`, as a polite client
does.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import httpx

from tierset import client
from tierset.cli.soak.records import (
    ACKED,
    UNCERTAIN,
    Answer,
    Op,
    Read,
    Records,
    ScopeKey,
    Target,
)
from tierset.v1 import settings_pb2, settings_pb2_grpc

CALL_TIMEOUT_SECONDS = 10.0  # a call still running after this counts as a hang
# Longer than the gateway's deadline (the same 10 s), so a REST hang is the gateway's 504.
REST_TIMEOUT_SECONDS = CALL_TIMEOUT_SECONDS + 5
BACKOFF_SECONDS = 0.05
PREFIX = "SOAK."
# Reconnect to a restarted or surviving server within a second, not gRPC's default backoff.
CHANNEL_OPTIONS = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
)
_changesets = itertools.count(1)  # numbers the changesets of a process, for the checks
_LEVELS = {
    settings_pb2.SETTING_LEVEL_ACCOUNT: "account",
    settings_pb2.SETTING_LEVEL_RETAILER: "retailer",
}


@dataclass(frozen=True)
class Plan:
    """Where the load goes and what it writes."""

    grpc_target: str
    http_base: str
    token: str
    account: ScopeKey
    retailer: ScopeKey
    keys_per_writer: int = 4

    def proto_scope(self, scope: ScopeKey) -> settings_pb2.Scope:
        level, scope_id = scope
        return settings_pb2.Scope(**{f"{level}_id": scope_id})

    def targets(self, writer: str) -> list[Target]:
        """The writer's own targets: each of its keys at account and at retailer level."""
        keys = [f"{PREFIX}{writer}.K{j}" for j in range(self.keys_per_writer)]
        return [(level, sid, key) for key in keys for level, sid in (self.account, self.retailer)]

    def rest_path(self, scope: ScopeKey, keys: str) -> str:
        level, scope_id = scope
        return f"{self.http_base}/api/v4.1/settings/{level}/{scope_id}/{keys}"


def grpc_channel(plan: Plan) -> grpc.aio.Channel:
    """A channel of the soak's own (each client has one, so they spread over the servers)."""
    return grpc.aio.insecure_channel(
        plan.grpc_target,
        options=(*client.CHANNEL_OPTIONS, *CHANNEL_OPTIONS),
        interceptors=[
            client.DefaultAuthorization(f"Bearer {plan.token}"),  # type: ignore[list-item]
            client.DefaultStreamAuthorization(f"Bearer {plan.token}"),  # type: ignore[list-item]
        ],
    )


class Clients:
    """The load's callers; each records its answers in `records`."""

    def __init__(self, plan: Plan, records: Records, stop: asyncio.Event, seed: int) -> None:
        self.plan = plan
        self.records = records
        self.stop = stop
        self._random = random.Random(seed)  # noqa: S311 - picks keys, not secrets
        self.all_keys: list[str] = []

    def _answer(self, via: str, status: str) -> None:
        self.records.answers.append(Answer(time.monotonic(), via, status))

    async def _grpc(self, method: Callable[..., Awaitable[Any]], request: Any) -> Any:
        try:
            response = await method(request, timeout=CALL_TIMEOUT_SECONDS)
        except grpc.aio.AioRpcError as error:
            self._answer("grpc", error.code().name)
            await asyncio.sleep(BACKOFF_SECONDS)
            return None
        self._answer("grpc", "OK")
        return response

    async def _rest(self, http: httpx.AsyncClient, method: str, url: str, **kw: Any) -> Any:
        try:
            response = await http.request(method, url, **kw)
        except httpx.TimeoutException:
            self._answer("rest", "timeout")  # the gateway's own deadline should come first
            return None
        except httpx.TransportError:
            # Refused or cut off: the gateway is down (killed) or was while this was sent.
            self._answer("rest", "unreachable")
            await asyncio.sleep(BACKOFF_SECONDS)
            return None
        if response.status_code != 200:
            self._answer("rest", f"HTTP {response.status_code}")
            await asyncio.sleep(BACKOFF_SECONDS)
            return None
        self._answer("rest", "OK")
        return response.json()

    # -- writers ---------------------------------------------------------------------------

    def _next_op(self, target: Target, last: Op | None, via: str) -> Op:
        deletable = last is not None and last.kind == "put" and last.outcome == ACKED
        if deletable and self._random.random() < 0.3:
            assert last is not None
            return Op(target, "delete", last.value, via, time.monotonic())
        return Op(target, "put", uuid.uuid4().hex, via, time.monotonic())

    async def grpc_writer(self, name: str) -> None:
        """Puts and deletes on its own targets over gRPC until stopped."""
        targets = self.plan.targets(name)
        last: dict[Target, Op] = {}
        async with grpc_channel(self.plan) as channel:
            stub = settings_pb2_grpc.SettingsServiceStub(channel)
            while not self.stop.is_set():
                target = self._random.choice(targets)
                op = self._next_op(target, last.get(target), "grpc")
                self.records.ops.append(op)
                last[target] = op
                level, scope_id, key = target
                scope = self.plan.proto_scope((level, scope_id))
                if op.kind == "put":
                    put = settings_pb2.PutSettingRequest(
                        scope=scope,
                        key=key,
                        type=settings_pb2.SETTING_TYPE_STRING,
                        value=settings_pb2.SettingValue(string_value=op.value),
                    )
                    reply = await self._grpc(stub.PutSetting, put)
                else:
                    delete = settings_pb2.DeleteSettingRequest(scope=scope, key=key)
                    reply = await self._grpc(stub.DeleteSetting, delete)
                op.finished = time.monotonic()
                op.outcome = ACKED if reply is not None else UNCERTAIN

    async def rest_writer(self, name: str) -> None:
        """Puts and deletes on its own targets through the gateway until stopped."""
        targets = self.plan.targets(name)
        last: dict[Target, Op] = {}
        headers = {"Authorization": f"Bearer {self.plan.token}"}
        async with httpx.AsyncClient(timeout=REST_TIMEOUT_SECONDS, trust_env=False) as http:
            while not self.stop.is_set():
                target = self._random.choice(targets)
                op = self._next_op(target, last.get(target), "rest")
                self.records.ops.append(op)
                last[target] = op
                url = self.plan.rest_path((target[0], target[1]), target[2])
                if op.kind == "put":
                    body = json.dumps({"setting": {"value": op.value, "type": "STRING"}})
                    headers_put = {**headers, "Content-Type": "application/json"}
                    reply = await self._rest(http, "PUT", url, content=body, headers=headers_put)
                else:
                    reply = await self._rest(http, "DELETE", url, headers=headers)
                op.finished = time.monotonic()
                op.outcome = ACKED if reply is not None else UNCERTAIN

    async def changeset_writer(self, name: str) -> None:
        """ApplyChanges of 2 to 4 puts and deletes over its own targets (each at most once)
        until stopped; the operations of one changeset share its number, so the checks can
        tell a changeset partly applied (or over several revisions)."""
        targets = self.plan.targets(name)
        last: dict[Target, Op] = {}
        async with grpc_channel(self.plan) as channel:
            stub = settings_pb2_grpc.SettingsServiceStub(channel)
            while not self.stop.is_set():
                number = next(_changesets)
                chosen = self._random.sample(targets, self._random.randint(2, 4))
                ops = [self._next_op(t, last.get(t), "changeset") for t in chosen]
                changes = []
                for op in ops:
                    op.changeset = number
                    self.records.ops.append(op)
                    last[op.target] = op
                    changes.append(self._change(op))
                request = settings_pb2.ApplyChangesRequest(changes=changes, reason="soak")
                reply = await self._grpc(stub.ApplyChanges, request)
                for op in ops:
                    op.finished = time.monotonic()
                    op.outcome = ACKED if reply is not None else UNCERTAIN

    def _change(self, op: Op) -> settings_pb2.SettingChange:
        level, scope_id, key = op.target
        scope = self.plan.proto_scope((level, scope_id))
        if op.kind == "delete":
            return settings_pb2.SettingChange(
                operation=settings_pb2.CHANGE_OPERATION_DELETE, scope=scope, key=key
            )
        return settings_pb2.SettingChange(
            operation=settings_pb2.CHANGE_OPERATION_PUT,
            scope=scope,
            key=key,
            type=settings_pb2.SETTING_TYPE_STRING,
            value=settings_pb2.SettingValue(string_value=op.value),
        )

    # -- readers ---------------------------------------------------------------------------

    def _pick(self) -> tuple[ScopeKey, list[str]]:
        scope = self._random.choice((self.plan.account, self.plan.retailer))
        keys = sorted(set(self._random.sample(self.all_keys, min(3, len(self.all_keys)))))
        return scope, keys

    def _record(
        self, scope: ScopeKey, started: float, keys: list[str], found: dict[str, Any], via: str
    ) -> None:
        self.records.reads.append(
            Read(scope, started, tuple(keys), {k: found.get(k) for k in keys}, via)
        )

    @staticmethod
    def _found(settings: Any) -> dict[str, tuple[str, str]]:
        return {s.key: (_LEVELS.get(s.level, "?"), s.value.string_value) for s in settings}

    async def grpc_reader(self) -> None:
        """GetSettings and ListSettings (every page) in turn, until stopped."""
        turn = 0
        async with grpc_channel(self.plan) as channel:
            stub = settings_pb2_grpc.SettingsServiceStub(channel)
            while not self.stop.is_set():
                turn += 1
                scope, keys = self._pick()
                started = time.monotonic()
                if turn % 2:
                    get = settings_pb2.GetSettingsRequest(
                        scope=self.plan.proto_scope(scope), keys=keys
                    )
                    reply = await self._grpc(stub.GetSettings, get)
                    if reply is not None:
                        self._record(scope, started, keys, self._found(reply.settings), "grpc")
                    continue
                found = await self._list(stub, scope)
                if found is not None:
                    self._record(scope, started, self.all_keys, found, "grpc")

    async def _list(
        self, stub: settings_pb2_grpc.SettingsServiceStub, scope: ScopeKey
    ) -> dict[str, tuple[str, str]] | None:
        found: dict[str, tuple[str, str]] = {}
        token = ""
        while True:
            request = settings_pb2.ListSettingsRequest(
                scope=self.plan.proto_scope(scope),
                key_prefix=PREFIX,
                page_size=50,
                page_token=token,
            )
            reply = await self._grpc(stub.ListSettings, request)
            if reply is None:
                return None
            found.update(self._found(reply.settings))
            token = reply.next_page_token
            if not token:
                return found

    async def rest_reader(self) -> None:
        """REST GETs of a few keys of either scope, until stopped."""
        headers = {"Authorization": f"Bearer {self.plan.token}"}
        async with httpx.AsyncClient(timeout=REST_TIMEOUT_SECONDS, trust_env=False) as http:
            while not self.stop.is_set():
                scope, keys = self._pick()
                started = time.monotonic()
                body = await self._rest(
                    http, "GET", self.plan.rest_path(scope, ",".join(keys)), headers=headers
                )
                if body is not None:
                    found = {
                        s["key"]: (str(s["level"]).lower(), s["value"]) for s in body["settings"]
                    }
                    self._record(scope, started, keys, found, "rest")
