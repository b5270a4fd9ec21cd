"""OIDC sign-in, Dockyard's side: the flow's state, onboarding, groups and CLI secrets.

1. ``begin``: a random ``state``, ``nonce`` and PKCE verifier are kept in an
   ``oidc_pending`` row (id: the state's SHA-256; payload sealed), and the browser is
   sent to the provider. The state also goes into a cookie of the browser that started.
2. ``finish`` (the provider sent the browser back to ``/c/oidc/callback``): the state
   must be the cookie's, and its row is deleted in the statement that reads it — a state
   is good once, on any node, for ``FLOW_SECONDS``. The code is exchanged (with the
   verifier), the ID token verified (``providers/oidc.py``), userinfo merged in.
3. A known subject (``oidc_user.subiss``) is signed in; a new one is onboarded at once
   under ``oidc_auto_onboard``, else an ``onboard`` row keeps the verified identity for
   ``FLOW_SECONDS`` while the user picks a username (``onboard``).
4. Each sign-in records the user's OIDC groups (``group_type`` 3, created as Harbor does)
   and, when ``oidc_admin_group`` is set, whether they are an administrator
   (``iam.groupsync``). Tokens the CLI secret gets later use these, as recorded at the
   last sign-in.

The CLI secret is made at onboarding and by ``set_cli_secret``; it is stored sealed (to
show it again) and argon2-hashed (the login path checks the hash, as for passwords).
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from dockyard.db.base import utcnow
from dockyard.db.engine import Database
from dockyard.errors import (
    AlreadyExistsError,
    BadRequestError,
    PreconditionFailedError,
    UnauthorizedError,
)
from dockyard.iam import groupsync
from dockyard.iam import repository as users
from dockyard.iam.models import OidcPending, OidcUser, User
from dockyard.iam.passwords import generate_password, hash_password
from dockyard.iam.providers.oidc import (
    Identity,
    OidcConfig,
    OidcProvider,
    authorization_url,
    identity_from_claims,
    load_config_if_enabled,
    new_verifier,
)
from dockyard.iam.users import validate_password, validate_username
from dockyard.system import config, secretbox

OIDC_GROUP = 3
"""Harbor's ``group_type`` of OIDC groups."""
FLOW_SECONDS = 600
"""How long a sign-in at the provider, or a username choice, may take."""
_LOGIN = "login"
_ONBOARD = "onboard"


def _row_id(ticket: str) -> str:
    return hashlib.sha256(ticket.encode("utf-8", "replace")).hexdigest()


async def enabled_config(session: AsyncSession) -> OidcConfig:
    found = await load_config_if_enabled(session)
    if found is None:
        mode = await config.value(session, config.AUTH_MODE)
        raise PreconditionFailedError(f"OIDC sign-in is off: auth_mode is {mode}, not oidc_auth")
    return found


@dataclass(frozen=True, slots=True)
class Started:
    url: str
    """Where to send the browser (the provider's authorization endpoint)."""
    state: str
    """For the cookie of the browser that started."""


async def begin(db: Database, provider: OidcProvider, redirect_uri: str, after: str) -> Started:
    """Start a sign-in at the provider; ``after`` is the console path to end on."""
    async with db.read() as session:
        cfg = await enabled_config(session)
    metadata = await provider.metadata(cfg)
    state, nonce, verifier = secrets.token_urlsafe(32), secrets.token_urlsafe(32), new_verifier()
    payload = {"nonce": nonce, "verifier": verifier, "after": after, "redirect": redirect_uri}
    now = utcnow()
    async with db.write() as session:
        await session.execute(delete(OidcPending).where(OidcPending.expires_at < now))
        session.add(
            OidcPending(
                id=_row_id(state),
                kind=_LOGIN,
                payload=await secretbox.seal(session, json.dumps(payload)),
                expires_at=now + timedelta(seconds=FLOW_SECONDS),
            )
        )
    return Started(authorization_url(cfg, metadata, redirect_uri, state, nonce, verifier), state)


@dataclass(frozen=True, slots=True)
class SignedIn:
    user_id: int
    username: str
    after: str


@dataclass(frozen=True, slots=True)
class NeedsUsername:
    ticket: str
    """For the onboarding cookie."""
    suggestion: str
    after: str


