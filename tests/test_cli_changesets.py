"""``tierset lock``, ``unlock``, ``apply FILE`` and ``import FILE`` against the real server."""

from __future__ import annotations

import asyncio
import os
import sys

import pytest
import yaml

from tierset.core.authz import Role


async def test_a_global_lock_refuses_an_override_until_unlocked(cli, shop, unique_key):
    admin, account, _ = await shop()
    as_admin = cli.as_caller(admin)
    key = unique_key("CLI.LOCKED")
    assert (await cli("put", "--global", key, "--type", "INTEGER", "100")).code == 0
    locked = await cli("lock", "--global", key, "--reason", "one limit", "-o", "json")
    assert locked.code == 0, locked.err
    assert locked.json()["setting"]["locked"]["by"]
    again = await cli("lock", "--global", key)
    assert again.out.startswith(f"{key} of GLOBAL was locked already")

    refused = await as_admin.process("put", "--account", str(account), key, "50")
    assert refused.code == 1
    (line,) = refused.err.splitlines()
    assert line.startswith("error: FAILED_PRECONDITION (KEY_LOCKED): "), line
    assert "locked_level=GLOBAL" in line

    explained = await as_admin("explain", "--account", str(account), key)
    assert "(locked)" in explained.out
    assert (await cli("unlock", "--global", key)).out.startswith(f"unlocked {key} of GLOBAL")
    assert (await as_admin("put", "--account", str(account), key, "50")).code == 0


async def test_locking_over_overrides_is_refused_unless_they_are_removed(cli, shop, unique_key):
    admin, account, retailer = await shop()
    as_admin = cli.as_caller(admin)
    key = unique_key("CLI.LOCKED")
    await as_admin("put", "--account", str(account), key, "--type", "STRING", "account's")
    await as_admin("put", "--retailer", str(retailer), key, "retailer's")
    refused = await as_admin("lock", "--account", str(account), key)
    assert refused.code == 1
    assert refused.err.startswith("error: FAILED_PRECONDITION (KEY_OVERRIDDEN): ")
    assert f"overrides=retailer:{retailer}" in refused.err
    locked = await as_admin(
        "lock", "--account", str(account), key, "--remove-overrides", "-o", "json"
    )
    assert locked.code == 0, locked.err
    assert locked.json()["removed_overrides"] == [{"retailer": retailer}]
    got = await as_admin("get", "--retailer", str(retailer), key, "-o", "json")
    assert [(s["value"], s["level"]) for s in got.json()["settings"]] == [("account's", "ACCOUNT")]
    assert (await as_admin("lock", "--retailer", str(retailer), key)).code == 2


def _file(tmp_path, document) -> str:
    path = tmp_path / "changes.yaml"
    path.write_text(yaml.safe_dump(document))
    return str(path)


async def test_apply_is_one_revision_all_or_nothing(cli, shop, unique_key, tmp_path):
    admin, account, retailer = await shop()
    as_admin = cli.as_caller(admin)
    prefix = unique_key("CLI.APPLY") + "."
    await as_admin("put", "--retailer", str(retailer), prefix + "OLD", "--type", "STRING", "x")
    changes = _file(
        tmp_path,
        {
            "scope": {"account": account},
            "settings": [
                {"key": prefix + "GATEWAY", "type": "STRING", "value": "ADYEN"},
                {"key": prefix + "MERCHANT", "type": "STRING", "value": "AcmeNZ"},
                {"key": prefix + "OLD", "operation": "delete", "scope": {"retailer": retailer}},
                {"key": prefix + "GATEWAY", "operation": "lock"},
            ],
        },
    )
    applied = await as_admin("apply", changes, "--yes", "--reason", "move to Adyen", "-o", "json")
    assert applied.code == 0, applied.err
    assert [c["outcome"] for c in applied.json()["changes"]] == [
        "CREATED",
        "CREATED",
        "DELETED",
        "LOCKED",
    ]
    history = await as_admin("history", "--account", str(account), "--prefix", prefix, "-o", "json")
    newest = [c for c in history.json()["changes"] if c["revision"] == applied.json()["revision"]]
    assert len(newest) == 4 and {c["reason"] for c in newest} == {"move to Adyen"}

    # The second change breaks the account's lock: nothing of the file is written.
    failing = _file(
        tmp_path,
        {
            "settings": [
                {
                    "key": prefix + "MERCHANT",
                    "type": "STRING",
                    "value": "AcmeAU",
                    "scope": {"account": account},
                },
                {
                    "key": prefix + "GATEWAY",
                    "type": "STRING",
                    "value": "PAYPAL",
                    "scope": {"retailer": retailer},
                },
            ]
        },
    )
    refused = await as_admin.process("apply", failing, "--yes")
    assert refused.code == 1
    (line,) = refused.err.splitlines()
    assert line.startswith("error: FAILED_PRECONDITION (KEY_LOCKED): changes[1]"), line
    assert "index=1" in line
    got = await as_admin("get", "--account", str(account), prefix + "MERCHANT", "-o", "json")
    assert got.json()["settings"][0]["value"] == "AcmeNZ"


