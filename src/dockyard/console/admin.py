"""Console administration pages (system administrators): users, groups, system robots,
global labels, the audit log, configuration and system information.

Every handler asks ``can`` on the system resource first (``require_system``), as
the REST API's handlers do, so a non-administrator gets 403 from the endpoint
even though the navigation never shows them these pages.
"""

from __future__ import annotations

from starlette.responses import Response

from dockyard.audit import service as audit
from dockyard.console import authentication
from dockyard.console.audit_filters import OPERATIONS as AUDIT_OPERATIONS
from dockyard.console.audit_filters import AuditFilters
from dockyard.console.projects import GiB as GIB
from dockyard.console.projects import (
    label_body,
    label_edit,
    pages_of,
    picked_dn,
    robot_action,
    secret_download,
)
from dockyard.console.web import PREFIX, Page, with_query
from dockyard.db.listing import Condition
from dockyard.errors import BadRequestError, DeniedError
from dockyard.iam import users
from dockyard.iam.models import GroupType
from dockyard.iam.policy import ROBOT_SYSTEM_PERMISSIONS, Action, Resource, can
from dockyard.labels import service as labels
from dockyard.quota import service as quotas
from dockyard.quota.schemas import QuotaUpdateReq
from dockyard.robots import service as robots
from dockyard.robots.permissions import grantable
from dockyard.robots.schemas import Access, RobotCreate, RobotPermission
from dockyard.system import config
from dockyard.system import service as system

ADMIN = PREFIX + "/admin"
EDITABLE_SETTINGS = (
    config.SELF_REGISTRATION,
    config.PROJECT_CREATION_RESTRICTION,
    config.ROBOT_TOKEN_DURATION,
    config.STORAGE_PER_PROJECT,
    config.BANNER_MESSAGE,
    config.DISABLED_AUDIT_LOG_EVENT_TYPES,
    config.NOTIFICATION_ENABLE,
    config.QUOTA_PER_PROJECT_ENABLE,
    config.TOKEN_EXPIRATION,
    config.SESSION_TIMEOUT,
    config.ROBOT_NAME_PREFIX,
    config.READ_ONLY,
)


def require_system(page: Page, action: Action, resource: Resource) -> None:
    if not can(page.principal, action, resource, None) or page.principal.is_robot:
        raise DeniedError(f"{page.principal.name} may not {action} {resource}")


# --- users ---------------------------------------------------------------------------------


async def user_list(page: Page) -> Response:
    require_system(page, Action.LIST, Resource.USER)
    search = page.query("q").strip()[:255]
    request = page.page_request()
    conditions = [Condition("username", "fuzzy", (search,))] if search else []
    async with page.state.db.read() as session:
        found, total = await users.list_users(session, conditions, "username", request)
        mode = await config.value(session, config.AUTH_MODE)
    return page.render(
        "admin/users.html",
        section="users",
        # Local users can be created only under db_auth (POST /users refuses them too).
        local_users=mode == "db_auth",
        ldap_import=await authentication.ldap_import_section(page),
        users=found,
        paging=pages_of(total, request),
        search=search,
        list_url=lambda **p: with_query(ADMIN + "/users", q=search, **p),
    )


async def create_user(page: Page) -> Response:
    require_system(page, Action.CREATE, Resource.USER)
    async with page.state.db.write() as session:
        created = await users.create_user(
            session,
            username=page.field("username").strip(),
            email=page.field("email").strip(),
            realname=page.field("realname").strip(),
            comment=page.field("comment"),
            password=page.field("password"),
            robot_prefix=page.state.settings.robot_name_prefix,
            operator=page.actor(),
        )
        name = created.username
    return page.redirect(ADMIN + "/users", "flash.user_created", name=name)