async def _take(db: Database, ticket: str, kind: str) -> dict[str, Any] | None:
    """The payload of a live pending row, deleted as it is read (so used once)."""
    now = utcnow()
    async with db.write() as session:
        row = (
            await session.execute(
                delete(OidcPending)
                .where(OidcPending.id == _row_id(ticket), OidcPending.kind == kind)
                .returning(OidcPending.payload, OidcPending.expires_at)
            )
        ).one_or_none()
        if row is None or row.expires_at <= now:
            return None
        found = json.loads(await secretbox.open_sealed(session, row.payload))
    return found if isinstance(found, dict) else None


async def finish(
    db: Database,
    provider: OidcProvider,
    *,
    state: str,
    browser_state: str,
    code: str,
    error: str,
    robot_prefix: str,
) -> SignedIn | NeedsUsername:
    """The provider sent the browser back: check, exchange, verify, sign in or onboard."""
    if not state or not browser_state or not secrets.compare_digest(state, browser_state):
        raise UnauthorizedError("this sign-in was not started in this browser; start again")
    flow = await _take(db, state, _LOGIN)
    if flow is None:
        raise UnauthorizedError("this sign-in was used already or has expired; start again")
    if error:
        raise UnauthorizedError(f"the OIDC provider refused the sign-in: {error[:200]}")
    if not code:
        raise UnauthorizedError("the OIDC provider sent no authorization code")
    async with db.read() as session:
        cfg = await enabled_config(session)
    metadata = await provider.metadata(cfg)
    id_token, access_token = await provider.exchange(
        cfg, metadata, code, str(flow["verifier"]), str(flow["redirect"])
    )
    claims = await provider.verify(cfg, metadata, id_token, str(flow["nonce"]))
    extra = await provider.userinfo(cfg, metadata, access_token, str(claims["sub"]))
    identity = identity_from_claims(cfg, {**extra, **claims}, id_token)
    after = str(flow["after"])
    user_id = await _linked_user(db, identity)
    if user_id is None and not cfg.auto_onboard:
        ticket = secrets.token_urlsafe(32)
        async with db.write() as session:
            session.add(
                OidcPending(
                    id=_row_id(ticket),
                    kind=_ONBOARD,
                    payload=await secretbox.seal(
                        session, json.dumps({"identity": asdict(identity), "after": after})
                    ),
                    expires_at=utcnow() + timedelta(seconds=FLOW_SECONDS),
                )
            )
        return NeedsUsername(ticket, identity.username, after)
    if user_id is None:
        if not identity.username:
            raise UnauthorizedError(
                "the provider's token names no username (set oidc_user_claim, or turn "
                "oidc_auto_onboard off to let users choose one)"
            )
        user_id = await _create_user(db, identity, identity.username, robot_prefix)
    else:
        await _update_user(db, user_id, identity)
    return await _signed_in(db, cfg, user_id, identity, after)


async def onboard(db: Database, ticket: str, username: str, robot_prefix: str) -> SignedIn:
    """A new OIDC user's chosen ``username``: the user is made and signed in. A name that
    is taken or not allowed leaves the ticket usable for another try."""
    name = validate_username(username.strip(), robot_prefix)
    found = await _peek(db, ticket)
    if found is None:
        raise UnauthorizedError("the sign-in expired before a username was chosen; sign in again")
    saved = found["identity"]
    identity = Identity(**{**saved, "groups": tuple(saved["groups"])})
    async with db.read() as session:
        if await users.find_user_by_name(session, name) is not None:
            raise AlreadyExistsError(f"the username {name} is taken; choose another")
        cfg = await enabled_config(session)
    if await _take(db, ticket, _ONBOARD) is None:  # another tab used it meanwhile
        raise UnauthorizedError("the sign-in expired before a username was chosen; sign in again")
    user_id = await _linked_user(db, identity)
    if user_id is None:
        user_id = await _create_user(db, identity, name, robot_prefix)
    return await _signed_in(db, cfg, user_id, identity, str(found["after"]))


async def _peek(db: Database, ticket: str) -> dict[str, Any] | None:
    async with db.read() as session:
        row = await session.get(OidcPending, _row_id(ticket))
        if row is None or row.kind != _ONBOARD or row.expires_at <= utcnow():
            return None
        found = json.loads(await secretbox.open_sealed(session, row.payload))
    return found if isinstance(found, dict) else None


async def onboarding_suggestion(db: Database, ticket: str) -> str | None:
    """The username the provider suggests for a pending onboarding, or None when the
    ticket is not (or no longer) good."""
    found = await _peek(db, ticket)
    if found is None:
        return None
    identity = found["identity"]
    return str(identity["username"]) if isinstance(identity, dict) else ""


