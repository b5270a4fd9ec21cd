"""What the request metrics cost per request: the metrics middleware (and an instrumented
route) around a do-nothing ASGI app, against the same app bare.

Run from the repository root:

    .venv/bin/python bench/metrics_overhead_bench.py [--requests N] [--multiprocess]

``--multiprocess`` measures with ``PROMETHEUS_MULTIPROC_DIR`` set (values in mmap'd files,
as under ``dockyard serve``); without it, values live in memory. Prints microseconds per
request for a ``/v2/`` blob GET and an ``/api/v2.0`` operation, bare and measured.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from typing import Any


class _Bare:
    """A do-nothing ASGI app (a class, so a Starlette route calls it as ASGI)."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})


_bare = _Bare()


async def _time(app: Any, scope: dict[str, Any], requests: int) -> float:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: Any) -> None:
        return None

    for _ in range(1000):  # warm: label children resolved, files mapped
        await app(dict(scope), receive, send)
    started = time.perf_counter()
    for _ in range(requests):
        await app(dict(scope), receive, send)
    return (time.perf_counter() - started) / requests * 1e6


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--multiprocess", action="store_true")
    args = parser.parse_args()
    if args.multiprocess:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="metrics-bench-")
    # imported only now: prometheus_client reads PROMETHEUS_MULTIPROC_DIR when imported
    from starlette.routing import Route

    from dockyard.metrics.middleware import MetricsMiddleware, RequestMetrics, instrument_routes

    metrics = RequestMetrics()
    route = Route("/api/v2.0/projects", _bare)
    route.operation = type("Op", (), {"operation_id": "listProjects"})()  # type: ignore[attr-defined]
    instrument_routes([route], metrics)
    measured_route = route.app  # the instrumented route, as app.py builds it
    v2 = {"type": "http", "method": "GET", "path": "/v2/library/x/blobs/sha256:" + "a" * 64}
    api = {"type": "http", "method": "GET", "path": "/api/v2.0/projects"}
    mode = "multiprocess (mmap files)" if args.multiprocess else "in memory"
    print(f"{args.requests} requests per case, values {mode}, Python {sys.version.split()[0]}")
    for name, scope, inner in (("/v2/ blob GET", v2, _bare), ("/api/v2.0 op", api, measured_route)):
        bare = await _time(_bare, scope, args.requests)
        measured = await _time(MetricsMiddleware(inner, metrics), scope, args.requests)
        metrics.flush()  # the per-second flush, once per case here
        print(
            f"{name:>14}: bare {bare:5.2f} us, with metrics {measured:5.2f} us, "
            f"overhead {measured - bare:5.2f} us/request"
        )


if __name__ == "__main__":
    asyncio.run(main())
