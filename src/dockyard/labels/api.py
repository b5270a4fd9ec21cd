"""``/api/v2.0/labels`` (swagger tag ``label``) and the label operations on artifacts."""

from __future__ import annotations

from urllib.parse import unquote

from starlette.responses import Response

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
from dockyard.labels import service as labels
from dockyard.labels.models import Label as LabelRow
from dockyard.labels.schemas import Label

_ARTIFACT = "/projects/{project_name}/repositories/{repository_name}/artifacts/{reference}"


def _shown(row: LabelRow) -> Label:
    return Label(
        id=row.id,
        name=row.name,
        description=row.description,
        color=row.color,
        scope=row.scope,
        project_id=row.project_id,
        creation_time=row.creation_time,
        update_time=row.update_time,
    )


def _artifact(api: ApiRequest) -> labels.ArtifactRef:
    # Harbor has clients encode a '/' in a repository name twice (a%252Fb): the router
    # undoes one encoding, this the other.
    return labels.ArtifactRef(
        project_name=api.path("project_name"),
        repository=unquote(api.path("repository_name")),
        reference=api.path("reference"),
    )


@operation(
    "GET",
    "/labels",
    "ListLabels",
    query=("q", "sort", "page", "page_size", "name", "scope", "project_id"),
    response=list[Label],
)
async def list_labels(api: ApiRequest) -> Response:
    """List global labels (``scope=g``) or a project's (``scope=p&project_id=``)."""
    principal = await api.principal()
    page = api.page()
    async with api.state.db.read() as session:
        rows, total = await labels.list_labels(
            session,
            principal,
            scope=api.query("scope"),
            project_id=api.query_int("project_id"),
            name=api.query("name"),
            q=api.query("q"),
            sort=api.query("sort"),
            page=page,
        )
    return paged_response(api, [_shown(row) for row in rows], total, page)


@operation("POST", "/labels", "CreateLabel", body=Label, status=201)
async def create_label(api: ApiRequest) -> Response:
    """Create a global label (administrators) or a project label (project managers)."""
    principal = await api.principal()
    body = await api.json(Label)
    async with api.state.db.write() as session:
        row = await labels.create_label(session, principal, await api.actor(), body)
    return created_response(f"{API_PREFIX}/labels/{row.id}")


@operation("GET", "/labels/{label_id}", "GetLabelByID", response=Label)
async def get_label(api: ApiRequest) -> Response:
    """One label."""
    principal = await api.principal()
    label_id = api.path_int("label_id")
    async with api.state.db.read() as session:
        row = await labels.get_label(session, principal, label_id)
    return json_response(_shown(row))


@operation("PUT", "/labels/{label_id}", "UpdateLabel", body=Label)
async def update_label(api: ApiRequest) -> Response:
    """Change a label's name, description or colour (not its scope or project)."""
    principal = await api.principal()
    label_id = api.path_int("label_id")
    body = await api.json(Label)
    async with api.state.db.write() as session:
        await labels.update_label(session, principal, await api.actor(), label_id, body)
    return empty_response()


@operation("DELETE", "/labels/{label_id}", "DeleteLabel")
async def delete_label(api: ApiRequest) -> Response:
    """Delete a label; artifacts that carried it no longer do."""
    principal = await api.principal()
    label_id = api.path_int("label_id")
    async with api.state.db.write() as session:
        await labels.delete_label(session, principal, await api.actor(), label_id)
    return empty_response()


@operation("POST", _ARTIFACT + "/labels", "addLabel", body=Label)
async def add_label(api: ApiRequest) -> Response:
    """Attach a label (only its ``id`` is read) to an artifact."""
    principal = await api.principal()
    target = _artifact(api)
    body = await api.json(Label)
    async with api.state.db.write() as session:
        await labels.add_artifact_label(session, principal, await api.actor(), target, body.id)
    return empty_response()


@operation("DELETE", _ARTIFACT + "/labels/{label_id}", "removeLabel")
async def remove_label(api: ApiRequest) -> Response:
    """Detach a label from an artifact."""
    principal = await api.principal()
    target = _artifact(api)
    label_id = api.path_int("label_id")
    async with api.state.db.write() as session:
        await labels.remove_artifact_label(session, principal, await api.actor(), target, label_id)
    return empty_response()


operations: list[Operation] = [
    list_labels,
    create_label,
    get_label,
    update_label,
    delete_label,
    add_label,
    remove_label,
]
