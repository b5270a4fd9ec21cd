"""Where outbound HTTP may go: the egress policy for targets users configure.

A project admin chooses webhook targets (and, later, replication endpoints), but
the server is the one that connects, from inside its network and with the
``Authorization`` header the target carries. The policy decides, per resolved
address, whether such a connection may be made:

1. a **cloud metadata address** (``169.254.169.254``, ``fd00:ec2::254``, …) is
   always refused;
2. an address in ``egress_denied_networks`` is refused;
3. an address in ``egress_allowed_networks`` is allowed;
4. otherwise by kind: public addresses are allowed, private ranges (RFC 1918,
   100.64/10, fc00::/7) when ``egress_allow_private`` (default on), loopback when
   ``egress_allow_loopback`` (default off); link-local, unspecified, multicast and
   other reserved addresses are refused.

IPv4 inside IPv6 (``::ffff:169.254.169.254``, NAT64's ``64:ff9b::/96``) is judged
as the IPv4 address it carries. Names of metadata services
(``metadata.google.internal``…) are refused before any lookup, and ``localhost``
is loopback by definition (RFC 6761). Everything here is pure: the outbound client
(``http/outbound.py``) resolves a name once, asks ``check_address`` for every
answer and connects only to an address that passed.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dockyard.settings import Settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean, Oracle, …
        "169.254.170.2",  # AWS ECS task metadata and credentials
        "100.100.100.200",  # Alibaba Cloud
        "192.0.0.192",  # Oracle Cloud (classic)
        "fd00:ec2::254",  # AWS IMDS over IPv6
        "fd20:ce::254",  # GCP metadata over IPv6
    )
)
"""Instance metadata services: they hand out the machine's cloud credentials."""

METADATA_NAMES: frozenset[str] = frozenset(
    {
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "instance-data",
        "instance-data.ec2.internal",
        "metadata.tencentyun.com",
    }
)
"""Names that point at a metadata service whatever a resolver answers for them."""

PRIVATE_NETWORKS: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(n)
    for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7")
)
"""Private and shared address space (RFC 1918, RFC 6598 carrier NAT, IPv6 unique local)."""

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NUMERIC = re.compile(r"[0-9a-fx.]*[0-9][0-9a-fx.]*")


class EgressRefused(Exception):
    """The policy forbids this destination; ``str()`` says which address and why."""


def normalise_host(host: str) -> str:
    """Lower case, without a trailing dot or IPv6 brackets."""
    return host.strip().strip("[]").rstrip(".").lower()


def parse_ip(host: str) -> IPAddress | None:
    """``host`` as an IP address (a literal in a URL), else ``None`` (a name).

    The old numeric IPv4 spellings that resolvers still accept (``2852039166``,
    ``0xa9fea9fe``, ``0251.0376.0251.0376``, ``169.254.43518``) count as literals."""
    text = normalise_host(host).partition("%")[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        pass
    if _NUMERIC.fullmatch(text):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(text))
        except OSError:
            return None
    return None


def unwrap(address: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 one carries (mapped ``::ffff:a.b.c.d`` or NAT64)."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address in _NAT64:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address


def kind_of(address: IPAddress) -> str:
    """What sort of address this is, in words the refusal message uses."""
    address = unwrap(address)
    if address in METADATA_ADDRESSES:
        return "cloud metadata"
    if address.is_unspecified:
        return "unspecified"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if any(address in network for network in PRIVATE_NETWORKS):
        return "private"
    if address.is_global:
        return "public"
    return "reserved"


def _within(address: IPAddress, networks: Iterable[IPNetwork]) -> bool:
    return any(address.version == n.version and address in n for n in networks)


@dataclass(frozen=True)
class EgressPolicy:
    """Which destinations outbound calls to user-chosen targets may reach."""

    allow_loopback: bool = False
    allow_private: bool = True
    allowed_networks: tuple[IPNetwork, ...] = ()
    denied_networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings) -> EgressPolicy:
        return cls(
            allow_loopback=settings.egress_allow_loopback,
            allow_private=settings.egress_allow_private,
            allowed_networks=tuple(settings.egress_allowed_networks),
            denied_networks=tuple(settings.egress_denied_networks),
        )

    def refusal(self, address: IPAddress) -> str | None:
        """Why a connection to ``address`` is refused, or ``None`` when it is allowed."""
        why = self._why(address)
        return None if why is None else f"{address} is {why}"

    def _why(self, address: IPAddress) -> str | None:
        plain = unwrap(address)
        kind = kind_of(plain)
        if kind == "cloud metadata":
            return "a cloud metadata address (never allowed)"
        if _within(plain, self.denied_networks) or _within(address, self.denied_networks):
            return "in egress_denied_networks"
        if _within(plain, self.allowed_networks) or _within(address, self.allowed_networks):
            return None
        if kind == "public":
            return None
        if kind == "private" and self.allow_private:
            return None
        if kind == "loopback" and self.allow_loopback:
            return None
        setting = {
            "private": " (egress_allow_private is off in dockyard.yml)",
            "loopback": " (set egress_allow_loopback in dockyard.yml to allow it)",
        }.get(kind, "")
        article = "an" if kind[0] in "aeiou" else "a"
        return f"{article} {kind} address{setting}"

    def check_address(self, address: IPAddress, host: str | None = None) -> None:
        """Raise ``EgressRefused`` unless ``address`` (what ``host`` resolved to) is allowed."""
        why = self._why(address)
        if why is None:
            return
        if host and parse_ip(host) is None:
            raise EgressRefused(
                f"refused by the egress policy: {host} resolves to {address}, which is {why}"
            )
        raise EgressRefused(f"refused by the egress policy: {address} is {why}")

    def check_host(self, host: str) -> None:
        """What can be known from the URL's host alone, before any lookup: a literal
        address is checked in full; a metadata name, or ``localhost`` while loopback is
        refused, is refused. Other names are checked once resolved."""
        literal = parse_ip(host)
        if literal is not None:
            self.check_address(literal)
            return
        name = normalise_host(host)
        if name in METADATA_NAMES:
            raise EgressRefused(f"refused by the egress policy: {name} is a cloud metadata service")
        loopback_refused = self.refusal(ipaddress.ip_address("127.0.0.1")) is not None
        if loopback_refused and (name == "localhost" or name.endswith(".localhost")):
            raise EgressRefused(
                f"refused by the egress policy: {name} is a loopback name"
                " (set egress_allow_loopback in dockyard.yml to allow it)"
            )
