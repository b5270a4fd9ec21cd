"""HTTP auth proxy sign-in (``auth_mode: http_auth``), with Harbor's protocol.

A sign-in is two calls, both through the outbound client (``http/outbound.py``):

1. ``POST http_authproxy_endpoint`` with the offered name and password as HTTP Basic
   credentials and no body. ``200`` means the credentials hold, and the answer is
   ``{"session_id": "<token>"}``; ``401`` (or ``403``) means they do not.
2. ``POST http_authproxy_tokenreview_endpoint`` with a Kubernetes ``TokenReview``
   (``{"apiVersion": "authentication.k8s.io/v1beta1", "kind": "TokenReview",
   "spec": {"token": "<token>"}}``). The answer's ``status`` says whether the token is
   ``authenticated``, and names the ``user``: its ``username`` and ``groups``.

A client holding a token already (a Kubernetes service account token, say) signs in
as ``tokenreview$<name>`` with the token as its password: only step 2 is made, and the
review must name ``<name>``.

The user is the one the review names; its groups become HTTP groups (``group_type``
2), and a user named in ``http_authproxy_admin_usernames`` or in one of
``http_authproxy_admin_groups`` is an administrator. Anything else the proxy answers
(another status, a body that is not that JSON, an over-long answer, names that cannot
be names) is a ``ServiceUnavailableError`` saying what was wrong: never a sign-in, and
never a wrong password. A proxy that cannot be reached is a 503 too.

The endpoint is set by a system administrator, not by project users, so unlike
webhook targets it may be on loopback or a private network; cloud metadata addresses
and ``egress_denied_networks`` stay refused.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from dockyard.db.engine import insert_ignore
from dockyard.errors import BadRequestError, ServiceUnavailableError
from dockyard.http.egress import EgressPolicy
from dockyard.http.outbound import OutboundClient, OutboundError, OutboundResponse
from dockyard.iam import repository as users
from dockyard.iam import users as accounts  # a module: iam.users imports this one (cycle)
from dockyard.iam.models import GroupType, User, UserGroup
from dockyard.system import config
from dockyard.system.models import Property

if TYPE_CHECKING:
    from dockyard.settings import Settings

MODE = "http_auth"
TOKEN_REVIEW_PREFIX = "tokenreview$"  # noqa: S105 - a user name prefix, not a secret
"""Sign-in as ``tokenreview$<name>`` with a token as the password: the token is reviewed
directly (no login call), and must belong to ``<name>`` (Harbor's, for docker login
with a Kubernetes token)."""
GROUP_TYPE = int(GroupType.HTTP)
"""Harbor's ``group_type`` of HTTP auth proxy groups."""
MAX_ANSWER = 65536
"""Bytes of an answer read at most; a longer one is refused, not parsed."""
MAX_NAME = 255
MAX_TOKEN = 16384
MAX_GROUPS = 500
"""Groups one review may name; more is refused rather than cut (an admin group could
be the one cut)."""
REVIEW_API_VERSION = "authentication.k8s.io/v1beta1"
_JSON = "application/json"
ONBOARDED_COMMENT = "onboarded by the HTTP auth proxy"


@dataclass(frozen=True, slots=True)
class AuthProxyConfig:
    endpoint: str
    tokenreview_endpoint: str
    verify_cert: bool
    skip_search: bool
    server_certificate: str
    admin_groups: frozenset[str]
    admin_usernames: frozenset[str]


@dataclass(frozen=True, slots=True)
class ProxyUser:
    """Whom the token review names."""

    username: str
    groups: tuple[str, ...]
    admin: bool


async def load_config(session: AsyncSession) -> AuthProxyConfig:
    """The auth proxy items as an administrator set them."""
    _, found = await _load(session)
    return found


async def load_mode_and_config(session: AsyncSession) -> tuple[str, AuthProxyConfig | None]:
    """``auth_mode``, and the auth proxy items when it is ``http_auth``: one query, as
    every sign-in asks."""
    mode, found = await _load(session)
    return mode, (found if mode == MODE else None)


SETTINGS_KEYS = (*config.AUTHPROXY_KEYS, config.AUTH_MODE)
"""The stored items a sign-in reads for the auth proxy (with the mode)."""


def mode_and_config_from(stored: dict[str, str]) -> tuple[str, AuthProxyConfig | None]:
    """``load_mode_and_config`` from rows already read (``SETTINGS_KEYS`` among them)."""
    mode, found = _parse(stored)
    return mode, (found if mode == MODE else None)


async def _load(session: AsyncSession) -> tuple[str, AuthProxyConfig]:
    rows = await session.execute(
        select(Property.k, Property.v).where(Property.k.in_(SETTINGS_KEYS))
    )
    return _parse(dict(rows.all()))


