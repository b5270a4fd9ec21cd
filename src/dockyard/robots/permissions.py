"""Pure rules of robot accounts: names, secrets, lifetimes, and the permission catalogue.

No I/O here. The service resolves project names to ids and asks ``can`` whether
the creator holds each permission; everything that can be decided from the
request alone is decided here.
"""

from __future__ import annotations

import re
import secrets
import string
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, TypeVar

from dockyard.errors import BadRequestError
from dockyard.iam.policy import (
    ROBOT_PROJECT_PERMISSIONS,
    ROBOT_SYSTEM_PERMISSIONS,
    Action,
    Resource,
)
from dockyard.robots.schemas import Access, RobotPermission

Level = Literal["system", "project"]
LEVELS: tuple[Level, ...] = ("system", "project")
SYSTEM_NAMESPACE = "/"
ALL_PROJECTS = "*"
PROJECT_SEPARATOR = "+"
"""Joins a project robot's project and name: ``robot$<project>+<name>``."""

MAX_NAME_LENGTH = 255
DEFAULT_DURATION_DAYS = 30
"""Harbor's ``robot_token_duration`` default."""
MAX_DURATION_DAYS = 2**31 - 1
NEVER = -1
SECRET_MIN_LENGTH = 8
SECRET_MAX_LENGTH = 128
GENERATED_SECRET_LENGTH = 32
SECONDS_PER_DAY = 24 * 3600

_E = TypeVar("_E", Resource, Action)
_NAME = re.compile(r"[a-z0-9]+(?:[._-][a-z0-9]+)*")


@dataclass(frozen=True, slots=True)
class Requested:
    """One requested grant before its project is resolved to an id."""

    kind: Level
    namespace: str
    """``/`` for system; a project name or ``*`` for project."""
    resource: Resource
    action: Action


# --- names ---------------------------------------------------------------------------------


def check_robot_name(name: str | None) -> str:
    """The given robot name if Harbor accepts it (without prefix or project)."""
    if not name:
        raise BadRequestError("name is required")
    if len(name) > MAX_NAME_LENGTH:
        raise BadRequestError(f"robot name is longer than {MAX_NAME_LENGTH} characters")
    if PROJECT_SEPARATOR in name:
        raise BadRequestError(f"robot name must not contain {PROJECT_SEPARATOR!r}")
    if not _NAME.fullmatch(name):
        raise BadRequestError(
            "robot name must be lowercase letters and digits, optionally separated by "
            "single '.', '_' or '-'"
        )
    return name


def stored_name(level: Level, name: str, project: str | None) -> str:
    """The name kept in the database: ``name`` or ``<project>+<name>``."""
    if level == "project":
        assert project is not None
        full = f"{project}{PROJECT_SEPARATOR}{name}"
        if len(full) > MAX_NAME_LENGTH:
            raise BadRequestError(
                f"robot name and project name together exceed {MAX_NAME_LENGTH} characters"
            )
        return full
    return name


# --- secrets -------------------------------------------------------------------------------


def check_secret(secret: str) -> str:
    """``secret`` if it meets Harbor's policy: 8 to 128 characters, upper, lower and a digit."""
    if not SECRET_MIN_LENGTH <= len(secret) <= SECRET_MAX_LENGTH:
        raise BadRequestError(
            f"the secret must be {SECRET_MIN_LENGTH} to {SECRET_MAX_LENGTH} characters long"
        )
    if not (
        any(c.islower() for c in secret)
        and any(c.isupper() for c in secret)
        and any(c.isdigit() for c in secret)
    ):
        raise BadRequestError(
            "the secret must contain at least one uppercase letter, one lowercase letter "
            "and one digit"
        )
    return secret


def generate_secret() -> str:
    """A random secret of 32 letters and digits that meets Harbor's policy."""
    alphabet = string.ascii_letters + string.digits
    while True:
        candidate = "".join(secrets.choice(alphabet) for _ in range(GENERATED_SECRET_LENGTH))
        try:
            return check_secret(candidate)
        except BadRequestError:
            continue


# --- lifetime ------------------------------------------------------------------------------


def check_duration(duration: int | None, default: int = DEFAULT_DURATION_DAYS) -> int:
    """Days a robot lives: -1 never expires; 0 or absent means the default
    (the ``robot_token_duration`` configuration, 30 days unless changed)."""
    if duration is None or duration == 0:
        return default
    if duration == NEVER or 0 < duration <= MAX_DURATION_DAYS:
        return duration
    raise BadRequestError("duration must be -1 (never expires) or a positive number of days")


def expires_at(creation: int, duration: int) -> int:
    """Unix seconds when a robot created at ``creation`` stops working (-1: never)."""
    return NEVER if duration == NEVER else creation + duration * SECONDS_PER_DAY


