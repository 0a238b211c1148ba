"""``tierset export`` and ``tierset diff`` against the real session server."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.helpers import define_key
from tierset.core.authz import Role
from tierset.v1 import settings_pb2


@pytest.fixture
async def two_shops(shop, new_retailer):
    """An ADMIN of a fresh account with two retailers: (admin, account, retailer, retailer)."""
    admin, account, retailer = await shop()
    return admin, account, retailer, await new_retailer(account)


async def test_export_writes_types_levels_and_values_as_yaml_or_json(cli, two_shops, unique_key):
    admin, account, retailer, _ = two_shops
    as_admin = cli.as_caller(admin)
    prefix = unique_key("EXPORT") + "."
    await as_admin("put", "--account", str(account), prefix + "LIMIT", "--type", "INTEGER", "5")
    await as_admin(
        "put", "--retailer", str(retailer), prefix + "NAME", "--type", "STRING", "2026-01-01"
    )
    await as_admin(
        "put",
        "--retailer",
        str(retailer),
        prefix + "PAY",
        "--type",
        "JSON",
        '[{"name": "AFTERPAY"}]',
    )
    exported = await as_admin("export", "--retailer", str(retailer), "--prefix", prefix)
    assert exported.code == 0, exported.err
    document = yaml.safe_load(exported.out)
    assert document["format"] == "tierset/v1"
    assert document["scope"] == {"retailer": retailer}
    assert document["settings"] == [
        {"key": prefix + "LIMIT", "type": "INTEGER", "level": "ACCOUNT", "value": 5},
        # A string that looks like a date stays a string through YAML.
        {"key": prefix + "NAME", "type": "STRING", "level": "RETAILER", "value": "2026-01-01"},
        {
            "key": prefix + "PAY",
            "type": "JSON",
            "level": "RETAILER",
            "value": [{"name": "AFTERPAY"}],
        },
    ]
    as_json = await as_admin(
        "export", "--retailer", str(retailer), "--prefix", prefix, "-o", "json"
    )
    assert json.loads(as_json.out) == {**document, "revision": json.loads(as_json.out)["revision"]}
    own = await as_admin(
        "export", "--retailer", str(retailer), "--prefix", prefix, "--level-only", "-o", "json"
    )
    assert [s["key"] for s in json.loads(own.out)["settings"]] == [prefix + "NAME", prefix + "PAY"]


async def test_export_at_a_revision(cli, two_shops, unique_key):
    admin, account, _, _ = two_shops
    as_admin = cli.as_caller(admin)
    key = unique_key("EXPORT")
    first = await as_admin(
        "put", "--account", str(account), key, "--type", "INTEGER", "1", "-o", "json"
    )
    await as_admin("put", "--account", str(account), key, "2")
    then = await as_admin(
        "export",
        "--account",
        str(account),
        "--prefix",
        key,
        "--revision",
        str(first.json()["revision"]),
    )
    assert [s["value"] for s in yaml.safe_load(then.out)["settings"]] == [1]


async def test_diff_of_two_retailers_shows_what_differs_and_only_that(cli, two_shops, unique_key):
    admin, account, left, right = two_shops
    as_admin = cli.as_caller(admin)
    prefix = unique_key("DIFF") + "."
    await as_admin("put", "--account", str(account), prefix + "SAME", "--type", "INTEGER", "5")
    # Equal values from different levels are no difference; 1.5 equals 1.50.
    await as_admin("put", "--account", str(account), prefix + "NUM", "--type", "JSON", "1.5")
    await as_admin("put", "--retailer", str(left), prefix + "NUM", "1.50")
    await as_admin("put", "--retailer", str(left), prefix + "PAY", "--type", "STRING", "AFTERPAY")
    await as_admin("put", "--retailer", str(right), prefix + "PAY", "--type", "STRING", "STRIPE")
    await as_admin("put", "--retailer", str(right), prefix + "ONLY", "--type", "BOOLEAN", "true")
    args = ("diff", "--retailer", str(left), "--retailer", str(right), "--prefix", prefix)
    result = await as_admin(*args, "-o", "json")
    assert result.code == 0, result.err
    differences = result.json()["differences"]
    assert [
        (d["key"], d["left"] and d["left"]["value"], d["right"]["value"]) for d in differences
    ] == [
        (prefix + "ONLY", None, True),
        (prefix + "PAY", "AFTERPAY", "STRIPE"),
    ]
    assert result.json()["left"]["scope"] == {"retailer": left}
    table = (await as_admin(*args)).out.splitlines()
    assert table[0].split() == [
        "KEY",
        "retailer",
        str(left),
        "@",
        "now",
        "retailer",
        str(right),
        "@",
        "now",
    ]
    assert table[2].split() == [
        prefix + "PAY",
        '"AFTERPAY"',
        "(RETAILER)",
        '"STRIPE"',
        "(RETAILER)",
    ]
    same = await as_admin(
        "diff", "--retailer", str(left), "--retailer", str(right), "--prefix", prefix + "SAME"
    )
    assert same.out.startswith("no differences between")


async def test_diff_of_a_scope_at_two_revisions_and_against_now(cli, two_shops, unique_key):
    admin, account, _, _ = two_shops
    as_admin = cli.as_caller(admin)
    key = unique_key("DIFF")
    one = await as_admin(
        "put", "--account", str(account), key, "--type", "INTEGER", "1", "-o", "json"
    )
    two = await as_admin("put", "--account", str(account), key, "2", "-o", "json")
    r1, r2 = str(one.json()["revision"]), str(two.json()["revision"])
    between = await as_admin(
        "diff",
        "--account",
        str(account),
        "--revision",
        r1,
        "--revision",
        r2,
        "--prefix",
        key,
        "-o",
        "json",
    )
    assert [(d["left"]["value"], d["right"]["value"]) for d in between.json()["differences"]] == [
        (1, 2)
    ]
    assert (between.json()["left"]["revision"], between.json()["right"]["revision"]) == (
        int(r1),
        int(r2),
    )
    now = await as_admin("diff", "--account", str(account), "--revision", r2, "--prefix", key)
    assert now.out.startswith("no differences")


@pytest.mark.parametrize(
    "args",
    [
        ("diff", "--account", "1"),
        ("diff", "--account", "1", "--account", "2", "--account", "3"),
        ("diff", "--account", "1", "--account", "2", "--revision", "4"),
        ("diff", "--account", "1", "--revision", "1", "--revision", "2", "--revision", "3"),
        ("export",),
        ("export", "--account", "1", "-o", "table"),
    ],
)
async def test_bad_transfer_usage_exits_2(cli, args):
    result = await cli.process(*args)
    assert result.code == 2, result
    assert "Traceback" not in result.err


async def test_another_accounts_scope_is_refused_in_one_line(cli, two_shops, make_caller):
    _, _, retailer, _ = two_shops
    stranger = await make_caller(Role.ADMIN)
    for args in (
        ("export", "--retailer", str(retailer)),
        ("diff", "--retailer", str(retailer), "--account", str(stranger.account_id)),
    ):
        result = await cli.as_caller(stranger).process(*args)
        assert result.code == 1
        (line,) = result.err.splitlines()
        assert line.startswith("error: PERMISSION_DENIED (PERMISSION_DENIED): ")


@pytest.mark.parametrize("role", [Role.VIEWER, Role.ADMIN])
async def test_export_masks_secrets_unless_asked_and_import_refuses_a_masked_entry(
    cli, settings_stub, shop, make_caller, unique_key, tmp_path, role
):
    admin, account, retailer = await shop()
    prefix = unique_key("CLI.SECRET") + "."
    await define_key(
        settings_stub, prefix + "API_KEY", settings_pb2.SETTING_TYPE_STRING, secret=True
    )
    as_admin = cli.as_caller(admin)
    await as_admin("put", "--account", str(account), prefix + "API_KEY", "--type", "STRING", "sk_9")
    await as_admin("put", "--account", str(account), prefix + "NAME", "--type", "STRING", "Acme")
    reader = cli.as_caller(
        admin if role is Role.ADMIN else await make_caller(Role.VIEWER, account_id=account)
    )

    masked = await reader("export", "--retailer", str(retailer), "--prefix", prefix, "-o", "json")
    shown = await reader(
        "export", "--retailer", str(retailer), "--prefix", prefix, "--secrets", "-o", "json"
    )

    assert "sk_9" not in masked.out
    assert masked.json()["settings"] == [
        {"key": prefix + "API_KEY", "type": "STRING", "level": "ACCOUNT", "masked": True},
        {"key": prefix + "NAME", "type": "STRING", "level": "ACCOUNT", "value": "Acme"},
    ]
    # --secrets writes what the server sends: the value for an ADMIN, still masked for a VIEWER.
    assert ("sk_9" in shown.out) is (role is Role.ADMIN)
    path = tmp_path / "export.json"
    path.write_text(masked.out)
    imported = await as_admin("import", str(path), "--account", str(account), "--yes")
    assert imported.code == 2
    assert "masked" in imported.err and prefix + "API_KEY" in imported.err
    still = await as_admin("get", "--account", str(account), prefix + "API_KEY", "-o", "json")
    assert "sk_9" in still.out
