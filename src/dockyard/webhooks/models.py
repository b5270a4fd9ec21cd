"""Webhook policies (Harbor's ``WebhookPolicy``; its table is ``notification_policy``)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from dockyard.db.base import Base, BigId, UTCDateTime, utcnow


class WebhookPolicy(Base):
    __tablename__ = "notification_policy"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    project_id: Mapped[int] = mapped_column(
        ForeignKey("project.project_id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(Text, default="")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    event_types: Mapped[str] = mapped_column(Text, default="[]")
    """JSON list of Harbor event types (``PUSH_ARTIFACT``…)."""
    targets: Mapped[str] = mapped_column(Text, default="[]")
    """JSON list of Harbor ``WebhookTargetObject``s (the auth header kept as given)."""
    creator: Mapped[str] = mapped_column(String(255), default="")
    creation_time: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    update_time: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
