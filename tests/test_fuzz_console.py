"""A fuzz of the web console over real HTTP (the session's console gateway, no browser):
every route of gateway/console ROUTES, the POST forms with a signed-in session and its
CSRF token (so the generated fields reach the handlers and the API behind them), without
it and with a wrong one; generated fields (missing, extra, twice, empty, huge, NUL,
escapes that decode to no UTF-8, raw bytes, numbers past int64, every type and level name
and junk), generated path parameters and query strings.

Whatever arrives: never a 5xx, never a traceback or a gRPC status in the body, a redirect
only to a console path, and a form that is not carried out (any answer but 303) writes
nothing: the change log's revision is unchanged.

Examples are derandomized (tests/fuzzing.py says why).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.routing import Route

from tests.conftest import ConsoleSession
from tests.fuzzing import (
    check_answer,
    cookies,
    escaped,
    fuzz_settings,
    often,
    pairs_text,
    raw_bytes,
    scope_paths,
    segments,
    texts,
)
from tierset.gateway.console import ROUTES
from tierset.gateway.console.matrix import TYPES
from tierset.gateway.console.session import COOKIE_NAME
from tierset.store.database import Store
from tierset.v1 import settings_pb2

pytestmark = pytest.mark.timeout(300)

FUZZ = fuzz_settings(25)
# The keys the forms write: this module's own, in its own account (an ADMIN cannot write
# GLOBAL, so a junk key that happens to be valid lands in that account only).
KEYS = ["CFUZZ.A", "CFUZZ.B"]
SCOPED = "/{kind:str}/{id:str}"
WRITES = [f"{SCOPED}/{a}" for a in ("put", "inherit", "restore", "lock", "unlock")]
FORMS = ["/sign-in", "/sign-out", *WRITES]
PAGES = [
    "/",
    "/sign-in",
    "/accounts",
    "/accounts/open",
    SCOPED,
    f"{SCOPED}/matrix",
    f"{SCOPED}/key",
    f"{SCOPED}/keys/{{key:str}}",
    f"{SCOPED}/history",
]
# In tests/test_fuzz_streams.py with the REST event streams.
STREAMS = [f"{SCOPED}/events"]


def test_every_console_route_is_fuzzed():
    served = {
        (route.path, method)
        for route in ROUTES
        if isinstance(route, Route)
        for method in (route.methods or set()) - {"HEAD"}
    }
    fuzzed = {
        *((path, "POST") for path in FORMS),
        *((path, "GET") for path in PAGES + STREAMS),
    }
    assert served == fuzzed


@pytest.fixture(scope="module")
async def console_http(console: str) -> AsyncIterator[httpx.AsyncClient]:
    """Requests carry the cookie a test gives them: the jar is cleared before each."""
    async with httpx.AsyncClient(base_url=console, trust_env=False, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
async def other_account(server) -> int:
    """An account the signed-in ADMIN does not belong to."""
    return (await Store(server.pool).create_account(None, "Not the fuzzer's")).id


async def revision(settings_stub) -> int:
    probe = settings_pb2.ListChangesRequest(newest_first=True, page_size=1)
    return int((await settings_stub.ListChanges(probe)).revision)


MISSING = "<missing>"


def form_fields(session: ConsoleSession, current: int) -> st.SearchStrategy[dict[str, str]]:
    """A form as the key page's forms send it, each field mostly plausible, sometimes junk
    or missing; extra fields mixed in."""

    def field(*good: str) -> st.SearchStrategy[str]:
        return often(st.sampled_from(good), texts | st.just(MISSING))

    values = st.one_of(
        st.sampled_from(["1", "42", "true", '{"a": 1}', '"text"', "x" * 70_000, str(2**63)]),
        st.just("x" * (1024 * 1024 + 1)),  # past a LOB's 1 MiB
        texts,
    )
    fields = st.fixed_dictionaries(
        {
            "level": field("ACCOUNT", "RETAILER", "GLOBAL"),
            "key": field(*KEYS),
            "type": field(*TYPES),
            "value": often(values, st.just(MISSING)),
            "reason": often(st.just(""), texts | st.just(MISSING)),
            "target": field(
                f"ACCOUNT:{session.account}",
                f"RETAILER:{session.retailer}",
                f"RETAILER:{session.account}",
                "GLOBAL:",
                "ACCOUNT:" + "9" * 19,
            ),
            "revision": field("0", "1", str(current), "9" * 18, "9" * 19, "-1"),
            "remove_overrides": field("true", "false", ""),
            "username": field(session.username, "nobody", ""),
            # Rarely the right one: a right sign-in is tested elsewhere, and each costs a
            # password check (as a wrong one does: every check is slow on purpose).
            "password": field("wrong", "", "wrong" * 50, session.password),
        },
        optional={"extra": texts, "": texts},
    )
    return fields.map(lambda f: {k: v for k, v in f.items() if v != MISSING})


# How a form may be broken around its fields; None: not at all.
BREAKS = [
    "no csrf",
    "empty csrf",
    "wrong csrf",
    "csrf twice",
    "no cookie",
    "junk cookie",
    "cut cookie",
    "json",
    "multipart",
    "raw bytes",
]


@st.composite
def form_requests(
    draw, session: ConsoleSession, current: int
) -> tuple[bytes, dict[str, str], str | None]:
    """(body, headers, what is broken): the fields with the session's cookie and CSRF token
    in a urlencoded body, or one of BREAKS."""
    fields = draw(form_fields(session, current))
    broken = draw(often(st.none(), st.sampled_from(BREAKS)))
    # The last character changed, whatever it was: a token ending in "A" (1 in 64) once
    # made "wrong csrf" the right one, and the refused form was accepted.
    wrong = session.csrf[:-1] + ("B" if session.csrf.endswith("A") else "A")
    csrf = {"no csrf": None, "empty csrf": "", "wrong csrf": wrong}.get(broken or "", session.csrf)
    pieces = [f"{escaped(k)}={escaped(v)}" for k, v in fields.items()]
    if csrf is not None:
        pieces.insert(draw(st.integers(0, len(pieces))), f"csrf={escaped(csrf)}")
    if broken == "csrf twice":
        pieces.append(f"csrf={escaped(session.csrf)}")
    if draw(often(st.just(False), st.just(True))):  # junk that may or may not be refused
        pieces.append(draw(pairs_text(["csrf", "level", "key", "value"], texts)))
    body = "&".join(pieces).encode()
    if broken == "raw bytes":  # no longer ASCII: not a urlencoded body
        body += b"\x80" + draw(raw_bytes)
    media = {"json": "application/json", "multipart": "multipart/form-data; boundary=x"}
    headers = {"content-type": media.get(broken or "", "application/x-www-form-urlencoded")}
    cookie = {"no cookie": None, "junk cookie": "junk", "cut cookie": session.cookie[:-4]}.get(
        broken or "", session.cookie
    )
    if cookie is not None:
        headers["cookie"] = f"{COOKIE_NAME}={cookie}"
    return body, headers, broken


async def post_form(http, session, other, settings_stub, form, data) -> None:
    """One generated form to `form`: checked as the module says."""
    before = await revision(settings_stub)
    path = form.replace(SCOPED, data.draw(scope_paths(session, other), "scope"))
    body, headers, broken = data.draw(form_requests(session, before), "request")
    http.cookies.clear()
    response = await http.post("/console" + path, content=body, headers=headers)
    check_answer(response)
    if broken is not None:
        assert response.status_code in (400, 403, 404, 415), response.text[:2000]
    if response.status_code != 303 or form not in WRITES:
        assert await revision(settings_stub) == before, (response.status_code, response.text[:500])


@pytest.mark.parametrize("form", ["/sign-out", *WRITES])
@given(data=st.data())
@FUZZ
async def test_no_form_makes_the_console_fail_or_write_when_it_refuses(
    console_http, console_session, other_account, settings_stub, form, data
):
    await post_form(console_http, console_session, other_account, settings_stub, form, data)


@given(data=st.data())
@fuzz_settings(10)
async def test_no_sign_in_form_makes_the_console_fail_or_write(
    console_http, console_session, other_account, settings_stub, data
):
    """As the other forms, fewer: every sign-in that gets past its CSRF check costs one
    argon2id check."""
    await post_form(console_http, console_session, other_account, settings_stub, "/sign-in", data)


async def test_the_fuzzed_session_writes_through_its_forms(
    console_http, console_session, settings_stub
):
    """The forms the fuzz sends (session cookie, CSRF token) are carried out: a put then a
    lock answer 303 and each takes a revision, so the fuzz reaches the writes."""
    base = f"/console/accounts/{console_session.account}"
    headers = {"cookie": f"{COOKIE_NAME}={console_session.cookie}"}
    form = {"csrf": console_session.csrf, "level": "ACCOUNT", "key": "CFUZZ.W"}
    for action, extra in (("put", {"type": "INTEGER", "value": "7"}), ("lock", {})):
        before = await revision(settings_stub)
        console_http.cookies.clear()
        response = await console_http.post(
            f"{base}/{action}", data={**form, **extra}, headers=headers
        )
        assert response.status_code == 303, response.text[:2000]
        assert await revision(settings_stub) > before


@pytest.mark.parametrize("page", PAGES)
@given(data=st.data())
@FUZZ
async def test_no_page_request_makes_the_console_fail(
    console_http, console_session, other_account, page, data
):
    path = page.replace(SCOPED, data.draw(scope_paths(console_session, other_account)))
    path = path.replace("{key:str}", data.draw(segments(*KEYS)))
    query = data.draw(
        pairs_text(["prefix", "page", "id", "key", "saved", "ended"], texts | st.sampled_from(KEYS))
    )
    cookie = data.draw(cookies(console_session, other_account))
    headers = {} if cookie is None else {"cookie": f"{COOKIE_NAME}={cookie}"}
    console_http.cookies.clear()
    response = await console_http.get(
        "/console" + path + (f"?{query}" if query else ""), headers=headers
    )
    check_answer(response)


@given(name=segments("console.css", "live.js", "../templates/key.html", "%2E%2E%2Fpages.py"))
@FUZZ
async def test_no_static_path_makes_the_console_fail(console_http, name):
    console_http.cookies.clear()
    check_answer(await console_http.get(f"/console/static/{name}"))
