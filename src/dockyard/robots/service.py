"""Robot accounts: creation, secrets, permissions, and how a robot logs in.

Every operation takes the acting principal and asks ``can`` before it acts:
system robots are managed with the system ``robot`` permission (administrators),
project robots with the ``robot`` permission of their project (project admins).
A robot is never granted more than the principal creating or updating it holds.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from anyio import to_thread
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from dockyard.audit import service as audit
from dockyard.audit.events import Actor, AuditEvent
from dockyard.db.base import utcnow
from dockyard.db.listing import Condition, PageRequest, condition_clause, parse_q, parse_sort
from dockyard.errors import (
    AlreadyExistsError,
    BadRequestError,
    DeniedError,
    NotFoundError,
    UnauthorizedError,
)
from dockyard.iam import revocation
from dockyard.iam.accounts import AccountLogin
from dockyard.iam.passwords import hash_password, verify_password
from dockyard.iam.policy import (
    ALL_PROJECTS_SCOPE,
    ROBOT_PROJECT_PERMISSIONS,
    ROBOT_SYSTEM_PERMISSIONS,
    SYSTEM_SCOPE,
    Action,
    Principal,
    ProjectContext,
    Resource,
    RobotGrant,
    Role,
    can,
    project_scope,
)
from dockyard.projects import repository as projects_repo
from dockyard.projects import service as projects
from dockyard.robots import repository as repo
from dockyard.robots import schemas
from dockyard.robots.models import Robot, RobotPermission
from dockyard.robots.permissions import (
    ALL_PROJECTS,
    Level,
    Requested,
    check_duration,
    check_level,
    check_robot_name,
    check_secret,
    expires_at,
    generate_secret,
    grantable,
    is_expired,
    parse_permissions,
    shown_permissions,
    stored_name,
)
from dockyard.system import config

# No project has id 0: a context that only a sysadmin, or a robot granted ``/project/*``,
# passes; it stands for "every project" when a robot is to be granted ``*``.
_EVERY_PROJECT = ProjectContext(project_id=0, name=ALL_PROJECTS, public=False)
_Q_KEYS = "Level, ProjectID, name"


@dataclass(frozen=True, slots=True)
class NewSecret:
    """A secret to hand out once, and the hash that is stored."""

    secret: str
    hashed: str


@dataclass(frozen=True, slots=True)
class CreatedRobot:
    robot: Robot
    full_name: str


# --- login -------------------------------------------------------------------------------


async def find_robot_login(
    session: AsyncSession, name: str, prefix: str, default_prefix: str
) -> AccountLogin | None:
    """The robot called ``prefix + name`` as a login sees it, or None.

    Only a robot created with ``prefix`` is found (``default_prefix``, the start-time
    setting, is the prefix of robots with none stored): a robot keeps its full name
    when the prefix changes, and is found by it alone, as Harbor finds robots.
    A disabled or expired robot is found (so a wrong secret still looks like a
    wrong secret) but carries a refusal.
    """
    robot = await repo.find_login_robot(session, name, prefix, default_prefix)
    if robot is None:
        return None
    rows = await repo.permission_rows(session, robot.id)
    principal = robot_principal(robot, rows, default_prefix)
    refusal = None
    if robot.disabled:
        refusal = f"robot account {principal.name} is disabled"
    elif is_expired(robot.expires_at, time.time()):
        refusal = f"robot account {principal.name} has expired"
    return AccountLogin(principal, robot.secret, _verify_secret, refusal)


async def permission_catalogue(
    session: AsyncSession, principal: Principal
) -> dict[str, list[tuple[str, str]]]:
    """``getPermissions``: what robots may be granted, for those who may create them.

    System administrators see both catalogues; a project admin (anywhere) sees
    the project catalogue; everyone else is refused.
    """

    def rows(table: dict[Resource, frozenset[Action]]) -> list[tuple[str, str]]:
        return sorted((str(r), str(a)) for r, actions in grantable(table).items() for a in actions)

    if principal.sysadmin:
        return {
            "system": rows(ROBOT_SYSTEM_PERMISSIONS),
            "project": rows(ROBOT_PROJECT_PERMISSIONS),
        }
    if principal.is_anonymous:
        raise UnauthorizedError("authentication required")
    if principal.is_robot or not await projects_repo.holds_role_anywhere(
        session, principal.user_id, principal.group_ids, int(Role.PROJECT_ADMIN)
    ):
        raise DeniedError("only system and project administrators see the robot permissions")
    return {"project": rows(ROBOT_PROJECT_PERMISSIONS)}


def full_name(robot: Robot, default_prefix: str) -> str:
    """The robot's name with the prefix it was created with (``default_prefix``, the
    start-time setting, for robots made before the prefix was stored)."""
    return (robot.name_prefix or default_prefix) + robot.name


async def current_prefix(session: AsyncSession, default_prefix: str) -> str:
    """What a robot created now is prefixed with: the run-time ``robot_name_prefix``
    an administrator set, else the start-time setting ``default_prefix``."""
    changed = await config.run_time_value(session, config.ROBOT_NAME_PREFIX)
    return changed if isinstance(changed, str) and changed else default_prefix


async def known_prefixes(session: AsyncSession, default_prefix: str) -> set[str]:
    """Every prefix a robot may log in with: the start-time and current ones and
    each one a robot was created with."""
    found = await repo.name_prefixes(session)
    found.add(default_prefix)
    found.add(await current_prefix(session, default_prefix))
    return found


def robot_principal(robot: Robot, rows: Iterable[RobotPermission], prefix: str) -> Principal:
    grants = set()
    for row in rows:
        if row.resource in Resource._value2member_map_ and row.action in Action._value2member_map_:
            grants.add(RobotGrant(row.scope, Resource(row.resource), Action(row.action)))
    return Principal(
        kind="robot",
        name=full_name(robot, prefix),
        robot_id=robot.id,
        grants=frozenset(grants),
        valid_until=None if robot.expires_at in (None, -1) else float(robot.expires_at),
    )


def _verify_secret(stored_hash: str, offered: str) -> bool:
    return verify_password(stored_hash or None, offered)


# --- secrets -----------------------------------------------------------------------------


async def new_secret(given: str | None) -> NewSecret:
    """``given`` (if it meets Harbor's policy) or a generated secret, with its hash.

    The slow hash runs in a worker thread and outside any transaction.
    """
    secret = check_secret(given) if given else generate_secret()
    hashed = await to_thread.run_sync(hash_password, secret)
    return NewSecret(secret, hashed)


# --- create ------------------------------------------------------------------------------


async def create_robot(
    session: AsyncSession,
    creator: Principal,
    body: schemas.RobotCreate,
    secret: NewSecret,
    prefix: str,
    *,
    operator: Actor,
) -> CreatedRobot:
    """Create a robot from ``RobotCreate``; nothing is written unless every check passes.

    ``prefix`` is the start-time ``robot_name_prefix``; the robot is named with the
    current run-time one (``current_prefix``) and keeps it."""
    default_prefix = prefix
    prefix = await current_prefix(session, default_prefix)
    level = check_level(body.level)
    name = check_robot_name(body.name)
    default_days = await config.value(session, config.ROBOT_TOKEN_DURATION)
    duration = check_duration(body.duration, int(default_days))
    requested = parse_permissions(level, body.permissions)
    project = await _robot_project(session, creator, level, requested, Action.CREATE)
    rows = await _granted_rows(session, creator, requested)
    full = stored_name(level, name, project.name if project else None)
    project_id = project.project_id if project else 0
    if await repo.robot_name_taken(session, full, project_id):
        raise AlreadyExistsError(f"robot {prefix}{full} already exists")
    creator_type, creator_ref = _creator(creator)
    now = utcnow()
    robot = Robot(
        name=full,
        name_prefix=prefix,
        description=body.description or "",
        level=level,
        project_id=project_id,
        secret=secret.hashed,
        duration=duration,
        expires_at=expires_at(int(now.timestamp()), duration),
        disabled=bool(body.disable),
        visible=True,
        creator_type=creator_type,
        creator_ref=creator_ref,
        secret_version=1,
        creation_time=now,
        update_time=now,
    )
    session.add(robot)
    try:
        await session.flush()
    except IntegrityError:
        raise AlreadyExistsError(f"robot {prefix}{full} already exists") from None
    for row in rows:
        row.robot_id = robot.id
    await repo.replace_permissions(session, robot.id, rows)
    await _record(session, operator, "create", robot, prefix, f"create {level} robot")
    return CreatedRobot(robot, full_name(robot, default_prefix))


def _creator(principal: Principal) -> tuple[str, int]:
    if principal.is_robot and principal.robot_id is not None:
        return "robot", principal.robot_id
    return "local", principal.user_id or 0


async def _robot_project(
    session: AsyncSession,
    actor: Principal,
    level: Level,
    requested: Sequence[Requested],
    action: Action,
) -> ProjectContext | None:
    """The project of a project robot (None for a system robot), once ``actor`` is known
    to be allowed ``action`` on robots there."""
    if level == "system":
        if not can(actor, action, Resource.ROBOT, None):
            raise DeniedError(f"{actor.name} may not {action.value} system robot accounts")
        return None
    context = await _project_by_name(session, actor, requested[0].namespace)
    if not can(actor, action, Resource.ROBOT, context):
        raise DeniedError(
            f"{actor.name} may not {action.value} robot accounts of project {context.name}"
        )
    return context


async def _project_by_name(session: AsyncSession, actor: Principal, name: str) -> ProjectContext:
    """``actor``'s context in project ``name``; 404 for a project ``actor`` may not see."""
    _, context = await projects.resolve_project(session, actor, name, by_name=True)
    return context


async def _granted_rows(
    session: AsyncSession, actor: Principal, requested: Sequence[Requested]
) -> list[RobotPermission]:
    """Permission rows for ``requested``, each one checked to be held by ``actor``."""
    contexts: dict[str, ProjectContext] = {}
    rows = []
    for grant in requested:
        context: ProjectContext | None
        if grant.kind == "system":
            context, scope, where = None, SYSTEM_SCOPE, "the system"
        elif grant.namespace == ALL_PROJECTS:
            context, scope, where = _EVERY_PROJECT, ALL_PROJECTS_SCOPE, "every project"
        else:
            if grant.namespace not in contexts:
                contexts[grant.namespace] = await _project_by_name(session, actor, grant.namespace)
            context = contexts[grant.namespace]
            scope, where = project_scope(context.project_id), f"project {context.name}"
        if not can(actor, grant.action, grant.resource, context):
            raise DeniedError(
                f"{actor.name} may not grant {grant.resource.value}:{grant.action.value} "
                f"in {where}: a robot cannot be given more than its creator holds"
            )
        rows.append(
            RobotPermission(
                kind=grant.kind,
                namespace=grant.namespace,
                scope=scope,
                resource=grant.resource.value,
                action=grant.action.value,
                effect="allow",
            )
        )
    return rows


# --- read --------------------------------------------------------------------------------


async def get_robot(
    session: AsyncSession, actor: Principal, robot_id: int, prefix: str
) -> schemas.Robot:
    robot = await _robot_for(session, actor, robot_id, Action.READ)
    return robot_view(robot, await repo.permission_rows(session, robot.id), prefix)


async def list_robots(
    session: AsyncSession,
    actor: Principal,
    *,
    q: str | None,
    sort: str | None,
    page: PageRequest,
    prefix: str,
) -> tuple[list[schemas.Robot], int]:
    """Harbor's ``ListRobot``: ``q`` keys ``Level``, ``ProjectID`` and ``name``.

    With ``ProjectID`` the caller needs ``robot:list`` in that project and sees
    its project robots; without it, the system ``robot:list`` permission
    (administrators), and sees every robot (``Level=system``: system robots).
    """
    level, project_id, names = _robot_filters(parse_q(q))
    order = parse_sort(sort, repo.SORT_COLUMNS)
    stmt = repo.robots_query()
    if project_id is not None:
        _, context = await projects.resolve_project(session, actor, str(project_id))
        if not can(actor, Action.LIST, Resource.ROBOT, context):
            raise DeniedError(f"{actor.name} may not list robot accounts of project {project_id}")
        stmt = stmt.where(Robot.project_id == project_id)
    elif not can(actor, Action.LIST, Resource.ROBOT, None):
        raise DeniedError(f"{actor.name} may not list system robot accounts; give q=ProjectID=…")
    if level is not None:
        stmt = stmt.where(Robot.level == level)
    prefixes = {prefix, await current_prefix(session, prefix)} if names else set()
    for condition in names:
        stmt = stmt.where(condition_clause(_unprefixed(condition, prefixes), repo.NAME_COLUMN))
    robots, total = await repo.fetch_robots(session, stmt, page, order)
    permissions = await repo.permission_rows_of(session, [r.id for r in robots])
    return [robot_view(r, permissions[r.id], prefix) for r in robots], total


def _robot_filters(conditions: list[Condition]) -> tuple[Level | None, int | None, list[Condition]]:
    level: Level | None = None
    project_id: int | None = None
    names = []
    for condition in conditions:
        key = condition.key
        if key in ("Level", "level"):
            level = check_level(_exact(condition))
        elif key in ("ProjectID", "project_id"):
            raw = _exact(condition)
            if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
                raise BadRequestError("q value for ProjectID must be a project id")
            project_id = int(raw)
        elif key == "name":
            if condition.kind not in ("exact", "fuzzy"):
                raise BadRequestError("q can match name exactly (name=x) or fuzzily (name=~x)")
            names.append(condition)
        else:
            raise BadRequestError(f"q cannot filter robots on {key!r}; keys: {_Q_KEYS}")
    if level == "project" and project_id is None:
        raise BadRequestError("listing project robots needs q=Level=project,ProjectID=<id>")
    return level, project_id, names


def _exact(condition: Condition) -> str:
    if condition.kind != "exact":
        raise BadRequestError(f"q can only match {condition.key} exactly ({condition.key}=value)")
    return condition.values[0]


def _unprefixed(condition: Condition, prefixes: Iterable[str]) -> Condition:
    """A name condition on the stored name: ``robot$`` (the start-time or current
    prefix, the longest that matches) is not part of it."""
    value = condition.values[0]
    for prefix in sorted(prefixes, key=len, reverse=True):
        if value.startswith(prefix):
            return Condition(condition.key, condition.kind, (value[len(prefix) :],))
    return condition


def robot_view(robot: Robot, rows: Iterable[RobotPermission], prefix: str) -> schemas.Robot:
    """A robot as Harbor's ``Robot`` definition shows it; never with its secret."""
    return schemas.Robot(
        id=robot.id,
        name=full_name(robot, prefix),
        description=robot.description,
        level=robot.level,
        duration=robot.duration,
        editable=True,
        disable=robot.disabled,
        expires_at=robot.expires_at,
        permissions=shown_permissions(
            (r.kind, r.namespace, r.resource, r.action, r.effect) for r in rows
        ),
        creator_type=robot.creator_type,
        creator_ref=robot.creator_ref,
        creation_time=robot.creation_time,
        update_time=robot.update_time,
    )


# --- change ------------------------------------------------------------------------------


async def update_robot(
    session: AsyncSession,
    actor: Principal,
    robot_id: int,
    body: schemas.Robot,
    prefix: str,
    *,
    operator: Actor,
) -> None:
    """Harbor's ``UpdateRobot``: description, duration, disable and permissions.

    The level and the name cannot change. Fields left out keep their values.
    """
    robot = await _robot_for(session, actor, robot_id, Action.UPDATE)
    if body.level is not None and body.level != robot.level:
        raise BadRequestError("the level of a robot cannot change")
    if body.name is not None and body.name not in _names_of(robot, prefix):
        raise BadRequestError("the name of a robot cannot change")
    if body.permissions is not None:
        level = check_level(robot.level)
        requested = parse_permissions(level, body.permissions)
        if level == "project":
            own = await repo.find_project_name(session, robot.project_id)
            if requested[0].namespace != own:
                raise BadRequestError(
                    f"a project robot's permission must be for its own project {own}"
                )
        rows = await _granted_rows(session, actor, requested)
        for row in rows:
            row.robot_id = robot.id
        await repo.replace_permissions(session, robot.id, rows)
    if body.duration is not None:
        default_days = await config.value(session, config.ROBOT_TOKEN_DURATION)
        robot.duration = check_duration(body.duration, int(default_days))
        robot.expires_at = expires_at(int(robot.creation_time.timestamp()), robot.duration)
    if body.description is not None:
        robot.description = body.description
    if body.disable is not None:
        robot.disabled = body.disable
    robot.update_time = utcnow()
    await session.flush()
    await revocation.bump(session)  # tokens from before this change stop working
    await _record(session, operator, "update", robot, prefix, "update robot")


def _names_of(robot: Robot, prefix: str) -> set[str]:
    """The spellings of a robot's name an update may echo back."""
    return {full_name(robot, prefix), robot.name, robot.name.rpartition("+")[2]}


async def refresh_secret(
    session: AsyncSession,
    actor: Principal,
    robot_id: int,
    secret: NewSecret,
    *,
    operator: Actor,
    prefix: str,
) -> None:
    """Harbor's ``RefreshSec``: the new secret works at once, the old one no more."""
    robot = await _robot_for(session, actor, robot_id, Action.UPDATE)
    robot.secret = secret.hashed
    robot.secret_version += 1
    robot.update_time = utcnow()
    await session.flush()
    await revocation.bump(session)  # tokens from before this change stop working
    await _record(session, operator, "update", robot, prefix, "refresh secret")


async def delete_robot(
    session: AsyncSession, actor: Principal, robot_id: int, *, operator: Actor, prefix: str
) -> None:
    robot = await _robot_for(session, actor, robot_id, Action.DELETE)
    await _record(session, operator, "delete", robot, prefix, "delete robot")
    await repo.delete_robot(session, robot)
    await revocation.bump(session)  # tokens from before this change stop working


async def _record(
    session: AsyncSession,
    operator: Actor,
    operation: str,
    robot: Robot,
    prefix: str,
    description: str,
) -> None:
    """One robot event, by the robot's full name (never its secret)."""
    await audit.record(
        session,
        operator,
        AuditEvent(operation, "robot", full_name(robot, prefix), robot.project_id, description),
    )


# --- access ------------------------------------------------------------------------------


async def _robot_for(
    session: AsyncSession, actor: Principal, robot_id: int, action: Action
) -> Robot:
    """The visible robot ``robot_id``, once ``actor`` may do ``action`` on it.

    A robot of a project ``actor`` cannot see, or a system robot ``actor`` may not
    read, answers as a missing one does (404), so that ids cannot be probed; 403 is
    for a member of the robot's project who lacks the permission (as for labels
    and retention policies).
    """
    robot = await repo.find_robot(session, robot_id)
    missing = NotFoundError(f"robot {robot_id} not found")
    if robot is None or not robot.visible:
        raise missing
    if robot.level == "system":
        context = None
        if not can(actor, Action.READ, Resource.ROBOT, None):
            raise missing
    else:
        context = await _robot_project_context(session, actor, robot.project_id)
        if not can(actor, Action.READ, Resource.PROJECT, context):
            raise missing
    if not can(actor, action, Resource.ROBOT, context):
        raise DeniedError(f"{actor.name} may not {action.value} robot {robot_id}")
    return robot


async def _robot_project_context(
    session: AsyncSession, actor: Principal, project_id: int
) -> ProjectContext:
    """``actor``'s context in a project robot's project (whether or not ``actor`` may see
    the project: the robot is what is asked for); a project that is gone gives no roles."""
    name = await repo.find_project_name(session, project_id)
    facts = None if name is None else await projects.find_project_facts(session, name)
    if facts is None:
        return ProjectContext(project_id=project_id, name="", public=False)
    return await projects.project_context(session, actor, facts)
