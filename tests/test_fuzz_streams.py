"""A fuzz of the gateway's event streams over real HTTP: the REST watch paths
(``/api/v4.1/settings/{account|retailer}/{id}/{keys}/watch``, on the session gateway, as
PLATFORM) and the console's ``/console/{kind}/{id}/events`` (signed in by the session
cookie), with generated path parameters, query strings and ``Last-Event-ID`` headers
(a revision to replay from, the current one, past int64, negative, signed, non-ASCII
digits, junk), and sometimes no or wrong credentials.

schemathesis (tests/test_gateway_openapi.py) calls the REST watch paths too, but with ids
and keys it makes up: they name no scope, so it meets the refusals, never a stream. Here
most requests name a real scope and key, so they reach WatchSettings and its first
message. Whatever arrives: the status is never a 5xx, a refusal carries no traceback, and
a 200 is ``text/event-stream`` whose first bytes are an event (read with a bounded wait,
then the stream is closed), or nothing when the gateway's bound passed first.

Derandomized (tests/fuzzing.py says why).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import ConsoleSession
from tests.fuzzing import LEAKS, fuzz_settings, often, pairs_text, scope_paths, segments, texts
from tests.watching import put
from tierset.gateway.console.session import COOKIE_NAME
from tierset.store.database import Store
from tierset.v1 import settings_pb2

pytestmark = pytest.mark.timeout(300)

FUZZ = fuzz_settings(30)
KEYS = ["SFUZZ.A", "SFUZZ.B"]


@dataclass(frozen=True)
class Watched:
    """An account and its retailer with KEYS set, and the revision of the first write."""

    account: int
    retailer: int
    first: int


async def _current(settings_stub) -> int:
    latest = settings_pb2.ListChangesRequest(newest_first=True, page_size=1)
    return int((await settings_stub.ListChanges(latest)).revision)


async def _write_keys(settings_stub, account: int) -> int:
    """KEYS set at `account`; the revision of the first, so that a resume from just
    before it has events to replay at once."""
    first = 0
    for key in KEYS:
        await put(settings_stub, "ACCOUNT", key, 1, account=account)
        first = first or await _current(settings_stub)
    return first


@pytest.fixture(scope="module")
async def watched(server, settings_stub) -> Watched:
    store = Store(server.pool)
    account = (await store.create_account(None, "Stream fuzz account")).id
    retailer = (await store.create_retailer(None, account, "Stream fuzz retailer")).id
    return Watched(account, retailer, await _write_keys(settings_stub, account))


@pytest.fixture(scope="module")
async def console_watched(console_session: ConsoleSession, settings_stub) -> int:
    """KEYS in the console session's account, so its matrix has keys to watch; the
    revision of the first."""
    return await _write_keys(settings_stub, console_session.account)


@pytest.fixture(scope="module")
async def stream_http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(trust_env=False, timeout=30) as client:
        yield client


def last_event_ids(replayable: int) -> st.SearchStrategy[bytes | None]:
    """Last-Event-ID as sent: none, one to replay from, or one that is not a revision."""
    printable = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=25)
    bad = st.one_of(
        st.sampled_from(
            ["", "-1", "+1", "1 2", "1.0", "0x1", "1e3", "9" * 18, "9" * 19, str(2**63), "\u0661"]
        ).map(lambda text: text.encode()),
        # h11 sends no header value with whitespace around it.
        printable.filter(lambda text: text == text.strip()).map(str.encode),
        st.sampled_from([b"\xe9", b"1\xff"]),  # latin-1 bytes, no UTF-8
    )
    return often(st.sampled_from([None, None, str(replayable - 1).encode()]), bad)


async def first_bytes(
    http: httpx.AsyncClient, url: str, headers: dict[str, bytes | str]
) -> tuple[httpx.Response, bytes]:
    """The answer and its first bytes (all of it when it is not a stream); the stream is
    closed after them."""
    async with asyncio.timeout(25), http.stream("GET", url, headers=headers) as response:
        if not response.headers.get("content-type", "").startswith("text/event-stream"):
            return response, await response.aread()
        async for chunk in response.aiter_raw():
            return response, chunk
        return response, b""


async def check_watch(
    http: httpx.AsyncClient, url: str, query: str, headers: dict[str, bytes | str], resume
) -> None:
    """GETs `url` (with `query` and Last-Event-ID `resume`, unless None): as the module says."""
    if resume is not None:
        headers["Last-Event-ID"] = resume
    response, body = await first_bytes(http, url + (f"?{query}" if query else ""), headers)
    check_stream_answer(response, body)


def check_stream_answer(response: httpx.Response, body: bytes) -> None:
    text = body.decode(errors="replace")
    assert response.status_code < 500, (response.status_code, text[:2000])
    for leak in LEAKS:
        assert leak not in text, (leak, text[:2000])
    if response.status_code == 200:
        assert response.headers["content-type"].startswith("text/event-stream"), response.headers
        # Empty only when the gateway's bound passed before the first message.
        assert body == b"" or body.startswith(b"id: "), text[:500]


@given(data=st.data())
@FUZZ
async def test_no_rest_watch_request_makes_the_gateway_fail(
    gateway, stream_http, rest_auth_headers, watched, data
):
    level, ident = data.draw(
        often(
            st.sampled_from(
                [("account", str(watched.account)), ("retailer", str(watched.retailer))]
            ),
            st.tuples(
                segments("account", "retailer"),
                segments(str(watched.account), str(watched.retailer), "1"),
            ),
        ),
        "scope",
    )
    keys = data.draw(
        often(
            st.sampled_from([KEYS[0], ",".join(KEYS)]),
            st.lists(segments(*KEYS) | st.just(""), max_size=4).map(",".join),
        ),
        "keys",
    )
    query = data.draw(often(st.just(""), pairs_text(["keys", "prefix", "start_revision"], texts)))
    headers: dict[str, bytes | str] = dict(
        data.draw(often(st.just(rest_auth_headers), st.sampled_from([{}, {"Authorization": "x"}])))
    )
    resume = data.draw(last_event_ids(watched.first), "Last-Event-ID")
    url = f"{gateway}/api/v4.1/settings/{level}/{ident}/{keys}/watch"
    await check_watch(stream_http, url, query, headers, resume)


@given(data=st.data())
@FUZZ
async def test_no_console_events_request_makes_the_console_fail(
    console, stream_http, console_session, console_watched, watched, data
):
    scope = data.draw(scope_paths(console_session, watched.account), "scope")
    resume = data.draw(last_event_ids(console_watched), "Last-Event-ID")
    if resume is not None and resume.isdigit():
        # A resume whose watch has nothing to replay answers only at the server's first
        # PROGRESS, 10 s on: replay from before KEYS were written, which the page watches.
        query = data.draw(st.sampled_from(["", "prefix=SFUZZ."]))
    else:
        query = data.draw(often(st.just(""), pairs_text(["prefix", "page"], texts)))
    cookie = data.draw(
        often(st.just(console_session.cookie), st.sampled_from([None, "junk", "x" * 5000]))
    )
    headers: dict[str, bytes | str] = {}
    if cookie is not None:
        headers["cookie"] = f"{COOKIE_NAME}={cookie}"
    await check_watch(stream_http, f"{console}/console{scope}/events", query, headers, resume)


async def test_the_fuzzed_watches_reach_the_stream(
    gateway, console, stream_http, rest_auth_headers, watched, console_session, console_watched
):
    """What most examples above send is a watch the server accepts: its first event."""
    rest = f"{gateway}/api/v4.1/settings/retailer/{watched.retailer}/{','.join(KEYS)}/watch"
    events = f"{console}/console/accounts/{console_session.account}/events"
    cookie = {"cookie": f"{COOKIE_NAME}={console_session.cookie}"}
    for url, headers in ((rest, rest_auth_headers), (events, cookie)):
        response, body = await first_bytes(stream_http, url, headers)
        assert response.status_code == 200
        assert body.startswith(b"id: ") and b"event: snapshot" in body, body[:500]
