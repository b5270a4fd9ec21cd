"""ID token checks (``iam.providers.oidc.verify_id_token``) on tokens signed here with
keys made by ``cryptography``: every way a token can be wrong is refused, with a reason."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from joserfc.errors import InvalidKeyIdError
from joserfc.jwk import KeySet, RSAKey

from dockyard.errors import ServiceUnavailableError, UnauthorizedError
from dockyard.iam.providers.oidc import (
    OidcConfig,
    ProviderMetadata,
    authorization_url,
    identity_from_claims,
    parse_metadata,
    pkce_challenge,
    verify_id_token,
)

ISSUER = "https://idp.example.com"
CLIENT = "dockyard"
NONCE = "n-0S6_WzA2Mj"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


KEY = _private_key()
OTHER_KEY = _private_key()


def _public_set(key: rsa.RSAPrivateKey, kid: str) -> KeySet:
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return KeySet([RSAKey.import_key(pem, {"kid": kid, "use": "sig", "alg": "RS256"})])


KEYS = _public_set(KEY, "k1")


def _sign(
    claims: dict[str, Any], key: rsa.RSAPrivateKey = KEY, header: dict[str, Any] | None = None
) -> str:
    head = _b64(json.dumps(header or {"alg": "RS256", "kid": "k1", "typ": "JWT"}).encode())
    body = _b64(json.dumps(claims).encode())
    signature = key.sign(f"{head}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{head}.{body}.{_b64(signature)}"


def _claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "sub": "248289761001",
        "aud": CLIENT,
        "exp": now + 300,
        "iat": now,
        "nonce": NONCE,
        "preferred_username": "jane",
        "groups": ["devs", "admins", "sales"],
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def _verify(token: str, keys: KeySet = KEYS, nonce: str = NONCE) -> dict[str, Any]:
    return verify_id_token(token, keys, issuer=ISSUER, client_id=CLIENT, nonce=nonce)


def test_a_good_token_passes() -> None:
    claims = _verify(_sign(_claims()))
    assert claims["sub"] == "248289761001"
    assert _verify(_sign(_claims(aud=[CLIENT, "other"], azp=CLIENT)))["sub"]


EXPIRED = object()
"""An ``exp`` an hour before the test runs (claims are made when the test runs, not when
the suite is collected: the whole suite takes longer than a token lives)."""


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"exp": EXPIRED}, "expired"),
        ({"aud": "someone-else"}, "aud"),
        ({"aud": [CLIENT, "other"]}, "azp"),
        ({"iss": "https://evil.example.com"}, "iss"),
        ({"nonce": "replayed-nonce"}, "nonce"),
        ({"nonce": None}, "nonce"),
        ({"sub": None}, "sub"),
        ({"exp": None}, "exp"),
        ({"iat": None}, "iat"),
    ],
)
def test_wrong_claims_are_refused(changes: dict[str, Any], reason: str) -> None:
    if changes.get("exp") is EXPIRED:
        changes = {**changes, "exp": int(time.time()) - 3600}
    with pytest.raises(UnauthorizedError, match=reason):
        _verify(_sign(_claims(**changes)))


def test_a_tampered_token_is_refused() -> None:
    head, body, signature = _sign(_claims()).split(".")
    forged = json.loads(base64.urlsafe_b64decode(body + "=="))
    forged["sub"] = "admin"
    with pytest.raises(UnauthorizedError, match="signature"):
        _verify(f"{head}.{_b64(json.dumps(forged).encode())}.{signature}")
    with pytest.raises(UnauthorizedError, match="signature"):
        _verify(_sign(_claims(), key=OTHER_KEY))  # right kid, wrong key


def test_unsigned_and_symmetric_tokens_are_refused() -> None:
    head = _b64(json.dumps({"alg": "none", "kid": "k1"}).encode())
    body = _b64(json.dumps(_claims()).encode())
    with pytest.raises(UnauthorizedError):
        _verify(f"{head}.{body}.")
    hs = _b64(json.dumps({"alg": "HS256", "kid": "k1"}).encode())
    with pytest.raises(UnauthorizedError):
        _verify(f"{hs}.{body}.{_b64(b'x' * 32)}")
    for garbage in ("", "a.b", "not a token", "a.b.c.d.e", "\x00.\x00.\x00"):
        with pytest.raises(UnauthorizedError):
            _verify(garbage)


def test_an_unknown_key_is_left_to_the_caller_to_refetch() -> None:
    token = _sign(_claims(), key=OTHER_KEY, header={"alg": "RS256", "kid": "rotated"})
    with pytest.raises(InvalidKeyIdError):
        _verify(token)
    assert _verify(token, keys=_public_set(OTHER_KEY, "rotated"))["sub"]


def _config(**changes: Any) -> OidcConfig:
    values: dict[str, Any] = {
        "name": "IdP",
        "endpoint": ISSUER,
        "client_id": CLIENT,
        "client_secret": "s",
        "scope": "openid,profile,email",
        "user_claim": "",
        "groups_claim": "groups",
        "admin_group": "admins",
        "group_filter": "^(devs|admins)$",
        "verify_cert": True,
        "auto_onboard": False,
        "extra_parameters": '{"prompt": "login", "state": "sneaky"}',
        "logout": False,
    }
    values.update(changes)
    return OidcConfig(**values)


def test_identity_from_claims() -> None:
    identity = identity_from_claims(_config(), _claims(), "tok")
    assert identity.username == "jane"
    assert identity.groups == ("devs", "admins")  # sales filtered out
    assert identity.admin
    assert identity.subiss == "248289761001" + ISSUER
    assert not identity_from_claims(_config(admin_group=""), _claims(), "t").admin
    assert identity_from_claims(_config(groups_claim="roles"), _claims(), "t").groups == ()
    with pytest.raises(UnauthorizedError, match="nickname"):
        identity_from_claims(_config(user_claim="nickname"), _claims(), "t")
    weird = identity_from_claims(_config(), _claims(groups={"not": "a list"}), "t")
    assert weird.groups == () and not weird.admin


def test_authorization_url_carries_pkce_and_keeps_the_flow_parameters() -> None:
    metadata = parse_metadata(
        {
            "issuer": ISSUER,
            "authorization_endpoint": ISSUER + "/auth?tenant=a",
            "token_endpoint": ISSUER + "/token",
            "jwks_uri": ISSUER + "/jwks",
        },
        ISSUER,
    )
    assert isinstance(metadata, ProviderMetadata)
    url = authorization_url(_config(), metadata, "https://r.example/cb", "st", "no", "v" * 64)
    assert url.startswith(ISSUER + "/auth?tenant=a&")
    assert "prompt=login" in url and "state=st" in url and "sneaky" not in url
    assert f"code_challenge={pkce_challenge('v' * 64)}" in url
    assert "scope=openid%20profile%20email" in url
    # RFC 7636 appendix B's example.
    assert (
        pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk")
        == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    )


@pytest.mark.parametrize(
    "document",
    [
        {"issuer": "https://evil.example.com"},
        {"issuer": ISSUER, "authorization_endpoint": ISSUER + "/a"},
        {
            "issuer": ISSUER,
            "authorization_endpoint": "javascript:alert(1)",
            "token_endpoint": ISSUER + "/t",
            "jwks_uri": ISSUER + "/j",
        },
    ],
)
def test_bad_discovery_is_refused(document: dict[str, Any]) -> None:
    with pytest.raises(ServiceUnavailableError):
        parse_metadata(document, ISSUER)
