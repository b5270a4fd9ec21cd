"""The proxy cache's stale-served metric label comes from the failure's kind and the
upstream's HTTP status, never from the wording of its message."""

from __future__ import annotations

import httpx
import pytest

from dockyard.proxy.cache import WrongBytesError, _reason
from dockyard.remotes.client import RemoteError, RemoteProtocolError, RemoteUnreachable


@pytest.mark.parametrize(
    ("failure", "label"),
    [
        (RemoteProtocolError("hub:v1: the remote answered 429", status=429), "rate_limited"),
        (RemoteProtocolError("hub:v1: the remote answered 502", status=502), "server_error"),
        (RemoteProtocolError("hub:v1: the remote answered 503", status=503), "server_error"),
        (RemoteProtocolError("hub:v1: the remote answered 400", status=400), "error"),
        # Numbers in a message say nothing: a digest or a size can contain " 500".
        (RemoteProtocolError("hub:v1: 500 bytes, then 429 more"), "error"),
        (
            RemoteUnreachable("127.0.0.1:5000: connection refused (answered 503 before)"),
            "unreachable",
        ),
        (TimeoutError(), "timeout"),
        (httpx.ReadTimeout("slow"), "timeout"),
        (WrongBytesError("the manifest's bytes do not match, status 500"), "wrong_bytes"),
        (RemoteError("something else"), "error"),
    ],
)
def test_the_reason_label_comes_from_types_and_status(failure: Exception, label: str) -> None:
    assert _reason(failure) == label