def _parse(stored: dict[str, str]) -> tuple[str, AuthProxyConfig]:
    values: dict[str, Any] = {}
    for key in (*config.AUTHPROXY_KEYS, config.AUTH_MODE):
        item = config.ITEMS[key]
        raw = stored.get(key)
        values[key] = item.default if raw is None else item.decode(raw)
    return str(values[config.AUTH_MODE]), AuthProxyConfig(
        endpoint=str(values[config.AUTHPROXY_ENDPOINT]),
        tokenreview_endpoint=str(values[config.AUTHPROXY_TOKENREVIEW_ENDPOINT]),
        verify_cert=bool(values[config.AUTHPROXY_VERIFY_CERT]),
        skip_search=bool(values[config.AUTHPROXY_SKIP_SEARCH]),
        server_certificate=str(values[config.AUTHPROXY_SERVER_CERTIFICATE]),
        admin_groups=frozenset(config.name_list(str(values[config.AUTHPROXY_ADMIN_GROUPS]))),
        admin_usernames=frozenset(config.name_list(str(values[config.AUTHPROXY_ADMIN_USERNAMES]))),
    )


def acceptable_credentials(name: str, password: str) -> bool:
    """Whether a name and password can be sent as Basic credentials at all."""
    return (
        0 < len(name) <= MAX_NAME
        and 0 < len(password) <= MAX_TOKEN
        and ":" not in name
        and not any(ord(c) < 0x20 or ord(c) == 0x7F for c in name + password)
    )


def _printable(value: str) -> bool:
    return not any(ord(c) < 0x20 or ord(c) == 0x7F for c in value)


class AuthProxyError(ServiceUnavailableError):
    """The auth proxy failed or answered something that is not its protocol."""

    def __init__(self, message: str) -> None:
        super().__init__(
            f"HTTP auth proxy sign-in is not available: {message}; "
            "admin and robot accounts can still sign in",
            retry_after=30,
        )


class AuthProxy:
    """Asks the auth proxy whether credentials hold and whom they name."""

    def __init__(self, client: OutboundClient) -> None:
        self.client = client

    @classmethod
    def from_settings(cls, settings: Settings) -> AuthProxy:
        """Outbound calls with the ``outbound_timeout_seconds`` deadline; loopback and
        private addresses allowed (an administrator chose the endpoint), metadata
        addresses and ``egress_denied_networks`` refused."""
        policy = EgressPolicy(
            allow_loopback=True,
            allow_private=True,
            denied_networks=tuple(settings.egress_denied_networks),
        )
        return cls(OutboundClient(policy, deadline=settings.outbound_timeout_seconds))

    async def authenticate(
        self, cfg: AuthProxyConfig, name: str, password: str
    ) -> ProxyUser | None:
        """Whom ``name`` and ``password`` sign in as, or None when the proxy refuses them."""
        if not acceptable_credentials(name, password):
            return None
        _check_configured(cfg)
        basic = base64.b64encode(f"{name}:{password}".encode()).decode("ascii")
        answer = await self._post(cfg, cfg.endpoint, {"Authorization": f"Basic {basic}"}, b"")
        if answer.status_code in (401, 403):
            return None
        if answer.status_code != 200:
            raise AuthProxyError(
                f"{cfg.endpoint} answered {answer.status_code} ({answer.head_text(200)})"
            )
        token = _session_id(_json_object(answer, cfg.endpoint))
        if token is None:
            raise AuthProxyError(
                f"{cfg.endpoint} accepted the credentials but its answer holds no session_id "
                f'to review (expected {{"session_id": "…"}})'
            )
        return await self.review(cfg, token)

    async def review(self, cfg: AuthProxyConfig, token: str) -> ProxyUser | None:
        """Whom the proxy says ``token`` belongs to, or None when it is not authenticated."""
        if not 0 < len(token) <= MAX_TOKEN or not _printable(token):
            return None
        _check_configured(cfg)
        body = json.dumps(
            {"apiVersion": REVIEW_API_VERSION, "kind": "TokenReview", "spec": {"token": token}}
        ).encode()
        answer = await self._post(
            cfg, cfg.tokenreview_endpoint, {"Content-Type": _JSON, "Accept": _JSON}, body
        )
        where = cfg.tokenreview_endpoint
        if answer.status_code in (401, 403):
            return None
        if answer.status_code not in (200, 201):
            raise AuthProxyError(f"{where} answered {answer.status_code} ({answer.head_text(200)})")
        return read_review(_json_object(answer, where), cfg, where)

    async def ping(self, cfg: AuthProxyConfig) -> None:
        """Whether both endpoints answer at all (any HTTP status): raises saying why not."""
        _check_configured(cfg)
        for url in (cfg.endpoint, cfg.tokenreview_endpoint):
            await self._post(cfg, url, {}, b"")

    async def _post(
        self, cfg: AuthProxyConfig, url: str, headers: dict[str, str], body: bytes
    ) -> OutboundResponse:
        try:
            return await self.client.request(
                "POST",
                url,
                headers=headers,
                content=body,
                verify_tls=cfg.verify_cert,
                ca_pem=cfg.server_certificate.strip(),
                max_body=MAX_ANSWER,
            )
        except OutboundError as exc:
            raise AuthProxyError(f"{url} cannot be reached ({exc})") from None


def _check_configured(cfg: AuthProxyConfig) -> None:
    if not cfg.endpoint or not cfg.tokenreview_endpoint:
        raise AuthProxyError(
            "it is not configured (set http_authproxy_endpoint and "
            "http_authproxy_tokenreview_endpoint)"
        )


