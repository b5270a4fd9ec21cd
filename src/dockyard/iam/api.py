"""``/api/v2.0`` users, user groups and the current user (see ``dockyard.http.api``),
and the console's ``/c/login`` and ``/c/log_out``.

Every handler asks ``policy.can`` before it acts: user and group administration
is for system administrators (or robots granted ``user``/``user-group``), a user
may read and update their own profile and password, and any signed-in caller
may search users and groups by name.
"""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qsl

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from dockyard.audit import service as audit
from dockyard.audit.events import Actor, AuditEvent
from dockyard.db.listing import parse_q
from dockyard.errors import (
    AppError,
    BadRequestError,
    DeniedError,
    NotFoundError,
    PreconditionFailedError,
    TooManyRequestsError,
    UnauthorizedError,
)
from dockyard.http.api import (
    API_PREFIX,
    ApiRequest,
    Operation,
    console_session,
    created_response,
    empty_response,
    json_response,
    operation,
    paged_response,
    request_id,
)
from dockyard.http.errors import harbor_error_response
from dockyard.http.origin import foreign_source
from dockyard.http.state import base_url, client_address, get_state
from dockyard.iam import oidc, sessions, users
from dockyard.iam.models import GroupType, User, UserGroup
from dockyard.iam.policy import Action, Principal, Resource, can
from dockyard.iam.schemas import (
    OIDCCliSecretReq,
    OIDCUserInfo,
    PasswordReq,
    Permission,
    UserCreationReq,
    UserGroupSearchItem,
    UserProfile,
    UserResp,
    UserSearchRespItem,
    UserSysAdminFlag,
)
from dockyard.iam.schemas import UserGroup as UserGroupBody
from dockyard.system import config

_PAGING = ("page", "page_size")
_MAX_QUERY_LENGTH = 4096
_MAX_FORM_BYTES = 64 * 1024


def _user_resp(user: User, *, caller: bool = False) -> UserResp:
    """Harbor's ``UserResp``. ``admin_role_in_auth`` (the administrator role comes from the
    authentication provider: an LDAP admin group, ``oidc_admin_group``, the auth proxy's
    admin groups or names) is told only on the caller's own record, as Harbor's swagger
    says ("always false unless it is the current login user"): a listing does not
    reveal who is in the directory's admin group."""
    return UserResp(
        user_id=user.user_id,
        username=user.username,
        email=user.email or None,
        realname=user.realname or None,
        comment=user.comment or None,
        sysadmin_flag=user.sysadmin_flag,
        admin_role_in_auth=caller and bool(user.admin_role_in_auth),
        creation_time=user.creation_time,
        update_time=user.update_time,
    )


def _group_body(group: UserGroup) -> UserGroupBody:
    return UserGroupBody(
        id=group.id,
        group_name=group.group_name,
        group_type=group.group_type,
        ldap_group_dn=group.ldap_group_dn or None,
    )


def _text_query(api: ApiRequest, name: str) -> str | None:
    """A query parameter that will reach the database: no control characters."""
    value = api.query(name)
    if value:
        users.check_text(value, name, max_length=_MAX_QUERY_LENGTH)
    return value


def _is_self(principal: Principal, user_id: int) -> bool:
    return principal.kind == "user" and principal.user_id == user_id


# --- users ------------------------------------------------------------------------------


@operation(
    "GET",
    "/users",
    "listUsers",
    query=("q", "sort", *_PAGING),
    response=list[UserResp],
)
async def list_users(api: ApiRequest) -> Response:
    """List users (system administrators)."""
    principal = await api.principal()
    await api.require(can(principal, Action.LIST, Resource.USER, None), "list users")
    page = api.page()
    conditions = parse_q(_text_query(api, "q"))
    sort = _text_query(api, "sort")
    async with api.state.db.read() as session:
        found, total = await users.list_users(session, conditions, sort, page)
    return paged_response(api, [_user_resp(u) for u in found], total, page)


