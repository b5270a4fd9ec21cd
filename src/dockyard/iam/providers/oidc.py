"""OpenID Connect sign-in (``auth_mode: oidc_auth``): the provider's side of the flow.

What is asked of the provider, each through ``http/outbound.py`` (one deadline, a capped
answer, the egress policy):

- **discovery**: ``<oidc_endpoint>/.well-known/openid-configuration``, kept
  ``METADATA_FRESH_SECONDS`` per (endpoint, verify_cert); its ``issuer`` must be the
  configured endpoint (OpenID Connect Discovery 1.0, section 4.3);
- **keys**: the ``jwks_uri`` set, kept until an ID token names a key it lacks; then it is
  fetched again (at most every ``JWKS_REFETCH_SECONDS``), which is how a provider's key
  rotation is followed;
- **the code exchange** at the ``token_endpoint`` with the PKCE verifier, the client
  authenticating with ``client_secret_basic`` (or ``client_secret_post`` when that is
  all the provider takes);
- **userinfo**, when the provider has the endpoint, for claims the ID token leaves out.

The ID token is checked with ``joserfc`` (``verify_id_token``): an asymmetric signature
by a key of the set, ``iss``, ``aud`` (and ``azp`` when there are several audiences),
``exp``/``iat`` with a minute of leeway, ``sub`` and the ``nonce`` of this sign-in. No
HMAC algorithm, no ``none``. A provider that answers garbage, or not at all, is a
``ServiceUnavailableError`` that names the step; a token that fails a check is an
``UnauthorizedError``. Neither creates an account.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from joserfc import jwt
from joserfc.errors import (
    BadSignatureError,
    ExpiredTokenError,
    InvalidClaimError,
    InvalidKeyIdError,
    JoseError,
    MissingClaimError,
)
from joserfc.jwk import KeySet
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from dockyard.errors import ServiceUnavailableError, UnauthorizedError
from dockyard.http.outbound import OutboundClient, OutboundError
from dockyard.system import config, secretbox
from dockyard.system.models import Property

METADATA_FRESH_SECONDS = 300.0
JWKS_REFETCH_SECONDS = 10.0
"""After a fetch of the key set for an unknown key found it missing, how long tokens
with unknown keys are refused without fetching again (a rotation is followed at once;
a forged ``kid`` cannot make every sign-in fetch the keys)."""
MAX_DOCUMENT = 512 * 1024
"""Discovery, key set, token and userinfo answers larger than this are refused."""
LEEWAY_SECONDS = 60
SIGNING_ALGORITHMS = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
)
"""Asymmetric only: the client secret is never a signing key here."""
DISCOVERY_PATH = "/.well-known/openid-configuration"


@dataclass(frozen=True, slots=True)
class OidcConfig:
    name: str
    endpoint: str
    client_id: str
    client_secret: str
    scope: str
    user_claim: str
    groups_claim: str
    admin_group: str
    group_filter: str
    verify_cert: bool
    auto_onboard: bool
    extra_parameters: str
    logout: bool

    @property
    def scopes(self) -> str:
        """The scopes as the authorization request sends them (space-separated)."""
        return " ".join(s.strip() for s in self.scope.split(",") if s.strip())


async def load_config(session: AsyncSession) -> OidcConfig:
    """The OIDC items as an administrator set them (the client secret decrypted)."""
    found = await _load(session, require_mode=False)
    assert found is not None
    return found


async def load_config_if_enabled(session: AsyncSession) -> OidcConfig | None:
    """The OIDC items when ``auth_mode`` is ``oidc_auth``, else None (one query)."""
    return await _load(session, require_mode=True)


async def _load(session: AsyncSession, *, require_mode: bool) -> OidcConfig | None:
    keys = (*config.OIDC_KEYS, config.AUTH_MODE, secretbox.SECRET_KEY_PROPERTY)
    rows = await session.execute(select(Property.k, Property.v).where(Property.k.in_(keys)))
    stored: dict[str, str] = dict(rows.all())
    if require_mode and stored.get(config.AUTH_MODE) != "oidc_auth":
        return None
    values: dict[str, Any] = {}
    for key in config.OIDC_KEYS:
        item = config.ITEMS[key]
        raw = stored.get(key)
        values[key] = item.default if raw is None else item.decode(raw)
    try:
        secret = secretbox.open_with_key(
            stored.get(secretbox.SECRET_KEY_PROPERTY), stored.get(config.OIDC_CLIENT_SECRET, "")
        )
    except secretbox.SecretBoxError as exc:
        raise ServiceUnavailableError(f"OIDC sign-in is not available: {exc}") from None
    return OidcConfig(
        name=str(values[config.OIDC_NAME]),
        endpoint=str(values[config.OIDC_ENDPOINT]).rstrip("/"),
        client_id=str(values[config.OIDC_CLIENT_ID]),
        client_secret=secret,
        scope=str(values[config.OIDC_SCOPE]),
        user_claim=str(values[config.OIDC_USER_CLAIM]),
        groups_claim=str(values[config.OIDC_GROUPS_CLAIM]),
        admin_group=str(values[config.OIDC_ADMIN_GROUP]),
        group_filter=str(values[config.OIDC_GROUP_FILTER]),
        verify_cert=bool(values[config.OIDC_VERIFY_CERT]),
        auto_onboard=bool(values[config.OIDC_AUTO_ONBOARD]),
        extra_parameters=str(values[config.OIDC_EXTRA_REDIRECT_PARMS]),
        logout=bool(values[config.OIDC_LOGOUT]),
    )


@dataclass(frozen=True, slots=True)
class ProviderMetadata:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    userinfo_endpoint: str
    end_session_endpoint: str
    post_auth: bool
    """The token endpoint takes ``client_secret_post`` only (not ``client_secret_basic``)."""


@dataclass(frozen=True, slots=True)
class Identity:
    """Who signed in, as the verified ID token (and userinfo) say."""

    subject: str
    issuer: str
    username: str
    email: str
    realname: str
    groups: tuple[str, ...]
    admin: bool
    id_token: str

    @property
    def subiss(self) -> str:
        return self.subject + self.issuer


def pkce_challenge(verifier: str) -> str:
    """RFC 7636's S256 ``code_challenge`` of ``verifier``."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def new_verifier() -> str:
    return secrets.token_urlsafe(48)  # 64 characters of RFC 7636's alphabet


