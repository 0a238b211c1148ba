"""The ``tierset`` administration commands and the first-start bootstrap, as subprocesses."""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import signal
import stat
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import grpc
import pytest

from tests.conftest import free_port
from tests.helpers import error_info
from tierset import client
from tierset.ops.embedded import EmbeddedPostgres
from tierset.store.migrate import migrate
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


# The variables of the demo credentials file that are secrets (the rest are ids and names).
SECRET_VARIABLES = (
    "TIERSET_PASSWORD",
    "TIERSET_TOKEN",
    "TIERSET_PLATFORM_TOKEN",
    "TIERSET_APP_PASSWORD",
    "TIERSET_BASIC",
    "TIERSET_CLIENT_SECRET",
)


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
    token_id = out.splitlines()[1].split("\t", 1)[0]
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
        database_url, "app-password", "revoke", "--id", out.splitlines()[1].split("\t", 1)[0]
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


@pytest.mark.parametrize(
    ("args", "names"),
    [
        # The database's CHECK used to end this in a CheckViolationError traceback.
        (("account", "create", "--id", "-5", "--name", "Minus"), ("--id", "account_id")),
        (("account", "create", "--id", "0", "--name", "Zero"), ("--id", "account_id")),
        # Empty or blank names were stored; over gRPC they are INVALID_ARGUMENT.
        (("account", "create", "--name", ""), ("--name", "display_name is required")),
        (("account", "create", "--name", "   "), ("--name", "display_name is required")),
        (("account", "create", "--name", "x" * 201), ("--name", "at most 200")),
        (
            ("retailer", "create", "--id", "-5", "--account", "1", "--name", "Shop"),
            ("--id", "retailer_id"),
        ),
        (("retailer", "create", "--account", "-1", "--name", "Shop"), ("--account", "account_id")),
        (("retailer", "create", "--account", "1", "--name", ""), ("--name", "display_name")),
        (("token", "revoke", "--id", "-3"), ("--id", "positive")),
        (("oauth-client", "create", "--name", ""), ("--name", "is required")),
    ],
)
async def test_cli_refuses_what_grpc_refuses_in_one_line(database_url, args, names):
    code, out, err = await tierset(database_url, *args)
    assert code == 1, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for name in names:
        assert name in lines[0]
    assert out == ""  # nothing was created, so no id was printed


async def test_cli_refuses_a_token_name_that_cannot_be_stored(database_url, next_id):
    account_id = next_id()
    username = f"cli-{uuid.uuid4().hex[:8]}"
    await tierset(database_url, "account", "create", "--id", str(account_id), "--name", "N")
    code, _, err = await tierset(
        database_url,
        "user",
        "create",
        "--account",
        str(account_id),
        "--username",
        username,
        "--role",
        "VIEWER",
        "--no-password",
    )
    assert code == 0, err
    code, out, err = await tierset(
        database_url, "token", "create", "--username", username, "--name", ""
    )
    assert (code, out) == (1, "")
    assert err.strip() == "error: --name: name is required"


async def _spawn_dev(database_url: str, data_dir, port: int) -> asyncio.subprocess.Process:
    """A `tierset dev` subprocess on `database_url`, gRPC on `port`, output piped."""
    return await asyncio.create_subprocess_exec(
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


async def _start_dev(database_url: str, data_dir, port: int) -> asyncio.subprocess.Process:
    """Starts `tierset dev` on `database_url` and waits until it serves."""
    process = await _spawn_dev(database_url, data_dir, port)
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
    # The output of a background `make run` ends up in a log file: it says where the
    # credentials are and how to load them, and holds none of them.
    assert f"source {env_file}" in first_output
    for name in SECRET_VARIABLES:
        assert values[name] not in first_output, name

    # A second start creates nothing and prints no secret.
    contents = env_file.read_text()
    second_output = await _stop(await _start_dev(database_url, tmp_path, port))
    assert "first start" not in second_output
    assert values["TIERSET_TOKEN"] not in second_output
    assert env_file.read_text() == contents


async def test_help_is_plain_text(database_url):
    code, out, err = await tierset(database_url, "-h")
    assert code == 0, err
    assert "usage: tierset" in out
    assert ":mod:" not in out
    assert "`" not in out


async def test_credential_lists_start_with_a_header_row(database_url, next_id):
    account_id, username = next_id(), f"lister-{uuid.uuid4().hex[:8]}"
    await tierset(database_url, "account", "create", "--id", str(account_id), "--name", "L")
    code, _, err = await tierset(
        database_url,
        "user",
        "create",
        "--account",
        str(account_id),
        "--username",
        username,
        "--role",
        "VIEWER",
        "--no-password",
    )
    assert code == 0, err

    for noun in ("token", "app-password"):
        code, out, err = await tierset(database_url, noun, "list", "--username", username)
        assert (code, out.splitlines()) == (0, [LIST_HEADER]), err
        await tierset(database_url, noun, "create", "--username", username, "--name", "one")
        code, out, _ = await tierset(database_url, noun, "list", "--username", username)
        header, row = out.splitlines()
        assert header == LIST_HEADER
        assert row.split("\t")[1:2] == ["one"] and row.endswith("\tactive")


LIST_HEADER = "ID\tNAME\tCREATED\tSTATE"


async def _run_dev_to_the_end(database_url: str, data_dir) -> tuple[int, str]:
    """Runs `tierset dev` that is expected to stop by itself; returns (exit code, output)."""
    process = await _spawn_dev(database_url, data_dir, free_port())
    out, _ = await asyncio.wait_for(process.communicate(), timeout=60)
    return process.returncode or 0, out.decode()


async def test_a_first_start_failing_midway_leaves_nothing_and_the_next_one_completes(
    create_database, tmp_path
):
    database_url = await create_database()
    env_file = tmp_path / "demo-credentials.env"
    connection = await asyncpg.connect(database_url)
    try:
        await migrate(connection)
        # A real failure inside PostgreSQL after the first demo user is written.
        await connection.execute(
            """
            CREATE FUNCTION refuse_second_user() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN RAISE EXCEPTION 'injected: no second user'; END $$;
            CREATE TRIGGER refuse_second_user BEFORE INSERT ON users FOR EACH ROW
                WHEN (NEW.username = 'demo-platform') EXECUTE FUNCTION refuse_second_user();
            """
        )
        code, output = await _run_dev_to_the_end(database_url, tmp_path)
        assert code != 0, output
        assert not env_file.exists()
        for table in ("users", "accounts", "credentials", "oauth_clients"):
            assert await connection.fetchval(f"SELECT count(*) FROM {table}") == 0, table
        assert "injected: no second user" in output
        assert "Traceback" not in output

        await connection.execute("DROP TRIGGER refuse_second_user ON users")
        port = free_port()
        await _stop(await _start_dev(database_url, tmp_path, port))
        assert await connection.fetchval("SELECT count(*) FROM users") == 2
    finally:
        await connection.close()
    values = _values(env_file.read_text().replace("export ", ""))
    assert values["TIERSET_TOKEN"].startswith("tsk_")
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600


# --- Which database the administration commands use, run from any folder -----------------


def _without_a_database() -> dict[str, str]:
    """This environment minus everything that names a database or a data folder; the embedded
    port is a free one, so no run (even of unfixed code) can take the real one."""
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in {"DATABASE_URL", "TIERSET_DATA_DIR"} and not name.startswith("PG")
    }
    env["TIERSET_EMBEDDED_PG_PORT"] = str(free_port())
    return env


