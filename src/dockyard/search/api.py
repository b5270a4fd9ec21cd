"""``GET /api/v2.0/search``: Harbor's global search over project and repository names."""

from __future__ import annotations

from dataclasses import asdict

from pydantic import BaseModel
from starlette.responses import Response

from dockyard.errors import BadRequestError
from dockyard.http.api import ApiRequest, Operation, json_response, operation
from dockyard.projects.schemas import Project
from dockyard.search import service


class SearchRepository(BaseModel):
    project_id: int
    project_name: str
    project_public: bool
    repository_name: str
    pull_count: int
    artifact_count: int


class Search(BaseModel):
    project: list[Project]
    repository: list[SearchRepository]


@operation("GET", "/search", "search", query=("q",), response=Search)
async def search(api: ApiRequest) -> Response:
    """Projects and repositories whose names contain ``q``, among those the caller may
    see (anonymous callers: public ones)."""
    text = api.query("q")
    if text is None:
        raise BadRequestError("q is required: the text to look for in names")
    principal = await api.principal()
    async with api.state.db.read() as session:
        found = await service.search(session, principal, text)
    return json_response(
        Search(
            project=found.projects,
            repository=[SearchRepository(**asdict(hit)) for hit in found.repositories],
        )
    )


operations: list[Operation] = [search]
