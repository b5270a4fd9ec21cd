"""``/api/v2.0`` writes on repositories, artifacts and tags (see ``artifacts.writes``)."""

from __future__ import annotations

from datetime import datetime
from urllib.parse import quote

from pydantic import BaseModel
from starlette.responses import Response

from dockyard.artifacts import writes
from dockyard.http.api import (
    API_PREFIX,
    ApiRequest,
    Operation,
    created_response,
    empty_response,
    operation,
)

_REPOSITORY = "/projects/{project_name}/repositories/{repository_name}"
_ARTIFACT = _REPOSITORY + "/artifacts/{reference}"


class NewTag(BaseModel):
    """Swagger's ``NewTag``: the body of ``createTag``."""

    name: str


class RepositoryReq(BaseModel):
    """Swagger's ``Repository`` as ``updateRepository`` reads it: only the description counts."""

    id: int | None = None
    project_id: int | None = None
    name: str | None = None
    description: str | None = None
    artifact_count: int | None = None
    pull_count: int | None = None
    creation_time: datetime | None = None
    update_time: datetime | None = None


def _repository_path(project: str, repository: str) -> str:
    """The API path of a repository, its name encoded twice over as Harbor expects."""
    _, _, rest = repository.partition("/")
    return f"{API_PREFIX}/projects/{project}/repositories/{quote(quote(rest, safe=''), safe='')}"


@operation("PUT", _REPOSITORY, "updateRepository", body=RepositoryReq)
async def update_repository(api: ApiRequest) -> Response:
    """Update a repository's description."""
    principal = await api.user()
    body = await api.json(RepositoryReq)
    async with api.state.db.write() as session:
        await writes.update_repository(
            session,
            principal,
            await api.actor(),
            api.path("project_name"),
            api.path("repository_name"),
            body.description,
        )
    return empty_response()


@operation("DELETE", _REPOSITORY, "deleteRepository")
async def delete_repository(api: ApiRequest) -> Response:
    """Delete a repository with every artifact in it."""
    principal = await api.user()
    async with api.state.db.write() as session:
        await writes.delete_repository(
            session,
            api.state.registry,
            principal,
            await api.actor(),
            api.path("project_name"),
            api.path("repository_name"),
        )
    return empty_response()


@operation("DELETE", _ARTIFACT, "deleteArtifact")
async def delete_artifact(api: ApiRequest) -> Response:
    """Delete an artifact (by tag or digest) with its tags and accessories."""
    principal = await api.user()
    async with api.state.db.write() as session:
        await writes.delete_artifact(
            session,
            api.state.registry,
            principal,
            await api.actor(),
            api.path("project_name"),
            api.path("repository_name"),
            api.path("reference"),
        )
    return empty_response()


@operation("POST", _REPOSITORY + "/artifacts", "CopyArtifact", query=("from",), status=201)
async def copy_artifact(api: ApiRequest) -> Response:
    """Copy the artifact ``from`` names into this repository."""
    principal = await api.user()
    project = api.path("project_name")
    async with api.state.db.write() as session:
        digest = await writes.copy_artifact(
            session,
            api.state.registry,
            principal,
            await api.actor(),
            project,
            api.path("repository_name"),
            api.query("from"),
        )
    target = writes.repository_full_name(project, api.path("repository_name"))
    return created_response(f"{_repository_path(project, target)}/artifacts/{digest}")


@operation("POST", _ARTIFACT + "/tags", "createTag", body=NewTag, status=201)
async def create_tag(api: ApiRequest) -> Response:
    """Add a tag to an artifact."""
    principal = await api.user()
    body = await api.json(NewTag)
    project, repository = api.path("project_name"), api.path("repository_name")
    reference = api.path("reference")
    async with api.state.db.write() as session:
        await writes.create_tag(
            session,
            api.state.registry,
            principal,
            await api.actor(),
            project,
            repository,
            reference,
            body.name,
        )
    target = writes.repository_full_name(project, repository)
    return created_response(
        f"{_repository_path(project, target)}/artifacts/{reference}/tags/{body.name}"
    )


@operation("DELETE", _ARTIFACT + "/tags/{tag_name}", "deleteTag")
async def delete_tag(api: ApiRequest) -> Response:
    """Remove one tag from an artifact; the artifact stays."""
    principal = await api.user()
    async with api.state.db.write() as session:
        await writes.delete_tag(
            session,
            api.state.registry,
            principal,
            await api.actor(),
            api.path("project_name"),
            api.path("repository_name"),
            api.path("reference"),
            api.path("tag_name"),
        )
    return empty_response()


operations: list[Operation] = [
    update_repository,
    delete_repository,
    delete_artifact,
    copy_artifact,
    create_tag,
    delete_tag,
]
