"""A hostile upstream for a proxy cache project: a small loopback HTTP server serving
wrong bytes for a digest, a cut-short blob, a manifest over 4 MiB, a manifest that is not
the digest it is fetched by, and a redirect loop. Each pull fails clearly and nothing
wrong is cached (no blob row, no artifact), on both databases."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from tests.integration.conftest import ADMIN_PASSWORD, unchecked_client
from tests.integration.registry_helpers import (
    OCI_MANIFEST,
    blob_row_exists,
    digest_of,
    error_code,
    image_manifest,
    rows_in_repository,
)

from dockyard.http.state import AppState
from dockyard.proxy.cache import STALE_SERVED, PullThroughCache
from dockyard.registry.models import Artifact

API = "/api/v2.0"
CONFIG = b'{"os":"linux","architecture":"amd64"}'
RIGHT = b"the layer the manifest names " * 40
HUGE = json.dumps(
    {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "annotations": {"x": "y" * (5 << 20)}}
).encode()


def _manifest(layer: bytes) -> bytes:
    return image_manifest((digest_of(CONFIG), len(CONFIG)), [(digest_of(layer), len(layer))])


GOOD = _manifest(RIGHT)
OTHER = _manifest(b"another layer")


class _Hostile(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    failing = 0
    """While not 0, repository ``flaky`` answers its manifests with this status."""
    stalling = 0.0
    """While not 0, repository ``flaky`` answers its manifests this many seconds late."""

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if "Content-Length" not in (headers or {}):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _manifest(self, body: bytes, digest: str | None = None) -> None:
        headers = {"Content-Type": OCI_MANIFEST, "Docker-Content-Digest": digest or digest_of(body)}
        self._send(200, body, headers)

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        if path == "/v2/":
            return self._send(200, b"{}")
        _, _, repo, kind, reference = path.split("/", 4)
        if kind == "manifests":
            if repo == "flaky" and _Hostile.stalling:
                time.sleep(_Hostile.stalling)
            if repo == "flaky" and _Hostile.failing:
                return self._send(_Hostile.failing, b'{"errors":[{"code":"TOOMANYREQUESTS"}]}')
            if repo == "loop":
                return self._send(302, b"", {"Location": path})
            if repo == "huge":
                return self._manifest(HUGE)
            if repo == "liar":  # says GOOD's digest, sends OTHER
                return self._manifest(OTHER, digest_of(GOOD))
            return self._manifest(GOOD)
        if reference == digest_of(CONFIG):
            return self._send(200, CONFIG)
        if repo == "flaky" and reference == digest_of(RIGHT):
            return self._send(200, RIGHT)
        if repo == "wrongbytes":
            return self._send(200, b"X" * len(RIGHT))
        if repo == "truncated":
            self.send_response(200)
            self.send_header("Content-Length", str(len(RIGHT)))
            self.end_headers()
            self.wfile.write(RIGHT[: len(RIGHT) // 2])
            self.wfile.flush()
            self.close_connection = True
            return None
        return self._send(404, b'{"errors":[{"code":"BLOB_UNKNOWN","message":"no"}]}')


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # the proxy closing a connection the server cut short is expected


@pytest.fixture(scope="module")
def hostile() -> Iterator[str]:
    server = _QuietServer(("127.0.0.1", 0), _Hostile)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
async def project(admin: httpx.AsyncClient, hostile: str) -> str:
    created = await admin.post(
        f"{API}/registries",
        json={"name": f"h{uuid.uuid4().hex[:8]}", "type": "docker-registry", "url": hostile},
    )
    assert created.status_code == 201, created.text
    registry_id = int(created.headers["location"].rsplit("/", 1)[1])
    name = f"hx{uuid.uuid4().hex[:8]}"
    made = await admin.post(
        f"{API}/projects", json={"project_name": name, "registry_id": registry_id}
    )
    assert made.status_code == 201, made.text
    return name


async def _settled(state: AppState) -> None:
    cache = state.registry.pull_through
    assert isinstance(cache, PullThroughCache)
    await cache.settled()


@pytest.mark.parametrize("repo", ["huge", "loop", "liar"])
async def test_bad_manifest_fails_clearly(
    app: Starlette, state: AppState, project: str, repo: str
) -> None:
    async with unchecked_client(app, ("admin", ADMIN_PASSWORD)) as client:
        got = await client.get(
            f"/v2/{project}/{repo}/manifests/v1", headers={"Accept": OCI_MANIFEST}
        )
    assert got.status_code == 503, got.text
    assert error_code(got) == "UNAVAILABLE"
    assert "cannot be pulled through proxy cache project" in got.text
    await _settled(state)
    assert await rows_in_repository(state, Artifact, f"{project}/{repo}") == 0


@pytest.mark.parametrize("repo", ["wrongbytes", "truncated"])
async def test_bad_blob_is_never_cached(
    app: Starlette, state: AppState, project: str, repo: str
) -> None:
    layer = digest_of(RIGHT)
    async with unchecked_client(app, ("admin", ADMIN_PASSWORD)) as client:
        manifest = await client.get(
            f"/v2/{project}/{repo}/manifests/v1", headers={"Accept": OCI_MANIFEST}
        )
        assert manifest.status_code == 200, manifest.text
        try:
            got = await client.get(f"/v2/{project}/{repo}/blobs/{layer}")
            whole = got.status_code == 200 and digest_of(got.content) == layer
        except Exception:  # the stream breaks once the bytes turn out wrong
            whole = False
        assert not whole
        await _settled(state)
        assert not await blob_row_exists(state, layer)
        assert await rows_in_repository(state, Artifact, f"{project}/{repo}") == 0
        # Asked again, it fails again (nothing half-stored is served as the blob).
        again = await client.head(f"/v2/{project}/{repo}/blobs/{layer}")
        assert again.status_code == 503, again.text


@pytest.mark.parametrize(("status", "reason"), [(429, "rate_limited"), (503, "server_error")])
async def test_rate_limited_or_failing_upstream_serves_the_cache(
    admin: httpx.AsyncClient, state: AppState, project: str, status: int, reason: str
) -> None:
    local = f"{project}/flaky"
    first = await admin.get(f"/v2/{local}/manifests/v1", headers={"Accept": OCI_MANIFEST})
    assert first.status_code == 200, first.text
    for digest in (digest_of(CONFIG), digest_of(RIGHT)):
        assert (await admin.get(f"/v2/{local}/blobs/{digest}")).status_code == 200
    await _settled(state)
    before = STALE_SERVED.labels(reason)._value.get()
    _Hostile.failing = status
    try:
        again = await admin.get(f"/v2/{local}/manifests/v1", headers={"Accept": OCI_MANIFEST})
    finally:
        _Hostile.failing = 0
    assert again.status_code == 200, again.text
    assert again.content == GOOD
    assert STALE_SERVED.labels(reason)._value.get() == before + 1


async def test_upstream_too_slow_serves_the_cache(
    admin: httpx.AsyncClient, state: AppState, project: str
) -> None:
    """The freshness check gives up after the outbound timeout (1 s here, for this test's
    new endpoint) and the cached copy is served."""
    cache = state.registry.pull_through
    assert isinstance(cache, PullThroughCache)
    kept = cache.timeout
    cache.timeout = 1.0  # the adapter of this test's endpoint is opened with it
    try:
        local = f"{project}/flaky"
        first = await admin.get(f"/v2/{local}/manifests/v1", headers={"Accept": OCI_MANIFEST})
        assert first.status_code == 200, first.text
        for digest in (digest_of(CONFIG), digest_of(RIGHT)):
            assert (await admin.get(f"/v2/{local}/blobs/{digest}")).status_code == 200
        await _settled(state)
        before = sum(STALE_SERVED.labels(r)._value.get() for r in ("timeout", "unreachable"))
        _Hostile.stalling = 5.0
        started = time.monotonic()
        try:
            again = await admin.get(f"/v2/{local}/manifests/v1", headers={"Accept": OCI_MANIFEST})
        finally:
            _Hostile.stalling = 0.0
        assert again.status_code == 200 and again.content == GOOD, again.text
        assert time.monotonic() - started < 4.5
        after = sum(STALE_SERVED.labels(r)._value.get() for r in ("timeout", "unreachable"))
        assert after == before + 1
    finally:
        cache.timeout = kept
