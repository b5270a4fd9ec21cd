"""Blob uploads over plain HTTP, on SQLite and PostgreSQL; a chunked upload survives a restart."""

from __future__ import annotations

import contextlib
import hashlib
import os
import select
import socket
from typing import BinaryIO

import httpx
import pytest
from tests.support.server import DockyardServer

pytestmark = pytest.mark.e2e

OCTETS = "application/octet-stream"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def patch_chunk(client: httpx.Client, location: str, chunk: bytes, start: int) -> httpx.Response:
    return client.patch(
        location,
        content=chunk,
        headers={
            "Content-Type": OCTETS,
            "Content-Range": f"{start}-{start + len(chunk) - 1}",
            "Content-Length": str(len(chunk)),
        },
    )


def test_chunked_upload_survives_a_restart(backend_server: DockyardServer, repo_name: str) -> None:
    data = os.urandom(3 * 1024 * 1024 + 777)
    split = 1024 * 1024 + 5
    first, rest = data[:split], data[split:]
    digest = sha256(data)

    client = backend_server.client()
    try:
        started = client.post(f"/v2/{repo_name}/blobs/uploads/")
        assert started.status_code == 202, started.text
        assert started.headers["Docker-Upload-UUID"]
        chunk1 = patch_chunk(client, started.headers["Location"], first, 0)
        assert chunk1.status_code == 202, chunk1.text
        assert chunk1.headers["Range"] == f"0-{split - 1}"
        location = chunk1.headers["Location"]

        backend_server.restart()

        # the same client, so the token issued before the restart must still be honoured
        status = client.get(location)
        assert status.status_code == 204, status.text
        assert status.headers["Range"] == f"0-{split - 1}"
        chunk2 = patch_chunk(client, location, rest, split)
        assert chunk2.status_code == 202, chunk2.text
        assert chunk2.headers["Range"] == f"0-{len(data) - 1}"
        done = client.put(chunk2.headers["Location"], params={"digest": digest})
        assert done.status_code == 201, done.text
        assert done.headers["Docker-Content-Digest"] == digest
        assert done.headers["Location"].endswith(f"/v2/{repo_name}/blobs/{digest}")

        head = client.head(f"/v2/{repo_name}/blobs/{digest}")
        blob = client.get(f"/v2/{repo_name}/blobs/{digest}")
    finally:
        client.close()
    assert head.status_code == 200
    assert head.headers["Content-Length"] == str(len(data))
    assert blob.status_code == 200
    assert blob.content == data


def test_out_of_order_chunk_is_refused_with_the_current_range(
    backend_server: DockyardServer, repo_name: str
) -> None:
    data = os.urandom(200_000)
    with backend_server.client() as client:
        started = client.post(f"/v2/{repo_name}/blobs/uploads/")
        assert started.status_code == 202, started.text
        chunk1 = patch_chunk(client, started.headers["Location"], data[:100_000], 0)
        assert chunk1.status_code == 202, chunk1.text
        skipped = patch_chunk(client, chunk1.headers["Location"], data[150_000:], 150_000)
        status = client.get(chunk1.headers["Location"])

    assert skipped.status_code == 416, skipped.text
    assert status.status_code == 204
    assert status.headers["Range"] == "0-99999"


def test_wrong_digest_on_completion_is_refused(
    backend_server: DockyardServer, repo_name: str
) -> None:
    data = os.urandom(10_000)
    with backend_server.client() as client:
        started = client.post(f"/v2/{repo_name}/blobs/uploads/")
        assert started.status_code == 202, started.text
        done = client.put(
            started.headers["Location"],
            params={"digest": sha256(b"something else")},
            content=data,
            headers={"Content-Type": OCTETS},
        )
        blob = client.get(f"/v2/{repo_name}/blobs/{sha256(data)}")

    assert done.status_code == 400, done.text
    assert done.json()["errors"][0]["code"] == "DIGEST_INVALID"
    assert blob.status_code == 404
    assert blob.json()["errors"][0]["code"] == "BLOB_UNKNOWN"


def test_monolithic_upload_and_range_read(backend_server: DockyardServer, repo_name: str) -> None:
    data = os.urandom(100_000)
    digest = sha256(data)
    with backend_server.client() as client:
        # answer the push challenge first, so the body below is sent with a token
        assert client.post(f"/v2/{repo_name}/blobs/uploads/").status_code == 202
        done = client.post(
            f"/v2/{repo_name}/blobs/uploads/",
            params={"digest": digest},
            content=data,
            headers={"Content-Type": OCTETS},
        )
        part = client.get(f"/v2/{repo_name}/blobs/{digest}", headers={"Range": "bytes=10-19"})

    assert done.status_code == 201, done.text
    assert done.headers["Docker-Content-Digest"] == digest
    assert part.status_code == 206
    assert part.content == data[10:20]


def _read_response(stream: BinaryIO) -> tuple[int, dict[str, str]]:
    status_line = stream.readline()
    assert status_line.startswith(b"HTTP/1.1 "), f"no response, got {status_line!r}"
    headers = {}
    while (line := stream.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    stream.read(int(headers.get("content-length", "0")))
    return int(status_line.split()[1]), headers


def test_a_refused_request_body_does_not_break_the_connection(
    backend_server: DockyardServer, repo_name: str
) -> None:
    """A 401 sent before the body was read must leave the keep-alive connection usable, or
    say ``Connection: close``: HTTP clients reuse connections they were not told to drop."""
    body = os.urandom(1024 * 1024)
    host = backend_server.registry
    with socket.create_connection((backend_server.host, backend_server.port), timeout=30) as sock:
        stream = sock.makefile("rb")
        head = (
            f"POST /v2/{repo_name}/blobs/uploads/?digest={sha256(body)} HTTP/1.1\r\n"
            f"Host: {host}\r\nContent-Type: {OCTETS}\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        sock.sendall(head.encode())
        # The server may judge the headers alone (as it does for auth); give it the chance.
        readable, _, _ = select.select([sock], [], [], 5)
        if not readable:
            sock.sendall(body)
        status, headers = _read_response(stream)
        assert status == 401
        if readable:
            # it answered before reading the body: the body is still owed on this connection
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                sock.sendall(body)
        if headers.get("connection", "").lower() == "close":
            return  # the server said it drops the connection: clients open a new one
        try:
            sock.sendall(f"GET /v2/ HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            follow_up, _ = _read_response(stream)
        except (BrokenPipeError, ConnectionResetError) as exc:
            pytest.fail(f"connection dropped after a 401 without Connection: close ({exc!r})")
        assert follow_up == 401
