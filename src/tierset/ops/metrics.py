"""Prometheus metrics: the series both processes export, and the endpoint serving them.

The endpoint runs on a port of its own (``TIERSET_METRICS_ADDRESS`` for the server,
``TIERSET_GATEWAY_METRICS_ADDRESS`` for the gateway), in a thread, so a scrape never waits
behind API traffic. The gRPC series follow go-grpc-prometheus's names and labels, so
existing dashboards work unchanged. Pool gauges are read from the asyncpg pool when
Prometheus scrapes, not sampled.
"""

from __future__ import annotations

import logging
import math
import time
from bisect import bisect_left
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    start_http_server,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

if TYPE_CHECKING:  # the gateway exports metrics too, and has no database driver
    import asyncpg

log = logging.getLogger(__name__)

# Latency buckets from 1 ms to 10 s: a settings read is milliseconds, a timeout is 5 s.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class LoopCounter(Collector):
    """An unlabelled counter (``<name>_total`` and ``<name>_created``, as
    prometheus_client's Counter exposes them) bumped as ``COUNTER.value += 1``.

    For counts the event loop's thread bumps on every call, where prometheus_client's
    Counter costs a lock and four Python calls. The loop's thread is the only writer
    (one call's code at a time), so the count is exact; a scrape only reads it.
    """

    def __init__(self, name: str, documentation: str, registry: CollectorRegistry = REGISTRY):
        self.name = name
        self.documentation = documentation
        self.value = 0
        self._created = time.time()
        registry.register(self)

    def describe(self) -> Iterator[Metric]:
        yield CounterMetricFamily(self.name, self.documentation)

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self.name, self.documentation)
        family.add_metric([], float(self.value), created=self._created)
        yield family