async def tierset_in(cwd: Path, env: dict[str, str], *args: str) -> tuple[int, str, str]:
    """Runs `tierset ARGS` in the folder `cwd` with exactly `env`."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tierset.cli",
        *args,
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    return process.returncode or 0, out.decode(), err.decode()


@dataclass(frozen=True)
class Checkout:
    """A folder laid out as a tierset checkout after `make run`: tierset's pyproject.toml,
    and the embedded PostgreSQL running from .data/postgres on a port of its own."""

    root: Path
    cluster: EmbeddedPostgres


@pytest.fixture(scope="module")
def checkout() -> Iterator[Checkout]:
    root = Path(tempfile.mkdtemp(prefix="tierset-checkout-"))
    root.chmod(0o755)  # the postgres user must get in when tests run as root
    (root / "pyproject.toml").write_text('[project]\nname = "tierset"\n')
    cluster = EmbeddedPostgres(root / ".data" / "postgres", free_port(), durable=False)
    cluster.start()
    yield Checkout(root, cluster)
    cluster.stop("immediate")
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def elsewhere() -> Iterator[Path]:
    """A folder outside any tierset checkout."""
    folder = Path(tempfile.mkdtemp(prefix="tierset-elsewhere-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


async def _account_exists(checkout: Checkout, account_id: int) -> bool:
    connection = await asyncpg.connect(checkout.cluster.dsn)
    try:
        return bool(
            await connection.fetchval("SELECT count(*) FROM accounts WHERE id = $1", account_id)
        )
    finally:
        await connection.close()


async def test_admin_commands_in_a_subfolder_use_the_checkouts_running_database(checkout, next_id):
    subfolder = checkout.root / "src" / "deeper"
    subfolder.mkdir(parents=True, exist_ok=True)
    account_id = next_id()

    code, out, err = await tierset_in(
        subfolder,
        _without_a_database(),
        "account",
        "create",
        "--id",
        str(account_id),
        "--name",
        "Found",
    )

    assert (code, _values(out)) == (0, {"TIERSET_ACCOUNT_ID": str(account_id)}), err
    assert await _account_exists(checkout, account_id)
    assert not (subfolder / ".data").exists()
    assert checkout.cluster.is_running()  # it belongs to `make run`: left running


async def test_admin_commands_elsewhere_use_the_data_dir_they_are_given(
    checkout, elsewhere, next_id
):
    env = {**_without_a_database(), "TIERSET_DATA_DIR": str(checkout.root / ".data")}
    account_id, username = next_id(), f"far-{uuid.uuid4().hex[:8]}"
    await tierset_in(elsewhere, env, "account", "create", "--id", str(account_id), "--name", "F")
    await tierset_in(
        elsewhere,
        env,
        "user",
        "create",
        "--account",
        str(account_id),
        "--username",
        username,
        "--role",
        "VIEWER",
        "--no-password",
    )

    code, out, err = await tierset_in(elsewhere, env, "token", "list", "--username", username)

    assert (code, out.splitlines()) == (0, [LIST_HEADER]), err
    assert await _account_exists(checkout, account_id)
    assert os.listdir(elsewhere) == []


async def test_admin_commands_outside_a_checkout_say_what_to_set_and_create_nothing(elsewhere):
    code, out, err = await tierset_in(
        elsewhere, _without_a_database(), "token", "list", "--username", "anyone"
    )

    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert "TIERSET_DATA_DIR" in err and "DATABASE_URL" in err
    assert os.listdir(elsewhere) == []  # no .data, no initdb


async def test_admin_commands_never_create_a_database_in_an_empty_data_dir(elsewhere):
    env = {**_without_a_database(), "TIERSET_DATA_DIR": str(elsewhere / "data")}

    code, _, err = await tierset_in(elsewhere, env, "token", "list", "--username", "anyone")

    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert str(elsewhere / "data") in err and "DATABASE_URL" in err
    assert os.listdir(elsewhere) == []
