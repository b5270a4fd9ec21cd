"""The remote client against a small real HTTP server that misbehaves on purpose: retries
with back-off on 503 and 429, answers too large to hold, a manifest whose bytes do not
match its digest, a token realm that is not http(s), fixed credentials sent as they are,
a large blob read past h11 whole, cut short or stalled."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from dockyard.http.egress import EgressPolicy
from dockyard.remotes.adapter import Adapter
from dockyard.remotes.client import (
    DIRECT_BODY_MIN,
    Credential,
    Endpoint,
    RemoteProtocolError,
    RemoteUnreachable,
)
from dockyard.remotes.kinds import open_adapter

Answer = tuple[int, dict[str, str], bytes]
"""Status, headers and body. A ``Content-Length`` among the headers is sent as given (the
body may be shorter: the connection is closed after it, at once or, with a ``X-Stall``
header, after that many seconds)."""
Responder = Callable[[str, str, dict[str, str]], Answer]


class Remote:
    """Answers each request with what ``respond`` says; remembers the requests."""

    def __init__(self, respond: Responder) -> None:
        self.respond = respond
        self.seen: list[tuple[str, str, dict[str, str]]] = []
        self.peers: set[tuple[str, int]] = set()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keeps connections open, as registries do

            def log_message(self, *args: object) -> None:
                return

            def _any(self) -> None:
                headers = {k.lower(): v for k, v in self.headers.items()}
                outer.seen.append((self.command, self.path, headers))
                outer.peers.add(self.client_address)
                status, extra, body = outer.respond(self.command, self.path, headers)
                self.send_response(status)
                for name, value in extra.items():
                    self.send_header(name, value)
                if "Content-Length" not in extra:
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)
                if "Content-Length" in extra:
                    self.wfile.flush()
                    time.sleep(float(extra.get("X-Stall", 0)))
                    self.close_connection = True

            do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


Factory = Callable[[Responder], Remote]


@pytest.fixture
def remote_factory() -> Iterator[Factory]:
    made: list[Remote] = []

    def make(respond: Responder) -> Remote:
        made.append(Remote(respond))
        return made[-1]

    yield make
    for remote in made:
        remote.close()


def _adapter(url: str, credential: Credential | None = None, timeout: float = 5) -> Adapter:
    return open_adapter(
        "docker-registry",
        Endpoint(url, credential),
        EgressPolicy(allow_loopback=True),
        timeout=timeout,
    )


async def test_retries_503_and_429_then_succeeds(remote_factory: Factory) -> None:
    answers = iter([503, 429, 200])

    def respond(method: str, path: str, headers: dict[str, str]) -> Answer:
        status = next(answers, 200)
        return status, {"Retry-After": "0"} if status == 429 else {}, b"{}"

    remote = remote_factory(respond)
    adapter = _adapter(remote.url)
    try:
        await adapter.ping()
    finally:
        await adapter.aclose()
    assert [m for m, _, _ in remote.seen] == ["GET", "GET", "GET"]


async def test_gives_up_after_the_retries(remote_factory: Factory) -> None:
    remote = remote_factory(lambda m, p, h: (503, {}, b"down for maintenance"))
    adapter = _adapter(remote.url)
    try:
        with pytest.raises(RemoteProtocolError, match="503: down for maintenance"):
            await adapter.ping()
    finally:
        await adapter.aclose()
    assert len(remote.seen) == 4  # the first try and three retries


async def test_hostile_manifests(remote_factory: Factory) -> None:
    huge = b"{" + b" " * (5 * 1024 * 1024) + b"}"
    honest = b'{"schemaVersion":2}'
    wrong_digest = "sha256:" + hashlib.sha256(b"something else").hexdigest()

    def respond(method: str, path: str, headers: dict[str, str]) -> Answer:
        kind = {"Content-Type": "application/vnd.oci.image.manifest.v1+json"}
        if path.endswith("/huge"):
            return 200, kind, huge
        return 200, kind, honest

    remote = remote_factory(respond)
    adapter = _adapter(remote.url)
    try:
        with pytest.raises(RemoteProtocolError, match="larger than"):
            await adapter.get_manifest("a/b", "huge")
        with pytest.raises(RemoteProtocolError, match="do not match"):
            await adapter.get_manifest("a/b", wrong_digest)
        right = "sha256:" + hashlib.sha256(honest).hexdigest()
        found = await adapter.get_manifest("a/b", right)
        assert found.body == honest
        assert found.digest == right
    finally:
        await adapter.aclose()


async def test_a_token_realm_that_is_not_http(remote_factory: Factory) -> None:
    challenge = {"WWW-Authenticate": 'Bearer realm="file:///etc/passwd",service="x"'}
    remote = remote_factory(lambda m, p, h: (401, challenge, b""))
    adapter = _adapter(remote.url, Credential("basic", "u", "p"))
    try:
        with pytest.raises(RemoteProtocolError, match="not an http"):
            await adapter.ping()
    finally:
        await adapter.aclose()


async def test_fixed_credentials_are_sent_as_they_are(remote_factory: Factory) -> None:
    remote = remote_factory(lambda m, p, h: (200, {}, b"{}"))
    for credential, header in (
        (Credential("oauth", "", "tok-123"), "Bearer tok-123"),
        (Credential("secret", "", "shared"), "Harbor-Secret shared"),
    ):
        adapter = _adapter(remote.url, credential)
        try:
            await adapter.ping()
        finally:
            await adapter.aclose()
        assert remote.seen[-1][2]["authorization"] == header


async def test_connections_are_reused(remote_factory: Factory) -> None:
    """Many requests of one adapter travel on one kept-alive connection."""
    remote = remote_factory(lambda m, p, h: (200, {}, b"abc"))
    adapter = _adapter(remote.url)
    try:
        for _ in range(20):
            assert await adapter.blob_exists("a/b", "sha256:" + "1" * 64) is not None
    finally:
        await adapter.aclose()
    assert len(remote.seen) == 20
    assert len(remote.peers) == 1


LARGE = bytes(range(256)) * (3 * DIRECT_BODY_MIN // 256 + 7)  # read past h11
SMALL = b"small blob"  # read through h11


async def _read_blob(adapter: Adapter, digest: str) -> bytes:
    async with adapter.open_blob("a/b", digest) as stream:
        return b"".join([chunk async for chunk in stream.chunks])


def _blob_answer(method: str, path: str, headers: dict[str, str]) -> Answer:
    body = LARGE if "large" in path else SMALL
    cut = {"Content-Length": str(len(body))}
    if "truncated" in path:
        return 200, cut, body[: len(body) // 2]
    if "stalled" in path:
        return 200, {**cut, "X-Stall": "3"}, body[: len(body) // 2]
    return 200, {}, body


async def test_a_large_blob_is_read_whole_and_small_ones_keep_the_connection(
    remote_factory: Factory,
) -> None:
    """A blob body of ``DIRECT_BODY_MIN`` or more comes from the connection itself, to its
    ``Content-Length``; that connection is closed afterwards (h11 never saw the body
    end), small bodies keep theirs, and the adapter goes on working after either."""
    remote = remote_factory(_blob_answer)
    adapter = _adapter(remote.url)
    try:
        assert await _read_blob(adapter, "sha256:small") == SMALL
        assert await _read_blob(adapter, "sha256:small") == SMALL
        assert len(remote.peers) == 1
        for _ in range(2):
            assert await _read_blob(adapter, "sha256:large") == LARGE
        assert await _read_blob(adapter, "sha256:small") == SMALL
    finally:
        await adapter.aclose()
    assert len(remote.peers) == 3  # the first connection, then one more per large blob


async def test_a_large_blob_cut_short_or_stalled_is_unreachable(remote_factory: Factory) -> None:
    remote = remote_factory(_blob_answer)
    adapter = _adapter(remote.url, timeout=0.5)
    try:
        with pytest.raises(RemoteUnreachable, match="closed after"):
            await _read_blob(adapter, "sha256:large-truncated")
        started = time.monotonic()
        with pytest.raises(RemoteUnreachable, match="no answer in time"):
            await _read_blob(adapter, "sha256:large-stalled")
        assert time.monotonic() - started < 2.5  # the read timeout, not the server's close
        assert await _read_blob(adapter, "sha256:large") == LARGE
    finally:
        await adapter.aclose()
