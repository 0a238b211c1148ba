"""Fluent Commerce's Settings API over the REST gateway, over real HTTP to the real server."""

from __future__ import annotations

import json
from decimal import Decimal

import grpc
import pytest

from tests.helpers import json_value
from tierset.core.authz import Role
from tierset.core.values import MAX_LOB_BYTES
from tierset.v1 import accounts_pb2, settings_pb2

# The reference's samples, verbatim (its PUT body and GET responses).
PROVIDERS = (
    '[{"name":"BRAINTREE"},{"name":"CYBERSOURCE"},{"name":"PAYPAL"},'
    '{"name":"GIVEX"},{"name":"AFTERPAY"},{"name":"FAT_ZEBRA"}]'
)
SAMPLE_PUT_BODY = (
    "{\n"
    '  "setting": {\n'
    '    "key": "PAYMENT.PROVIDER",\n'
    f'    "value": {PROVIDERS},\n'
    '    "type": "JSON"\n'
    "  }\n"
    "}"
)
CURRENCIES = [{"name": "AUD"}, {"name": "NZD"}]
JSON_HEADERS = {"Content-Type": "application/json"}


def _error(field_or_reason: str, status: int, title: str) -> dict:
    """The documented failure body, without the message text (checked separately)."""
    return {"error": [{"code": field_or_reason}], "message": title, "code": str(status)}


def _shape(body: dict) -> dict:
    return {
        "error": [{"code": e["code"]} for e in body["error"]],
        "message": body["message"],
        "code": body["code"],
    }


@pytest.fixture
async def sample_scopes(accounts_stub, settings_stub):
    """Account 1111 and its retailer 2222, as the reference's examples use, and the GLOBAL
    PAYMENT.CURRENCY default they read."""
    # One after the other: a grpc.aio call starts when it is made, and the retailer needs
    # the account to exist.
    for create, request in (
        (
            accounts_stub.CreateAccount,
            accounts_pb2.CreateAccountRequest(account_id=1111, display_name="Sample account"),
        ),
        (
            accounts_stub.CreateRetailer,
            accounts_pb2.CreateRetailerRequest(
                retailer_id=2222, account_id=1111, display_name="Sample retailer"
            ),
        ),
    ):
        try:
            await create(request)
        except grpc.aio.AioRpcError as error:
            assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    await settings_stub.SetGlobal(
        settings_pb2.SetGlobalRequest(
            key="PAYMENT.CURRENCY",
            type=settings_pb2.SETTING_TYPE_JSON,
            value=json_value(CURRENCIES),
        )
    )


@pytest.fixture
async def sample_bearer(http, sample_scopes, make_caller, oauth_client) -> dict[str, str]:
    """How a Fluent Commerce client authenticates: a password grant at POST /oauth/token as an
    ADMIN of account 1111, then the access token as a Bearer."""
    password = "sample password"
    admin = await make_caller(Role.ADMIN, account_id=1111, password=password)
    response = await http.post(
        "/oauth/token",
        params={
            "username": admin.username,
            "password": password,
            "client_id": oauth_client[0],
            "client_secret": oauth_client[1],
            "scope": "api",
            "grant_type": "password",
        },
    )
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


@pytest.fixture
def send(http, rest_auth_headers):
    """Sends a request with the test credentials (and JSON content type for bodies)."""

    async def request(method, path, *, content=None, headers=None):
        merged = {**rest_auth_headers, **(JSON_HEADERS if content is not None else {})}
        merged.update(headers or {})
        return await http.request(method, path, content=content, headers=merged)

    return request


@pytest.fixture
def send_sample(send, sample_bearer):
    """`send`, with the credentials a Fluent Commerce client gets from POST /oauth/token."""

    async def request(method, path, *, content=None):
        return await send(method, path, content=content, headers=sample_bearer)

    return request


def _put_body(key, value, setting_type) -> str:
    return json.dumps({"setting": {"key": key, "value": value, "type": setting_type}})


