"""Labels: Harbor's global (system) and project labels, and attaching them to artifacts.

Who may do what is ``can``'s answer:

* global labels are read by anyone signed in and managed with the system
  ``label`` permission (system administrators, robots granted it);
* project labels follow the ``label`` row of the role table in their project
  (guests and developers read, maintainers and project admins manage);
* attaching or detaching a label needs ``artifact-label`` in the artifact's
  project, and the label must be global or belong to that project.

A project a caller may not see is not found; where Harbor's operation has no
404 (listing, creating) it is a 403, as for a project the caller may not use.
Every change records one audit event in the change's own transaction.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from dockyard.artifacts import repository as artifacts_repo
from dockyard.audit import service as audit
from dockyard.audit.events import Actor, AuditEvent
from dockyard.db.base import utcnow
from dockyard.db.listing import Condition, PageRequest, parse_q, parse_sort
from dockyard.errors import (
    AlreadyExistsError,
    AppError,
    BadRequestError,
    ConflictError,
    DeniedError,
    NotFoundError,
    ProjectNotFoundError,
    UnauthorizedError,
)
from dockyard.iam.policy import Action, Principal, ProjectContext, Resource
from dockyard.labels import repository as repo
from dockyard.labels import schemas
from dockyard.labels.models import Label, LabelReference
from dockyard.oci.digest import Digest, is_digest
from dockyard.oci.names import validate_repository_name, validate_tag
from dockyard.projects import service as projects
from dockyard.projects.models import Project
from dockyard.registry.models import Artifact

GLOBAL = "g"
PROJECT = "p"
MAX_NAME_LENGTH = 128
MAX_DESCRIPTION_LENGTH = 1024
_COLOR = re.compile(r"#[0-9a-fA-F]{6}")
_LABEL = "label"
_ARTIFACT_LABEL = "artifact-label"


# --- field rules (pure) ------------------------------------------------------------------


def check_name(name: str | None) -> str:
    """A label name: 1 to 128 characters, not blank, no control characters."""
    if name is None or not name.strip():
        raise BadRequestError("the label name is required")
    if len(name) > MAX_NAME_LENGTH:
        raise BadRequestError(f"the label name is longer than {MAX_NAME_LENGTH} characters")
    if any(unicodedata.category(ch) in ("Cc", "Cs") for ch in name):
        raise BadRequestError("the label name must not contain control characters")
    return name


def check_color(color: str | None) -> str:
    """``#RRGGBB`` or empty."""
    if not color:
        return ""
    if not _COLOR.fullmatch(color):
        raise BadRequestError("the label color must be '#RRGGBB' (hex) or empty")
    return color


def check_description(description: str | None) -> str:
    if not description:
        return ""
    if len(description) > MAX_DESCRIPTION_LENGTH:
        raise BadRequestError(
            f"the label description is longer than {MAX_DESCRIPTION_LENGTH} characters"
        )
    return projects.safe_text(description, "the label description")


def _scope(scope: str | None) -> str:
    if scope not in (GLOBAL, PROJECT):
        raise BadRequestError("scope must be 'g' (global) or 'p' (project)")
    return scope


# --- access ------------------------------------------------------------------------------


def _signed_in(principal: Principal) -> None:
    if principal.is_anonymous:
        raise UnauthorizedError("authentication required")


async def _project_access(
    session: AsyncSession, principal: Principal, project_id: int, action: Action
) -> ProjectContext:
    """The context of a project named in a request whose operation has no 404."""
    try:
        _, context = await projects.resolve_project(session, principal, str(project_id))
    except ProjectNotFoundError:
        if principal.sysadmin:
            raise BadRequestError(f"project {project_id} does not exist") from None
        raise DeniedError(
            f"{principal.name} may not {action} label in project {project_id}"
        ) from None
    projects.require(principal, action, Resource.LABEL, context)
    return context


