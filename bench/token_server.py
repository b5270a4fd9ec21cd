"""A tiny Docker token service, used to put CNCF distribution behind token auth.

Implements the Docker registry token spec well enough for skopeo, curl and wrk:
``GET /token?service=...&scope=repository:NAME:pull,push`` with HTTP Basic
credentials (or the OAuth2 ``POST /token`` password grant) answers
``{"token": JWT, "access_token": JWT, ...}``. The JWT is RS256 with the signing
certificate in the ``x5c`` header, so distribution verifies it against the
``rootcertbundle`` we hand it. Listens on 127.0.0.1 only.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def libtrust_key_id(public_key: rsa.RSAPublicKey) -> str:
    """The key ID docker/libtrust (and so distribution's ``kid`` lookup) derives from a key:
    base32 of the first 30 bytes of sha256(DER SubjectPublicKeyInfo), in 4-char groups."""
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    s = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
    return ":".join(s[i : i + 4] for i in range(0, len(s), 4))


class SigningKey:
    """An RSA key with a self-signed certificate (written as a PEM bundle)."""

    def __init__(self, common_name: str = "dockyard-bench-token") -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        now = dt.datetime.now(dt.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(self.key, hashes.SHA256())
        )
        self._x5c = base64.b64encode(self.cert.public_bytes(serialization.Encoding.DER)).decode()
        self.kid = libtrust_key_id(self.key.public_key())

    def write_cert(self, path: Path) -> None:
        path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def sign_jwt(self, claims: dict[str, object], header_mode: str = "x5c") -> str:
        """RS256 JWT; ``header_mode`` "x5c" embeds the certificate, "kid" names the key."""
        header: dict[str, object] = {"typ": "JWT", "alg": "RS256"}
        if header_mode == "kid":
            header["kid"] = self.kid
        else:
            header["x5c"] = [self._x5c]
        signing_input = (
            _b64url(json.dumps(header, separators=(",", ":")).encode())
            + "."
            + _b64url(json.dumps(claims, separators=(",", ":")).encode())
        )
        sig = self.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return signing_input + "." + _b64url(sig)


def parse_scopes(scopes: list[str]) -> list[dict[str, object]]:
    """``repository:library/x:pull,push`` -> access entries (all requested actions granted)."""
    access: list[dict[str, object]] = []
    for raw in scopes:
        for scope in raw.split(" "):
            parts = scope.split(":")
            if len(parts) < 3:
                continue
            typ, name, actions = parts[0], ":".join(parts[1:-1]), parts[-1]
            access.append(
                {"type": typ, "name": name, "actions": [a for a in actions.split(",") if a]}
            )
    return access


class TokenServer:
    """Threaded HTTP token server on 127.0.0.1, run in a daemon thread."""

    def __init__(
        self,
        key: SigningKey,
        *,
        issuer: str,
        service: str,
        username: str,
        password: str,
        ttl: int = 3600,
        header_mode: str = "x5c",
    ) -> None:
        self.key = key
        self.header_mode = header_mode
        self.issuer = issuer
        self.service = service
        self.username = username
        self.password = password
        self.ttl = ttl
        self.issued = 0
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                return

            def _reply(self, status: int, body: dict[str, object]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if status == 401:
                    self.send_header("WWW-Authenticate", 'Basic realm="bench-token"')
                self.end_headers()
                self.wfile.write(data)

            def _basic_user(self) -> str | None:
                auth = self.headers.get("Authorization", "")
                if not auth.lower().startswith("basic "):
                    return None
                try:
                    user, _, pw = base64.b64decode(auth[6:]).decode().partition(":")
                except ValueError:
                    return ""
                return user if server.check(user, pw) else ""

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                if url.path != "/token":
                    self._reply(404, {"error": "not found"})
                    return
                q = parse_qs(url.query)
                user = self._basic_user()
                if user == "":
                    self._reply(401, {"errors": [{"code": "UNAUTHORIZED"}]})
                    return
                scopes = q.get("scope", []) if user else []
                self._reply(200, server.issue(user or "", scopes))

            def do_POST(self) -> None:
                url = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                form = parse_qs(self.rfile.read(length).decode()) if length else {}
                if url.path != "/token":
                    self._reply(404, {"error": "not found"})
                    return
                user = form.get("username", [""])[0]
                pw = form.get("password", [""])[0]
                if form.get("grant_type", [""])[0] != "password" or not server.check(user, pw):
                    self._reply(401, {"errors": [{"code": "UNAUTHORIZED"}]})
                    return
                self._reply(200, server.issue(user, form.get("scope", [])))

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.realm = f"http://127.0.0.1:{self.port}/token"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def check(self, user: str, password: str) -> bool:
        return hmac.compare_digest(user, self.username) and hmac.compare_digest(
            password, self.password
        )

    def issue(self, subject: str, scopes: list[str]) -> dict[str, object]:
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": self.service,
            "exp": now + self.ttl,
            "nbf": now - 10,
            "iat": now,
            "jti": os.urandom(12).hex(),
            "access": parse_scopes(scopes),
        }
        token = self.key.sign_jwt(claims, self.header_mode)
        with self._lock:
            self.issued += 1
        issued_at = dt.datetime.fromtimestamp(now, dt.UTC).isoformat().replace("+00:00", "Z")
        return {
            "token": token,
            "access_token": token,
            "expires_in": self.ttl,
            "issued_at": issued_at,
        }

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)
