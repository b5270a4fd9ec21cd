"""A TCP proxy on loopback that a test can cut and restore, to make a service "go away"
(connections reset, new ones refused) and come back on the same address, without
stopping the service itself (others may share it)::

    with TcpProxy(("127.0.0.1", seaweed_port)) as proxy:
        settings = ...endpoint=proxy.url...
        proxy.cut()                         # every connection reset, new ones refused
        proxy.cut_after_upstream(6 << 20)   # or: cut once that many bytes went upstream
        proxy.resume()                      # listening again on the same port
"""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType


class TcpProxy:
    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.host = "127.0.0.1"
        self._lock = threading.Lock()
        self._connections: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self._cut_after: int | None = None
        self._sent_up = 0
        self.cut_done = threading.Event()
        probe = socket.socket()
        probe.bind((self.host, 0))
        self.port: int = probe.getsockname()[1]
        probe.close()
        self.resume()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cut()

    # --- control -------------------------------------------------------------------------------

    def resume(self) -> None:
        """Listen again (on the same port)."""
        with self._lock:
            if self._listener is not None:
                return
            listener = socket.socket()
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((self.host, self.port))
            listener.listen(64)
            self._listener = listener
            self._cut_after = None
            self.cut_done.clear()
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        """Refuse new connections and reset every open one."""
        with self._lock:
            listener, self._listener = self._listener, None
            connections, self._connections = self._connections, []
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                )
                conn.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                conn.close()
        self.cut_done.set()

    def cut_after_upstream(self, size: int) -> None:
        """Cut once ``size`` more bytes went from clients to the upstream."""
        with self._lock:
            self._sent_up = 0
            self._cut_after = size

    # --- pumping -------------------------------------------------------------------------------

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.upstream, timeout=10)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is not listener:
                    client.close()
                    upstream.close()
                    return
                self._connections += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, up: bool) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
                if up and self._count_up(len(data)):
                    self.cut()
                    return
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)

    def _count_up(self, size: int) -> bool:
        with self._lock:
            if self._cut_after is None:
                return False
            self._sent_up += size
            return self._sent_up >= self._cut_after
