"""Replication policies (Harbor's ``ReplicationPolicy``; its table is ``replication_policy``)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from dockyard.db.base import Base, BigId, UTCDateTime, utcnow


class ReplicationPolicy(Base):
    __tablename__ = "replication_policy"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    src_registry_id: Mapped[int] = mapped_column(BigInteger, default=0, index=True)
    """The source endpoint's id; 0 is this registry (a push-based policy)."""
    dest_registry_id: Mapped[int] = mapped_column(BigInteger, default=0, index=True)
    """The destination endpoint's id; 0 is this registry (a pull-based policy)."""
    dest_namespace: Mapped[str] = mapped_column(String(255), default="")
    dest_namespace_replace_count: Mapped[int] = mapped_column(Integer, default=-1)
    trigger: Mapped[str] = mapped_column(Text, default="{}")
    """JSON: ``{"type": "manual|scheduled|event_based", "trigger_settings": {"cron": …}}``."""
    filters: Mapped[str] = mapped_column(Text, default="[]")
    """JSON: the filters as the API accepted them."""
    replicate_deletion: Mapped[bool] = mapped_column(Boolean, default=False)
    override: Mapped[bool] = mapped_column(Boolean, default=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    speed: Mapped[int] = mapped_column(Integer, default=-1)
    """KB/s per task; -1 or 0 is no limit."""
    copy_by_chunk: Mapped[bool] = mapped_column(Boolean, default=False)
    single_active_replication: Mapped[bool] = mapped_column(Boolean, default=False)
    creation_time: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    update_time: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