async def _label_for(
    session: AsyncSession, principal: Principal, label_id: int, action: Action
) -> Label:
    """The label ``label_id`` if the principal may ``action`` it; hidden ones are not found."""
    _signed_in(principal)
    label = await repo.find_label(session, label_id)
    if label is None:
        raise NotFoundError(f"label {label_id} not found")
    if label.scope == PROJECT:
        try:
            _, context = await projects.resolve_project(session, principal, str(label.project_id))
        except ProjectNotFoundError:
            raise NotFoundError(f"label {label_id} not found") from None
        projects.require(principal, action, Resource.LABEL, context)
    elif action != Action.READ:
        projects.require(principal, action, Resource.LABEL, None)
    return label


# --- labels ------------------------------------------------------------------------------


async def list_labels(
    session: AsyncSession,
    principal: Principal,
    *,
    scope: str | None,
    project_id: int | None,
    name: str | None,
    q: str | None,
    sort: str | None,
    page: PageRequest,
) -> tuple[list[Label], int]:
    """``ListLabels``: the global labels (no ``scope`` means ``g``), or a project's."""
    _signed_in(principal)
    scope = _scope(scope or GLOBAL)
    owner = 0
    if scope == PROJECT:
        if not project_id or project_id < 0:
            raise BadRequestError("project_id is required to list project labels")
        owner = (await _project_access(session, principal, project_id, Action.LIST)).project_id
    conditions = parse_q(q)
    if name:
        conditions.append(Condition("name", "fuzzy", (projects.safe_text(name, "name"),)))
    order = parse_sort(sort, repo.SORT_COLUMNS)
    return await repo.list_labels(
        session, scope=scope, project_id=owner, conditions=conditions, order=order, page=page
    )


async def get_label(session: AsyncSession, principal: Principal, label_id: int) -> Label:
    """``GetLabelByID``."""
    return await _label_for(session, principal, label_id, Action.READ)


async def create_label(
    session: AsyncSession, principal: Principal, actor: Actor, body: schemas.Label
) -> Label:
    """``CreateLabel``; a name taken in the same scope (and project) is a conflict."""
    _signed_in(principal)
    scope = _scope(body.scope)
    project_id = 0
    if scope == GLOBAL:
        projects.require(principal, Action.CREATE, Resource.LABEL, None)
    else:
        if not body.project_id:
            raise BadRequestError("project_id is required for a project label")
        context = await _project_access(session, principal, body.project_id, Action.CREATE)
        project_id = context.project_id
    name = check_name(body.name)
    label = Label(
        name=name,
        description=check_description(body.description),
        color=check_color(body.color),
        level="u",
        scope=scope,
        project_id=project_id,
    )
    if await repo.label_name_taken(session, name, scope, project_id):
        raise AlreadyExistsError(f"label {name} already exists")
    session.add(label)
    try:
        await session.flush()
    except IntegrityError:
        # Another request took the name between the check and the insert.
        raise AlreadyExistsError(f"label {name} already exists") from None
    await audit.record(session, actor, AuditEvent("create", _LABEL, name, project_id))
    return label


async def update_label(
    session: AsyncSession,
    principal: Principal,
    actor: Actor,
    label_id: int,
    body: schemas.Label,
) -> None:
    """``UpdateLabel``: name, description and colour; fields left out keep their value."""
    label = await _label_for(session, principal, label_id, Action.UPDATE)
    if body.scope is not None and body.scope != label.scope:
        raise BadRequestError("the scope of a label cannot change")
    if body.project_id is not None and body.project_id != label.project_id:
        raise BadRequestError("the project of a label cannot change")
    if body.name is not None:
        name = check_name(body.name)
        if name != label.name and await repo.label_name_taken(
            session, name, label.scope, label.project_id, other_than=label.id
        ):
            raise AlreadyExistsError(f"label {name} already exists")
        label.name = name
    if body.description is not None:
        label.description = check_description(body.description)
    if body.color is not None:
        label.color = check_color(body.color)
    label.update_time = utcnow()
    try:
        await session.flush()
    except IntegrityError:
        raise AlreadyExistsError(f"label {label.name} already exists") from None
    await audit.record(session, actor, AuditEvent("update", _LABEL, label.name, label.project_id))


