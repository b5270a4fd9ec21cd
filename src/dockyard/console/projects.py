"""Console pages of projects: the list, creation, deletion, and each project's tabs.

Each handler resolves the project through ``projects.service.resolve_project``
(a private project is a 404 to outsiders) and calls the same service function
as the REST API, which asks ``can`` again; the templates get ``allowed`` to hide
what the caller may not do.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from dockyard.artifacts import service as artifacts
from dockyard.audit import service as audit
from dockyard.console import authentication
from dockyard.console.audit_filters import OPERATIONS as AUDIT_OPERATIONS
from dockyard.console.audit_filters import AuditFilters
from dockyard.console.web import PREFIX, Page, usage_percent, with_query
from dockyard.db.listing import PageRequest
from dockyard.errors import BadRequestError, DeniedError
from dockyard.iam import users
from dockyard.iam.policy import (
    ROBOT_PROJECT_PERMISSIONS,
    Action,
    ProjectContext,
    Resource,
    Role,
    can,
)
from dockyard.immutability import service as immutability
from dockyard.immutability.schemas import ImmutableRule, ImmutableSelector
from dockyard.labels import service as labels
from dockyard.labels.schemas import Label as LabelBody
from dockyard.projects import allowlists
from dockyard.projects import service as projects
from dockyard.projects.models import Project
from dockyard.projects.schemas import ProjectMember, ProjectMetadata, ProjectReq, UserEntity
from dockyard.projects.schemas import UserGroup as GroupEntity
from dockyard.proxy import service as proxy
from dockyard.robots import service as robots
from dockyard.robots.permissions import grantable
from dockyard.robots.schemas import Access, RobotCreate, RobotPermission
from dockyard.robots.schemas import Robot as RobotBody
from dockyard.scan import hooks as scan_hooks
from dockyard.signatures import service as signatures
from dockyard.signatures.schemas import TrustedKeyReq
from dockyard.system import config

PROJECT_SORTS = {
    "name": "name",
    "-name": "-name",
    "created": "creation_time",
    "-created": "-creation_time",
}
ROLE_CHOICES = (Role.PROJECT_ADMIN, Role.MAINTAINER, Role.DEVELOPER, Role.GUEST, Role.LIMITED_GUEST)
GiB = 1024**3
ARTIFACT_COUNT_CAP = 10_000
"""The summary counts a project's artifacts up to here and shows "10,000+" beyond."""


def project_url(name: str, tab: str = "") -> str:
    return f"{PREFIX}/projects/{quote(name, safe='')}" + (f"/{tab}" if tab else "")


@dataclass(frozen=True, slots=True)
class ProjectHeader:
    """What a project tab's header shows (name, public badge): known from the access check
    already, so the tabs that need nothing more skip the project view's queries."""

    name: str
    metadata: dict[str, str]


def header(context: ProjectContext) -> ProjectHeader:
    return ProjectHeader(context.name, {"public": "true" if context.public else "false"})


def allowed_in(page: Page, context: ProjectContext | None) -> Callable[[str, str], bool]:
    def allowed(action: str, resource: str) -> bool:
        return can(page.principal, Action(action), Resource(resource), context)

    return allowed


