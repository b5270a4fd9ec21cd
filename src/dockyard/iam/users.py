"""Users and user groups as Harbor manages them, and what the current user may do.

Harbor's rules, enforced here for every caller: user names of 1-255 characters
without ``,~#$%``; a valid e-mail; a real name of 1-255 characters; comments
of at most 30; passwords of 8-128 characters with an upper-case letter, a
lower-case letter and a digit. Deleting a user is a soft delete that renames
the row (``name#id``) so the name and e-mail can be used again.

Who may call each operation is the handler's question (``policy.can``); the
rules that depend on who acts on whom (nobody deletes themselves or the
built-in admin, nobody changes their own administrator flag) live here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from dockyard.audit import service as audit
from dockyard.audit.events import Actor, AuditEvent
from dockyard.db.listing import Condition, PageRequest
from dockyard.errors import (
    AlreadyExistsError,
    BadRequestError,
    DeniedError,
    NotFoundError,
)
from dockyard.iam import repository as repo
from dockyard.iam import revocation
from dockyard.iam.groupsync import canonical_dn, dn_key
from dockyard.iam.models import GroupType, User, UserGroup, UserGroupMembership
from dockyard.iam.passwords import hash_password, verify_password
from dockyard.iam.policy import (
    ROBOT_SYSTEM_PERMISSIONS,
    ROLE_PERMISSIONS,
    SYSTEM_SCOPE,
    Action,
    Principal,
    Resource,
    can,
)
from dockyard.iam.providers.ldap import DirectoryGroup
from dockyard.projects import service as projects
from dockyard.system import config

BUILTIN_ADMIN_ID = 1
BUILTIN_ADMIN_NAME = "admin"

MAX_NAME_LENGTH = 255
MAX_COMMENT_LENGTH = 30
MAX_LDAP_DN_LENGTH = 512
MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 128
_ILLEGAL_NAME_CHARACTERS = frozenset(",~#$%")
# local@domain: no spaces, quotes or brackets in the local part; a dotted
# domain whose last label is alphabetic.
_EMAIL = re.compile(
    r"[^\s<>()\[\]\\.,;:@\"]+(?:\.[^\s<>()\[\]\\.,;:@\"]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z]{2,}"
)


# --- input rules (pure) -----------------------------------------------------------------


def check_text(value: str, field: str, *, max_length: int) -> str:
    """Refuse control characters and overlong values in any stored or looked-up text."""
    if len(value) > max_length:
        raise BadRequestError(f"{field} is longer than {max_length} characters")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise BadRequestError(f"{field} contains control characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequestError(f"{field} is not valid text") from None
    return value


def validate_username(name: str | None, robot_prefix: str) -> str:
    if not name:
        raise BadRequestError("username is required")
    check_text(name, "username", max_length=MAX_NAME_LENGTH)
    if name != name.strip():
        raise BadRequestError("username must not begin or end with white space")
    if any(c in _ILLEGAL_NAME_CHARACTERS for c in name):
        raise BadRequestError("username must not contain any of , ~ # $ %")
    if name.startswith(robot_prefix):
        raise BadRequestError(f"username must not begin with the robot prefix {robot_prefix}")
    return name


def validate_email(email: str | None) -> str:
    if not email:
        raise BadRequestError("email is required")
    check_text(email, "email", max_length=MAX_NAME_LENGTH)
    if _EMAIL.fullmatch(email) is None:
        raise BadRequestError("email is not a valid e-mail address")
    return email


def validate_realname(realname: str | None) -> str:
    if not realname:
        raise BadRequestError("realname is required")
    check_text(realname, "realname", max_length=MAX_NAME_LENGTH)
    if any(c in _ILLEGAL_NAME_CHARACTERS for c in realname):
        raise BadRequestError("realname must not contain any of , ~ # $ %")
    return realname


def validate_comment(comment: str | None) -> str:
    return check_text(comment or "", "comment", max_length=MAX_COMMENT_LENGTH)


def password_problem(password: str | None) -> str | None:
    """Why Harbor's password policy refuses ``password``, or None when it is acceptable."""
    if not password or not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
        return f"the password must have {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters"
    if any(ord(c) < 32 or ord(c) == 127 for c in password):
        return "the password must not contain control characters"
    lower = any("a" <= c <= "z" for c in password)
    upper = any("A" <= c <= "Z" for c in password)
    digit = any("0" <= c <= "9" for c in password)
    if not (lower and upper and digit):
        return (
            "the password must contain at least one upper-case letter, "
            "one lower-case letter and one digit"
        )
    return None


