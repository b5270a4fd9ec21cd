"""Request metrics: a pure ASGI middleware doing a few dict updates per request.

Requests to ``/v2/`` are counted as the distribution registry counts them
(``registry_http_*``, labelled by its handler names), every other request as Harbor's core
counts them (``harbor_core_http_*``, labelled by the operation: the swagger ``operationId``
of an ``/api/v2.0`` operation, else the route's path template). Labels never hold a raw path,
so their number stays bounded whatever clients send.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

OTHER = "other"
"""The operation of a request no route answered (a 404 outside ``/api/v2.0``)."""


_HANDLERS = {
    "blobs": "blob",
    "manifests": "manifest",
    "tags": "tags",
    "referrers": "referrers",
}


def registry_handler(path: str) -> str:
    """The distribution registry's handler name for a ``/v2/`` path (``base``, ``catalog``,
    ``tags``, ``manifest``, ``blob``, ``blob_upload``, ``blob_upload_chunk``, and
    ``referrers``), from its last two segments: ``/v2/<name>/<kind>/<reference>``."""
    rest, _, last = path.rpartition("/")
    if rest == "":  # /v2
        return "base"
    if rest == "/v2":
        return "base" if last == "" else "catalog" if last == "_catalog" else OTHER
    kind = rest[rest.rfind("/") + 1 :]
    if kind == "uploads":
        return "blob_upload" if last == "" else "blob_upload_chunk"
    if last == "uploads" and rest.endswith("/blobs"):  # POST …/blobs/uploads (no slash)
        return "blob_upload"
    return _HANDLERS.get(kind, OTHER)


class RequestMetrics:
    """The request metrics of one app: tallied in plain dicts on the request path, added to
    ``prometheus_client``'s objects by ``flush()`` (every second, and before each scrape).

    A ``prometheus_client`` update takes a lock and, in multiprocess mode, writes a mapped
    file: about 3 µs for a counter or a histogram in memory, more with files, which is a
    tax on every blob GET. A dict update costs a tenth of that, and a flush does one update
    per label set however many requests it covers.

    The objects are made with ``registry=None``: in multiprocess mode
    (``PROMETHEUS_MULTIPROC_DIR``) their values live in per-process files that the
    exposition sums; otherwise ``register`` adds them to the registry a scrape renders."""

    def __init__(self) -> None:
        self.core_total = Counter(
            "harbor_core_http_request",
            "Requests answered, other than /v2/",
            ["method", "operation", "code"],
            registry=None,
        )
        self.core_duration = Histogram(
            "harbor_core_http_request_duration_seconds",
            "Time to answer a request, other than /v2/",
            ["method", "operation"],
            registry=None,
        )
        self.core_inflight = Gauge(
            "harbor_core_http_inflight_requests",
            "Requests being answered, other than /v2/",
            ["operation"],
            registry=None,
            multiprocess_mode="livesum",
        )
        self.registry_total = Counter(
            "registry_http_requests",
            "Registry (/v2/) requests answered",
            ["code", "handler", "method"],
            registry=None,
        )
        self.registry_duration = Histogram(
            "registry_http_request_duration_seconds",
            "Time to answer a registry (/v2/) request",
            ["handler", "method"],
            registry=None,
        )
        self.registry_inflight = Gauge(
            "registry_http_in_flight_requests",
            "Registry (/v2/) requests being answered",
            ["handler"],
            registry=None,
            multiprocess_mode="livesum",
        )
        self.bounds = tuple(Histogram.DEFAULT_BUCKETS)  # ends with +Inf
        # Tallies since the last flush: (v2, method, label, code) -> requests;
        # (v2, method, label) -> [count per bucket..., sum of seconds];
        # (v2, label) -> requests in flight now (kept, not reset, by flush).
        self.answered: dict[tuple[bool, str, str, int], int] = {}
        self.durations: dict[tuple[bool, str, str], list[float]] = {}
        self.inflight: dict[tuple[bool, str], int] = {}
        self._flushed_inflight: dict[tuple[bool, str], int] = {}

    def register(self, registry: CollectorRegistry) -> None:
        for metric in (
            self.core_total,
            self.core_duration,
            self.core_inflight,
            self.registry_total,
            self.registry_duration,
            self.registry_inflight,
        ):
            registry.register(metric)

    def done(self, v2: bool, method: str, label: str, code: int, seconds: float) -> None:
        """Tally one answered request (dict updates only)."""
        key = (v2, method, label, code)
        self.answered[key] = self.answered.get(key, 0) + 1
        tally = self.durations.get(key[:3])
        if tally is None:
            tally = self.durations[key[:3]] = [0.0] * (len(self.bounds) + 1)
        tally[bisect_left(self.bounds, seconds)] += 1
        tally[-1] += seconds

    def flush(self) -> None:
        """Add the tallies to the Prometheus objects (and so to this process's files)."""
        answered, self.answered = self.answered, {}
        durations, self.durations = self.durations, {}
        for (v2, method, label, code), count in answered.items():
            if v2:
                self.registry_total.labels(str(code), label, method).inc(count)
            else:
                self.core_total.labels(method, label, str(code)).inc(count)
        for (v2, method, label), tally in durations.items():
            if v2:
                child = self.registry_duration.labels(label, method)
            else:
                child = self.core_duration.labels(method, label)
            add_observations(child, tally)
        for key, now in list(self.inflight.items()):
            if self._flushed_inflight.get(key) != now:
                v2, label = key
                gauge = self.registry_inflight if v2 else self.core_inflight
                gauge.labels(label).set(now)
                self._flushed_inflight[key] = now


def add_observations(child: Histogram, tally: Sequence[float]) -> None:
    """Add ``tally`` (a count per bucket, then the sum) to a histogram's labelled child.

    ``Histogram`` has no public call to add many observations at once; its child keeps one
    value per bucket (``_buckets``, not cumulative) and the sum (``_sum``), as ``observe``
    updates them. ``tests/unit/test_metrics_units.py`` checks this matches ``observe``."""
    buckets = child._buckets
    for index, count in enumerate(tally[:-1]):
        if count:
            buckets[index].inc(count)
    child._sum.inc(tally[-1])


_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OPERATION_KEY = "dockyard.operation"
"""Where an instrumented route leaves its label in the scope for ``MetricsMiddleware``."""


def route_label(route: BaseRoute) -> str | None:
    """A route's operation label: Harbor's ``operationId`` for an ``/api/v2.0`` operation
    (``ApiRoute.operation``), else its path template; None for a route of another kind."""
    operation = getattr(route, "operation", None)
    operation_id = getattr(operation, "operation_id", None)
    if isinstance(operation_id, str):
        return operation_id
    if isinstance(route, Route):
        return route.path
    if isinstance(route, Mount):
        return route.path + "/{path}"
    return None


class _InstrumentedRoute:
    """A route's ASGI app that names its operation and counts it in flight (the gauge's
    series appears with the operation's first request, as the counters' do)."""

    def __init__(self, app: ASGIApp, label: str, metrics: RequestMetrics) -> None:
        self.app = app
        self.label = label
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope[OPERATION_KEY] = self.label
        inflight = self.metrics.inflight
        key = (False, self.label)
        inflight[key] = inflight.get(key, 0) + 1
        try:
            await self.app(scope, receive, send)
        finally:
            inflight[key] -= 1


def instrument_routes(routes: Sequence[BaseRoute], metrics: RequestMetrics) -> None:
    """Wrap each route's app (in place) so requests are labelled by operation, never by their
    raw path. Done once when the app is built; a route answers as before."""
    for route in routes:
        label = route_label(route)
        if label is not None and isinstance(route, Route | Mount):
            route.app = _InstrumentedRoute(route.app, label, metrics)


class MetricsMiddleware:
    """Tallies each HTTP request once it is answered (and, for ``/v2/``, while in flight):
    a few dict updates; ``RequestMetrics.flush`` turns them into Prometheus values."""

    def __init__(self, app: ASGIApp, metrics: RequestMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        v2 = path.startswith("/v2/") or path == "/v2"
        method: str = scope["method"]
        if method not in _KNOWN_METHODS:  # a label per invented verb would be unbounded
            method = OTHER
        status = 500  # an exception that escapes answers 500 (the outer middleware sees to it)

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        metrics = self.metrics
        if v2:
            handler = registry_handler(path)
            inflight = metrics.inflight
            key = (True, handler)
            inflight[key] = inflight.get(key, 0) + 1
        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_status)
        finally:
            seconds = time.perf_counter() - started
            if v2:
                inflight[key] -= 1
                metrics.done(True, method, handler, status, seconds)
            else:
                metrics.done(False, method, scope.get(OPERATION_KEY, OTHER), status, seconds)
