"""Optional OpenTelemetry tracing: spans for requests, SQL statements and storage calls,
sent over OTLP/HTTP (protobuf) to a collector (``docs/health.md``).

Off by default (``trace_enabled``). When off nothing here runs: no middleware is
installed, no engine event is listened to, no storage method is wrapped, and the
OpenTelemetry packages are never imported (they come with ``pip install
'dockyard[tracing]'``). When on, each process has its own tracer provider (none is set
globally, so two apps in one process keep apart), with a batching exporter thread that
is flushed when the app stops.

- Requests: :class:`TracingMiddleware`, a pure ASGI middleware; it continues a trace a
  caller started (W3C ``traceparent``) and makes its span current, so everything the
  request does is its child. The probes (``/livez``, ``/readyz``) are not traced.
- SQL: SQLAlchemy's cursor events on the engines, one span per statement, a child of
  whatever span is current (a request, or nothing in a job worker).
- Storage: the driver's methods are wrapped on the instance (so ``isinstance`` checks
  still see the driver), one span per call; streaming reads end their span when the
  stream ends.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy import event
from sqlalchemy.engine import Engine
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dockyard.db.engine import Database
from dockyard.errors import ConfigurationError
from dockyard.settings import Settings, tracing_installed
from dockyard.storage import Storage

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span, Tracer

INSTALL_HINT = "pip install 'dockyard[tracing]'"
UNTRACED_PATHS = frozenset({"/livez", "/readyz"})
_MAX_STATEMENT = 2048  # characters of SQL kept on a span
_SPAN_ATTRIBUTE = "_dockyard_span"  # set on SQLAlchemy's execution context

# Driver methods traced when the driver has them: coroutines, then async generators.
_STORAGE_CALLS = (
    "stat",
    "read_bytes",
    "write",
    "write_bytes",
    "delete",
    "move",
    "redirect_url",
    "begin",
    "append",
    "upload_size",
    "complete",
    "abort",
    "check",
    "delete_many",
    "stat_many",
)
_STORAGE_STREAMS = ("read", "list", "read_upload")


def open_tracing(settings: Settings) -> Tracing | None:
    """The process's tracing, or ``None`` when ``trace_enabled`` is off."""
    if not settings.trace_enabled:
        return None
    if not tracing_installed():
        raise ConfigurationError(
            f"trace_enabled is on but OpenTelemetry is not installed; run: {INSTALL_HINT}"
        )
    return Tracing(settings)


