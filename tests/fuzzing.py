"""Strategies and checks shared by the HTTP fuzz tests (test_fuzz_console.py,
test_fuzz_streams.py): awkward text, path segments, query strings and form bodies as the
bytes a client could send, and what an answer must never hold."""

from __future__ import annotations

from typing import TypeVar
from urllib.parse import quote

import httpx
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from tests.conftest import ConsoleSession

T = TypeVar("T")


def fuzz_settings(max_examples: int) -> settings:
    """Derandomized (the same examples every run: the suite must not flake, and a failure
    reproduces on the next run; a new strategy is what widens the search), no deadline
    (the conftest profile: a real server on a shared box)."""
    return settings(
        max_examples=max_examples,
        derandomize=True,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


# What a client may never see: a Python traceback, an exception's repr or a gRPC status
# the gateway should have translated.
LEAKS = (
    "Traceback (most recent call last)",
    'File "/',
    "AioRpcError",
    "StatusCode.",
    "asyncpg",
    "Internal Server Error",
)

# Values that have broken parsers before: empty, NUL, non-ASCII, markup, whole numbers
# at and past the int64 limits, JSON that is not an object, very long.
SPECIAL = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "é",
    "🙂",
    "\u202e",
    "\r\n",
    "<script>alert(1)</script>",
    "../..",
    "%",
    "0",
    "-1",
    "1e309",
    "NaN",
    "null",
    "true",
    "{}",
    "[]",
    '{"a": [1, {"b": null}]}',
    str(2**63 - 1),
    str(2**63),
    str(-(2**63) - 1),
    "9" * 30,
    "K" * 300,
]

texts = st.one_of(
    st.sampled_from(SPECIAL),
    # Surrogates cannot be encoded as UTF-8; the bytes strategies below send them broken.
    st.text(st.characters(exclude_categories=["Cs"]), max_size=30),
)
# Percent-escapes that decode to no UTF-8 (a lone continuation byte, an encoded surrogate,
# an overlong NUL) and raw bytes a URL-encoded body may not hold.
BAD_ESCAPES = ["%FF", "%C0%80", "%ED%A0%80", "%80", "%", "%G1"]
raw_bytes = st.binary(min_size=1, max_size=12)


def escaped(text: str) -> str:
    """`text` percent-encoded as UTF-8, every reserved character too."""
    return quote(text, safe="")


def segments(*real: str) -> st.SearchStrategy[str]:
    """One URL path segment, already escaped: one of `real` (mostly), or junk."""
    return st.one_of(
        st.sampled_from(real) if real else st.nothing(),
        texts.filter(bool).map(escaped),
        st.sampled_from([*BAD_ESCAPES, "%2F", "..", "%2E%2E", "-1", "0", "9" * 25]),
    )


def pairs_text(
    names: list[str], values: st.SearchStrategy[str], *, max_size: int = 6
) -> st.SearchStrategy[str]:
    """A query string or form body: known `names` (and junk ones) with `values`, sometimes
    a field twice, sometimes an escape that decodes to no UTF-8, a piece without '='."""
    name = st.sampled_from(names) | texts
    piece = st.one_of(
        st.tuples(name, values).map(lambda p: f"{escaped(p[0])}={escaped(p[1])}"),
        st.tuples(name, st.sampled_from(BAD_ESCAPES)).map(lambda p: f"{escaped(p[0])}={p[1]}"),
        name.map(escaped),
    )
    return st.lists(piece, max_size=max_size).map("&".join)


def often(good: st.SearchStrategy[T], bad: st.SearchStrategy[T]) -> st.SearchStrategy[T]:
    """`good` seven times in ten, else `bad`: most examples get past the checks in front
    (credentials, a token, a well-formed path) to the handler; the rest test those checks."""
    return st.integers(0, 9).flatmap(lambda i: good if i < 7 else bad)


def check_answer(response: httpx.Response) -> None:
    """What no console answer may be, whatever it was sent."""
    assert response.status_code < 500, (response.status_code, response.text[:2000])
    for leak in LEAKS:
        assert leak not in response.text, (leak, response.text[:2000])
    if response.is_redirect:
        location = response.headers["location"]
        assert location.startswith("/console") and not location.startswith("//"), location


def cookies(session: ConsoleSession, other: int) -> st.SearchStrategy[str | None]:
    """Mostly the signed-in session's cookie; sometimes none, a forged one or a cut one."""
    return often(
        st.just(session.cookie),
        st.sampled_from([None, "", "junk", session.cookie[:-4], str(other)]),
    )


def scope_paths(session: ConsoleSession, other: int) -> st.SearchStrategy[str]:
    """``/{kind}/{id}``: the session's account and retailer (mostly), another account, junk."""
    real = st.sampled_from([f"/accounts/{session.account}", f"/retailers/{session.retailer}"])
    made = st.tuples(
        segments("accounts", "retailers"),
        segments(str(session.account), str(session.retailer), str(other)),
    ).map(lambda p: f"/{p[0]}/{p[1]}")
    wrong = st.sampled_from([f"/accounts/{other}", f"/retailers/{session.account}"])
    return often(real, made | wrong)
