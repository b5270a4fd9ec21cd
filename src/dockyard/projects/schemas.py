"""Harbor's swagger definitions for projects, their metadata and members.

Field names are Harbor's. Request models take strict JSON types (a string
where Harbor wants a string, an integer where it wants an integer) so that a
malformed body is a 400 rather than a guess; unknown fields are ignored, as
Harbor's generated server ignores them.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, RootModel, StrictBool, StrictInt, StrictStr

# Identifiers a client may send: positive and within the 32-bit columns that hold them.
_ID = Field(default=None, ge=0, le=2**31 - 1)


class ProjectMetadata(BaseModel):
    """Project settings as strings (``"true"``/``"false"``, a severity, …)."""

    public: StrictStr | None = None
    enable_content_trust: StrictStr | None = None
    enable_content_trust_cosign: StrictStr | None = None
    prevent_vul: StrictStr | None = None
    severity: StrictStr | None = None
    auto_scan: StrictStr | None = None
    auto_sbom_generation: StrictStr | None = None
    reuse_sys_cve_allowlist: StrictStr | None = None
    retention_id: StrictStr | None = None
    proxy_speed_kb: StrictStr | None = None
    max_upstream_conn: StrictStr | None = None
    proxy_cache_local_on_not_found: StrictStr | None = None
    proxy_referrer_api: StrictStr | None = None
    proxy_cache_filter_pattern: StrictStr | None = None
    proxy_cache_filter_kind: StrictStr | None = None
    proxy_cache_serve_stale: StrictStr | None = None
    """Dockyard's: a proxy cache project serves its cached copy when the upstream fails
    (``"true"``, the default) or fails the pull as Harbor does (``"false"``)."""


class CVEAllowlistItem(BaseModel):
    cve_id: StrictStr | None = None


class CVEAllowlist(BaseModel):
    """A project's (``cve_allowlist`` of ``ProjectReq``) or the system's allowlist."""

    id: StrictInt | None = None
    project_id: StrictInt | None = None
    expires_at: StrictInt | None = None
    items: list[CVEAllowlistItem] | None = None
    creation_time: StrictStr | None = None
    update_time: StrictStr | None = None


class ProjectReq(BaseModel):
    """The body of ``createProject`` and ``updateProject``."""

    project_name: StrictStr | None = Field(default=None, max_length=255)
    public: StrictBool | None = None
    """Deprecated: used only when ``metadata.public`` is not given."""
    metadata: ProjectMetadata | None = None
    cve_allowlist: CVEAllowlist | None = None
    storage_limit: StrictInt | None = None
    registry_id: StrictInt | None = None


class Project(BaseModel):
    project_id: int
    owner_id: int
    name: str
    registry_id: int
    creation_time: datetime
    update_time: datetime
    deleted: bool
    owner_name: str | None = None
    togglable: bool
    current_user_role_id: int
    current_user_role_ids: list[int]
    repo_count: int
    metadata: dict[str, str]
    cve_allowlist: CVEAllowlist | None = None


class ProjectDeletable(BaseModel):
    deletable: bool
    message: str | None = None


class ProjectSummaryQuota(BaseModel):
    """The project's storage limit and usage, as ``{"storage": bytes}`` (-1 unlimited)."""

    hard: dict[str, int]
    used: dict[str, int]


class ProjectSummary(BaseModel):
    """The registry part is left out until proxy caches land."""

    repo_count: int
    project_admin_count: int | None = None
    maintainer_count: int | None = None
    developer_count: int | None = None
    guest_count: int | None = None
    limited_guest_count: int | None = None
    quota: ProjectSummaryQuota | None = None


class UserEntity(BaseModel):
    user_id: StrictInt | None = _ID
    username: StrictStr | None = Field(default=None, max_length=255)


class UserGroup(BaseModel):
    id: StrictInt | None = _ID
    group_name: StrictStr | None = Field(default=None, max_length=255)
    group_type: StrictInt | None = Field(default=None, ge=0, le=3)
    ldap_group_dn: StrictStr | None = Field(default=None, max_length=512)


class ProjectMember(BaseModel):
    """The body of ``createProjectMember``: a role and either a user or a group."""

    role_id: StrictInt | None = None
    member_user: UserEntity | None = None
    member_group: UserGroup | None = None


class RoleRequest(BaseModel):
    role_id: StrictInt | None = None


class ProjectMemberEntity(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: int
    project_id: int
    entity_name: str
    role_name: str
    role_id: int
    entity_id: int
    entity_type: str


class MetadataMap(RootModel[dict[StrictStr, StrictStr]]):
    """A JSON object of metadata names to string values (the metadata endpoints' body)."""
