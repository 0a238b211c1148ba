"""The framework's limit: a grpc.aio server that answers every call with fixed bytes.

Usage: ``python bench/bare_server.py PORT RESPONSE_FILE``. No protobuf
parsing, no handler logic, no database: what is left is gRPC itself on this
machine, on the same event loop (uvloop) as tierset's server.
"""

from __future__ import annotations

import sys
from pathlib import Path

import grpc
import uvloop


async def serve(port: int, response: bytes) -> None:
    async def echo(_request: bytes, _context: grpc.aio.ServicerContext) -> bytes:
        return response

    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                "bench.Bare", {"Answer": grpc.unary_unary_rpc_method_handler(echo)}
            )
        ]
    )
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


if __name__ == "__main__":
    uvloop.run(serve(int(sys.argv[1]), Path(sys.argv[2]).read_bytes()))