async def test_account_put_sample_runs_verbatim(send_sample, settings_stub):
    response = await send_sample(
        "PUT", "/api/v4.1/settings/account/1111/PAYMENT.PROVIDER", content=SAMPLE_PUT_BODY
    )

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert list(body) == ["id"] and isinstance(body["id"], str) and body["id"].isdigit()
    stored = await settings_stub.GetSettings(
        settings_pb2.GetSettingsRequest(
            scope=settings_pb2.Scope(account_id=1111), keys=["PAYMENT.PROVIDER"]
        )
    )
    assert str(stored.settings[0].id) == body["id"]
    assert stored.settings[0].level == settings_pb2.SETTING_LEVEL_ACCOUNT
    assert json.loads(stored.settings[0].value.json_value) == json.loads(PROVIDERS)


async def test_account_get_sample_answers_as_documented(send_sample):
    await send_sample(
        "PUT", "/api/v4.1/settings/account/1111/PAYMENT.PROVIDER", content=SAMPLE_PUT_BODY
    )

    response = await send_sample(
        "GET", "/api/v4.1/settings/account/1111/PAYMENT.PROVIDER,PAYMENT.CURRENCY"
    )

    assert response.status_code == 200, response.text
    assert response.json() == {
        "settings": [
            {
                "key": "PAYMENT.PROVIDER",
                "value": json.loads(PROVIDERS),
                "type": "JSON",
                "level": "ACCOUNT",
            },
            {"key": "PAYMENT.CURRENCY", "value": CURRENCIES, "type": "JSON", "level": "GLOBAL"},
        ]
    }
    # Byte for byte as documented: the value comes back exactly as it was sent (compact JSON).
    assert (
        '{"key":"PAYMENT.PROVIDER","value":' + PROVIDERS + ',"type":"JSON","level":"ACCOUNT"}'
        in response.text
    )


async def test_retailer_put_and_get_samples_answer_as_documented(send_sample):
    put = await send_sample(
        "PUT",
        "/api/v4.1/settings/retailer/2222/PAYMENT.PROVIDER",
        content=SAMPLE_PUT_BODY,
    )
    assert put.status_code == 200, put.text
    assert put.json()["id"].isdigit()

    response = await send_sample(
        "GET", "/api/v4.1/settings/retailer/2222/PAYMENT.PROVIDER,PAYMENT.CURRENCY"
    )

    assert response.json() == {
        "settings": [
            {
                "key": "PAYMENT.PROVIDER",
                "value": json.loads(PROVIDERS),
                "type": "JSON",
                "level": "RETAILER",
            },
            {"key": "PAYMENT.CURRENCY", "value": CURRENCIES, "type": "JSON", "level": "GLOBAL"},
        ]
    }


async def test_account_without_override_reads_the_global_level(
    send, new_account, settings_stub, unique_key
):
    account = await new_account()
    key = unique_key("PAYMENT")
    await settings_stub.SetGlobal(
        settings_pb2.SetGlobalRequest(
            key=key, type=settings_pb2.SETTING_TYPE_JSON, value=json_value(CURRENCIES)
        )
    )

    response = await send("GET", f"/api/v4.1/settings/account/{account}/{key}")

    assert response.json() == {
        "settings": [{"key": key, "value": CURRENCIES, "type": "JSON", "level": "GLOBAL"}]
    }


@pytest.mark.parametrize(
    ("setting_type", "value"),
    [
        ("STRING", "hello, wörld"),
        ("STRING", ""),
        ("LOB", "lorem ipsum " * 1000),
        ("INTEGER", 42),
        ("INTEGER", 2**63 - 1),
        ("INTEGER", -(2**63)),
        ("BOOLEAN", True),
        ("BOOLEAN", False),
        ("JSON", {"nested": [1, 2.5, None, "x", {"deep": True}]}),
        ("JSON", 123456789012345678901234567890),
        ("JSON", "a JSON string"),
        ("JSON", []),
    ],
)
@pytest.mark.parametrize("level", ["account", "retailer"])
async def test_each_type_reads_back_in_its_natural_json_form(
    send, new_account, new_retailer, unique_key, setting_type, value, level
):
    account = await new_account()
    scope = account if level == "account" else await new_retailer(account)
    key = unique_key(setting_type)

    put = await send(
        "PUT",
        f"/api/v4.1/settings/{level}/{scope}/{key}",
        content=_put_body(key, value, setting_type),
    )
    assert put.status_code == 200, put.text
    response = await send("GET", f"/api/v4.1/settings/{level}/{scope}/{key}")

    assert response.status_code == 200, response.text
    (entry,) = response.json()["settings"]
    assert entry == {"key": key, "value": value, "type": setting_type, "level": level.upper()}
    # Not just equal after parsing: the same JSON type (1 is not true, "1" is not 1).
    assert type(entry["value"]) is type(value)


