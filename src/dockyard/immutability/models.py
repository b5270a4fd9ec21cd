"""Harbor's ``immutable_tag_rule`` table."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Integer, Text
from sqlalchemy.orm import Mapped, mapped_column

from dockyard.db.base import Base, BigId, UTCDateTime, utcnow


class ImmutableTagRule(Base):
    __tablename__ = "immutable_tag_rule"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    project_id: Mapped[int] = mapped_column(
        ForeignKey("project.project_id", ondelete="CASCADE"), index=True
    )
    tag_filter: Mapped[str] = mapped_column(Text)
    """The rule as Harbor's ``ImmutableRule`` JSON (selectors, template, priority)."""
    priority: Mapped[int] = mapped_column(Integer, default=0)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    creation_time: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