async def delete_label(
    session: AsyncSession, principal: Principal, actor: Actor, label_id: int
) -> None:
    """``DeleteLabel``: the label goes, and with it from every artifact that carried it."""
    label = await _label_for(session, principal, label_id, Action.DELETE)
    await repo.delete_references_to(session, label.id)
    await session.delete(label)
    await audit.record(session, actor, AuditEvent("delete", _LABEL, label.name, label.project_id))


# --- labels on artifacts -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ArtifactRef:
    """An artifact as the API path names it."""

    project_name: str
    repository: str
    """The repository name without its project (``{repository_name}`` decoded)."""
    reference: str
    """A tag or a digest."""


async def _artifact_for(
    session: AsyncSession, principal: Principal, target: ArtifactRef, action: Action
) -> tuple[Project, Artifact]:
    project, context = await projects.resolve_project(
        session, principal, target.project_name, by_name=True
    )
    projects.require(principal, action, Resource.ARTIFACT_LABEL, context)
    name = f"{project.name}/{target.repository}"
    missing = NotFoundError(f"artifact {name}:{target.reference} not found")
    try:
        validate_repository_name(name)
        if is_digest(target.reference):
            Digest.parse(target.reference)
        else:
            validate_tag(target.reference)
    except AppError:
        # A name that cannot exist names nothing (removeLabel declares no 400).
        raise missing from None
    repository = await artifacts_repo.find_repository(session, project.project_id, name)
    if repository is None:
        raise NotFoundError(f"repository {name} not found")
    artifact = await artifacts_repo.find_artifact_by_reference(
        session, repository.repository_id, target.reference
    )
    if artifact is None:
        raise missing
    return project, artifact


def _attachment(artifact: Artifact, label: Label) -> str:
    return f"{artifact.repository_name}@{artifact.digest}:{label.name}"


async def add_artifact_label(
    session: AsyncSession,
    principal: Principal,
    actor: Actor,
    target: ArtifactRef,
    label_id: int | None,
) -> None:
    """``addLabel``: attach a global label or one of the artifact's project."""
    project, artifact = await _artifact_for(session, principal, target, Action.CREATE)
    if not label_id:
        raise BadRequestError("the id of the label to add is required")
    label = await repo.find_label(session, label_id)
    if label is None:
        raise NotFoundError(f"label {label_id} not found")
    if label.scope == PROJECT and label.project_id != project.project_id:
        raise BadRequestError(
            f"label {label_id} is not a global label nor one of project {project.name}"
        )
    if await repo.find_reference(session, label.id, artifact.id) is not None:
        raise ConflictError(f"label {label.name} is already added to the artifact")
    session.add(LabelReference(label_id=label.id, artifact_id=artifact.id))
    try:
        await session.flush()
    except IntegrityError:
        raise ConflictError(f"label {label.name} is already added to the artifact") from None
    await audit.record(
        session,
        actor,
        AuditEvent("create", _ARTIFACT_LABEL, _attachment(artifact, label), project.project_id),
    )


async def remove_artifact_label(
    session: AsyncSession,
    principal: Principal,
    actor: Actor,
    target: ArtifactRef,
    label_id: int,
) -> None:
    """``removeLabel``: detach a label the artifact carries."""
    project, artifact = await _artifact_for(session, principal, target, Action.DELETE)
    label = await repo.find_label(session, label_id)
    if label is None:
        raise NotFoundError(f"label {label_id} not found")
    reference = await repo.find_reference(session, label.id, artifact.id)
    if reference is None:
        raise NotFoundError(f"label {label.name} is not added to the artifact")
    await session.delete(reference)
    await audit.record(
        session,
        actor,
        AuditEvent("delete", _ARTIFACT_LABEL, _attachment(artifact, label), project.project_id),
    )
