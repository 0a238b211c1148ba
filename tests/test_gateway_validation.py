"""Issue 5's "validation at the edge", seen from REST: every request below is the Fluent
Commerce 400 naming what is wrong, and nothing is written.

The cases here are the ones tests/test_gateway_fluentcommerce.py does not already cover
(malformed bodies, wrong values per type, the body limit, bad ids and key lists are there).
"""

from __future__ import annotations

import json

import pytest

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
MIB = 1 << 20


def _setting(value, setting_type: object = "JSON") -> str:
    return json.dumps({"setting": {"value": value, "type": setting_type}})


def _nested(depth: int) -> object:
    """`depth` arrays inside each other (the README's depth counts arrays and objects)."""
    value: object = 1
    for _ in range(depth):
        value = [value]
    return value


GOOD = _setting(1, "INTEGER")

# (what is wrong, path key, body, the field the 400 names)
PUT_CASES = [
    ("truncated JSON", "K", GOOD[:-1], "body"),
    ("trailing garbage", "K", GOOD + " x", "body"),
    ("two documents", "K", GOOD + "{}", "body"),
    ("single quotes", "K", "{'setting': {'value': 1, 'type': 'INTEGER'}}", "body"),
    ("byte order mark", "K", "\ufeff" + GOOD, "body"),
    ("INTEGER below -2^63", "K", _setting(INT64_MIN - 1, "INTEGER"), "value"),
    ("INTEGER of 2^64", "K", _setting(2**64, "INTEGER"), "value"),
    ("INTEGER of 10^30", "K", _setting(10**30, "INTEGER"), "value"),
    ("INTEGER as a digit string", "K", _setting(str(INT64_MAX), "INTEGER"), "value"),
    (
        "JSON number of 1,001 digits",
        "K",
        '{"setting": {"value": 1' + "0" * 1000 + ', "type": "JSON"}}',
        "value",
    ),
    ("JSON 33 arrays deep", "K", _setting(_nested(33)), "value"),
    ("NUL in a JSON string", "K", _setting({"a": "x\u0000y"}), "value"),
    ("NUL in a JSON member name", "K", _setting({"\u0000": 1}), "value"),
    ("NUL in a LOB", "K", _setting("x\u0000", "LOB"), "value"),
    (
        "unpaired surrogate in a STRING",
        "K",
        '{"setting": {"value": "\\ud800", "type": "STRING"}}',
        "value",
    ),
    ("LOB over 1 MiB", "K", _setting("x" * (MIB + 1), "LOB"), "value"),
    ("JSON over 1 MiB", "K", _setting(["x" * MIB]), "value"),
    # 2 MiB of UTF-8, within the body limit; six times that once ASCII-escaped, past gRPC's
    # 4 MiB message limit (which answered 429, a status clients retry).
    (
        "LOB of 2 MiB of 4-byte characters",
        "K",
        json.dumps(
            {"setting": {"value": "\U0001f600" * ((2 * MIB - 100) // 4), "type": "LOB"}},
            ensure_ascii=False,
        ),
        "value",
    ),
    (
        "setting.key twice",
        "K",
        '{"setting": {"key": "K", "key": "K", "value": 1, "type": "INTEGER"}}',
        "body",
    ),
    (
        "setting.type twice",
        "K",
        '{"setting": {"value": "1", "type": "STRING", "type": "INTEGER"}}',
        "body",
    ),
    ("setting twice", "K", GOOD[:-1] + ', "setting": {"value": 1, "type": "INTEGER"}}', "body"),
    (
        "a JSON value with a member twice",
        "K",
        '{"setting": {"value": {"a": 1, "a": 2}, "type": "JSON"}}',
        "body",
    ),
    (
        "a member twice deep inside",
        "K",
        '{"setting": {"value": [[{"b": {"a": 1, "a": 1}}]], "type": "JSON"}}',
        "body",
    ),
    ("type as a number", "K", _setting(1, 5), "type"),
    ("type empty", "K", _setting(1, ""), "type"),
    ("type in the gRPC spelling", "K", _setting(1, "SETTING_TYPE_JSON"), "type"),
    ("NUL in the path key", "A%00B", GOOD, "key"),
    ("path key of 256 characters", "K" * 256, GOOD, "key"),
    ("path key starting with a dot", ".K", GOOD, "key"),
    ("comma in the path key", "A,B", GOOD, "key"),
    ("space in the path key", "A%20B", GOOD, "key"),
    ("empty path key", "", GOOD, "key"),
]

# (what is wrong, comma-separated keys, the field the 400 names)
GET_CASES = [
    ("NUL in a key", "A%00B", "keys[0]"),
    ("NUL alone after a good key", "A,%00", "keys[1]"),
    ("key of 256 characters", "K" * 256, "keys[0]"),
    ("key starting with a dash", "OK,-K", "keys[1]"),
    ("leading space", "%20A", "keys[0]"),
    ("trailing comma", "A,", "keys[1]"),
    ("same key twice, apart", "A,B,A", "keys[2]"),
]


@pytest.fixture
def send(http, rest_auth_headers):
    async def request(method, path, content=None):
        headers = dict(rest_auth_headers)
        if content is not None:
            headers["Content-Type"] = "application/json"
        return await http.request(method, path, content=content, headers=headers)

    return request


def _assert_bad_request(response, field: str) -> None:
    assert response.status_code == 400, response.text
    body = response.json()
    assert (body["message"], body["code"]) == ("Bad Request", "400")
    assert field in [entry["code"] for entry in body["error"]], body
    assert all(entry["message"] for entry in body["error"])


@pytest.mark.parametrize(
    ("key", "content", "field"), [case[1:] for case in PUT_CASES], ids=[c[0] for c in PUT_CASES]
)
async def test_a_bad_put_is_400_naming_it_and_writes_nothing(
    send, db, new_account, key, content, field
):
    account = await new_account()

    response = await send("PUT", f"/api/v4.1/settings/account/{account}/{key}", content)

    _assert_bad_request(response, field)
    assert await db.fetchval("SELECT count(*) FROM settings WHERE account_id = $1", account) == 0


@pytest.mark.parametrize(
    ("keys", "field"), [case[1:] for case in GET_CASES], ids=[c[0] for c in GET_CASES]
)
async def test_a_bad_key_list_is_400_naming_the_key(send, new_account, keys, field):
    account = await new_account()

    response = await send("GET", f"/api/v4.1/settings/account/{account}/{keys}")

    _assert_bad_request(response, field)


async def test_the_documented_limits_themselves_are_accepted(send, new_account):
    """The matrix's bounds are where the README puts them: one step inside is stored."""
    account = await new_account()
    inside = {
        "MIN": _setting(INT64_MIN, "INTEGER"),
        "MAX": _setting(INT64_MAX, "INTEGER"),
        "DEEP": _setting(_nested(32)),
        "DIGITS": '{"setting": {"value": 1' + "0" * 999 + ', "type": "JSON"}}',
        "K" * 255: GOOD,
    }
    for key, content in inside.items():
        response = await send("PUT", f"/api/v4.1/settings/account/{account}/{key}", content)
        assert response.status_code == 200, (key[:10], response.text)


@pytest.mark.parametrize(
    ("content", "member"),
    [
        ('{"setting": {"key": "K", "key": "K", "value": 1, "type": "INTEGER"}}', "key"),
        ('{"setting": {"value": "1", "type": "STRING", "type": "INTEGER"}}', "type"),
        ('{"setting": {"value": {"a": 1, "a": 2}, "type": "JSON"}}', "a"),
    ],
)
async def test_a_duplicated_member_is_named(send, new_account, content, member):
    account = await new_account()

    response = await send("PUT", f"/api/v4.1/settings/account/{account}/K", content)

    assert response.status_code == 400
    (entry,) = response.json()["error"]
    assert entry["code"] == "body"
    assert f'"{member}"' in entry["message"] and "more than once" in entry["message"]


async def test_a_duplicated_member_is_400_on_fluentcart(http, rest_auth_headers):
    content = '{"integration_name": "webhook", "integration_name": "slack", "integration": "{}"}'

    response = await http.post(
        "/wp-json/fluent-cart/v2/integration/global-settings",
        content=content,
        headers={**rest_auth_headers, "Content-Type": "application/json"},
    )

    assert response.status_code == 400
    assert '"integration_name"' in response.json()["errors"]["body"]


async def test_text_is_measured_in_the_utf8_bytes_sent(send, new_account):
    """200,000 é are 400,000 bytes of UTF-8 (1.2 MB once ASCII-escaped): inside the 1 MiB."""
    account = await new_account()
    value = "\u00e9" * 200_000
    content = json.dumps({"setting": {"value": value, "type": "JSON"}}, ensure_ascii=False)

    # A key of its own: one type per key, and others write `K` with other types.
    put = await send("PUT", f"/api/v4.1/settings/account/{account}/UTF8.K", content.encode())
    got = await send("GET", f"/api/v4.1/settings/account/{account}/UTF8.K")

    assert put.status_code == 200, put.text[:300]
    assert got.json()["settings"][0]["value"] == value
