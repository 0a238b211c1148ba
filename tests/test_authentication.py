"""Credentials: every RPC refuses anonymous or bad ones; tokens expire, revoke and rotate."""

from __future__ import annotations

import asyncio
import base64
import logging

import grpc
import pytest
from google.protobuf import descriptor_pool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tests.helpers import error_info, field_violations
from tierset.api.server import SERVICE_NAMES, start_app
from tierset.auth.authenticator import Authenticator, is_anonymous
from tierset.auth.credentials import CredentialStore, Kind
from tierset.core import errors
from tierset.core.authz import Role
from tierset.ops.config import Config
from tierset.v1 import auth_pb2, auth_pb2_grpc, settings_pb2, settings_pb2_grpc

UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED
PASSWORD = "correct horse battery staple"


def _all_methods() -> list[tuple[str, object]]:
    """Every RPC of every tierset service the server registers."""
    pool = descriptor_pool.Default()
    found = []
    for service_name in SERVICE_NAMES:
        service = pool.FindServiceByName(service_name)
        for method in service.methods:
            found.append((f"/{service.full_name}/{method.name}", method))
    return found


AUTHENTICATED_METHODS = [
    pytest.param(path, method, id=path) for path, method in _all_methods() if not is_anonymous(path)
]


def _basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


async def _get(stub, account_id: int, header: str | None):
    metadata = () if header is None else (("authorization", header),)
    return await stub.GetSettings(
        settings_pb2.GetSettingsRequest(
            scope=settings_pb2.Scope(account_id=account_id), keys=["ANY.KEY"]
        ),
        metadata=metadata,
    )


async def _refusal(stub, account_id: int, header: str | None) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await _get(stub, account_id, header)
    assert raised.value.code() == UNAUTHENTICATED, raised.value.details()
    return error_info(raised.value).reason


@pytest.fixture
def anonymous_settings(anonymous_channel) -> settings_pb2_grpc.SettingsServiceStub:
    return settings_pb2_grpc.SettingsServiceStub(anonymous_channel)


@pytest.fixture
def auth_stub(anonymous_channel) -> auth_pb2_grpc.AuthServiceStub:
    return auth_pb2_grpc.AuthServiceStub(anonymous_channel)


def _password_grant(client, username, password=PASSWORD, **extra):
    fields = {
        "grant_type": "password",
        "client_id": client[0],
        "client_secret": client[1],
        "username": username,
        "password": password,
        "scope": "api",
    }
    fields.update(extra)
    return auth_pb2.CreateTokenRequest(**fields)


def _refresh_grant(client, refresh_token):
    return auth_pb2.CreateTokenRequest(
        grant_type="refresh_token",
        client_id=client[0],
        client_secret=client[1],
        refresh_token=refresh_token,
    )


# --- anonymous calls ------------------------------------------------------------------


def test_the_method_list_covers_every_service():
    services = {path.split("/")[1] for path, _ in _all_methods()}
    assert services == set(SERVICE_NAMES)
    assert len(AUTHENTICATED_METHODS) >= 9  # 3 settings, 4 account, 2 integration RPCs


@pytest.mark.parametrize(("path", "method"), AUTHENTICATED_METHODS)
async def test_anonymous_calls_are_refused(anonymous_channel, path, method):
    request_class = method.input_type._concrete_class
    call = anonymous_channel.unary_unary(
        path,
        request_serializer=request_class.SerializeToString,
        response_deserializer=method.output_type._concrete_class.FromString,
    )
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call(request_class())
    assert raised.value.code() == UNAUTHENTICATED
    assert error_info(raised.value).reason == "CREDENTIALS_MISSING"


async def test_health_and_reflection_stay_anonymous(anonymous_channel):
    health = await health_pb2_grpc.HealthStub(anonymous_channel).Check(
        health_pb2.HealthCheckRequest()
    )
    reflection = reflection_pb2_grpc.ServerReflectionStub(anonymous_channel)
    async for response in reflection.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")])
    ):
        names = {s.name for s in response.list_services_response.service}
        break
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    assert "tierset.v1.AuthService" in names


