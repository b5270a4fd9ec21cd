"""Pure rules of the remote adapters: Docker Hub's names and URL, ``WWW-Authenticate``."""

from __future__ import annotations

import pytest

from dockyard.errors import BadRequestError
from dockyard.http.egress import EgressPolicy
from dockyard.remotes.client import RemoteError, parse_challenge
from dockyard.remotes.docker_hub import (
    REGISTRY_URL,
    creatable_namespace,
    hub_repository,
    registry_url,
)
from dockyard.remotes.service import check_url


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("nginx", "library/nginx"),
        ("library/nginx", "library/nginx"),
        ("bitnami/redis", "bitnami/redis"),
        ("ab/tool", "ab/tool"),
        ("user123/my-app", "user123/my-app"),
        ("user123/my_app.v2", "user123/my_app.v2"),
    ],
)
def test_hub_names(given: str, expected: str) -> None:
    assert hub_repository(given) == expected


@pytest.mark.parametrize(
    "name",
    [
        "a/b/c",  # no deeper paths on the Hub
        "x/app",  # a one-letter namespace
        "Upper/app",
        "has-dash/app",  # namespaces are letters and digits
        "n" * 31 + "/app",
        "user/UPPER",
        "user/-lead",
        "user/",
        "/app",
        "",
    ],
)
def test_names_the_hub_cannot_hold(name: str) -> None:
    with pytest.raises(RemoteError):
        hub_repository(name)


def test_creatable_namespaces() -> None:
    assert creatable_namespace("abcd")
    assert creatable_namespace("a" * 30)
    assert not creatable_namespace("abc")  # older ids exist, but none can be made
    assert not creatable_namespace("a" * 31)
    assert not creatable_namespace("ab_cd")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://hub.docker.com", REGISTRY_URL),
        ("https://docker.io", REGISTRY_URL),
        ("https://index.docker.io/", REGISTRY_URL),
        ("https://registry-1.docker.io", REGISTRY_URL),
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
        ("https://mirror.example.com", "https://mirror.example.com"),
    ],
)
def test_registry_url(url: str, expected: str) -> None:
    assert registry_url(url) == expected


def test_parse_challenge() -> None:
    bearer = parse_challenge(
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:library/nginx:pull"'
    )
    assert bearer is not None
    assert bearer.scheme == "bearer"
    assert bearer.params == {
        "realm": "https://auth.docker.io/token",
        "service": "registry.docker.io",
        "scope": "repository:library/nginx:pull",
    }
    basic = parse_challenge('Basic realm="Registry Realm"')
    assert basic is not None
    assert basic.scheme == "basic"
    assert basic.params == {"realm": "Registry Realm"}
    unquoted = parse_challenge("Bearer realm=http://x/token,service=svc")
    assert unquoted is not None
    assert unquoted.params == {"realm": "http://x/token", "service": "svc"}
    escaped = parse_challenge('Bearer realm="a\\"b"')
    assert escaped is not None
    assert escaped.params["realm"] == 'a"b'
    assert parse_challenge(None) is None
    assert parse_challenge("") is None


def test_endpoint_urls_are_held_to_the_egress_policy() -> None:
    """With the default policy (no loopback), a loopback or metadata URL is refused when
    saved; a public one passes, without its trailing slash."""
    default = EgressPolicy()
    for url in ("http://127.0.0.1:5000", "http://localhost:5000", "http://[::1]/"):
        with pytest.raises(BadRequestError, match="egress_allow_loopback"):
            check_url(url, default)
    with pytest.raises(BadRequestError, match="metadata"):
        check_url("http://169.254.169.254", EgressPolicy(allow_loopback=True))
    assert check_url("https://registry.example.com/", default) == "https://registry.example.com"
    assert check_url("http://127.0.0.1:5000/", EgressPolicy(allow_loopback=True)) == (
        "http://127.0.0.1:5000"
    )