class Tracing:
    """One tracer provider and its OTLP exporter; instruments engines and a storage driver."""

    def __init__(self, settings: Settings) -> None:
        from opentelemetry.exporter.otlp.proto.http import Compression
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

        attributes: dict[str, str] = {
            **settings.trace_attributes,
            "service.name": settings.trace_service_name,
        }
        if settings.trace_namespace:
            attributes["service.namespace"] = settings.trace_namespace
        self.provider: TracerProvider = TracerProvider(
            resource=Resource.create(attributes),
            sampler=ParentBased(TraceIdRatioBased(settings.trace_sample_rate)),
        )
        exporter = OTLPSpanExporter(
            endpoint=settings.trace_otel_endpoint,
            timeout=settings.trace_otel_timeout_seconds,
            compression=(
                Compression.Gzip if settings.trace_otel_compression else Compression.NoCompression
            ),
        )
        self.provider.add_span_processor(BatchSpanProcessor(exporter))
        self.tracer: Tracer = self.provider.get_tracer("dockyard")

    def shutdown(self) -> None:
        """Send what is buffered and stop the exporter thread."""
        self.provider.shutdown()

    # --- SQL -------------------------------------------------------------------------

    def instrument_database(self, db: Database) -> None:
        engines = {id(e.sync_engine): e.sync_engine for e in (db.write_engine, db.read_engine)}
        for engine in engines.values():
            self._instrument_engine(engine, db.dialect)

    def _instrument_engine(self, engine: Engine, dialect: str) -> None:
        from opentelemetry.trace import SpanKind, StatusCode

        tracer = self.tracer

        def before(
            conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool
        ) -> None:
            verb = statement.lstrip().split(None, 1)[0].upper() if statement.strip() else "SQL"
            span = tracer.start_span(
                verb,
                kind=SpanKind.CLIENT,
                attributes={
                    "db.system.name": dialect,
                    "db.operation.name": verb,
                    "db.query.text": statement[:_MAX_STATEMENT],
                },
            )
            if context is not None:
                setattr(context, _SPAN_ATTRIBUTE, span)

        def after(
            conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool
        ) -> None:
            span = _statement_span(context)
            if span is not None:
                span.end()

        def failed(exception_context: Any) -> None:
            span = _statement_span(exception_context.execution_context)
            if span is not None:
                error = exception_context.original_exception
                span.record_exception(error)
                span.set_status(StatusCode.ERROR, type(error).__name__)
                span.end()

        event.listen(engine, "before_cursor_execute", before)
        event.listen(engine, "after_cursor_execute", after)
        event.listen(engine, "handle_error", failed)

    # --- storage ---------------------------------------------------------------------

    def instrument_storage(self, storage: Storage) -> None:
        driver = type(storage).__name__
        for name in _STORAGE_CALLS:
            method = getattr(storage, name, None)
            if method is not None and inspect.iscoroutinefunction(method):
                setattr(storage, name, self._traced_call(name, driver, method))
        for name in _STORAGE_STREAMS:
            method = getattr(storage, name, None)
            if method is not None:
                setattr(storage, name, self._traced_stream(name, driver, method))

    def _traced_call(
        self, name: str, driver: str, method: Callable[..., Any]
    ) -> Callable[..., Any]:
        tracer = self.tracer

        @functools.wraps(method)
        async def traced(*args: Any, **kwargs: Any) -> Any:
            with tracer.start_as_current_span(
                f"storage.{name}", attributes=_storage_attributes(driver, args)
            ):
                return await method(*args, **kwargs)

        return traced

    def _traced_stream(
        self, name: str, driver: str, method: Callable[..., AsyncIterator[bytes]]
    ) -> Callable[..., AsyncIterator[Any]]:
        from opentelemetry.trace import StatusCode

        tracer = self.tracer

        @functools.wraps(method)
        async def traced(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
            # Not made current: the span outlives each step of the consumer's iteration.
            span = tracer.start_span(
                f"storage.{name}", attributes=_storage_attributes(driver, args)
            )
            inner = method(*args, **kwargs)
            try:
                async for item in inner:
                    yield item
            except BaseException as exc:
                if isinstance(exc, Exception):
                    span.record_exception(exc)
                    span.set_status(StatusCode.ERROR, type(exc).__name__)
                raise
            finally:
                aclose = getattr(inner, "aclose", None)
                if aclose is not None:
                    await aclose()
                span.end()

        return traced


def _statement_span(context: Any) -> Span | None:
    if context is None:
        return None
    span: Span | None = getattr(context, _SPAN_ATTRIBUTE, None)
    if span is not None:
        setattr(context, _SPAN_ATTRIBUTE, None)  # ended once, by success or by failure
    return span


def _storage_attributes(driver: str, args: tuple[Any, ...]) -> dict[str, str]:
    attributes = {"dockyard.storage.driver": driver}
    if args and isinstance(args[0], str):
        attributes["dockyard.storage.key"] = args[0]
    return attributes


class TracingMiddleware:
    """One server span per HTTP request, continuing the caller's trace when it sent one."""

    def __init__(self, app: ASGIApp, tracer: Tracer) -> None:
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self.app = app
        self.tracer = tracer
        self.propagator = TraceContextTextMapPropagator()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in UNTRACED_PATHS:
            await self.app(scope, receive, send)
            return
        from opentelemetry.trace import SpanKind, StatusCode

        headers: Mapping[str, str] = {
            key.decode("latin-1"): value.decode("latin-1")
            for key, value in scope.get("headers", ())
            if key in (b"traceparent", b"tracestate")
        }
        parent = self.propagator.extract(headers) if headers else None
        method = scope["method"]
        with self.tracer.start_as_current_span(
            f"{method} {_route_family(scope['path'])}",
            context=parent,
            kind=SpanKind.SERVER,
            attributes={
                "http.request.method": method,
                "url.path": scope["path"],
                "url.scheme": scope.get("scheme", "http"),
            },
            record_exception=True,
            set_status_on_exception=True,
        ) as span:
            request_id = scope.get("state", {}).get("request_id")
            if request_id:
                span.set_attribute("dockyard.request_id", request_id)

            async def send_traced(message: Message) -> None:
                if message["type"] == "http.response.start":
                    status = int(message["status"])
                    span.set_attribute("http.response.status_code", status)
                    if status >= 500:
                        span.set_status(StatusCode.ERROR)
                await send(message)

            await self.app(scope, receive, send_traced)


def _route_family(path: str) -> str:
    """A low-cardinality name for the span: the face the path belongs to."""
    for prefix in ("/api/v2.0", "/v2", "/service/token", "/harbor", "/c"):
        if path == prefix or path.startswith(prefix + "/"):
            return prefix
    return "/"
