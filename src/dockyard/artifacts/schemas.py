"""Harbor's swagger definitions for repositories, artifacts, tags and their parts.

Field names and shapes are Harbor's; ``None`` fields are left out of answers
(``json_response``), so optional parts appear only when asked for. Fields Harbor
always sends (``x-omitempty: false``) have non-None defaults.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictStr

from dockyard.scan.schemas import NativeReportSummary, SBOMOverview


class Repository(BaseModel):
    id: int | None = None
    project_id: int | None = None
    name: str | None = None
    """The full name, project included (``library/nginx``)."""
    description: str | None = None
    artifact_count: int = 0
    pull_count: int = 0
    creation_time: datetime | None = None
    update_time: datetime | None = None


class RepositoryUpdate(BaseModel):
    """The body of ``updateRepository``: only ``description`` is taken."""

    description: StrictStr | None = Field(default=None, max_length=1024 * 1024)


class Tag(BaseModel):
    id: int | None = None
    repository_id: int | None = None
    artifact_id: int | None = None
    name: str | None = None
    push_time: datetime | None = None
    pull_time: datetime | None = None
    immutable: bool = False


class NewTag(BaseModel):
    name: StrictStr


class Label(BaseModel):
    id: int | None = None
    name: str | None = None
    description: str | None = None
    color: str | None = None
    scope: str | None = None
    project_id: int | None = None
    creation_time: datetime | None = None
    update_time: datetime | None = None


class Platform(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    architecture: str | None = None
    os: str | None = None
    os_version: str | None = Field(default=None, alias="'os.version'")
    os_features: list[str] | None = Field(default=None, alias="'os.features'")
    variant: str | None = None


class Reference(BaseModel):
    parent_id: int | None = None
    child_id: int | None = None
    child_digest: str | None = None
    platform: Platform | None = None
    annotations: dict[str, str] | None = None
    urls: list[str] | None = None


class Accessory(BaseModel):
    id: int | None = None
    artifact_id: int = 0
    subject_artifact_id: int | None = None
    subject_artifact_digest: str = ""
    subject_artifact_repo: str = ""
    size: int = 0
    digest: str = ""
    type: str = ""
    icon: str = ""
    creation_time: datetime | None = None


class AdditionLink(BaseModel):
    href: str | None = None
    absolute: bool = False


class Artifact(BaseModel):
    id: int | None = None
    type: str | None = None
    media_type: str | None = None
    manifest_media_type: str | None = None
    artifact_type: str | None = None
    project_id: int | None = None
    repository_id: int | None = None
    repository_name: str | None = None
    digest: str | None = None
    size: int | None = None
    icon: str | None = None
    push_time: datetime | None = None
    pull_time: datetime | None = None
    extra_attrs: dict[str, Any] | None = None
    annotations: dict[str, str] | None = None
    references: list[Reference] | None = None
    tags: list[Tag] | None = None
    addition_links: dict[str, AdditionLink] | None = None
    labels: list[Label] | None = None
    accessories: list[Accessory] | None = None
    scan_overview: dict[str, NativeReportSummary] | None = None
    sbom_overview: SBOMOverview | None = None
