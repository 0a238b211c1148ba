"""The settings commands of ``tierset`` (get, put, delete, list, explain, history, restore,
watch) against the real session server, in process and as real subprocesses."""

from __future__ import annotations

import asyncio
import json
import signal

import pytest

from tests.conftest import Cli, free_port
from tierset.auth.credentials import CredentialStore, Kind
from tierset.core.authz import Role
from tierset.v1 import settings_pb2

# -- put and get, values by type ----------------------------------------------------------


@pytest.mark.parametrize(
    ("setting_type", "typed", "value"),
    [
        ("STRING", "hello world", "hello world"),
        ("LOB", "a\nlong text", "a\nlong text"),
        ("INTEGER", "-50", -50),
        ("BOOLEAN", "true", True),
        ("JSON", '{"providers": ["AFTERPAY"], "max": 3}', {"providers": ["AFTERPAY"], "max": 3}),
    ],
)
async def test_put_parses_the_value_by_its_type_and_get_reads_it_back(
    cli, shop, unique_key, setting_type, typed, value
):
    admin, account, _ = await shop()
    as_admin = cli.as_caller(admin)
    key = unique_key("CLI")
    put = await as_admin("put", "--account", str(account), key, "--type", setting_type, typed)
    assert put.code == 0, put.err
    got = await as_admin("get", "--account", str(account), key, "-o", "json")
    assert got.code == 0, got.err
    (setting,) = got.json()["settings"]
    assert (setting["type"], setting["value"], setting["level"]) == (setting_type, value, "ACCOUNT")
    assert got.json()["missing"] == []


async def test_json_is_sent_as_typed_so_no_digit_is_lost(cli, settings_stub, shop, unique_key):
    admin, account, _ = await shop()
    key = unique_key("CLI")
    put = await cli.as_caller(admin)(
        "put", "--account", str(account), key, "--type", "JSON", "[1.50, 1e2]"
    )
    assert put.code == 0, put.err
    reply = await settings_stub.GetSettings(
        settings_pb2.GetSettingsRequest(scope=settings_pb2.Scope(account_id=account), keys=[key])
    )
    assert json.loads(reply.settings[0].value.json_value, parse_float=str) == ["1.50", 100]
    table = await cli.as_caller(admin)("get", "--account", str(account), key)
    assert table.out.splitlines()[1].endswith("[1.50,100]")  # as stored, digit for digit


async def test_put_without_type_keeps_the_keys_type_and_needs_one_for_a_new_key(
    cli, shop, unique_key
):
    admin, account, retailer = await shop()
    as_admin = cli.as_caller(admin)
    key = unique_key("CLI")
    first = await as_admin("put", "--retailer", str(retailer), key, "7")
    assert first.code == 2
    assert "--type is needed" in first.err
    assert (await as_admin("get", "--retailer", str(retailer), key)).code == 1  # not written
    assert (
        await as_admin("put", "--account", str(account), key, "--type", "integer", "5")
    ).code == 0
    # The retailer inherits an INTEGER: a put without --type is an INTEGER too.
    second = await as_admin("put", "--retailer", str(retailer), key, "7", "-o", "json")
    assert second.code == 0, second.err
    assert second.json()["type"] == "INTEGER"
    assert second.json()["created"] is True


async def test_a_value_from_stdin(cli, shop, unique_key):
    admin, account, _ = await shop()
    as_admin = cli.as_caller(admin)
    key = unique_key("CLI")
    document = '{"a": [1, 2, {"b": null}]}\n'
    put = await as_admin(
        "put", "--account", str(account), key, "--type", "JSON", "-", stdin=document
    )
    assert put.code == 0, put.err
    got = await as_admin("get", "--account", str(account), key, "-o", "json")
    assert got.json()["settings"][0]["value"] == {"a": [1, 2, {"b": None}]}


