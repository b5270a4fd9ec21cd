"""Console sessions: the ``sid`` cookie of ``/c/login`` and its CSRF token.

The cookie holds a random secret; the database keeps only its SHA-256 (the
row's id), so a leaked table opens no session. A session lives
``session_timeout`` minutes past its last use (the start-time setting
``session_timeout_minutes`` until an administrator changes it at run time); the
expiry moves at most once a minute, so a busy console does not write on every
request. The user, their administrator flag and their groups are read from the
database on every request, so a change or a deletion takes effect at once.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from dockyard.db.base import utcnow
from dockyard.db.engine import Database
from dockyard.iam import repository as repo
from dockyard.iam.models import LoginSession
from dockyard.iam.policy import Principal
from dockyard.system import config

SESSION_COOKIE = "sid"
CSRF_COOKIE = "__csrf"
CSRF_HEADER = "X-Harbor-CSRF-Token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
EXTEND_EVERY = timedelta(minutes=1)
_SECRET_BYTES = 32
_COOKIE_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


@dataclass(frozen=True, slots=True)
class NewSession:
    cookie: str
    """The secret for the ``sid`` cookie; it is stored nowhere."""
    csrf_token: str


@dataclass(frozen=True, slots=True)
class ConsoleSession:
    """A live session as a request sees it."""

    session_id: str
    principal: Principal
    csrf_token: str

    def accepts_csrf(self, offered: str | None) -> bool:
        return offered is not None and hmac.compare_digest(
            offered.encode("utf-8", "replace"), self.csrf_token.encode()
        )


def session_id(cookie: str) -> str | None:
    """The row id for a cookie value, or None for a value no login ever issued."""
    if not 32 <= len(cookie) <= 128 or not set(cookie) <= _COOKIE_ALPHABET:
        return None
    return hashlib.sha256(cookie.encode("ascii")).hexdigest()


async def idle_lifetime(session: AsyncSession, default: timedelta) -> timedelta:
    """``session_timeout`` as an administrator set it at run time, else ``default``."""
    minutes = await config.run_time_value(session, config.SESSION_TIMEOUT)
    return default if not isinstance(minutes, int) else timedelta(minutes=minutes)


async def start_session(session: AsyncSession, user_id: int, lifetime: timedelta) -> NewSession:
    """A new session for ``user_id`` (expired sessions of everyone are swept on the way);
    ``lifetime`` is the start-time idle lifetime, which a run-time change overrides."""
    now = utcnow()
    lifetime = await idle_lifetime(session, lifetime)
    await repo.delete_expired_login_sessions(session, now)
    cookie = secrets.token_urlsafe(_SECRET_BYTES)
    csrf_token = secrets.token_urlsafe(_SECRET_BYTES)
    row_id = session_id(cookie)
    assert row_id is not None
    session.add(
        LoginSession(
            id=row_id,
            user_id=user_id,
            csrf_token=csrf_token,
            creation_time=now,
            expires_at=now + lifetime,
        )
    )
    await session.flush()
    return NewSession(cookie, csrf_token)


async def resolve_session(db: Database, cookie: str, lifetime: timedelta) -> ConsoleSession | None:
    """The live session a cookie names and its user's principal, or None."""
    row_id = session_id(cookie)
    if row_id is None:
        return None
    now = utcnow()
    async with db.read() as session:
        row = await repo.find_login_session(session, row_id)
        if row is None or row.expires_at <= now:
            return None
        lifetime = await idle_lifetime(session, lifetime)
        user = await repo.find_live_user(session, row.user_id)
        if user is None:
            return None
        principal = repo.user_principal(user, await repo.user_group_ids(session, user.user_id))
        found = ConsoleSession(row_id, principal, row.csrf_token)
        expires_at: datetime = row.expires_at
    if now + lifetime - expires_at >= EXTEND_EVERY:
        async with db.write() as session:
            await repo.extend_login_session(session, row_id, now + lifetime)
    return found


async def end_session(session: AsyncSession, cookie: str) -> None:
    row_id = session_id(cookie)
    if row_id is not None:
        await repo.delete_login_session(session, row_id)
