"""The gateway as processes: `tierset gateway` alone, and `tierset dev` running it as a child
beside the gRPC server, each stopping cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port
from tierset.gateway.serve import local_target
from tierset.ops.config import Config, ConfigError


async def _start(
    command: str, env: dict[str, str], output: int = asyncio.subprocess.PIPE
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tierset.cli",
        command,
        env={
            **os.environ,
            "TIERSET_SHUTDOWN_GRACE_SECONDS": "2",
            # Never the real metrics ports (9090, 9091): a test must not take them.
            "TIERSET_METRICS_ADDRESS": "",
            "TIERSET_GATEWAY_METRICS_ADDRESS": "",
            **env,
        },
        stdout=output,
        stderr=asyncio.subprocess.STDOUT,
    )


async def _wait_ready(base_url: str, process: asyncio.subprocess.Process) -> None:
    async with httpx.AsyncClient(base_url=base_url, trust_env=False, timeout=2) as client:
        for _ in range(150):
            if process.returncode is not None:
                break
            try:
                if (await client.get("/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    process.kill()
    output, _ = await process.communicate()
    raise AssertionError(f"{base_url} never became ready:\n{output.decode()[-4000:]}")


async def _refuses_connections(base_url: str) -> bool:
    async with httpx.AsyncClient(base_url=base_url, trust_env=False, timeout=2) as client:
        try:
            await client.get("/healthz")
        except httpx.ConnectError:
            return True
    return False


async def _stop(process: asyncio.subprocess.Process) -> str:
    process.send_signal(signal.SIGTERM)
    output, _ = await asyncio.wait_for(process.communicate(), timeout=20)
    return output.decode()


async def test_tierset_gateway_serves_and_stops_on_sigterm(server, new_account, rest_auth_headers):
    account = await new_account()
    port = free_port()
    process = await _start(
        "gateway",
        {
            "TIERSET_HTTP_ADDRESS": f"127.0.0.1:{port}",
            "TIERSET_GRPC_TARGET": f"127.0.0.1:{server.port}",
        },
    )
    base_url = f"http://127.0.0.1:{port}"
    await _wait_ready(base_url, process)

    async with httpx.AsyncClient(base_url=base_url, trust_env=False) as client:
        response = await client.get(
            f"/api/v4.1/settings/account/{account}/K", headers=rest_auth_headers
        )
    output = await _stop(process)

    assert response.json() == {"settings": []}
    assert process.returncode == 0, output
    assert "gateway stopped" in output
    assert "Traceback" not in output


def _children_listening_on(parent: int, port: int) -> set[int]:
    """Which child processes of `parent` hold a TCP socket listening on `port` (from /proc)."""
    pids = [int(p) for p in Path(f"/proc/{parent}/task/{parent}/children").read_text().split()]
    listening = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            fields = row.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                listening.add(f"socket:[{inode}]")
    holders = set()
    for pid in pids:
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            if any(os.readlink(fd) in listening for fd in Path(f"/proc/{pid}/fd").iterdir()):
                holders.add(pid)
    return holders


async def test_two_gateway_processes_serve_one_port_and_stop_on_sigterm(
    server, new_account, rest_auth_headers
):
    account = await new_account()
    port = free_port()
    process = await _start(
        "gateway",
        {
            "TIERSET_HTTP_ADDRESS": f"127.0.0.1:{port}",
            "TIERSET_GRPC_TARGET": f"127.0.0.1:{server.port}",
            "TIERSET_GATEWAY_PROCESSES": "2",
        },
    )
    base_url = f"http://127.0.0.1:{port}"
    await _wait_ready(base_url, process)
    for _ in range(100):  # ready means one process answers; wait for the other to bind
        holders = _children_listening_on(process.pid, port)
        if len(holders) == 2:
            break
        await asyncio.sleep(0.1)

    # A fresh connection per request, so the kernel spreads them; every one is answered.
    statuses = []
    for _ in range(8):
        async with httpx.AsyncClient(base_url=base_url, trust_env=False) as client:
            response = await client.get(
                f"/api/v4.1/settings/account/{account}/K", headers=rest_auth_headers
            )
            statuses.append((response.status_code, response.json()))
    output = await _stop(process)

    assert len(holders) == 2, f"{holders} listen on {port}:\n{output}"
    assert statuses == [(200, {"settings": []})] * 8
    assert process.returncode == 0, output
    assert output.count("gateway stopped") == 2
    assert "Traceback" not in output
    assert await _refuses_connections(base_url)


async def test_two_gateway_processes_serve_metrics_from_the_first(
    server, new_account, rest_auth_headers
):
    account = await new_account()
    port, metrics_port = free_port(), free_port()
    process = await _start(
        "gateway",
        {
            "TIERSET_HTTP_ADDRESS": f"127.0.0.1:{port}",
            "TIERSET_GRPC_TARGET": f"127.0.0.1:{server.port}",
            "TIERSET_GATEWAY_PROCESSES": "2",
            "TIERSET_GATEWAY_METRICS_ADDRESS": f"127.0.0.1:{metrics_port}",
        },
    )
    base_url = f"http://127.0.0.1:{port}"
    await _wait_ready(base_url, process)
    path = f"/api/v4.1/settings/account/{account}/K"
    settings_route = 'route="/api/v4.1/settings/account/{accountId}/{key:keylist}"'
    async with httpx.AsyncClient(trust_env=False, timeout=5) as client:
        for _ in range(100):  # until the first process answers a request (the kernel spreads)
            # A connection per request, so that the kernel spreads them over both processes.
            await client.get(base_url + path, headers={**rest_auth_headers, "Connection": "close"})
            try:
                scraped = await client.get(f"http://127.0.0.1:{metrics_port}/metrics")
            except httpx.TransportError:
                scraped = None
            if scraped is not None and settings_route in scraped.text:
                break
            await asyncio.sleep(0.05)
    output = await _stop(process)

    assert scraped is not None, f"nothing serves /metrics on {metrics_port}:\n{output}"
    assert scraped.status_code == 200
    assert settings_route in scraped.text, scraped.text
    assert "cannot serve metrics" not in output  # only the first process tries to bind it
    assert process.returncode == 0, output


def _environment_of_gateway_child(parent_pid: int) -> dict[str, str]:
    pairs = Path(f"/proc/{_gateway_child_of(parent_pid)}/environ").read_bytes().split(b"\0")
    return dict(p.decode().split("=", 1) for p in pairs if b"=" in p)


async def test_tierset_dev_runs_the_gateway_as_a_child_and_stops_it(database_url):
    grpc_port, http_port = free_port(), free_port()
    process = await _start(
        "dev",
        {
            "DATABASE_URL": database_url,
            "TIERSET_GRPC_ADDRESS": f"127.0.0.1:{grpc_port}",
            "TIERSET_HTTP_ADDRESS": f"127.0.0.1:{http_port}",
            # Whatever the environment says, dev's gateway calls dev's own gRPC server.
            "TIERSET_GRPC_TARGET": "127.0.0.1:1",
        },
    )
    base_url = f"http://127.0.0.1:{http_port}"
    await _wait_ready(base_url, process)  # ready means: the child reached dev's gRPC server
    child_environment = _environment_of_gateway_child(process.pid)

    output = await _stop(process)

    # The gateway never touches the database, so it is not handed the database's password.
    assert "TIERSET_GRPC_TARGET" in child_environment
    assert "DATABASE_URL" not in child_environment

    assert process.returncode == 0, output
    assert "serving gRPC" in output and "serving REST" in output
    assert "gateway stopped" in output
    assert "Traceback" not in output
    assert await _refuses_connections(base_url)


def _gateway_child_of(parent_pid: int) -> int:
    children = Path(f"/proc/{parent_pid}/task/{parent_pid}/children").read_text().split()
    for pid in children:
        if b"gateway" in Path(f"/proc/{pid}/cmdline").read_bytes():
            return int(pid)
    raise AssertionError(f"no gateway child among {children}")


def _exited(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except FileNotFoundError:
        return True


async def test_the_gateway_child_stops_when_tierset_dev_is_killed(database_url):
    grpc_port, http_port = free_port(), free_port()
    process = await _start(
        "dev",
        {
            "DATABASE_URL": database_url,
            "TIERSET_GRPC_ADDRESS": f"127.0.0.1:{grpc_port}",
            "TIERSET_HTTP_ADDRESS": f"127.0.0.1:{http_port}",
        },
        # Not a pipe: asyncio's wait() also waits for every pipe to close, and a surviving
        # child would hold it open, turning this test's failure into a hang.
        output=asyncio.subprocess.DEVNULL,
    )
    base_url = f"http://127.0.0.1:{http_port}"
    await _wait_ready(base_url, process)
    child = _gateway_child_of(process.pid)

    try:
        process.kill()  # no chance to stop its child itself
        await process.wait()

        for _ in range(100):
            if _exited(child):
                break
            await asyncio.sleep(0.1)
        assert _exited(child), "the gateway outlived tierset dev"
        assert await _refuses_connections(base_url)
    finally:
        if not _exited(child):
            os.kill(child, signal.SIGKILL)


def _dev_env(database_url: str, http_port: int) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url,
        "TIERSET_GRPC_ADDRESS": f"127.0.0.1:{free_port()}",
        "TIERSET_HTTP_ADDRESS": f"127.0.0.1:{http_port}",
    }


async def _exit_of(process: asyncio.subprocess.Process) -> tuple[int, str]:
    output, _ = await asyncio.wait_for(process.communicate(), timeout=30)
    return process.returncode, output.decode()


async def test_tierset_dev_stops_when_its_gateway_child_dies(database_url):
    # Before, dev went on serving gRPC with no REST and nothing said so.
    http_port = free_port()
    process = await _start("dev", _dev_env(database_url, http_port))
    await _wait_ready(f"http://127.0.0.1:{http_port}", process)

    os.kill(_gateway_child_of(process.pid), signal.SIGKILL)
    code, output = await _exit_of(process)

    assert code == 1, output
    assert "the REST gateway exited with code -9; stopping" in output
    assert "tierset dev: the REST gateway exited (code -9)" in output
    assert "Traceback" not in output


async def test_tierset_dev_stops_when_its_gateway_cannot_start(database_url):
    # The child dies within its first second, before dev's server has its signal handlers.
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        process = await _start("dev", _dev_env(database_url, port))
        code, output = await _exit_of(process)

    assert code == 1, output
    assert "tierset dev: the REST gateway exited (code " in output
    assert f"127.0.0.1:{port}" in output  # the gateway's own line says what it could not do
    assert "Traceback" not in output


async def test_a_ctrl_c_stops_tierset_dev_and_its_gateway_cleanly(database_url):
    # The child has a session of its own: the terminal's SIGINT reaches dev alone, which
    # stops the child itself; the child's exit then is no crash.
    http_port = free_port()
    process = await _start("dev", _dev_env(database_url, http_port))
    base_url = f"http://127.0.0.1:{http_port}"
    await _wait_ready(base_url, process)
    child = _gateway_child_of(process.pid)
    assert os.getsid(child) == child != os.getsid(process.pid)

    process.send_signal(signal.SIGINT)
    code, output = await _exit_of(process)

    assert code == 0, output
    assert "gateway stopped" in output
    assert "the REST gateway exited" not in output and "Traceback" not in output
    assert await _refuses_connections(base_url)


def test_the_gateway_is_configured_from_the_environment():
    config = Config.from_env(
        {
            "TIERSET_HTTP_ADDRESS": "0.0.0.0:9090",
            "TIERSET_GRPC_TARGET": "settings:50051",
            "TIERSET_GATEWAY_DEADLINE_SECONDS": "2.5",
            "TIERSET_HTTP_MAX_BODY_BYTES": "1024",
            "TIERSET_GATEWAY_PROCESSES": "3",
        }
    )

    assert (config.http_address, config.grpc_target) == ("0.0.0.0:9090", "settings:50051")
    assert (config.gateway_deadline_seconds, config.http_max_body_bytes) == (2.5, 1024)
    assert config.gateway_processes == 3
    assert Config.from_env({}).http_address == "127.0.0.1:8080"
    assert Config.from_env({}).gateway_processes == 1


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("TIERSET_GATEWAY_DEADLINE_SECONDS", "0"),
        ("TIERSET_GATEWAY_DEADLINE_SECONDS", "soon"),
        ("TIERSET_HTTP_MAX_BODY_BYTES", "-1"),
        ("TIERSET_HTTP_MAX_BODY_BYTES", "2MB"),
        ("TIERSET_GATEWAY_PROCESSES", "0"),
    ],
)
def test_unusable_gateway_settings_are_refused_by_name(name, raw):
    with pytest.raises(ConfigError, match=name):
        Config.from_env({name: raw})


@pytest.mark.parametrize(
    ("listen", "target"),
    [
        ("127.0.0.1:50051", "127.0.0.1:50051"),
        ("0.0.0.0:6000", "127.0.0.1:6000"),
        ("[::]:6000", "127.0.0.1:6000"),
        ("[::1]:6000", "[::1]:6000"),
    ],
)
def test_dev_points_its_gateway_at_its_own_grpc_address(listen, target):
    assert local_target(listen) == target
