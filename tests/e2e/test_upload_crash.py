"""A chunked upload cut by a server crash continues at once after the restart (issue 12, item 7).

The server is killed with SIGKILL while a PATCH streams into the upload, so the claim that
PATCH took is never released; the first PATCH after the restart must take it over from the
dead process instead of answering 416 until the claim's lease (10 minutes) ends.
"""

from __future__ import annotations

import hashlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from tests.support.server import DockyardServer

pytestmark = pytest.mark.e2e

OCTETS = "application/octet-stream"
MIB = 1024 * 1024


def _wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


def test_upload_continues_at_once_after_a_crash_mid_chunk(
    backend_server: DockyardServer, repo_name: str
) -> None:
    server = backend_server
    data = os.urandom(9 * MIB + 333)
    split = 2 * MIB + 1
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    release = threading.Event()
    errors: list[BaseException] = []

    client = server.client()
    try:
        started = client.post(f"/v2/{repo_name}/blobs/uploads/")
        assert started.status_code == 202, started.text
        upload_id = started.headers["Docker-Upload-UUID"]
        first = client.patch(
            started.headers["Location"],
            content=data[:split],
            headers={"Content-Type": OCTETS, "Content-Range": f"0-{split - 1}"},
        )
        assert first.status_code == 202, first.text
        location = first.headers["Location"]
        # The first chunk went into an object of its own (storage/layout.py, attempt_id).
        (partial,) = Path(server.data_dir, "storage", "uploads").glob(f"{upload_id}*")
        assert partial.stat().st_size == split

        # A second chunk that sends 4 MiB (enough for the server to write part of it), then
        # stalls until the server is gone.
        def stalled_body() -> Iterator[bytes]:
            yield data[split : split + 4 * MIB]
            release.wait(60)
            yield data[split + 4 * MIB :]

        def send_stalled() -> None:
            try:
                with server.client() as other:
                    other.auth = client.auth  # reuse the push token: a stream cannot be replayed
                    other.patch(
                        location,
                        content=stalled_body(),
                        headers={
                            "Content-Type": OCTETS,
                            "Content-Range": f"{split}-{len(data) - 1}",
                        },
                    )
            except httpx.TransportError:
                pass  # the server died under it, as intended
            except BaseException as exc:  # reported by the main thread
                errors.append(exc)

        sender = threading.Thread(target=send_stalled, daemon=True)
        sender.start()
        # The in-flight chunk holds the claim once its bytes reach the partial object.
        _wait_for(lambda: partial.stat().st_size > split, 30, "the stalled chunk to be written")
        assert server.pid is not None
        os.killpg(server.pid, signal.SIGKILL)
        release.set()
        sender.join(30)
        assert not errors, errors
        server.stop()
        server.start()

        status = client.get(location)
        assert status.status_code == 204, status.text
        assert status.headers["Range"] == f"0-{split - 1}"  # the cut chunk never counted
        began = time.monotonic()
        resumed = client.patch(
            location,
            content=data[split:],
            headers={"Content-Type": OCTETS, "Content-Range": f"{split}-{len(data) - 1}"},
        )
        took = time.monotonic() - began
        assert resumed.status_code == 202, resumed.text
        assert resumed.headers["Range"] == f"0-{len(data) - 1}"
        assert took < 30, f"the resumed chunk took {took:.1f}s"
        done = client.put(resumed.headers["Location"], params={"digest": digest})
        assert done.status_code == 201, done.text
        blob = client.get(f"/v2/{repo_name}/blobs/{digest}")
        assert blob.status_code == 200
        assert blob.content == data
    finally:
        release.set()
        client.close()
