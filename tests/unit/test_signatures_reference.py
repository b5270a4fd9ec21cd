"""References as ``dockyard sign`` and ``dockyard verify`` take them."""

from __future__ import annotations

import pytest

from dockyard.signatures.remote import Reference, RegistryError, parse_reference

DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:5000/library/app:1.0", Reference("127.0.0.1:5000", "library/app", "1.0", None)),
        ("localhost/app", Reference("localhost", "app", "latest", None)),
        (f"reg.example/a/b/c@{DIGEST}", Reference("reg.example", "a/b/c", None, DIGEST)),
    ],
)
def test_parse(text: str, expected: Reference) -> None:
    assert parse_reference(text) == expected
    assert str(expected).startswith(expected.docker_reference)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("library/app:1", "registry host"),
        ("reg.example/app@sha256:xyz", "not a sha256 digest"),
        ("reg.example/App:1", "lowercase"),
        ("reg.example", "registry host"),
    ],
)
def test_refuse(text: str, reason: str) -> None:
    with pytest.raises(RegistryError, match=reason):
        parse_reference(text)