async def _linked_user(db: Database, identity: Identity) -> int | None:
    """The live user this subject signed in as before (a link to a deleted user is
    dropped: the subject onboards afresh)."""
    async with db.read() as session:
        row = (
            await session.execute(
                select(OidcUser.id, User.user_id, User.deleted)
                .join(User, User.user_id == OidcUser.user_id)
                .where(OidcUser.subiss == identity.subiss)
            )
        ).one_or_none()
    if row is None:
        return None
    if row.deleted:
        async with db.write() as session:
            await session.execute(delete(OidcUser).where(OidcUser.id == row.id))
        return None
    return int(row.user_id)


async def _create_user(db: Database, identity: Identity, name: str, robot_prefix: str) -> int:
    try:
        name = validate_username(name, robot_prefix)
    except BadRequestError as exc:
        raise UnauthorizedError(
            f"the provider's username {name[:100]!r} cannot be a Dockyard user name: {exc.message}"
        ) from None
    email = identity.email if 0 < len(identity.email) <= 255 else None
    secret = generate_password(32)
    async with db.write() as session:
        if await users.find_user_by_name(session, name) is not None:
            raise AlreadyExistsError(
                f"a user named {name} exists already and did not sign in through this "
                "provider; an administrator must resolve it"
            )
        if email is not None and await users.find_user_by_email(session, email) is not None:
            email = None  # another user has it: the sign-in still works
        user = User(username=name, email=email, realname=identity.realname[:255], password="")
        session.add(user)
        await session.flush()
        session.add(
            OidcUser(
                user_id=user.user_id,
                subiss=identity.subiss,
                secret=await secretbox.seal(session, secret),
                secret_hash=hash_password(secret),
                secret_time=utcnow(),
                token=await secretbox.seal(session, identity.id_token),
            )
        )
        return int(user.user_id)


async def _update_user(db: Database, user_id: int, identity: Identity) -> None:
    async with db.write() as session:
        await session.execute(
            update(OidcUser)
            .where(OidcUser.user_id == user_id)
            .values(token=await secretbox.seal(session, identity.id_token))
        )


async def _signed_in(
    db: Database, cfg: OidcConfig, user_id: int, identity: Identity, after: str
) -> SignedIn:
    if cfg.groups_claim:
        await groupsync.record_sign_in_groups(
            db,
            user_id,
            OIDC_GROUP,
            [groupsync.ExternalGroup(name) for name in identity.groups],
            admin=identity.admin if cfg.admin_group else None,
            onboard=True,
        )
    async with db.read() as session:
        user = await users.find_live_user(session, user_id)
    if user is None:
        raise UnauthorizedError("the user was deleted during the sign-in")
    return SignedIn(user_id, user.username, after)


# --- CLI secrets --------------------------------------------------------------------------


async def cli_secret(session: AsyncSession, user_id: int) -> str | None:
    """An OIDC user's CLI secret (None for a user who is not an OIDC user)."""
    sealed = await session.scalar(select(OidcUser.secret).where(OidcUser.user_id == user_id))
    return None if sealed is None else await secretbox.open_sealed(session, sealed)


async def set_cli_secret(session: AsyncSession, user_id: int, secret: str | None) -> str:
    """Replace an OIDC user's CLI secret with ``secret`` (Harbor's password rules), or a
    random one; the old one stops working at once (tokens it got too: their
    fingerprint no longer matches)."""
    if await load_config_if_enabled(session) is None:
        raise PreconditionFailedError("CLI secrets exist only while auth_mode is oidc_auth")
    chosen = validate_password(secret) if secret is not None else generate_password(32)
    changed = await session.execute(
        update(OidcUser)
        .where(OidcUser.user_id == user_id)
        .values(
            secret=await secretbox.seal(session, chosen),
            secret_hash=hash_password(chosen),
            secret_time=utcnow(),
        )
    )
    if not getattr(changed, "rowcount", 0):
        raise PreconditionFailedError(f"user {user_id} did not sign in through OIDC")
    return chosen


async def find_oidc_user(session: AsyncSession, user_id: int) -> OidcUser | None:
    """The user's link to the provider (None for a user who is not an OIDC user)."""
    found: OidcUser | None = await session.scalar(
        select(OidcUser).where(OidcUser.user_id == user_id)
    )
    return found


async def id_token_hint(session: AsyncSession, user_id: int) -> str:
    """The last ID token the user signed in with ("" when none)."""
    sealed = await session.scalar(select(OidcUser.token).where(OidcUser.user_id == user_id))
    return await secretbox.open_sealed(session, sealed or "")
