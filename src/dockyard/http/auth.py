"""Parsing the ``Authorization`` header, the same way on every face."""

from __future__ import annotations

import base64
from dataclasses import dataclass

from dockyard.errors import UnauthorizedError


@dataclass(frozen=True, slots=True)
class BasicCredentials:
    username: str
    password: str


@dataclass(frozen=True, slots=True)
class BearerToken:
    token: str


def parse_authorization(header: str | None) -> BasicCredentials | BearerToken | None:
    """The caller's credentials; ``None`` for an anonymous caller.

    Empty Basic credentials (``Basic Og==``, which skopeo sends for
    ``--src-no-creds``) mean anonymous, not a failed login.
    """
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    scheme, value = scheme.lower(), value.strip()
    if scheme == "bearer" and value:
        return BearerToken(value)
    if scheme == "basic" and value:
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except ValueError:  # binascii.Error, UnicodeDecodeError, non-ASCII input
            raise UnauthorizedError("malformed Basic credentials") from None
        username, sep, password = decoded.partition(":")
        if not sep or "\x00" in decoded:
            raise UnauthorizedError("malformed Basic credentials")
        if not username and not password:
            return None
        if not username:
            raise UnauthorizedError("malformed Basic credentials")
        return BasicCredentials(username, password)
    raise UnauthorizedError("unsupported Authorization scheme; use Basic or Bearer")
