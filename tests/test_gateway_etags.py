"""Optimistic concurrency over REST: ETags on GET and PUT, If-Match / If-None-Match on PUT,
over real HTTP to the real server (see src/tierset/gateway/preconditions.py for the scheme)."""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.helpers import json_value
from tierset.v1 import settings_pb2

JSON_HEADERS = {"Content-Type": "application/json"}


@pytest.fixture
def send(http, rest_auth_headers):
    async def request(method, path, *, value=None, headers=None):
        merged = dict(rest_auth_headers)
        content = None
        if method == "PUT":
            merged.update(JSON_HEADERS)
            content = json.dumps({"setting": {"value": value, "type": "INTEGER"}})
        merged.update(headers or {})
        return await http.request(method, path, content=content, headers=merged)

    return request


@pytest.fixture
async def account_key(send, new_account, unique_key):
    """The path of a key stored at ACCOUNT level with value 1 (version 1)."""
    path = f"/api/v4.1/settings/account/{await new_account()}/{unique_key()}"
    assert (await send("PUT", path, value=1)).status_code == 200
    return path


async def _read(send, path):
    """(value, level, ETag) of the one key of `path`; value None when nothing is stored."""
    response = await send("GET", path)
    assert response.status_code == 200
    settings = response.json()["settings"]
    if not settings:
        return None, None, response.headers.get("etag")
    return settings[0]["value"], settings[0]["level"], response.headers.get("etag")


async def test_get_and_put_answer_the_level_and_version_as_etag(send, account_key):
    assert await _read(send, account_key) == (1, "ACCOUNT", '"ACCOUNT.1"')

    written = await send("PUT", account_key, value=2, headers={"If-Match": '"ACCOUNT.1"'})

    assert written.status_code == 200, written.text
    assert written.headers["etag"] == '"ACCOUNT.2"'
    assert set(written.json()) == {"id"}  # the body keeps its documented shape
    assert await _read(send, account_key) == (2, "ACCOUNT", '"ACCOUNT.2"')


async def test_an_unconditional_put_also_answers_its_new_etag(send, account_key):
    written = await send("PUT", account_key, value=5)

    assert written.headers["etag"] == '"ACCOUNT.2"'


async def test_a_stale_if_match_is_409_and_writes_nothing(send, account_key):
    await send("PUT", account_key, value=2)  # someone else moves it to version 2

    stale = await send("PUT", account_key, value=99, headers={"If-Match": '"ACCOUNT.1"'})

    assert stale.status_code == 409, stale.text
    body = stale.json()
    assert (body["message"], body["code"]) == ("Conflict", "409")
    assert [e["code"] for e in body["error"]] == ["VERSION_MISMATCH"]
    assert "version 2" in body["error"][0]["message"]
    assert "etag" not in stale.headers
    assert await _read(send, account_key) == (2, "ACCOUNT", '"ACCOUNT.2"')


@pytest.mark.parametrize("precondition", [{"If-None-Match": "*"}, {"If-Match": '"GLOBAL.1"'}])
async def test_create_only_conditions_create_once_then_conflict(
    send, new_account, unique_key, precondition
):
    path = f"/api/v4.1/settings/account/{await new_account()}/{unique_key()}"

    created = await send("PUT", path, value=1, headers=precondition)
    again = await send("PUT", path, value=2, headers=precondition)

    assert created.status_code == 200 and created.headers["etag"] == '"ACCOUNT.1"'
    assert again.status_code == 409
    assert await _read(send, path) == (1, "ACCOUNT", '"ACCOUNT.1"')