def _json_object(answer: OutboundResponse, where: str) -> dict[str, Any]:
    if not answer.complete:
        raise AuthProxyError(f"{where} answered more than {MAX_ANSWER} bytes")
    try:
        found = json.loads(answer.head)
    except (ValueError, RecursionError):
        raise AuthProxyError(
            f"{where} answered {answer.status_code} with a body that is not JSON "
            f"({answer.head_text(120)})"
        ) from None
    if not isinstance(found, dict):
        raise AuthProxyError(f"{where} answered JSON that is not an object")
    return found


def _session_id(answer: dict[str, Any]) -> str | None:
    token = answer.get("session_id")
    if isinstance(token, str) and 0 < len(token) <= MAX_TOKEN and _printable(token):
        return token
    return None


def read_review(answer: dict[str, Any], cfg: AuthProxyConfig, where: str) -> ProxyUser | None:
    """The user a TokenReview answer names (None: not authenticated); a malformed
    answer is an ``AuthProxyError`` naming the part that is wrong."""
    status = answer.get("status")
    if not isinstance(status, dict):
        raise AuthProxyError(f"{where} answered no TokenReview status")
    authenticated = status.get("authenticated")
    if authenticated is not True:
        if authenticated in (False, None):
            return None
        raise AuthProxyError(f"{where} answered a status.authenticated that is not true or false")
    user = status.get("user")
    if not isinstance(user, dict):
        raise AuthProxyError(f"{where} answered an authenticated review without status.user")
    username = user.get("username")
    if not isinstance(username, str) or not 0 < len(username) <= MAX_NAME:
        raise AuthProxyError(
            f"{where} answered a status.user.username that is not a name of 1 to "
            f"{MAX_NAME} characters"
        )
    if not _printable(username):
        raise AuthProxyError(f"{where} answered a status.user.username with control characters")
    raw_groups = user.get("groups")
    if raw_groups is None:
        raw_groups = []
    if not isinstance(raw_groups, list):
        raise AuthProxyError(f"{where} answered status.user.groups that is not a list")
    if len(raw_groups) > MAX_GROUPS:
        raise AuthProxyError(f"{where} answered more than {MAX_GROUPS} groups for one user")
    groups: list[str] = []
    for group in raw_groups:
        if not isinstance(group, str) or not 0 < len(group) <= MAX_NAME or not _printable(group):
            raise AuthProxyError(
                f"{where} answered a group that is not a name of 1 to {MAX_NAME} printable "
                "characters"
            )
        if group not in groups:
            groups.append(group)
    admin = username in cfg.admin_usernames or not cfg.admin_groups.isdisjoint(groups)
    return ProxyUser(username=username, groups=tuple(groups), admin=admin)


# --- onboarding (Harbor's, also for members added by name with skip_search) ----------------


def email_in_name(name: str) -> str | None:
    """``name`` when it is an e-mail address (Harbor's auth proxy onboarding keeps it)."""
    if "@" not in name:
        return None
    try:
        return accounts.validate_email(name)
    except BadRequestError:
        return None


async def insert_user(session: AsyncSession, name: str) -> None:
    """Create the user ``name`` as Harbor onboards an auth proxy user (realname the
    name, email the name when it is an address and free, no password of its own); a
    user who exists already is left as they are."""
    email = email_in_name(name)
    if email is not None and await users.find_user_by_email(session, email) is not None:
        email = None  # another user has it: the user is still made
    await session.execute(
        insert_ignore(
            session,
            User,
            {
                "username": name,
                "email": email,
                "realname": name,
                "password": "",
                "comment": ONBOARDED_COMMENT,
            },
            ["username"],
        )
    )


async def onboard_unsearched_user(session: AsyncSession, name: str) -> int | None:
    """``http_authproxy_skip_search``: under ``http_auth`` with it on, a user added as a
    project member by a name Dockyard has not seen is created at once (the proxy cannot
    be searched); the user's id, or None when the setting does not apply."""
    _, cfg = await load_mode_and_config(session)
    if cfg is None or not cfg.skip_search:
        return None
    prefix = str(await config.value(session, config.ROBOT_NAME_PREFIX))
    name = accounts.validate_username(name, prefix)
    if name == "admin":
        return None
    await insert_user(session, name)
    found = await users.find_user_by_name(session, name)
    return None if found is None else found.user_id


async def onboard_unsearched_group(session: AsyncSession, name: str) -> int | None:
    """The same for an HTTP group (``group_type`` 2) added as a member by name."""
    _, cfg = await load_mode_and_config(session)
    if cfg is None or not cfg.skip_search:
        return None
    if not 0 < len(name) <= MAX_NAME or not _printable(name) or name != name.strip():
        raise BadRequestError(f"a group name must be 1 to {MAX_NAME} printable characters")
    await session.execute(
        insert_ignore(
            session,
            UserGroup,
            {"group_name": name, "group_type": GROUP_TYPE},
            ["group_type", "group_name"],
        )
    )
    found = await users.find_group_by_name(session, GROUP_TYPE, name)
    return None if found is None else found.id
