"""The egress policy (``dockyard.http.egress``): which addresses outbound calls to
user-chosen targets may reach, from the settings. Pure: no lookups, no sockets."""

from __future__ import annotations

import ipaddress

import pytest

from dockyard.errors import ConfigurationError
from dockyard.http.egress import EgressPolicy, EgressRefused, kind_of
from dockyard.settings import Settings, load_settings

DEFAULT = EgressPolicy.from_settings(Settings())


def refused(policy: EgressPolicy, address: str) -> str | None:
    return policy.refusal(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("169.254.169.254", "cloud metadata"),
        ("fd00:ec2::254", "cloud metadata"),
        ("100.100.100.200", "cloud metadata"),
        ("::ffff:169.254.169.254", "cloud metadata"),  # IPv4-mapped
        ("64:ff9b::a9fe:a9fe", "cloud metadata"),  # NAT64 of 169.254.169.254
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("0.0.0.0", "unspecified"),  # noqa: S104 - an address to judge, not to bind
        ("::", "unspecified"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("100.64.0.1", "private"),
        ("fd12:3456::1", "private"),
        ("224.0.0.1", "multicast"),
        ("255.255.255.255", "reserved"),
        ("240.0.0.1", "reserved"),
        ("8.8.8.8", "public"),
        ("2606:4700::1111", "public"),
    ],
)
def test_every_address_has_a_kind(address: str, kind: str) -> None:
    assert kind_of(ipaddress.ip_address(address)) == kind


def test_defaults_refuse_metadata_link_local_and_loopback_and_allow_private_and_public() -> None:
    for address in ("169.254.169.254", "fd00:ec2::254", "169.254.7.7", "fe80::1", "127.0.0.1"):
        assert refused(DEFAULT, address), address
    for address in ("0.0.0.0", "::", "224.0.0.1", "240.0.0.1"):  # noqa: S104 - judged, not bound
        assert refused(DEFAULT, address), address
    for address in ("10.0.0.1", "192.168.0.10", "fd00::1", "8.8.8.8", "2001:4860::8888"):
        assert refused(DEFAULT, address) is None, address
    message = refused(DEFAULT, "127.0.0.1")
    assert message == (
        "127.0.0.1 is a loopback address (set egress_allow_loopback in dockyard.yml to allow it)"
    )


def test_settings_open_loopback_close_private_and_refine_with_networks() -> None:
    settings = Settings(
        egress_allow_loopback=True,
        egress_allow_private=False,
        egress_allowed_networks=["10.20.0.0/16", "169.254.0.0/16"],
        egress_denied_networks=["10.20.30.0/24", "127.0.0.2/32"],
    )
    policy = EgressPolicy.from_settings(settings)
    assert refused(policy, "127.0.0.1") is None
    assert refused(policy, "::1") is None
    assert refused(policy, "127.0.0.2") == "127.0.0.2 is in egress_denied_networks"
    assert (
        refused(policy, "10.1.1.1")
        == "10.1.1.1 is a private address (egress_allow_private is off in dockyard.yml)"
    )
    assert refused(policy, "10.20.1.1") is None  # allowed network
    assert refused(policy, "10.20.30.1") == "10.20.30.1 is in egress_denied_networks"  # denied wins
    assert refused(policy, "169.254.3.3") is None  # link-local, explicitly allowed
    # ...but a metadata service never is, whatever the lists say.
    assert "cloud metadata" in (refused(policy, "169.254.169.254") or "")
    assert "cloud metadata" in (refused(policy, "::ffff:169.254.169.254") or "")


def test_a_network_with_host_bits_is_a_clear_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="egress_allowed_networks"):
        load_settings(egress_allowed_networks=["10.0.0.1/8"])


def test_host_checks_what_the_url_alone_tells() -> None:
    for host in ("169.254.169.254", "[fd00:ec2::254]", "metadata.google.internal", "METADATA."):
        with pytest.raises(EgressRefused, match="metadata"):
            DEFAULT.check_host(host)
    for host in ("localhost", "api.localhost", "127.0.0.1", "[::1]"):
        with pytest.raises(EgressRefused, match="egress_allow_loopback"):
            DEFAULT.check_host(host)
    # Old numeric spellings of 169.254.169.254 that resolvers accept are literals too.
    for host in ("2852039166", "0xa9fea9fe", "0251.0376.0251.0376", "169.254.43518"):
        with pytest.raises(EgressRefused, match=r"169\.254\.169\.254 is a cloud metadata"):
            DEFAULT.check_host(host)
    # A name is judged once resolved; a literal private address is fine by default.
    DEFAULT.check_host("hooks.example.com")
    DEFAULT.check_host("10.0.0.5")
    EgressPolicy(allow_loopback=True).check_host("localhost")


def test_a_refused_resolution_names_the_host() -> None:
    with pytest.raises(EgressRefused) as caught:
        DEFAULT.check_address(ipaddress.ip_address("169.254.169.254"), "evil.example.com")
    assert str(caught.value) == (
        "refused by the egress policy: evil.example.com resolves to 169.254.169.254,"
        " which is a cloud metadata address (never allowed)"
    )
