"""Projects: creation, lookup, and what a principal may do in one."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from dockyard.errors import AlreadyExistsError
from dockyard.iam.policy import Principal, ProjectContext, Role
from dockyard.oci.names import validate_project_name
from dockyard.projects import repository as repo
from dockyard.projects.models import Project, ProjectMember, ProjectMetadata


@dataclass(frozen=True, slots=True)
class ProjectFacts:
    """A project as the access check sees it."""

    project_id: int
    name: str
    public: bool
    creation_time: datetime


async def create_project(
    session: AsyncSession, name: str, *, owner_id: int, public: bool = False
) -> Project:
    """Create a project whose owner becomes its project admin."""
    name = validate_project_name(name)
    if await repo.find_project_by_name(session, name) is not None:
        raise AlreadyExistsError(f"project {name} already exists")
    project = Project(name=name, owner_id=owner_id)
    session.add(project)
    await session.flush()
    session.add(
        ProjectMetadata(project_id=project.project_id, name="public", value=str(public).lower())
    )
    session.add(
        ProjectMember(
            project_id=project.project_id,
            entity_id=owner_id,
            entity_type="u",
            role=int(Role.PROJECT_ADMIN),
        )
    )
    await session.flush()
    return project


async def find_project_facts(session: AsyncSession, name: str) -> ProjectFacts | None:
    project = await repo.find_project_by_name(session, name)
    if project is None:
        return None
    metadata = await repo.project_metadata(session, project.project_id)
    return ProjectFacts(
        project_id=project.project_id,
        name=project.name,
        public=metadata.get("public") == "true",
        creation_time=project.creation_time,
    )


async def project_context(
    session: AsyncSession, principal: Principal, facts: ProjectFacts
) -> ProjectContext:
    roles: frozenset[Role] = frozenset()
    if principal.user_id is not None:
        found = await repo.user_roles(session, facts.project_id, principal.user_id)
        roles = frozenset(Role(r) for r in found if r in Role._value2member_map_)
    return ProjectContext(
        project_id=facts.project_id, name=facts.name, public=facts.public, roles=roles
    )
