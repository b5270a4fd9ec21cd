"""A small HTTP auth proxy for the tests, speaking Harbor's protocol on loopback.

``POST /login`` with Basic credentials answers ``{"session_id": …}`` for a known user
and password, else 401. ``POST /tokenreview`` with a Kubernetes ``TokenReview`` answers
its ``status`` (``authenticated``, and the ``user`` with ``username`` and ``groups``).
``AuthProxyServer.garbage`` makes the next answers of one endpoint something else (a
test of what Dockyard does with a broken proxy); ``stop()`` takes it off the network.
With ``tls=True`` it serves HTTPS with a certificate signed by a CA it makes
(``ca_pem``). Runs in a thread of the test process (stdlib ``http.server``).
"""

from __future__ import annotations

import base64
import json
import secrets
import ssl
import tempfile
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.support.certs import issue_server, make_ca

PASSWORD = "Proxy-Passw0rd"


@dataclass
class ProxyAccount:
    password: str
    groups: list[str] = field(default_factory=list)
    review_name: str | None = None
    """The name the review gives (None: the login name)."""


@dataclass
class Garbage:
    endpoint: str
    """``login`` or ``tokenreview``."""
    status: int
    body: bytes
    content_type: str = "application/json"


class AuthProxyServer:
    def __init__(self, *, tls: bool = False) -> None:
        self.accounts: dict[str, ProxyAccount] = {}
        self.sessions: dict[str, str] = {}
        self.garbage: Garbage | None = None
        self.logins = 0
        self.reviews: list[dict[str, object]] = []
        self.ca_pem = ""
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._httpd.daemon_threads = True
        if tls:
            self.ca_pem, context = _tls_context()
            self._httpd.socket = context.wrap_socket(self._httpd.socket, server_side=True)
        self.port = self._httpd.server_address[1]
        self.scheme = "https" if tls else "http"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    @property
    def login_url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}/login"

    @property
    def review_url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}/tokenreview"

    def add(self, name: str, groups: list[str] | None = None, **kwargs: str) -> None:
        self.accounts[name] = ProxyAccount(kwargs.get("password", PASSWORD), groups or [])
        if "review_name" in kwargs:
            self.accounts[name].review_name = kwargs["review_name"]

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


def _handler(proxy: AuthProxyServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        # Headers and body go out in two writes: without TCP_NODELAY the body waits for
        # the client's delayed ACK (40 ms a call).
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: object) -> None:
            return

        def _answer(self, status: int, body: bytes, content_type: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            endpoint = self.path.strip("/")
            garbage = proxy.garbage
            if garbage is not None and garbage.endpoint == endpoint:
                self._answer(garbage.status, garbage.body, garbage.content_type)
            elif endpoint == "login":
                self._login()
            elif endpoint == "tokenreview":
                self._review(body)
            else:
                self._answer(404, b"{}")

        def _login(self) -> None:
            proxy.logins += 1
            auth = self.headers.get("Authorization", "")
            if not auth.startswith("Basic "):
                self._answer(401, b'{"error": "no credentials"}')
                return
            name, _, password = base64.b64decode(auth[6:]).decode().partition(":")
            account = proxy.accounts.get(name)
            if account is None or not secrets.compare_digest(account.password, password):
                self._answer(401, b'{"error": "bad credentials"}')
                return
            token = secrets.token_urlsafe(24)
            proxy.sessions[token] = name
            self._answer(200, json.dumps({"session_id": token}).encode())

        def _review(self, body: bytes) -> None:
            request = json.loads(body)
            proxy.reviews.append(request)
            token = request.get("spec", {}).get("token", "")
            name = proxy.sessions.get(token)
            status: dict[str, object] = {"authenticated": False}
            if name is not None:
                account = proxy.accounts[name]
                status = {
                    "authenticated": True,
                    "user": {
                        "username": account.review_name or name,
                        "groups": account.groups,
                    },
                }
            answer = {
                "apiVersion": "authentication.k8s.io/v1beta1",
                "kind": "TokenReview",
                "status": status,
            }
            self._answer(200, json.dumps(answer).encode())

    return Handler


def _tls_context() -> tuple[str, ssl.SSLContext]:
    """A CA and a certificate for 127.0.0.1 it signed: (the CA's PEM, the server context)."""
    ca = make_ca("Dockyard test CA")
    server = issue_server(ca)
    directory = Path(tempfile.mkdtemp(prefix="authproxy-tls-"))
    cert_path, key_path = directory / "server.pem", directory / "server.key"
    cert_path.write_bytes(server.cert_pem + ca.cert_pem)
    key_path.write_bytes(server.key_pem)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    return ca.cert_pem.decode(), context