# --- malformed and wrong credentials --------------------------------------------------


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ("", "CREDENTIALS_MISSING"),
        ("Bearer", "CREDENTIALS_MALFORMED"),
        ("Bearer ", "CREDENTIALS_MALFORMED"),
        ("Bearer two words", "CREDENTIALS_MALFORMED"),
        ("Token abc", "CREDENTIALS_MALFORMED"),
        ("Digest username=x", "CREDENTIALS_MALFORMED"),
        ("Basic not*base64!", "CREDENTIALS_MALFORMED"),
        ("Basic " + base64.b64encode(b"no-colon").decode(), "CREDENTIALS_MALFORMED"),
        ("Basic " + base64.b64encode(b":password-only").decode(), "CREDENTIALS_MALFORMED"),
        ("Basic " + base64.b64encode(b"\xff\xfe:x").decode(), "CREDENTIALS_MALFORMED"),
        ("Bearer tsk_not-a-real-token", "CREDENTIALS_INVALID"),
        (_basic("nobody", "tsap_not-a-real-password"), "CREDENTIALS_INVALID"),
    ],
)
async def test_bad_authorization_headers(anonymous_settings, header, reason):
    assert await _refusal(anonymous_settings, 1, header) == reason


async def test_two_authorization_headers_are_malformed(anonymous_settings, make_caller):
    caller = await make_caller(Role.ADMIN)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await anonymous_settings.GetSettings(
            settings_pb2.GetSettingsRequest(
                scope=settings_pb2.Scope(account_id=caller.account_id), keys=["K"]
            ),
            metadata=caller.metadata + caller.metadata,
        )
    assert error_info(raised.value).reason == "CREDENTIALS_MALFORMED"


async def test_api_token_works_until_revoked(anonymous_settings, make_caller, db):
    caller = await make_caller(Role.VIEWER)
    header = f"Bearer {caller.token}"
    await _get(anonymous_settings, caller.account_id, header)  # verified and cached

    await CredentialStore(db).revoke(caller.token_id, Kind.API_TOKEN)

    # The server's cache lasts 60 s; the NOTIFY makes it forget within moments.
    for _ in range(50):
        try:
            await _get(anonymous_settings, caller.account_id, header)
        except grpc.aio.AioRpcError as error:
            assert error.code() == UNAUTHENTICATED
            assert error_info(error).reason == "CREDENTIALS_INVALID"
            break
        await asyncio.sleep(0.05)
    else:
        pytest.fail("a revoked API token was still accepted after 2.5 s")


class _PausedLookup(CredentialStore):
    """The real credential store, holding each lookup's answer until the test releases it."""

    def __init__(self, pool) -> None:
        super().__init__(pool)
        self.looked_up = asyncio.Event()
        self.release = asyncio.Event()
        self.lookups = 0

    async def principal_row(self, secret_digest):
        self.lookups += 1
        row = await super().principal_row(secret_digest)
        self.looked_up.set()
        await self.release.wait()
        return row


async def test_a_revocation_during_a_lookup_is_not_undone_by_the_cache(make_caller, db):
    caller = await make_caller(Role.VIEWER)
    credentials = _PausedLookup(db)
    authenticator = Authenticator(credentials, cache_seconds=60, cache_size=10)
    in_flight = asyncio.ensure_future(authenticator.authenticate([f"Bearer {caller.token}"]))
    await credentials.looked_up.wait()

    # Revoked, and the notification heard, while the lookup's answer is on its way back.
    revoked = await CredentialStore(db).revoke(caller.token_id, Kind.API_TOKEN)
    authenticator.forget(revoked)
    credentials.release.set()
    await in_flight  # it read the credential before the revocation: this one call passes

    credentials.looked_up.clear()
    with pytest.raises(errors.TiersetError) as raised:
        await authenticator.authenticate([f"Bearer {caller.token}"])
    assert raised.value.reason == "CREDENTIALS_INVALID"


async def _misses_at_once(make_caller, db, count: int):
    """`count` calls with one uncached token, all started, the first one's lookup held."""
    caller = await make_caller(Role.VIEWER)
    credentials = _PausedLookup(db)
    authenticator = Authenticator(credentials, cache_seconds=60, cache_size=10)
    header = [f"Bearer {caller.token}"]
    calls = [asyncio.ensure_future(authenticator.authenticate(header)) for _ in range(count)]
    await credentials.looked_up.wait()
    for _ in range(10):  # every call has reached the lookup in flight
        await asyncio.sleep(0)
    return caller, credentials, authenticator, calls


async def test_concurrent_misses_of_one_token_share_one_lookup(make_caller, db):
    # A cache entry ageing out under load (every watch stream re-checks its caller each
    # second) must cost one lookup, not one per call queued for a pool connection.
    caller, credentials, _, calls = await _misses_at_once(make_caller, db, 20)
    credentials.release.set()

    principals = await asyncio.gather(*calls)

    assert {p.user_id for p in principals} == {caller.user_id}
    assert credentials.lookups == 1


