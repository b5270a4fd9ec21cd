"""``/api/v2.0`` project, project metadata and project member endpoints (Harbor's swagger).

Every handler that names a project resolves it with ``service.resolve_project``,
which hides a private project from outsiders (401 anonymous, 404 signed in);
the service then asks ``can`` for the specific permission (403).
"""

from __future__ import annotations

from starlette.responses import Response

from dockyard.audit import service as audit
from dockyard.audit.events import AuditEvent
from dockyard.errors import BadRequestError, DeniedError, UnauthorizedError
from dockyard.http.api import (
    API_PREFIX,
    ApiRequest,
    Operation,
    created_response,
    empty_response,
    json_response,
    operation,
    paged_response,
)
from dockyard.iam import users
from dockyard.iam.policy import Action, Principal, Resource, can
from dockyard.iam.providers.ldap import DirectoryGroup
from dockyard.projects import allowlists, service
from dockyard.projects.models import Project
from dockyard.projects.schemas import (
    CVEAllowlist,
    MetadataMap,
    ProjectDeletable,
    ProjectMember,
    ProjectMemberEntity,
    ProjectReq,
    ProjectSummary,
    RoleRequest,
)
from dockyard.projects.schemas import Project as ProjectSchema
from dockyard.proxy import service as proxy
from dockyard.scan import hooks as scan_hooks

PROJECT = "/projects/{project_name_or_id}"


def _header_flag(api: ApiRequest, name: str) -> bool:
    """A boolean header such as ``X-Is-Resource-Name``; anything but true/1 is false
    (several operations declare no 400 to refuse it with)."""
    raw = api.header(name)
    return raw is not None and raw.strip().lower() in ("true", "1")


def _optional_bool(api: ApiRequest, name: str) -> bool | None:
    raw = api.query(name)
    if raw is None or raw == "":
        return None
    return api.query_bool(name)


def _name_or_id(api: ApiRequest) -> tuple[str, bool]:
    """The ``{project_name_or_id}`` segment and whether it must be read as a name."""
    return api.path("project_name_or_id"), _header_flag(api, "X-Is-Resource-Name")


async def _allowed(api: ApiRequest, action: Action, resource: Resource) -> Principal:
    """Check access before reading a body, outside the write transaction (which must not
    wait on the client); the write transaction resolves the project again."""
    principal = await api.principal()
    async with api.state.db.read() as session:
        _, context = await service.resolve_project(session, principal, *_name_or_id(api))
    service.require(principal, action, resource, context)
    return principal


# --- projects ------------------------------------------------------------------------------


def _metadata_changed(api: ApiRequest) -> None:
    """Tell this process's scan-on-push hook that project switches may have changed (other
    nodes read them again within seconds, ``scan/hooks.py``)."""
    hook = scan_hooks.find(api.state.registry.hooks.hooks)
    if hook is not None:
        hook.auto_scan_changed()


@operation("HEAD", "/projects", "headProject", query=("project_name",))
async def head_project(api: ApiRequest) -> Response:
    """Whether a project of that name exists (and the caller may know it)."""
    name = api.query("project_name")
    if not name:
        raise BadRequestError("project_name is required")
    principal = await api.principal()
    async with api.state.db.read() as session:
        await service.project_exists(session, principal, name)
    return empty_response()


@operation(
    "GET",
    "/projects",
    "listProjects",
    query=("q", "sort", "page", "page_size", "name", "public", "owner", "with_detail"),
    response=list[ProjectSchema],
)
async def list_projects(api: ApiRequest) -> Response:
    """The projects the caller may see, filtered, sorted and paged."""
    query = service.ProjectQuery(
        q=api.query("q"),
        sort=api.query("sort"),
        name=api.query("name"),
        owner=api.query("owner"),
        public=_optional_bool(api, "public"),
        with_detail=api.query_bool("with_detail", default=True),
    )
    page = api.page()
    principal = await api.principal()
    async with api.state.db.read() as session:
        projects, total = await service.list_projects(session, principal, query, page)
    return paged_response(api, projects, total, page)


@operation("POST", "/projects", "createProject", body=ProjectReq, status=201)
async def create_project(api: ApiRequest) -> Response:
    """Create a project owned by the caller, who becomes its project admin."""
    principal = await api.user()
    req = await api.json(ProjectReq)
    actor = await api.actor()
    async with api.state.db.write() as session:
        endpoint = None
        if req.registry_id is not None:
            if not can(principal, Action.CREATE, Resource.PROJECT, None):
                raise DeniedError("Only system admin can create proxy cache project")
            endpoint = await proxy.check_endpoint(session, req.registry_id)
        project = await service.create_project_for(
            session, principal, req, operator=actor, proxy_endpoint=endpoint
        )
        if endpoint is not None:
            await proxy.set_up_project(session, principal, actor, project)
        project_id, name = project.project_id, project.name
    _metadata_changed(api)
    in_location = _header_flag(api, "X-Resource-Name-In-Location")
    return created_response(f"{API_PREFIX}/projects/{name if in_location else project_id}")