def pages_of(total: int, request: PageRequest) -> dict[str, int]:
    last = max(1, -(-total // request.page_size))
    return {"page": request.page, "last": last, "total": total, "size": request.page_size}


async def _project(session: AsyncSession, page: Page) -> tuple[Project, ProjectContext]:
    return await projects.resolve_project(session, page.principal, page.path("project"), True)


async def _render_tab(page: Page, tab: str, template: str, **context: Any) -> Response:
    return page.render(template, tab=tab, **context)


# --- the list ------------------------------------------------------------------------------


async def project_list(page: Page) -> Response:
    search = page.query("q").strip()[:255]
    sort_key = page.query("sort", "name")
    sort = PROJECT_SORTS.get(sort_key, "name")
    request = page.page_request()
    query = projects.ProjectQuery(name=search or None, sort=sort)
    async with page.state.db.read() as session:
        found, total = await projects.list_projects(session, page.principal, query, request)
    may_create = not page.principal.is_anonymous and (
        page.principal.sysadmin or await _creation_open(page)
    )
    endpoints: list[tuple[int, str, str]] = []
    if page.principal.sysadmin and may_create:  # only an administrator makes a proxy cache
        async with page.state.db.read() as session:
            endpoints = await proxy.proxy_endpoints(session)
    template = (
        "projects/_table.html"
        if page.request.headers.get("hx-target") == "project-table"
        else "projects/list.html"
    )
    return page.render(
        template,
        projects=found,
        paging=pages_of(total, request),
        search=search,
        sort=sort_key,
        may_create=may_create,
        proxy_endpoints=endpoints,
        list_url=lambda **p: with_query(PREFIX + "/projects", q=search, sort=sort_key, **p),
    )


async def _creation_open(page: Page) -> bool:
    from dockyard.system import config

    async with page.state.db.read() as session:
        who = await config.value(session, config.PROJECT_CREATION_RESTRICTION)
    return who == "everyone"


async def create_project(page: Page) -> Response:
    name = page.field("project_name").strip()
    limit_gib = page.field("storage_limit_gib").strip()
    storage_limit: int | None = None
    if limit_gib:
        try:
            amount = float(limit_gib)
        except ValueError:
            raise BadRequestError("the quota must be a number of GiB, or -1") from None
        storage_limit = -1 if amount < 0 else int(amount * GiB)
    proxy_cache = page.checked("proxy_cache")
    registry_id: int | None = None
    speed: str | None = None
    if proxy_cache:
        chosen = page.field("registry_id").strip()
        if not chosen.isdigit():
            raise BadRequestError("choose the registry endpoint the proxy cache pulls from")
        registry_id = int(chosen)
        speed = page.field("proxy_speed_kb").strip() or None
    req = ProjectReq(
        project_name=name,
        public=page.checked("public"),
        metadata=ProjectMetadata(
            public="true" if page.checked("public") else "false", proxy_speed_kb=speed
        ),
        storage_limit=storage_limit,
        registry_id=registry_id,
    )
    actor = page.actor()
    async with page.state.db.write() as session:
        endpoint = None
        if registry_id is not None:
            if not page.principal.sysadmin:
                raise DeniedError("Only system admin can create proxy cache project")
            endpoint = await proxy.check_endpoint(session, registry_id)
        project = await projects.create_project_for(
            session, page.principal, req, operator=actor, proxy_endpoint=endpoint
        )
        if endpoint is not None:
            await proxy.set_up_project(session, page.principal, actor, project)
        created = project.name
    return page.redirect(project_url(created), "flash.project_created", name=created)


async def delete_project(page: Page) -> Response:
    async with page.state.db.write() as session:
        project, context = await _project(session, page)
        verdict = await projects.project_deletable(session, page.principal, project, context)
        if not verdict.deletable:
            # The only refusal today is "it holds repositories": say it once, translated
            # (the service's own message repeats "cannot be deleted").
            return page.redirect(
                project_url(project.name), "flash.project_has_repositories", "error"
            )
        await projects.delete_project(
            session, page.principal, project, context, operator=page.actor()
        )
    return page.redirect(PREFIX + "/projects", "flash.project_deleted", name=project.name)


# --- summary and repositories --------------------------------------------------------------


async def summary(page: Page) -> Response:
    async with page.state.db.read() as session:
        project, context = await _project(session, page)
        view = await projects.project_view(session, page.principal, project, context)
        facts = await projects.project_summary(session, page.principal, project, context)
        artifact_total = None
        if can(page.principal, Action.LIST, Resource.ARTIFACT, context):
            artifact_total = await artifacts.project_artifact_count(
                session, page.principal, context, ARTIFACT_COUNT_CAP + 1
            )
    members = None
    if facts.project_admin_count is not None:
        members = sum(
            c or 0
            for c in (
                facts.project_admin_count,
                facts.maintainer_count,
                facts.developer_count,
                facts.guest_count,
                facts.limited_guest_count,
            )
        )
    quota = None
    if facts.quota is not None:
        hard, used = facts.quota.hard.get("storage", -1), facts.quota.used.get("storage", 0)
        quota = {
            "hard": hard,
            "used": used,
            "percent": usage_percent(used, hard),
        }
    return page.render(
        "projects/summary.html",
        tab="summary",
        project=view,
        context=context,
        allowed=allowed_in(page, context),
        facts=facts,
        members=members,
        quota=quota,
        artifact_total=artifact_total,
        artifact_cap=ARTIFACT_COUNT_CAP,
        registry=page.registry_host(),
    )


async def repositories(page: Page) -> Response:
    search = page.query("q").strip()[:255]
    request = page.page_request()
    async with page.state.db.read() as session:
        project, context = await _project(session, page)
        view = header(context)
        q = f"name=~{search}" if search else None
        found, total = await artifacts.list_repositories(
            session, page.principal, project.name, q, "-update_time", request
        )
    return page.render(
        "projects/repositories.html",
        tab="repositories",
        project=view,
        context=context,
        allowed=allowed_in(page, context),
        repositories=found,
        paging=pages_of(total, request),
        search=search,
        registry=page.registry_host(),
        list_url=lambda **p: with_query(project_url(project.name, "repositories"), q=search, **p),
    )


# --- members -------------------------------------------------------------------------------


async def members(page: Page) -> Response:
    request = page.page_request()
    async with page.state.db.read() as session:
        project, context = await _project(session, page)
        view = header(context)
        found, total = await projects.list_members(
            session, page.principal, project, context, None, request
        )
    picker = await authentication.ldap_group_picker(page)
    return page.render(
        "projects/members.html",
        tab="members",
        project=view,
        context=context,
        allowed=allowed_in(page, context),
        members=found,
        paging=pages_of(total, request),
        roles=ROLE_CHOICES,
        picker=picker,
        picker_url=project_url(project.name, "members/ldap-picker"),
        list_url=lambda **p: with_query(project_url(project.name, "members"), **p),
    )


async def member_ldap_picks(page: Page) -> Response:
    """The LDAP group picker's results alone (htmx), for those who may add members."""
    async with page.state.db.read() as session:
        _, context = await _project(session, page)
    projects.require(page.principal, Action.CREATE, Resource.MEMBER, context)
    picker = await authentication.ldap_group_picker(page)
    if picker is None:
        raise BadRequestError("LDAP groups can be picked only while auth_mode is ldap_auth")
    return page.render("admin/_ldap_group_picks.html", picker=picker, taken_disabled=False)


async def member_suggestions(page: Page) -> Response:
    """Names to pick from while typing a new member (a ``<datalist>`` htmx swaps in): users,
    or groups, whose name contains what was typed; for those who may add members."""
    fragment = page.query("name").strip()[:64]
    async with page.state.db.read() as session:
        _, context = await _project(session, page)
        projects.require(page.principal, Action.CREATE, Resource.MEMBER, context)
        names: list[str] = []
        if len(fragment) >= 2 and fragment.isprintable():
            if page.query("kind") == "group":
                groups, _ = await users.search_groups(session, fragment, PageRequest(1, 10))
                names = [group.group_name for group in groups]
            else:
                found, _ = await users.search_users(session, fragment, PageRequest(1, 10))
                names = [name for _, name in found]
    return page.render("projects/_member_suggestions.html", names=names)


def _role_field(page: Page) -> int:
    role = page.int_field("role_id")
    if role is None or role not in {int(r) for r in ROLE_CHOICES}:
        raise BadRequestError("choose a role")
    return role


async def add_member(page: Page) -> Response:
    role = _role_field(page)
    name = page.field("name").strip()
    found = None
    kind = page.field("kind")
    if kind == "ldap_group":
        # As createProjectMember with member_group.ldap_group_dn: a DN no user group has yet
        # is looked up in the directory and its group created.
        name = picked_dn(page)
        async with page.state.db.read() as session:
            _, context = await _project(session, page)
        projects.require(page.principal, Action.CREATE, Resource.MEMBER, context)
        found = await page.state.identity.unknown_ldap_group(name)
        req = ProjectMember(role_id=role, member_group=GroupEntity(ldap_group_dn=name))
    elif not name:
        raise BadRequestError("give a user or group name")
    elif kind == "group":
        async with page.state.db.read() as session:
            similar, _ = await users.list_groups(session, PageRequest(1, 50), group_name=name)
        groups = [group for group in similar if group.group_name == name]
        if not groups:
            raise BadRequestError(f"no user group is named {name}")
        req = ProjectMember(role_id=role, member_group=GroupEntity(id=groups[0].id))
    else:
        req = ProjectMember(role_id=role, member_user=UserEntity(username=name))
    async with page.state.db.write() as session:
        project, context = await _project(session, page)
        if found is not None:  # rolled back with the rest when add_member refuses
            name = (await users.ensure_ldap_group(session, found, operator=page.actor())).group_name
        await projects.add_member(
            session, page.principal, project, context, req, operator=page.actor()
        )
    return page.redirect(project_url(project.name, "members"), "flash.member_added", name=name)


def picked_dn(page: Page) -> str:
    """The DN picked from the directory's groups, or typed; one of them."""
    picked = page.field("ldap_group_dn").strip()
    typed = page.field("typed_dn").strip()
    if picked and typed and picked != typed:
        raise BadRequestError("pick a directory group or type a DN, not both")
    if not (picked or typed):
        raise BadRequestError("pick a directory group or type its DN")
    return picked or typed


async def change_member(page: Page) -> Response:
    member_id, role = page.path_int("member"), _role_field(page)
    async with page.state.db.write() as session:
        project, context = await _project(session, page)
        await projects.update_member(
            session, page.principal, project, context, member_id, role, operator=page.actor()
        )
    return page.redirect(project_url(project.name, "members"), "flash.member_changed")


async def remove_member(page: Page) -> Response:
    member_id = page.path_int("member")
    async with page.state.db.write() as session:
        project, context = await _project(session, page)
        await projects.delete_member(
            session, page.principal, project, context, member_id, operator=page.actor()
        )
    return page.redirect(project_url(project.name, "members"), "flash.member_removed")


# --- robot accounts ------------------------------------------------------------------------


def robot_catalogue() -> list[tuple[str, list[str]]]:
    """The project robot permissions by resource, for the picker."""
    return sorted(
        (str(resource), sorted(str(a) for a in actions))
        for resource, actions in grantable(ROBOT_PROJECT_PERMISSIONS).items()
    )


async def project_robots(page: Page) -> Response:
    request = page.page_request()
    prefix = page.state.settings.robot_name_prefix
    async with page.state.db.read() as session:
        project, context = await _project(session, page)
        view = header(context)
        found, total = await robots.list_robots(
            session,
            page.principal,
            q=f"Level=project,ProjectID={project.project_id}",
            sort="-creation_time",
            page=request,
            prefix=prefix,
        )
        default_days = await config.value(session, config.ROBOT_TOKEN_DURATION)
    return page.render(
        "projects/robots.html",
        tab="robots",
        project=view,
        context=context,
        allowed=allowed_in(page, context),
        robots=found,
        paging=pages_of(total, request),
        catalogue=robot_catalogue(),
        duration_default=default_days,
        list_url=lambda **p: with_query(project_url(project.name, "robots"), **p),
    )


def _picked_access(page: Page) -> list[Access]:
    allowed = {(r, a) for r, actions in robot_catalogue() for a in actions}
    picked = []
    for value in page.fields("perm"):
        resource, _, action = value.partition(":")
        if (resource, action) not in allowed:
            raise BadRequestError(f"unknown permission {value[:80]}")
        picked.append(Access(resource=resource, action=action, effect="allow"))
    if not picked:
        raise BadRequestError("pick at least one permission")
    return picked


def secret_download(name: str, secret: str) -> str:
    return "data:application/json;charset=utf-8," + quote(
        json.dumps({"name": name, "secret": secret})
    )


async def create_project_robot(page: Page) -> Response:
    prefix = page.state.settings.robot_name_prefix
    duration = page.int_field("duration", 0)  # blank: the service takes robot_token_duration
    async with page.state.db.read() as session:
        project, _ = await _project(session, page)
    body = RobotCreate(
        name=page.field("name").strip(),
        description=page.field("description"),
        level="project",
        duration=duration,
        permissions=[
            RobotPermission(kind="project", namespace=project.name, access=_picked_access(page))
        ],
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
        back=project_url(project.name, "robots"),
    )


async def robot_action(page: Page, robot_id: int, back: str) -> Response:
    """Refresh, disable, enable or delete a robot (project or system); the service authorises."""
    verb = page.path("verb")
    prefix = page.state.settings.robot_name_prefix
    if verb == "refresh":
        secret = await robots.new_secret(None)
        async with page.state.db.write() as session:
            await robots.refresh_secret(
                session, page.principal, robot_id, secret, operator=page.actor(), prefix=prefix
            )
            view = await robots.get_robot(session, page.principal, robot_id, prefix)
        name = view.name or ""
        return page.render(
            "robot_secret.html",
            robot_name=name,
            secret=secret.secret,
            download=secret_download(name, secret.secret),
            back=back,
        )
    async with page.state.db.write() as session:
        if verb in ("disable", "enable"):
            await robots.update_robot(
                session,
                page.principal,
                robot_id,
                RobotBody(disable=verb == "disable"),
                prefix,
                operator=page.actor(),
            )
        elif verb == "delete":
            await robots.delete_robot(
                session, page.principal, robot_id, operator=page.actor(), prefix=prefix
            )
        else:
            raise BadRequestError(f"no robot action {verb[:40]}")
    return page.redirect(back, f"flash.robot_{verb}d")


async def project_robot_action(page: Page) -> Response:
    async with page.state.db.read() as session:
        project, _ = await _project(session, page)
    return await robot_action(page, page.path_int("robot"), project_url(project.name, "robots"))


# --- labels --------------------------------------------------------------------------------


async def project_labels(page: Page) -> Response:
    request = page.page_request()
    async with page.state.db.read() as session:
        project, context = await _project(session, page)
        view = header(context)
        found, total = await labels.list_labels(
            session,
            page.principal,
            scope="p",
            project_id=project.project_id,
            name=None,
            q=None,
            sort="name",
            page=request,
        )
    return page.render(
        "projects/labels.html",
        tab="labels",
        project=view,
        context=context,
        allowed=allowed_in(page, context),
        labels=found,
        paging=pages_of(total, request),
        list_url=lambda **p: with_query(project_url(project.name, "labels"), **p),
    )


def label_body(page: Page, scope: str, project_id: int | None) -> LabelBody:
    return LabelBody(
        name=page.field("name").strip(),
        description=page.field("description"),
        color=page.field("color") or "#0065AB",
        scope=scope,
        project_id=project_id,
    )


async def create_project_label(page: Page) -> Response:
    async with page.state.db.read() as session:
        project, _ = await _project(session, page)
    async with page.state.db.write() as session:
        await labels.create_label(
            session, page.principal, page.actor(), label_body(page, "p", project.project_id)
        )
    return page.redirect(
        project_url(project.name, "labels"), "flash.label_created", name=page.field("name")
    )


async def update_project_label(page: Page) -> Response:
    async with page.state.db.read() as session:
        project, _ = await _project(session, page)
    async with page.state.db.write() as session:
        label = await labels.get_label(session, page.principal, page.path_int("label"))
        if label.project_id != project.project_id:
            raise BadRequestError("the label is not one of this project's")
        await labels.update_label(session, page.principal, page.actor(), label.id, label_edit(page))
    return page.redirect(project_url(project.name, "labels"), "flash.label_saved")


def label_edit(page: Page) -> LabelBody:
    """The fields an edit may change (scope and project stay)."""
    return LabelBody(
        name=page.field("name").strip(),
        description=page.field("description"),
        color=page.field("color") or None,
    )


async def delete_project_label(page: Page) -> Response:
    async with page.state.db.read() as session:
        project, _ = await _project(session, page)
    async with page.state.db.write() as session:
        label = await labels.get_label(session, page.principal, page.path_int("label"))
        if label.project_id != project.project_id:
            raise BadRequestError("the label is not one of this project's")
        await labels.delete_label(session, page.principal, page.actor(), label.id)
    return page.redirect(project_url(project.name, "labels"), "flash.label_deleted")


# --- tag immutability ------------------------------------------------------------------------


async def immutable_rules(page: Page) -> Response:
    request = page.page_request()
    async with page.state.db.read() as session:
        project, context = await _project(session, page)
        view = header(context)
        found, total = await immutability.list_rules(
            session, page.principal, project.name, True, None, None, request
        )
    return page.render(
        "projects/immutability.html",
        tab="immutability",
        project=view,
        context=context,
        allowed=allowed_in(page, context),
        rules=found,
        paging=pages_of(total, request),
        list_url=lambda **p: with_query(project_url(project.name, "immutability"), **p),
    )


def _selector(decoration: str, pattern: str, scope: bool = False) -> ImmutableSelector:
    if decoration not in ("matches", "excludes"):
        raise BadRequestError("choose matching or excluding")
    if scope:
        decoration = "repoMatches" if decoration == "matches" else "repoExcludes"
    return ImmutableSelector(
        kind="doublestar", decoration=decoration, pattern=pattern.strip() or "**"
    )


async def create_immutable_rule(page: Page) -> Response:
    body = ImmutableRule(
        disabled=False,
        action="immutable",
        template="immutable_template",
        tag_selectors=[
            _selector(page.field("tag_decoration", "matches"), page.field("tag_pattern"))
        ],
        scope_selectors={
            "repository": [
                _selector(
                    page.field("repo_decoration", "matches"),
                    page.field("repo_pattern"),
                    scope=True,
                )
            ]
        },
    )
    async with page.state.db.write() as session:
        await immutability.create_rule(
            session, page.principal, page.actor(), page.path("project"), True, body
        )
    return page.redirect(project_url(page.path("project"), "immutability"), "flash.rule_created")


async def immutable_rule_action(page: Page) -> Response:
    rule_id, verb, name = page.path_int("rule"), page.path("verb"), page.path("project")
    async with page.state.db.write() as session:
        if verb == "delete":
            await immutability.delete_rule(
                session, page.principal, page.actor(), name, True, rule_id
            )
        elif verb in ("disable", "enable"):
            await immutability.update_rule(
                session,
                page.principal,
                page.actor(),
                name,
                True,
                rule_id,
                ImmutableRule(disabled=verb == "disable"),
            )
        else:
            raise BadRequestError(f"no rule action {verb[:40]}")
    return page.redirect(project_url(name, "immutability"), "flash.rule_changed")


# --- logs and configuration ------------------------------------------------------------------


async def project_logs(page: Page) -> Response:
    request = page.page_request()
    filters = AuditFilters.from_page(page)
    async with page.state.db.read() as session:
        project, context = await _project(session, page)
        projects.require(page.principal, Action.LIST, Resource.LOG, context)
        view = header(context)
        found, total = await audit.list_project_logs(
            session, project.project_id, filters.q(), None, request
        )
    return page.render(
        "projects/logs.html",
        tab="logs",
        project=view,
        context=context,
        allowed=allowed_in(page, context),
        logs=found,
        paging=pages_of(total, request),
        filters=filters,
        operations=AUDIT_OPERATIONS,
        list_url=lambda **p: with_query(
            project_url(project.name, "logs"), **filters.as_query(), **p
        ),
    )


async def configuration(page: Page) -> Response:
    async with page.state.db.read() as session:
        project, context = await _project(session, page)
        view = await projects.project_view(session, page.principal, project, context)
        keys = await signatures.list_keys(session, page.principal, project.name, True)
        system_list = await allowlists.view(session, allowlists.SYSTEM)
    return page.render(
        "projects/configuration.html",
        system_allowlist=system_list,
        sbom_on_push=offers_sbom_on_push(),
        project_severities=projects.SEVERITIES,
        tab="configuration",
        project=view,
        context=context,
        allowed=allowed_in(page, context),
        keys=[signatures.key_view(k) for k in keys],
    )


_SWITCHES = (
    "public",
    "enable_content_trust_cosign",
    "enable_content_trust",
    "auto_scan",
    "prevent_vul",
)
"""The project switches the page offers (``auto_sbom_generation`` too once the API takes it)."""


def offers_sbom_on_push() -> bool:
    """Whether the API accepts ``auto_sbom_generation: "true"`` (the switch is offered only
    then: a switch for something not built is not shown)."""
    return "auto_sbom_generation" not in projects.MISSING_FEATURE_METADATA


async def update_configuration(page: Page) -> Response:
    switches = (*_SWITCHES, "auto_sbom_generation") if offers_sbom_on_push() else _SWITCHES
    values = {k: "true" if page.checked(k) else "false" for k in switches}
    if page.field("severity"):
        values["severity"] = page.field("severity")
    if page.field("allowlist") in ("system", "project"):
        values["reuse_sys_cve_allowlist"] = (
            "true" if page.field("allowlist") == "system" else "false"
        )
    req = ProjectReq(metadata=ProjectMetadata(**values))
    async with page.state.db.write() as session:
        project, context = await _project(session, page)
        await projects.update_project(
            session, page.principal, project, context, req, operator=page.actor()
        )
    hook = scan_hooks.find(page.state.registry.hooks.hooks)
    if hook is not None:
        hook.auto_scan_changed()  # scan on push reads the switch again (as the API does)
    return page.redirect(project_url(project.name, "configuration"), "flash.configuration_saved")


async def add_trusted_key(page: Page) -> Response:
    name = page.path("project")
    async with page.state.db.read() as session:
        await signatures.check_access(session, page.principal, name, True, Action.UPDATE)
    try:
        body = TrustedKeyReq.model_validate(
            {
                "kind": page.field("kind"),
                "pem": page.field("pem"),
                "identities": [
                    line for line in page.field("identities").splitlines() if line.strip()
                ],
                "description": page.field("description"),
            }
        )
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:3]
        )
        raise BadRequestError(f"the key cannot be trusted: {problems}") from None
    described = await signatures.describe(body)
    async with page.state.db.write() as session:
        await signatures.add_key(session, page.principal, page.actor(), name, True, body, described)
    return page.redirect(project_url(name, "configuration"), "flash.key_added")


async def remove_trusted_key(page: Page) -> Response:
    name = page.path("project")
    async with page.state.db.write() as session:
        await signatures.delete_key(
            session, page.principal, page.actor(), name, True, page.path_int("key")
        )
    return page.redirect(project_url(name, "configuration"), "flash.key_removed")