async def user_action(page: Page) -> Response:
    user_id, verb = page.path_int("user"), page.path("verb")
    async with page.state.db.write() as session:
        if verb == "password":
            require_system(page, Action.UPDATE, Resource.USER)
            await users.set_password(
                session, user_id, page.field("password"), None, operator=page.actor()
            )
        elif verb in ("grant-admin", "revoke-admin"):
            require_system(page, Action.UPDATE, Resource.USER)
            await users.set_sysadmin(
                session, user_id, verb == "grant-admin", page.principal, operator=page.actor()
            )
        elif verb == "delete":
            require_system(page, Action.DELETE, Resource.USER)
            await users.delete_user(session, user_id, page.principal, operator=page.actor())
        else:
            raise BadRequestError(f"no user action {verb[:40]}")
    return page.redirect(ADMIN + "/users", "flash.user_changed")


# --- groups --------------------------------------------------------------------------------


async def group_list(page: Page) -> Response:
    require_system(page, Action.LIST, Resource.USER_GROUP)
    request = page.page_request()
    async with page.state.db.read() as session:
        found, total = await users.list_groups(session, request)
        mode = await config.value(session, config.AUTH_MODE)
    picker = await authentication.ldap_group_picker(page)
    return page.render(
        "admin/groups.html",
        section="groups",
        groups=found,
        paging=pages_of(total, request),
        group_types=GroupType,
        # LDAP groups are made from the directory (their own form, under ldap_auth only, as
        # the API refuses them otherwise); HTTP and OIDC groups by name, in any mode.
        named_group_types=[GroupType.HTTP, GroupType.OIDC],
        default_type=GroupType.OIDC if mode == "oidc_auth" else GroupType.HTTP,
        picker=picker,
        picker_url=ADMIN + "/groups/ldap-picker",
        list_url=lambda **p: with_query(ADMIN + "/groups", **p),
    )


async def ldap_group_picks(page: Page) -> Response:
    """The picker's results alone, for htmx as the search field changes."""
    require_system(page, Action.LIST, Resource.USER_GROUP)
    picker = await authentication.ldap_group_picker(page)
    if picker is None:
        raise BadRequestError("LDAP groups can be picked only while auth_mode is ldap_auth")
    return page.render("admin/_ldap_group_picks.html", picker=picker, taken_disabled=True)


async def create_group(page: Page) -> Response:
    require_system(page, Action.CREATE, Resource.USER_GROUP)
    kind = page.int_field("group_type", int(GroupType.HTTP))
    name = page.field("group_name").strip()
    found = None
    dn = None
    if kind == GroupType.LDAP:
        dn = picked_dn(page)
        found = await page.state.identity.ldap_group(dn)  # the directory must have it
    async with page.state.db.write() as session:
        group = await users.create_group(
            session,
            group_name=name or None,
            group_type=kind,
            ldap_group_dn=dn,
            operator=page.actor(),
            directory_group=found,
        )
        name = group.group_name
    return page.redirect(ADMIN + "/groups", "flash.group_created", name=name)


async def rename_group(page: Page) -> Response:
    require_system(page, Action.UPDATE, Resource.USER_GROUP)
    async with page.state.db.write() as session:
        group = await users.rename_group(
            session, page.path_int("group"), page.field("group_name"), operator=page.actor()
        )
        name = group.group_name
    return page.redirect(ADMIN + "/groups", "flash.group_renamed", name=name)


async def delete_group(page: Page) -> Response:
    require_system(page, Action.DELETE, Resource.USER_GROUP)
    async with page.state.db.write() as session:
        await users.delete_group(session, page.path_int("group"), operator=page.actor())
    return page.redirect(ADMIN + "/groups", "flash.group_deleted")


# --- system robot accounts -------------------------------------------------------------------


def system_catalogue() -> list[tuple[str, list[str]]]:
    return sorted(
        (str(resource), sorted(str(a) for a in actions))
        for resource, actions in grantable(ROBOT_SYSTEM_PERMISSIONS).items()
    )


async def robot_list(page: Page) -> Response:
    require_system(page, Action.LIST, Resource.ROBOT)
    request = page.page_request()
    async with page.state.db.read() as session:
        found, total = await robots.list_robots(
            session,
            page.principal,
            q="Level=system",
            sort="-creation_time",
            page=request,
            prefix=page.state.settings.robot_name_prefix,
        )
        default_days = await config.value(session, config.ROBOT_TOKEN_DURATION)
    return page.render(
        "admin/robots.html",
        section="robots",
        robots=found,
        paging=pages_of(total, request),
        catalogue=system_catalogue(),
        duration_default=default_days,
        list_url=lambda **p: with_query(ADMIN + "/robots", **p),
    )


