"""Projects: creation, lookup, listing, metadata, members, and what a principal may do in one.

Access to a project goes through two helpers that every caller shares:

* ``resolve_project`` finds a project by name or id *for a principal* and hides
  private projects from outsiders exactly as if they did not exist;
* ``require`` turns a ``can`` refusal into 401 (anonymous) or 403 (signed in).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, not_, or_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from dockyard.audit import service as audit
from dockyard.audit.events import Actor, AuditEvent
from dockyard.db.base import utcnow
from dockyard.db.listing import (
    Condition,
    PageRequest,
    apply_q,
    condition_clause,
    parse_q,
    parse_sort,
)
from dockyard.errors import (
    AlreadyExistsError,
    BadRequestError,
    DeniedError,
    NameInvalidError,
    NotFoundError,
    PreconditionFailedError,
    ProjectNotFoundError,
    UnauthorizedError,
)
from dockyard.iam import repository as users
from dockyard.iam import revocation
from dockyard.iam.models import User
from dockyard.iam.policy import (
    ALL_PROJECTS_SCOPE,
    ROLE_NAMES,
    Action,
    Principal,
    ProjectContext,
    Resource,
    Role,
    can,
    project_scope,
)
from dockyard.iam.providers import authproxy
from dockyard.oci.names import validate_project_name
from dockyard.projects import allowlists, schemas
from dockyard.projects import repository as repo
from dockyard.projects.models import Project, ProjectMember, ProjectMetadata
from dockyard.quota import service as quotas
from dockyard.robots import repository as robots_repo
from dockyard.system import config

# --- metadata rules ------------------------------------------------------------------------

BOOLEAN_METADATA = frozenset(
    {
        "public",
        "auto_scan",
        "prevent_vul",
        "reuse_sys_cve_allowlist",
        "enable_content_trust",
        "enable_content_trust_cosign",
        "auto_sbom_generation",
    }
)
SEVERITIES = ("none", "low", "medium", "high", "critical")
METADATA_KEYS = BOOLEAN_METADATA | {"severity"}
MISSING_FEATURE_METADATA: dict[str, str] = {}
"""Switches of features Dockyard does not have yet: "false" is accepted (tools send every
key), "true" is a 400 naming the feature. The feature's issue removes its entry."""
RETENTION_ID = "retention_id"
"""Set by the retention API; readable here, never written through project metadata."""
PROXY_SPEED = "proxy_speed_kb"
"""A proxy cache project's bandwidth to its upstream in KiB/s; -1 (or absent) is unlimited."""
PROXY_SERVE_STALE = "proxy_cache_local_on_not_found"
"""Harbor's switch, read more widely: a proxy cache project serves its cached copy when
the upstream does not have it *or fails* ("true", and Dockyard's default when unset);
"false" fails the pull as Harbor does by default."""
PROXY_METADATA_KEYS = frozenset({PROXY_SPEED, PROXY_SERVE_STALE})
"""The proxy-cache keys Dockyard stores, on proxy cache projects only."""
_PROXY_CACHE_KEYS = frozenset(
    {
        PROXY_SPEED,
        PROXY_SERVE_STALE,
        "max_upstream_conn",
        "proxy_referrer_api",
        "proxy_cache_filter_pattern",
        "proxy_cache_filter_kind",
    }
)
_UNBUILT_PROXY_KEYS: dict[str, tuple[str, ...]] = {
    "max_upstream_conn": ("-1", "0", ""),
    "proxy_referrer_api": ("false", ""),
    "proxy_cache_filter_pattern": ("",),
    "proxy_cache_filter_kind": ("",),
}
"""Harbor's proxy keys Dockyard has not built, with the values that ask for nothing (absent,
empty, unlimited, off): a proxy cache project refuses any other value, rather than
dropping a limit or filter it would not apply."""

# Harbor's ranking of roles for the deprecated ``current_user_role_id``.
_ROLE_POWER = {
    Role.PROJECT_ADMIN: 50,
    Role.MAINTAINER: 40,
    Role.DEVELOPER: 30,
    Role.GUEST: 20,
    Role.LIMITED_GUEST: 10,
}
_MAX_DB_INT = 2**63 - 1
_NOT_DELETABLE = "the project contains repositories, can not be deleted"