async def test_a_revocation_during_a_shared_lookup_reaches_every_waiting_call(make_caller, db):
    caller, credentials, authenticator, calls = await _misses_at_once(make_caller, db, 5)

    revoked = await CredentialStore(db).revoke(caller.token_id, Kind.API_TOKEN)
    authenticator.forget(revoked)
    credentials.release.set()
    answers = await asyncio.gather(*calls, return_exceptions=True)

    # The first read the credential before the revocation and passes, as a lone call
    # does; the others do not take its answer: each looks again and is refused.
    passed = [a for a in answers if not isinstance(a, BaseException)]
    refused = [a for a in answers if isinstance(a, errors.TiersetError)]
    assert len(passed) == 1
    assert [r.reason for r in refused] == ["CREDENTIALS_INVALID"] * 4
    assert credentials.lookups == 5


@pytest.mark.parametrize(
    ("method", "anonymous"),
    [
        ("/tierset.v1.AuthService/CreateToken", True),
        ("/tierset.v1.AuthService/CreateTokenForAnyone", False),
        ("/grpc.health.v1.Health/Check", True),
        ("/tierset.v1.SettingsService/GetSettings", False),
    ],
)
def test_only_named_methods_are_anonymous(method, anonymous):
    assert is_anonymous(method) is anonymous


async def test_application_passwords_over_basic(anonymous_settings, make_caller, db):
    caller = await make_caller(Role.VIEWER)
    store = CredentialStore(db)
    laptop = await store.issue(caller.user_id, Kind.APP_PASSWORD, name="laptop")
    phone = await store.issue(caller.user_id, Kind.APP_PASSWORD, name="phone")
    spaced = " ".join(phone.secret[i : i + 4] for i in range(0, len(phone.secret), 4))

    await _get(anonymous_settings, caller.account_id, _basic(caller.username, laptop.secret))
    await _get(anonymous_settings, caller.account_id, _basic(caller.username, spaced))
    await store.revoke(laptop.id, Kind.APP_PASSWORD)
    # Revoked before first use here, so no cache is involved: refused at once.
    other = await store.issue(caller.user_id, Kind.APP_PASSWORD, name="tablet")
    await store.revoke(other.id, Kind.APP_PASSWORD)

    assert (
        await _refusal(anonymous_settings, caller.account_id, _basic(caller.username, other.secret))
        == "CREDENTIALS_INVALID"
    )
    # The other one still works: each is revocable on its own.
    await _get(anonymous_settings, caller.account_id, _basic(caller.username, phone.secret))
    # Someone else's username, or the app password as a bearer token, is refused.
    assert (
        await _refusal(anonymous_settings, caller.account_id, _basic("someone-else", phone.secret))
        == "CREDENTIALS_INVALID"
    )
    assert (
        await _refusal(anonymous_settings, caller.account_id, f"Bearer {phone.secret}")
        == "CREDENTIALS_INVALID"
    )
    # An API token is not an application password.
    assert (
        await _refusal(anonymous_settings, caller.account_id, _basic(caller.username, caller.token))
        == "CREDENTIALS_INVALID"
    )


# --- OAuth grants ---------------------------------------------------------------------


async def test_password_grant_issues_a_working_bearer_token(
    auth_stub, anonymous_settings, make_caller, oauth_client
):
    caller = await make_caller(Role.VIEWER, password=PASSWORD)

    response = await auth_stub.CreateToken(_password_grant(oauth_client, caller.username))
    await _get(anonymous_settings, caller.account_id, f"Bearer {response.access_token}")

    assert response.token_type == "bearer"
    assert response.scope == "api"
    assert response.expires_in == 3600
    assert response.access_token.startswith("tsat_")
    assert response.refresh_token.startswith("tsrt_")
    # A refresh token is not an access token.
    assert (
        await _refusal(anonymous_settings, caller.account_id, f"Bearer {response.refresh_token}")
        == "CREDENTIALS_INVALID"
    )


@pytest.mark.parametrize("who", ["wrong password", "unknown user"])
async def test_bad_credentials_are_invalid_grant(auth_stub, make_caller, oauth_client, who):
    caller = await make_caller(Role.ADMIN, password=PASSWORD)
    username, password = {
        "wrong password": (caller.username, "not the password"),
        "unknown user": ("ghost", PASSWORD),
    }[who]
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await auth_stub.CreateToken(_password_grant(oauth_client, username, password))
    assert raised.value.code() == UNAUTHENTICATED
    assert raised.value.details() == "Bad credentials"
    assert error_info(raised.value).reason == "INVALID_GRANT"