async def test_integer_limits_travel_as_exact_json_numbers(send, new_account, unique_key):
    account = await new_account()
    key = unique_key("INT")
    await send(
        "PUT",
        f"/api/v4.1/settings/account/{account}/{key}",
        content=_put_body(key, 2**63 - 1, "INTEGER"),
    )

    response = await send("GET", f"/api/v4.1/settings/account/{account}/{key}")

    assert '"value":9223372036854775807,' in response.text


async def test_json_numbers_keep_every_digit(send, new_account, unique_key):
    account = await new_account()
    key = unique_key("JSON")
    body = (
        '{"setting": {"value": {"big": 123456789012345678901234567890, '
        '"precise": 0.10000000000000000000001, "exp": 1.5e300}, "type": "JSON"}}'
    )
    await send("PUT", f"/api/v4.1/settings/account/{account}/{key}", content=body)

    response = await send("GET", f"/api/v4.1/settings/account/{account}/{key}")

    value = json.loads(response.text, parse_float=Decimal)["settings"][0]["value"]
    assert value == {
        "big": 123456789012345678901234567890,
        "precise": Decimal("0.10000000000000000000001"),
        "exp": Decimal("1.5e300"),
    }


async def test_put_again_updates_the_same_id(send, new_account, unique_key):
    account = await new_account()
    key = unique_key()
    path = f"/api/v4.1/settings/account/{account}/{key}"

    first = await send("PUT", path, content=_put_body(key, "one", "STRING"))
    second = await send("PUT", path, content=_put_body(key, "two", "STRING"))

    assert first.json() == second.json()
    read = await send("GET", path)
    assert read.json()["settings"][0]["value"] == "two"


async def test_a_body_without_a_key_takes_the_path_key(send, new_account, unique_key):
    account = await new_account()
    key = unique_key()

    put = await send(
        "PUT",
        f"/api/v4.1/settings/account/{account}/{key}",
        content=json.dumps({"setting": {"value": 7, "type": "INTEGER"}}),
    )

    assert put.status_code == 200, put.text
    read = await send("GET", f"/api/v4.1/settings/account/{account}/{key}")
    assert read.json()["settings"][0]["value"] == 7


async def test_get_keeps_the_order_asked_and_leaves_out_missing_keys(send, new_account, unique_key):
    account = await new_account()
    first, second, missing = unique_key("A"), unique_key("B"), unique_key("MISSING")
    for key in (first, second):
        await send(
            "PUT",
            f"/api/v4.1/settings/account/{account}/{key}",
            content=_put_body(key, key, "STRING"),
        )

    response = await send("GET", f"/api/v4.1/settings/account/{account}/{second},{missing},{first}")

    assert [s["key"] for s in response.json()["settings"]] == [second, first]


async def test_keys_that_exist_nowhere_give_an_empty_list(send, new_account, unique_key):
    account = await new_account()

    response = await send("GET", f"/api/v4.1/settings/account/{account}/{unique_key()}")

    assert response.status_code == 200
    assert response.json() == {"settings": []}


@pytest.mark.parametrize(
    ("method", "level", "reason"),
    [
        ("GET", "account", "ACCOUNT_NOT_FOUND"),
        ("GET", "retailer", "RETAILER_NOT_FOUND"),
        ("PUT", "account", "ACCOUNT_NOT_FOUND"),
        ("PUT", "retailer", "RETAILER_NOT_FOUND"),
    ],
)
async def test_unknown_account_or_retailer_is_404(send, next_id, method, level, reason):
    unknown = next_id()
    content = _put_body("K", 1, "INTEGER") if method == "PUT" else None

    response = await send(method, f"/api/v4.1/settings/{level}/{unknown}/K", content=content)

    assert response.status_code == 404
    body = response.json()
    assert _shape(body) == _error(reason, 404, "Not Found")
    assert str(unknown) in body["error"][0]["message"]