def validate_metadata(values: Mapping[str, str], *, proxy: bool = False) -> dict[str, str]:
    """Check keys and values against Harbor's rules; severities come back lower-case.
    ``proxy``: the project is a proxy cache, whose keys (``PROXY_METADATA_KEYS``) it takes."""
    clean: dict[str, str] = {}
    allowed = METADATA_KEYS | PROXY_METADATA_KEYS if proxy else METADATA_KEYS
    for key, value in values.items():
        if key not in allowed:
            raise BadRequestError(
                f"invalid metadata key {_show(key)}; keys: {', '.join(sorted(allowed))}"
            )
        if not isinstance(value, str):
            raise BadRequestError(f"metadata {key} must be a string")
        if key == PROXY_SPEED:
            clean[key] = _speed(value)
        elif key in BOOLEAN_METADATA or key == PROXY_SERVE_STALE:
            if value not in ("true", "false"):
                raise BadRequestError(
                    f"metadata {key} must be 'true' or 'false', not {_show(value)}"
                )
            if value == "true" and key in MISSING_FEATURE_METADATA:
                raise BadRequestError(
                    f"metadata {key} cannot be turned on: {MISSING_FEATURE_METADATA[key]} "
                    "is not supported by Dockyard yet"
                )
            clean[key] = value
        else:
            severity = value.lower()
            if severity not in SEVERITIES:
                raise BadRequestError(
                    f"metadata severity must be one of {', '.join(SEVERITIES)}, not {_show(value)}"
                )
            clean[key] = severity
    return clean


def _speed(value: str) -> str:
    """``proxy_speed_kb``: a whole number of KiB/s, -1 for unlimited (Harbor's rule)."""
    try:
        speed = int(value.strip())
    except ValueError:
        speed = -2
    if speed < -1 or speed == 0 or speed > 2**31:
        raise BadRequestError(
            f"metadata {PROXY_SPEED} must be a number of KiB/s (1 or more), or -1 for "
            f"unlimited, not {_show(value)}"
        )
    return str(speed)


def _show(value: str) -> str:
    return repr(value if len(value) <= 64 else value[:61] + "...")


