"""Harbor's audit log shapes (swagger definitions of the same names)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel


class AuditLog(BaseModel):
    """The legacy shape (``listAuditLogs``, ``getLogs``)."""

    id: int
    username: str
    resource: str
    resource_type: str
    operation: str
    op_time: datetime


class AuditLogExt(BaseModel):
    """Harbor 2.13's shape, with the description and the outcome."""

    id: int
    username: str
    resource: str
    resource_type: str
    operation: str
    operation_description: str
    operation_result: bool
    op_time: datetime


class AuditLogEventType(BaseModel):
    event_type: str