async def _nothing_stored(send, account, key) -> bool:
    read = await send("GET", f"/api/v4.1/settings/account/{account}/{key}")
    return read.json() == {"settings": []}


async def test_a_body_key_that_differs_from_the_path_is_400(send, new_account, unique_key):
    account = await new_account()
    key = unique_key()

    response = await send(
        "PUT",
        f"/api/v4.1/settings/account/{account}/{key}",
        content=_put_body("SOMETHING.ELSE", 1, "INTEGER"),
    )

    assert response.status_code == 400
    assert _shape(response.json()) == _error("setting.key", 400, "Bad Request")
    assert "path" in response.json()["error"][0]["message"]
    assert await _nothing_stored(send, account, key)


@pytest.mark.parametrize(
    ("value", "setting_type", "field", "words"),
    [
        ("forty-two", "INTEGER", "value", "INTEGER expects a whole number"),
        (2**63, "INTEGER", "value", "INTEGER expects a whole number"),
        (1.5, "INTEGER", "value", "INTEGER expects a whole number"),
        ("true", "BOOLEAN", "value", "BOOLEAN expects true or false"),
        (5, "STRING", "value", "STRING expects a string"),
        ("x" * 4097, "STRING", "value", "longer than 4096"),
        ("nul \u0000 inside", "STRING", "value", "NUL"),
        (1, "NUMBER", "type", "type must be one of"),
        (1, "integer", "type", "type must be one of"),
        (1, None, "type", "type must be one of"),
    ],
)
async def test_a_value_the_type_refuses_is_400_naming_it(
    send, new_account, unique_key, value, setting_type, field, words
):
    account = await new_account()
    key = unique_key()

    response = await send(
        "PUT",
        f"/api/v4.1/settings/account/{account}/{key}",
        content=_put_body(key, value, setting_type),
    )

    assert response.status_code == 400, response.text
    body = response.json()
    assert _shape(body) == _error(field, 400, "Bad Request")
    assert words in body["error"][0]["message"]
    assert await _nothing_stored(send, account, key)


async def test_a_missing_value_is_400(send, new_account, unique_key):
    account = await new_account()
    key = unique_key()

    response = await send(
        "PUT",
        f"/api/v4.1/settings/account/{account}/{key}",
        content=json.dumps({"setting": {"key": key, "type": "STRING"}}),
    )

    assert response.status_code == 400
    assert "value is required" in response.json()["error"][0]["message"]


@pytest.mark.parametrize(
    ("content", "headers", "field"),
    [
        ('{"setting":', {}, "body"),
        ("", {}, "body"),
        ('{"setting": {"value": NaN, "type": "JSON"}}', {}, "body"),
        ('{"setting": {"value": Infinity, "type": "JSON"}}', {}, "body"),
        (b'{"setting": {"value": "\xff", "type": "STRING"}}', {}, "body"),
        ("[" * 100_000, {}, "body"),
        ('{"setting": {"value": 1, "type": "INTEGER"}}', {"Content-Type": "text/plain"}, None),
        (
            '{"setting": {"value": 1, "type": "INTEGER"}}',
            {"Content-Type": "application/json; charset=latin-1"},
            None,
        ),
        (
            '{"setting": {"value": 1, "type": "INTEGER"}}',
            {"Content-Type": "application/x-www-form-urlencoded"},
            None,
        ),
        ("[]", {}, "setting"),
        ("{}", {}, "setting"),
        ('{"setting": 5}', {}, "setting"),
        ('{"setting": {"value": ' + "[" * 5000 + "]" * 5000 + ', "type": "JSON"}}', {}, None),
    ],
)
async def test_malformed_bodies_are_400_in_the_documented_shape(
    send, new_account, unique_key, content, headers, field
):
    account = await new_account()
    key = unique_key()

    response = await send(
        "PUT", f"/api/v4.1/settings/account/{account}/{key}", content=content, headers=headers
    )

    assert response.status_code == 400, response.text
    body = response.json()
    assert body["message"] == "Bad Request" and body["code"] == "400"
    if field is not None:
        assert [e["code"] for e in body["error"]] == [field]
    else:
        assert len(body["error"]) == 1 and body["error"][0]["message"]
    assert await _nothing_stored(send, account, key)