async def test_an_export_applied_as_it_is_changes_nothing(cli, shop, unique_key, tmp_path):
    admin, account, retailer = await shop()
    as_admin = cli.as_caller(admin)
    prefix = unique_key("CLI.SAME") + "."
    await cli("put", "--global", prefix + "DEFAULT", "--type", "INTEGER", "1")
    await as_admin("put", "--account", str(account), prefix + "ACCOUNT", "--type", "INTEGER", "2")
    await as_admin("put", "--retailer", str(retailer), prefix + "OWN", "--type", "INTEGER", "3")
    path = tmp_path / "export.yaml"
    path.write_text((await as_admin("export", "--retailer", str(retailer), "--prefix", prefix)).out)
    # The GLOBAL value is in the file, but an ADMIN re-applying it needs no PLATFORM.
    result = await as_admin("apply", str(path), "--yes")
    assert result.code == 0, result.err
    assert result.out.startswith("nothing to apply")
    assert "left out 3 puts" in result.err


async def test_export_import_into_another_scope_then_diff_shows_no_difference(
    cli, shop, make_caller, new_retailer, unique_key, tmp_path
):
    admin, account, retailer = await shop()
    as_admin = cli.as_caller(admin)
    other = await make_caller(Role.ADMIN)
    elsewhere = await new_retailer(other.account_id)
    prefix = unique_key("CLI.COPY") + "."
    await cli("put", "--global", prefix + "DEFAULT", "--type", "BOOLEAN", "true")
    await as_admin("put", "--account", str(account), prefix + "LIMIT", "--type", "INTEGER", "5")
    await as_admin(
        "put",
        "--retailer",
        str(retailer),
        prefix + "PAY",
        "--type",
        "JSON",
        '[{"name": "AFTERPAY"}, 1.50]',
    )
    path = tmp_path / "export.yaml"
    path.write_text((await as_admin("export", "--retailer", str(retailer), "--prefix", prefix)).out)

    as_other = cli.as_caller(other)
    imported = await as_other(
        "import", str(path), "--retailer", str(elsewhere), "--yes", "-o", "json"
    )
    assert imported.code == 0, imported.err
    # DEFAULT is inherited alike: only the two others are written, in one revision.
    assert [(c["key"], c["outcome"]) for c in imported.json()["changes"]] == [
        (prefix + "LIMIT", "CREATED"),
        (prefix + "PAY", "CREATED"),
    ]
    diff = await cli(
        "diff",
        "--retailer",
        str(retailer),
        "--retailer",
        str(elsewhere),
        "--prefix",
        prefix,
        "-o",
        "json",
    )
    assert diff.code == 0, diff.err
    assert diff.json()["differences"] == []
    again = await as_other("import", str(path), "--retailer", str(elsewhere))
    assert again.out.startswith("nothing to import")


async def test_import_shows_the_dry_run_and_writes_only_when_confirmed(
    cli, shop, unique_key, tmp_path
):
    admin, account, retailer = await shop()
    as_admin = cli.as_caller(admin)
    key = unique_key("CLI.ASKED")
    path = _file(tmp_path, {"settings": [{"key": key, "type": "INTEGER", "value": 7}]})

    dry = await as_admin("import", path, "--account", str(account), "--dry-run")
    assert dry.code == 0, dry.err
    assert "CREATED" in dry.out
    assert f"retailer {retailer}" in dry.out and "- → 7" in dry.out  # the retailer's effect
    unconfirmed = await as_admin.process("import", path, "--account", str(account))  # a pipe
    assert unconfirmed.code == 1
    assert "not applied: confirm at a terminal, or pass --yes" in unconfirmed.err
    for answer, code, written in (("n\n", 1, False), ("y\n", 0, True)):
        assert (
            await _at_a_terminal(as_admin, answer, "import", path, "--account", str(account))
            == code
        )
        got = await as_admin("get", "--account", str(account), key)
        assert (got.code == 0) is written


async def _at_a_terminal(cli, answer: str, *args: str) -> int:
    """Runs the command with a pseudo-terminal as stdin, typing `answer`; its exit code."""
    main, terminal = os.openpty()
    outside = {k: v for k, v in os.environ.items() if not k.startswith("TIERSET_")}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tierset.cli",
        *args,
        env={**outside, **cli.env},
        stdin=terminal,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    os.close(terminal)
    try:
        prompt = await asyncio.wait_for(process.stderr.readuntil(b"[y/N] "), timeout=30)
        assert b"apply 1 change?" in prompt
        os.write(main, answer.encode())
        await asyncio.wait_for(process.wait(), timeout=30)
    finally:
        os.close(main)
    return process.returncode


@pytest.mark.parametrize(
    ("document", "complaint"),
    [
        ("{not: [yaml", "not YAML or JSON"),
        ("just text", "a list of `settings`"),
        (
            "scope: {account: 1}\nsettings: [{key: A.B, type: FLOAT, value: 1}]",
            "a put needs a type",
        ),
        ("scope: {account: 1}\nsettings: [{key: A.B, operation: rename}]", "operation: one of"),
        ("settings: [{key: A.B, type: STRING, value: x}]", "no scope"),
        ("settings: [{key: A.B, type: STRING, value: x, scope: {shop: 1}}]", "a scope is"),
    ],
)
async def test_a_bad_file_is_a_usage_error(cli, tmp_path, document, complaint):
    path = tmp_path / "bad.yaml"
    path.write_text(document)
    result = await cli.process("apply", str(path), "--yes")
    assert result.code == 2, result
    assert complaint in result.err
    assert "Traceback" not in result.err