def validate_password(password: str | None) -> str:
    problem = password_problem(password)
    if problem is not None or password is None:
        raise BadRequestError(problem or "a password is required")
    return password


def _deleted_name(value: str, user_id: int) -> str:
    """``value#id`` within the column's 255 characters (what Harbor renames a deleted user to)."""
    suffix = f"#{user_id}"
    return value[: MAX_NAME_LENGTH - len(suffix)] + suffix


# --- users ----------------------------------------------------------------------------------


async def get_user(session: AsyncSession, user_id: int) -> User:
    user = await repo.find_live_user(session, user_id)
    if user is None:
        raise NotFoundError(f"user {user_id} does not exist")
    return user


async def list_users(
    session: AsyncSession, conditions: list[Condition], sort: str | None, page: PageRequest
) -> tuple[list[User], int]:
    return await repo.list_users(session, conditions, sort, page)


async def search_users(
    session: AsyncSession, fragment: str, page: PageRequest
) -> tuple[list[tuple[int, str]], int]:
    check_text(fragment, "username", max_length=MAX_NAME_LENGTH)
    return await repo.search_users(session, fragment, page)


async def create_user(
    session: AsyncSession,
    *,
    username: str | None,
    email: str | None,
    realname: str | None,
    comment: str | None,
    password: str | None,
    robot_prefix: str,
    operator: Actor,
) -> User:
    """A new local user (never an administrator; that is ``set_sysadmin``)."""
    validated_password = validate_password(password)
    user = User(
        username=validate_username(username, robot_prefix),
        email=validate_email(email),
        realname=validate_realname(realname),
        comment=validate_comment(comment),
        sysadmin_flag=False,
    )
    if await repo.find_user_by_name(session, user.username) is not None:
        raise AlreadyExistsError(f"user {user.username} already exists")
    if await repo.find_user_by_email(session, user.email or "") is not None:
        raise AlreadyExistsError("another user has this email")
    user.password = hash_password(validated_password)
    session.add(user)
    await _flush_unique(session, "a user with this username or email already exists")
    await _record(session, operator, "create", user.username, "create user")
    return user


async def update_profile(
    session: AsyncSession,
    user_id: int,
    *,
    email: str | None,
    realname: str | None,
    comment: str | None,
    operator: Actor,
) -> User:
    """Replace email, realname and comment (Harbor's profile: all three, together)."""
    email = validate_email(email)
    realname = validate_realname(realname)
    comment = validate_comment(comment)
    user = await get_user(session, user_id)
    other = await repo.find_user_by_email(session, email)
    if other is not None and other.user_id != user_id:
        # Harbor's updateUserProfile answers a taken e-mail with 400 (it declares no 409).
        raise BadRequestError("another user has this email")
    user.email, user.realname, user.comment = email, realname, comment
    try:
        await session.flush()
    except IntegrityError:
        raise BadRequestError("another user has this email") from None
    await _record(session, operator, "update", user.username, "update profile")
    return user


async def delete_user(
    session: AsyncSession, user_id: int, actor: Principal, *, operator: Actor
) -> None:
    """Soft-delete a user, freeing their name and e-mail, and drop their memberships."""
    if user_id == actor.user_id:
        raise DeniedError("you cannot delete yourself")
    if user_id == BUILTIN_ADMIN_ID:
        raise DeniedError("the built-in admin user cannot be deleted")
    user = await get_user(session, user_id)
    if user.username == BUILTIN_ADMIN_NAME:
        raise DeniedError("the built-in admin user cannot be deleted")
    await repo.forget_user_memberships(session, user_id)
    await _record(session, operator, "delete", user.username, "delete user")
    user.username = _deleted_name(user.username, user_id)
    if user.email:
        user.email = _deleted_name(user.email, user_id)
    user.deleted = True
    user.sysadmin_flag = False
    await session.flush()
    await revocation.bump(session)  # tokens from before this change stop working


