"""`make bench` never hangs: each step has a limit, and helpers start without a fork.

The benchmark once hung forever on a fresh machine: the main thread sat in ``fork()``
inside uvloop's subprocess spawn while gRPC's threads were live. These tests hold the
two guards bench/run.py puts in place of that (issue 11, defect 2).
"""

from __future__ import annotations

import ast
import asyncio
import importlib.util
import sys
from pathlib import Path

import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

BENCH_RUN = Path(__file__).resolve().parent.parent / "bench" / "run.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_run", BENCH_RUN)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


async def test_a_step_past_its_limit_fails_naming_the_step(bench):
    with pytest.raises(bench.StepTimeout, match="'stuck on purpose' did not finish within"):
        async with bench.step("stuck on purpose", 0.2):
            await asyncio.sleep(30)


async def test_a_step_within_its_limit_passes_through(bench):
    async with bench.step("quick", 5):
        await asyncio.sleep(0)


async def test_a_helper_starts_and_ends_while_a_grpc_stream_is_open(bench, anonymous_channel):
    # The hang's conditions: a live channel, gRPC's threads serving a call in flight.
    watch = health_pb2_grpc.HealthStub(anonymous_channel).Watch(
        health_pb2.HealthCheckRequest(service="")
    )
    assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING
    child = bench.launch([sys.executable, "-c", "print('helper ran')"])
    assert await bench.finished(child, limit_seconds=30) == 0
    watch.cancel()


def test_the_bench_never_uses_the_event_loops_forking_subprocesses():
    calls = {
        node.func.attr
        for node in ast.walk(ast.parse(BENCH_RUN.read_text()))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
    }
    assert not calls & {"create_subprocess_exec", "create_subprocess_shell", "fork"}
