"""Registry bearer tokens (Docker token specification): RS256 JWTs with an ``access`` list."""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from dockyard.errors import UnauthorizedError
from dockyard.oci.scope import Scope

_LEEWAY_SECONDS = 30
_VERIFIED_CACHE_SIZE = 4096
REFRESH_TOKEN_SECONDS = 30 * 24 * 3600


def generate_signing_key() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")


@dataclass(frozen=True, slots=True)
class TokenClaims:
    subject: str
    issued_at: datetime
    expires_at: float
    access: tuple[Scope, ...]
    credential: str = ""
    """The fingerprint of the subject's password or secret when the token was issued
    (``crd``); a token from before a password change or secret refresh is refused."""

    def allows(self, resource_type: str, name: str, action: str) -> bool:
        return any(
            s.type == resource_type and s.name == name and (action in s.actions or "*" in s.actions)
            for s in self.access
        )


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    expires_in: int
    issued_at: datetime


class TokenAuthority:
    """Signs tokens for the token service and verifies them for the registry."""

    def __init__(
        self, private_key_pem: str, *, issuer: str, service: str, ttl_seconds: int
    ) -> None:
        key = serialization.load_pem_private_key(private_key_pem.encode("ascii"), password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError("the token signing key must be an RSA key")
        self._private_key = key
        self._public_key = key.public_key()
        der = self._public_key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.key_id = base64.b32encode(hashlib.sha256(der).digest()[:15]).decode("ascii")
        self.issuer = issuer
        self.service = service
        self.ttl_seconds = ttl_seconds
        # token -> claims; verifying RS256 costs more than the request it guards.
        self._verified: OrderedDict[str, TokenClaims] = OrderedDict()

    def issue(
        self,
        subject: str,
        access: list[Scope],
        not_after: float | None = None,
        credential: str = "",
        *,
        ttl_seconds: int | None = None,
    ) -> IssuedToken:
        """A token for ``access`` living ``ttl_seconds`` (default: the start-time
        lifetime); it never outlives ``not_after`` (an expiring robot).

        ``credential`` fingerprints the subject's current password or secret.
        """
        now = int(time.time())
        ttl = self.ttl_seconds if ttl_seconds is None else ttl_seconds
        if not_after is not None:
            ttl = max(1, min(ttl, int(not_after) - now))
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": self.service,
            "iat": now,
            "nbf": now - 1,
            "exp": now + ttl,
            "jti": secrets.token_urlsafe(16),
            "access": [
                {"type": s.type, "name": s.name, "actions": sorted(s.actions)} for s in access
            ],
        }
        if credential:
            claims["crd"] = credential
        token = jwt.encode(
            claims, self._private_key, algorithm="RS256", headers={"kid": self.key_id}
        )
        return IssuedToken(token, ttl, datetime.fromtimestamp(now, UTC))

    def issue_refresh(self, subject: str, credential: str) -> str:
        """A long-lived token that the OAuth2 ``refresh_token`` grant accepts.

        ``credential`` fingerprints the account's current password or secret, so a
        changed password or refreshed robot secret retires the refresh tokens too.
        """
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "crd": credential,
            "aud": self._refresh_audience,
            "iat": now,
            "exp": now + REFRESH_TOKEN_SECONDS,
            "jti": secrets.token_urlsafe(16),
        }
        return jwt.encode(
            claims, self._private_key, algorithm="RS256", headers={"kid": self.key_id}
        )

    def verify_refresh(self, token: str) -> tuple[str, str]:
        """The subject and credential fingerprint of a valid refresh token."""
        try:
            payload: dict[str, Any] = jwt.decode(
                token,
                self._public_key,
                algorithms=["RS256"],
                audience=self._refresh_audience,
                issuer=self.issuer,
                options={"require": ["exp", "iat", "iss", "aud", "sub", "crd"]},
            )
        except jwt.PyJWTError as exc:
            raise UnauthorizedError(f"invalid refresh token: {exc}") from None
        return str(payload["sub"]), str(payload["crd"])

    @property
    def _refresh_audience(self) -> str:
        return f"{self.service}/refresh"

    def verify(self, token: str) -> TokenClaims:
        cached = self._verified.get(token)
        if cached is not None:
            if cached.expires_at + _LEEWAY_SECONDS > time.time():
                return cached
            self._verified.pop(token, None)
        try:
            payload: dict[str, Any] = jwt.decode(
                token,
                self._public_key,
                algorithms=["RS256"],
                audience=self.service,
                issuer=self.issuer,
                leeway=_LEEWAY_SECONDS,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )
        except jwt.PyJWTError as exc:
            raise UnauthorizedError(f"invalid bearer token: {exc}") from None
        claims = TokenClaims(
            subject=str(payload["sub"]),
            issued_at=datetime.fromtimestamp(int(payload["iat"]), UTC),
            expires_at=float(payload["exp"]),
            access=_parse_access(payload.get("access")),
            credential=str(payload.get("crd") or ""),
        )
        self._verified[token] = claims
        if len(self._verified) > _VERIFIED_CACHE_SIZE:
            self._verified.popitem(last=False)
        return claims


def _parse_access(value: Any) -> tuple[Scope, ...]:
    if not isinstance(value, list):
        raise UnauthorizedError("invalid bearer token: access claim is not a list")
    scopes = []
    for entry in value:
        if not isinstance(entry, dict):
            raise UnauthorizedError("invalid bearer token: malformed access entry")
        kind, name, actions = entry.get("type"), entry.get("name"), entry.get("actions")
        if not isinstance(kind, str) or not isinstance(name, str) or not isinstance(actions, list):
            raise UnauthorizedError("invalid bearer token: malformed access entry")
        scopes.append(Scope(kind, name, frozenset(str(a) for a in actions)))
    return tuple(scopes)
