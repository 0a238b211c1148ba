"""Who may do what over REST: identity x operation x own/other account, over real HTTP
through the real gateway to the real server, every cell asserted.

The expectations are the gRPC matrix's (tests/test_authorization.py): the gateway
decides nothing, so each gRPC cell must come out as its HTTP status in the path
family's documented body. Fluent Commerce paths are called with a Bearer token,
FluentCart paths with HTTP Basic and a WordPress-style application password, as
their clients do.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

import grpc
import pytest

from tests.helpers import basic_authorization
from tests.test_authorization import INTEGRATION_SETTINGS, SCOPED, World, expected_code
from tierset.auth.credentials import CredentialStore, Kind
from tierset.core.authz import Role
from tierset.core.integrations import mask
from tierset.v1 import settings_pb2

HTTP_STATUS = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.UNAUTHENTICATED: 401,
}
INTEGRATIONS = "/wp-json/fluent-cart/v2/integration/global-settings"
FORBIDDEN_FLUENTCART = {
    "code": "rest_forbidden",
    "message": "Sorry, you are not allowed to do that.",
}
CHALLENGES = ['Bearer realm="tierset"', 'Basic realm="tierset", charset="UTF-8"']


@pytest.fixture
async def world(new_account, new_retailer) -> World:
    own, other = await new_account(), await new_account()
    return World(own, await new_retailer(own), other, await new_retailer(other))


@dataclass(frozen=True)
class Identity:
    """Who calls: a role, or nobody, or a credential the server does not know."""

    name: str
    role: Role | None = None

    @property
    def authenticated(self) -> bool:
        return self.role is not None


IDENTITIES = [
    Identity("ADMIN", Role.ADMIN),
    Identity("VIEWER", Role.VIEWER),
    Identity("PLATFORM", Role.PLATFORM),
    Identity("anonymous"),
    Identity("bad-credential"),
]


async def _headers(identity, make_caller, db, account_id) -> dict[str, dict[str, str]]:
    """The Authorization header per family: Bearer for Fluent Commerce, Basic for FluentCart."""
    if identity.name == "anonymous":
        return {"bearer": {}, "basic": {}}
    caller = await make_caller(identity.role or Role.ADMIN, account_id=account_id)
    app_password = await CredentialStore(db).issue(caller.user_id, Kind.APP_PASSWORD, name="t")
    if not identity.authenticated:  # real username, secrets nobody was given
        return {
            "bearer": {"Authorization": "Bearer tsk_no-such-token-was-ever-issued"},
            "basic": {"Authorization": basic_authorization(caller.username, "tsap_wrong")},
        }
    return {
        "bearer": {"Authorization": f"Bearer {caller.token}"},
        "basic": {"Authorization": basic_authorization(caller.username, app_password.secret)},
    }


def _setting_path(kind: str, world: World, whose: str, key: str) -> str:
    scope_id = world.account(whose) if kind == "account" else world.retailer(whose)
    return f"/api/v4.1/settings/{kind}/{scope_id}/{key}"


# REST operation → (the gRPC matrix's operation, method, level)
FLUENT_COMMERCE_OPERATIONS = {
    "PUT account setting": ("PutSetting(account)", "PUT", "account"),
    "GET account settings": ("GetSettings(account)", "GET", "account"),
    "PUT retailer setting": ("PutSetting(retailer)", "PUT", "retailer"),
    "GET retailer settings": ("GetSettings(retailer)", "GET", "retailer"),
    "DELETE account setting": ("DeleteSetting(account)", "DELETE", "account"),
    "DELETE retailer setting": ("DeleteSetting(retailer)", "DELETE", "retailer"),
}

FLUENT_COMMERCE_CELLS = [
    pytest.param(
        operation,
        identity,
        whose,
        HTTP_STATUS[expected_code(SCOPED[grpc_operation][1], identity.role, whose)]
        if identity.role
        else 401,
        id=f"{operation}-{identity.name}-{whose}",
    )
    for operation, (grpc_operation, _, _) in FLUENT_COMMERCE_OPERATIONS.items()
    for identity in IDENTITIES
    for whose in ("own", "other")
]


def _assert_refusal_body(response, status: int, fluentcart: bool) -> None:
    body = response.json()
    if fluentcart:
        assert body == {**FORBIDDEN_FLUENTCART, "data": {"status": status}}
    else:
        title = {401: "Unauthorized", 403: "Forbidden"}[status]
        assert body["message"] == title and body["code"] == str(status)
        assert len(body["error"]) == 1
        reasons = {401: {"CREDENTIALS_MISSING", "CREDENTIALS_INVALID"}, 403: {"PERMISSION_DENIED"}}
        assert body["error"][0]["code"] in reasons[status]
    if status == 401:
        challenges = response.headers.get_list("www-authenticate")
        assert [c.split(",")[0] for c in challenges] == [c.split(",")[0] for c in CHALLENGES]
    else:
        assert "www-authenticate" not in response.headers


@pytest.mark.parametrize(("operation", "identity", "whose", "status"), FLUENT_COMMERCE_CELLS)
async def test_fluent_commerce_cell(
    http, db, settings_stub, world, make_caller, unique_key, operation, identity, whose, status
):
    _, method, level = FLUENT_COMMERCE_OPERATIONS[operation]
    headers = (await _headers(identity, make_caller, db, world.own_account))["bearer"]
    key = unique_key()
    path = _setting_path(level, world, whose, key)
    body = {"setting": {"key": key, "value": 7, "type": "INTEGER"}}
    existing = 0
    if method == "DELETE":  # something to delete, written by PLATFORM
        scope_id = world.account(whose) if level == "account" else world.retailer(whose)
        await settings_stub.PutSetting(
            settings_pb2.PutSettingRequest(
                scope=settings_pb2.Scope(**{f"{level}_id": scope_id}),
                key=key,
                type=settings_pb2.SETTING_TYPE_INTEGER,
                value=settings_pb2.SettingValue(integer_value=7),
            )
        )
        existing = 1

    if method == "PUT":
        response = await http.put(path, json=body, headers=headers)
    elif method == "DELETE":
        response = await http.delete(path, headers=headers)
    else:
        response = await http.get(path, headers=headers)

    assert response.status_code == status, response.text
    if status == 200:
        expected = {"id"} if method == "PUT" else {"settings"}
        assert set(response.json()) == expected
    else:
        _assert_refusal_body(response, status, fluentcart=False)
        written = await db.fetchval("SELECT count(*) FROM settings WHERE key = $1", key)
        assert written == existing


FLUENTCART_CELLS = [
    pytest.param(
        method,
        identity,
        HTTP_STATUS[INTEGRATION_SETTINGS[identity.role]] if identity.role else 401,
        id=f"{method}-{identity.name}",
    )
    for method in ("POST", "GET")
    for identity in IDENTITIES
]


@pytest.mark.parametrize(("method", "identity", "status"), FLUENTCART_CELLS)
async def test_fluentcart_cell(http, db, make_caller, method, identity, status):
    account = None if identity.role is Role.PLATFORM else (await make_caller(Role.ADMIN)).account_id
    headers = (await _headers(identity, make_caller, db, account))["basic"]

    if method == "POST":
        response = await http.post(
            INTEGRATIONS,
            json={"integration_name": "slack", "integration": '{"enabled": false}'},
            headers=headers,
        )
    else:
        response = await http.get(INTEGRATIONS, params={"settings_key": "slack"}, headers=headers)

    assert response.status_code == status, response.text
    if status == 200:
        assert response.json()["integration_name"] == "slack"
    else:
        _assert_refusal_body(response, status, fluentcart=True)


# --- credentials that do not (or no longer) work --------------------------------------

MALFORMED = {
    "bad-base64": "Basic !!not base64!!",
    "basic-without-colon": "Basic dXNlcm5hbWVvbmx5",
    "unknown-scheme": "Digest username=admin",
    "empty-bearer": "Bearer",
    "bearer-with-spaces": "Bearer two words",
}


@pytest.mark.parametrize("header", MALFORMED.values(), ids=MALFORMED.keys())
@pytest.mark.parametrize("family", ["fluentcommerce", "fluentcart"])
async def test_malformed_authorization_is_401_in_each_shape(http, new_account, header, family):
    account = await new_account()
    path = (
        f"/api/v4.1/settings/account/{account}/ANY.KEY"
        if family == "fluentcommerce"
        else f"{INTEGRATIONS}?settings_key=slack"
    )

    response = await http.get(path, headers={"Authorization": header})

    assert response.status_code == 401, response.text
    if family == "fluentcommerce":
        assert response.json() == {
            "error": [
                {"code": "CREDENTIALS_MALFORMED", "message": response.json()["error"][0]["message"]}
            ],
            "message": "Unauthorized",
            "code": "401",
        }
        assert response.json()["error"][0]["message"].startswith("malformed authorization")
    else:
        assert response.json() == {**FORBIDDEN_FLUENTCART, "data": {"status": 401}}
    assert response.headers.get_list("www-authenticate") == [
        'Bearer realm="tierset", error="invalid_request"',
        CHALLENGES[1],
    ]


async def test_an_expired_token_is_401_invalid_token(http, db, make_caller):
    caller = await make_caller(Role.ADMIN)
    token = await CredentialStore(db).issue(caller.user_id, Kind.ACCESS_TOKEN, ttl_seconds=1)
    headers = {"Authorization": f"Bearer {token.secret}"}
    path = f"/api/v4.1/settings/account/{caller.account_id}/ANY.KEY"
    # Used while valid (so the server also caches it), then past its expiry.
    assert (await http.get(path, headers=headers)).status_code == 200
    await asyncio.sleep(1.2)

    response = await http.get(path, headers=headers)

    assert response.status_code == 401
    assert response.json()["error"][0]["code"] == "CREDENTIALS_EXPIRED"
    assert response.headers.get_list("www-authenticate")[0] == (
        'Bearer realm="tierset", error="invalid_token"'
    )


async def test_a_revoked_application_password_stops_working(http, db, make_caller):
    caller = await make_caller(Role.ADMIN)
    store = CredentialStore(db)
    laptop = await store.issue(caller.user_id, Kind.APP_PASSWORD, name="laptop")
    phone = await store.issue(caller.user_id, Kind.APP_PASSWORD, name="phone")

    def get(secret):
        return http.get(
            INTEGRATIONS,
            params={"settings_key": "webhook"},
            headers={"Authorization": basic_authorization(caller.username, secret)},
        )

    assert (await get(laptop.secret)).status_code == 200
    await store.revoke(laptop.id, Kind.APP_PASSWORD)

    # The server caches verified credentials; the revocation reaches it by NOTIFY.
    for _ in range(50):
        response = await get(laptop.secret)
        if response.status_code == 401:
            break
        await asyncio.sleep(0.05)
    assert response.status_code == 401
    assert response.json() == {**FORBIDDEN_FLUENTCART, "data": {"status": 401}}
    assert (await get(phone.secret)).status_code == 200  # each is revocable on its own


# --- account isolation ----------------------------------------------------------------


async def test_an_admin_reads_its_own_retailer_but_not_another_accounts(
    http, world, make_caller, unique_key
):
    key = unique_key()
    platform = await make_caller(Role.PLATFORM)
    for retailer in (world.own_retailer, world.other_retailer):
        response = await http.put(
            f"/api/v4.1/settings/retailer/{retailer}/{key}",
            json={"setting": {"value": f"value of {retailer}", "type": "STRING"}},
            headers={"Authorization": f"Bearer {platform.token}"},
        )
        assert response.status_code == 200, response.text
    caller = await make_caller(Role.ADMIN, account_id=world.own_account)
    admin = {"Authorization": f"Bearer {caller.token}"}

    own = await http.get(f"/api/v4.1/settings/retailer/{world.own_retailer}/{key}", headers=admin)
    other = await http.get(
        f"/api/v4.1/settings/retailer/{world.other_retailer}/{key}", headers=admin
    )

    assert own.status_code == 200
    assert own.json() == {
        "settings": [
            {
                "key": key,
                "value": f"value of {world.own_retailer}",
                "type": "STRING",
                "level": "RETAILER",
            }
        ]
    }
    assert other.status_code == 403
    assert other.json()["message"] == "Forbidden"
    assert f"value of {world.other_retailer}" not in other.text
    assert str(world.other_retailer) not in other.text


@pytest.mark.parametrize("role", [Role.ADMIN, Role.VIEWER])
@pytest.mark.parametrize("level", ["account", "retailer"])
async def test_another_accounts_scope_is_403_whether_or_not_it_exists(
    http, world, make_caller, next_id, role, level
):
    caller = await make_caller(role, account_id=world.own_account)
    headers = {"Authorization": f"Bearer {caller.token}"}
    existing = world.other_account if level == "account" else world.other_retailer

    answers = []
    for scope_id in (existing, next_id()):
        response = await http.get(f"/api/v4.1/settings/{level}/{scope_id}/ANY.KEY", headers=headers)
        answers.append((response.status_code, response.json()))

    assert answers[0] == answers[1]
    assert answers[0][0] == 403


@pytest.mark.parametrize("level", ["account", "retailer"])
async def test_only_platform_learns_a_scope_does_not_exist(http, make_caller, next_id, level):
    caller = await make_caller(Role.PLATFORM)

    response = await http.get(
        f"/api/v4.1/settings/{level}/{next_id()}/ANY.KEY",
        headers={"Authorization": f"Bearer {caller.token}"},
    )

    assert response.status_code == 404
    assert response.json()["message"] == "Not Found"


async def test_integration_settings_are_isolated_per_account(http, db, make_caller):
    """Two accounts save the same integration: each sees only its own, and cannot touch the
    other's by its id."""
    headers = {}
    for name in ("a", "b"):
        caller = await make_caller(Role.ADMIN)
        secret = (await CredentialStore(db).issue(caller.user_id, Kind.APP_PASSWORD)).secret
        headers[name] = {"Authorization": basic_authorization(caller.username, secret)}
    saved = {}
    for name in ("a", "b"):
        response = await http.post(
            INTEGRATIONS,
            json={
                "integration_name": "webhook",
                "integration": json.dumps(
                    {"api_key": f"integration-key-of-{name * 4}", "enabled": True}
                ),
                "integration_id": 0,
                "data_type": "stringify",
            },
            headers=headers[name],
        )
        assert response.status_code == 200, response.text
        assert response.json()["created"] is True  # a separate configuration per account
        saved[name] = response.json()["integration_id"]

    # b writing to a's integration id: not found, exactly like an id never saved.
    hijack = await http.post(
        INTEGRATIONS,
        json={
            "integration_name": "webhook",
            "integration": json.dumps({"api_key": "stolen", "enabled": True}),
            "integration_id": saved["a"],
        },
        headers=headers["b"],
    )
    reads = {
        name: await http.get(
            INTEGRATIONS, params={"settings_key": "webhook"}, headers=headers[name]
        )
        for name in ("a", "b")
    }

    assert saved["a"] != saved["b"]
    assert hijack.status_code == 404
    assert hijack.json() == {"message": "Integration not found"}
    for name in ("a", "b"):
        assert reads[name].status_code == 200
        assert reads[name].json()["integration_id"] == saved[name]
        # Masked on read; the last four characters tell whose key it is.
        assert reads[name].json()["settings"]["api_key"] == mask(f"integration-key-of-{name * 4}")