async def set_sysadmin(
    session: AsyncSession, user_id: int, flag: bool, actor: Principal, *, operator: Actor
) -> None:
    if user_id == actor.user_id:
        raise DeniedError("you cannot change your own administrator flag")
    user = await get_user(session, user_id)
    user.sysadmin_flag = flag
    await session.flush()
    if not flag:
        await revocation.bump(session)  # tokens from before this change stop working
    await _record(session, operator, "update", user.username, f"set sysadmin_flag {flag}")


async def set_password(
    session: AsyncSession,
    user_id: int,
    new_password: str | None,
    keep_session: str | None,
    *,
    operator: Actor,
) -> None:
    """Store a new password (policy checked, must differ) and end the user's other sessions.

    The caller checks the old password when users change their own.
    """
    password = validate_password(new_password)
    user = await get_user(session, user_id)
    auth_mode = await config.value(session, config.AUTH_MODE)
    if auth_mode != "db_auth" and user.username != BUILTIN_ADMIN_NAME:
        # As in Harbor: the directory keeps these users' passwords; one stored here would
        # never be asked for.
        where = {
            "oidc_auth": "the OIDC provider",
            "http_auth": "the HTTP auth proxy",
        }.get(str(auth_mode), "the directory")
        raise DeniedError(
            f"{user.username} signs in through {where} (auth_mode {auth_mode}): "
            "change the password there"
            + (" (docker and the API take the CLI secret)" if auth_mode == "oidc_auth" else "")
        )
    if verify_password(user.password or None, password):
        raise BadRequestError("the new password is the same as the old one")
    user.password = hash_password(password)
    user.password_version = (user.password_version or 0) + 1
    await repo.delete_user_login_sessions(session, user_id, keep=keep_session)
    await session.flush()
    await revocation.bump(session)  # tokens from before this change stop working
    await _record(session, operator, "update", user.username, "change password")


async def _record(
    session: AsyncSession,
    operator: Actor,
    operation: str,
    resource: str,
    description: str,
    resource_type: str = "user",
) -> None:
    """One user or user-group event (names only: never a password)."""
    await audit.record(
        session, operator, AuditEvent(operation, resource_type, resource, 0, description)
    )


async def self_registration_enabled(session: AsyncSession) -> bool:
    """Whether anyone may create their own account (Harbor's ``self_registration``; off)."""
    return await config.value(session, config.SELF_REGISTRATION) is True


async def set_self_registration(session: AsyncSession, enabled: bool) -> None:
    await config.update(session, {config.SELF_REGISTRATION: enabled})


async def _flush_unique(session: AsyncSession, message: str) -> None:
    """Flush; a unique constraint a concurrent request won is a 409, not a 500."""
    try:
        await session.flush()
    except IntegrityError:
        raise AlreadyExistsError(message) from None


# --- user groups ------------------------------------------------------------------------


def _group_type(value: int | None) -> GroupType:
    if value is None or value not in GroupType._value2member_map_:
        raise BadRequestError("group_type must be 1 (LDAP), 2 (HTTP) or 3 (OIDC)")
    return GroupType(value)


def _group_name(value: str | None) -> str:
    name = (value or "").strip()
    if not name:
        raise BadRequestError("group_name is required")
    return check_text(name, "group_name", max_length=MAX_NAME_LENGTH)


def _positive_id(group_id: int) -> int:
    if group_id <= 0:
        raise BadRequestError("the group id must be a positive integer")
    return group_id


async def get_group(session: AsyncSession, group_id: int) -> UserGroup:
    group = await repo.find_group(session, _positive_id(group_id))
    if group is None:
        raise NotFoundError(f"user group {group_id} does not exist")
    return group