async def test_a_body_without_content_type_is_400(http, rest_auth_headers, new_account):
    account = await new_account()

    response = await http.put(
        f"/api/v4.1/settings/account/{account}/K",
        content=b'{"setting": {"value": 1, "type": "INTEGER"}}',
        headers=rest_auth_headers,
    )

    assert response.status_code == 400
    assert _shape(response.json()) == _error("Content-Type", 400, "Bad Request")


async def test_a_body_over_the_size_limit_is_413(send, new_account, gateway_config):
    account = await new_account()
    padding = "x" * gateway_config.http_max_body_bytes
    content = _put_body("K", padding, "LOB")

    response = await send("PUT", f"/api/v4.1/settings/account/{account}/K", content=content)

    assert response.status_code == 413
    assert _shape(response.json()) == _error("body", 413, "Content Too Large")
    assert str(gateway_config.http_max_body_bytes) in response.json()["error"][0]["message"]


@pytest.mark.parametrize(
    "scope_id", ["abc", "0", "-1", "1.5", "+7", "9223372036854775808", "\u0663", "1e3"]
)
@pytest.mark.parametrize(("level", "param"), [("account", "accountId"), ("retailer", "retailerId")])
async def test_ids_that_are_not_positive_whole_numbers_are_400(send, scope_id, level, param):
    response = await send("GET", f"/api/v4.1/settings/{level}/{scope_id}/K")

    assert response.status_code == 400
    assert _shape(response.json()) == _error(param, 400, "Bad Request")


@pytest.mark.parametrize(
    ("keys", "field"),
    [
        ("", "keys"),
        (",", "keys[0]"),
        ("A,,B", "keys[1]"),
        ("A,A", "keys[1]"),
        ("bad key!", "keys[0]"),
        (",".join(f"K{i}" for i in range(101)), "keys"),
    ],
)
async def test_bad_key_lists_are_400_naming_the_key(send, new_account, keys, field):
    account = await new_account()

    response = await send("GET", f"/api/v4.1/settings/account/{account}/{keys}")

    assert response.status_code == 400, response.text
    assert field in [e["code"] for e in response.json()["error"]]


@pytest.mark.parametrize("raw", ["%FF", "%C3%28", "K%ED%A0%80", "%80abc"])
async def test_a_path_that_is_not_utf8_is_400(send, new_account, raw):
    account = await new_account()

    for method, content in (("GET", None), ("PUT", _put_body("K", 1, "INTEGER"))):
        response = await send(
            method, f"/api/v4.1/settings/account/{account}/{raw}", content=content
        )
        assert response.status_code == 400, response.text
        assert _shape(response.json()) == _error("path", 400, "Bad Request")


async def test_an_authorization_header_grpc_cannot_carry_is_400(send, new_account):
    account = await new_account()

    response = await send(
        "GET",
        f"/api/v4.1/settings/account/{account}/K",
        headers={"Authorization": "Basic caf\xe9".encode("latin-1")},
    )

    assert response.status_code == 400
    assert _shape(response.json()) == _error("Authorization", 400, "Bad Request")


async def test_a_read_of_several_large_values_is_200(send, new_account, unique_key):
    # 5 MiB in one answer: past gRPC's default receive limit, within tierset's read limit.
    account = await new_account()
    keys = [unique_key("BIG") for _ in range(5)]
    for key in keys:
        response = await send(
            "PUT",
            f"/api/v4.1/settings/account/{account}/{key}",
            content=_put_body(key, "x" * MAX_LOB_BYTES, "LOB"),
        )
        assert response.status_code == 200, response.text

    response = await send("GET", f"/api/v4.1/settings/account/{account}/{','.join(keys)}")

    assert response.status_code == 200, response.text[:300]
    assert [len(s["value"]) for s in response.json()["settings"]] == [MAX_LOB_BYTES] * 5
