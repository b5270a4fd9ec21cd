"""The one decision point: ``can(principal, action, resource, project)``.

Pure code over data. Callers load the facts (who the principal is, which roles
it holds in the project, whether the project is public) and ask; the token
service, the registry and the REST API all ask here.
"""

from __future__ import annotations

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


class Resource(StrEnum):
    PROJECT = "project"
    REPOSITORY = "repository"
    ARTIFACT = "artifact"
    TAG = "tag"
    CATALOG = "catalog"


class Role(IntEnum):
    """Harbor's project role ids."""

    PROJECT_ADMIN = 1
    DEVELOPER = 2
    GUEST = 3
    MAINTAINER = 4
    LIMITED_GUEST = 5


@dataclass(frozen=True, slots=True)
class Principal:
    kind: Literal["anonymous", "user", "robot"]
    name: str
    user_id: int | None = None
    sysadmin: bool = False

    @property
    def is_anonymous(self) -> bool:
        return self.kind == "anonymous"


ANONYMOUS = Principal(kind="anonymous", name="anonymous")


@dataclass(frozen=True, slots=True)
class ProjectContext:
    """What ``can`` needs to know of a project, for one principal."""

    project_id: int
    name: str
    public: bool
    roles: frozenset[Role] = field(default_factory=frozenset)


_A = Action
_FULL_REPOSITORY = frozenset({_A.CREATE, _A.READ, _A.UPDATE, _A.DELETE, _A.LIST, _A.PULL, _A.PUSH})

# Harbor's role x resource x action table (``shared/harbor-api/RBAC.md``), as data.
ROLE_PERMISSIONS: dict[Role, dict[Resource, frozenset[Action]]] = {
    Role.PROJECT_ADMIN: {
        Resource.PROJECT: frozenset({_A.READ, _A.UPDATE, _A.DELETE}),
        Resource.REPOSITORY: _FULL_REPOSITORY,
        Resource.ARTIFACT: frozenset({_A.READ, _A.CREATE, _A.LIST, _A.DELETE}),
        Resource.TAG: frozenset({_A.CREATE, _A.LIST, _A.DELETE}),
    },
    Role.MAINTAINER: {
        Resource.PROJECT: frozenset({_A.READ}),
        Resource.REPOSITORY: _FULL_REPOSITORY,
        Resource.ARTIFACT: frozenset({_A.READ, _A.CREATE, _A.LIST, _A.DELETE}),
        Resource.TAG: frozenset({_A.CREATE, _A.LIST, _A.DELETE}),
    },
    Role.DEVELOPER: {
        Resource.PROJECT: frozenset({_A.READ}),
        Resource.REPOSITORY: frozenset({_A.CREATE, _A.READ, _A.UPDATE, _A.LIST, _A.PULL, _A.PUSH}),
        Resource.ARTIFACT: frozenset({_A.READ, _A.CREATE, _A.LIST}),
        Resource.TAG: frozenset({_A.CREATE, _A.LIST}),
    },
    Role.GUEST: {
        Resource.PROJECT: frozenset({_A.READ}),
        Resource.REPOSITORY: frozenset({_A.READ, _A.LIST, _A.PULL}),
        Resource.ARTIFACT: frozenset({_A.READ, _A.LIST}),
        Resource.TAG: frozenset({_A.LIST}),
    },
    Role.LIMITED_GUEST: {
        Resource.PROJECT: frozenset({_A.READ}),
        Resource.REPOSITORY: frozenset({_A.READ, _A.LIST, _A.PULL}),
        Resource.ARTIFACT: frozenset({_A.READ, _A.LIST}),
        Resource.TAG: frozenset({_A.LIST}),
    },
}

# What a public project grants everyone, anonymous users included.
PUBLIC_PERMISSIONS: dict[Resource, frozenset[Action]] = {
    Resource.PROJECT: frozenset({_A.READ}),
    Resource.REPOSITORY: frozenset({_A.READ, _A.LIST, _A.PULL}),
    Resource.ARTIFACT: frozenset({_A.READ, _A.LIST}),
    Resource.TAG: frozenset({_A.LIST}),
}


def can(
    principal: Principal, action: Action, resource: Resource, project: ProjectContext | None
) -> bool:
    """May ``principal`` do ``action`` on ``resource`` (inside ``project`` if given)?"""
    if principal.sysadmin:
        return True
    if project is None:
        # System-level resources (the catalog, …) are for administrators only.
        return False
    if project.public and action in PUBLIC_PERMISSIONS.get(resource, frozenset()):
        return True
    if principal.is_anonymous:
        return False
    return any(
        action in ROLE_PERMISSIONS[role].get(resource, frozenset()) for role in project.roles
    )