@pytest.mark.parametrize(
    ("setting_type", "typed", "complaint"),
    [
        ("INTEGER", "fifty", "is not an INTEGER"),
        ("INTEGER", "9223372036854775808", "outside INTEGER's range"),
        ("BOOLEAN", "yes", "is not a BOOLEAN"),
        ("JSON", "{not json", "is not JSON"),
        ("JSON", "NaN", "is not JSON"),
    ],
)
async def test_a_value_that_is_not_of_its_type_is_a_usage_error_and_writes_nothing(
    cli, shop, unique_key, setting_type, typed, complaint
):
    admin, account, _ = await shop()
    as_admin = cli.as_caller(admin)
    key = unique_key("CLI")
    put = await as_admin("put", "--account", str(account), key, "--type", setting_type, typed)
    assert put.code == 2
    assert complaint in put.err
    assert (await as_admin("get", "--account", str(account), key)).code == 1


async def test_get_prints_an_aligned_table_and_names_keys_set_nowhere(cli, shop, unique_key):
    admin, account, _ = await shop()
    as_admin = cli.as_caller(admin)
    short, long_ = unique_key("A"), unique_key("A.MUCH.LONGER.KEY")
    await as_admin("put", "--account", str(account), short, "--type", "STRING", "x")
    await as_admin("put", "--account", str(account), long_, "--type", "INTEGER", "12345")
    missing = unique_key("NOWHERE")
    got = await as_admin("get", "--account", str(account), short, long_, missing)
    assert got.code == 1
    header, *rows = got.out.splitlines()
    assert header.split() == ["KEY", "TYPE", "LEVEL", "VERSION", "VALUE"]
    assert [row.split()[0] for row in rows] == [short, long_]
    # Every column starts where its header does.
    for column in ("TYPE", "LEVEL", "VALUE"):
        at = header.index(column)
        assert all(row[at - 2 : at] == "  " and row[at] != " " for row in rows), got.out
    assert rows[0].endswith('"x"') and rows[1].endswith("12345")
    assert got.err.strip() == f"error: set at no level for account {account}: {missing}"


async def test_get_global_reads_the_default(cli, unique_key):
    key = unique_key("CLI.DEFAULT")
    assert (await cli("put", "--global", key, "--type", "BOOLEAN", "false")).code == 0
    # Another key sharing the prefix is not the one asked for.
    assert (await cli("put", "--global", key + ".MORE", "--type", "BOOLEAN", "true")).code == 0
    got = await cli("get", "--global", key, "-o", "json")
    assert got.code == 0, got.err
    assert [(s["key"], s["value"], s["level"]) for s in got.json()["settings"]] == [
        (key, False, "GLOBAL")
    ]


# -- explain, delete, list ----------------------------------------------------------------


async def test_explain_shows_the_levels_side_by_side_with_the_winner_starred(cli, shop, unique_key):
    admin, account, retailer = await shop()
    as_admin = cli.as_caller(admin)
    key, unset = unique_key("CLI.PAY"), unique_key("CLI.NONE")
    await cli("put", "--global", key, "--type", "JSON", '["STRIPE"]')
    await as_admin("put", "--account", str(account), key, '["BRAINTREE"]')
    await as_admin("put", "--retailer", str(retailer), key, '["AFTERPAY"]', "--reason", "local")
    shown = await as_admin("explain", "--retailer", str(retailer), key, unset)
    assert shown.code == 0, shown.err
    header, row, empty = shown.out.splitlines()
    assert header.split() == ["KEY", "GLOBAL", "ACCOUNT", "RETAILER", "EFFECTIVE"]
    assert row.split() == [key, '["STRIPE"]', '["BRAINTREE"]', "*", '["AFTERPAY"]', "RETAILER"]
    assert row.index('["BRAINTREE"]') == header.index("ACCOUNT")
    assert empty.split() == [unset, "-", "-", "-", "(unset)"]

    explained = (await as_admin("explain", "--retailer", str(retailer), key, "-o", "json")).json()
    (levels,) = [k["levels"] for k in explained["keys"]]
    assert [(lv["level"], lv["value"], lv["shadowed"]) for lv in levels] == [
        ("RETAILER", ["AFTERPAY"], False),
        ("ACCOUNT", ["BRAINTREE"], True),
        ("GLOBAL", ["STRIPE"], True),
    ]
    assert (levels[0]["changed_by"], levels[0]["reason"]) == (admin.username, "local")
    assert explained["keys"][0]["winner"] == "RETAILER"

    detailed = await as_admin("explain", "--retailer", str(retailer), key, "--details")
    assert "ACCOUNT (shadowed)" in detailed.out and admin.username in detailed.out


