"""The ``tierset`` administration commands and the first-start bootstrap, as subprocesses."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import stat
import sys
import uuid

import grpc
import pytest

from tests.conftest import free_port
from tests.helpers import error_info
from tierset import client
from tierset.v1 import auth_pb2, auth_pb2_grpc, settings_pb2, settings_pb2_grpc


async def tierset(database_url: str, *args: str, stdin: str = "") -> tuple[int, str, str]:
    """Runs `tierset ARGS` against `database_url`; returns (exit code, stdout, stderr)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tierset.cli",
        *args,
        env={**os.environ, "DATABASE_URL": database_url},
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(stdin.encode()), timeout=60)
    return process.returncode or 0, out.decode(), err.decode()


def _values(stdout: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in stdout.splitlines() if "=" in line)


async def _get(settings, scope: settings_pb2.Scope, header: str):
    return await settings.GetSettings(
        settings_pb2.GetSettingsRequest(scope=scope, keys=["ANY.KEY"]),
        metadata=(("authorization", header),),
    )


async def _refused_soon(settings, scope, header: str) -> str:
    """Waits (briefly) for a revoked credential to be refused; returns the reason."""
    for _ in range(50):
        try:
            await _get(settings, scope, header)
        except grpc.aio.AioRpcError as error:
            assert error.code() == grpc.StatusCode.UNAUTHENTICATED
            return error_info(error).reason
        await asyncio.sleep(0.05)
    raise AssertionError("still accepted 2.5 s after revocation")


async def test_cli_sets_up_an_account_and_manages_credentials(
    database_url, anonymous_channel, next_id
):
    account_id, retailer_id = next_id(), next_id()
    username = f"cli-{uuid.uuid4().hex[:8]}"
    settings = settings_pb2_grpc.SettingsServiceStub(anonymous_channel)
    retailer = settings_pb2.Scope(retailer_id=retailer_id)

    code, out, _ = await tierset(
        database_url, "account", "create", "--id", str(account_id), "--name", "CLI"
    )
    assert (code, _values(out)) == (0, {"TIERSET_ACCOUNT_ID": str(account_id)})
    code, out, _ = await tierset(
        database_url,
        "retailer",
        "create",
        "--id",
        str(retailer_id),
        "--account",
        str(account_id),
        "--name",
        "CLI shop",
    )
    assert (code, _values(out)) == (0, {"TIERSET_RETAILER_ID": str(retailer_id)})
    code, out, err = await tierset(
        database_url,
        "user",
        "create",
        "--account",
        str(account_id),
        "--username",
        username,
        "--role",
        "ADMIN",
        "--password-stdin",
        stdin="s3cret pass\n",
    )
    assert code == 0, err
    assert "s3cret" not in out + err

    # An API token works at once and is refused soon after `token revoke`.
    code, out, err = await tierset(
        database_url, "token", "create", "--username", username, "--name", "ci"
    )
    token = _values(out)["TIERSET_TOKEN"]
    assert token.startswith("tsk_")
    await _get(settings, retailer, f"Bearer {token}")
    code, out, _ = await tierset(database_url, "token", "list", "--username", username)
    token_id = out.split("\t", 1)[0]
    assert "ci" in out and "active" in out
    code, _, err = await tierset(database_url, "token", "revoke", "--id", token_id)
    assert code == 0, err
    assert await _refused_soon(settings, retailer, f"Bearer {token}") == "CREDENTIALS_INVALID"

    # An application password, likewise, over Basic.
    code, out, _ = await tierset(
        database_url, "app-password", "create", "--username", username, "--name", "laptop"
    )
    app_password = _values(out)["TIERSET_APP_PASSWORD"]
    basic = "Basic " + base64.b64encode(f"{username}:{app_password}".encode()).decode()
    await _get(settings, retailer, basic)
    code, out, _ = await tierset(database_url, "app-password", "list", "--username", username)
    code, _, _ = await tierset(
        database_url, "app-password", "revoke", "--id", out.split("\t", 1)[0]
    )
    assert code == 0
    assert await _refused_soon(settings, retailer, basic) == "CREDENTIALS_INVALID"

    # An OAuth client, and the password given on stdin, make the password grant work.
    code, out, _ = await tierset(database_url, "oauth-client", "create", "--name", "CLI client")
    client = _values(out)
    issued = await auth_pb2_grpc.AuthServiceStub(anonymous_channel).CreateToken(
        auth_pb2.CreateTokenRequest(
            grant_type="password",
            username=username,
            password="s3cret pass",
            scope="api",
            client_id=client["TIERSET_CLIENT_ID"],
            client_secret=client["TIERSET_CLIENT_SECRET"],
        )
    )
    await _get(settings, retailer, f"Bearer {issued.access_token}")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("user", "create", "--account", "1", "--username", "x", "--role", "GOD"),
            "invalid choice",
        ),
        (("token", "create", "--username", "nobody-at-all", "--name", "x"), "does not exist"),
        (("token", "revoke", "--id", "999999999"), "no active API token"),
        (("oauth-client", "revoke", "--client-id", "nope"), "no active OAuth client"),
    ],
)
async def test_cli_errors_are_clear(database_url, args, message):
    code, _, err = await tierset(database_url, *args)
    assert code != 0
    assert message in err
    assert "Traceback" not in err