@operation("POST", "/users", "createUser", body=UserCreationReq, status=201)
async def create_user(api: ApiRequest) -> Response:
    """Create a local user (administrators; anyone while self-registration is on)."""
    principal = await api.principal()
    async with api.state.db.read() as session:
        open_registration = await users.self_registration_enabled(session)
        auth_mode = await config.value(session, config.AUTH_MODE)
    await api.require(
        open_registration or can(principal, Action.CREATE, Resource.USER, None), "create users"
    )
    if auth_mode != "db_auth":
        # As in Harbor: users come from the directory (sign-in or /ldap/users/import).
        raise DeniedError(f"local users cannot be created while auth_mode is {auth_mode}")
    body = await api.json(UserCreationReq)
    async with api.state.db.write() as session:
        user = await users.create_user(
            session,
            username=body.username,
            email=body.email,
            realname=body.realname,
            comment=body.comment,
            password=body.password,
            robot_prefix=api.state.settings.robot_name_prefix,
            operator=await api.actor(),
        )
    return created_response(f"{API_PREFIX}/users/{user.user_id}")


@operation("GET", "/users/current", "getCurrentUserInfo", response=UserResp)
async def get_current_user_info(api: ApiRequest) -> Response:
    """The signed-in user's own profile (412 for a robot: it is no local user)."""
    principal = await api.user()
    if principal.kind != "user" or principal.user_id is None:
        raise PreconditionFailedError(f"{principal.name} is not a local user")
    async with api.state.db.read() as session:
        user = await users.get_user(session, principal.user_id)
        meta = await _oidc_meta(session, user.user_id, with_secret=True)
    return json_response(_user_resp(user, caller=True).model_copy(update={"oidc_user_meta": meta}))


@operation(
    "GET",
    "/users/search",
    "searchUsers",
    query=("username", *_PAGING),
    response=list[UserSearchRespItem],
)
async def search_users(api: ApiRequest) -> Response:
    """Users whose name contains ``username`` (any signed-in caller)."""
    await api.user()
    page = api.page()
    fragment = api.query("username")
    if not fragment:
        raise BadRequestError("username is required to search users")
    async with api.state.db.read() as session:
        found, total = await users.search_users(session, fragment, page)
    items = [UserSearchRespItem(user_id=uid, username=name) for uid, name in found]
    return paged_response(api, items, total, page)


@operation(
    "GET",
    "/users/current/permissions",
    "getCurrentUserPermissions",
    query=("scope", "relative"),
    response=list[Permission],
)
async def get_current_user_permissions(api: ApiRequest) -> Response:
    """What the caller may do in ``/system`` or ``/project/{id}``."""
    principal = await api.user()
    scope = api.query("scope") or ""
    relative = api.query_bool("relative")
    async with api.state.db.read() as session:
        pairs = await users.current_permissions(session, principal, scope, relative)
    return json_response([Permission(resource=r, action=a) for r, a in pairs])


@operation("GET", "/users/{user_id}", "getUser", response=UserResp)
async def get_user(api: ApiRequest) -> Response:
    """A user's profile (administrators, or the user themselves)."""
    principal = await api.user()
    user_id = api.path_int("user_id")
    await api.require(
        _is_self(principal, user_id) or can(principal, Action.READ, Resource.USER, None),
        f"read user {user_id}",
    )
    async with api.state.db.read() as session:
        user = await users.get_user(session, user_id)
        meta = await _oidc_meta(session, user_id, with_secret=_is_self(principal, user_id))
    own = _is_self(principal, user_id)
    return json_response(_user_resp(user, caller=own).model_copy(update={"oidc_user_meta": meta}))


async def _oidc_meta(
    session: AsyncSession, user_id: int, *, with_secret: bool
) -> OIDCUserInfo | None:
    """Harbor's ``oidc_user_meta`` of an OIDC user (the CLI secret for the user only)."""
    found = await oidc.find_oidc_user(session, user_id)
    if found is None:
        return None
    return OIDCUserInfo(
        id=found.id,
        user_id=found.user_id,
        subiss=found.subiss,
        secret=await oidc.cli_secret(session, user_id) if with_secret else None,
        creation_time=found.creation_time,
        update_time=found.update_time,
    )


@operation("PUT", "/users/{user_id}", "updateUserProfile", body=UserProfile)
async def update_user_profile(api: ApiRequest) -> Response:
    """Replace a user's email, realname and comment (administrators, or themselves)."""
    principal = await api.user()
    user_id = api.path_int("user_id")
    await api.require(
        _is_self(principal, user_id) or can(principal, Action.UPDATE, Resource.USER, None),
        f"update user {user_id}",
    )
    body = await api.json(UserProfile)
    async with api.state.db.write() as session:
        await users.update_profile(
            session,
            user_id,
            email=body.email,
            realname=body.realname,
            comment=body.comment,
            operator=await api.actor(),
        )
    return empty_response()