def authorization_url(
    cfg: OidcConfig,
    metadata: ProviderMetadata,
    redirect_uri: str,
    state: str,
    nonce: str,
    verifier: str,
) -> str:
    """Where the browser goes to sign in: the code flow with PKCE (S256), plus
    ``oidc_extra_redirect_parms`` (which cannot replace any of the flow's parameters)."""
    extra = json.loads(cfg.extra_parameters) if cfg.extra_parameters.strip() else {}
    params = {
        **{k: str(v) for k, v in extra.items() if k not in config.OIDC_RESERVED_PARAMETERS},
        "response_type": "code",
        "client_id": cfg.client_id,
        "redirect_uri": redirect_uri,
        "scope": cfg.scopes,
        "state": state,
        "nonce": nonce,
        "code_challenge": pkce_challenge(verifier),
        "code_challenge_method": "S256",
    }
    joiner = "&" if "?" in metadata.authorization_endpoint else "?"
    return metadata.authorization_endpoint + joiner + urlencode(params, quote_via=quote)


def verify_id_token(
    token: str,
    keys: KeySet,
    *,
    issuer: str,
    client_id: str,
    nonce: str,
    now: int | None = None,
) -> dict[str, Any]:
    """The claims of an ID token that passes every check, else ``UnauthorizedError``.
    ``InvalidKeyIdError`` (from ``joserfc``) is let through: the caller fetches the key
    set again and retries once."""
    try:
        decoded = jwt.decode(token, keys, algorithms=list(SIGNING_ALGORITHMS))
    except InvalidKeyIdError:
        raise
    except BadSignatureError:
        raise UnauthorizedError("the ID token's signature is not valid") from None
    except (JoseError, ValueError, TypeError) as exc:
        raise UnauthorizedError(f"the ID token cannot be read ({type(exc).__name__})") from None
    claims = decoded.claims
    checks = jwt.JWTClaimsRegistry(
        now=now,
        leeway=LEEWAY_SECONDS,
        iss={"essential": True, "value": issuer},
        aud={"essential": True, "value": client_id},
        sub={"essential": True},
        exp={"essential": True},
        iat={"essential": True},
        nonce={"essential": True, "value": nonce},
    )
    try:
        checks.validate(claims)
    except ExpiredTokenError:
        raise UnauthorizedError("the ID token has expired") from None
    except MissingClaimError as exc:
        raise UnauthorizedError(f"the ID token lacks {exc.description or exc}") from None
    except InvalidClaimError as exc:
        name = exc.claim if hasattr(exc, "claim") else str(exc)
        raise UnauthorizedError(f"the ID token's {name} claim is not valid") from None
    except (JoseError, ValueError, TypeError) as exc:
        raise UnauthorizedError(f"the ID token is not valid ({type(exc).__name__})") from None
    audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    if len(audiences) > 1 and claims.get("azp") != client_id:
        raise UnauthorizedError("the ID token's azp claim is not this client")
    if not isinstance(claims.get("sub"), str) or not claims["sub"]:
        raise UnauthorizedError("the ID token's sub claim is not valid")
    return claims


