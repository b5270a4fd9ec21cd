"""Debian's ``docker-registry`` (CNCF distribution 2.8) on loopback, as a remote for tests.

Three ways, as replication and proxy-cache tests need them::

    with start_docker_registry(tmp / "plain") as reg: ...                      # no auth
    with start_docker_registry(tmp / "basic", auth="basic") as reg: ...        # htpasswd (bcrypt)
    with start_docker_registry(tmp / "token", auth="token") as reg: ...        # Docker token flow

``auth="token"`` also starts a ``TokenServer``: a small real HTTP server that checks Basic
credentials and signs RS256 JWTs with a key made here; distribution verifies them against
the certificate of that key (``rootcertbundle``, the token's ``x5c`` header names it).
``tls=True`` serves HTTPS with a self-signed certificate for 127.0.0.1 (``reg.ca_pem``).
The registry's log (with its access log) is ``reg.log_path``; ``reg.requests(...)`` counts
lines of it, so a test can tell how many calls reached the remote.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
from tests.support.certs import KeyPair, self_signed
from tests.support.server import free_port
from tests.support.tcp_proxy import TcpProxy

DOCKER_REGISTRY = "/usr/bin/docker-registry"
SERVICE = "dockyard-test-registry"
ISSUER = "dockyard-test-token-issuer"
USERNAME = "alice"
PASSWORD = "alice-Secret-1"
Auth = Literal["none", "basic", "token"]


def available() -> bool:
    return shutil.which(DOCKER_REGISTRY) is not None


# --- the token server ----------------------------------------------------------------------


@dataclass
class TokenServer:
    """Docker's token endpoint: ``GET /token?service=…&scope=…`` with Basic credentials.

    Known users get every action they ask for; anonymous callers get pull only; wrong
    credentials get 401. ``issued`` lists the scopes of every token handed out."""

    users: dict[str, str]
    keys: KeyPair = field(default_factory=lambda: self_signed("token-signer", ca=True))
    host: str = "127.0.0.1"
    port: int = 0
    issued: list[str] = field(default_factory=list)
    refused: int = 0
    _server: ThreadingHTTPServer | None = None

    @property
    def realm(self) -> str:
        return f"http://{self.host}:{self.port}/token"

    def start(self) -> TokenServer:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_GET(self) -> None:
                outer._answer(self)

        self._server = ThreadingHTTPServer((self.host, self.port), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def _user(self, header: str | None) -> str | Literal[False] | None:
        """The caller's name, None when anonymous, False when the credentials are wrong."""
        if not header:
            return None
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            name, _, password = base64.b64decode(value).decode().partition(":")
        except ValueError:
            return False
        return name if self.users.get(name) == password else False

    def _answer(self, request: BaseHTTPRequestHandler) -> None:
        query = parse_qs(urlsplit(request.path).query)
        user = self._user(request.headers.get("Authorization"))
        if user is False:
            self.refused += 1
            request.send_response(401)
            request.send_header("Content-Length", "0")
            request.end_headers()
            return
        access = []
        for scope in query.get("scope", []):
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            wanted = actions.split(",")
            granted = wanted if user else [a for a in wanted if a == "pull"]
            access.append({"type": kind, "name": name, "actions": granted})
            self.issued.append(scope)
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "sub": user or "",
            "aud": query.get("service", [SERVICE])[0],
            "exp": now + 300,
            "nbf": now - 10,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": access,
        }
        token = jwt.encode(
            claims,
            self.keys.key_pem,
            algorithm="RS256",
            headers={"x5c": [base64.b64encode(self.keys.cert_der).decode()]},
        )
        body = json.dumps({"token": token, "access_token": token, "expires_in": 300}).encode()
        request.send_response(200)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)


# --- the registry --------------------------------------------------------------------------


