"""Harbor's ``harbor_label`` and ``label_reference`` tables."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from dockyard.db.base import Base, BigId, UTCDateTime, utcnow


class Label(Base):
    __tablename__ = "harbor_label"
    __table_args__ = (UniqueConstraint("name", "scope", "project_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128))
    description: Mapped[str] = mapped_column(String(1024), default="")
    color: Mapped[str] = mapped_column(String(16), default="")
    level: Mapped[str] = mapped_column(String(1), default="u")
    """``s`` system-created, ``u`` user-created (Harbor's meaning)."""
    scope: Mapped[str] = mapped_column(String(1))
    """``g`` global (system) or ``p`` project."""
    project_id: Mapped[int] = mapped_column(Integer, default=0, index=True)
    """The project of a project label; 0 for global labels."""
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    creation_time: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    update_time: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class LabelReference(Base):
    """Label ``label_id`` is attached to artifact ``artifact_id``."""

    __tablename__ = "label_reference"
    __table_args__ = (UniqueConstraint("label_id", "artifact_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    label_id: Mapped[int] = mapped_column(ForeignKey("harbor_label.id", ondelete="CASCADE"))
    artifact_id: Mapped[int] = mapped_column(
        ForeignKey("artifact.id", ondelete="CASCADE"), index=True
    )
    creation_time: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    update_time: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