@operation("GET", PROJECT, "getProject", response=ProjectSchema)
async def get_project(api: ApiRequest) -> Response:
    """One project, by id or name."""
    principal = await api.principal()
    async with api.state.db.read() as session:
        project, context = await service.resolve_project(session, principal, *_name_or_id(api))
        view = await service.project_view(session, principal, project, context)
    return json_response(view)


@operation("PUT", PROJECT, "updateProject", body=ProjectReq)
async def update_project(api: ApiRequest) -> Response:
    """Change a project's metadata."""
    principal = await _allowed(api, Action.UPDATE, Resource.PROJECT)
    req = await api.json(ProjectReq)
    async with api.state.db.write() as session:
        project, context = await service.resolve_project(session, principal, *_name_or_id(api))
        await service.update_project(
            session, principal, project, context, req, operator=await api.actor()
        )
    _metadata_changed(api)
    return empty_response()


@operation("DELETE", PROJECT, "deleteProject")
async def delete_project(api: ApiRequest) -> Response:
    """Delete an empty project; its name may be used again."""
    principal = await api.principal()
    actor = await api.actor()
    refused = AuditEvent("delete", "project", api.path("project_name_or_id"))
    async with (
        audit.failure_recorded(api.state.db, actor, refused),
        api.state.db.write() as session,
    ):
        project, context = await service.resolve_project(session, principal, *_name_or_id(api))
        await service.delete_project(session, principal, project, context, operator=actor)
    return empty_response()


@operation("GET", PROJECT + "/_deletable", "getProjectDeletable", response=ProjectDeletable)
async def get_project_deletable(api: ApiRequest) -> Response:
    """Whether the project may be deleted now, and why not."""
    principal = await api.principal()
    async with api.state.db.read() as session:
        project, context = await service.resolve_project(session, principal, *_name_or_id(api))
        result = await service.project_deletable(session, principal, project, context)
    return json_response(result)


@operation("GET", PROJECT + "/summary", "getProjectSummary", response=ProjectSummary)
async def get_project_summary(api: ApiRequest) -> Response:
    """Repository and member counts of the project."""
    principal = await api.principal()
    async with api.state.db.read() as session:
        project, context = await service.resolve_project(session, principal, *_name_or_id(api))
        summary = await service.project_summary(session, principal, project, context)
    return json_response(summary)


# --- metadata ------------------------------------------------------------------------------


@operation("GET", PROJECT + "/metadatas/", "listProjectMetadatas", response=MetadataMap)
async def list_project_metadatas(api: ApiRequest) -> Response:
    """Every metadata key of the project."""
    principal = await api.principal()
    async with api.state.db.read() as session:
        project, context = await service.resolve_project(session, principal, *_name_or_id(api))
        values = await service.list_metadata(session, principal, project, context)
    return json_response(values)


@operation("POST", PROJECT + "/metadatas/", "addProjectMetadatas", body=MetadataMap)
async def add_project_metadatas(api: ApiRequest) -> Response:
    """Set metadata keys the project does not have yet."""
    principal = await _allowed(api, Action.CREATE, Resource.METADATA)
    values = (await api.json(MetadataMap)).root
    async with api.state.db.write() as session:
        project, context = await service.resolve_project(session, principal, *_name_or_id(api))
        await service.add_metadata(
            session, principal, project, context, values, operator=await api.actor()
        )
    _metadata_changed(api)
    return empty_response()


@operation("GET", PROJECT + "/metadatas/{meta_name}", "getProjectMetadata", response=MetadataMap)
async def get_project_metadata(api: ApiRequest) -> Response:
    """One metadata key as ``{name: value}``."""
    principal = await api.principal()
    async with api.state.db.read() as session:
        project, context = await service.resolve_project(session, principal, *_name_or_id(api))
        value = await service.get_metadata(
            session, principal, project, context, api.path("meta_name")
        )
    return json_response(value)


@operation("PUT", PROJECT + "/metadatas/{meta_name}", "updateProjectMetadata", body=MetadataMap)
async def update_project_metadata(api: ApiRequest) -> Response:
    """Set one metadata key from a ``{name: value}`` body."""
    principal = await _allowed(api, Action.UPDATE, Resource.METADATA)
    body = (await api.json(MetadataMap)).root
    async with api.state.db.write() as session:
        project, context = await service.resolve_project(session, principal, *_name_or_id(api))
        await service.update_metadata(
            session,
            principal,
            project,
            context,
            api.path("meta_name"),
            body,
            operator=await api.actor(),
        )
    _metadata_changed(api)
    return empty_response()


@operation("DELETE", PROJECT + "/metadatas/{meta_name}", "deleteProjectMetadata")
async def delete_project_metadata(api: ApiRequest) -> Response:
    """Remove one metadata key."""
    principal = await api.principal()
    async with api.state.db.write() as session:
        project, context = await service.resolve_project(session, principal, *_name_or_id(api))
        await service.delete_metadata(
            session,
            principal,
            project,
            context,
            api.path("meta_name"),
            operator=await api.actor(),
        )
    _metadata_changed(api)
    return empty_response()


# --- members -------------------------------------------------------------------------------