async def test_delete_says_what_the_scope_inherits_now(cli, shop, unique_key):
    admin, account, retailer = await shop()
    as_admin = cli.as_caller(admin)
    key = unique_key("CLI")
    await as_admin("put", "--account", str(account), key, "--type", "INTEGER", "5")
    await as_admin("put", "--retailer", str(retailer), key, "2")
    deleted = await as_admin("delete", "--retailer", str(retailer), key, "-o", "json")
    assert deleted.code == 0, deleted.err
    assert (deleted.json()["effective"]["value"], deleted.json()["effective"]["level"]) == (
        5,
        "ACCOUNT",
    )
    again = await as_admin("delete", "--retailer", str(retailer), key)
    assert again.code == 1
    assert again.err.startswith("error: NOT_FOUND (SETTING_NOT_FOUND): ")
    human = await as_admin("delete", "--account", str(account), key)
    assert human.code == 0
    assert human.out.startswith(f"deleted {key} for account {account} at revision ")


async def test_list_by_prefix_and_level(cli, shop, unique_key):
    admin, account, retailer = await shop()
    as_admin = cli.as_caller(admin)
    prefix = unique_key("CLI") + "."
    await as_admin("put", "--account", str(account), prefix + "A", "--type", "STRING", "a")
    await as_admin("put", "--retailer", str(retailer), prefix + "B", "--type", "STRING", "b")
    await as_admin("put", "--account", str(account), "OTHER." + prefix, "--type", "STRING", "c")
    every = await as_admin("list", "--retailer", str(retailer), "--prefix", prefix, "-o", "json")
    assert [(s["key"], s["level"]) for s in every.json()["settings"]] == [
        (prefix + "A", "ACCOUNT"),
        (prefix + "B", "RETAILER"),
    ]
    own = await as_admin(
        "list", "--retailer", str(retailer), "--prefix", prefix, "--level-only", "-o", "json"
    )
    assert [s["key"] for s in own.json()["settings"]] == [prefix + "B"]
    table = await as_admin("list", "--retailer", str(retailer), "--prefix", prefix)
    assert [line.split()[0] for line in table.out.splitlines()] == [
        "KEY",
        prefix + "A",
        prefix + "B",
    ]


# -- history and restore -------------------------------------------------------------------


async def test_history_newest_first_with_who_and_why_and_restore_goes_back(cli, shop, unique_key):
    admin, account, _ = await shop()
    as_admin = cli.as_caller(admin)
    key = unique_key("CLI")
    first = await as_admin(
        "put",
        "--account",
        str(account),
        key,
        "--type",
        "STRING",
        "one",
        "--reason",
        "first",
        "-o",
        "json",
    )
    await as_admin("put", "--account", str(account), key, "two", "--reason", "second")
    changes = (await as_admin("history", "--account", str(account), key, "-o", "json")).json()[
        "changes"
    ]
    assert [(c["new"]["value"], c["by"], c["reason"], c["operation"]) for c in changes] == [
        ("two", admin.username, "second", "PUT"),
        ("one", admin.username, "first", "PUT"),
    ]
    assert changes[0]["old"]["value"] == "one" and changes[1]["old"] is None
    assert changes[0]["scope"] == {"account": account}

    revision = str(first.json()["revision"])
    restored = await as_admin(
        "restore", "--account", str(account), key, "--revision", revision, "-o", "json"
    )
    assert restored.code == 0, restored.err
    assert restored.json()["changed_keys"] == [key]
    got = await as_admin("get", "--account", str(account), key, "-o", "json")
    assert got.json()["settings"][0]["value"] == "one"
    again = await as_admin("restore", "--account", str(account), key, "--revision", revision)
    assert again.out.startswith("nothing to restore")
    table = await as_admin("history", "--account", str(account), key, "--limit", "1")
    header, row = table.out.splitlines()
    assert header.split()[:4] == ["REVISION", "TIME", "SCOPE", "KEY"]
    assert '"two" → "one"' in row and "restore to revision" in row


# -- watch ---------------------------------------------------------------------------------


