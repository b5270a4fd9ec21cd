"""The one decision point: ``can(principal, action, resource, project)``.

Pure code over data. Callers load the facts (who the principal is, which roles
it holds in the project, whether the project is public, a robot's permission
list) and ask; the token service, the registry, the REST API and the console
all ask here.

The tables follow Harbor's code (``shared/harbor-api/RBAC.md``), not its docs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import Literal


class Action(StrEnum):
    PULL = "pull"
    PUSH = "push"
    CREATE = "create"
    READ = "read"
    UPDATE = "update"
    DELETE = "delete"
    LIST = "list"
    OPERATE = "operate"
    STOP = "stop"
    SCANNER_PULL = "scanner-pull"
    ANY = "*"


class Resource(StrEnum):
    # project-scoped
    PROJECT = "project"
    MEMBER = "member"
    METADATA = "metadata"
    LOG = "log"
    LABEL = "label"
    QUOTA = "quota"
    REPOSITORY = "repository"
    ARTIFACT = "artifact"
    ARTIFACT_ADDITION = "artifact-addition"
    TAG = "tag"
    ACCESSORY = "accessory"
    ARTIFACT_LABEL = "artifact-label"
    TAG_RETENTION = "tag-retention"
    IMMUTABLE_TAG = "immutable-tag"
    CONFIGURATION = "configuration"
    ROBOT = "robot"
    NOTIFICATION_POLICY = "notification-policy"
    SCAN = "scan"
    SBOM = "sbom"
    SCANNER = "scanner"
    PREHEAT_POLICY = "preheat-policy"
    EXPORT_CVE = "export-cve"
    # system-scoped
    CATALOG = "catalog"
    AUDIT_LOG = "audit-log"
    PREHEAT_INSTANCE = "preheat-instance"
    REPLICATION_POLICY = "replication-policy"
    REPLICATION = "replication"
    REPLICATION_ADAPTER = "replication-adapter"
    REGISTRY = "registry"
    SCAN_ALL = "scan-all"
    SYSTEM_VOLUMES = "system-volumes"
    GARBAGE_COLLECTION = "garbage-collection"
    PURGE_AUDIT = "purge-audit"
    JOBSERVICE_MONITOR = "jobservice-monitor"
    SECURITY_HUB = "security-hub"
    USER = "user"
    LDAP_USER = "ldap-user"
    USER_GROUP = "user-group"


class Role(IntEnum):
    """Harbor's project role ids."""

    PROJECT_ADMIN = 1
    DEVELOPER = 2
    GUEST = 3
    MAINTAINER = 4
    LIMITED_GUEST = 5


ROLE_NAMES: dict[Role, str] = {
    Role.PROJECT_ADMIN: "projectAdmin",
    Role.DEVELOPER: "developer",
    Role.GUEST: "guest",
    Role.MAINTAINER: "maintainer",
    Role.LIMITED_GUEST: "limitedGuest",
}


def _table(rows: Mapping[Resource, str]) -> dict[Resource, frozenset[Action]]:
    """Rows written as Harbor's letters: C R U D L, P(ull) S (push), O(perate), T (stop)."""
    letters = {
        "C": Action.CREATE,
        "R": Action.READ,
        "U": Action.UPDATE,
        "D": Action.DELETE,
        "L": Action.LIST,
        "P": Action.PULL,
        "S": Action.PUSH,
        "O": Action.OPERATE,
        "T": Action.STOP,
    }
    return {
        resource: frozenset(letters[c] for c in spec if c != " ")
        for resource, spec in rows.items()
        if spec.strip()
    }


_R = Resource

