"""Changing artifacts through Harbor's API: delete, tag, untag, copy; repositories too.

Every change goes through the registry's hook seam (``RegistryService.remove_artifact``,
``remove_tag``, ``add_tag``, ``link_blobs``), so tag immutability, quotas and the audit
log see an API change exactly as they see the same change made through ``/v2/``.

Deleting follows Harbor: an artifact goes with its tags and its accessories (the
artifacts whose subject it is, and cosign's ``sha256-<hex>.sig|att|sbom`` tags);
deleting an index also deletes the children no other index lists and no tag holds;
an artifact an index lists is refused. Copying adds rows only: blobs and manifests
are content-addressed, so the target repository is linked to them.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote

from sqlalchemy import delete, exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from dockyard.artifacts.repository import find_artifact_by_reference
from dockyard.audit import service as audit
from dockyard.audit.events import Actor, AuditEvent
from dockyard.errors import (
    AlreadyExistsError,
    AppError,
    BadRequestError,
    MethodNotAllowedError,
    NotFoundError,
    PreconditionFailedError,
)
from dockyard.iam.policy import Action, Principal, ProjectContext, Resource
from dockyard.oci.digest import Digest, is_digest
from dockyard.oci.names import validate_repository_name, validate_tag
from dockyard.projects import service as projects
from dockyard.projects.models import Project
from dockyard.registry import repository as registry_repo
from dockyard.registry.models import (
    Artifact,
    ArtifactAccessory,
    ArtifactBlob,
    ArtifactReference,
    Blob,
    Repository,
)
from dockyard.registry.service import RegistryService

_MAX_FROM = 1024


class RepositoryNotFoundError(NotFoundError):
    """No such repository in the project (or a name no repository can have)."""


class ArtifactNotFoundError(NotFoundError):
    """No artifact (or tag) answers to the reference in the repository."""


@dataclass(frozen=True, slots=True)
class Place:
    """A repository as a write sees it: its project, the caller's context there, its ref."""

    project: Project
    context: ProjectContext
    ref: registry_repo.RepositoryRef


# --- finding what a write names ---------------------------------------------------------


def repository_full_name(project_name: str, repository_name: str) -> str:
    """``<project>/<repository>`` from the path's (twice URL-encoded) repository name.

    A name no repository can have is not found (Harbor's answer), never a server error.
    """
    full = f"{project_name}/{unquote(repository_name)}"
    try:
        return validate_repository_name(full)
    except AppError:
        raise RepositoryNotFoundError(f"repository {_show(full)} not found") from None


def _reference(reference: str) -> str:
    """A tag, or a digest in its canonical form; a malformed one names nothing."""
    try:
        return str(Digest.parse(reference)) if is_digest(reference) else validate_tag(reference)
    except AppError:
        raise ArtifactNotFoundError(f"artifact {_show(reference)} not found") from None


def _show(value: str) -> str:
    return repr(value if len(value) <= 80 else value[:77] + "...")


async def _project(
    session: AsyncSession,
    principal: Principal,
    project_name: str,
    action: Action,
    resource: Resource,
) -> tuple[Project, ProjectContext]:
    """The project for ``principal`` (hidden ones 404, anonymous 401), who must be allowed."""
    project, context = await projects.resolve_project(session, principal, project_name, True)
    projects.require(principal, action, resource, context)
    return project, context


async def _place(
    session: AsyncSession,
    principal: Principal,
    project_name: str,
    repository_name: str,
    action: Action,
    resource: Resource,
) -> Place:
    project, context = await _project(session, principal, project_name, action, resource)
    full = repository_full_name(project.name, repository_name)
    ref = await registry_repo.find_repository_ref(session, full)
    if ref is None or ref.project_id != project.project_id:
        raise RepositoryNotFoundError(f"repository {full} not found")
    return Place(project, context, ref)


def _not_a_proxy_cache(project: Project) -> None:
    """Harbor refuses copying into, and tagging in, a proxy cache project (405): its
    content is the upstream's (docs/proxy-cache.md)."""
    if project.registry_id:
        raise MethodNotAllowedError("the operation isn't supported for a proxy cache project")


