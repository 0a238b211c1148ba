"""The client installs and works alone: clients/python built into a wheel, installed in a
fresh venv with grpcio and protobuf only, imports none of the server's dependencies, and
runs the README's "Using tierset from a service" example, as pasted, against a real
server."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from tests.conftest import free_port
from tierset.api.server import start_app
from tierset.auth.credentials import CredentialStore, Kind
from tierset.core.authz import Role
from tierset.ops.config import Config
from tierset.store.database import Store

ROOT = Path(__file__).resolve().parents[1]

# Run in the fresh venv: the server's dependencies are not even installed there.
ISOLATION = """
import importlib.util, sys
import tierset.client
for name in ("asyncpg", "argon2", "starlette", "uvicorn", "grpc_status", "grpc_health",
             "prometheus_client", "tierset.core", "tierset.api"):
    assert importlib.util.find_spec(name) is None, name + " is installed"
print("isolated", sorted(m for m in sys.modules if m.startswith("tierset")))
"""


async def run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    process = await asyncio.create_subprocess_exec(
        *map(str, args),
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    text = output.decode()
    assert process.returncode == 0, f"{args} failed:\n{text}"
    return text


def readme_example() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Using tierset from a service", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "the README's client example is missing"
    return match.group(1)


async def test_the_client_alone_runs_the_readme_example(
    tmp_path: Path, server_config: Config, create_database: Callable[[], Awaitable[str]]
) -> None:
    wheels, venv = tmp_path / "wheels", tmp_path / "venv"
    await run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--quiet",
        "--no-deps",
        "--no-build-isolation",
        "-w",
        wheels,
        ROOT / "clients" / "python",
        cwd=tmp_path,
    )
    [wheel] = wheels.glob("tierset_client-*.whl")
    base_python = getattr(sys, "_base_executable", sys.executable)
    await run(base_python, "-m", "venv", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    await run(python, "-m", "pip", "install", "--quiet", wheel, cwd=tmp_path)
    clean_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    isolated = await run(python, "-c", ISOLATION, cwd=tmp_path, env=clean_env)
    assert "tierset.client" in isolated

    # The example's world, as `make run` makes it: account 1111 and its retailer 2222.
    dsn = await create_database()
    port = free_port()
    app = await start_app(dataclasses.replace(server_config, grpc_address=f"127.0.0.1:{port}"), dsn)
    try:
        store = Store(app.pool)
        await store.create_account(1111, "Demo account")
        await store.create_retailer(2222, 1111, "Demo retailer")
        credentials = CredentialStore(app.pool)
        admin = await credentials.create_user(1111, "demo-admin", None, frozenset({Role.ADMIN}))
        token = (await credentials.issue(admin.id, Kind.API_TOKEN, name="demo")).secret
        example = tmp_path / "example.py"
        example.write_text(readme_example())
        env = {**clean_env, "TIERSET_TARGET": f"127.0.0.1:{port}", "TIERSET_TOKEN": token}
        output = await run(python, example, cwd=tmp_path, env=env)
    finally:
        await app.stop(0.5)
    assert output.splitlines()[-1] == "50 True", output
    assert (tmp_path / "checkout.json").exists()
