"""Harbor's ``quota`` and ``quota_usage``, folded into one row per project."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from dockyard.db.base import Base, BigId, UTCDateTime, utcnow


class Quota(Base):
    __tablename__ = "quota"
    __table_args__ = (UniqueConstraint("reference", "reference_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    reference: Mapped[str] = mapped_column(String(255), default="project")
    reference_id: Mapped[str] = mapped_column(String(255))
    """The project id, as text (Harbor's shape)."""
    hard_storage: Mapped[int] = mapped_column(BigInteger, default=-1)
    """Bytes allowed; -1 unlimited."""
    used_storage: Mapped[int] = mapped_column(BigInteger, default=0)
    """Bytes of the unique blobs the project holds (kept incrementally)."""
    creation_time: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    update_time: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
