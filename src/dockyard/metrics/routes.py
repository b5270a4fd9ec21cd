"""``GET /metrics``: on the main port (a Starlette route) or on a listener of its own
(``metrics_port``), in Prometheus' text format.

The listener is a minimal HTTP/1.1 server on the event loop of each worker, bound with
``SO_REUSEPORT`` like Granian's own socket: whichever worker the kernel hands a scrape to
answers it, and with the multiprocess files every worker's answer holds the sums of all.
It answers one request per connection (Prometheus opens a new one per scrape when told
``Connection: close``) and nothing but the metrics path.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from dockyard.db.engine import Database
from dockyard.metrics import multiprocess
from dockyard.metrics.middleware import RequestMetrics
from dockyard.metrics.service import BusinessMetrics
from dockyard.settings import Settings

log = logging.getLogger("dockyard.metrics")

_MAX_HEAD = 16 * 1024
_READ_TIMEOUT = 10.0


class MetricsExposition:
    """What a scrape answers: the request metrics (this process's, or every worker's in
    multiprocess mode) and the business gauges (read from the database, cached)."""

    def __init__(self, settings: Settings, requests: RequestMetrics) -> None:
        self.requests = requests
        self.path = settings.metrics_path
        self.token = settings.metrics_token
        self.cache_seconds = settings.metrics_cache_seconds
        self.business: BusinessMetrics | None = None
        self.registry = CollectorRegistry(auto_describe=False)
        self.directory = multiprocess.directory()
        if self.directory is not None:
            MultiProcessCollector(self.registry, path=str(self.directory))  # type: ignore[no-untyped-call]
        else:
            requests.register(self.registry)

    def open(self, db: Database) -> None:
        """Read the business gauges from ``db`` (the app's, once its lifespan opened it)."""
        self.business = BusinessMetrics(db, self.cache_seconds)
        self.registry.register(self.business)

    def authorized(self, authorization: str | None) -> bool:
        """True without ``metrics_token``; else the request must carry ``Bearer <token>``."""
        if not self.token:
            return True
        scheme, _, credentials = (authorization or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            credentials.strip().encode(), self.token.encode()
        )

    async def render(self) -> bytes:
        self.requests.flush()
        if self.business is not None:
            await self.business.refresh()
        if self.directory is not None:
            multiprocess.forget_dead_workers(self.directory)
        return generate_latest(self.registry)


async def flush_every(requests: RequestMetrics, seconds: float = 1.0) -> None:
    """Flush the request tallies every ``seconds`` (a worker's task, until cancelled), so a
    scrape answered by another worker sees this one's requests within that delay."""
    try:
        while True:
            await asyncio.sleep(seconds)
            requests.flush()
    finally:
        requests.flush()


_UNAUTHORIZED_HEADERS = {"WWW-Authenticate": 'Bearer realm="metrics"'}


def metrics_routes(exposition: MetricsExposition) -> list[Route]:
    """The route serving metrics on the main port."""

    async def metrics(request: Request) -> Response:
        if not exposition.authorized(request.headers.get("authorization")):
            return PlainTextResponse("unauthorized\n", 401, headers=_UNAUTHORIZED_HEADERS)
        body = await exposition.render()
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return [Route(exposition.path, metrics, methods=["GET"])]


# --- the listener of its own --------------------------------------------------------------


def _answer(status: str, body: bytes, content_type: str, extra: str = "") -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n{extra}Connection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body


def _text(status: str, message: str, extra: str = "") -> bytes:
    return _answer(status, message.encode() + b"\n", "text/plain; charset=utf-8", extra)


async def _response_to(exposition: MetricsExposition, head: bytes) -> bytes:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        return _text("400 Bad Request", "bad request")
    method, target, _ = parts
    authorization = None
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep and name.strip().lower() == "authorization":
            authorization = value.strip()
    if target.partition("?")[0] != exposition.path:
        return _text("404 Not Found", "not found")
    if method not in ("GET", "HEAD"):
        return _text("405 Method Not Allowed", "method not allowed", "Allow: GET, HEAD\r\n")
    if not exposition.authorized(authorization):
        return _text(
            "401 Unauthorized", "unauthorized", 'WWW-Authenticate: Bearer realm="metrics"\r\n'
        )
    body = await exposition.render()
    answer = _answer("200 OK", body, CONTENT_TYPE_LATEST)
    if method == "HEAD":
        answer = answer[: len(answer) - len(body)]
    return answer


async def start_listener(exposition: MetricsExposition, host: str, port: int) -> asyncio.Server:
    """Serve metrics on ``host:port`` until the returned server is closed."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _READ_TIMEOUT)
            except asyncio.LimitOverrunError:
                writer.write(_text("431 Request Header Fields Too Large", "headers too large"))
            except (asyncio.IncompleteReadError, TimeoutError):
                return
            else:
                writer.write(await _response_to(exposition, head))
            await writer.drain()
        except Exception:  # a scrape that fails must not take the worker's loop with it
            log.exception("metrics listener: answering a scrape failed")
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    return await asyncio.start_server(handle, host, port, reuse_port=True, limit=_MAX_HEAD)
