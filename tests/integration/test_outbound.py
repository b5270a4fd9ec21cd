"""The outbound HTTP client (``dockyard.http.outbound``) against real loopback servers
that answer badly: an endless body, a body or headers dripped a byte at a time, a
redirect to the metadata service, and names that resolve where they must not.

Refusals are shown without ever connecting to a refused address: names go through a
stand-in resolver, and every ``socket.connect`` of the process is watched through
Python's audit hooks (``tests.support.hostile_http.connections_made``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import time
import tracemalloc
from collections.abc import AsyncIterator

import pytest
from tests.support.hostile_http import PATTERN, connections_made, hostile_server, suspicious

from dockyard.http.egress import EgressPolicy, IPAddress
from dockyard.http.outbound import (
    DEFAULT_MAX_BODY,
    OutboundClient,
    OutboundRefused,
    OutboundTimeout,
)

LOOPBACK_OK = EgressPolicy(allow_loopback=True)
READ_SIZE = 64 * 1024
"""What one read from the connection may take (httpcore's read size)."""
READS_PAST_CAP = 2
"""h11 hands over everything it has buffered as one body event, which CI saw reach
1.5 reads (98,304 bytes); the bound is still a fixed few reads past the cap."""


class Resolver:
    """Answers from a table and counts the lookups."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table
        self.lookups: list[str] = []

    async def __call__(self, host: str, port: int) -> list[IPAddress]:
        self.lookups.append(host)
        return [ipaddress.ip_address(a) for a in self.table[host]]


async def test_an_endless_answer_is_cut_at_the_cap_and_memory_stays_flat() -> None:
    client = OutboundClient(LOOPBACK_OK, deadline=10)
    with hostile_server("endless") as server:
        tracemalloc.start()
        try:
            started = time.monotonic()
            response = await client.request("POST", server.url + "/hook", content=b"{}")
            elapsed = time.monotonic() - started
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert response.status_code == 200
    assert response.head == PATTERN[:DEFAULT_MAX_BODY]
    assert response.complete is False
    assert DEFAULT_MAX_BODY < response.bytes_read <= DEFAULT_MAX_BODY + READS_PAST_CAP * READ_SIZE
    assert elapsed < 5
    # 600 MiB declared and sent without end; the call held well under 1 MiB.
    assert peak < 1024 * 1024, peak
    # The server could only write what the socket buffers took before the close.
    assert server.body_bytes_sent < 64 * 1024 * 1024


async def test_a_body_dripped_forever_ends_at_the_deadline_with_what_arrived() -> None:
    client = OutboundClient(LOOPBACK_OK, deadline=0.6)
    with hostile_server("drip-body", interval=0.02) as server:
        started = time.monotonic()
        response = await client.request("POST", server.url + "/hook", content=b"{}")
        elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert response.complete is False
    assert 0 < len(response.head) < DEFAULT_MAX_BODY
    assert PATTERN.startswith(response.head)
    assert 0.5 < elapsed < 2.0, elapsed  # the total deadline, though every read succeeded


async def test_headers_dripped_forever_time_out_at_the_total_deadline() -> None:
    client = OutboundClient(LOOPBACK_OK, deadline=0.6)
    with hostile_server("drip-headers", interval=0.02) as server:
        started = time.monotonic()
        with pytest.raises(OutboundTimeout, match=r"no answer within 0\.6 s"):
            await client.request("POST", server.url + "/hook", content=b"{}")
        elapsed = time.monotonic() - started
    assert 0.5 < elapsed < 2.0, elapsed  # a per-read timeout would never have fired


async def test_a_name_is_resolved_once_and_the_checked_address_is_the_one_connected() -> None:
    with hostile_server("redirect", location="/elsewhere") as server:
        port = server.url.rsplit(":", 1)[1]
        resolver = Resolver({"hooks.test": ["127.0.0.1"]})
        client = OutboundClient(LOOPBACK_OK, deadline=5, resolver=resolver)
        with connections_made() as seen:
            response = await client.request("POST", f"http://hooks.test:{port}/x", content=b"{}")
    assert response.status_code == 302  # redirects are not followed unless asked
    assert resolver.lookups == ["hooks.test"]
    assert [c for c in seen if c[1] == int(port)] == [("127.0.0.1", int(port))]
    assert suspicious(seen) == []
    # The name stays in the request: the far end sees the Host it was given.
    assert server.requests[0]["host"] == f"hooks.test:{port}"


@pytest.mark.parametrize(
    ("answers", "message"),
    [
        (["169.254.169.254"], "hooks.test resolves to 169.254.169.254, which is a cloud metadata"),
        (["127.0.0.1", "fd00:ec2::254"], "resolves to fd00:ec2::254, which is a cloud metadata"),
        (["::ffff:169.254.169.254"], "which is a cloud metadata"),
        (["169.254.10.20"], "which is a link-local address"),
    ],
)
async def test_a_name_resolving_to_a_refused_address_is_never_connected(
    answers: list[str], message: str
) -> None:
    resolver = Resolver({"hooks.test": answers})
    client = OutboundClient(LOOPBACK_OK, deadline=5, resolver=resolver)
    with connections_made() as seen, pytest.raises(OutboundRefused, match=message):
        await client.request("POST", "http://hooks.test/x", content=b"{}")
    assert resolver.lookups == ["hooks.test"]
    assert suspicious(seen, 80) == []  # not even the allowed address of a mixed answer


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/",
        "http://metadata.google.internal/computeMetadata/v1/",
        "http://[::ffff:a9fe:a9fe]/",
        "http://2852039166/",
        "http://0xA9FEA9FE/",
    ],
)
async def test_metadata_literals_and_names_are_refused_without_a_lookup(url: str) -> None:
    resolver = Resolver({})
    client = OutboundClient(LOOPBACK_OK, deadline=5, resolver=resolver)
    with connections_made() as seen, pytest.raises(OutboundRefused, match="metadata"):
        await client.request("GET", url)
    assert resolver.lookups == []
    assert suspicious(seen, 80, 443) == []


async def test_loopback_is_refused_by_default_even_when_something_listens_there() -> None:
    client = OutboundClient(EgressPolicy(), deadline=5)
    with hostile_server("endless") as server, connections_made() as seen:
        with pytest.raises(OutboundRefused, match="egress_allow_loopback"):
            await client.request("POST", server.url + "/hook", content=b"{}")
        with pytest.raises(OutboundRefused, match="localhost is a loopback name"):
            await client.request("POST", "http://localhost:1/hook", content=b"{}")
    port = int(server.url.rsplit(":", 1)[1])
    assert suspicious(seen, port, 1) == []
    assert server.requests == []


async def test_every_redirect_is_checked_and_credentials_stay_with_their_origin() -> None:
    with (
        hostile_server("redirect", location="http://169.254.169.254/latest/") as to_metadata,
        hostile_server("endless") as final,
    ):
        client = OutboundClient(LOOPBACK_OK, deadline=5)
        refused = r"redirected to http://169\.254\.169\.254"
        with connections_made() as seen, pytest.raises(OutboundRefused, match=refused):
            await client.request("GET", to_metadata.url + "/a", max_redirects=3)
        assert suspicious(seen, 80) == []

        with hostile_server("redirect", location=final.url + "/b") as hop:
            response = await client.request(
                "POST",
                hop.url + "/a",
                content=b"{}",
                headers={"Authorization": "Bearer s3cr3t"},
                max_redirects=3,
            )
        assert response.status_code == 200 and response.url == final.url + "/b"
        assert hop.requests[0]["authorization"] == "Bearer s3cr3t"
        assert "authorization" not in final.requests[0]  # another origin (port)
        assert final.requests[0]["request-line"].startswith("GET /b ")  # 302 after a POST


@contextlib.asynccontextmanager
async def keep_alive_server() -> AsyncIterator[tuple[str, list[list[str]]]]:
    """A loopback HTTP/1.1 server that keeps connections open: (its URL, per connection
    the request lines it read). ``/big`` answers 64 KiB, anything else 2 bytes."""
    connections: list[list[str]] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        lines: list[str] = []
        connections.append(lines)
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                request_line, *fields = head.decode("latin-1").split("\r\n")
                lines.append(request_line)
                sizes = [f for f in fields if f.lower().startswith("content-length:")]
                length = int(sizes[0].split(":", 1)[1]) if sizes else 0
                await reader.readexactly(length)
                body = b"x" * (64 * 1024) if " /big " in request_line else b"ok"
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}", connections


async def test_a_session_keeps_one_connection_for_its_calls() -> None:
    client = OutboundClient(LOOPBACK_OK, deadline=5)
    async with keep_alive_server() as (url, connections):
        async with client.session() as session:
            for path in ("/metadata", "/scan", "/scan/1/report"):
                method = "POST" if path == "/scan" else "GET"
                response = await session.request(method, url + path, content=b"{}")
                assert (response.status_code, response.head, response.complete) == (
                    200,
                    b"ok",
                    True,
                )
        assert [[line.split()[1] for line in c] for c in connections] == [
            ["/metadata", "/scan", "/scan/1/report"]
        ]
        # Without a session, every call connects afresh (as before).
        await client.request("GET", url + "/a")
        await client.request("GET", url + "/b")
        assert len(connections) == 3


async def test_a_session_drops_a_connection_whose_answer_was_cut_at_the_cap() -> None:
    client = OutboundClient(LOOPBACK_OK, deadline=5)
    async with keep_alive_server() as (url, connections), client.session() as session:
        cut = await session.request("GET", url + "/big")
        assert cut.complete is False and len(cut.head) == DEFAULT_MAX_BODY
        # What was left of that answer is never read as the next one's.
        answer = await session.request("GET", url + "/after")
        assert (answer.head, answer.complete) == (b"ok", True)
    assert [[line.split()[1] for line in c] for c in connections] == [["/big"], ["/after"]]


async def test_a_session_keeps_the_egress_check_and_its_own_tls_settings() -> None:
    async with keep_alive_server() as (url, connections):
        refusing = OutboundClient(EgressPolicy(), deadline=5)
        async with refusing.session() as session:
            with pytest.raises(OutboundRefused, match="egress_allow_loopback"):
                await session.request("GET", url + "/a")
        async with OutboundClient(LOOPBACK_OK, deadline=5).session() as session:
            await session.request("GET", url + "/a")
            # A call that wants other TLS settings cannot borrow the session's connection.
            with pytest.raises(ValueError, match="TLS settings"):
                await session.request("GET", url + "/b", verify_tls=False)
    assert [[line.split()[1] for line in c] for c in connections] == [["/a"]]