@operation("DELETE", "/users/{user_id}", "deleteUser")
async def delete_user(api: ApiRequest) -> Response:
    """Soft-delete a user (administrators; not themselves, not the built-in admin)."""
    principal = await api.user()
    await api.require(can(principal, Action.DELETE, Resource.USER, None), "delete users")
    user_id = api.path_int("user_id")
    actor = await api.actor()
    refused = AuditEvent("delete", "user", f"user {user_id}")
    async with (
        audit.failure_recorded(api.state.db, actor, refused),
        api.state.db.write() as session,
    ):
        await users.delete_user(session, user_id, principal, operator=actor)
    return empty_response()


@operation("PUT", "/users/{user_id}/sysadmin", "setUserSysAdmin", body=UserSysAdminFlag)
async def set_user_sys_admin(api: ApiRequest) -> Response:
    """Make a user a system administrator or not (administrators; never their own flag)."""
    principal = await api.user()
    await api.require(
        can(principal, Action.UPDATE, Resource.USER, None), "change administrator flags"
    )
    user_id = api.path_int("user_id")
    body = await api.json(UserSysAdminFlag)
    if body.sysadmin_flag is None:
        raise BadRequestError("sysadmin_flag is required")
    async with api.state.db.write() as session:
        await users.set_sysadmin(
            session, user_id, body.sysadmin_flag, principal, operator=await api.actor()
        )
    return empty_response()


@operation("PUT", "/users/{user_id}/password", "updateUserPassword", body=PasswordReq)
async def update_user_password(api: ApiRequest) -> Response:
    """Change a password: users their own (with the old one), administrators anyone's."""
    principal = await api.user()
    user_id = api.path_int("user_id")
    own = _is_self(principal, user_id)
    await api.require(
        own or can(principal, Action.UPDATE, Resource.USER, None),
        f"change the password of user {user_id}",
    )
    body = await api.json(PasswordReq)
    if own:
        await _check_current_password(api, principal.name, body.old_password or "")
    console = console_session(api.request)
    try:
        async with api.state.db.write() as session:
            await users.set_password(
                session,
                user_id,
                body.new_password,
                keep_session=console.session_id if console is not None and own else None,
                operator=await api.actor(),
            )
    except NotFoundError as exc:
        # Harbor declares "invalid user ID" a 400 here, not a 404.
        raise BadRequestError(exc.message) from None
    return empty_response()


async def _check_current_password(api: ApiRequest, username: str, offered: str) -> None:
    """The login path checks it, so guesses are throttled as failed logins are."""
    users.check_text(offered, "old_password", max_length=users.MAX_PASSWORD_LENGTH * 4)
    try:
        await api.state.identity.authenticate(username, offered, client_address(api.request))
    except UnauthorizedError:
        raise DeniedError("the current password is incorrect") from None


@operation("PUT", "/users/{user_id}/cli_secret", "setCliSecret", body=OIDCCliSecretReq)
async def set_cli_secret(api: ApiRequest) -> Response:
    """Set an OIDC user's CLI secret (Harbor's password rules), or make a random one when
    the body gives none; the old secret, and tokens got with it, stop working at once.
    412 when auth_mode is not oidc_auth or the user never signed in through OIDC."""
    principal = await api.user()
    user_id = api.path_int("user_id")
    await api.require(
        _is_self(principal, user_id) or can(principal, Action.UPDATE, Resource.USER, None),
        f"set the CLI secret of user {user_id}",
    )
    body = await api.json(OIDCCliSecretReq)
    async with api.state.db.write() as session:
        await users.get_user(session, user_id)  # 404 for no such user
        await oidc.set_cli_secret(session, user_id, body.secret or None)
        await audit.record(
            session, await api.actor(), AuditEvent("update", "user", f"cli secret of {user_id}")
        )
    return empty_response()


# --- user groups --------------------------------------------------------------------------


