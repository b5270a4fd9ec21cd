"""A real OpenID Connect provider for tests, and a browser's way through it.

The provider is panva's ``oidc-provider`` (npm; OpenID Certified), pinned to
:data:`VERSION` and installed once into ``~/.cache/dockyard-tests/`` with the machine's
``npm`` (Node.js 20), run by ``tests/support/oidc_provider.mjs`` on a free loopback port.
It signs in any known login with any password (the package's development interaction),
grants consent at once, and takes its issuer, client, signing keys and users' claims from
a JSON file; :meth:`OidcProviderServer.reload` rebuilds it from a changed file (new keys:
a key rotation). A Python provider was not chosen: none on PyPI is a maintained,
certified server; this one is what many OIDC client libraries test against.

:class:`BrowserFlow` plays the browser with httpx: the console's ``/c/oidc/login``, the
provider's redirects and login form, and back to ``/c/oidc/callback``, holding each
side's cookies as a browser would.
"""

from __future__ import annotations

import atexit
import html.parser
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
from joserfc.jwk import RSAKey

VERSION = "9.13.3"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "dockyard-tests"
SCRIPT = Path(__file__).with_name("oidc_provider.mjs")
START_TIMEOUT = 30.0
CLIENT_ID = "dockyard"
CLIENT_SECRET = "dockyard-client-secret-0123456789"


def install() -> Path:
    """The folder holding ``node_modules/oidc-provider`` and the script (installed once)."""
    home = CACHE / f"oidc-provider-{VERSION}"
    if not (home / "node_modules" / "oidc-provider" / "package.json").exists():
        if shutil.which("npm") is None:
            raise RuntimeError("npm is needed to install oidc-provider for the OIDC tests")
        home.mkdir(parents=True, exist_ok=True)
        (home / "package.json").write_text('{"private": true, "type": "module"}\n')
        subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--silent", f"oidc-provider@{VERSION}"],
            cwd=home,
            check=True,
            timeout=300,
        )
    # Node resolves the package from the script's own folder, so the script goes there.
    shutil.copyfile(SCRIPT, home / SCRIPT.name)
    return home


def signing_key(kid: str | None = None) -> dict[str, Any]:
    """A new RS256 signing key as a private JWK."""
    key = RSAKey.generate_key(
        2048, {"kid": kid or uuid.uuid4().hex[:12], "use": "sig", "alg": "RS256"}, private=True
    )
    return dict(key.as_dict(private=True))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class OidcProviderServer:
    port: int
    config: dict[str, Any]
    folder: Path
    process: subprocess.Popen[bytes] | None = None
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.folder / "provider.log"

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _write(self) -> None:
        (self.folder / "provider.json").write_text(json.dumps(self.config))

    def start(self) -> None:
        home = install()
        self._write()
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [
                    "node",
                    str(home / SCRIPT.name),
                    str(self.folder / "provider.json"),
                    str(self.port),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=home,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"oidc-provider exited: {self.log.read_text()[-2000:]}")
            try:
                answer = httpx.get(self.issuer + "/.well-known/openid-configuration", timeout=2)
                if answer.status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"oidc-provider did not answer: {self.log.read_text()[-2000:]}")

    def reload(self) -> None:
        """Build the provider again from :attr:`config` (after a change to it)."""
        self._write()
        answer = httpx.post(self.issuer + "/_test/reload", timeout=10)
        assert answer.status_code == 204, answer.text

    def rotate_keys(self) -> str:
        """Sign with a new key from now on (the old one is no longer published); its kid."""
        key = signing_key()
        self.config["jwks"] = {"keys": [key]}
        self.reload()
        return str(key["kid"])

    def tamper_id_tokens(self, mode: str | None) -> None:
        """From now on the token endpoint's ID token is ``mode``: "expired" or "audience"
        (signed again with the provider's key, only that claim wrong), "signature" (a
        claim changed under the old signature); None: as issued."""
        if mode is None:
            self.config.pop("idTokenTamper", None)
        else:
            self.config["idTokenTamper"] = mode
        self.reload()

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)


def start_provider(
    redirect_uris: list[str],
    users: dict[str, dict[str, Any]],
    post_logout_redirect_uris: list[str] | None = None,
) -> OidcProviderServer:
    """A provider on a free loopback port with one confidential client, :data:`CLIENT_ID`."""
    port = _free_port()
    config = {
        "issuer": f"http://127.0.0.1:{port}",
        "clients": [
            {
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "redirect_uris": redirect_uris,
                "post_logout_redirect_uris": post_logout_redirect_uris or [],
                "grant_types": ["authorization_code"],
                "response_types": ["code"],
                "token_endpoint_auth_method": "client_secret_basic",
            }
        ],
        "jwks": {"keys": [signing_key()]},
        "users": users,
    }
    server = OidcProviderServer(port, config, Path(tempfile.mkdtemp(prefix="oidc-provider-")))
    atexit.register(server.close)
    server.start()
    return server


class _Forms(html.parser.HTMLParser):
    """Every form of a page: its action, method and named inputs' values."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, Any]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append(
                {"action": values.get("action", ""), "fields": {}, "id": values.get("id", "")}
            )
        elif tag in ("input", "button") and self.forms and values.get("name"):
            self.forms[-1]["fields"][values["name"]] = values.get("value", "")


def forms(page: str) -> list[dict[str, Any]]:
    parser = _Forms()
    parser.feed(page)
    return parser.forms


@dataclass
class BrowserFlow:
    """One browser: ``console`` talks to Dockyard (cookies kept), ``provider`` to the IdP."""

    console: httpx.AsyncClient
    provider: httpx.AsyncClient
    console_base: str

    async def follow_provider(self, url: str, login: str | None) -> httpx.Response:
        """Follow the provider's pages from ``url`` (signing in as ``login`` when it asks)
        until it sends the browser back to Dockyard; the console's answer to that."""
        for _ in range(20):
            if url.startswith(self.console_base):
                parts = urlsplit(url)
                return await self.console.get(
                    parts.path + (f"?{parts.query}" if parts.query else "")
                )
            answer = await self.provider.get(url)
            while True:
                if answer.is_redirect:
                    url = urljoin(str(answer.url), answer.headers["location"])
                    break
                found = forms(answer.text)
                if answer.status_code != 200 or not found:
                    raise AssertionError(
                        f"provider page {answer.url}: {answer.status_code} {answer.text[:500]}"
                    )
                form = found[0]
                fields = dict(form["fields"])
                if "login" in fields:
                    if login is None:
                        raise AssertionError("the provider asked to sign in again")
                    fields.update(login=login, password="any-password")
                answer = await self.provider.post(
                    urljoin(str(answer.url), form["action"]), data=fields
                )
        raise AssertionError("too many redirects between Dockyard and the provider")

    async def sign_in(self, login: str | None, after: str = "/harbor/projects") -> httpx.Response:
        """Click "Sign in via …": Dockyard's answer once the provider sent the browser back."""
        start = await self.console.get("/c/oidc/login", params={"redirect_url": after})
        assert start.status_code == 303, start.text
        return await self.follow_provider(start.headers["location"], login)
