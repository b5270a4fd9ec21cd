"""Which blob responses leave the bytes to the ASGI server (``http.response.pathsend``).

A server that offers the extension (Granian does) is sent a whole blob's path and reads
the file itself: no Python per chunk. The app below offers it the way Granian does (in
the scope's ``extensions``) and records what the route sends, so a change that
quietly streams whole blobs through Python again fails here. A ranged GET cannot go
by pathsend (the extension sends whole files only) and a HEAD reads no file at all.
"""

from __future__ import annotations

from typing import Any

import anyio
import httpx
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from tests.integration.conftest import ADMIN_PASSWORD, BASE_URL, make_client
from tests.integration.registry_helpers import push_blob


class _PathsendServer:
    """Offers ``http.response.pathsend`` and answers it by reading the file, as a
    server would; remembers every message type and path the app sent."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.sent: list[str] = []
        self.paths: list[str] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            extensions: dict[str, Any] = dict(scope.get("extensions") or {})
            extensions["http.response.pathsend"] = {}
            scope = {**scope, "extensions": extensions}

        async def recording_send(message: Message) -> None:
            self.sent.append(message["type"])
            if message["type"] == "http.response.pathsend":
                self.paths.append(message["path"])
                body = await anyio.Path(message["path"]).read_bytes()
                await send({"type": "http.response.body", "body": body})
                return
            await send(message)

        await self.app(scope, receive, recording_send)


def _client(server: _PathsendServer) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=server, client=("127.0.0.1", 40002))
    return httpx.AsyncClient(transport=transport, base_url=BASE_URL, auth=("admin", ADMIN_PASSWORD))


async def test_whole_blob_get_goes_by_pathsend(app: Any, unique_repo: str) -> None:
    data = b"pathsend me " * 5000
    async with make_client(app, ("admin", ADMIN_PASSWORD)) as admin:
        digest = await push_blob(admin, unique_repo, data)
    server = _PathsendServer(app)
    async with _client(server) as client:
        response = await client.get(f"/v2/{unique_repo}/blobs/{digest}")
        assert response.status_code == 200
        assert response.content == data
        assert response.headers["content-length"] == str(len(data))
        assert response.headers["docker-content-digest"] == digest
        assert "http.response.pathsend" in server.sent
        (path,) = server.paths
        assert digest.removeprefix("sha256:") in path  # the stored blob, read by the server

        # HEAD then GET, as clients do: the HEAD sends no file, the GET sends it again.
        server.sent.clear()
        server.paths.clear()
        head = await client.head(f"/v2/{unique_repo}/blobs/{digest}")
        assert head.status_code == 200
        assert head.headers["content-length"] == str(len(data))
        assert "http.response.pathsend" not in server.sent
        again = await client.get(f"/v2/{unique_repo}/blobs/{digest}")
        assert again.content == data
        assert server.paths == [path]


async def test_ranged_blob_get_is_streamed(app: Any, unique_repo: str) -> None:
    data = bytes(range(256)) * 40
    async with make_client(app, ("admin", ADMIN_PASSWORD)) as admin:
        digest = await push_blob(admin, unique_repo, data)
    server = _PathsendServer(app)
    async with _client(server) as client:
        response = await client.get(
            f"/v2/{unique_repo}/blobs/{digest}", headers={"Range": "bytes=100-1099"}
        )
        assert response.status_code == 206
        assert response.content == data[100:1100]
        assert "http.response.pathsend" not in server.sent
        assert server.paths == []