@dataclass
class DockerRegistry:
    root: Path
    auth: Auth
    port: int
    tls: KeyPair | None
    token_server: TokenServer | None
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    username: str = USERNAME
    password: str = PASSWORD

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.address}"

    @property
    def ca_pem(self) -> str:
        assert self.tls is not None
        return self.tls.cert_pem.decode()

    @property
    def credentials(self) -> tuple[str, str] | None:
        return None if self.auth == "none" else (self.username, self.password)

    def requests(self, needle: str) -> int:
        """How many access-log lines of the registry contain ``needle`` (a method and path)."""
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return sum(1 for line in text.splitlines() if needle in line)

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [DOCKER_REGISTRY, "serve", str(self.root / "config.yml")],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + 30
        verify: Any = False
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"docker-registry exited: {self.log_path.read_text()[-3000:]}")
            try:
                answer = httpx.get(f"{self.url}/v2/", verify=verify, timeout=2)
                if answer.status_code in (200, 401):
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"docker-registry did not start: {self.log_path.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None


def _config(
    root: Path, port: int, auth: Auth, tls: KeyPair | None, token: TokenServer | None
) -> str:
    lines = [
        "version: 0.1",
        "log:",
        "  level: info",
        "  accesslog:",
        "    disabled: false",
        "storage:",
        "  filesystem:",
        f"    rootdirectory: {root / 'data'}",
        "  delete:",
        "    enabled: true",
        "http:",
        f"  addr: 127.0.0.1:{port}",
        f"  secret: {uuid.uuid4().hex}",
    ]
    if tls is not None:
        (root / "tls.crt").write_bytes(tls.cert_pem)
        (root / "tls.key").write_bytes(tls.key_pem)
        lines += ["  tls:", f"    certificate: {root / 'tls.crt'}", f"    key: {root / 'tls.key'}"]
    if auth == "basic":
        htpasswd = root / "htpasswd"
        subprocess.run(
            ["/usr/bin/htpasswd", "-Bbc", str(htpasswd), USERNAME, PASSWORD],
            check=True,
            capture_output=True,
        )
        lines += ["auth:", "  htpasswd:", "    realm: dockyard-test", f"    path: {htpasswd}"]
    elif auth == "token":
        assert token is not None
        bundle = root / "token-root.pem"
        bundle.write_bytes(token.keys.cert_pem)
        lines += [
            "auth:",
            "  token:",
            f"    realm: {token.realm}",
            f"    service: {SERVICE}",
            f"    issuer: {ISSUER}",
            f"    rootcertbundle: {bundle}",
        ]
    return "\n".join(lines) + "\n"


@contextmanager
def start_docker_registry(
    root: Path, *, auth: Auth = "none", tls: bool = False
) -> Iterator[DockerRegistry]:
    """A running ``docker-registry`` under ``root`` (config, data, log); stopped at the end."""
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    keys = self_signed() if tls else None
    token = TokenServer({USERNAME: PASSWORD}).start() if auth == "token" else None
    (root / "config.yml").write_text(_config(root, port, auth, keys, token))
    registry = DockerRegistry(root, auth, port, keys, token, root / "registry.log")
    try:
        registry.start()
        yield registry
    finally:
        registry.stop()
        if token is not None:
            token.stop()


# --- for resumable uploads -----------------------------------------------------------------


@dataclass
class RecordingSource:
    """Random bytes served as a ``BlobSource`` (from any offset), remembering each offset
    it was asked from: a resumed upload asks again from where the remote has it."""

    size: int
    piece: int = 256 * 1024
    data: bytes = b""
    reads: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.data = self.data or os.urandom(self.size)

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.data).hexdigest()

    async def __call__(self, offset: int) -> AsyncIterator[bytes]:
        self.reads.append(offset)
        for start in range(offset, len(self.data), self.piece):
            yield self.data[start : start + self.piece]


def drop_once(proxy: TcpProxy, after_bytes: int) -> None:
    """Cut ``proxy``'s connections once ``after_bytes`` went upstream, and listen again
    right after (in a thread), so the client's next request gets through."""
    proxy.cut_after_upstream(after_bytes)

    def come_back() -> None:
        proxy.cut_done.wait(30)
        proxy.resume()

    threading.Thread(target=come_back, daemon=True).start()
