"""The client's address behind trusted reverse proxies (``Forwarded``, ``X-Forwarded-For``).

A proxy appends the address it received the request from, so the chain is read
from the right: every hop that is a trusted proxy is skipped, and the first one
that is not is the client. Nothing a client writes into these headers is believed
unless the hop after it is trusted, and from an untrusted peer the headers are
ignored altogether.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from functools import lru_cache

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_FOR = re.compile(r'(?:^|;)\s*for\s*=\s*("(?:[^"\\]|\\.)*"|[^;,\s]*)', re.IGNORECASE)
_MAX_HOPS = 32


@lru_cache(maxsize=8)
def trusted_networks(entries: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in entries)


def _normalised(value: str) -> str | None:
    """An address from a header element (``[v6]:port``, ``v4:port``, quoted), else None."""
    value = value.strip().strip('"').strip()
    if value.startswith("["):
        value = value[1 : value.find("]")] if "]" in value else ""
    elif value.count(":") == 1:
        value = value.partition(":")[0]
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


def _is_trusted(address: str, networks: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def forwarded_chain(forwarded: Iterable[str], x_forwarded_for: Iterable[str]) -> list[str]:
    """The hops the proxies recorded, leftmost first (``Forwarded`` wins when present)."""
    hops: list[str] = []
    for header in forwarded:
        for element in header.split(","):
            match = _FOR.search(element)
            if match:
                hops.append(match.group(1))
    if not hops:
        for header in x_forwarded_for:
            hops.extend(part for part in header.split(",") if part.strip())
    return hops[-_MAX_HOPS:]


def client_ip(
    peer: str,
    forwarded: Iterable[str],
    x_forwarded_for: Iterable[str],
    trusted: Sequence[Network],
) -> str:
    """Who sent the request: ``peer``, or the nearest untrusted hop behind trusted proxies."""
    if not trusted or not _is_trusted(peer, trusted):
        return peer
    client = peer
    for raw in reversed(forwarded_chain(forwarded, x_forwarded_for)):
        hop = _normalised(raw)
        if hop is None:  # "unknown" or an obfuscated name: the last trusted hop answers for it
            return client
        client = hop
        if not _is_trusted(hop, trusted):
            return hop
    return client