async def test_an_inherited_etag_makes_the_put_create_the_override_only(
    send, settings_stub, new_account, new_retailer, unique_key
):
    key = unique_key()
    await settings_stub.SetGlobal(
        settings_pb2.SetGlobalRequest(
            key=key, type=settings_pb2.SETTING_TYPE_INTEGER, value=json_value(10)
        )
    )
    account = await new_account()
    account_path = f"/api/v4.1/settings/account/{account}/{key}"
    retailer_path = f"/api/v4.1/settings/retailer/{await new_retailer(account)}/{key}"
    _, level, inherited = await _read(send, account_path)
    assert (level, inherited) == ("GLOBAL", '"GLOBAL.1"')

    # Another client creates the ACCOUNT override in between: the read is stale.
    first = await send("PUT", account_path, value=20, headers={"If-Match": inherited})
    late = await send("PUT", account_path, value=30, headers={"If-Match": inherited})

    assert (first.status_code, first.headers["etag"]) == (200, '"ACCOUNT.1"')
    assert late.status_code == 409
    assert await _read(send, account_path) == (20, "ACCOUNT", '"ACCOUNT.1"')
    # The retailer inherits from ACCOUNT now; its ETag names that level and creates its own.
    _, level, from_account = await _read(send, retailer_path)
    assert (level, from_account) == ("ACCOUNT", '"ACCOUNT.1"')
    override = await send("PUT", retailer_path, value=40, headers={"If-Match": from_account})
    assert (override.status_code, override.headers["etag"]) == (200, '"RETAILER.1"')
    assert await _read(send, retailer_path) == (40, "RETAILER", '"RETAILER.1"')
    assert await _read(send, account_path) == (20, "ACCOUNT", '"ACCOUNT.1"')


async def test_several_keys_or_a_missing_key_have_no_etag(send, account_key):
    other = account_key.rsplit("/", 1)[0] + "/NOT.STORED.ANYWHERE"
    several = await send("GET", account_key + ",NOT.STORED.ANYWHERE")

    assert several.status_code == 200 and len(several.json()["settings"]) == 1
    assert "etag" not in several.headers
    assert await _read(send, other) == (None, None, None)


@pytest.mark.parametrize(
    ("headers", "field"),
    [
        ({"If-Match": "ACCOUNT.1"}, "If-Match"),  # not quoted
        ({"If-Match": 'W/"ACCOUNT.1"'}, "If-Match"),  # weak: never matches for a write
        ({"If-Match": '"ACCOUNT.1", "ACCOUNT.2"'}, "If-Match"),
        ({"If-Match": '"ACCOUNT.0"'}, "If-Match"),
        ({"If-Match": '"ACCOUNT.-1"'}, "If-Match"),
        ({"If-Match": '"ACCOUNT.9223372036854775808"'}, "If-Match"),
        ({"If-Match": '"account.1"'}, "If-Match"),
        ({"If-Match": '"SHOP.1"'}, "If-Match"),
        ({"If-Match": '"RETAILER.1"'}, "If-Match"),  # the account path never returns one
        ({"If-Match": ""}, "If-Match"),
        ({"If-Match": "*"}, "If-Match"),
        ({"If-None-Match": '"ACCOUNT.1"'}, "If-None-Match"),
        ({"If-Match": '"ACCOUNT.1"', "If-None-Match": "*"}, "If-Match"),
    ],
)
async def test_a_precondition_the_gateway_cannot_honour_is_400_naming_the_header(
    send, account_key, headers, field
):
    response = await send("PUT", account_key, value=7, headers=headers)

    assert response.status_code == 400, response.text
    body = response.json()
    assert (body["message"], body["code"]) == ("Bad Request", "400")
    assert [e["code"] for e in body["error"]] == [field]
    assert await _read(send, account_key) == (1, "ACCOUNT", '"ACCOUNT.1"')


async def test_concurrent_conditional_puts_have_exactly_one_winner_per_version(send, account_key):
    writers, rounds = 6, 4
    for version in range(1, rounds + 1):
        tag = f'"ACCOUNT.{version}"'
        answers = await asyncio.gather(
            *(
                send("PUT", account_key, value=version * 100 + i, headers={"If-Match": tag})
                for i in range(writers)
            )
        )
        statuses = sorted(a.status_code for a in answers)
        assert statuses == [200] + [409] * (writers - 1), [a.text for a in answers]
        (winner,) = [i for i, a in enumerate(answers) if a.status_code == 200]
        assert answers[winner].headers["etag"] == f'"ACCOUNT.{version + 1}"'
        assert await _read(send, account_key) == (
            version * 100 + winner,
            "ACCOUNT",
            f'"ACCOUNT.{version + 1}"',
        )