class MethodSeries:
    """One gRPC method's share of :class:`CallSeries`: its calls by code, and its latency."""

    __slots__ = ("_created", "buckets", "created", "handled", "labels", "sum")

    def __init__(self, service: str, method: str) -> None:
        self.labels = (service, method)
        now = time.time()
        self._created = now
        # By status code; OK from the start, so a method's series exist before its first call.
        self.handled: dict[str, int] = {"OK": 0}
        self.created: dict[str, float] = {"OK": now}
        # Per bucket of LATENCY_BUCKETS and one past the last (+Inf), not cumulative.
        self.buckets = [0] * (len(LATENCY_BUCKETS) + 1)
        self.sum = 0.0

    def record(self, code_name: str, seconds: float) -> None:
        """Counts one finished call and its latency (from the event loop's thread)."""
        handled = self.handled
        count = handled.get(code_name)
        if count is None:  # at most one per status code: a bounded set
            self.created[code_name] = time.time()
            handled[code_name] = 1
        else:
            handled[code_name] = count + 1
        self.buckets[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.sum += seconds


class CallSeries(Collector):
    """The gRPC series, ``grpc_server_handled_total`` and ``grpc_server_handling_seconds``,
    exposed as prometheus_client's Counter and Histogram would expose them.

    Every call records itself once, in :meth:`MethodSeries.record`: a few dict and list
    operations, where prometheus_client's Counter and Histogram took three locks and about
    a dozen Python calls, the largest share of a cached read's own Python. The call
    pipeline records from the event loop's thread only, one call's code at a time, so the
    numbers are exact; a scrape (in the metrics thread) copies them first, and copying a
    dict or list of numbers holds the GIL throughout.
    """

    HANDLED = "grpc_server_handled"
    SECONDS = "grpc_server_handling_seconds"
    HANDLED_HELP = "gRPC calls completed by the server, by method and status code."
    SECONDS_HELP = "Time the server spent on a gRPC call, until its status was sent."

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self._methods: dict[str, MethodSeries] = {}
        registry.register(self)

    def method(self, full_method: str) -> MethodSeries:
        """The series of ``/pkg.Service/Method`` (made on first use, then kept)."""
        found = self._methods.get(full_method)
        if found is None:
            found = self._methods[full_method] = MethodSeries(*split_method(full_method))
        return found

    def describe(self) -> Iterator[Metric]:
        yield CounterMetricFamily(self.HANDLED, self.HANDLED_HELP)
        yield Metric(self.SECONDS, self.SECONDS_HELP, "histogram")

    def collect(self) -> Iterator[Metric]:
        handled = CounterMetricFamily(
            self.HANDLED, self.HANDLED_HELP, labels=["grpc_service", "grpc_method", "grpc_code"]
        )
        seconds = Metric(self.SECONDS, self.SECONDS_HELP, "histogram")
        for series in list(self._methods.values()):
            service, method = series.labels
            created = dict(series.created)
            for code, count in list(series.handled.items()):
                handled.add_metric([service, method, code], float(count), created=created[code])
            labels = {"grpc_service": service, "grpc_method": method}
            buckets, total = list(series.buckets), series.sum
            seen = 0
            for bound, count in zip((*LATENCY_BUCKETS, math.inf), buckets, strict=True):
                seen += count
                le = floatToGoString(bound)
                seconds.add_sample(f"{self.SECONDS}_bucket", {**labels, "le": le}, float(seen))
            seconds.add_sample(f"{self.SECONDS}_count", labels, float(seen))
            seconds.add_sample(f"{self.SECONDS}_sum", labels, total)
            seconds.add_sample(f"{self.SECONDS}_created", labels, series._created)
        yield handled
        yield seconds


RPC_CALLS = CallSeries()
HTTP_REQUESTS = Counter(
    "http_server_requests",
    "HTTP requests the gateway answered, by method, route template and status.",
    ["method", "route", "status"],
)
HTTP_REQUEST_SECONDS = Histogram(
    "http_server_request_duration_seconds",
    "Time the gateway spent on an HTTP request, until the response was sent.",
    ["method", "route"],
    buckets=LATENCY_BUCKETS,
)
CACHE_HITS = LoopCounter("tierset_cache_hits", "Setting reads answered from the read cache.")
CACHE_MISSES = LoopCounter("tierset_cache_misses", "Setting reads the read cache had to pass on.")
CACHE_INVALIDATIONS = LoopCounter(
    "tierset_cache_invalidations", "Read-cache entries dropped because a write changed them."
)
AUTH_FAILURES = Counter(
    "tierset_auth_failures",
    "Calls refused for missing or bad credentials, or for lack of permission, by reason.",
    ["reason"],
)
AUTH_THROTTLED = Counter(
    "tierset_auth_throttled",
    "Sign-ins refused by the password-guess throttle, by the limit that held them: "
    "user_source, source or user.",
    ["limit"],
)
PASSWORD_CHECKS_REFUSED = Counter(
    "tierset_password_checks_refused",
    "Password checks refused for want of room in the hashing memory budget, by why: "
    "too many already waiting (queue_full) or no slot freed in time (wait_timeout).",
    ["why"],
)


def gateway_registry() -> CollectorRegistry:
    """What the gateway's endpoint serves: its HTTP series and its process's resources.

    The server-side families (gRPC, pool, cache, auth) live in the same module but never
    move in a gateway process; leaving them out keeps its scrape free of misleading zeros.
    """
    registry = CollectorRegistry(auto_describe=True)
    for collector in (
        HTTP_REQUESTS,
        HTTP_REQUEST_SECONDS,
        PROCESS_COLLECTOR,
        PLATFORM_COLLECTOR,
        GC_COLLECTOR,
    ):
        registry.register(collector)
    return registry


def split_method(full_method: str) -> tuple[str, str]:
    """``/pkg.Service/Method`` as (``pkg.Service``, ``Method``)."""
    service, _, method = full_method.lstrip("/").rpartition("/")
    return service or "unknown", method or "unknown"


def pool_waiting(pool: asyncpg.Pool) -> int:
    """How many callers are waiting in ``pool.acquire()`` for a connection.

    asyncpg has no public call for this; its free connections sit in an asyncio queue
    (``Pool._queue``) whose waiting getters are the callers. tests/test_metrics.py pins it.
    """
    getters = getattr(getattr(pool, "_queue", None), "_getters", None) or ()
    return sum(1 for waiter in list(getters) if not waiter.done())


class PoolCollector(Collector):
    """Reports an asyncpg pool's connections when Prometheus scrapes."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    def collect(self) -> Iterator[Metric]:
        connections = GaugeMetricFamily(
            "tierset_db_pool_connections",
            "Open PostgreSQL connections in the pool: in use by a call, or idle.",
            labels=["state"],
        )
        size, idle = self._pool.get_size(), self._pool.get_idle_size()
        connections.add_metric(["in_use"], size - idle)
        connections.add_metric(["idle"], idle)
        yield connections
        yield GaugeMetricFamily(
            "tierset_db_pool_waiting",
            "Calls waiting for a free pool connection (non-zero means the pool is too small).",
            value=pool_waiting(self._pool),
        )
        yield GaugeMetricFamily(
            "tierset_db_pool_max_connections",
            "The pool's size limit (TIERSET_POOL_MAX_SIZE).",
            value=self._pool.get_max_size(),
        )


def split_address(address: str) -> tuple[str, int]:
    """``host:port`` (or ``[v6]:port``) as (host, port)."""
    host, _, port = address.rpartition(":")
    return host.strip("[]") or "0.0.0.0", int(port)  # noqa: S104 - a bare ":9090" means all


@dataclass
class MetricsServer:
    """A running ``/metrics`` endpoint (any path answers with the exposition)."""

    httpd: WSGIServer
    registry: CollectorRegistry
    collectors: list[Collector] = field(default_factory=list)

    @property
    def port(self) -> int:
        """The port it listens on (useful when it was asked for port 0)."""
        return int(self.httpd.server_address[1])

    def stop(self) -> None:
        """Stops serving and forgets the pool it reported on."""
        self.httpd.shutdown()
        self.httpd.server_close()
        for collector in self.collectors:
            self.registry.unregister(collector)


def start_metrics_server(
    address: str, pool: asyncpg.Pool | None = None, registry: CollectorRegistry = REGISTRY
) -> MetricsServer:
    """Serves `registry` (plus `pool`'s gauges) over HTTP on `address`, in a thread."""
    host, port = split_address(address)
    collectors: list[Collector] = []
    if pool is not None:
        collector = PoolCollector(pool)
        registry.register(collector)
        collectors.append(collector)
    try:
        httpd, _thread = start_http_server(port, addr=host, registry=registry)
    except BaseException:
        for registered in collectors:
            registry.unregister(registered)
        raise
    return MetricsServer(httpd, registry, collectors)


def serve_if_configured(
    address: str, pool: asyncpg.Pool | None = None, registry: CollectorRegistry = REGISTRY
) -> MetricsServer | None:
    """The endpoint on `address`, or None when it is empty (switched off) or cannot bind.

    A port already in use is logged, not fatal: metrics must never keep the API down. The
    address itself is well formed: Config checked it.
    """
    if not address:
        return None
    try:
        endpoint = start_metrics_server(address, pool, registry)
    except OSError as error:
        log.error("cannot serve metrics on %s: %s", address, error)
        return None
    log.info("serving metrics on %s", address)
    return endpoint


# ASGI types, spelled out so this module needs no web framework.
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

UNMATCHED_ROUTE = "unmatched"


def starlette_route(scope: Scope) -> str:
    """The template of the Starlette route that matches `scope` (``/v1/settings/{key}``).

    A template, never the raw path: a label per distinct path would grow without bound.
    """
    route = scope.get("route")
    if route is not None and hasattr(route, "path"):
        return str(route.path)
    partial = None
    for candidate in getattr(scope.get("app"), "routes", ()):
        match, _ = candidate.matches(scope)
        if match.name == "FULL":
            return str(candidate.path)
        if match.name == "PARTIAL" and partial is None:
            partial = str(candidate.path)  # the path matched, the method did not: a 405
    return partial or UNMATCHED_ROUTE


# Any other method a client invents is counted as OTHER: labels must stay a bounded set.
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def method_label(method: str) -> str:
    """`method` as a label value: a standard method, else ``OTHER``."""
    return method if method in HTTP_METHODS else "OTHER"


class HttpMetricsMiddleware:
    """ASGI middleware counting requests and timing them by method, route and status.

    Wrap the gateway's Starlette app with it (outermost, so error responses count too):
    ``app = HttpMetricsMiddleware(app)``.
    """

    def __init__(self, app: ASGIApp, route_of: Callable[[Scope], str] = starlette_route) -> None:
        self._app = app
        self._route_of = route_of

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the server sends when the app fails before starting a response

        async def send_and_note_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self._app(scope, receive, send_and_note_status)
        finally:
            method, route = method_label(scope.get("method", "GET")), self._route_of(scope)
            HTTP_REQUESTS.labels(method, route, str(status)).inc()
            HTTP_REQUEST_SECONDS.labels(method, route).observe(time.perf_counter() - started)


# Watch (services/watch.py): streams open now, what they were sent, and why any ended early.
WATCH_STREAMS = Gauge("tierset_watch_streams", "WatchSettings streams open in this process.")
WATCH_MESSAGES = Counter(
    "tierset_watch_messages",
    "Watch messages sent, by kind: SNAPSHOT, EVENTS or PROGRESS.",
    ["kind"],
)
WATCH_EVENTS = Counter("tierset_watch_events", "Setting events sent to watchers.")
WATCH_DROPS = Counter(
    "tierset_watch_drops",
    "Watch streams the server ended, by why: overflow (a slow consumer), shutdown, "
    "compacted (the hub lost more history than the log holds) or credentials.",
    ["why"],
)
