"""Kubernetes probes: /healthz (this process answers) and /readyz (the gRPC server serves)."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health_pb2
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tierset.gateway.calls import backend

# A probe must answer well within Kubernetes' default 1 s probe timeout.
READINESS_TIMEOUT_SECONDS = 0.8


async def healthz(request: Request) -> Response:
    """GET /healthz: 200 while the process can answer at all."""
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    """GET /readyz: 200 when grpc.health.v1 on the server says SERVING, else 503."""
    timeout = min(READINESS_TIMEOUT_SECONDS, backend(request).deadline_seconds)
    try:
        reply = await backend(request).health.Check(
            health_pb2.HealthCheckRequest(service=""), timeout=timeout
        )
        serving = reply.status == health_pb2.HealthCheckResponse.SERVING
    except grpc.aio.AioRpcError:
        serving = False
    if serving:
        return JSONResponse({"status": "ready"})
    return JSONResponse({"status": "not ready"}, status_code=503)