async def test_concurrent_unconditional_puts_all_land_last_write_wins(send, account_key):
    writers = 8
    answers = await asyncio.gather(*(send("PUT", account_key, value=i) for i in range(writers)))

    assert [a.status_code for a in answers] == [200] * writers
    # Each write got its own version (2..9), and the stored value is the one that got the last.
    tags = sorted(int(a.headers["etag"].strip('"').split(".")[1]) for a in answers)
    assert tags == list(range(2, writers + 2))
    last = next(i for i, a in enumerate(answers) if a.headers["etag"] == f'"ACCOUNT.{writers + 1}"')
    assert await _read(send, account_key) == (last, "ACCOUNT", f'"ACCOUNT.{writers + 1}"')


# --- DELETE: the path's level loses its value; If-Match conditions it ----------------------


async def test_delete_answers_what_the_scope_now_inherits(send, account_key):
    gone = await send("DELETE", account_key, headers={"If-Match": '"ACCOUNT.1"'})

    assert gone.status_code == 200, gone.text
    assert gone.json() == {"settings": []}  # no GLOBAL value to inherit
    assert "etag" not in gone.headers
    assert await _read(send, account_key) == (None, None, None)
    again = await send("DELETE", account_key)
    assert again.status_code == 404, again.text
    assert [e["code"] for e in again.json()["error"]] == ["SETTING_NOT_FOUND"]


async def test_delete_of_an_override_answers_the_inherited_value_and_its_etag(
    send, new_account, new_retailer, unique_key
):
    account = await new_account()
    retailer = await new_retailer(account)
    key = unique_key()
    account_path = f"/api/v4.1/settings/account/{account}/{key}"
    retailer_path = f"/api/v4.1/settings/retailer/{retailer}/{key}"
    await send("PUT", account_path, value=1)
    await send("PUT", retailer_path, value=2)

    gone = await send("DELETE", retailer_path, headers={"If-Match": '"RETAILER.1"'})

    assert gone.status_code == 200, gone.text
    assert gone.json() == {
        "settings": [{"key": key, "value": 1, "type": "INTEGER", "level": "ACCOUNT"}]
    }
    assert gone.headers["etag"] == '"ACCOUNT.1"'
    assert await _read(send, retailer_path) == (1, "ACCOUNT", '"ACCOUNT.1"')


async def test_a_stale_if_match_on_delete_is_409_and_deletes_nothing(send, account_key):
    await send("PUT", account_key, value=2)  # version 2 now

    stale = await send("DELETE", account_key, headers={"If-Match": '"ACCOUNT.1"'})

    assert stale.status_code == 409, stale.text
    assert [e["code"] for e in stale.json()["error"]] == ["VERSION_MISMATCH"]
    assert await _read(send, account_key) == (2, "ACCOUNT", '"ACCOUNT.2"')


@pytest.mark.parametrize(
    ("headers", "named"),
    [
        ({"If-None-Match": "*"}, "If-None-Match"),
        ({"If-Match": "*"}, "If-Match"),
        ({"If-Match": "ACCOUNT.1"}, "If-Match"),
        ({"If-Match": '"RETAILER.1"'}, "If-Match"),  # a lower level than the path's
    ],
)
async def test_a_delete_precondition_it_cannot_honour_is_400(send, account_key, headers, named):
    refused = await send("DELETE", account_key, headers=headers)

    assert refused.status_code == 400, refused.text
    assert named in refused.text
    assert await _read(send, account_key) == (1, "ACCOUNT", '"ACCOUNT.1"')