async def create_robot(page: Page) -> Response:
    require_system(page, Action.CREATE, Resource.ROBOT)
    allowed = {(r, a) for r, actions in system_catalogue() for a in actions}
    system_access = []
    for value in page.fields("perm"):
        resource, _, action = value.partition(":")
        if (resource, action) not in allowed:
            raise BadRequestError(f"unknown permission {value[:80]}")
        system_access.append(Access(resource=resource, action=action, effect="allow"))
    permissions = []
    if system_access:
        permissions.append(RobotPermission(kind="system", namespace="/", access=system_access))
    project_actions = [a for a in ("pull", "push") if page.checked(f"all_projects_{a}")]
    if project_actions:
        permissions.append(
            RobotPermission(
                kind="project",
                namespace="*",
                access=[
                    Access(resource="repository", action=a, effect="allow") for a in project_actions
                ],
            )
        )
    if not permissions:
        raise BadRequestError("pick at least one permission")
    prefix = page.state.settings.robot_name_prefix
    body = RobotCreate(
        name=page.field("name").strip(),
        description=page.field("description"),
        level="system",
        duration=page.int_field("duration", 0),  # blank: the service takes robot_token_duration
        permissions=permissions,
    )
    secret = await robots.new_secret(None)
    async with page.state.db.write() as session:
        created = await robots.create_robot(
            session, page.principal, body, secret, prefix, operator=page.actor()
        )
        full_name = created.full_name
    return page.render(
        "robot_secret.html",
        robot_name=full_name,
        secret=secret.secret,
        download=secret_download(full_name, secret.secret),
        back=ADMIN + "/robots",
    )


async def system_robot_action(page: Page) -> Response:
    require_system(page, Action.DELETE, Resource.ROBOT)
    return await robot_action(page, page.path_int("robot"), ADMIN + "/robots")


# --- global labels ---------------------------------------------------------------------------


async def label_list(page: Page) -> Response:
    require_system(page, Action.CREATE, Resource.LABEL)
    request = page.page_request()
    async with page.state.db.read() as session:
        found, total = await labels.list_labels(
            session,
            page.principal,
            scope="g",
            project_id=None,
            name=None,
            q=None,
            sort="name",
            page=request,
        )
    return page.render(
        "admin/labels.html",
        section="labels",
        labels=found,
        paging=pages_of(total, request),
        list_url=lambda **p: with_query(ADMIN + "/labels", **p),
    )


async def create_label(page: Page) -> Response:
    require_system(page, Action.CREATE, Resource.LABEL)
    async with page.state.db.write() as session:
        await labels.create_label(
            session, page.principal, page.actor(), label_body(page, "g", None)
        )
    return page.redirect(ADMIN + "/labels", "flash.label_created", name=page.field("name"))


async def update_label(page: Page) -> Response:
    require_system(page, Action.UPDATE, Resource.LABEL)
    async with page.state.db.write() as session:
        label = await labels.get_label(session, page.principal, page.path_int("label"))
        if label.scope != "g":
            raise BadRequestError("the label is a project's; edit it in its project")
        await labels.update_label(session, page.principal, page.actor(), label.id, label_edit(page))
    return page.redirect(ADMIN + "/labels", "flash.label_saved")


async def delete_label(page: Page) -> Response:
    require_system(page, Action.DELETE, Resource.LABEL)
    async with page.state.db.write() as session:
        await labels.delete_label(session, page.principal, page.actor(), page.path_int("label"))
    return page.redirect(ADMIN + "/labels", "flash.label_deleted")


# --- audit log -------------------------------------------------------------------------------


async def audit_log(page: Page) -> Response:
    require_system(page, Action.LIST, Resource.AUDIT_LOG)
    request = page.page_request()
    filters = AuditFilters.from_page(page)
    async with page.state.db.read() as session:
        found, total = await audit.list_logs(session, page.principal, filters.q(), None, request)
    return page.render(
        "admin/audit.html",
        section="audit",
        logs=found,
        paging=pages_of(total, request),
        filters=filters,
        operations=AUDIT_OPERATIONS,
        list_url=lambda **p: with_query(ADMIN + "/audit-logs", **filters.as_query(), **p),
    )


