"""Strategies and checks shared by the HTTP fuzz tests (test_fuzz_console.py,
test_fuzz_streams.py): awkward text, path segments, query strings and form bodies as the
bytes a client could send, and what an answer must never hold."""

from __future__ import annotations

from urllib.parse import quote

from hypothesis import strategies as st

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
