"""Harbor's ``audit_log_ext`` table."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from dockyard.db.base import Base, BigId, UTCDateTime, utcnow


class AuditLog(Base):
    __tablename__ = "audit_log_ext"
    __table_args__ = (
        Index("ix_audit_log_ext_op_time", "op_time"),
        Index("ix_audit_log_ext_project_id_op_time", "project_id", "op_time"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    project_id: Mapped[int] = mapped_column(Integer, default=0)
    """The project the resource is in; 0 for system resources (users, robots, config)."""
    operation: Mapped[str] = mapped_column(String(64))
    """``create``, ``update``, ``delete``, ``pull``, ``login``, ``logout``…"""
    operation_description: Mapped[str] = mapped_column(Text, default="")
    operation_result: Mapped[bool] = mapped_column(Boolean, default=True)
    resource_type: Mapped[str] = mapped_column(String(255))
    resource: Mapped[str] = mapped_column(String(1024))
    username: Mapped[str] = mapped_column(String(255))
    client_ip: Mapped[str] = mapped_column(String(64), default="")
    user_agent: Mapped[str] = mapped_column(String(512), default="")
    op_time: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