@operation(
    "GET",
    PROJECT + "/members",
    "listProjectMembers",
    query=("page", "page_size", "entityname"),
    response=list[ProjectMemberEntity],
)
async def list_project_members(api: ApiRequest) -> Response:
    """The users and groups holding a role in the project."""
    page = api.page()
    principal = await api.principal()
    async with api.state.db.read() as session:
        project, context = await service.resolve_project(session, principal, *_name_or_id(api))
        members, total = await service.list_members(
            session, principal, project, context, api.query("entityname"), page
        )
    return paged_response(api, members, total, page)


@operation("POST", PROJECT + "/members", "createProjectMember", body=ProjectMember, status=201)
async def create_project_member(api: ApiRequest) -> Response:
    """Give a user or a group a role in the project."""
    principal = await _allowed(api, Action.CREATE, Resource.MEMBER)
    req = await api.json(ProjectMember)
    found = await _directory_group(api, req)
    async with api.state.db.write() as session:
        project, context = await service.resolve_project(session, principal, *_name_or_id(api))
        if found is not None:  # Harbor's "search and onboard" of a group named by DN
            await users.ensure_ldap_group(session, found, operator=await api.actor())
        member_id = await service.add_member(
            session, principal, project, context, req, operator=await api.actor()
        )
    return created_response(_member_location(api, project, member_id))


async def _directory_group(api: ApiRequest, req: ProjectMember) -> DirectoryGroup | None:
    """The directory's group a member request names by DN when no user group has that DN
    yet (validated against the directory), else None."""
    group = req.member_group
    user = req.member_user
    if group is None or group.id or not group.ldap_group_dn:
        return None
    if user is not None and (user.user_id or user.username):
        return None  # both named: add_member refuses
    return await api.state.identity.unknown_ldap_group(group.ldap_group_dn)


def _member_location(api: ApiRequest, project: Project, member_id: int) -> str:
    """As Harbor: the project as the caller named it."""
    return f"{API_PREFIX}/projects/{api.path('project_name_or_id')}/members/{member_id}"


@operation("GET", PROJECT + "/members/{mid}", "getProjectMember", response=ProjectMemberEntity)
async def get_project_member(api: ApiRequest) -> Response:
    """One membership."""
    member_id = api.path_int("mid")
    principal = await api.principal()
    async with api.state.db.read() as session:
        project, context = await service.resolve_project(session, principal, *_name_or_id(api))
        member = await service.get_member(session, principal, project, context, member_id)
    return json_response(member)


@operation("PUT", PROJECT + "/members/{mid}", "updateProjectMember", body=RoleRequest)
async def update_project_member(api: ApiRequest) -> Response:
    """Change a member's role."""
    member_id = api.path_int("mid")
    principal = await _allowed(api, Action.UPDATE, Resource.MEMBER)
    req = await api.json(RoleRequest)
    async with api.state.db.write() as session:
        project, context = await service.resolve_project(session, principal, *_name_or_id(api))
        await service.update_member(
            session,
            principal,
            project,
            context,
            member_id,
            req.role_id,
            operator=await api.actor(),
        )
    return empty_response()


@operation("DELETE", PROJECT + "/members/{mid}", "deleteProjectMember")
async def delete_project_member(api: ApiRequest) -> Response:
    """Remove a membership."""
    member_id = api.path_int("mid")
    principal = await api.principal()
    async with api.state.db.write() as session:
        project, context = await service.resolve_project(session, principal, *_name_or_id(api))
        await service.delete_member(
            session, principal, project, context, member_id, operator=await api.actor()
        )
    return empty_response()


# --- the system CVE allowlist ---------------------------------------------------------------


@operation("GET", "/system/CVEAllowlist", "getSystemCVEAllowlist", response=CVEAllowlist)
async def get_system_cve_allowlist(api: ApiRequest) -> Response:
    """Any signed-in user may read it (projects reuse it)."""
    principal = await api.principal()
    if principal.is_anonymous:
        raise UnauthorizedError("authentication required")
    async with api.state.db.read() as session:
        view = await allowlists.view(session, allowlists.SYSTEM)
    return json_response(view)


@operation("PUT", "/system/CVEAllowlist", "putSystemCVEAllowlist", body=CVEAllowlist)
async def put_system_cve_allowlist(api: ApiRequest) -> Response:
    """Replaces the system allowlist; system administrators only."""
    principal = await api.principal()
    allowlists.may_change_system(principal)  # before the body is read
    body = await api.json(CVEAllowlist)
    async with api.state.db.write() as session:
        await allowlists.put_system(session, principal, await api.actor(), body)
    return empty_response()


operations: list[Operation] = [
    get_system_cve_allowlist,
    put_system_cve_allowlist,
    # HEAD first: Starlette lets a GET route answer HEAD too.
    head_project,
    list_projects,
    create_project,
    get_project,
    update_project,
    delete_project,
    get_project_deletable,
    get_project_summary,
    list_project_metadatas,
    add_project_metadatas,
    get_project_metadata,
    update_project_metadata,
    delete_project_metadata,
    list_project_members,
    create_project_member,
    get_project_member,
    update_project_member,
    delete_project_member,
]
