"""Users (Harbor's ``harbor_user`` table)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Integer, String, Text, UniqueConstraint
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
    password_version: Mapped[int] = mapped_column(Integer, default=1)
    creation_time: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    update_time: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


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