# Harbor's role x resource x action table (``rolePoliciesMap``), as data.
ROLE_PERMISSIONS: dict[Role, dict[Resource, frozenset[Action]]] = {
    Role.PROJECT_ADMIN: _table(
        {
            _R.PROJECT: "RUD",
            _R.MEMBER: "CRUDL",
            _R.METADATA: "CRUD",
            _R.LOG: "L",
            _R.LABEL: "CRUDL",
            _R.QUOTA: "R",
            _R.REPOSITORY: "CRUDLPS",
            _R.ARTIFACT: "CRDL",
            _R.ARTIFACT_ADDITION: "R",
            _R.TAG: "CDL",
            _R.ACCESSORY: "L",
            _R.ARTIFACT_LABEL: "CD",
            _R.TAG_RETENTION: "CRUDLO",
            _R.IMMUTABLE_TAG: "CUDL",
            _R.CONFIGURATION: "RU",
            _R.ROBOT: "CRUDL",
            _R.NOTIFICATION_POLICY: "CRUDL",
            _R.SCAN: "CRT",
            _R.SBOM: "CRT",
            _R.SCANNER: "CR",
            _R.PREHEAT_POLICY: "CRUDL",
            _R.EXPORT_CVE: "CRL",
        }
    ),
    Role.MAINTAINER: _table(
        {
            _R.PROJECT: "R",
            _R.MEMBER: "RL",
            _R.METADATA: "R",
            _R.LABEL: "CRUDL",
            _R.QUOTA: "R",
            _R.REPOSITORY: "CRUDLPS",
            _R.ARTIFACT: "CRDL",
            _R.ARTIFACT_ADDITION: "R",
            _R.TAG: "CDL",
            _R.ACCESSORY: "L",
            _R.ARTIFACT_LABEL: "CD",
            _R.TAG_RETENTION: "CRUDLO",
            _R.IMMUTABLE_TAG: "CUDL",
            _R.CONFIGURATION: "R",
            _R.ROBOT: "RL",
            _R.NOTIFICATION_POLICY: "RL",
            _R.SCAN: "CRT",
            _R.SBOM: "CRT",
            _R.SCANNER: "R",
            _R.EXPORT_CVE: "CRL",
        }
    ),
    Role.DEVELOPER: _table(
        {
            _R.PROJECT: "R",
            _R.MEMBER: "RL",
            _R.LABEL: "RL",
            _R.QUOTA: "R",
            _R.REPOSITORY: "CRULPS",
            _R.ARTIFACT: "CRL",
            _R.ARTIFACT_ADDITION: "R",
            _R.TAG: "CL",
            _R.ACCESSORY: "L",
            _R.ARTIFACT_LABEL: "CD",
            _R.TAG_RETENTION: "CRUDLO",
            _R.CONFIGURATION: "R",
            _R.ROBOT: "RL",
            _R.SCAN: "R",
            _R.SBOM: "R",
            _R.SCANNER: "R",
            _R.EXPORT_CVE: "CRL",
        }
    ),
    Role.GUEST: _table(
        {
            _R.PROJECT: "R",
            _R.MEMBER: "RL",
            _R.LABEL: "RL",
            _R.QUOTA: "R",
            _R.REPOSITORY: "RLP",
            _R.ARTIFACT: "RL",
            _R.ARTIFACT_ADDITION: "R",
            _R.TAG: "L",
            _R.ACCESSORY: "L",
            _R.CONFIGURATION: "R",
            _R.ROBOT: "RL",
            _R.SCAN: "R",
            _R.SBOM: "R",
            _R.SCANNER: "R",
        }
    ),
    Role.LIMITED_GUEST: _table(
        {
            _R.PROJECT: "R",
            _R.QUOTA: "R",
            _R.REPOSITORY: "RLP",
            _R.ARTIFACT: "RL",
            _R.ARTIFACT_ADDITION: "R",
            _R.TAG: "L",
            _R.ACCESSORY: "L",
            _R.CONFIGURATION: "R",
            _R.SCAN: "R",
            _R.SBOM: "R",
            _R.SCANNER: "R",
        }
    ),
}

# What a public project grants everyone, anonymous users included.
PUBLIC_PERMISSIONS: dict[Resource, frozenset[Action]] = _table(
    {
        _R.PROJECT: "R",
        _R.REPOSITORY: "RLP",
        _R.ARTIFACT: "RL",
        _R.TAG: "L",
        _R.ACCESSORY: "L",
        _R.ARTIFACT_ADDITION: "R",
    }
)