async def _line(stream: asyncio.StreamReader) -> str:
    return (await asyncio.wait_for(stream.readline(), timeout=30)).decode()


@pytest.mark.parametrize("output", ["table", "json"])
async def test_watch_prints_a_line_per_change_and_ctrl_c_ends_it_quietly(
    cli, shop, unique_key, output
):
    admin, account, retailer = await shop()
    as_admin = cli.as_caller(admin)
    key = unique_key("CLI.WATCHED")
    process = await as_admin.spawn("watch", "--retailer", str(retailer), key, "-o", output)
    try:
        assert "watching" in await _line(process.stderr)  # the stream is open
        put = await as_admin(
            "put", "--account", str(account), key, "--type", "INTEGER", "42", "-o", "json"
        )
        line = await _line(process.stdout)
        if output == "json":
            event = json.loads(line)
            assert (event["revision"], event["key"]) == (put.json()["revision"], key)
            assert (event["setting"]["value"], event["setting"]["level"]) == (42, "ACCOUNT")
            assert event["previous"] is None
        else:
            assert line.split() == [str(put.json()["revision"]), key, "42", "(ACCOUNT)"]
        # A lock and an unlock change no value but what the retailer may do: a line each.
        for verb in ("lock", "unlock"):
            done = await as_admin(verb, "--account", str(account), key, "-o", "json")
            line = await _line(process.stdout)
            if output == "json":
                event = json.loads(line)
                assert event["revision"] == done.json()["revision"]
                locked = event["setting"]["locked"]
                assert (locked or {}).get("revision") == (
                    done.json()["revision"] if verb == "lock" else None
                )
            else:
                shown = ["(ACCOUNT", "(locked))"] if verb == "lock" else ["(ACCOUNT)"]
                assert line.split() == [str(done.json()["revision"]), key, "42", *shown]
        await as_admin("delete", "--account", str(account), key)
        gone = await _line(process.stdout)
        if output == "json":
            assert (json.loads(gone)["key"], json.loads(gone)["setting"]) == (key, None)
        else:
            assert gone.split()[1:] == [key, "unset"]
    finally:
        process.send_signal(signal.SIGINT)
        _, err = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode == 0
    assert err.decode() == ""


async def test_a_watch_cut_off_by_its_server_says_where_to_resume(
    cli, shop, unique_key, start_server
):
    admin, account, retailer = await shop()
    other = await start_server()
    as_admin = cli.as_caller(admin, TIERSET_ADDRESS=f"127.0.0.1:{other.app.port}")
    key = unique_key("CLI.WATCHED")
    process = await as_admin.spawn("watch", "--retailer", str(retailer), key)
    assert "watching" in await _line(process.stderr)
    put = await as_admin(
        "put", "--account", str(account), key, "--type", "INTEGER", "1", "-o", "json"
    )
    revision = put.json()["revision"]
    assert (await _line(process.stdout)).split()[0] == str(revision)
    await other.app.stop(0.5)
    _, err = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode == 1
    (line,) = err.decode().splitlines()
    assert line.startswith("error: UNAVAILABLE"), line
    assert line.endswith(f"resume with --start-revision {revision})"), line


# -- refusals, usage, connection: what a terminal sees -----------------------------------


async def test_a_refused_call_is_one_line_with_the_reason_and_exit_1(
    cli, make_caller, shop, unique_key
):
    admin, account, _ = await shop()
    _, _, other_retailer = await shop()
    viewer = await make_caller(Role.VIEWER, account_id=account)
    cases = [
        (
            cli.as_caller(admin),
            ("put", "--retailer", str(other_retailer), unique_key("X"), "--type", "STRING", "v"),
        ),
        (
            cli.as_caller(viewer),
            ("put", "--account", str(account), unique_key("X"), "--type", "STRING", "v"),
        ),
        (cli.as_caller(admin), ("put", "--global", unique_key("X"), "--type", "STRING", "v")),
        (cli.as_caller(admin), ("explain", "--retailer", str(other_retailer), "ANY.KEY")),
    ]
    for as_whom, args in cases:
        result = await as_whom.process(*args)
        assert result.code == 1, result
        assert result.out == ""
        (line,) = result.err.splitlines()
        assert line.startswith("error: PERMISSION_DENIED (PERMISSION_DENIED): "), line


