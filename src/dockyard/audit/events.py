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

    @property
    def event_type(self) -> str:
        """Harbor's event type name (``create_artifact``, ``login_user``…)."""
        return event_type(self.operation, self.resource_type)


# Harbor names configuration events ``update_configure``.
_TYPE_SPELLING = {"configuration": "configure"}

EVENT_TYPES: tuple[str, ...] = (
    "create_artifact",
    "delete_artifact",
    "pull_artifact",
    "delete_tag",
    "create_project",
    "update_project",
    "delete_project",
    "delete_repository",
    "create_member",
    "update_member",
    "delete_member",
    "login_user",
    "create_user",
    "delete_user",
    "update_user",
    "create_robot",
    "update_robot",
    "delete_robot",
    "update_configure",
    "update_repository",
    "create_label",
    "update_label",
    "delete_label",
    "create_artifact-label",
    "delete_artifact-label",
    "create_immutable-rule",
    "update_immutable-rule",
    "delete_immutable-rule",
    "update_quota",
    "create_user_group",
    "update_user_group",
    "delete_user_group",
    "create_retention",
    "update_retention",
    "delete_retention",
    "create_registry",
    "update_registry",
    "delete_registry",
    "create_trusted-key",
    "delete_trusted-key",
)
"""The event types Dockyard records; ``disabled_audit_log_event_types`` names some of them."""


def event_type(operation: str, resource_type: str) -> str:
    return f"{operation}_{_TYPE_SPELLING.get(resource_type, resource_type)}"


def event_kind(name: str) -> tuple[str, str] | None:
    """The (operation, resource type) an event type names (``update_configure`` ->
    ``("update", "configuration")``); None when it has no ``_``."""
    operation, sep, spelled = name.partition("_")
    if not sep or not operation or not spelled:
        return None
    resource_type = next((k for k, v in _TYPE_SPELLING.items() if v == spelled), spelled)
    return operation, resource_type


def parse_event_types(text: str) -> frozenset[str]:
    """``pull_artifact, create_user`` as a set of event types (lower case, blanks dropped)."""
    return frozenset(part.strip().lower() for part in text.split(",") if part.strip())
