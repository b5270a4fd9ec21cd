"""The access log's byte count for a file the server sends itself (ASGI pathsend)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from starlette.types import Message, Receive, Scope, Send

from dockyard.http.middleware import RequestContextMiddleware


def _scope() -> Scope:
    return {
        "type": "http",
        "method": "GET",
        "path": "/v2/library/a/blobs/sha256:x",
        "headers": [],
        "client": ("127.0.0.1", 1234),
        "extensions": {"http.response.pathsend": {}},
    }


async def _run(app: object, caplog: pytest.LogCaptureFixture) -> tuple[list[Message], str]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    with caplog.at_level(logging.INFO, logger="dockyard.access"):
        await RequestContextMiddleware(app)(_scope(), receive, send)  # type: ignore[arg-type]
    return sent, caplog.records[-1].getMessage()


def _file_app(path: Path, headers: list[tuple[bytes, bytes]]) -> object:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.pathsend", "path": str(path)})

    return app


async def test_pathsend_counts_the_declared_length(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "blob"
    path.write_bytes(b"x" * 10)
    # The declared length wins over the file's size: no stat on the event loop.
    sent, line = await _run(_file_app(path, [(b"content-length", b"12345")]), caplog)
    assert '" 200 12345 ' in line
    assert sent[-1] == {"type": "http.response.pathsend", "path": str(path)}
    names = [key for key, _ in sent[0]["headers"]]
    assert b"x-request-id" in names and b"x-content-type-options" in names


async def test_pathsend_without_a_length_counts_the_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "blob"
    path.write_bytes(b"x" * 10)
    _, line = await _run(_file_app(path, []), caplog)
    assert '" 200 10 ' in line