# The robot permission catalogue: what a robot may be granted at each scope kind.
ROBOT_SYSTEM_PERMISSIONS: dict[Resource, frozenset[Action]] = _table(
    {
        _R.AUDIT_LOG: "L",
        _R.PREHEAT_INSTANCE: "CRUDL",
        _R.PROJECT: "LC",
        _R.REPLICATION_POLICY: "CRUDL",
        _R.REPLICATION: "RCL",
        _R.REPLICATION_ADAPTER: "L",
        _R.REGISTRY: "CRUDL",
        _R.SCAN_ALL: "RUTC",
        _R.SYSTEM_VOLUMES: "R",
        _R.GARBAGE_COLLECTION: "RCLUT",
        _R.PURGE_AUDIT: "RCLUT",
        _R.JOBSERVICE_MONITOR: "LT",
        _R.SCANNER: "CRUDL",
        _R.LABEL: "RCDU",
        _R.SECURITY_HUB: "RL",
        _R.CATALOG: "R",
        _R.QUOTA: "RLU",
        _R.ROBOT: "CRLD",
        _R.USER: "CRULD",
        _R.LDAP_USER: "CL",
        _R.USER_GROUP: "CRUDL",
    }
)
ROBOT_PROJECT_PERMISSIONS: dict[Resource, frozenset[Action]] = _table(
    {
        _R.LOG: "L",
        _R.PROJECT: "RDU",
        _R.METADATA: "CRUDL",
        _R.REPOSITORY: "RUDLPS",
        _R.ARTIFACT: "RCLD",
        _R.SCAN: "CRT",
        _R.SBOM: "CRT",
        _R.TAG: "CLD",
        _R.ACCESSORY: "L",
        _R.ARTIFACT_ADDITION: "R",
        _R.ARTIFACT_LABEL: "CD",
        _R.SCANNER: "CR",
        _R.PREHEAT_POLICY: "CRUDL",
        _R.IMMUTABLE_TAG: "CDLU",
        _R.NOTIFICATION_POLICY: "CRUDL",
        _R.TAG_RETENTION: "CRUDL",
        _R.LABEL: "CRUDL",
        _R.QUOTA: "R",
        _R.ROBOT: "CRLD",
        _R.EXPORT_CVE: "CR",
        _R.MEMBER: "CRUDL",
    }
)

SYSTEM_SCOPE = "/system"
ALL_PROJECTS_SCOPE = "/project/*"


def project_scope(project_id: int) -> str:
    return f"/project/{project_id}"


@dataclass(frozen=True, slots=True)
class RobotGrant:
    """One permission of a robot; ``scope`` is /system, /project/{id} or /project/*."""

    scope: str
    resource: Resource
    action: Action


@dataclass(frozen=True, slots=True)
class Principal:
    kind: Literal["anonymous", "user", "robot"]
    name: str
    user_id: int | None = None
    sysadmin: bool = False
    robot_id: int | None = None
    grants: frozenset[RobotGrant] = frozenset()
    """A robot's permissions; users hold roles instead, loaded per project."""
    group_ids: frozenset[int] = frozenset()
    """User groups the user belongs to (their project roles count as the user's)."""
    valid_until: float | None = None
    """Unix time the account expires at (robots with a duration); tokens end by then."""

    @property
    def is_anonymous(self) -> bool:
        return self.kind == "anonymous"

    @property
    def is_robot(self) -> bool:
        return self.kind == "robot"


ANONYMOUS = Principal(kind="anonymous", name="anonymous")


@dataclass(frozen=True, slots=True)
class ProjectContext:
    """What ``can`` needs to know of a project, for one principal."""

    project_id: int
    name: str
    public: bool
    roles: frozenset[Role] = field(default_factory=frozenset)


def role_allows(role: Role, action: Action, resource: Resource) -> bool:
    return action in ROLE_PERMISSIONS[role].get(resource, frozenset())


def _robot_allows(
    grants: Iterable[RobotGrant], action: Action, resource: Resource, scope: str
) -> bool:
    return any(
        g.scope == scope and g.resource in (resource, "*") and g.action in (action, Action.ANY)
        for g in grants
    )


def can(
    principal: Principal, action: Action, resource: Resource, project: ProjectContext | None
) -> bool:
    """May ``principal`` do ``action`` on ``resource`` (inside ``project`` if given)?"""
    if principal.sysadmin:
        return True
    if (
        project is not None
        and project.public
        and action in PUBLIC_PERMISSIONS.get(resource, frozenset())
    ):
        return True
    if principal.is_anonymous:
        return False
    if principal.is_robot:
        if project is None:
            return _robot_allows(principal.grants, action, resource, SYSTEM_SCOPE)
        return _robot_allows(
            principal.grants, action, resource, project_scope(project.project_id)
        ) or _robot_allows(principal.grants, action, resource, ALL_PROJECTS_SCOPE)
    if project is None:
        # System-level resources (the catalog, users, …) are for administrators only.
        return False
    return any(role_allows(role, action, resource) for role in project.roles)


def project_permissions(project: ProjectContext | None) -> dict[Resource, frozenset[Action]]:
    """Every (resource, actions) a role holder of ``project`` has; for the current-user API."""
    merged: dict[Resource, set[Action]] = {}
    if project is None:
        return {}
    for role in project.roles:
        for resource, actions in ROLE_PERMISSIONS[role].items():
            merged.setdefault(resource, set()).update(actions)
    if project.public:
        for resource, actions in PUBLIC_PERMISSIONS.items():
            merged.setdefault(resource, set()).update(actions)
    return {r: frozenset(a) for r, a in merged.items()}