async def list_groups(
    session: AsyncSession,
    page: PageRequest,
    *,
    group_name: str | None = None,
    ldap_group_dn: str | None = None,
) -> tuple[list[UserGroup], int]:
    if group_name:
        check_text(group_name, "group_name", max_length=MAX_NAME_LENGTH)
    if ldap_group_dn:
        check_text(ldap_group_dn, "ldap_group_dn", max_length=MAX_LDAP_DN_LENGTH)
    return await repo.list_groups(
        session, page, name_fragment=group_name, ldap_group_dn=ldap_group_dn
    )


async def search_groups(
    session: AsyncSession, fragment: str | None, page: PageRequest
) -> tuple[list[UserGroup], int]:
    if not fragment:
        raise BadRequestError("groupname is required to search user groups")
    check_text(fragment, "groupname", max_length=MAX_NAME_LENGTH)
    return await repo.list_groups(session, page, name_fragment=fragment)


async def create_group(
    session: AsyncSession,
    *,
    group_name: str | None,
    group_type: int | None,
    ldap_group_dn: str | None,
    operator: Actor,
    directory_group: DirectoryGroup | None = None,
) -> UserGroup:
    """A new user group. An LDAP group (type 1) is made from ``directory_group``, the
    entry the directory has at ``ldap_group_dn`` (``IdentityService.ldap_group``): its DN
    as the directory spells it, and its name from ``ldap_group_attribute_name`` unless
    ``group_name`` gives one (Harbor's rules)."""
    kind = _group_type(group_type)
    dn = (ldap_group_dn or "").strip()
    check_text(dn, "ldap_group_dn", max_length=MAX_LDAP_DN_LENGTH)
    if kind is GroupType.LDAP:
        if not dn:
            raise BadRequestError("ldap_group_dn is required for an LDAP group (group_type 1)")
        if directory_group is None:
            raise BadRequestError(
                "LDAP user groups (group_type 1) need auth_mode ldap_auth: their members "
                "are found at LDAP sign-in"
            )
        dn = canonical_dn(directory_group.dn)
        name = _group_name(group_name or directory_group.name or dn)
        if await repo.find_group_by(session, group_type=int(kind), ldap_dn_key=dn_key(dn)):
            raise AlreadyExistsError(f"an LDAP user group with DN {dn[:200]} already exists")
    else:
        name = _group_name(group_name)
        if dn:
            raise BadRequestError("ldap_group_dn is only for LDAP groups (group_type 1)")
    if await repo.find_group_by_name(session, int(kind), name) is not None:
        raise AlreadyExistsError(f"user group {name} already exists")
    group = UserGroup(group_name=name, group_type=int(kind), ldap_group_dn=dn)
    session.add(group)
    await _flush_unique(session, f"user group {name} already exists")
    await _record(session, operator, "create", name, f"create {kind.name} group", "user_group")
    return group


async def ensure_ldap_group(
    session: AsyncSession, found: DirectoryGroup, *, operator: Actor
) -> UserGroup:
    """The LDAP user group of a directory group, created (named by the directory, or by
    its DN when another LDAP group has that name) when none has its DN yet: what Harbor
    does when a project member names a group by DN only."""
    existing = await repo.find_group_by(
        session, group_type=int(GroupType.LDAP), ldap_dn_key=dn_key(found.dn)
    )
    if existing is not None:
        return existing
    name = found.name or canonical_dn(found.dn)
    if await repo.find_group_by_name(session, int(GroupType.LDAP), name) is not None:
        name = canonical_dn(found.dn)[:MAX_NAME_LENGTH]
    return await create_group(
        session,
        group_name=name,
        group_type=int(GroupType.LDAP),
        ldap_group_dn=found.dn,
        operator=operator,
        directory_group=found,
    )


