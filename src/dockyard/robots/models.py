"""Robot accounts and their permissions (Harbor's ``robot`` and ``permission_policy``)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from dockyard.db.base import Base, BigId, UTCDateTime, utcnow


class Robot(Base):
    __tablename__ = "robot"
    __table_args__ = (UniqueConstraint("name", "project_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(255))
    """The name without the ``robot$`` prefix (project robots: ``project+name``)."""
    name_prefix: Mapped[str | None] = mapped_column(String(32), nullable=True)
    """The robot name prefix it was created with, part of its name for good (Harbor keeps
    full names); NULL for robots made before the prefix could change at run time, which
    carry the ``robot_name_prefix`` setting."""
    description: Mapped[str] = mapped_column(Text, default="")
    level: Mapped[str] = mapped_column(String(16))
    """``system`` or ``project``."""
    project_id: Mapped[int] = mapped_column(Integer, default=0, index=True)
    """The project of a project-level robot; 0 for system robots."""
    secret: Mapped[str] = mapped_column(Text)
    """A hash of the secret; the secret itself is shown once."""
    duration: Mapped[int] = mapped_column(Integer, default=-1)
    """Lifetime in days; -1 never expires."""
    expires_at: Mapped[int] = mapped_column(BigInteger, default=-1)
    """Unix seconds; -1 never expires."""
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    visible: Mapped[bool] = mapped_column(Boolean, default=True)
    creator_type: Mapped[str] = mapped_column(String(16), default="local")
    creator_ref: Mapped[int] = mapped_column(Integer, default=0)
    """The user (or robot) id that created it."""
    secret_version: Mapped[int] = mapped_column(Integer, default=1)
    creation_time: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    update_time: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class RobotPermission(Base):
    """One granted (scope, resource, action) of a robot, as the API lists it."""

    __tablename__ = "robot_permission"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    robot_id: Mapped[int] = mapped_column(ForeignKey("robot.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    """``system`` or ``project``."""
    namespace: Mapped[str] = mapped_column(String(255))
    """``/`` for system, a project name or ``*``."""
    scope: Mapped[str] = mapped_column(String(255))
    """``/system``, ``/project/{id}`` or ``/project/*`` (resolved when granted)."""
    resource: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32))
    effect: Mapped[str] = mapped_column(String(16), default="allow")
