"""Running the gateway: under uvicorn in this process, or as a child of ``tierset dev``."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Generator, Iterator

import uvicorn

from tierset.gateway.app import create_app
from tierset.gateway.connections import guarded_protocol
from tierset.ops import metrics
from tierset.ops.config import Config
from tierset.ops.workers import stop_with_parent

log = logging.getLogger("tierset.gateway")


def split_address(address: str) -> tuple[str, int]:
    """("host", port) from "host:port" or "[v6]:port"."""
    host, _, port = address.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


class GatewayServer(uvicorn.Server):
    """uvicorn without its own signal handling: whoever runs it decides when it stops."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield

    @property
    def port(self) -> int:
        """The port actually bound (useful when configured as 0)."""
        return int(self.servers[0].sockets[0].getsockname()[1])


def gateway_server(config: Config) -> GatewayServer:
    """A uvicorn server for the gateway on `config.http_address`; call ``serve()`` to run it."""
    host, port = split_address(config.http_address)
    return GatewayServer(
        uvicorn.Config(
            create_app(config),
            host=host,
            port=port,
            lifespan="on",
            # httptools, within the connection limits (gateway/connections.py).
            http=guarded_protocol(config),
            timeout_keep_alive=config.http_keepalive_timeout_seconds,
            log_config=None,  # the process's logging is configured once, by the CLI
            access_log=False,  # the envelope logs each request with its id
            server_header=False,
            ws="none",
            # X-Forwarded-For is believed only from the configured proxies (none by
            # default): from anyone else it would let a client choose its own address.
            proxy_headers=bool(config.gateway_trusted_proxies),
            forwarded_allow_ips=list(config.gateway_trusted_proxies),
            timeout_graceful_shutdown=int(config.shutdown_grace_seconds) or 1,
        )
    )


async def serve(config: Config) -> None:
    """Serves the gateway until SIGTERM or SIGINT, then finishes in-flight requests."""
    server = gateway_server(config)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, setattr, server, "should_exit", True)
    log.info("serving REST on %s, calling gRPC at %s", config.http_address, config.grpc_target)
    endpoint = metrics.serve_if_configured(
        config.gateway_metrics_address, registry=metrics.gateway_registry()
    )
    try:
        await server.serve()
    finally:
        if endpoint is not None:
            endpoint.stop()
    log.info("gateway stopped")


def local_target(grpc_address: str) -> str:
    """Where a process on this machine reaches a server listening on `grpc_address`."""
    host, port = split_address(grpc_address)
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 - a listen address, turned into a target
        host = "127.0.0.1"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclasses.dataclass
class GatewayChild:
    """The gateway process `gateway_child` runs; `died` is its exit code when it ended on
    its own, before the block did (None while it serves, or when the block stopped it)."""

    process: subprocess.Popen[bytes]
    died: int | None = None


@contextlib.contextmanager
def gateway_child(
    config: Config, extra_env: dict[str, str] | None = None
) -> Iterator[GatewayChild]:
    """Runs ``tierset gateway`` as a separate process calling this process's gRPC server,
    with `extra_env` added to its environment (the console's OAuth client, in `tierset dev`).

    It is stopped with SIGTERM (then killed after the grace period) when the block ends,
    and only then: it runs in a session of its own, so a Ctrl-C at the terminal reaches
    this process alone. If the child ends on its own first (killed, crashed, or its port
    taken), this process gets SIGTERM, so that it stops as on Ctrl-C rather than serve
    gRPC on without its REST half, as TIERSET_PROCESSES' supervisor stops the group when a
    worker dies. It is not started again from here: forking a process full of gRPC's
    threads is unsafe.
    """
    # The child inherits this environment (its configuration), aimed at our gRPC address,
    # minus the database's: the gateway never touches it, so it does not hold its password.
    env = {
        name: value
        for name, value in os.environ.items()
        if name != "DATABASE_URL" and not name.startswith("PG")
    }
    env["TIERSET_GRPC_TARGET"] = local_target(config.grpc_address)
    env.update(extra_env or {})
    # The child dies with us even if we are killed outright and never reach the `finally`.
    child = GatewayChild(
        subprocess.Popen(
            [sys.executable, "-m", "tierset.cli", "gateway"],
            env=env,
            preexec_fn=stop_with_parent,
            start_new_session=True,
        )
    )
    stopping = threading.Event()

    def watch() -> None:
        code = child.process.wait()
        if not stopping.is_set():
            child.died = code
            log.error("the REST gateway exited with code %d; stopping", code)
            os.kill(os.getpid(), signal.SIGTERM)

    watcher = threading.Thread(target=watch, name="gateway-watch", daemon=True)
    watcher.start()
    try:
        yield child
    finally:
        stopping.set()
        if child.process.poll() is None:
            child.process.terminate()
            try:
                child.process.wait(timeout=config.shutdown_grace_seconds + 5)
            except subprocess.TimeoutExpired:
                log.warning("gateway did not stop in time; killing it")
                child.process.kill()
                child.process.wait()
        watcher.join(timeout=1)