async def _artifact(session: AsyncSession, place: Place, reference: str) -> Artifact:
    found = await find_artifact_by_reference(
        session, place.ref.repository_id, _reference(reference)
    )
    if found is None:
        raise ArtifactNotFoundError(f"artifact {place.ref.name}:{reference} not found")
    return found


# --- queries of the artifact graph -------------------------------------------------------


async def _artifact_by_id(session: AsyncSession, artifact_id: int) -> Artifact | None:
    return await session.get(Artifact, artifact_id)


# --- deleting ----------------------------------------------------------------------------


async def delete_artifact(
    session: AsyncSession,
    registry: RegistryService,
    principal: Principal,
    actor: Actor,
    project_name: str,
    repository_name: str,
    reference: str,
) -> None:
    """``deleteArtifact``: the artifact a tag or digest names, its tags and accessories."""
    place = await _place(
        session, principal, project_name, repository_name, Action.DELETE, Resource.ARTIFACT
    )
    artifact = await _artifact(session, place, reference)
    parent = await registry_repo.referencing_index(session, artifact.id)
    if parent is not None:
        raise PreconditionFailedError(
            f"artifact {artifact.digest} is listed by index {parent} in {place.ref.name}; "
            "delete the index first"
        )
    await registry.remove_artifact_deeply(session, place.ref, artifact, actor)


async def delete_repository(
    session: AsyncSession,
    registry: RegistryService,
    principal: Principal,
    actor: Actor,
    project_name: str,
    repository_name: str,
) -> None:
    """``deleteRepository``: every artifact (through the hooks), then the repository row,
    recorded as one ``delete`` of the repository besides each artifact's own event."""
    place = await _place(
        session, principal, project_name, repository_name, Action.DELETE, Resource.REPOSITORY
    )
    gone: set[int] = set()
    listed = exists().where(ArtifactReference.child_id == Artifact.id)
    top_level = (
        select(Artifact)
        .where(Artifact.repository_id == place.ref.repository_id, ~listed)
        .order_by(Artifact.id)
    )
    while True:
        # Top-level artifacts first; the children an index held (tagged ones stay
        # when their index goes) are top-level on the next round.
        batch = [a for a in (await session.execute(top_level)).scalars() if a.id not in gone]
        if not batch:
            break
        for artifact in batch:
            await registry.remove_artifact_deeply(session, place.ref, artifact, actor, gone)
    await session.execute(
        delete(Repository).where(Repository.repository_id == place.ref.repository_id)
    )
    # The seam reports each artifact; the repository itself is this change's own event.
    await audit.record(
        session,
        actor,
        AuditEvent("delete", "repository", place.ref.name, place.project.project_id),
    )


async def delete_tag(
    session: AsyncSession,
    registry: RegistryService,
    principal: Principal,
    actor: Actor,
    project_name: str,
    repository_name: str,
    reference: str,
    tag_name: str,
) -> None:
    """``deleteTag``: one tag of the artifact ``reference`` names; the artifact stays."""
    place = await _place(
        session, principal, project_name, repository_name, Action.DELETE, Resource.TAG
    )
    artifact = await _artifact(session, place, reference)
    try:
        validate_tag(tag_name)
    except AppError:
        raise ArtifactNotFoundError(f"tag {_show(tag_name)} not found") from None
    found = await registry_repo.tag_target(session, place.ref.repository_id, tag_name)
    if found is None or found[0] != artifact.id:
        raise ArtifactNotFoundError(
            f"tag {tag_name} is not a tag of {place.ref.name}@{artifact.digest}"
        )
    await registry.remove_tag(session, place.ref, tag_name, actor)


# --- tagging and describing ----------------------------------------------------------------


