"""The client address behind trusted proxies, and cross-site browser requests."""

from __future__ import annotations

import pytest

from dockyard.http.forwarded import client_ip, trusted_networks
from dockyard.http.origin import foreign_source

TRUSTED = trusted_networks(("10.0.0.0/8", "::1"))


@pytest.mark.parametrize(
    ("peer", "forwarded", "xff", "expected"),
    [
        # no trusted proxy in front: headers are the client's own word
        ("203.0.113.9", [], ["198.51.100.1"], "203.0.113.9"),
        # one proxy: the hop it recorded
        ("10.0.0.2", [], ["198.51.100.1"], "198.51.100.1"),
        # a client forging the left part of the chain is not believed
        ("10.0.0.2", [], ["1.2.3.4, 198.51.100.1"], "198.51.100.1"),
        # two proxies: skip the trusted hop
        ("10.0.0.2", [], ["198.51.100.1, 10.0.0.3"], "198.51.100.1"),
        # several headers are one list
        ("10.0.0.2", [], ["198.51.100.7", "10.0.0.3"], "198.51.100.7"),
        # Forwarded wins, with quoted IPv6 and ports
        ("::1", ['for="[2001:db8::1]:4711";proto=https'], ["9.9.9.9"], "2001:db8::1"),
        ("10.0.0.2", ["for=198.51.100.3:80, for=10.0.0.9"], [], "198.51.100.3"),
        # an unknown hop: the proxy that saw it answers for it
        ("10.0.0.2", [], ["unknown"], "10.0.0.2"),
        ("10.0.0.2", [], ["198.51.100.1, garbage, 10.0.0.3"], "10.0.0.3"),
        # only trusted hops: the leftmost
        ("10.0.0.2", [], ["10.1.1.1"], "10.1.1.1"),
        # no header at all
        ("10.0.0.2", [], [], "10.0.0.2"),
    ],
)
def test_client_ip(peer: str, forwarded: list[str], xff: list[str], expected: str) -> None:
    assert client_ip(peer, forwarded, xff, TRUSTED) == expected


def test_nothing_is_trusted_by_default() -> None:
    assert client_ip("127.0.0.1", [], ["1.2.3.4"], trusted_networks(())) == "127.0.0.1"


@pytest.mark.parametrize(
    ("origin", "referer", "host", "scheme", "external", "foreign"),
    [
        (None, None, "reg.test", "http", "", False),  # a program, not a browser
        ("http://reg.test", None, "reg.test", "http", "", False),
        ("https://reg.test", None, "reg.test", "http", "", False),  # TLS ends at a proxy
        ("https://reg.test:443", None, "reg.test", "http", "", False),
        ("http://localhost:5000", None, "localhost:5000", "http", "", False),
        ("https://evil.example", None, "reg.test", "http", "", True),
        ("http://reg.test:8080", None, "reg.test", "http", "", True),
        ("null", None, "reg.test", "http", "", True),  # a sandboxed frame or data: URL
        (None, "https://evil.example/page", "reg.test", "http", "", True),
        (None, "http://reg.test/harbor/sign-in", "reg.test", "http", "", False),
        (
            "https://registry.example.com",
            None,
            "10.0.0.5:5000",
            "http",
            "https://registry.example.com",
            False,
        ),
        ("https://reg.test.evil.example", None, "reg.test", "http", "", True),
    ],
)
def test_foreign_source(
    origin: str | None, referer: str | None, host: str, scheme: str, external: str, foreign: bool
) -> None:
    assert (foreign_source(origin, referer, host, scheme, external) is not None) is foreign