async def test_bad_credentials_and_no_server_are_one_line_exit_1(cli):
    revoked = await cli.with_env(TIERSET_TOKEN="tsk_not-a-real-token").process("list", "--global")
    assert revoked.code == 1
    (line,) = revoked.err.splitlines()
    assert line.startswith("error: UNAUTHENTICATED (CREDENTIALS_"), line

    nobody = await cli.with_env(TIERSET_ADDRESS=f"127.0.0.1:{free_port()}").process(
        "list", "--global"
    )
    assert nobody.code == 1
    (line,) = nobody.err.splitlines()
    assert line.startswith("error: UNAVAILABLE: "), line


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (("get", "KEY"), "name one scope"),
        (("get", "--account", "1", "--retailer", "2", "KEY"), "name one scope"),
        (("get", "--account", "0", "KEY"), "not an id"),
        (("get", "--account", "1"), "required: KEY"),
        (("put", "--account", "1", "KEY", "v", "--type", "FLOAT"), "invalid choice"),
        (("explain", "--global", "KEY"), "unrecognized arguments"),
        (("history", "--limit", "x"), "invalid int value"),
        (("restore", "--account", "1", "KEY"), "--revision"),
        (("watch", "--retailer", "1"), "the keys to watch or --prefix"),
        (("list", "--global", "-o", "xml"), "invalid choice"),
        (("frobnicate",), "invalid choice"),
    ],
)
async def test_bad_usage_exits_2_without_a_traceback(cli, args, complaint):
    result = await cli.process(*args)
    assert result.code == 2, result
    assert complaint in result.err
    assert "Traceback" not in result.err


async def test_no_credentials_is_a_usage_error_naming_what_to_set(cli):
    result = await Cli({"TIERSET_ADDRESS": cli.env["TIERSET_ADDRESS"]}).process("list", "--global")
    assert result.code == 2
    assert "TIERSET_TOKEN" in result.err and "demo-credentials.env" in result.err


async def test_each_kind_of_credential_and_flags_over_variables(
    cli, make_caller, db, oauth_client, unique_key
):
    admin = await make_caller(Role.ADMIN, password="a long pass phrase")
    app_password = await CredentialStore(db).issue(admin.user_id, Kind.APP_PASSWORD, name="cli")
    client_id, client_secret = oauth_client
    everything = cli.with_env(  # as the demo credentials file exports them, wrong token first
        TIERSET_TOKEN="tsk_stale",
        TIERSET_USERNAME=admin.username,
        TIERSET_APP_PASSWORD=app_password.secret,
        TIERSET_PASSWORD="a long pass phrase",
        TIERSET_CLIENT_ID=client_id,
        TIERSET_CLIENT_SECRET=client_secret,
    )
    account = str(admin.account_id)
    key = unique_key("CLI")
    await cli("put", "--account", account, key, "--type", "STRING", "seen")
    assert (await everything("get", "--account", account, key)).code == 1  # the stale token
    for flags in (
        ("--token", admin.token),
        ("--auth", "app-password"),
        ("--auth", "password"),
        ("--username", admin.username),
    ):
        result = await everything("get", "--account", account, key, "-o", "json", *flags)
        assert result.code == 0, (flags, result.err)
        assert result.json()["settings"][0]["value"] == "seen"


async def test_help_separates_the_api_commands_from_the_database_ones(cli):
    result = await cli.process("-h")
    assert result.code == 0
    sections = result.out.split("\n\n")
    api = next(s for s in sections if s.startswith("Settings, through the gRPC API"))
    database = next(s for s in sections if s.startswith("Administration, directly in the database"))
    api_commands = {line.split()[0] for line in api.splitlines() if line.startswith("  ")}
    assert {
        "get",
        "put",
        "delete",
        "list",
        "explain",
        "history",
        "restore",
        "watch",
    } <= api_commands
    assert {"account", "user", "token", "app-password", "oauth-client"} <= {
        line.split()[0] for line in database.splitlines() if line.startswith("  ")
    }
    assert "history compact" in database