def _claim_text(claims: Mapping[str, Any], name: str) -> str:
    found = claims.get(name)
    return found if isinstance(found, str) else ""


def identity_from_claims(cfg: OidcConfig, claims: Mapping[str, Any], id_token: str) -> Identity:
    """The identity the claims name: the username from ``oidc_user_claim`` (without it,
    ``preferred_username``, then ``name``), groups from ``oidc_groups_claim`` kept when
    ``oidc_group_filter`` matches, and whether ``oidc_admin_group`` is among them."""
    if cfg.user_claim:
        username = _claim_text(claims, cfg.user_claim)
        if not username:
            raise UnauthorizedError(
                f"the provider's token has no {cfg.user_claim} claim (oidc_user_claim) "
                "to name the user by"
            )
    else:
        username = _claim_text(claims, "preferred_username") or _claim_text(claims, "name")
    groups: tuple[str, ...] = ()
    admin = False
    if cfg.groups_claim:
        raw = claims.get(cfg.groups_claim)
        if isinstance(raw, str):
            raw = [raw]
        names = [g for g in raw if isinstance(g, str) and g] if isinstance(raw, list) else []
        admin = bool(cfg.admin_group) and cfg.admin_group in names
        if cfg.group_filter:
            pattern = re.compile(cfg.group_filter)
            names = [g for g in names if pattern.search(g)]
        groups = tuple(dict.fromkeys(g[:255] for g in names))
    return Identity(
        subject=str(claims["sub"]),
        issuer=str(claims["iss"]),
        username=username,
        email=_claim_text(claims, "email"),
        realname=_claim_text(claims, "name"),
        groups=groups,
        admin=admin,
        id_token=id_token,
    )


def _json_object(answer_body: bytes, what: str) -> dict[str, Any]:
    try:
        found = json.loads(answer_body)
    except (ValueError, RecursionError):
        raise ServiceUnavailableError(f"the OIDC provider's {what} is not JSON") from None
    if not isinstance(found, dict):
        raise ServiceUnavailableError(f"the OIDC provider's {what} is not a JSON object")
    return found