@operation(
    "GET",
    "/usergroups",
    "listUserGroups",
    query=(*_PAGING, "ldap_group_dn", "group_name"),
    response=list[UserGroupBody],
)
async def list_user_groups(api: ApiRequest) -> Response:
    """List user groups (system administrators)."""
    principal = await api.principal()
    await api.require(can(principal, Action.LIST, Resource.USER_GROUP, None), "list user groups")
    page = api.page()
    async with api.state.db.read() as session:
        found, total = await users.list_groups(
            session,
            page,
            group_name=api.query("group_name"),
            ldap_group_dn=api.query("ldap_group_dn"),
        )
    return paged_response(api, [_group_body(g) for g in found], total, page)


@operation("POST", "/usergroups", "createUserGroup", body=UserGroupBody, status=201)
async def create_user_group(api: ApiRequest) -> Response:
    """Create an LDAP, HTTP or OIDC group (system administrators)."""
    principal = await api.principal()
    await api.require(
        can(principal, Action.CREATE, Resource.USER_GROUP, None), "create user groups"
    )
    body = await api.json(UserGroupBody)
    found = None
    if body.group_type == GroupType.LDAP and body.ldap_group_dn:
        found = await api.state.identity.ldap_group(body.ldap_group_dn)  # validated there
    async with api.state.db.write() as session:
        group = await users.create_group(
            session,
            group_name=body.group_name,
            group_type=body.group_type,
            ldap_group_dn=body.ldap_group_dn,
            operator=await api.actor(),
            directory_group=found,
        )
    return created_response(f"{API_PREFIX}/usergroups/{group.id}")


@operation(
    "GET",
    "/usergroups/search",
    "searchUserGroups",
    query=(*_PAGING, "groupname"),
    response=list[UserGroupSearchItem],
)
async def search_user_groups(api: ApiRequest) -> Response:
    """Groups whose name contains ``groupname`` (any signed-in caller)."""
    await api.user()
    page = api.page()
    async with api.state.db.read() as session:
        found, total = await users.search_groups(session, api.query("groupname"), page)
    items = [
        UserGroupSearchItem(id=g.id, group_name=g.group_name, group_type=g.group_type)
        for g in found
    ]
    return paged_response(api, items, total, page)


@operation("GET", "/usergroups/{group_id}", "getUserGroup", response=UserGroupBody)
async def get_user_group(api: ApiRequest) -> Response:
    """One user group (system administrators)."""
    principal = await api.principal()
    await api.require(can(principal, Action.READ, Resource.USER_GROUP, None), "read user groups")
    group_id = api.path_int("group_id")
    async with api.state.db.read() as session:
        group = await users.get_group(session, group_id)
    return json_response(_group_body(group))


@operation("PUT", "/usergroups/{group_id}", "updateUserGroup", body=UserGroupBody)
async def update_user_group(api: ApiRequest) -> Response:
    """Rename a user group; nothing else of it changes (system administrators)."""
    principal = await api.principal()
    await api.require(
        can(principal, Action.UPDATE, Resource.USER_GROUP, None), "update user groups"
    )
    group_id = api.path_int("group_id")
    body = await api.json(UserGroupBody)
    async with api.state.db.write() as session:
        await users.rename_group(session, group_id, body.group_name, operator=await api.actor())
    return empty_response()


@operation("DELETE", "/usergroups/{group_id}", "deleteUserGroup")
async def delete_user_group(api: ApiRequest) -> Response:
    """Delete a group with its project memberships (system administrators)."""
    principal = await api.principal()
    await api.require(
        can(principal, Action.DELETE, Resource.USER_GROUP, None), "delete user groups"
    )
    group_id = api.path_int("group_id")
    async with api.state.db.write() as session:
        await users.delete_group(session, group_id, operator=await api.actor())
    return empty_response()


# Fixed paths before their ``{user_id}``/``{group_id}`` siblings: the router takes the first.
operations: list[Operation] = [
    list_users,
    create_user,
    get_current_user_info,
    search_users,
    get_current_user_permissions,
    get_user,
    update_user_profile,
    delete_user,
    set_user_sys_admin,
    update_user_password,
    set_cli_secret,
    list_user_groups,
    create_user_group,
    search_user_groups,
    get_user_group,
    update_user_group,
    delete_user_group,
]


# --- console sessions (not /api/v2.0) -----------------------------------------------------

_BAD_LOGIN = "invalid username or password"


