"""Global search: the projects and repositories whose names contain the text, among
those the caller may see (the same visibility as ``listProjects`` and
``listAllRepositories``, which do the querying)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from dockyard.artifacts import service as artifacts
from dockyard.db.listing import PageRequest
from dockyard.iam.policy import Principal
from dockyard.projects import repository as projects_repo
from dockyard.projects import schemas as project_schemas
from dockyard.projects import service as projects

MAX_RESULTS = 100
"""Each half of the answer is cut at this many names (Harbor's search is not paged)."""

_SEARCHABLE = re.compile(r"[a-z0-9._/-]{0,255}")
"""What a project or repository name may hold: any other text matches nothing."""


@dataclass(frozen=True, slots=True)
class RepositoryHit:
    project_id: int
    project_name: str
    project_public: bool
    repository_name: str
    pull_count: int
    artifact_count: int


@dataclass(frozen=True, slots=True)
class SearchResult:
    projects: list[project_schemas.Project]
    repositories: list[RepositoryHit]


async def search(session: AsyncSession, principal: Principal, text: str) -> SearchResult:
    """Names containing ``text`` (case-insensitive), projects and repositories apart."""
    wanted = text.strip().lower()
    if not _SEARCHABLE.fullmatch(wanted):
        return SearchResult([], [])
    page = PageRequest(page=1, page_size=MAX_RESULTS)
    found_projects, _ = await projects.list_projects(
        session, principal, projects.ProjectQuery(name=wanted or None), page
    )
    found_repositories, _ = await artifacts.list_all_repositories(
        session, principal, f"name=~{wanted}" if wanted else None, None, page
    )
    project_ids = {r.project_id for r in found_repositories if r.project_id is not None}
    metadata = await projects_repo.metadata_of(session, project_ids)
    hits = [
        RepositoryHit(
            project_id=r.project_id,
            project_name=r.name.split("/", 1)[0],
            project_public=metadata.get(r.project_id, {}).get("public") == "true",
            repository_name=r.name,
            pull_count=r.pull_count,
            artifact_count=r.artifact_count,
        )
        for r in found_repositories
        if r.project_id is not None and r.name is not None
    ]
    return SearchResult(found_projects, hits)
