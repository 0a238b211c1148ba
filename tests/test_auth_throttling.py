"""Password guessing is throttled per (username, source), per source and per username.

Each test starts a server of its own (own process state, the session database) with
small limits and a short window, so a throttle engages after a few failures and lifts
within about a second. Attempts are bounded in count, all from 127.0.0.1; the "source"
varies through the client-address metadata a trusted gateway sends (the server trusts
127.0.0.1 for it here) or, over REST, through X-Forwarded-For from a trusted proxy.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from urllib.parse import urlencode

import grpc
import httpx
import pytest
from prometheus_client import REGISTRY

from tests.conftest import open_channel, running_gateway
from tests.helpers import basic_authorization, error_info
from tierset.auth.throttle import Limit, LoginThrottle
from tierset.core.authz import Role
from tierset.ops.client_address import CLIENT_ADDRESS_METADATA
from tierset.ops.config import Config
from tierset.v1 import auth_pb2, auth_pb2_grpc, settings_pb2, settings_pb2_grpc

PASSWORD = "the right password"
WRONG = "a-wrong-guess-4711"
LOOPBACK = (ipaddress.ip_network("127.0.0.1/32"),)


def limits(window: float, *, user_source=1_000, source=1_000, user=1_000) -> dict:
    """Server settings with the limits a test exercises; the others out of the way.

    GCRA: after `n` failures in a window, one more is allowed each window/n seconds. Each
    password check takes a good fraction of a second on a busy machine, so the windows of
    tests that must reach a limit are long, and only the lifting test has a short one.
    """
    return {
        "auth_throttle_window_seconds": window,
        "auth_throttle_user_source_failures": user_source,
        "auth_throttle_source_failures": source,
        "auth_throttle_user_failures": user,
        "trusted_gateways": LOOPBACK,
    }


# Two failures per (user, source) in 12 s: the third attempt is refused, and after about 6 s
# one more is allowed. The three attempts must fit in those 6 s: on a loaded box each
# password check took over a second, and with a 4 s window (2 s) the third was let through.
LIFTING = limits(12.0, user_source=2)


def _grant(client, username: str, password: str) -> auth_pb2.CreateTokenRequest:
    client_id, client_secret = client
    return auth_pb2.CreateTokenRequest(
        grant_type="password",
        username=username,
        password=password,
        client_id=client_id,
        client_secret=client_secret,
    )


def _from(address: str) -> tuple[tuple[str, str], ...]:
    return ((CLIENT_ADDRESS_METADATA, address),)


async def _token(auth, client, username, password, address) -> grpc.StatusCode:
    try:
        await auth.CreateToken(_grant(client, username, password), metadata=_from(address))
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


def _throttled_count(limit: str) -> float:
    return REGISTRY.get_sample_value("tierset_auth_throttled_total", {"limit": limit}) or 0.0


@pytest.fixture
async def throttled_server(start_server, request):
    running = await start_server(**getattr(request, "param", LIFTING))
    async with open_channel(running.app.port) as channel:
        yield running, auth_pb2_grpc.AuthServiceStub(channel), channel


async def test_password_grant_is_throttled_per_user_and_source_and_lifts(
    throttled_server, make_caller, oauth_client, caplog
):
    _, auth, _ = throttled_server
    user = await make_caller(Role.VIEWER, password=PASSWORD)
    before = _throttled_count("user_source")
    caplog.set_level(logging.INFO, logger="tierset")

    codes = [await _token(auth, oauth_client, user.username, WRONG, "192.0.2.7") for _ in range(2)]
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        # Even the right password is refused while throttled: no oracle for a guesser.
        await auth.CreateToken(
            _grant(oauth_client, user.username, PASSWORD), metadata=_from("192.0.2.7")
        )

    assert codes == [grpc.StatusCode.UNAUTHENTICATED] * 2
    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    info = error_info(raised.value)
    assert info.reason == "AUTH_THROTTLED"
    assert 1 <= int(info.metadata["retry_after_seconds"]) <= 6
    assert _throttled_count("user_source") == before + 1
    # The real user, from another address, is not locked out.
    assert await _token(auth, oauth_client, user.username, PASSWORD, "198.51.100.9") == (
        grpc.StatusCode.OK
    )
    # Logs name the user and the address of every failure and refusal, never the password.
    failures = [r for r in caplog.records if getattr(r, "username", None) == user.username]
    assert len(failures) >= 3
    assert {r.client_address for r in failures} >= {"192.0.2.7"}
    assert all(WRONG not in r.getMessage() and WRONG not in str(vars(r)) for r in caplog.records)
    assert all(PASSWORD not in str(vars(r)) for r in caplog.records)

    await asyncio.sleep(int(info.metadata["retry_after_seconds"]))
    assert await _token(auth, oauth_client, user.username, PASSWORD, "192.0.2.7") == (
        grpc.StatusCode.OK
    )


@pytest.mark.parametrize("throttled_server", [limits(60, source=4)], indirect=True)
async def test_one_source_guessing_many_users_is_throttled_per_source(
    throttled_server, make_caller, oauth_client
):
    _, auth, _ = throttled_server
    victim = await make_caller(Role.VIEWER, password=PASSWORD)

    # Four failures over four made-up usernames: none hits its own (user, source) limit.
    codes = [
        await _token(auth, oauth_client, f"nobody-{n}", WRONG, "203.0.113.5") for n in range(4)
    ]
    blocked = await _token(auth, oauth_client, victim.username, PASSWORD, "203.0.113.5")
    elsewhere = await _token(auth, oauth_client, victim.username, PASSWORD, "203.0.113.6")

    assert codes == [grpc.StatusCode.UNAUTHENTICATED] * 4
    assert blocked == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert elsewhere == grpc.StatusCode.OK


@pytest.mark.parametrize("throttled_server", [limits(60, user=6)], indirect=True)
async def test_many_sources_guessing_one_user_hit_the_looser_per_user_limit(
    throttled_server, make_caller, oauth_client
):
    _, auth, _ = throttled_server
    user = await make_caller(Role.VIEWER, password=PASSWORD)
    # The user signed in from home before the attack.
    assert await _token(auth, oauth_client, user.username, PASSWORD, "192.0.2.1") == (
        grpc.StatusCode.OK
    )

    codes = [
        await _token(auth, oauth_client, user.username, WRONG, f"198.51.100.{n}") for n in range(6)
    ]
    from_new_source = await _token(auth, oauth_client, user.username, PASSWORD, "198.51.100.99")
    from_home = await _token(auth, oauth_client, user.username, PASSWORD, "192.0.2.1")

    assert codes == [grpc.StatusCode.UNAUTHENTICATED] * 6
    assert from_new_source == grpc.StatusCode.RESOURCE_EXHAUSTED
    # A distributed attack cannot lock the user out where they signed in before.
    assert from_home == grpc.StatusCode.OK


async def test_client_address_metadata_from_an_untrusted_peer_is_ignored(
    start_server, make_caller, oauth_client
):
    running = await start_server(**{**limits(60, user_source=2), "trusted_gateways": ()})
    user = await make_caller(Role.VIEWER, password=PASSWORD)
    async with open_channel(running.app.port) as channel:
        auth = auth_pb2_grpc.AuthServiceStub(channel)
        # Claiming a new address per guess does not escape the per-(user, source) limit.
        codes = [
            await _token(auth, oauth_client, user.username, WRONG, f"192.0.2.{n}") for n in range(3)
        ]
    assert codes == [grpc.StatusCode.UNAUTHENTICATED] * 2 + [grpc.StatusCode.RESOURCE_EXHAUSTED]


async def test_application_passwords_over_basic_are_throttled(throttled_server, make_caller, db):
    _, _, channel = throttled_server
    settings = settings_pb2_grpc.SettingsServiceStub(channel)
    user = await make_caller(Role.VIEWER)
    read = settings_pb2.GetSettingsRequest(
        scope=settings_pb2.Scope(account_id=user.account_id), keys=["ANY.KEY"]
    )

    async def attempt(password: str, address: str) -> grpc.aio.AioRpcError:
        metadata = (("authorization", basic_authorization(user.username, password)),)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await settings.GetSettings(read, metadata=(*metadata, *_from(address)))
        return raised.value

    refusals = [await attempt(WRONG, "192.0.2.50") for _ in range(3)]

    assert [e.code() for e in refusals] == [grpc.StatusCode.UNAUTHENTICATED] * 2 + [
        grpc.StatusCode.RESOURCE_EXHAUSTED
    ]
    assert error_info(refusals[-1]).reason == "AUTH_THROTTLED"
    # Another address is not throttled (still a wrong password, so still refused as such).
    assert (await attempt(WRONG, "192.0.2.51")).code() == grpc.StatusCode.UNAUTHENTICATED


async def test_rest_token_endpoint_answers_429_with_retry_after(
    throttled_server, make_caller, oauth_client
):
    running, _, _ = throttled_server
    user = await make_caller(Role.VIEWER, password=PASSWORD)
    config = Config(
        http_address="127.0.0.1:0",
        grpc_target=f"127.0.0.1:{running.app.port}",
        gateway_trusted_proxies=("127.0.0.1/32",),
        shutdown_grace_seconds=1.0,
    )
    client_id, client_secret = oauth_client

    def form(password: str) -> str:
        return urlencode(
            {
                "grant_type": "password",
                "username": user.username,
                "password": password,
                "client_id": client_id,
                "client_secret": client_secret,
            }
        )

    async with (
        running_gateway(config) as base_url,
        httpx.AsyncClient(base_url=base_url, timeout=10, trust_env=False) as http,
    ):

        async def post(password: str, client_address: str) -> httpx.Response:
            return await http.post(
                "/oauth/token",
                content=form(password),
                headers={
                    "Content-Type": "application/x-www-form-urlencoded",
                    "X-Forwarded-For": client_address,
                },
            )

        wrong = [await post(WRONG, "192.0.2.80") for _ in range(2)]
        throttled = await post(PASSWORD, "192.0.2.80")
        other_source = await post(PASSWORD, "192.0.2.81")
        await asyncio.sleep(int(throttled.headers["Retry-After"]))
        lifted = await post(PASSWORD, "192.0.2.80")

    assert [r.status_code for r in wrong] == [400, 400]
    assert throttled.status_code == 429
    assert 1 <= int(throttled.headers["Retry-After"]) <= 6
    assert throttled.headers["Cache-Control"] == "no-store"
    assert throttled.json()["error"] == "slow_down"
    assert "retry" in throttled.json()["error_description"]
    assert other_source.status_code == 200
    assert lifted.status_code == 200


def test_throttle_state_is_bounded():
    limit = Limit(failures=3, window_seconds=3600)
    throttle = LoginThrottle(limit, limit, limit, max_entries=100)

    for n in range(1_000):
        throttle.check(f"user-{n}", f"10.0.{n // 250}.{n % 250}", "password")  # counts it
        throttle.failed(f"user-{n}", f"10.0.{n // 250}.{n % 250}", "password")

    assert throttle.entries() <= 4 * 100


# Room for all six checks at once, and a long wait for a slot: none is refused as busy.
CONCURRENT = {
    **limits(60, user_source=2),
    "password_hash_memory_budget_bytes": 6 * 64 * 1024 * 1024,
    "password_hash_wait_seconds": 60.0,
}


@pytest.mark.parametrize("throttled_server", [CONCURRENT], indirect=True)
async def test_concurrent_guesses_cannot_pass_the_limit_together(
    throttled_server, make_caller, oauth_client
):
    _, auth, _ = throttled_server
    user = await make_caller(Role.VIEWER, password=PASSWORD)

    # Six guesses at once for one (user, source) with a limit of two: each is counted when
    # it is let through, not after its hashing, so only two are checked at all.
    codes = await asyncio.gather(
        *(_token(auth, oauth_client, user.username, WRONG, "192.0.2.90") for _ in range(6))
    )

    assert sorted(codes, key=str) == sorted(
        [grpc.StatusCode.UNAUTHENTICATED] * 2 + [grpc.StatusCode.RESOURCE_EXHAUSTED] * 4, key=str
    )


@pytest.mark.parametrize("throttled_server", [CONCURRENT], indirect=True)
async def test_concurrent_basic_guesses_cannot_pass_the_limit_together(
    throttled_server, make_caller
):
    _, _, channel = throttled_server
    settings = settings_pb2_grpc.SettingsServiceStub(channel)
    user = await make_caller(Role.VIEWER)
    read = settings_pb2.GetSettingsRequest(
        scope=settings_pb2.Scope(account_id=user.account_id), keys=["ANY.KEY"]
    )
    metadata = (
        ("authorization", basic_authorization(user.username, WRONG)),
        *_from("192.0.2.91"),
    )

    async def attempt() -> grpc.StatusCode:
        try:
            await settings.GetSettings(read, metadata=metadata)
        except grpc.aio.AioRpcError as error:
            return error.code()
        return grpc.StatusCode.OK

    codes = await asyncio.gather(*(attempt() for _ in range(6)))

    assert sorted(codes, key=str) == sorted(
        [grpc.StatusCode.UNAUTHENTICATED] * 2 + [grpc.StatusCode.RESOURCE_EXHAUSTED] * 4, key=str
    )


def test_a_success_refunds_its_reservation_and_a_busy_refusal_is_given_back():
    throttle = LoginThrottle(
        Limit(failures=2, window_seconds=3600),
        Limit(failures=2, window_seconds=3600),
        Limit(failures=2, window_seconds=3600),
        max_entries=100,
    )
    for _ in range(5):
        throttle.check("someone", "192.0.2.1", "password")
        throttle.succeeded("someone", "192.0.2.1")
        throttle.check("other", "192.0.2.2", "password")
        throttle.refund("other", "192.0.2.2")  # refused as busy: never checked
    throttle.check("someone", "192.0.2.1", "password")
    throttle.failed("someone", "192.0.2.1", "password")
    throttle.check("someone", "192.0.2.1", "password")
    throttle.failed("someone", "192.0.2.1", "password")
    with pytest.raises(Exception) as raised:
        throttle.check("someone", "192.0.2.1", "password")
    assert raised.value.reason == "AUTH_THROTTLED"


@pytest.mark.parametrize("throttled_server", [limits(60, user_source=2)], indirect=True)
async def test_ipv6_addresses_of_one_slash_64_count_as_one_source(
    throttled_server, make_caller, oauth_client
):
    _, auth, _ = throttled_server
    user = await make_caller(Role.VIEWER, password=PASSWORD)

    # Two failures from two addresses of one /64 reach the per-(user, source) limit of two;
    # the mapped form of an IPv4 address is that address.
    codes = [
        await _token(auth, oauth_client, user.username, WRONG, "2001:db8:5:6::1"),
        await _token(auth, oauth_client, user.username, WRONG, "2001:db8:5:6:ffff::2"),
    ]
    same_prefix = await _token(auth, oauth_client, user.username, PASSWORD, "2001:db8:5:6::3")
    other_prefix = await _token(auth, oauth_client, user.username, PASSWORD, "2001:db8:5:7::1")
    await _token(auth, oauth_client, user.username, WRONG, "::ffff:192.0.2.120")
    await _token(auth, oauth_client, user.username, WRONG, "192.0.2.120")
    mapped = await _token(auth, oauth_client, user.username, PASSWORD, "::ffff:192.0.2.120")

    assert codes == [grpc.StatusCode.UNAUTHENTICATED] * 2
    assert same_prefix == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert other_prefix == grpc.StatusCode.OK
    assert mapped == grpc.StatusCode.RESOURCE_EXHAUSTED
