"""What an audit event says: who (``Actor``), and what happened (``AuditEvent``). Pure."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Actor:
    """Who caused a change, and from where (for policies and the audit log)."""

    name: str
    """A username, ``robot$…``, or ``anonymous``."""
    source_ip: str = "-"


SYSTEM_ACTOR = Actor("system", "-")


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One change, as the audit log records it (Harbor's ``AuditLogExt`` fields)."""

    operation: str
    """``create``, ``update``, ``delete``, ``pull``, ``login``…"""
    resource_type: str
    """``artifact``, ``tag``, ``repository``, ``project``, ``member``, ``robot``, ``user``…"""
    resource: str
    """What was changed, by name (``library/app:1.0``, ``library/app@sha256:…``, a username)."""
    project_id: int = 0
    """The project it happened in; 0 for system resources."""
    description: str = ""
    succeeded: bool = True