async def create_tag(
    session: AsyncSession,
    registry: RegistryService,
    principal: Principal,
    actor: Actor,
    project_name: str,
    repository_name: str,
    reference: str,
    tag_name: str,
) -> None:
    """``createTag``: a new tag on the artifact; a name the repository already uses is 409."""
    place = await _place(
        session, principal, project_name, repository_name, Action.CREATE, Resource.TAG
    )
    _not_a_proxy_cache(place.project)
    artifact = await _artifact(session, place, reference)
    try:
        validate_tag(tag_name)
    except AppError as exc:
        raise BadRequestError(str(exc)) from None
    if await registry_repo.tag_target(session, place.ref.repository_id, tag_name) is not None:
        raise AlreadyExistsError(f"tag {tag_name} already exists in {place.ref.name}")
    await registry.add_tag(session, place.ref, artifact, tag_name, actor)


async def update_repository(
    session: AsyncSession,
    principal: Principal,
    actor: Actor,
    project_name: str,
    repository_name: str,
    description: str | None,
) -> None:
    """``updateRepository``: only the description changes, as in Harbor."""
    place = await _place(
        session, principal, project_name, repository_name, Action.UPDATE, Resource.REPOSITORY
    )
    text = projects.safe_text(description or "", "description")
    repository = await session.get(Repository, place.ref.repository_id)
    assert repository is not None  # found by _place in this transaction
    repository.description = text
    await session.flush()
    await audit.record(
        session,
        actor,
        AuditEvent("update", "repository", place.ref.name, place.project.project_id),
    )


# --- copying -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CopySource:
    repository: str
    reference: str
    tag: str | None
    """The tag ``from`` names (copied with the artifact); None for a digest."""


def parse_from(value: str | None) -> CopySource:
    """``project/repository:tag`` or ``project/repository@digest``; anything else is a 400."""
    if not value:
        raise BadRequestError(
            "from is required: project/repository:tag or project/repository@digest"
        )
    if len(value) > _MAX_FROM:
        raise BadRequestError(f"from is longer than {_MAX_FROM} characters")
    repository, at, digest = value.partition("@")
    try:
        if at:
            reference = str(Digest.parse(digest))
            tag = None
        else:
            repository, colon, tag_text = value.rpartition(":")
            if not colon or "/" in tag_text:
                raise BadRequestError(
                    f"from must be project/repository:tag or project/repository@digest, "
                    f"not {_show(value)}"
                )
            tag = reference = validate_tag(tag_text)
        validate_repository_name(repository)
    except BadRequestError:
        raise
    except AppError as exc:
        raise BadRequestError(f"from {_show(value)}: {exc}") from None
    return CopySource(repository, reference, tag)


async def copy_artifact(
    session: AsyncSession,
    registry: RegistryService,
    principal: Principal,
    actor: Actor,
    project_name: str,
    repository_name: str,
    source_text: str | None,
) -> str:
    """``CopyArtifact``: the artifact ``from`` names, with its children, accessories and tags
    (the one ``from`` names, else all of them), into the repository (created if needed);
    pull on the source and push on the target needed. A tag an immutability rule protects
    in the target is not moved (412). Returns the copied artifact's digest."""
    source = parse_from(source_text)
    target_project, _ = await _project(
        session, principal, project_name, Action.PUSH, Resource.REPOSITORY
    )
    _not_a_proxy_cache(target_project)
    full = repository_full_name(target_project.name, repository_name)
    source_place = await _place(
        session,
        principal,
        source.repository.partition("/")[0],
        source.repository.partition("/")[2],
        Action.PULL,
        Resource.REPOSITORY,
    )
    artifact = await _artifact(session, source_place, source.reference)
    target = await registry_repo.ensure_repository(session, full, target_project.project_id)
    # As Harbor: the tag ``from`` names, or by digest every tag the artifact has.
    tags = (
        [source.tag]
        if source.tag is not None
        else sorted(await registry_repo.tags_of_artifact(session, artifact.id))
    )
    first = tags[0] if tags else None
    copy = await _copy_deeply(session, registry, actor, artifact, target, first, {})
    for tag in tags[1:]:
        await registry.add_tag(session, target, copy, tag, actor)
    return artifact.digest


