"""Projects, their metadata and members (Harbor's tables of the same names)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from dockyard.db.base import Base, BigId, UTCDateTime, utcnow


class Project(Base):
    __tablename__ = "project"

    project_id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("harbor_user.user_id"))
    registry_id: Mapped[int] = mapped_column(Integer, default=0)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    creation_time: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    update_time: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class ProjectMetadata(Base):
    __tablename__ = "project_metadata"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.project_id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(255))
    value: Mapped[str] = mapped_column(String(255))
    creation_time: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    update_time: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class ProjectMember(Base):
    """A user (``entity_type='u'``) or group (``'g'``) holding a Harbor role in a project."""

    __tablename__ = "project_member"
    __table_args__ = (UniqueConstraint("project_id", "entity_id", "entity_type"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.project_id", ondelete="CASCADE"))
    entity_id: Mapped[int] = mapped_column(Integer)
    entity_type: Mapped[str] = mapped_column(String(1))
    role: Mapped[int] = mapped_column(Integer)
    creation_time: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    update_time: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class CVEAllowlistRow(Base):
    """Harbor's CVE allowlist: ``project_id`` 0 is the system's, any other a project's.

    ``items`` is the JSON list of CVE ids (the pull policy reads it in the statement that
    decides a pull, so it stays one column); ``expires_at`` (Unix seconds) passed, the
    list counts as empty."""

    __tablename__ = "cve_allowlist"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    project_id: Mapped[int] = mapped_column(BigInteger, unique=True)
    items: Mapped[str] = mapped_column(Text, default="[]")
    expires_at: Mapped[int | None] = mapped_column(BigInteger)
    creation_time: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    update_time: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