async def console_login(request: Request) -> Response:
    """``POST /c/login`` with the portal's form ``principal`` and ``password``.

    A browser's cross-site post is refused (403): an ``Origin`` (or, without one,
    a ``Referer``) naming another host. Programs that send neither still sign in.
    """
    state = get_state(request)
    name = ""
    try:
        foreign = foreign_source(
            request.headers.get("origin"),
            request.headers.get("referer"),
            request.headers.get("host"),
            request.url.scheme,
            state.settings.external_url,
        )
        if foreign is not None:  # login CSRF: another site's page signing a browser in
            raise DeniedError(f"a sign-in from another site ({foreign}) is refused")
        form = await _read_form(request)
        name, password = form.get("principal", ""), form.get("password", "")
        if await state.identity.is_robot_name(name):
            raise UnauthorizedError("robot accounts cannot sign in to the console")
        if not name or any(ord(c) < 32 or ord(c) == 127 for c in name):
            raise UnauthorizedError(_BAD_LOGIN)
        principal = await state.identity.authenticate(name, password, client_address(request))
        if principal.kind != "user" or principal.user_id is None:
            raise UnauthorizedError("only users can sign in to the console")
        timeout = timedelta(minutes=state.settings.session_timeout_minutes)
        async with state.db.write() as session:
            old = request.cookies.get(sessions.SESSION_COOKIE)
            if old:
                await sessions.end_session(session, old)
            started = await sessions.start_session(session, principal.user_id, timeout)
            await audit.record(
                session,
                Actor(principal.name, client_address(request)),
                audit.login_event(principal.name, "the console"),
            )
    except AppError as exc:
        if _recordable_login(name) and isinstance(exc, UnauthorizedError | TooManyRequestsError):
            await audit.record_failure(
                state.db,
                Actor(name, client_address(request)),
                audit.login_event(name, "the console"),
                reason=exc.message,
            )
        return harbor_error_response(exc, request_id(request))
    response = Response(status_code=200, headers={sessions.CSRF_HEADER: started.csrf_token})
    secure = _secure(request)
    response.set_cookie(
        sessions.SESSION_COOKIE,
        started.cookie,
        path="/",
        httponly=True,
        samesite="lax",
        secure=secure,
    )
    response.set_cookie(
        sessions.CSRF_COOKIE,
        started.csrf_token,
        path="/",
        httponly=False,
        samesite="lax",
        secure=secure,
    )
    return response


def _recordable_login(name: str) -> bool:
    """A login name worth an audit event: given, printable, of a plausible length."""
    return 0 < len(name) <= users.MAX_NAME_LENGTH and not any(
        ord(c) < 32 or ord(c) == 127 for c in name
    )


async def console_logout(request: Request) -> Response:
    """``GET /c/log_out``: end the session and clear its cookies."""
    state = get_state(request)
    cookie = request.cookies.get(sessions.SESSION_COOKIE)
    try:
        if cookie:
            async with state.db.write() as session:
                await sessions.end_session(session, cookie)
    except AppError as exc:
        return harbor_error_response(exc, request_id(request))
    response = Response(status_code=200)
    secure = _secure(request)
    response.delete_cookie(
        sessions.SESSION_COOKIE, path="/", httponly=True, samesite="lax", secure=secure
    )
    response.delete_cookie(sessions.CSRF_COOKIE, path="/", samesite="lax", secure=secure)
    return response


def _secure(request: Request) -> bool:
    """Cookies are ``Secure`` when the console is reached over https."""
    return request.url.scheme == "https" or base_url(
        request, get_state(request).settings
    ).startswith("https://")


async def _read_form(request: Request) -> dict[str, str]:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > _MAX_FORM_BYTES:
        raise BadRequestError("the login form is too large")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > _MAX_FORM_BYTES:
            raise BadRequestError("the login form is too large")
    try:
        text = body.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, max_num_fields=16, errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise BadRequestError("the login form is not a valid URL-encoded UTF-8 form") from None
    return dict(pairs)


def session_routes() -> list[BaseRoute]:
    """The console's sign-in and sign-out (wired into the app by ``create_app``)."""
    return [
        Route("/c/login", console_login, methods=["POST"]),
        Route("/c/log_out", console_logout, methods=["GET"]),
    ]
