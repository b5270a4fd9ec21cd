"""Harbor's robot shapes (swagger definitions ``Robot``, ``RobotCreate``, ``RobotCreated``,
``RobotSec``, ``RobotPermission``, ``Access``), field for field."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel


class Access(BaseModel):
    resource: str | None = None
    action: str | None = None
    effect: str | None = None


class RobotPermission(BaseModel):
    kind: str | None = None
    """``system`` or ``project``."""
    namespace: str | None = None
    """``/`` for ``system``; a project name or ``*`` for ``project``."""
    access: list[Access] | None = None


class Robot(BaseModel):
    """A robot as the API shows it (and as ``UpdateRobot`` takes it); never its secret."""

    id: int | None = None
    name: str | None = None
    description: str | None = None
    secret: str | None = None
    level: str | None = None
    duration: int | None = None
    editable: bool | None = None
    disable: bool | None = None
    expires_at: int | None = None
    permissions: list[RobotPermission] | None = None
    creator_type: str | None = None
    creator_ref: int | None = None
    creation_time: datetime | None = None
    update_time: datetime | None = None


class RobotCreate(BaseModel):
    name: str | None = None
    description: str | None = None
    secret: str | None = None
    """A secret of the caller's choosing (Harbor's policy applies); else one is generated."""
    level: str | None = None
    disable: bool | None = None
    duration: int | None = None
    """Days; -1 never expires; 0 or absent: the default lifetime."""
    permissions: list[RobotPermission] | None = None


class RobotCreated(BaseModel):
    id: int
    name: str
    secret: str
    creation_time: datetime
    expires_at: int


class RobotSec(BaseModel):
    secret: str | None = None


class PermissionItem(BaseModel):
    """Swagger ``Permission``: one (resource, action) a robot may be granted."""

    resource: str
    action: str


class Permissions(BaseModel):
    """Swagger ``Permissions``: the robot catalogue, by level."""

    system: list[PermissionItem] | None = None
    project: list[PermissionItem] | None = None
