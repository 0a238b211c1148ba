"""Several gateway processes on one HTTP port, to use more than one core.

With TIERSET_GATEWAY_PROCESSES=N (or ``tierset gateway --processes N``) the
command starts N processes that each run the whole gateway (its own event loop
and gRPC channel) on a socket of its own bound to the same address with
SO_REUSEPORT, so the kernel spreads new connections across them, as it does for
the gRPC server's workers. The parent supervises them exactly like those
(:func:`tierset.ops.workers.supervise`): SIGTERM stops every process gracefully; one
dying stops the rest.

The first process (number 0) also serves ``TIERSET_GATEWAY_METRICS_ADDRESS``, with
its own series (the requests the kernel gave it); the others do not try to bind it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket

from tierset.gateway.serve import gateway_server, split_address
from tierset.ops import metrics
from tierset.ops.config import Config
from tierset.ops.workers import die_with_parent, run_loop, supervise

log = logging.getLogger("tierset.gateway")


def reuseport_socket(address: str) -> socket.socket:
    """A TCP socket bound to `address` that other processes may bind too (SO_REUSEPORT)."""
    host, port = split_address(address)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


async def serve_shared(config: Config, *, serves_metrics: bool) -> None:
    """One of several gateway processes: serves on a SO_REUSEPORT socket until SIGTERM,
    and the metrics endpoint too when `serves_metrics`."""
    sock = reuseport_socket(config.http_address)
    server = gateway_server(config)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, setattr, server, "should_exit", True)
    log.info("serving REST on %s, calling gRPC at %s", config.http_address, config.grpc_target)
    endpoint = None
    try:
        if serves_metrics:
            endpoint = metrics.serve_if_configured(
                config.gateway_metrics_address, registry=metrics.gateway_registry()
            )
        await server.serve(sockets=[sock])
    finally:
        if endpoint is not None:
            endpoint.stop()
        sock.close()
    log.info("gateway stopped")


def _process_main(config: Config, parent_pid: int, number: int) -> None:
    from tierset.ops import logs  # a spawned child starts clean: configure its logging

    die_with_parent(parent_pid)
    logs.configure(config)
    run_loop(serve_shared(config, serves_metrics=number == 0))


def run_gateway_processes(config: Config) -> int:
    """Runs `config.gateway_processes` gateways on `config.http_address`; returns exit code.

    The port is fixed, not ":0": Config refuses that with several processes.
    """
    return supervise(
        _process_main,
        (config, os.getpid()),
        count=config.gateway_processes,
        grace=config.shutdown_grace_seconds,
        name="gateway",
        address=config.http_address,
        numbered=True,
    )