# --- project quotas ----------------------------------------------------------------------------


async def quota_list(page: Page) -> Response:
    require_system(page, Action.LIST, Resource.QUOTA)
    request = page.page_request()
    sort = "-used.storage" if page.query("sort") == "used" else None
    async with page.state.db.read() as session:
        found, total = await quotas.list_quotas(
            session, page.principal, quotas.QuotaQuery(sort=sort), request
        )
    return page.render(
        "admin/quotas.html",
        section="quotas",
        quotas=found,
        paging=pages_of(total, request),
        sort=page.query("sort"),
        list_url=lambda **p: with_query(ADMIN + "/quotas", sort=page.query("sort"), **p),
    )


async def update_quota(page: Page) -> Response:
    """A project's storage limit in GiB (-1: unlimited); the service checks and records it."""
    require_system(page, Action.UPDATE, Resource.QUOTA)
    raw = page.field("limit_gib").strip()
    try:
        amount = float(raw)
    except ValueError:
        raise BadRequestError("the limit must be a number of GiB, or -1") from None
    limit = -1 if amount < 0 else int(amount * GIB)
    async with page.state.db.write() as session:
        await quotas.update_quota(
            session,
            page.principal,
            page.actor(),
            page.path_int("quota"),
            QuotaUpdateReq(hard={quotas.STORAGE: limit}),
        )
    return page.redirect(page.back(), "flash.quota_saved")


# --- configuration and system information ----------------------------------------------------


async def configuration(page: Page) -> Response:
    require_system(page, Action.UPDATE, Resource.USER)
    async with page.state.db.read() as session:
        items = await config.current(session, page.state.settings)
        auth = await authentication.section(session)
    return page.render(
        "admin/configuration.html",
        section="configuration",
        items=items,
        auth=auth,
        editable=EDITABLE_SETTINGS,
        # Items of features Dockyard lacks are not offered (the API shows them read-only).
        shown=sorted(k for k, (_, e) in items.items() if not e and not config.ITEMS[k].missing),
    )


async def update_configuration(page: Page) -> Response:
    """The editable items, all or nothing (``config.update`` checks each), audited by key."""
    require_system(page, Action.UPDATE, Resource.USER)
    changes: dict[str, object] = {}
    for key in EDITABLE_SETTINGS:
        if key in (
            config.SELF_REGISTRATION,
            config.NOTIFICATION_ENABLE,
            config.QUOTA_PER_PROJECT_ENABLE,
            config.READ_ONLY,
        ):
            changes[key] = page.checked(key)
        elif key in (
            config.ROBOT_TOKEN_DURATION,
            config.STORAGE_PER_PROJECT,
            config.TOKEN_EXPIRATION,
            config.SESSION_TIMEOUT,
        ):
            number = page.int_field(key)
            if number is not None:  # a field the form did not send is left as it is
                changes[key] = number
        elif key == config.ROBOT_NAME_PREFIX:
            prefix = page.field(key).strip()
            if prefix:  # left blank or not sent: left as it is
                changes[key] = prefix
        else:
            changes[key] = page.field(key)
    async with page.state.db.write() as session:
        await system.update_configuration(session, page.actor(), changes)
    return page.redirect(ADMIN + "/configuration", "flash.configuration_saved")


async def system_info(page: Page) -> Response:
    require_system(page, Action.READ, Resource.SYSTEM_VOLUMES)
    health = await page.state.health.components()
    async with page.state.db.read() as session:
        stats = await system.statistics(session, page.principal)
        props = await system.system_properties(session)
        timeout = await config.run_time_value(session, config.SESSION_TIMEOUT)
    settings = page.state.settings
    return page.render(
        "admin/system.html",
        section="system",
        health=health,
        stats=stats,
        props=props,
        version=system.dockyard_version(),
        external_url=page.base_url(),
        database=settings.effective_database_url.split(":", 1)[0],
        session_timeout=settings.session_timeout_minutes if timeout is None else timeout,
    )
