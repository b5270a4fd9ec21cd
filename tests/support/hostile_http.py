"""A loopback HTTP server that answers every request in one hostile way, for testing
the outbound client's bounds (``dockyard.http.outbound``) and whoever uses it.

Modes:

- ``endless``: ``200`` declaring a 600 MiB body, then the body as fast as the client
  takes it, for ever (``PATTERN`` repeated, so the first bytes are known);
- ``drip-body``: ``200`` and its headers at once, then one body byte per ``interval``;
- ``drip-headers``: the status line and headers one byte per ``interval``, never ending;
- ``redirect``: ``302`` to ``location`` (records the requests it got).

``body_bytes_sent`` counts what the server managed to write of the body, so a test can
show that a client stopped reading instead of taking the whole answer.
"""

from __future__ import annotations

import ipaddress
import socketserver
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

PATTERN = b"0123456789abcdef" * 4096
"""64 KiB written again and again by ``endless``."""
DECLARED = 600 * 1024 * 1024


@dataclass
class HostileServer:
    mode: str
    interval: float = 0.05
    location: str = ""
    url: str = ""
    body_bytes_sent: int = 0
    requests: list[dict[str, str]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add_sent(self, count: int) -> None:
        with self.lock:
            self.body_bytes_sent += count


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def handle(self) -> None:
        state = self.server.state
        headers: dict[str, str] = {"request-line": self.rfile.readline(8192).decode("latin-1")}
        while True:
            line = self.rfile.readline(8192).decode("latin-1").strip()
            if not line:
                break
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        self.rfile.read(int(headers.get("content-length", "0") or 0))
        with state.lock:
            state.requests.append(headers)
        try:
            self._answer(state)
        except OSError:
            return  # the client closed the connection: what a bounded client does

    def _answer(self, state: HostileServer) -> None:
        if state.mode == "redirect":
            self.wfile.write(
                f"HTTP/1.1 302 Found\r\nLocation: {state.location}\r\n"
                "Content-Length: 0\r\nConnection: close\r\n\r\n".encode("latin-1")
            )
            return
        if state.mode == "drip-headers":
            for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"x" * 1_000_000:
                if state.stop.wait(state.interval):
                    return
                self.wfile.write(bytes([byte]))
            return
        self.wfile.write(
            f"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
            f"Content-Length: {DECLARED}\r\n\r\n".encode("latin-1")
        )
        if state.mode == "drip-body":
            for byte in PATTERN:
                if state.stop.wait(state.interval):
                    return
                self.wfile.write(bytes([byte]))
                state.add_sent(1)
            return
        while not state.stop.is_set():
            self.wfile.write(PATTERN)
            state.add_sent(len(PATTERN))


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, state: HostileServer) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = state


@contextmanager
def hostile_server(
    mode: str, *, interval: float = 0.05, location: str = ""
) -> Iterator[HostileServer]:
    state = HostileServer(mode, interval=interval, location=location)
    server = _Server(state)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        state.stop.set()
        server.shutdown()
        server.server_close()


# --- which addresses the process connected to -------------------------------------------

_connects: list[tuple[str, int]] = []
_hooked = False


def _audit(event: str, args: tuple[object, ...]) -> None:
    if event == "socket.connect" and len(args) > 1 and isinstance(args[1], tuple):
        address = args[1]
        _connects.append((str(address[0]), int(address[1])))


@contextmanager
def connections_made() -> Iterator[list[tuple[str, int]]]:
    """``(host, port)`` of every ``socket.connect`` this process made (any thread, any
    library) while the block ran, from Python's audit hooks: a test can show that
    nothing tried to reach a refused address, without trusting the code under test.
    Other work of the process (a database pool, a job worker) shows here too: look at
    ``suspicious`` connections rather than expecting none at all."""
    global _hooked  # an audit hook cannot be removed: add it once
    if not _hooked:
        sys.addaudithook(_audit)
        _hooked = True
    start = len(_connects)
    seen: list[tuple[str, int]] = []
    try:
        yield seen
    finally:
        seen.extend(_connects[start:])


def suspicious(seen: list[tuple[str, int]], *ports: int) -> list[tuple[str, int]]:
    """The connections that left loopback, or went to one of ``ports`` on any host."""
    return [
        (host, port)
        for host, port in seen
        if port in ports or not ipaddress.ip_address(host.partition("%")[0]).is_loopback
    ]
