"""``/api/v2.0/robots``: Harbor's v2 robot accounts (swagger tag ``robot``)."""

from __future__ import annotations

from starlette.responses import Response

from dockyard.http.api import (
    API_PREFIX,
    ApiRequest,
    Operation,
    empty_response,
    json_response,
    operation,
    paged_response,
)
from dockyard.robots import service as robots
from dockyard.robots.schemas import (
    PermissionItem,
    Permissions,
    Robot,
    RobotCreate,
    RobotCreated,
    RobotSec,
)


def _prefix(api: ApiRequest) -> str:
    return api.state.settings.robot_name_prefix


@operation(
    "GET",
    "/robots",
    "ListRobot",
    query=("q", "sort", "page", "page_size"),
    response=list[Robot],
)
async def list_robots(api: ApiRequest) -> Response:
    """List robots: every one for administrators, a project's with ``q=ProjectID=<id>``."""
    actor = await api.user()
    page = api.page()
    async with api.state.db.read() as session:
        items, total = await robots.list_robots(
            session,
            actor,
            q=api.query("q"),
            sort=api.query("sort"),
            page=page,
            prefix=_prefix(api),
        )
    return paged_response(api, items, total, page)


@operation("POST", "/robots", "CreateRobot", body=RobotCreate, response=RobotCreated, status=201)
async def create_robot(api: ApiRequest) -> Response:
    """Create a robot; its secret is in this answer and nowhere else, ever."""
    creator = await api.user()
    body = await api.json(RobotCreate)
    secret = await robots.new_secret(body.secret)
    async with api.state.db.write() as session:
        created = await robots.create_robot(
            session, creator, body, secret, _prefix(api), operator=await api.actor()
        )
    robot = created.robot
    answer = RobotCreated(
        id=robot.id,
        name=created.full_name,
        secret=secret.secret,
        creation_time=robot.creation_time,
        expires_at=robot.expires_at,
    )
    return json_response(
        answer, status=201, headers={"Location": f"{API_PREFIX}/robots/{robot.id}"}
    )


@operation("GET", "/robots/{robot_id}", "GetRobotByID", response=Robot)
async def get_robot(api: ApiRequest) -> Response:
    """One robot, without its secret."""
    actor = await api.user()
    robot_id = api.path_int("robot_id")
    async with api.state.db.read() as session:
        robot = await robots.get_robot(session, actor, robot_id, _prefix(api))
    return json_response(robot)


@operation("PUT", "/robots/{robot_id}", "UpdateRobot", body=Robot)
async def update_robot(api: ApiRequest) -> Response:
    """Change a robot's description, duration, disable flag or permissions."""
    actor = await api.user()
    robot_id = api.path_int("robot_id")
    body = await api.json(Robot)
    async with api.state.db.write() as session:
        await robots.update_robot(
            session, actor, robot_id, body, _prefix(api), operator=await api.actor()
        )
    return empty_response()


@operation("PATCH", "/robots/{robot_id}", "RefreshSec", body=RobotSec, response=RobotSec)
async def refresh_secret(api: ApiRequest) -> Response:
    """Give a robot a new secret (the one sent, or a generated one); the old one stops working."""
    actor = await api.user()
    robot_id = api.path_int("robot_id")
    body = await api.json(RobotSec)
    secret = await robots.new_secret(body.secret)
    async with api.state.db.write() as session:
        await robots.refresh_secret(
            session, actor, robot_id, secret, operator=await api.actor(), prefix=_prefix(api)
        )
    return json_response(RobotSec(secret=secret.secret))


@operation("DELETE", "/robots/{robot_id}", "DeleteRobot")
async def delete_robot(api: ApiRequest) -> Response:
    """Delete a robot; its secret stops working at once."""
    actor = await api.user()
    robot_id = api.path_int("robot_id")
    async with api.state.db.write() as session:
        await robots.delete_robot(
            session, actor, robot_id, operator=await api.actor(), prefix=_prefix(api)
        )
    return empty_response()


@operation("GET", "/permissions", "getPermissions", response=Permissions)
async def get_permissions(api: ApiRequest) -> Response:
    """The robot permission catalogue (system and project), for administrators."""
    principal = await api.principal()
    async with api.state.db.read() as session:
        catalogue = await robots.permission_catalogue(session, principal)
    return json_response(
        Permissions(
            **{
                kind: [PermissionItem(resource=r, action=a) for r, a in pairs]
                for kind, pairs in catalogue.items()
            }
        )
    )


operations: list[Operation] = [
    list_robots,
    create_robot,
    get_robot,
    update_robot,
    refresh_secret,
    delete_robot,
    get_permissions,
]
