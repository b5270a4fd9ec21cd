"""Users (Harbor's ``harbor_user`` table)."""

from __future__ import annotations

from datetime import datetime
from enum import IntEnum

from sqlalchemy import (
    BigInteger,
    Boolean,
    Double,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column

from dockyard.db.base import Base, BigId, UTCDateTime, utcnow


class User(Base):
    __tablename__ = "harbor_user"

    user_id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(255), unique=True)
    email: Mapped[str | None] = mapped_column(String(255), unique=True)
    password: Mapped[str] = mapped_column(Text, default="")
    """An argon2 hash (PHC string); empty for users who cannot log in with a password."""
    realname: Mapped[str] = mapped_column(String(255), default="")
    comment: Mapped[str] = mapped_column(String(255), default="")
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    sysadmin_flag: Mapped[bool] = mapped_column(Boolean, default=False)
    admin_role_in_auth: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    """Administrator because the sign-in provider said so at the last sign-in (an LDAP user
    in ``ldap_group_admin_dn``, an OIDC user in ``oidc_admin_group``, the HTTP auth proxy's
    ``http_authproxy_admin_groups``/``_usernames``): set and cleared at sign-in, never by
    hand; ``sysadmin_flag`` is the one an administrator sets, and either makes the user an
    administrator."""
    password_version: Mapped[int] = mapped_column(Integer, default=1)
    creation_time: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    update_time: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class GroupType(IntEnum):
    """Harbor's ``user_group.group_type``."""

    LDAP = 1
    HTTP = 2
    OIDC = 3


class UserGroup(Base):
    """Harbor's ``user_group``: an LDAP (1), HTTP (2) or OIDC (3) group."""

    __tablename__ = "user_group"
    __table_args__ = (UniqueConstraint("group_type", "group_name"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    group_name: Mapped[str] = mapped_column(String(255))
    group_type: Mapped[int] = mapped_column(Integer)
    ldap_group_dn: Mapped[str] = mapped_column(String(512), default="")
    creation_time: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    update_time: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class UserGroupMembership(Base):
    """Which groups a user belongs to, as the identity provider last said (LDAP/OIDC/HTTP)."""

    __tablename__ = "user_group_membership"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("harbor_user.user_id", ondelete="CASCADE"), primary_key=True
    )
    group_id: Mapped[int] = mapped_column(
        ForeignKey("user_group.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class LoginSession(Base):
    """A console session (cookie ``sid``); the cookie holds a secret whose hash is ``id``."""

    __tablename__ = "login_session"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("harbor_user.user_id", ondelete="CASCADE"), index=True
    )
    csrf_token: Mapped[str] = mapped_column(String(64))
    creation_time: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class LoginFailure(Base):
    """One failed login, kept for the throttle's window (every node counts the same rows)."""

    __tablename__ = "login_failure"
    __table_args__ = (
        Index("ix_login_failure_account_address_failed_at", "account", "address", "failed_at"),
        Index("ix_login_failure_address_failed_at", "address", "failed_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    account: Mapped[str] = mapped_column(String(255))
    """The login name as offered (whether or not such an account exists)."""
    address: Mapped[str] = mapped_column(String(64))
    """The client address (behind ``trusted_proxies``, the one they name)."""
    failed_at: Mapped[float] = mapped_column(Double, index=True)
    """Unix seconds."""


class AuthRevision(Base):
    """One row counting changes that take access away (revocations).

    Every process keeps the decisions it made about bearer tokens until this
    number moves (see ``iam/revocation.py``).
    """

    __tablename__ = "auth_revision"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    revision: Mapped[int] = mapped_column(BigInteger, default=0)


class OidcUser(Base):
    """An OIDC user's link to the provider (Harbor's ``oidc_user``) and its CLI secret.

    ``subiss`` is the ID token's ``sub`` followed by its ``iss``: the provider's one stable
    name for the person, whatever the username claim says later. The CLI secret is kept
    twice: sealed (``system.secretbox``) to show it again on the profile page, and as an
    argon2 hash for the login path, which checks it as it checks passwords (a user may
    choose their secret through the API) and needs no key. ``token`` is the last
    sign-in's ID token, sealed: the ``id_token_hint`` of a logout at the provider.
    """

    __tablename__ = "oidc_user"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("harbor_user.user_id", ondelete="CASCADE"), unique=True
    )
    subiss: Mapped[str] = mapped_column(String(512), unique=True)
    secret: Mapped[str] = mapped_column(Text, default="")
    secret_hash: Mapped[str] = mapped_column(Text, default="")
    secret_time: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    """When the CLI secret was made (``oidc_cli_secret_max_age`` counts from here)."""
    token: Mapped[str] = mapped_column(Text, default="")
    creation_time: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    update_time: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class OidcPending(Base):
    """A sign-in at the provider under way (``login``: state, nonce, PKCE verifier, where to
    go next) or a new user choosing a username (``onboard``: the verified claims).

    The row's id is the SHA-256 of the browser's ticket (the ``state`` parameter, or the
    onboarding cookie), so the table alone opens nothing; the payload is sealed. A row is
    deleted by the request that uses it, so each is used once, on any node.
    """

    __tablename__ = "oidc_pending"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    payload: Mapped[str] = mapped_column(Text)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
