"""A registry that stores nothing and checks nothing: the client's ceiling.

It answers the push side of the distribution API just well enough for skopeo:
``GET /v2/`` (Basic auth challenge, any credentials accepted), blob ``HEAD``
(unknown until uploaded), upload ``POST``/``PATCH``/``PUT`` and manifest ``PUT``.
Request bodies are read and thrown away: no hashing, no disk, no database.
``GET /file`` sends the file named by ``NULL_REGISTRY_FILE`` by ASGI pathsend, with
no authentication and no lookup: the ceiling of a blob download through Granian.

``registry_bench.py`` pushes the large image to it, served by the same ASGI
server Dockyard uses (Granian, one worker). No real registry can push faster
than that on the same machine, so the figure divided by distribution's is the
highest ratio any registry could reach here with this client.

Run it alone (from ``bench/``):

    ../.venv/bin/python -m granian --interface asgi --port 5099 null_registry:app
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_API_VERSION = (b"docker-distribution-api-version", b"registry/2.0")
_uploads: dict[str, int] = {}  # upload id -> bytes received so far
_blobs: dict[tuple[str, str], int] = {}  # (repository, digest) -> size
_FILE = os.environ.get("NULL_REGISTRY_FILE", "")  # served at GET /file, if set
_FILE_SIZE = os.path.getsize(_FILE) if _FILE else 0


async def _drain(receive: Receive, keep: bool = False) -> tuple[int, bytes]:
    """Read the whole request body; return its size (and the bytes, if ``keep``)."""
    size = 0
    parts: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        body = message.get("body", b"")
        size += len(body)
        if keep:
            parts.append(body)
        if not message.get("more_body"):
            break
    return size, b"".join(parts)


async def _respond(
    send: Send, status: int, headers: list[tuple[bytes, bytes]] | None = None, body: bytes = b""
) -> None:
    head = [_API_VERSION, (b"content-length", str(len(body)).encode()), *(headers or [])]
    if body:
        head.append((b"content-type", b"application/json"))
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})


def _error(code: str) -> bytes:
    return json.dumps({"errors": [{"code": code, "message": code.lower()}]}).encode()


def _split(path: str) -> tuple[str, str, str]:
    """``/v2/<name>/<kind>/<rest>`` -> (name, kind, rest); kind '' when not matched."""
    for kind in ("/blobs/uploads/", "/blobs/", "/manifests/"):
        name, found, rest = path[len("/v2/") :].partition(kind)
        if found:
            return name, kind.strip("/"), rest
    return "", "", ""


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    method: str = scope["method"]
    path: str = scope["path"]
    query = parse_qs(scope.get("query_string", b"").decode())

    if path == "/file" and method == "GET" and _FILE:
        # The download ceiling: the blob file sent by Granian's pathsend, no app around it.
        await _drain(receive)
        head = [_API_VERSION, (b"content-length", str(_FILE_SIZE).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": head})
        await send({"type": "http.response.pathsend", "path": _FILE})
        return
    if path in ("/v2", "/v2/"):
        await _drain(receive)
        if b"authorization" not in dict(scope["headers"]):
            challenge = (b"www-authenticate", b'Basic realm="null-registry"')
            await _respond(send, 401, [challenge], _error("UNAUTHORIZED"))
        else:
            await _respond(send, 200, body=b"{}")
        return

    name, kind, rest = _split(path)
    if kind == "blobs/uploads":
        upload_id = rest or uuid.uuid4().hex
        location = f"/v2/{name}/blobs/uploads/{upload_id}".encode()
        size, _ = await _drain(receive)
        if method == "POST" and not rest:
            _uploads[upload_id] = size
        elif upload_id in _uploads and method in ("PATCH", "PUT"):
            _uploads[upload_id] += size
        else:
            await _respond(send, 404, body=_error("BLOB_UPLOAD_UNKNOWN"))
            return
        received = _uploads[upload_id]
        digest = query.get("digest", [""])[0]
        if method == "PUT" or (method == "POST" and digest):
            del _uploads[upload_id]
            _blobs[(name, digest)] = received
            created = [(b"location", f"/v2/{name}/blobs/{digest}".encode())]
            created.append((b"docker-content-digest", digest.encode()))
            await _respond(send, 201, created)
            return
        span = f"0-{max(received - 1, 0)}".encode()
        headers = [(b"location", location), (b"range", span)]
        headers.append((b"docker-upload-uuid", upload_id.encode()))
        await _respond(send, 202, headers)
        return
    if kind == "blobs" and method in ("HEAD", "GET"):
        await _drain(receive)
        known = _blobs.get((name, rest))
        if known is None:
            await _respond(send, 404, body=b"" if method == "HEAD" else _error("BLOB_UNKNOWN"))
        else:
            await _respond(send, 200, [(b"docker-content-digest", rest.encode())])
        return
    if kind == "manifests" and method == "PUT":
        _, body = await _drain(receive, keep=True)
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        headers = [(b"location", f"/v2/{name}/manifests/{digest}".encode())]
        headers.append((b"docker-content-digest", digest.encode()))
        await _respond(send, 201, headers)
        return
    await _drain(receive)
    code = "MANIFEST_UNKNOWN" if kind == "manifests" else "NOT_FOUND"
    await _respond(send, 404, body=_error(code))
