"""A small gRPC fuzz: generated messages, cut-off messages and random bytes go to every RPC
of every tierset service, found from the generated descriptors so none is forgotten.
Whatever arrives, the answer is never INTERNAL (a bug) nor UNKNOWN (an unhandled failure).

It runs against a server and database of its own: fuzzed creates must not take ids or
keys the other tests use."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor, json_format, message_factory, struct_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tierset.v1
from tests.conftest import make_caller_in, open_channel
from tierset.api.server import SERVICE_NAMES, start_app
from tierset.core.authz import Role
from tierset.ops.config import Config
from tierset.v1 import accounts_pb2, accounts_pb2_grpc, settings_pb2, settings_pb2_grpc

FD = descriptor.FieldDescriptor
NEVER = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.UNIMPLEMENTED}


def _methods() -> list[descriptor.MethodDescriptor]:
    found = []
    for module_info in pkgutil.iter_modules(tierset.v1.__path__):
        if module_info.name.endswith("_pb2"):
            module = importlib.import_module(f"tierset.v1.{module_info.name}")
            for service in module.DESCRIPTOR.services_by_name.values():
                found.extend(service.methods)
    return found


METHODS = _methods()


# Text with what hurts: NUL, non-ASCII, very long; protobuf itself refuses lone surrogates.
texts = st.one_of(
    st.text(st.characters(exclude_categories=["Cs"]), max_size=40),
    st.sampled_from(["", "webhook", "slack", "PAYMENT.PROVIDER", "a\x00b", "K" * 300]),
)
json_like = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | texts,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=8,
)
_INTEGERS = {
    FD.TYPE_INT64: (-(2**63), 2**63 - 1),
    FD.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FD.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FD.TYPE_UINT64: (0, 2**64 - 1),
    FD.TYPE_FIXED64: (0, 2**64 - 1),
    FD.TYPE_INT32: (-(2**31), 2**31 - 1),
    FD.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FD.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FD.TYPE_UINT32: (0, 2**32 - 1),
    FD.TYPE_FIXED32: (0, 2**32 - 1),
}


def _interesting_integers(low: int, high: int) -> st.SearchStrategy[int]:
    return st.one_of(
        st.integers(-3, 1_000_000).filter(lambda i: low <= i <= high),
        st.sampled_from([low, high, 0, -1, 1]).filter(lambda i: low <= i <= high),
        st.integers(low, high),
    )


def _scalar(field: descriptor.FieldDescriptor) -> st.SearchStrategy[Any]:
    if field.type in _INTEGERS:
        return _interesting_integers(*_INTEGERS[field.type])
    if field.type == FD.TYPE_ENUM:
        return st.integers(-2, 50)  # unknown numbers included: proto3 enums are open
    if field.type == FD.TYPE_BOOL:
        return st.booleans()
    if field.type in (FD.TYPE_DOUBLE, FD.TYPE_FLOAT):
        return st.floats(width=64 if field.type == FD.TYPE_DOUBLE else 32)
    if field.type == FD.TYPE_STRING:
        return texts
    if field.type == FD.TYPE_BYTES:
        return st.binary(max_size=40)
    raise AssertionError(f"no strategy for {field.full_name}")


def messages(message_descriptor: descriptor.Descriptor, depth: int = 0) -> st.SearchStrategy[Any]:
    """Messages of a type with any subset of fields set to awkward values."""
    cls = message_factory.GetMessageClass(message_descriptor)
    if message_descriptor.full_name == "google.protobuf.Value":
        return json_like.map(lambda doc: json_format.ParseDict(doc, struct_pb2.Value()))
    if depth > 3:
        return st.just(cls())
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for field in message_descriptor.fields:
        if field.type == FD.TYPE_MESSAGE:
            inner = messages(field.message_type, depth + 1)
        else:
            inner = _scalar(field)
        is_repeated = field.is_repeated
        fields[field.name] = st.lists(inner, max_size=4) if is_repeated else inner

    def build(chosen: dict[str, Any]) -> Any:
        message = cls()
        for name, value in chosen.items():
            field = message_descriptor.fields_by_name[name]
            if isinstance(value, list):
                getattr(message, name).extend(value)
            elif field.type == FD.TYPE_MESSAGE:
                getattr(message, name).CopyFrom(value)
            else:
                setattr(message, name, value)
        return message

    return st.fixed_dictionaries({}, optional=fields).map(build)


def payloads(method: descriptor.MethodDescriptor) -> st.SearchStrategy[bytes]:
    """Well-formed messages, the same cut short, and plain random bytes."""
    whole = messages(method.input_type).map(lambda m: m.SerializeToString())
    return st.one_of(
        whole,
        st.tuples(whole, st.integers(0, 64)).map(lambda t: t[0][: max(len(t[0]) - t[1], 0)]),
        st.binary(max_size=120),
    )


@pytest.fixture(scope="module")
async def fuzz_channel(create_database) -> AsyncIterator[grpc.aio.Channel]:
    # Progress soon: a watch resumed from a revision with nothing to replay answers its
    # first message (a PROGRESS) within a second instead of ten.
    config = Config(
        grpc_address="127.0.0.1:0", pool_min_size=1, pool_max_size=4, watch_progress_seconds=0.5
    )
    dsn = await create_database()
    app = await start_app(config, dsn)
    # Authenticated as PLATFORM, so the fuzz reaches every handler, not just the auth check.
    platform = await make_caller_in(dsn, Role.PLATFORM)
    async with open_channel(app.port, platform.token) as channel:
        yield channel
    await app.stop(1.0)


def test_every_service_is_fuzzed():
    assert {m.containing_service.full_name for m in METHODS} == set(SERVICE_NAMES)


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.full_name)
@given(data=st.data())
@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
async def test_no_input_makes_an_rpc_fail_as_a_bug(fuzz_channel, method, data):
    payload = data.draw(payloads(method))
    path = f"/{method.containing_service.full_name}/{method.name}"
    try:
        if method.server_streaming:
            # A stream that accepts the request answers its first message (a snapshot) and
            # would go on: what matters is that first answer, or the refusal.
            stream = fuzz_channel.unary_stream(path)(payload, timeout=10)
            try:
                await stream.read()
            finally:
                stream.cancel()
        else:
            await fuzz_channel.unary_unary(path)(payload, timeout=10)
    except grpc.aio.AioRpcError as error:
        assert error.code() not in NEVER, (error.code(), error.details())


@pytest.fixture(scope="module")
async def fuzz_scopes(fuzz_channel) -> list[settings_pb2.Scope | None]:
    """An account and a retailer of the fuzz database, and scopes that do not exist."""
    accounts = accounts_pb2_grpc.AccountServiceStub(fuzz_channel)
    account = await accounts.CreateAccount(accounts_pb2.CreateAccountRequest(display_name="fuzz"))
    retailer = await accounts.CreateRetailer(
        accounts_pb2.CreateRetailerRequest(account_id=account.account.id, display_name="fuzz")
    )
    # A value to watch, so that snapshots carry a setting.
    await settings_pb2_grpc.SettingsServiceStub(fuzz_channel).PutSetting(
        settings_pb2.PutSettingRequest(
            scope=settings_pb2.Scope(account_id=account.account.id),
            key="FUZZ.W",
            type=settings_pb2.SETTING_TYPE_INTEGER,
            value=settings_pb2.SettingValue(integer_value=1),
        )
    )
    return [
        None,
        settings_pb2.Scope(account_id=account.account.id),
        settings_pb2.Scope(retailer_id=retailer.retailer.id),
        settings_pb2.Scope(account_id=2**62),
        settings_pb2.Scope(retailer_id=-1),
    ]


def _changes(scopes: list[settings_pb2.Scope | None]) -> st.SearchStrategy[Any]:
    """Changesets that reach the store: real scopes, a few keys, every operation."""
    value = messages(settings_pb2.SettingValue.DESCRIPTOR)

    def build(fields: tuple[Any, ...]) -> settings_pb2.SettingChange:
        operation, scope, key, kind, chosen, expected, remove = fields
        change = settings_pb2.SettingChange(
            operation=operation, key=key, type=kind, remove_overrides=remove
        )
        if scope is not None:
            change.scope.CopyFrom(scope)
        if chosen is not None:
            change.value.CopyFrom(chosen)
        if expected is not None:
            change.expected_version = expected
        return change

    change = st.tuples(
        st.integers(0, 5),
        st.sampled_from(scopes),
        st.sampled_from(["FUZZ.A", "FUZZ.B", "bad key!", ""]),
        st.integers(0, 6),
        st.none() | value,
        st.none() | st.integers(-1, 3),
        st.booleans(),
    ).map(build)
    return st.lists(change, min_size=0, max_size=6)


@given(data=st.data())
@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
async def test_a_refused_changeset_is_never_a_bug_and_writes_nothing(
    fuzz_channel, fuzz_scopes, data
):
    """Changesets against the fuzz database's real scopes (so they reach the locks, the
    versions and the transaction): never INTERNAL; a refused one changes no revision."""
    stub = settings_pb2_grpc.SettingsServiceStub(fuzz_channel)
    changes = data.draw(_changes(fuzz_scopes))
    dry_run = data.draw(st.booleans())
    probe = settings_pb2.ListChangesRequest(newest_first=True, page_size=1)
    before = (await stub.ListChanges(probe)).revision
    try:
        await stub.ApplyChanges(
            settings_pb2.ApplyChangesRequest(changes=changes, dry_run=dry_run), timeout=10
        )
    except grpc.aio.AioRpcError as error:
        assert error.code() not in NEVER, (error.code(), error.details())
        assert (await stub.ListChanges(probe)).revision == before
        return
    if dry_run:
        assert (await stub.ListChanges(probe)).revision == before


WATCHED = ["FUZZ.W", "FUZZ.A", "FUZZ.B"]


@given(data=st.data())
@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
async def test_a_watch_of_a_real_scope_reaches_the_stream_or_is_refused_as_a_client_error(
    fuzz_channel, fuzz_scopes, data
):
    """WatchSettings on the fuzz database's real account and retailer (the generated
    messages above almost never name one, so they mostly meet the scope check): a request
    the contract accepts is answered its first message (a SNAPSHOT without start_revision);
    whatever else is drawn is answered or refused, never as a bug."""
    stub = settings_pb2_grpc.SettingsServiceStub(fuzz_channel)
    current = (await stub.ListChanges(settings_pb2.ListChangesRequest(page_size=1))).revision
    scope = data.draw(st.sampled_from(fuzz_scopes[1:3]), "scope")
    keys = data.draw(st.lists(st.sampled_from(WATCHED) | texts, max_size=4), "keys")
    prefix = data.draw(st.sampled_from(["", "", "FUZZ.", "FUZZ", "bad prefix"]) | texts, "prefix")
    start = data.draw(
        st.none() | st.integers(-2, current + 2) | st.sampled_from([2**63 - 1, -(2**63)]), "start"
    )
    message = settings_pb2.WatchSettingsRequest(scope=scope, keys=keys, key_prefix=prefix)
    if start is not None:
        message.start_revision = start
    valid = (
        bool(keys) != bool(prefix)
        and set(keys) <= set(WATCHED)
        and len(set(keys)) == len(keys)
        and prefix in ("", "FUZZ.", "FUZZ")
        and (start is None or 0 <= start <= current)
    )
    stream = stub.WatchSettings(message, timeout=10)
    try:
        first = await stream.read()
    except grpc.aio.AioRpcError as error:
        assert error.code() not in NEVER, (error.code(), error.details())
        assert not valid, (message, error.code(), error.details())
        return
    finally:
        stream.cancel()
    if start is None and valid:
        assert first.kind == settings_pb2.WatchSettingsResponse.KIND_SNAPSHOT
        assert first.revision >= current
