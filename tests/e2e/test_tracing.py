"""OpenTelemetry tracing of a real ``dockyard serve``: spans reach an OTLP/HTTP receiver.

The receiver is a small HTTP server on loopback that keeps every ``POST /v1/traces``
body; the bodies are decoded with ``opentelemetry-proto``. A blob upload sent with a
W3C ``traceparent`` must come back as a server span continuing that trace, with the
SQL statements and storage calls it made as its children.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from tests.support.postgres import postgres_admin_url, temporary_database
from tests.support.seaweedfs import storage_under_test
from tests.support.server import DockyardServer

WITHIN = 60.0


@dataclass
class Receiver:
    url: str
    bodies: list[bytes] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)

    def spans(self) -> list[tuple[dict[str, str], Span]]:
        """Every span received so far, with its resource's attributes."""
        found = []
        for body in list(self.bodies):
            request = ExportTraceServiceRequest.FromString(body)
            for resource_spans in request.resource_spans:
                resource = _attributes(resource_spans.resource.attributes)
                for scope_spans in resource_spans.scope_spans:
                    found += [(resource, span) for span in scope_spans.spans]
        return found


def _attributes(values: Any) -> dict[str, str]:
    result = {}
    for item in values:
        assert isinstance(item, KeyValue)
        value = item.value
        kind = value.WhichOneof("value")
        result[item.key] = str(getattr(value, kind)) if kind else ""
    return result


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            found.paths.append(self.path)
            found.bodies.append(body)
            answer = ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    found = Receiver(f"http://127.0.0.1:{http.server_address[1]}/v1/traces")
    thread = threading.Thread(target=http.serve_forever, name="otlp-receiver", daemon=True)
    thread.start()
    try:
        yield found
    finally:
        http.shutdown()
        http.server_close()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(receiver: Receiver, request: pytest.FixtureRequest) -> Iterator[DockyardServer]:
    env = {
        "DOCKYARD_TRACE_ENABLED": "true",
        "DOCKYARD_TRACE_OTEL_ENDPOINT": receiver.url,
        "DOCKYARD_TRACE_OTEL_COMPRESSION": "true",
        "DOCKYARD_TRACE_SERVICE_NAME": "dockyard-under-test",
        "DOCKYARD_TRACE_NAMESPACE": "tests",
        "DOCKYARD_TRACE_ATTRIBUTES": json.dumps({"deployment.environment": "e2e"}),
        # The SDK's batch delay (5 s by default), so the test does not wait for it.
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }
    with contextlib.ExitStack() as stack:
        url = None
        if request.param == "postgresql":  # asyncpg runs under SQLAlchemy's greenlets
            url = stack.enter_context(temporary_database(postgres_admin_url()))
        yield stack.enter_context(DockyardServer(env=env, database_url=url))


def _wait_for_span(receiver: Receiver, what: str, match: Any) -> Span:
    deadline = time.monotonic() + WITHIN
    while True:
        for _, span in receiver.spans():
            if match(span):
                return span
        assert time.monotonic() < deadline, f"no span {what} arrived"
        time.sleep(0.1)


def test_a_request_its_sql_and_its_storage_calls_arrive_linked(
    server: DockyardServer, receiver: Receiver
) -> None:
    trace_id = secrets.token_bytes(16)
    caller_span = secrets.token_bytes(8)
    traceparent = f"00-{trace_id.hex()}-{caller_span.hex()}-01"
    data = secrets.token_bytes(4096)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    with server.client() as client:
        started = client.post("/v2/library/traced/blobs/uploads/")
        assert started.status_code == 202, started.text
        done = client.put(
            started.headers["location"],
            params={"digest": digest},
            content=data,
            headers={"traceparent": traceparent, "content-type": "application/octet-stream"},
        )
        assert done.status_code == 201, done.text
        assert client.get("/livez").status_code == 200
        # Spans leave in the order they end: once this one is in, /livez's would be too.
        ping = client.get("/api/v2.0/ping")
        assert ping.status_code == 200

    request = _wait_for_span(
        receiver,
        "for the PUT",
        lambda s: (
            s.trace_id == trace_id
            and s.name == "PUT /v2"
            and _attributes(s.attributes).get("http.response.status_code") == "201"
        ),
    )
    assert request.parent_span_id == caller_span  # the caller's trace continues
    assert request.kind == Span.SpanKind.SPAN_KIND_SERVER
    attributes = _attributes(request.attributes)
    assert attributes["http.request.method"] == "PUT"
    assert attributes["url.path"].startswith("/v2/library/traced/blobs/uploads/")
    assert attributes["dockyard.request_id"] == done.headers["x-request-id"]

    def children() -> list[Span]:
        return [
            s
            for _, s in receiver.spans()
            if s.trace_id == trace_id and s.parent_span_id == request.span_id
        ]

    deadline = time.monotonic() + WITHIN
    while not (
        any(s.name == "storage.complete" for s in children())
        and any(s.name in ("INSERT", "UPDATE") for s in children())
    ):
        assert time.monotonic() < deadline, sorted(s.name for s in children())
        time.sleep(0.1)
    complete = next(s for s in children() if s.name == "storage.complete")
    driver = "S3Storage" if storage_under_test() == "s3" else "FilesystemStorage"
    assert _attributes(complete.attributes)["dockyard.storage.driver"] == driver
    sql = next(s for s in children() if s.name == "INSERT")
    sql_attributes = _attributes(sql.attributes)
    assert sql_attributes["db.system.name"] == ("postgresql" if server.database_url else "sqlite")
    assert sql_attributes["db.query.text"].startswith("INSERT")
    assert sql.kind == Span.SpanKind.SPAN_KIND_CLIENT
    for span in children():  # children lie within their request
        assert request.start_time_unix_nano <= span.start_time_unix_nano
        assert span.end_time_unix_nano <= request.end_time_unix_nano

    resource = next(r for r, s in receiver.spans() if s.span_id == request.span_id)
    assert resource["service.name"] == "dockyard-under-test"
    assert resource["service.namespace"] == "tests"
    assert resource["deployment.environment"] == "e2e"
    assert set(receiver.paths) == {"/v1/traces"}
    # Orchestrators' probes are not traced.
    _wait_for_span(
        receiver,
        "for the ping",
        lambda s: (
            _attributes(s.attributes).get("dockyard.request_id") == ping.headers["x-request-id"]
        ),
    )
    assert not any(
        _attributes(s.attributes).get("url.path") == "/livez" for _, s in receiver.spans()
    )