async def _start_dev(database_url: str, data_dir, port: int) -> asyncio.subprocess.Process:
    """Starts `tierset dev` on `database_url` and waits until it serves."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tierset.cli",
        "dev",
        env={
            **os.environ,
            "DATABASE_URL": database_url,
            "TIERSET_DATA_DIR": str(data_dir),
            "TIERSET_GRPC_ADDRESS": f"127.0.0.1:{port}",
            # Never the real ports (8080, 9090, 9091): a test must not take them.
            "TIERSET_HTTP_ADDRESS": f"127.0.0.1:{free_port()}",
            "TIERSET_METRICS_ADDRESS": "",
            "TIERSET_GATEWAY_METRICS_ADDRESS": "",
        },
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    async with asyncio.timeout(30):
        await client.wait_until_serving(f"127.0.0.1:{port}")
    return process


async def _stop(process: asyncio.subprocess.Process) -> str:
    process.send_signal(signal.SIGTERM)
    out, _ = await asyncio.wait_for(process.communicate(), timeout=15)
    return out.decode()


async def test_first_start_creates_demo_credentials_that_work(create_database, tmp_path):
    database_url = await create_database()
    port = free_port()
    env_file = tmp_path / "demo-credentials.env"
    process = await _start_dev(database_url, tmp_path, port)
    try:
        values = {}
        for line in env_file.read_text().splitlines():
            if line.startswith("export "):
                name, _, value = line.removeprefix("export ").partition("=")
                values[name] = value
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            settings = settings_pb2_grpc.SettingsServiceStub(channel)
            await _get(
                settings, settings_pb2.Scope(retailer_id=2222), f"Bearer {values['TIERSET_TOKEN']}"
            )
            await _get(
                settings, settings_pb2.Scope(account_id=1111), f"Basic {values['TIERSET_BASIC']}"
            )
            await settings.SetGlobal(
                settings_pb2.SetGlobalRequest(
                    key="DEMO.FLAG",
                    type=settings_pb2.SETTING_TYPE_BOOLEAN,
                    value=settings_pb2.SettingValue(boolean_value=True),
                ),
                metadata=(("authorization", f"Bearer {values['TIERSET_PLATFORM_TOKEN']}"),),
            )
            issued = await auth_pb2_grpc.AuthServiceStub(channel).CreateToken(
                auth_pb2.CreateTokenRequest(
                    grant_type="password",
                    scope="api",
                    username=values["TIERSET_USERNAME"],
                    password=values["TIERSET_PASSWORD"],
                    client_id=values["TIERSET_CLIENT_ID"],
                    client_secret=values["TIERSET_CLIENT_SECRET"],
                )
            )
            assert issued.access_token
    finally:
        first_output = await _stop(process)

    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert values["TIERSET_TOKEN"] in first_output  # printed once, on first start

    # A second start creates nothing and prints no secret.
    contents = env_file.read_text()
    second_output = await _stop(await _start_dev(database_url, tmp_path, port))
    assert "first start" not in second_output
    assert values["TIERSET_TOKEN"] not in second_output
    assert env_file.read_text() == contents