@pytest.mark.parametrize(
    ("change", "code", "reason", "field"),
    [
        ({"client_secret": "tscs_wrong"}, UNAUTHENTICATED, "INVALID_CLIENT", None),
        ({"client_id": "no-such-client"}, UNAUTHENTICATED, "INVALID_CLIENT", None),
        (
            {"client_id": "nul\x00client"},
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_REQUEST",
            "client_id",
        ),
        ({"username": "gh\x00st"}, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_REQUEST", "username"),
        (
            {"grant_type": "client_credentials"},
            grpc.StatusCode.INVALID_ARGUMENT,
            "UNSUPPORTED_GRANT_TYPE",
            "grant_type",
        ),
        ({"scope": "admin"}, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_SCOPE", "scope"),
        ({"password": ""}, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_REQUEST", "password"),
        ({"grant_type": ""}, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_REQUEST", "grant_type"),
    ],
)
async def test_bad_token_requests(auth_stub, oauth_client, change, code, reason, field):
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await auth_stub.CreateToken(
            _password_grant(oauth_client, change.pop("username", "anyone"), **change)
        )
    assert raised.value.code() == code
    assert error_info(raised.value).reason == reason
    if field:
        assert field in field_violations(raised.value)


async def test_refresh_token_exchanges_once_and_reuse_revokes_the_grant(
    auth_stub, anonymous_settings, make_caller, oauth_client
):
    caller = await make_caller(Role.VIEWER, password=PASSWORD)
    first = await auth_stub.CreateToken(_password_grant(oauth_client, caller.username))

    second = await auth_stub.CreateToken(_refresh_grant(oauth_client, first.refresh_token))
    await _get(anonymous_settings, caller.account_id, f"Bearer {second.access_token}")
    with pytest.raises(grpc.aio.AioRpcError) as reused:
        await auth_stub.CreateToken(_refresh_grant(oauth_client, first.refresh_token))

    assert reused.value.code() == UNAUTHENTICATED
    assert error_info(reused.value).reason == "INVALID_GRANT"
    # The reuse revoked the whole grant, including the tokens issued after it
    # (even the access token this server had verified and cached).
    for token in (second.access_token, first.access_token):
        assert (
            await _refusal(anonymous_settings, caller.account_id, f"Bearer {token}")
            == "CREDENTIALS_INVALID"
        )
    with pytest.raises(grpc.aio.AioRpcError) as after:
        await auth_stub.CreateToken(_refresh_grant(oauth_client, second.refresh_token))
    assert error_info(after.value).reason == "INVALID_GRANT"


async def test_refresh_token_belongs_to_its_client(auth_stub, make_caller, oauth_client, db):
    caller = await make_caller(Role.VIEWER, password=PASSWORD)
    issued = await auth_stub.CreateToken(_password_grant(oauth_client, caller.username))
    other_client = await CredentialStore(db).create_oauth_client(None, "Other client")

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await auth_stub.CreateToken(_refresh_grant(other_client, issued.refresh_token))

    assert error_info(raised.value).reason == "INVALID_GRANT"
    # Unspent, it still works for its own client.
    await auth_stub.CreateToken(_refresh_grant(oauth_client, issued.refresh_token))


async def test_access_tokens_expire(server_config, database_url, make_caller, oauth_client):
    caller = await make_caller(Role.VIEWER, password=PASSWORD)
    config = Config(
        grpc_address="127.0.0.1:0",
        pool_min_size=1,
        pool_max_size=2,
        access_token_seconds=1,
        auth_cache_seconds=60.0,
        migrate_on_start=False,
    )
    app = await start_app(config, database_url)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as short_lived:
            issued = await auth_pb2_grpc.AuthServiceStub(short_lived).CreateToken(
                _password_grant(oauth_client, caller.username)
            )
            settings = settings_pb2_grpc.SettingsServiceStub(short_lived)
            header = f"Bearer {issued.access_token}"
            await _get(settings, caller.account_id, header)  # now in the cache, too
            await asyncio.sleep(1.2)
            reason = await _refusal(settings, caller.account_id, header)
    finally:
        await app.stop(1)
    assert issued.expires_in == 1
    assert reason == "CREDENTIALS_EXPIRED"


async def test_token_expired_in_the_database_is_refused(anonymous_settings, make_caller, db):
    caller = await make_caller(Role.VIEWER)
    token = await CredentialStore(db).issue(caller.user_id, Kind.ACCESS_TOKEN, ttl_seconds=3600)
    await db.execute(
        "UPDATE credentials SET expire_time = now() - interval '1 second' WHERE id = $1", token.id
    )
    assert (
        await _refusal(anonymous_settings, caller.account_id, f"Bearer {token.secret}")
        == "CREDENTIALS_EXPIRED"
    )


async def test_changing_a_password_revokes_oauth_tokens(
    auth_stub, anonymous_settings, make_caller, oauth_client, db
):
    caller = await make_caller(Role.VIEWER, password=PASSWORD)
    issued = await auth_stub.CreateToken(_password_grant(oauth_client, caller.username))

    revoked = await CredentialStore(db).set_password(caller.username, "a new password")

    assert len(revoked) == 2
    with pytest.raises(grpc.aio.AioRpcError):
        await auth_stub.CreateToken(_password_grant(oauth_client, caller.username))
    await auth_stub.CreateToken(_password_grant(oauth_client, caller.username, "a new password"))
    assert (
        await _refusal(anonymous_settings, caller.account_id, f"Bearer {issued.access_token}")
        == "CREDENTIALS_INVALID"
    )


# --- secrets stay secret --------------------------------------------------------------


async def test_secrets_never_appear_in_logs_or_errors(
    caplog, auth_stub, anonymous_settings, make_caller, oauth_client, db
):
    caplog.set_level(logging.DEBUG)
    caller = await make_caller(Role.ADMIN, password=PASSWORD)
    app_password = await CredentialStore(db).issue(caller.user_id, Kind.APP_PASSWORD, name="x")
    issued = await auth_stub.CreateToken(_password_grant(oauth_client, caller.username))
    secrets = [
        PASSWORD,
        caller.token,
        app_password.secret,
        oauth_client[1],
        issued.access_token,
        issued.refresh_token,
    ]
    errors_seen: list[str] = []

    async def attempt(call) -> None:
        try:
            await call
        except grpc.aio.AioRpcError as error:
            errors_seen.append(f"{error.details()} {error.trailing_metadata()}")

    await attempt(_get(anonymous_settings, caller.account_id, f"Bearer {caller.token}"))
    await attempt(_get(anonymous_settings, caller.account_id, f"Bearer {caller.token}x"))
    await attempt(_get(anonymous_settings, caller.account_id, f"Bearer {issued.access_token}"))
    await attempt(_get(anonymous_settings, caller.account_id, f"Bearer {issued.refresh_token}"))
    await attempt(
        _get(anonymous_settings, caller.account_id, _basic(caller.username, app_password.secret))
    )
    await attempt(_get(anonymous_settings, caller.account_id, _basic("x", app_password.secret)))
    await attempt(_get(anonymous_settings, caller.account_id, f"Basic {app_password.secret}"))
    await attempt(auth_stub.CreateToken(_password_grant(oauth_client, caller.username, "wrong")))
    await attempt(
        auth_stub.CreateToken(_password_grant((oauth_client[0], PASSWORD), caller.username))
    )
    await attempt(auth_stub.CreateToken(_refresh_grant(oauth_client, issued.refresh_token)))
    await attempt(auth_stub.CreateToken(_refresh_grant(oauth_client, issued.refresh_token)))
    await attempt(auth_stub.CreateToken(_refresh_grant(oauth_client, caller.token)))

    assert len(errors_seen) >= 8
    text = caplog.text + "\n".join(errors_seen)
    assert caplog.records  # the attempts were logged, without their secrets
    for secret in secrets:
        assert secret not in text


@pytest.mark.parametrize(
    ("roles", "permissions"),
    [
        ((Role.VIEWER,), ["SETTINGS_VIEW"]),
        (
            (Role.ADMIN, Role.VIEWER),
            [
                "INTEGRATIONS_MANAGE",
                "RETAILERS_MANAGE",
                "SECRETS_VIEW",
                "SETTINGS_EDIT",
                "SETTINGS_VIEW",
            ],
        ),
    ],
)
async def test_get_caller_says_who_the_credentials_are(
    anonymous_channel, make_caller, roles, permissions
):
    caller = await make_caller(*roles)
    auth = auth_pb2_grpc.AuthServiceStub(anonymous_channel)
    reply = await auth.GetCaller(auth_pb2.GetCallerRequest(), metadata=caller.metadata)
    assert (reply.user_id, reply.username, reply.account_id) == (
        caller.user_id,
        caller.username,
        caller.account_id,
    )
    assert list(reply.roles) == sorted(role.value for role in roles)
    assert list(reply.permissions) == permissions
    assert reply.credential_kind == "API_TOKEN"
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await auth.GetCaller(auth_pb2.GetCallerRequest())
    assert raised.value.code() == UNAUTHENTICATED
