"""What the console's navigation offers, as data: the project tabs and the administration
sections, each with the permission that shows it.

A feature adds its pages by adding an entry here (and its routes, templates and
messages): the tab or section appears for exactly those ``can`` allows. The job
features' pages (garbage collection, job service, audit log settings, tag retention,
webhooks) live in ``console/jobs.py``, ``retention.py`` and ``webhooks.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

from dockyard.iam.policy import Action, Resource


@dataclass(frozen=True, slots=True)
class Entry:
    key: str
    """Names the message ``project.tab.<key>`` / ``admin.nav.<key>`` and the active mark."""
    path: str
    """Relative to the project (``/members``) or to ``/harbor/admin`` (``/users``)."""
    action: Action
    resource: Resource


PROJECT_TABS: tuple[Entry, ...] = (
    Entry("summary", "", Action.READ, Resource.PROJECT),
    Entry("repositories", "/repositories", Action.LIST, Resource.REPOSITORY),
    Entry("members", "/members", Action.LIST, Resource.MEMBER),
    Entry("labels", "/labels", Action.LIST, Resource.LABEL),
    Entry("scanner", "/scanner", Action.READ, Resource.SCANNER),
    Entry("immutability", "/immutability", Action.LIST, Resource.IMMUTABLE_TAG),
    Entry("retention", "/retention", Action.LIST, Resource.TAG_RETENTION),
    Entry("robots", "/robots", Action.LIST, Resource.ROBOT),
    Entry("webhooks", "/webhooks", Action.LIST, Resource.NOTIFICATION_POLICY),
    Entry("logs", "/logs", Action.LIST, Resource.LOG),
    Entry("configuration", "/configuration", Action.READ, Resource.CONFIGURATION),
)

ADMIN_SECTIONS: tuple[Entry, ...] = (
    Entry("users", "/users", Action.LIST, Resource.USER),
    Entry("groups", "/groups", Action.LIST, Resource.USER_GROUP),
    Entry("robots", "/robots", Action.LIST, Resource.ROBOT),
    Entry("labels", "/labels", Action.CREATE, Resource.LABEL),
    Entry("audit", "/audit-logs", Action.LIST, Resource.AUDIT_LOG),
    Entry("quotas", "/quotas", Action.LIST, Resource.QUOTA),
    Entry("registries", "/registries", Action.LIST, Resource.REGISTRY),
    Entry("replications", "/replications", Action.LIST, Resource.REPLICATION_POLICY),
    Entry("audit_settings", "/audit-log-settings", Action.LIST, Resource.PURGE_AUDIT),
    Entry("security_hub", "/security-hub", Action.READ, Resource.SECURITY_HUB),
    Entry("scanners", "/interrogation-services", Action.LIST, Resource.SCANNER),
    Entry("cve_allowlist", "/cve-allowlist", Action.UPDATE, Resource.SCANNER),
    Entry("gc", "/gc", Action.LIST, Resource.GARBAGE_COLLECTION),
    Entry("jobservice", "/job-service", Action.LIST, Resource.JOBSERVICE_MONITOR),
    Entry("configuration", "/configuration", Action.UPDATE, Resource.USER),
    Entry("system", "/system", Action.READ, Resource.SYSTEM_VOLUMES),
)