def parse_metadata(document: Mapping[str, Any], endpoint: str) -> ProviderMetadata:
    """Discovery's answer, checked: the issuer is the endpoint, the URLs are there."""
    issuer = document.get("issuer")
    if not isinstance(issuer, str) or issuer.rstrip("/") != endpoint.rstrip("/"):
        raise ServiceUnavailableError(
            f"the OIDC provider's discovery names issuer {str(issuer)[:200]!r}, not "
            f"oidc_endpoint {endpoint}"
        )
    urls: dict[str, str] = {}
    for field in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
        value = document.get(field)
        if not isinstance(value, str) or not value.startswith(("https://", "http://")):
            raise ServiceUnavailableError(f"the OIDC provider's discovery has no {field}")
        urls[field] = value
    optional = {
        field: value
        for field in ("userinfo_endpoint", "end_session_endpoint")
        if isinstance(value := document.get(field), str)
        and value.startswith(("https://", "http://"))
    }
    methods = document.get("token_endpoint_auth_methods_supported")
    post_only = (
        isinstance(methods, list)
        and "client_secret_post" in methods
        and "client_secret_basic" not in methods
    )
    return ProviderMetadata(
        issuer=issuer,
        authorization_endpoint=urls["authorization_endpoint"],
        token_endpoint=urls["token_endpoint"],
        jwks_uri=urls["jwks_uri"],
        userinfo_endpoint=optional.get("userinfo_endpoint", ""),
        end_session_endpoint=optional.get("end_session_endpoint", ""),
        post_auth=post_only,
    )