def is_expired(expires: int, now: float) -> bool:
    return expires != NEVER and expires <= now


# --- permissions ---------------------------------------------------------------------------


def check_level(level: str | None) -> Level:
    if level == "system":
        return "system"
    if level == "project":
        return "project"
    raise BadRequestError("level must be system or project")


def parse_permissions(level: Level, permissions: list[RobotPermission] | None) -> list[Requested]:
    """Every grant requested, checked against the catalogue and the level's shape.

    A project robot has exactly one entry, of kind ``project``, naming one
    project. A system robot may hold system permissions (namespace ``/``) and
    permissions in any number of projects, or in all of them (``*``).
    """
    if not permissions:
        raise BadRequestError("a robot needs at least one permission")
    if level == "project":
        if len(permissions) != 1:
            raise BadRequestError("a project robot has exactly one permission entry")
        entry = permissions[0]
        if entry.kind != "project":
            raise BadRequestError("a project robot's permission must be of kind project")
        if entry.namespace == ALL_PROJECTS:
            raise BadRequestError("a project robot's permission must name its project")
    requested: dict[Requested, None] = {}
    for entry in permissions:
        for grant in _parse_entry(entry):
            requested.setdefault(grant, None)
    return list(requested)


def _parse_entry(entry: RobotPermission) -> Iterable[Requested]:
    kind: Level
    namespace = entry.namespace or ""
    if entry.kind == "system":
        kind = "system"
        if namespace != SYSTEM_NAMESPACE:
            raise BadRequestError(f"a system permission's namespace must be {SYSTEM_NAMESPACE!r}")
        catalogue = ROBOT_SYSTEM_PERMISSIONS
    elif entry.kind == "project":
        kind = "project"
        if not namespace or namespace == SYSTEM_NAMESPACE:
            raise BadRequestError("a project permission's namespace must name a project or be *")
        catalogue = ROBOT_PROJECT_PERMISSIONS
    else:
        raise BadRequestError(f"permission kind must be system or project, not {entry.kind!r}")
    if not entry.access:
        raise BadRequestError(f"the {kind} permission for {namespace!r} grants no access")
    for access in entry.access:
        resource, action = _parse_access(access, kind, catalogue)
        yield Requested(kind, namespace, resource, action)


def _parse_access(
    access: Access, kind: str, catalogue: dict[Resource, frozenset[Action]]
) -> tuple[Resource, Action]:
    if access.effect not in (None, "", "allow"):
        raise BadRequestError(f"access effect must be allow, not {access.effect!r}")
    resource = _member(Resource, access.resource)
    action = _member(Action, access.action)
    if resource is None or resource not in catalogue:
        raise BadRequestError(f"{access.resource!r} is not a {kind} resource a robot may access")
    if action is None or action not in catalogue[resource]:
        raise BadRequestError(
            f"{access.action!r} is not an action a robot may do on {kind} {resource.value}"
        )
    if resource in UNSUPPORTED_RESOURCES:
        raise BadRequestError(
            f"robot permission {resource.value}:{action.value} cannot be granted: "
            f"{UNSUPPORTED_RESOURCES[resource]} is not supported by Dockyard yet"
        )
    return resource, action


UNSUPPORTED_RESOURCES: dict[Resource, str] = {
    Resource.PREHEAT_POLICY: "P2P preheat",
    Resource.PREHEAT_INSTANCE: "P2P preheat",
    Resource.LDAP_USER: "LDAP authentication",
}
"""Resources of Harbor's robot catalogue whose feature Dockyard lacks: a grant on one
is refused naming the feature, and they are not offered (``getPermissions``, the
console). The feature's issue removes its entry."""


def grantable(catalogue: dict[Resource, frozenset[Action]]) -> dict[Resource, frozenset[Action]]:
    """``catalogue`` without the resources of missing features."""
    return {r: a for r, a in catalogue.items() if r not in UNSUPPORTED_RESOURCES}


def _member(enum: type[_E], value: str | None) -> _E | None:
    if value is None:
        return None
    try:
        return enum(value)
    except ValueError:
        return None


def shown_permissions(rows: Iterable[tuple[str, str, str, str, str]]) -> list[RobotPermission]:
    """Stored ``(kind, namespace, resource, action, effect)`` rows as Harbor lists them:
    one entry per (kind, namespace), in the order first seen."""
    grouped: dict[tuple[str, str], list[Access]] = {}
    for kind, namespace, resource, action, effect in rows:
        grouped.setdefault((kind, namespace), []).append(
            Access(resource=resource, action=action, effect=effect)
        )
    return [
        RobotPermission(kind=kind, namespace=namespace, access=access)
        for (kind, namespace), access in grouped.items()
    ]