async def _copy_deeply(
    session: AsyncSession,
    registry: RegistryService,
    actor: Actor,
    source: Artifact,
    target: registry_repo.RepositoryRef,
    tag: str | None,
    copied: dict[int, Artifact],
) -> Artifact:
    """Copy ``source`` (children first, then itself, then its accessories) into ``target``;
    ``copied`` maps source ids to their copies."""
    if source.id in copied:
        return copied[source.id]
    references = await registry_repo.children_of(session, source)
    children: dict[int, Artifact] = {}
    for reference in references:
        child = await _artifact_by_id(session, reference.child_id)
        if child is not None:
            children[child.id] = await _copy_deeply(
                session, registry, actor, child, target, None, copied
            )
    await registry.link_blobs(session, target, await _blobs_of(session, source.digest), actor)
    existing = await registry_repo.find_artifact(session, target.repository_id, source.digest)
    copy = existing or await _copy_row(session, source, target, references, children)
    copied[source.id] = copy
    await registry.add_tag(session, target, copy, tag, actor, artifact_is_new=existing is None)
    cosign_names = registry_repo.cosign_tags(source.digest)
    for accessory in await registry_repo.accessory_artifacts(session, source):
        # A cosign accessory keeps the tag that names it (``sha256-<hex>.sig``).
        names = await registry_repo.tags_of_artifact(session, accessory.id)
        accessory_tag = next((n for n in names if n in cosign_names), None)
        accessory_copy = await _copy_deeply(
            session, registry, actor, accessory, target, accessory_tag, copied
        )
        await _copy_accessory_record(session, source, copy, accessory, accessory_copy, target)
    return copy


async def _blobs_of(session: AsyncSession, digest: str) -> list[tuple[int, int]]:
    """(id, size) of every blob the manifest ``digest`` needs, its own bytes included."""
    query = (
        select(Blob.id, Blob.size)
        .join(ArtifactBlob, ArtifactBlob.digest_blob == Blob.digest)
        .where(ArtifactBlob.digest_af == digest)
        .order_by(Blob.id)
    )
    return [(row[0], row[1]) for row in (await session.execute(query)).all()]


async def _copy_row(
    session: AsyncSession,
    source: Artifact,
    target: registry_repo.RepositoryRef,
    references: list[ArtifactReference],
    children: dict[int, Artifact],
) -> Artifact:
    copy = Artifact(
        type=source.type,
        media_type=source.media_type,
        manifest_media_type=source.manifest_media_type,
        artifact_type=source.artifact_type,
        project_id=target.project_id,
        repository_id=target.repository_id,
        repository_name=target.name,
        digest=source.digest,
        size=source.size,
        subject_digest=source.subject_digest,
        annotations=source.annotations,
        extra_attrs=source.extra_attrs,
        icon=source.icon,
    )
    session.add(copy)
    await session.flush()
    for reference in references:
        child = children.get(reference.child_id)
        if child is None:
            continue
        session.add(
            ArtifactReference(
                parent_id=copy.id,
                child_id=child.id,
                child_digest=reference.child_digest,
                platform=reference.platform,
                urls=reference.urls,
                annotations=reference.annotations,
            )
        )
    await session.flush()
    return copy


async def _copy_accessory_record(
    session: AsyncSession,
    subject: Artifact,
    subject_copy: Artifact,
    accessory: Artifact,
    accessory_copy: Artifact,
    target: registry_repo.RepositoryRef,
) -> None:
    """Carry the record that ``accessory`` belongs to ``subject`` over to the copies."""
    record = (
        await session.execute(
            select(ArtifactAccessory).where(
                ArtifactAccessory.artifact_id == accessory.id,
                ArtifactAccessory.subject_artifact_id == subject.id,
            )
        )
    ).scalar_one_or_none()
    if record is not None:
        exists = await session.scalar(
            select(ArtifactAccessory.id).where(
                ArtifactAccessory.artifact_id == accessory_copy.id,
                ArtifactAccessory.subject_artifact_digest == record.subject_artifact_digest,
            )
        )
        if exists is None:
            session.add(
                ArtifactAccessory(
                    artifact_id=accessory_copy.id,
                    subject_artifact_id=subject_copy.id,
                    subject_artifact_digest=record.subject_artifact_digest,
                    subject_artifact_repo=target.name,
                    type=record.type,
                    size=record.size,
                    digest=record.digest,
                )
            )
            await session.flush()