class OidcProvider:
    """A process's view of the provider: discovery and key sets, cached; the calls."""

    def __init__(self, client: Callable[[], OutboundClient]) -> None:
        self._client = client
        self._metadata: dict[tuple[str, bool], tuple[float, ProviderMetadata]] = {}
        self._keys: dict[str, tuple[float, KeySet]] = {}
        # When a fetch of a key set for an unknown key last found it missing there too.
        self._missed: dict[str, float] = {}

    async def _get(
        self,
        url: str,
        verify: bool,
        what: str,
        *,
        method: str = "GET",
        headers: Mapping[str, str] | None = None,
        content: bytes = b"",
        ok: tuple[int, ...] = (200,),
    ) -> tuple[int, dict[str, Any]]:
        try:
            answer = await self._client().request(
                method,
                url,
                headers={"Accept": "application/json", **(headers or {})},
                content=content,
                verify_tls=verify,
                max_body=MAX_DOCUMENT,
            )
        except OutboundError as exc:
            raise ServiceUnavailableError(
                f"the OIDC provider's {what} cannot be reached: {exc}"
            ) from None
        if not answer.complete:
            raise ServiceUnavailableError(f"the OIDC provider's {what} is too large or too slow")
        if answer.status_code not in ok:
            raise ServiceUnavailableError(
                f"the OIDC provider's {what} answered HTTP {answer.status_code}: "
                f"{answer.head_text(200)}"
            )
        return answer.status_code, _json_object(answer.head, what)

    async def metadata(self, cfg: OidcConfig, *, fresh: bool = False) -> ProviderMetadata:
        if not cfg.endpoint or not cfg.client_id:
            raise ServiceUnavailableError(
                "OIDC sign-in is not configured: set oidc_endpoint and oidc_client_id",
                retry_after=60,
            )
        key = (cfg.endpoint, cfg.verify_cert)
        cached = self._metadata.get(key)
        now = time.monotonic()
        if cached is not None and not fresh and now - cached[0] < METADATA_FRESH_SECONDS:
            return cached[1]
        _, document = await self._get(cfg.endpoint + DISCOVERY_PATH, cfg.verify_cert, "discovery")
        found = parse_metadata(document, cfg.endpoint)
        self._metadata[key] = (now, found)
        return found

    async def ping(self, endpoint: str, verify: bool) -> ProviderMetadata:
        """Discovery at ``endpoint`` read and checked (not cached: a configuration being
        tried out), and its key set read."""
        _, document = await self._get(endpoint.rstrip("/") + DISCOVERY_PATH, verify, "discovery")
        found = parse_metadata(document, endpoint)
        await self._fetch_keys(found.jwks_uri, verify)
        return found

    async def _fetch_keys(self, uri: str, verify: bool) -> KeySet:
        _, document = await self._get(uri, verify, "key set (jwks_uri)")
        try:
            keys = KeySet.import_key_set(document)  # type: ignore[arg-type]
        except (JoseError, ValueError, TypeError, KeyError) as exc:
            raise ServiceUnavailableError(
                f"the OIDC provider's key set cannot be read ({type(exc).__name__})"
            ) from None
        self._keys[uri] = (time.monotonic(), keys)
        return keys

    async def verify(
        self, cfg: OidcConfig, metadata: ProviderMetadata, id_token: str, nonce: str
    ) -> dict[str, Any]:
        """``verify_id_token`` with the provider's keys; a key the cached set lacks makes
        one fetch of the set (the provider rotated its keys)."""
        cached = self._keys.get(metadata.jwks_uri)
        keys = cached[1] if cached else await self._fetch_keys(metadata.jwks_uri, cfg.verify_cert)

        def check(keys: KeySet) -> dict[str, Any]:
            return verify_id_token(
                id_token, keys, issuer=metadata.issuer, client_id=cfg.client_id, nonce=nonce
            )

        try:
            return check(keys)
        except InvalidKeyIdError:
            missed = self._missed.get(metadata.jwks_uri, -JWKS_REFETCH_SECONDS)
            if cached is None or time.monotonic() - missed < JWKS_REFETCH_SECONDS:
                raise UnauthorizedError(
                    "the ID token is signed with a key the provider does not publish"
                ) from None
        keys = await self._fetch_keys(metadata.jwks_uri, cfg.verify_cert)
        try:
            return check(keys)
        except InvalidKeyIdError:
            self._missed[metadata.jwks_uri] = time.monotonic()
            raise UnauthorizedError(
                "the ID token is signed with a key the provider does not publish"
            ) from None

    async def exchange(
        self, cfg: OidcConfig, metadata: ProviderMetadata, code: str, verifier: str, redirect: str
    ) -> tuple[str, str]:
        """The (ID token, access token) the authorization ``code`` is worth."""
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect,
            "code_verifier": verifier,
        }
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if metadata.post_auth:
            form |= {"client_id": cfg.client_id, "client_secret": cfg.client_secret}
        else:
            pair = f"{quote(cfg.client_id, safe='')}:{quote(cfg.client_secret, safe='')}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        status, answer = await self._get(
            metadata.token_endpoint,
            cfg.verify_cert,
            "token endpoint",
            method="POST",
            headers=headers,
            content=urlencode(form).encode(),
            ok=(200, 400, 401),
        )
        if status != 200:
            error = str(answer.get("error", "refused"))[:100]
            raise UnauthorizedError(f"the OIDC provider refused the sign-in code ({error})")
        id_token = answer.get("id_token")
        if not isinstance(id_token, str) or not id_token:
            raise ServiceUnavailableError("the OIDC provider's token answer has no id_token")
        access = answer.get("access_token")
        return id_token, access if isinstance(access, str) else ""

    async def userinfo(
        self, cfg: OidcConfig, metadata: ProviderMetadata, access_token: str, subject: str
    ) -> dict[str, Any]:
        """The userinfo claims (``{}`` when the provider has no endpoint or gave no access
        token); claims for another subject are refused."""
        if not metadata.userinfo_endpoint or not access_token:
            return {}
        _, claims = await self._get(
            metadata.userinfo_endpoint,
            cfg.verify_cert,
            "userinfo endpoint",
            headers={"Authorization": f"Bearer {access_token}"},
        )
        if claims.get("sub") != subject:
            raise UnauthorizedError("the OIDC provider's userinfo is for another subject")
        return claims

    def logout_url(
        self, metadata: ProviderMetadata, cfg: OidcConfig, id_token: str, after: str
    ) -> str | None:
        """The provider's RP-initiated logout for this user, or None when it has none."""
        if not metadata.end_session_endpoint:
            return None
        params = {"client_id": cfg.client_id, "post_logout_redirect_uri": after}
        if id_token:
            params["id_token_hint"] = id_token
        joiner = "&" if "?" in metadata.end_session_endpoint else "?"
        return metadata.end_session_endpoint + joiner + urlencode(params, quote_via=quote)