def safe_text(value: str, what: str) -> str:
    """``value`` if the database can take it as text (no NUL, valid Unicode); else a 400."""
    if "\x00" in value:
        raise BadRequestError(f"{what} must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequestError(f"{what} is not valid text") from None
    return value


# --- the access check ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProjectFacts:
    """A project as the access check sees it."""

    project_id: int
    name: str
    public: bool
    creation_time: datetime


async def find_project_facts(session: AsyncSession, name: str) -> ProjectFacts | None:
    project = await repo.find_project_by_name(session, name)
    if project is None:
        return None
    return await _facts(session, project)


async def _facts(session: AsyncSession, project: Project) -> ProjectFacts:
    metadata = await repo.project_metadata(session, project.project_id)
    return ProjectFacts(
        project_id=project.project_id,
        name=project.name,
        public=metadata.get("public") == "true",
        creation_time=project.creation_time,
    )


async def project_context(
    session: AsyncSession, principal: Principal, facts: ProjectFacts
) -> ProjectContext:
    """What ``can`` needs: the roles the principal holds in the project, directly or
    through one of its groups (robots hold no roles; their grants are checked by ``can``)."""
    roles: frozenset[Role] = frozenset()
    if principal.user_id is not None and not principal.is_robot:
        found = await repo.user_roles(
            session, facts.project_id, principal.user_id, principal.group_ids
        )
        roles = _roles(found)
    return ProjectContext(
        project_id=facts.project_id, name=facts.name, public=facts.public, roles=roles
    )


def _roles(found: Collection[int]) -> frozenset[Role]:
    return frozenset(Role(r) for r in found if r in Role._value2member_map_)


def is_visible(principal: Principal, context: ProjectContext) -> bool:
    """May ``principal`` learn that the project exists? (Those who may list every project,
    such as a robot with the system ``project:list`` grant, see it in listings anyway.)"""
    if principal.sysadmin or context.public or context.roles:
        return True
    if can(principal, Action.LIST, Resource.PROJECT, None):
        return True
    if principal.is_robot:
        scopes = {project_scope(context.project_id), ALL_PROJECTS_SCOPE}
        return any(grant.scope in scopes for grant in principal.grants)
    return False


def _hidden(principal: Principal, what: str) -> Exception:
    if principal.is_anonymous:
        return UnauthorizedError("authentication required")
    return ProjectNotFoundError(f"project {what} not found")


async def find_project_ref(session: AsyncSession, name_or_id: str, by_name: bool) -> Project | None:
    """The live project ``name_or_id`` names: an id when it is all digits and ``by_name``
    is false (Harbor's rule for ``{project_name_or_id}``), else a name."""
    if not by_name and name_or_id.isascii() and name_or_id.isdigit():
        project_id = int(name_or_id)
        if project_id > _MAX_DB_INT:
            return None
        return await repo.find_project(session, project_id)
    try:
        name = validate_project_name(name_or_id)
    except NameInvalidError:
        return None
    return await repo.find_project_by_name(session, name)


async def resolve_project(
    session: AsyncSession, principal: Principal, name_or_id: str, by_name: bool = False
) -> tuple[Project, ProjectContext]:
    """The project ``name_or_id`` names and the principal's context in it, or an error that
    reveals nothing about a project the principal may not see.

    ``name_or_id`` is an id when it is all digits and ``by_name`` is false, else a name.
    Raises ``UnauthorizedError`` (401) for an anonymous caller when the project is missing
    or private, and ``ProjectNotFoundError`` (404) for a signed-in caller who is neither a
    system admin, a member (directly or through a group), nor — for robots — granted
    anything in it. Anything else is visible; check the specific permission with
    ``require``.
    """
    project = await find_project_ref(session, name_or_id, by_name)
    if project is None:
        raise _hidden(principal, name_or_id)
    context = await project_context(session, principal, await _facts(session, project))
    if not is_visible(principal, context):
        raise _hidden(principal, name_or_id)
    return project, context


def require(
    principal: Principal, action: Action, resource: Resource, context: ProjectContext | None
) -> None:
    """Raise unless ``can`` allows it: 401 for an anonymous caller, 403 for a signed-in one."""
    if can(principal, action, resource, context):
        return
    if principal.is_anonymous:
        raise UnauthorizedError("authentication required")
    where = f" in project {context.name}" if context is not None else ""
    raise DeniedError(f"{principal.name} may not {action} {resource}{where}")


# --- creation ------------------------------------------------------------------------------


async def create_project(
    session: AsyncSession,
    name: str,
    *,
    owner_id: int,
    public: bool = False,
    metadata: Mapping[str, str] | None = None,
    storage_limit: int | None = None,
) -> Project:
    """Create a project whose owner becomes its project admin.

    ``metadata`` holds further keys (already validated); ``public`` wins over its ``public``.
    ``storage_limit`` (bytes, -1 unlimited) is its quota; None takes the
    ``storage_per_project`` configuration item.
    """
    name = validate_project_name(name)
    if await repo.find_project_by_name(session, name) is not None:
        raise AlreadyExistsError(f"project {name} already exists")
    values = {**(metadata or {}), "public": str(public).lower()}
    project = Project(name=name, owner_id=owner_id)
    session.add(project)
    try:
        await session.flush()
    except IntegrityError:
        # Another request created the name between the check and the insert.
        raise AlreadyExistsError(f"project {name} already exists") from None
    session.add_all(
        ProjectMetadata(project_id=project.project_id, name=key, value=value)
        for key, value in values.items()
    )
    session.add(
        ProjectMember(
            project_id=project.project_id,
            entity_id=owner_id,
            entity_type=repo.USER_MEMBER,
            role=int(Role.PROJECT_ADMIN),
        )
    )
    await quotas.create_project_quota(session, project.project_id, storage_limit)
    await session.flush()
    return project


def _requested_metadata(
    requested: schemas.ProjectMetadata | None, *, proxy: bool = False
) -> dict[str, str]:
    """The stored keys a request sets; proxy-cache keys are ignored (as Harbor does for a
    project that is not a proxy cache, and for the proxy keys Dockyard does not have),
    and so is ``retention_id``, which Harbor's clients send back as they read it: it is
    set by ``/retentions`` only."""
    if requested is None:
        return {}
    given = requested.model_dump(exclude_none=True)
    given.pop(RETENTION_ID, None)
    for key in _PROXY_CACHE_KEYS:
        off = _UNBUILT_PROXY_KEYS.get(key)
        if proxy and off is not None and given.get(key, off[0]) not in off:
            raise BadRequestError(
                f"metadata {key} is not supported by Dockyard yet: leave it out or send {off[0]!r}"
            )
        if not (proxy and key in PROXY_METADATA_KEYS):
            given.pop(key, None)
    return validate_metadata(given, proxy=proxy)


async def create_project_for(
    session: AsyncSession,
    principal: Principal,
    req: schemas.ProjectReq,
    *,
    operator: Actor | None = None,
    proxy_endpoint: int | None = None,
) -> Project:
    """``createProject``: any signed-in user may create; a robot needs ``project:create``.

    ``proxy_endpoint``: the request's ``registry_id``, already checked by the caller (the
    proxy cache, ``proxy/service.py``); the project becomes a proxy cache of it. Only a
    system administrator may create one (Harbor's rule).

    ``storage_limit`` sets the project's quota when the caller may update quotas (an
    administrator); otherwise, or when it is 0 (as Harbor reads it), the project gets
    the ``storage_per_project`` default.
    """
    if principal.is_anonymous:
        raise UnauthorizedError("authentication required")
    system_creator = can(principal, Action.CREATE, Resource.PROJECT, None)
    if principal.is_robot and not system_creator:
        raise DeniedError(f"{principal.name} may not create projects")
    restriction = await config.value(session, config.PROJECT_CREATION_RESTRICTION)
    if restriction == "adminonly" and not system_creator:
        # Harbor's exact text: scripts match on it.
        raise DeniedError("Only system admin can create project")
    if req.project_name is None:
        raise BadRequestError("project_name is required")
    name = validate_project_name(req.project_name)
    if req.registry_id is not None and req.registry_id != proxy_endpoint:
        raise BadRequestError("registry_id must name a registry endpoint that can proxy")
    proxy = proxy_endpoint is not None
    if proxy and not system_creator:
        raise DeniedError("Only system admin can create proxy cache project")
    storage_limit = req.storage_limit
    if storage_limit is not None:
        quotas.check_limit(storage_limit, "storage_limit")
        if storage_limit == 0 or not can(principal, Action.UPDATE, Resource.QUOTA, None):
            storage_limit = None
    metadata = _requested_metadata(req.metadata, proxy=proxy)
    allowlist = allowlists.validate(req.cve_allowlist) if req.cve_allowlist else None
    public = metadata.pop("public", None)
    if public is None:
        public = "true" if req.public else "false"
    if principal.is_robot or principal.user_id is None:
        owner_id = await repo.first_admin_id(session)
        if owner_id is None:
            raise DeniedError("no system administrator exists to own the project")
    else:
        owner_id = principal.user_id
    project = await create_project(
        session,
        name,
        owner_id=owner_id,
        public=public == "true",
        metadata=metadata,
        storage_limit=storage_limit,
    )
    if proxy_endpoint is not None:
        project.registry_id = proxy_endpoint
        await session.flush()
    if allowlist is not None:
        await allowlists.store(session, project.project_id, *allowlist)
    await audit.record(
        session,
        operator or Actor(principal.name),
        AuditEvent("create", "project", project.name, project.project_id, "create project"),
    )
    return project


# --- reading -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProjectQuery:
    """``listProjects`` filters: Harbor's ``q`` and ``sort`` plus its named parameters."""

    q: str | None = None
    sort: str | None = None
    name: str | None = None
    owner: str | None = None
    public: bool | None = None
    with_detail: bool = True


_Q_COLUMNS: dict[str, ColumnElement[Any]] = {
    "name": Project.name.expression,
    "project_id": Project.project_id.expression,
    "owner_id": Project.owner_id.expression,
    "creation_time": Project.creation_time.expression,
    "update_time": Project.update_time.expression,
}
_SORT_COLUMNS: dict[str, ColumnElement[Any]] = {
    "name": Project.name.expression,
    "project_id": Project.project_id.expression,
    "creation_time": Project.creation_time.expression,
    "update_time": Project.update_time.expression,
}
_INT_KEYS = frozenset({"project_id", "owner_id"})


def _check_condition(condition: Condition) -> None:
    """Refuse what the database would choke on: fuzzy matches on non-text keys, values
    that are not text, integers beyond 64 bits."""
    for value in condition.values:
        safe_text(value, f"q value for {condition.key}")
    if condition.kind == "fuzzy" and condition.key != "name":
        raise BadRequestError(f"q key {condition.key} does not take a fuzzy match (=~)")
    if condition.key in _INT_KEYS:
        for value in condition.values:
            text = value.removeprefix("-")
            if value and not (text.isascii() and text.isdigit() and len(text) <= 18):
                raise BadRequestError(
                    f"q value {_show(value)} for {condition.key} is not an integer"
                )


def _public_condition(condition: Condition) -> ColumnElement[bool]:
    if condition.kind != "exact" or condition.values[0].lower() not in ("true", "false"):
        raise BadRequestError("q key public takes public=true or public=false")
    clause = repo.public_clause()
    return clause if condition.values[0].lower() == "true" else not_(clause)


def visible_projects(principal: Principal) -> ColumnElement[bool] | None:
    """A condition on ``Project`` for the projects the principal may list (public ones,
    those it is a member of directly or through a group, a robot's granted ones);
    None for all of them (administrators, robots granted ``/project/*``)."""
    if can(principal, Action.LIST, Resource.PROJECT, None):
        return None
    if principal.is_robot:
        scopes = {grant.scope for grant in principal.grants}
        if ALL_PROJECTS_SCOPE in scopes:
            return None
        ids = sorted(
            int(scope.rsplit("/", 1)[1])
            for scope in scopes
            if scope.startswith("/project/") and scope.rsplit("/", 1)[1].isdigit()
        )
        return or_(repo.public_clause(), Project.project_id.in_(ids))
    if principal.is_anonymous:
        return repo.public_clause()
    return or_(repo.public_clause(), repo.member_clause(principal.user_id, principal.group_ids))


async def list_projects(
    session: AsyncSession, principal: Principal, query: ProjectQuery, page: PageRequest
) -> tuple[list[schemas.Project], int]:
    """``listProjects``: anonymous callers see public projects; signed-in users also those
    where they or one of their groups is a member; robots those they are granted; admins all."""
    conditions = parse_q(query.q)
    for condition in conditions:
        _check_condition(condition)
    order = parse_sort(query.sort, _SORT_COLUMNS) or [Project.name.asc()]
    stmt = repo.project_listing()
    stmt = apply_q(stmt, [c for c in conditions if c.key != "public"], _Q_COLUMNS)
    for condition in conditions:
        if condition.key == "public":
            stmt = stmt.where(_public_condition(condition))
    if query.name:
        fuzzy = Condition("name", "fuzzy", (safe_text(query.name, "name"),))
        stmt = stmt.where(condition_clause(fuzzy, Project.name.expression))
    if query.owner:
        stmt = stmt.where(User.username == safe_text(query.owner, "owner"))
    if query.public is not None:
        clause = repo.public_clause()
        stmt = stmt.where(clause if query.public else not_(clause))
    visible = visible_projects(principal)
    if visible is not None:
        stmt = stmt.where(visible)
    rows, total = await repo.fetch_projects(session, stmt, page, order)
    ids = [project.project_id for project, _ in rows]
    metadata = await repo.metadata_of(session, ids)
    counts = await repo.repository_counts(session, ids)
    roles = await _roles_of(session, principal, ids)
    views = [
        _view(
            principal,
            project,
            owner if query.with_detail else None,
            metadata.get(project.project_id, {}),
            counts.get(project.project_id, 0),
            roles.get(project.project_id, frozenset()),
        )
        for project, owner in rows
    ]
    return views, total


async def _roles_of(
    session: AsyncSession, principal: Principal, project_ids: list[int]
) -> dict[int, frozenset[Role]]:
    if principal.is_robot or principal.user_id is None:
        return {}
    found = await repo.roles_in_projects(
        session, project_ids, principal.user_id, principal.group_ids
    )
    return {pid: _roles(roles) for pid, roles in found.items()}


def _view(
    principal: Principal,
    project: Project,
    owner_name: str | None,
    metadata: dict[str, str],
    repo_count: int,
    roles: frozenset[Role],
) -> schemas.Project:
    context = ProjectContext(
        project.project_id, project.name, metadata.get("public") == "true", roles
    )
    ranked = sorted(roles, key=lambda r: _ROLE_POWER[r], reverse=True)
    return schemas.Project(
        project_id=project.project_id,
        owner_id=project.owner_id,
        name=project.name,
        registry_id=project.registry_id,
        creation_time=project.creation_time,
        update_time=project.update_time,
        deleted=project.deleted,
        owner_name=owner_name,
        togglable=can(principal, Action.UPDATE, Resource.METADATA, context),
        current_user_role_id=int(ranked[0]) if ranked else 0,
        current_user_role_ids=sorted(int(r) for r in roles),
        repo_count=repo_count,
        metadata=metadata,
    )


async def project_view(
    session: AsyncSession, principal: Principal, project: Project, context: ProjectContext
) -> schemas.Project:
    """``getProject``: needs ``project:read``."""
    require(principal, Action.READ, Resource.PROJECT, context)
    view = _view(
        principal,
        project,
        await repo.owner_name(session, project.owner_id),
        await repo.project_metadata(session, project.project_id),
        await repo.repository_count(session, project.project_id),
        context.roles,
    )
    view.cve_allowlist = await allowlists.view(session, project.project_id)
    return view


async def project_exists(session: AsyncSession, principal: Principal, name: str) -> None:
    """``headProject``: returns when the project exists and the caller may know it; else a
    404 for everyone (the operation has no 401; a private project still stays hidden)."""
    try:
        _, context = await resolve_project(session, principal, name, by_name=True)
    except UnauthorizedError:
        raise ProjectNotFoundError(f"project {name} not found") from None
    require(principal, Action.READ, Resource.PROJECT, context)


async def project_summary(
    session: AsyncSession, principal: Principal, project: Project, context: ProjectContext
) -> schemas.ProjectSummary:
    """``getProjectSummary``: member counts only for those who may list members, the
    quota for those who may read it."""
    require(principal, Action.READ, Resource.PROJECT, context)
    summary = schemas.ProjectSummary(
        repo_count=await repo.repository_count(session, project.project_id)
    )
    if can(principal, Action.LIST, Resource.MEMBER, context):
        counts = await repo.member_counts_by_role(session, project.project_id)
        summary.project_admin_count = counts.get(Role.PROJECT_ADMIN, 0)
        summary.maintainer_count = counts.get(Role.MAINTAINER, 0)
        summary.developer_count = counts.get(Role.DEVELOPER, 0)
        summary.guest_count = counts.get(Role.GUEST, 0)
        summary.limited_guest_count = counts.get(Role.LIMITED_GUEST, 0)
    if quotas.may_read_project_quota(principal, context):
        hard, used = await quotas.project_storage(session, project.project_id)
        summary.quota = schemas.ProjectSummaryQuota(
            hard={quotas.STORAGE: hard}, used={quotas.STORAGE: used}
        )
    return summary


# --- changes -------------------------------------------------------------------------------


async def update_project(
    session: AsyncSession,
    principal: Principal,
    project: Project,
    context: ProjectContext,
    req: schemas.ProjectReq,
    *,
    operator: Actor,
) -> None:
    """``updateProject``: its metadata (the name, registry and storage limit do not change)."""
    require(principal, Action.UPDATE, Resource.PROJECT, context)
    metadata = _requested_metadata(req.metadata, proxy=bool(project.registry_id))
    allowlist = allowlists.validate(req.cve_allowlist) if req.cve_allowlist else None
    await repo.set_metadata(session, project.project_id, metadata)
    if allowlist is not None:
        await allowlists.store(session, project.project_id, *allowlist)
    await revocation.bump(session)  # tokens from before this change stop working
    project.update_time = utcnow()
    await session.flush()
    await _record_project_update(session, operator, project, "update", metadata)


async def project_deletable(
    session: AsyncSession, principal: Principal, project: Project, context: ProjectContext
) -> schemas.ProjectDeletable:
    """``getProjectDeletable``: asked with the same permission as the deletion."""
    require(principal, Action.DELETE, Resource.PROJECT, context)
    if await repo.repository_count(session, project.project_id):
        return schemas.ProjectDeletable(deletable=False, message=_NOT_DELETABLE)
    return schemas.ProjectDeletable(deletable=True)


async def delete_project(
    session: AsyncSession,
    principal: Principal,
    project: Project,
    context: ProjectContext,
    *,
    operator: Actor,
) -> None:
    """``deleteProject``: refused (412) while the project holds repositories.

    The row is kept, marked deleted and renamed ``name#id`` so the name can be used
    again; its members and metadata go. The row is locked first so a push that
    creates a repository in the meantime either finishes before the count or waits.
    """
    require(principal, Action.DELETE, Resource.PROJECT, context)
    locked = await repo.find_project(session, project.project_id, for_update=True)
    if locked is None:
        raise ProjectNotFoundError(f"project {project.name} not found")
    if await repo.repository_count(session, locked.project_id):
        raise PreconditionFailedError(_NOT_DELETABLE)
    name, project_id = locked.name, locked.project_id
    await repo.soft_delete_project(session, locked)
    # Its members and robots go: tokens from before stop working, and a decision a node
    # remembered for this name must not carry over to a project created under it again.
    await revocation.bump(session)
    await audit.record(
        session, operator, AuditEvent("delete", "project", name, project_id, "delete project")
    )
    # Harbor deletes a project's robots with it (they could not log in anyway).
    await robots_repo.delete_robots_of_project(session, locked.project_id)


# --- metadata ------------------------------------------------------------------------------


async def list_metadata(
    session: AsyncSession, principal: Principal, project: Project, context: ProjectContext
) -> dict[str, str]:
    """``listProjectMetadatas``: ``metadata:list`` (robots) or ``metadata:read`` (roles)."""
    if not can(principal, Action.LIST, Resource.METADATA, context):
        require(principal, Action.READ, Resource.METADATA, context)
    return await repo.project_metadata(session, project.project_id)


async def add_metadata(
    session: AsyncSession,
    principal: Principal,
    project: Project,
    context: ProjectContext,
    values: Mapping[str, str],
    *,
    operator: Actor,
) -> None:
    """``addProjectMetadatas``: new keys only; a key already set is a 409."""
    require(principal, Action.CREATE, Resource.METADATA, context)
    if not values:
        raise BadRequestError("give at least one metadata key and value")
    clean = validate_metadata(values, proxy=bool(project.registry_id))
    existing = await repo.project_metadata(session, project.project_id)
    taken = sorted(set(clean) & set(existing))
    if taken:
        raise AlreadyExistsError(f"metadata {', '.join(taken)} already set; update it instead")
    try:
        await repo.set_metadata(session, project.project_id, clean)
    except IntegrityError:
        raise AlreadyExistsError("metadata already set; update it instead") from None
    await _record_project_update(session, operator, project, "add", clean)


async def get_metadata(
    session: AsyncSession,
    principal: Principal,
    project: Project,
    context: ProjectContext,
    name: str,
) -> dict[str, str]:
    require(principal, Action.READ, Resource.METADATA, context)
    value = (await repo.project_metadata(session, project.project_id)).get(name)
    known = METADATA_KEYS | PROXY_METADATA_KEYS | {RETENTION_ID}
    if name not in known or value is None:
        raise NotFoundError(f"metadata {_show(name)} is not set")
    return {name: value}


async def update_metadata(
    session: AsyncSession,
    principal: Principal,
    project: Project,
    context: ProjectContext,
    name: str,
    body: Mapping[str, str],
    *,
    operator: Actor,
) -> None:
    """``updateProjectMetadata``: the body carries ``{name: value}``; sets it (new or not)."""
    require(principal, Action.UPDATE, Resource.METADATA, context)
    if name not in body:
        raise BadRequestError(f"the body must carry the value of {_show(name)}")
    clean = validate_metadata({name: body[name]}, proxy=bool(project.registry_id))
    await repo.set_metadata(session, project.project_id, clean)
    await revocation.bump(session)  # tokens from before this change stop working
    await _record_project_update(session, operator, project, "update", clean)


async def delete_metadata(
    session: AsyncSession,
    principal: Principal,
    project: Project,
    context: ProjectContext,
    name: str,
    *,
    operator: Actor,
) -> None:
    require(principal, Action.DELETE, Resource.METADATA, context)
    if name not in METADATA_KEYS | PROXY_METADATA_KEYS or not await repo.delete_metadata(
        session, project.project_id, name
    ):
        raise NotFoundError(f"metadata {_show(name)} is not set")
    await revocation.bump(session)  # tokens from before this change stop working
    await audit.record(
        session,
        operator,
        AuditEvent(
            "update", "project", project.name, project.project_id, f"delete metadata {name}"
        ),
    )


async def _record_project_update(
    session: AsyncSession,
    operator: Actor,
    project: Project,
    verb: str,
    values: Mapping[str, str],
) -> None:
    """One ``update project`` event naming the metadata set (values are not secrets)."""
    changed = ", ".join(f"{k}={v}" for k, v in sorted(values.items()))
    description = f"{verb} metadata {changed}" if changed else "update project"
    await audit.record(
        session,
        operator,
        AuditEvent("update", "project", project.name, project.project_id, description),
    )


# --- members -------------------------------------------------------------------------------


def _member_entity(member: ProjectMember, entity_name: str) -> schemas.ProjectMemberEntity:
    role = Role(member.role) if member.role in Role._value2member_map_ else None
    return schemas.ProjectMemberEntity(
        id=member.id,
        project_id=member.project_id,
        entity_name=entity_name,
        role_name=ROLE_NAMES[role] if role is not None else "",
        role_id=member.role,
        entity_id=member.entity_id,
        entity_type=member.entity_type,
    )


def _role(role_id: int | None) -> Role:
    if role_id is None:
        raise BadRequestError("role_id is required")
    if role_id not in Role._value2member_map_:
        raise BadRequestError(
            f"invalid role_id {role_id}: must be a project role (1 project admin, "
            "2 developer, 3 guest, 4 maintainer, 5 limited guest)"
        )
    return Role(role_id)


async def list_members(
    session: AsyncSession,
    principal: Principal,
    project: Project,
    context: ProjectContext,
    entity_name: str | None,
    page: PageRequest,
) -> tuple[list[schemas.ProjectMemberEntity], int]:
    """``listProjectMembers``, by entity name (exact, as Harbor) and paged."""
    require(principal, Action.LIST, Resource.MEMBER, context)
    if entity_name:
        safe_text(entity_name, "entityname")
    rows, total = await repo.list_members(session, project.project_id, entity_name, page)
    return [_member_entity(member, name) for member, name in rows], total


async def get_member(
    session: AsyncSession,
    principal: Principal,
    project: Project,
    context: ProjectContext,
    member_id: int,
) -> schemas.ProjectMemberEntity:
    require(principal, Action.READ, Resource.MEMBER, context)
    found = await repo.find_member(session, project.project_id, member_id)
    if found is None:
        raise NotFoundError(f"member {member_id} not found in project {project.name}")
    return _member_entity(*found)


async def _member_target(session: AsyncSession, req: schemas.ProjectMember) -> tuple[str, int]:
    """The (entity_type, entity_id) a member request names.

    Any unknown user or group is a 400: ``createProjectMember`` declares no 404, and
    Harbor answers 400 for an unknown ``user_id`` or group ``id``.
    """
    user = req.member_user
    group = req.member_group
    wants_user = user is not None and bool(user.user_id or user.username)
    wants_group = group is not None and bool(group.id or group.group_name or group.ldap_group_dn)
    if wants_user and wants_group:
        raise BadRequestError("give either member_user or member_group, not both")
    if user is not None and wants_user:
        if user.user_id:
            if await repo.find_live_user(session, user.user_id) is None:
                raise BadRequestError(f"user {user.user_id} not found")
            return repo.USER_MEMBER, user.user_id
        username = safe_text(user.username or "", "member_user.username")
        found = await users.find_user_by_name(session, username)
        if found is not None:
            return repo.USER_MEMBER, found.user_id
        onboarded = await authproxy.onboard_unsearched_user(session, username)
        if onboarded is None:
            raise BadRequestError(f"user {_show(username)} not found")
        return repo.USER_MEMBER, onboarded
    if group is not None and wants_group:
        if group.id:
            if await repo.find_group(session, group.id) is None:
                raise BadRequestError(f"group {group.id} not found")
            return repo.GROUP_MEMBER, group.id
        if group.ldap_group_dn:
            dn = safe_text(group.ldap_group_dn.strip(), "member_group.ldap_group_dn")
            found_group = await repo.find_group_by(session, ldap_dn=dn, group_type=1)
            what = f"LDAP group {_show(dn)}"
        else:
            name = safe_text(group.group_name or "", "member_group.group_name")
            found_group = await repo.find_group_by(session, name=name, group_type=group.group_type)
            what = f"group {_show(name)}"
            if found_group is None and group.group_type in (None, 0, authproxy.GROUP_TYPE):
                onboarded = await authproxy.onboard_unsearched_group(session, name)
                if onboarded is not None:
                    return repo.GROUP_MEMBER, onboarded
        if found_group is None:
            raise BadRequestError(f"{what} not found")
        return repo.GROUP_MEMBER, found_group.id
    raise BadRequestError("at least one of member_user or member_group must be provided")


async def add_member(
    session: AsyncSession,
    principal: Principal,
    project: Project,
    context: ProjectContext,
    req: schemas.ProjectMember,
    *,
    operator: Actor,
) -> int:
    """``createProjectMember``: returns the new member's id; a second membership is a 409."""
    require(principal, Action.CREATE, Resource.MEMBER, context)
    role = _role(req.role_id)
    entity_type, entity_id = await _member_target(session, req)
    if await repo.find_member_of_entity(session, project.project_id, entity_type, entity_id):
        raise AlreadyExistsError("the project member specified already exists")
    member = ProjectMember(
        project_id=project.project_id,
        entity_id=entity_id,
        entity_type=entity_type,
        role=int(role),
    )
    session.add(member)
    try:
        await session.flush()
    except IntegrityError:
        raise AlreadyExistsError("the project member specified already exists") from None
    found = await repo.find_member(session, project.project_id, member.id)
    await _record_member(session, operator, project, "create", found, f"add as {ROLE_NAMES[role]}")
    return member.id


async def update_member(
    session: AsyncSession,
    principal: Principal,
    project: Project,
    context: ProjectContext,
    member_id: int,
    role_id: int | None,
    *,
    operator: Actor,
) -> None:
    """``updateProjectMember``: a new role. As Harbor, any holder of ``member:update`` may
    change any membership, their own included."""
    require(principal, Action.UPDATE, Resource.MEMBER, context)
    role = _role(role_id)
    found = await repo.find_member(session, project.project_id, member_id)
    if found is None:
        raise NotFoundError(f"member {member_id} not found in project {project.name}")
    member, _ = found
    member.role = int(role)
    member.update_time = utcnow()
    await session.flush()
    await revocation.bump(session)  # tokens from before this change stop working
    await _record_member(session, operator, project, "update", found, f"role {ROLE_NAMES[role]}")


async def delete_member(
    session: AsyncSession,
    principal: Principal,
    project: Project,
    context: ProjectContext,
    member_id: int,
    *,
    operator: Actor,
) -> None:
    require(principal, Action.DELETE, Resource.MEMBER, context)
    found = await repo.find_member(session, project.project_id, member_id)
    if found is None:
        raise NotFoundError(f"member {member_id} not found in project {project.name}")
    await session.delete(found[0])
    await session.flush()
    await revocation.bump(session)  # tokens from before this change stop working
    await _record_member(session, operator, project, "delete", found, "remove member")


async def _record_member(
    session: AsyncSession,
    operator: Actor,
    project: Project,
    operation: str,
    found: tuple[ProjectMember, str] | None,
    description: str,
) -> None:
    """One member event; the resource is ``project/entity`` (a user or group name)."""
    entity = found[1] if found is not None else "?"
    kind = "group" if found is not None and found[0].entity_type == repo.GROUP_MEMBER else "user"
    await audit.record(
        session,
        operator,
        AuditEvent(
            operation,
            "member",
            f"{project.name}/{entity}",
            project.project_id,
            f"{description} ({kind})",
        ),
    )