async def rename_group(
    session: AsyncSession, group_id: int, group_name: str | None, *, operator: Actor
) -> UserGroup:
    name = _group_name(group_name)
    group = await get_group(session, group_id)
    other = await repo.find_group_by_name(session, group.group_type, name)
    taken = f"another user group of this type is called {name}"
    if other is not None and other.id != group.id:
        raise BadRequestError(taken)  # updateUserGroup declares no 409
    old = group.group_name
    group.group_name = name
    try:
        await session.flush()
    except IntegrityError:
        raise BadRequestError(taken) from None
    await _record(session, operator, "update", name, f"rename from {old}", "user_group")
    return group


async def delete_group(session: AsyncSession, group_id: int, *, operator: Actor) -> None:
    """Delete a group, its project roles and memberships; a missing group is no error."""
    group = await repo.find_group(session, _positive_id(group_id))
    if group is not None:
        await _record(session, operator, "delete", group.group_name, "delete group", "user_group")
        await repo.forget_group(session, group.id)
        await revocation.bump(session)  # tokens from before this change stop working


async def add_user_to_group(session: AsyncSession, user_id: int, group_id: int) -> None:
    """Record that a user belongs to a group (as LDAP/OIDC/HTTP login says); idempotent."""
    await get_user(session, user_id)
    await get_group(session, group_id)
    if await session.get(UserGroupMembership, (user_id, group_id)) is None:
        session.add(UserGroupMembership(user_id=user_id, group_id=group_id))
        await session.flush()


async def remove_user_from_group(session: AsyncSession, user_id: int, group_id: int) -> None:
    membership = await session.get(UserGroupMembership, (user_id, group_id))
    if membership is not None:
        await session.delete(membership)
        await session.flush()
        await revocation.bump(session)  # tokens from before this change stop working


# --- the current user's permissions -----------------------------------------------------


def _catalogue(
    tables: Iterable[dict[Resource, frozenset[Action]]],
) -> list[tuple[Resource, Action]]:
    """Every (resource, action) in ``tables``, in the enums' order."""
    pairs = {(r, a) for table in tables for r, actions in table.items() for a in actions}
    return [(r, a) for r in Resource for a in Action if (r, a) in pairs]


_PROJECT_CATALOGUE = _catalogue(ROLE_PERMISSIONS.values())
_SYSTEM_CATALOGUE = _catalogue([ROBOT_SYSTEM_PERMISSIONS])
_PROJECT_SCOPE = re.compile(r"(/project/([1-9][0-9]{0,17}))(/.*)?")
_SYSTEM_SCOPE = re.compile(rf"({re.escape(SYSTEM_SCOPE)})(/.*)?")


async def current_permissions(
    session: AsyncSession, principal: Principal, scope: str, relative: bool
) -> list[tuple[str, str]]:
    """(resource, action) pairs ``principal`` holds within ``scope``.

    ``scope`` is a namespace (``/system``, ``/project/{id}``) or any sub-scope of
    Harbor's permission tree under it (``/project/{id}/repository``): the pairs
    whose resource is the scope or lies below it. An unknown scope or project holds
    nothing, as in Harbor. Resources are full (``/project/1/repository``), or with
    ``relative`` relative to the scope as Harbor's ``RelativeTo`` makes them:
    ``repository`` for scope ``/project/1``, ``.`` for the scope itself.
    """
    system = _SYSTEM_SCOPE.fullmatch(scope)
    if system is not None:
        namespace = system.group(1)
        granted = [(r, a) for r, a in _SYSTEM_CATALOGUE if can(principal, a, r, None)]
    else:
        match = _PROJECT_SCOPE.fullmatch(scope)
        if match is None:
            return []
        namespace = match.group(1)
        name = await repo.find_project_name(session, int(match.group(2)))
        facts = await projects.find_project_facts(session, name) if name is not None else None
        if facts is None:
            return []
        context = await projects.project_context(session, principal, facts)
        granted = [(r, a) for r, a in _PROJECT_CATALOGUE if can(principal, a, r, context)]
    within = scope.rstrip("/") or scope
    pairs = []
    for resource, action in granted:
        full = f"{namespace}/{resource}"
        if full != within and not full.startswith(within + "/"):
            continue
        shown = (full[len(within) :].lstrip("/") or ".") if relative else full
        pairs.append((shown, str(action)))
    return pairs
