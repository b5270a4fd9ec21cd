"""Browsing repositories and artifacts as Harbor's API shows them.

Every entry point resolves the project for the principal first (a private
project stays hidden from outsiders), asks ``can`` for the specific permission,
then reads. Listings run Harbor's ``q``/``sort``/paging in the database and
assemble a page's tags, labels, accessories and index children with one query
each.
"""

from __future__ import annotations

import gzip
import io
import json
import tarfile
import time
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from anyio import to_thread
from sqlalchemy import ColumnElement, Select, and_, not_
from sqlalchemy.ext.asyncio import AsyncSession

from dockyard.artifacts import repository as repo
from dockyard.artifacts import schemas
from dockyard.db.listing import (
    Condition,
    PageRequest,
    apply_q,
    condition_clause,
    fetch_page,
    parse_q,
    parse_sort,
)
from dockyard.errors import (
    AppError,
    BadRequestError,
    NameUnknownError,
    NotFoundError,
    ObjectNotFoundError,
)
from dockyard.iam.policy import Action, Principal, ProjectContext, Resource
from dockyard.immutability import service as immutability
from dockyard.labels.models import Label, LabelReference
from dockyard.lru import LruCache
from dockyard.oci.digest import Digest
from dockyard.oci.manifest import MAX_MANIFEST_BYTES, ParsedManifest, parse_manifest
from dockyard.oci.mediatypes import INDEX_TYPES
from dockyard.oci.names import validate_repository_name, validate_tag
from dockyard.projects.models import Project
from dockyard.projects.service import require, resolve_project, safe_text, visible_projects
from dockyard.registry.models import Artifact, ArtifactAccessory, ArtifactReference, Repository, Tag
from dockyard.scan import registrations as scanners
from dockyard.scan import reports as scan_reports
from dockyard.storage import ObjectStore, blob_key

API_PREFIX = "/api/v2.0"
MAX_ADDITION_BYTES = 4 * 1024 * 1024
"""Largest blob (config or chart archive) read to answer an addition."""
_MAX_CHART_FILE_BYTES = 1024 * 1024
MAX_CHART_MEMBERS = 10_000
"""Tar members a chart archive may have before its files are looked for; past it, unreadable."""
_YIELD_EVERY = 200
MAX_CHART_UNPACKED_BYTES = 64 * 1024 * 1024
"""Bytes a chart archive may decompress to (a small gzip can hold huge runs of headers)."""
_IMAGE_ADDITIONS = ("build_history",)
_CHART_ADDITIONS = ("values.yaml", "readme.md", "dependencies")
_IMAGE_CONFIGS = frozenset(
    {
        "application/vnd.oci.image.config.v1+json",
        "application/vnd.docker.container.image.v1+json",
    }
)
"""Config media types of images whose build history Harbor shows."""
VULNERABILITIES = "vulnerabilities"
"""Answered for every artifact with no report (``{}``), as Harbor answers for an
unscanned one, until scanning lands."""
ADDITIONS = (*_IMAGE_ADDITIONS, *_CHART_ADDITIONS, VULNERABILITIES)
"""Additions Dockyard can answer (SBOM, license and files need scanners)."""


# --- resolving -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RepositoryTarget:
    """A repository the principal may act on, with its project and the principal's context."""

    project: Project
    context: ProjectContext
    repository: Repository


def full_repository_name(project_name: str, repository_name: str) -> str | None:
    """``project/name`` for a valid name inside the project, else None."""
    try:
        return validate_repository_name(f"{project_name}/{repository_name}")
    except AppError:
        return None


async def resolve_repository(
    session: AsyncSession,
    principal: Principal,
    project_name: str,
    repository_name: str,
    action: Action,
    resource: Resource,
) -> RepositoryTarget:
    """The repository ``repository_name`` (without the project) of ``project_name``, after
    checking ``action`` on ``resource``; 401/403/404 exactly as Harbor answers them."""
    project, context = await resolve_project(session, principal, project_name, by_name=True)
    require(principal, action, resource, context)
    name = full_repository_name(project.name, repository_name)
    found = await repo.find_repository(session, project.project_id, name) if name else None
    if found is None:
        raise NameUnknownError(f"repository {project.name}/{repository_name} not found")
    return RepositoryTarget(project, context, found)


def check_reference(reference: str) -> str:
    """A valid tag or digest; anything else is a 400 that says what is wrong."""
    if repo.is_digest_reference(reference):
        return str(Digest.parse(reference))
    return validate_tag(reference)


async def resolve_artifact(
    session: AsyncSession, target: RepositoryTarget, reference: str
) -> Artifact:
    """The artifact ``reference`` (tag or digest) names in the repository, or a 404."""
    found = await repo.find_artifact_by_reference(
        session, target.repository.repository_id, check_reference(reference)
    )
    if found is None:
        raise NotFoundError(f"artifact {target.repository.name}:{reference} not found")
    return found


# --- repositories --------------------------------------------------------------------------

_REPOSITORY_Q: dict[str, ColumnElement[Any]] = {
    "name": Repository.name.expression,
    "project_id": Repository.project_id.expression,
    "id": Repository.repository_id.expression,
}
_REPOSITORY_SORT: dict[str, ColumnElement[Any]] = {
    "name": Repository.name.expression,
    "creation_time": Repository.creation_time.expression,
    "update_time": Repository.update_time.expression,
    "pull_count": Repository.pull_count.expression,
    "id": Repository.repository_id.expression,
}


def _conditions(q: str | None, int_keys: Iterable[str] = ()) -> list[Condition]:
    """``q`` parsed, with every value safe for the database and integers checked."""
    conditions = parse_q(q)
    numeric = set(int_keys)
    for condition in conditions:
        for value in condition.values:
            safe_text(value, f"q value for {condition.key}")
            if condition.key in numeric and condition.kind != "fuzzy":
                _integer(value, condition.key)
        if condition.key in numeric and condition.kind == "fuzzy":
            raise BadRequestError(f"q key {condition.key} does not take a fuzzy match (=~)")
    return conditions


def _integer(value: str, key: str) -> int:
    text = value.removeprefix("-")
    if not (text.isascii() and text.isdigit() and len(text) <= 18):
        raise BadRequestError(f"q value {value[:64]!r} for {key} is not an integer")
    return int(value)


async def _repository_page(
    session: AsyncSession,
    stmt: Select[Any],
    q: str | None,
    sort: str | None,
    page: PageRequest,
) -> tuple[list[schemas.Repository], int]:
    stmt = apply_q(stmt, _conditions(q, ("project_id", "id")), _REPOSITORY_Q)
    order = parse_sort(sort, _REPOSITORY_SORT) or [Repository.creation_time.desc()]
    rows, total = await fetch_page(session, stmt, page, order, Repository.repository_id.desc())
    found: list[Repository] = repo.scalars(rows)
    counts = await repo.artifact_counts(session, [r.repository_id for r in found])
    return [_repository_view(r, counts.get(r.repository_id, 0)) for r in found], total


def _repository_view(row: Repository, artifact_count: int) -> schemas.Repository:
    return schemas.Repository(
        id=row.repository_id,
        project_id=row.project_id,
        name=row.name,
        description=row.description,
        artifact_count=artifact_count,
        pull_count=row.pull_count,
        creation_time=row.creation_time,
        update_time=row.update_time,
    )


async def list_repositories(
    session: AsyncSession,
    principal: Principal,
    project_name: str,
    q: str | None,
    sort: str | None,
    page: PageRequest,
) -> tuple[list[schemas.Repository], int]:
    """``listRepositories``: needs ``repository:list`` in the project."""
    project, context = await resolve_project(session, principal, project_name, by_name=True)
    require(principal, Action.LIST, Resource.REPOSITORY, context)
    return await _repository_page(
        session, repo.repository_listing(project.project_id), q, sort, page
    )


async def list_all_repositories(
    session: AsyncSession,
    principal: Principal,
    q: str | None,
    sort: str | None,
    page: PageRequest,
) -> tuple[list[schemas.Repository], int]:
    """``listAllRepositories``: administrators see every repository; others those of the
    projects they may see (public ones and their own)."""
    stmt = repo.repository_listing(None)
    visible = visible_projects(principal)
    if visible is not None:
        stmt = stmt.where(visible)
    return await _repository_page(session, stmt, q, sort, page)


async def get_repository(
    session: AsyncSession, principal: Principal, project_name: str, repository_name: str
) -> schemas.Repository:
    """``getRepository``: needs ``repository:read``."""
    target = await resolve_repository(
        session, principal, project_name, repository_name, Action.READ, Resource.REPOSITORY
    )
    found = target.repository
    counts = await repo.artifact_counts(session, [found.repository_id])
    return _repository_view(found, counts.get(found.repository_id, 0))


async def project_artifact_count(
    session: AsyncSession, principal: Principal, context: ProjectContext, cap: int
) -> int:
    """A project's artifacts for its summary page, counted up to ``cap`` (shown as "cap+"),
    so the page costs the same for a project of ten artifacts or of a million."""
    require(principal, Action.LIST, Resource.ARTIFACT, context)
    return await repo.count_project_artifacts(session, context.project_id, cap)


# --- artifacts -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ArtifactOptions:
    """The ``with_*`` flags of ``listArtifacts``/``getArtifact``. Signatures have nothing
    to show until signing lands; scan and SBOM overviews are the stored summaries of the
    project's scanner (``scan/reports.py``)."""

    with_tag: bool = True
    with_label: bool = False
    with_immutable_status: bool = False
    with_accessory: bool = False
    with_scan_overview: bool = False
    with_sbom_overview: bool = False


_ARTIFACT_Q: dict[str, ColumnElement[Any]] = {
    "type": Artifact.type.expression,
    "media_type": Artifact.media_type.expression,
    "manifest_media_type": Artifact.manifest_media_type.expression,
    "artifact_type": Artifact.artifact_type.expression,
    "digest": Artifact.digest.expression,
    "repository_name": Artifact.repository_name.expression,
    "id": Artifact.id.expression,
}
_ARTIFACT_SORT: dict[str, ColumnElement[Any]] = {
    "push_time": Artifact.push_time.expression,
    "pull_time": Artifact.pull_time.expression,
    "size": Artifact.size.expression,
    "type": Artifact.type.expression,
    "digest": Artifact.digest.expression,
    "media_type": Artifact.media_type.expression,
    "repository_name": Artifact.repository_name.expression,
    "id": Artifact.id.expression,
}


def _tags_clause(condition: Condition) -> ColumnElement[bool]:
    """Harbor's ``tags`` filter: ``nil`` untagged, ``*`` tagged, ``v`` exact, ``~v`` fuzzy,
    ``{a b}`` any of, ``(a b)`` all of."""
    if condition.kind == "exact":
        value = condition.values[0]
        if value == "nil":
            return not_(repo.has_tag())
        if value == "*":
            return repo.has_tag()
        return repo.has_tag(Tag.name == value)
    if condition.kind == "fuzzy":
        return repo.has_tag(condition_clause(condition, Tag.name.expression))
    if condition.kind == "any":
        return repo.has_tag(Tag.name.in_(condition.values))
    if condition.kind == "all":
        return and_(*(repo.has_tag(Tag.name == v) for v in condition.values))
    raise BadRequestError("q key tags takes tags=v, tags=~v, tags=nil, tags=*, {a b} or (a b)")


def _labels_clause(condition: Condition) -> ColumnElement[bool]:
    """Harbor's ``labels`` filter by label id: ``(1 2)`` carries all, ``{1 2}`` any, ``1``."""
    if condition.kind not in ("exact", "any", "all"):
        raise BadRequestError("q key labels takes label ids: labels=1, labels=(1 2), labels={1 2}")
    ids = [_integer(v, "labels") for v in condition.values]
    if condition.kind == "any":
        return repo.has_label(LabelReference.label_id.in_(ids))
    return and_(*(repo.has_label(LabelReference.label_id == i) for i in ids))


def _filtered_artifacts(stmt: Select[Any], q: str | None) -> Select[Any]:
    conditions = _conditions(q, ("id",))
    plain = [c for c in conditions if c.key not in ("tags", "labels")]
    stmt = apply_q(stmt, plain, _ARTIFACT_Q)
    for condition in conditions:
        if condition.key == "tags":
            stmt = stmt.where(_tags_clause(condition))
        elif condition.key == "labels":
            stmt = stmt.where(_labels_clause(condition))
    return stmt


async def _artifact_page(
    session: AsyncSession,
    stmt: Select[Any],
    q: str | None,
    sort: str | None,
    page: PageRequest,
) -> tuple[list[Artifact], int]:
    """One page of artifacts: the page's ids first (on an index), then their rows."""
    stmt = _filtered_artifacts(stmt, q)
    order = parse_sort(sort, _ARTIFACT_SORT) or [Artifact.push_time.desc()]
    rows, total = await fetch_page(session, stmt, page, order, Artifact.id.desc())
    return await repo.artifacts_by_id(session, [row[0] for row in rows]), total


async def list_artifacts(
    session: AsyncSession,
    principal: Principal,
    project_name: str,
    repository_name: str,
    options: ArtifactOptions,
    q: str | None,
    sort: str | None,
    page: PageRequest,
) -> tuple[list[schemas.Artifact], int]:
    """``listArtifacts``: the repository's artifacts that are not accessories of another;
    needs ``artifact:list``."""
    target = await resolve_repository(
        session, principal, project_name, repository_name, Action.LIST, Resource.ARTIFACT
    )
    stmt = repo.artifact_listing(target.repository, None)
    found, total = await _artifact_page(session, stmt, q, sort, page)
    return await assemble(session, target.project, found, options), total


async def list_project_artifacts(
    session: AsyncSession,
    principal: Principal,
    project_name_or_id: str,
    by_name: bool,
    options: ArtifactOptions,
    q: str | None,
    sort: str | None,
    page: PageRequest,
) -> tuple[list[schemas.Artifact], int]:
    """``listArtifactsOfProject``: the artifacts of every repository of the project."""
    project, context = await resolve_project(session, principal, project_name_or_id, by_name)
    require(principal, Action.LIST, Resource.ARTIFACT, context)
    stmt = repo.artifact_listing(None, project.project_id)
    found, total = await _artifact_page(session, stmt, q, sort, page)
    return await assemble(session, project, found, options), total


async def get_artifact(
    session: AsyncSession,
    principal: Principal,
    project_name: str,
    repository_name: str,
    reference: str,
    options: ArtifactOptions,
) -> schemas.Artifact:
    """``getArtifact`` by tag or digest: needs ``artifact:read``."""
    target = await resolve_repository(
        session, principal, project_name, repository_name, Action.READ, Resource.ARTIFACT
    )
    artifact = await resolve_artifact(session, target, reference)
    views = await assemble(session, target.project, [artifact], options)
    return views[0]


async def assemble(
    session: AsyncSession, project: Project, artifacts: Sequence[Artifact], options: ArtifactOptions
) -> list[schemas.Artifact]:
    """The API shape of ``artifacts``, each optional part loaded once for all of them."""
    ids = [a.id for a in artifacts]
    tags = await repo.tags_of(session, ids) if options.with_tag else {}
    labels = await repo.labels_of(session, ids) if options.with_label else {}
    accessories = await repo.accessories_of(session, ids) if options.with_accessory else {}
    indexes = {a.id for a in artifacts if a.manifest_media_type in INDEX_TYPES}
    references = await repo.references_of(session, indexes)
    immutable: set[tuple[str, str]] = set()
    if options.with_tag and options.with_immutable_status:
        immutable = await _immutable(session, project.project_id, artifacts, tags)
    children = {index: [r.child_id for r in refs] for index, refs in references.items()}
    overviews = await _scan_overviews(session, project, ids, children, options)
    views = []
    for artifact in artifacts:
        view = artifact_view(project.name, artifact)
        if options.with_tag:
            view.tags = [
                tag_view(t, (artifact.repository_name, t.name) in immutable)
                for t in tags.get(artifact.id, [])
            ]
        if options.with_label:
            view.labels = [label_view(label) for label in labels.get(artifact.id, [])]
        if options.with_accessory:
            view.accessories = [accessory_view(a) for a in accessories.get(artifact.id, [])]
        if artifact.id in indexes:
            view.references = [reference_view(r) for r in references.get(artifact.id, [])]
        if options.with_scan_overview:
            view.scan_overview = overviews.scan.get(artifact.id) or None
        if options.with_sbom_overview:
            view.sbom_overview = overviews.sbom.get(artifact.id)
        views.append(view)
    return views


async def _scan_overviews(
    session: AsyncSession,
    project: Project,
    ids: Sequence[int],
    children: dict[int, list[int]],
    options: ArtifactOptions,
) -> scan_reports.Overviews:
    """The stored scan and SBOM summaries of the page by the project's scanner (an index's
    from its children's): two indexed queries for the whole page, whatever its size, and
    no counting of findings."""
    if not ids or not (options.with_scan_overview or options.with_sbom_overview):
        return scan_reports.Overviews({}, {})
    registration = await scanners.registration_of_project(session, project.project_id)
    return await scan_reports.overviews(
        session,
        ids,
        registration.uuid if registration is not None else None,
        with_scan=options.with_scan_overview,
        with_sbom=options.with_sbom_overview,
        children=children,
    )


async def vulnerabilities_of(session: AsyncSession, artifact: Artifact) -> dict[str, Any]:
    """``additions/vulnerabilities``: the current report by the project's scanner."""
    registration = await scanners.registration_of_project(session, artifact.project_id)
    return await scan_reports.vulnerability_report(
        session, artifact.id, registration.uuid if registration is not None else None
    )


async def _immutable(
    session: AsyncSession,
    project_id: int,
    artifacts: Sequence[Artifact],
    tags: dict[int, list[Tag]],
) -> set[tuple[str, str]]:
    """(repository, tag) pairs the project's enabled immutability rules protect (the rules
    are read once for the whole page)."""
    rules = await immutability.project_rules(session, project_id)
    if not rules:
        return set()
    pairs = [
        (artifact.repository_name, tag.name)
        for artifact in artifacts
        for tag in tags.get(artifact.id, [])
    ]
    found = await immutability.protecting_each(rules, pairs)
    return {pair for pair, rule in zip(pairs, found, strict=True) if rule is not None}


def _json_object(raw: str | None) -> dict[str, Any] | None:
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) and value else None


def addition_names(artifact: Artifact) -> tuple[str, ...]:
    """The additions Harbor offers for the artifact's type."""
    if artifact.type == "CHART":
        return _CHART_ADDITIONS
    if artifact.type == "IMAGE" and artifact.media_type in _IMAGE_CONFIGS:
        return _IMAGE_ADDITIONS
    return ()


def artifact_view(project_name: str, artifact: Artifact) -> schemas.Artifact:
    inner = artifact.repository_name.split("/", 1)[1]
    escaped = quote(quote(inner, safe=""), safe="")
    base = (
        f"{API_PREFIX}/projects/{project_name}/repositories/{escaped}"
        f"/artifacts/{artifact.digest}/additions/"
    )
    links = {name: schemas.AdditionLink(href=base + name) for name in addition_names(artifact)}
    return schemas.Artifact(
        id=artifact.id,
        type=artifact.type,
        media_type=artifact.media_type,
        manifest_media_type=artifact.manifest_media_type,
        artifact_type=artifact.artifact_type,
        project_id=artifact.project_id,
        repository_id=artifact.repository_id,
        repository_name=artifact.repository_name,
        digest=artifact.digest,
        size=artifact.size,
        icon=artifact.icon or None,
        push_time=artifact.push_time,
        pull_time=artifact.pull_time,
        extra_attrs=_json_object(artifact.extra_attrs) or {},
        annotations=_json_object(artifact.annotations) or {},
        addition_links=links or None,
    )


def tag_view(tag: Tag, immutable: bool = False) -> schemas.Tag:
    return schemas.Tag(
        id=tag.id,
        repository_id=tag.repository_id,
        artifact_id=tag.artifact_id,
        name=tag.name,
        push_time=tag.push_time,
        pull_time=tag.pull_time,
        immutable=immutable,
    )


def label_view(label: Label) -> schemas.Label:
    return schemas.Label(
        id=label.id,
        name=label.name,
        description=label.description,
        color=label.color,
        scope=label.scope,
        project_id=label.project_id,
        creation_time=label.creation_time,
        update_time=label.update_time,
    )


def accessory_view(accessory: ArtifactAccessory) -> schemas.Accessory:
    return schemas.Accessory(
        id=accessory.id,
        artifact_id=accessory.artifact_id,
        subject_artifact_id=accessory.subject_artifact_id,
        subject_artifact_digest=accessory.subject_artifact_digest,
        subject_artifact_repo=accessory.subject_artifact_repo,
        size=accessory.size,
        digest=accessory.digest,
        type=accessory.type,
        creation_time=accessory.creation_time,
    )


def reference_view(reference: ArtifactReference) -> schemas.Reference:
    platform = _json_object(reference.platform)
    urls: Any = json.loads(reference.urls) if reference.urls else None
    return schemas.Reference(
        parent_id=reference.parent_id,
        child_id=reference.child_id,
        child_digest=reference.child_digest,
        platform=schemas.Platform(
            architecture=platform.get("architecture"),
            os=platform.get("os"),
            os_version=platform.get("os.version"),
            os_features=platform.get("os.features"),
            variant=platform.get("variant"),
        )
        if platform
        else None,
        annotations=_json_object(reference.annotations),
        urls=urls if isinstance(urls, list) else None,
    )


# --- tags and accessories ------------------------------------------------------------------

_TAG_Q: dict[str, ColumnElement[Any]] = {
    "name": Tag.name.expression,
    "id": Tag.id.expression,
    "push_time": Tag.push_time.expression,
    "pull_time": Tag.pull_time.expression,
}
_TAG_SORT: dict[str, ColumnElement[Any]] = {
    "name": Tag.name.expression,
    "id": Tag.id.expression,
    "push_time": Tag.push_time.expression,
    "pull_time": Tag.pull_time.expression,
}
_ACCESSORY_Q: dict[str, ColumnElement[Any]] = {
    "type": ArtifactAccessory.type.expression,
    "digest": ArtifactAccessory.digest.expression,
    "id": ArtifactAccessory.id.expression,
}
_ACCESSORY_SORT: dict[str, ColumnElement[Any]] = {
    "creation_time": ArtifactAccessory.creation_time.expression,
    "type": ArtifactAccessory.type.expression,
    "size": ArtifactAccessory.size.expression,
    "id": ArtifactAccessory.id.expression,
}


async def list_tags(
    session: AsyncSession,
    principal: Principal,
    project_name: str,
    repository_name: str,
    reference: str,
    with_immutable_status: bool,
    q: str | None,
    sort: str | None,
    page: PageRequest,
) -> tuple[list[schemas.Tag], int]:
    """``listTags`` of one artifact: needs ``tag:list``."""
    target = await resolve_repository(
        session, principal, project_name, repository_name, Action.LIST, Resource.TAG
    )
    artifact = await resolve_artifact(session, target, reference)
    stmt = apply_q(repo.tag_listing(artifact.id), _conditions(q, ("id",)), _TAG_Q)
    order = parse_sort(sort, _TAG_SORT) or [Tag.push_time.desc()]
    rows, total = await fetch_page(session, stmt, page, order, Tag.id.desc())
    found: list[Tag] = repo.scalars(rows)
    immutable: set[tuple[str, str]] = set()
    if with_immutable_status:
        immutable = await _immutable(
            session, target.project.project_id, [artifact], {artifact.id: found}
        )
    return [tag_view(t, (artifact.repository_name, t.name) in immutable) for t in found], total


async def list_accessories(
    session: AsyncSession,
    principal: Principal,
    project_name: str,
    repository_name: str,
    reference: str,
    q: str | None,
    sort: str | None,
    page: PageRequest,
) -> tuple[list[schemas.Accessory], int]:
    """``listAccessories`` of one artifact: needs ``accessory:list``."""
    target = await resolve_repository(
        session, principal, project_name, repository_name, Action.LIST, Resource.ACCESSORY
    )
    artifact = await resolve_artifact(session, target, reference)
    stmt = apply_q(repo.accessory_listing(artifact.id), _conditions(q, ("id",)), _ACCESSORY_Q)
    order = parse_sort(sort, _ACCESSORY_SORT) or [ArtifactAccessory.creation_time.desc()]
    rows, total = await fetch_page(session, stmt, page, order, ArtifactAccessory.id.desc())
    return [accessory_view(a) for a in repo.scalars(rows)], total


# --- additions -----------------------------------------------------------------------------


async def find_addition_artifact(
    session: AsyncSession,
    principal: Principal,
    project_name: str,
    repository_name: str,
    reference: str,
    addition: str,
) -> Artifact:
    """The artifact whose ``addition`` is asked for, after the access check
    (``artifact-addition:read``); a 404 when the addition does not apply to its type."""
    target = await resolve_repository(
        session, principal, project_name, repository_name, Action.READ, Resource.ARTIFACT_ADDITION
    )
    artifact = await resolve_artifact(session, target, reference)
    if addition != VULNERABILITIES and addition not in addition_names(artifact):
        raise NotFoundError(
            f"artifact {artifact.digest} of type {artifact.type} has no {addition!r} addition"
        )
    session.expunge(artifact)
    return artifact


CHART_LAYER = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"


async def _read_capped(
    storage: ObjectStore, digest: str, declared: int, what: str, cap: int = MAX_ADDITION_BYTES
) -> bytes:
    """The blob, if it is at most ``cap`` bytes. The ``declared`` size (a descriptor's claim)
    refuses early, but the read itself stops at ``cap`` whatever was declared."""
    if declared > cap:
        raise NotFoundError(f"the {what} is larger than {cap} bytes; not read")
    chunks: list[bytes] = []
    got = 0
    try:
        async for chunk in storage.read(blob_key(digest), 0, cap + 1):
            chunks.append(chunk)
            got += len(chunk)
            if got > cap:
                raise NotFoundError(f"the {what} is larger than {cap} bytes; not read")
    except ObjectNotFoundError:
        raise NotFoundError(f"the {what} {digest} is not in storage") from None
    return b"".join(chunks)


async def blob_content(
    storage: ObjectStore, digest: str, declared: int, what: str, cap: int = MAX_ADDITION_BYTES
) -> bytes:
    """A blob of an artifact the caller was allowed to read (the console's SBOM download),
    read with no transaction open and never more than ``cap`` bytes (a 404 beyond)."""
    return await _read_capped(storage, digest, declared, what, cap)


@dataclass(frozen=True, slots=True)
class ManifestDocuments:
    """An artifact's manifest as stored, parsed, and its config blob (when it has one)."""

    raw: bytes
    parsed: ParsedManifest
    config: bytes | None


async def manifest_documents(
    storage: ObjectStore, digest: str, manifest_media_type: str
) -> ManifestDocuments:
    """The manifest and config of an artifact the caller was allowed to read (the console's
    artifact page), read from the blobs with no transaction open, each capped."""
    raw = await _read_capped(storage, digest, 0, "manifest", MAX_MANIFEST_BYTES)
    try:
        parsed = parse_manifest(raw, manifest_media_type)
    except AppError:
        raise NotFoundError(f"the manifest {digest} cannot be read") from None
    config = None
    if parsed.config is not None and parsed.config.size <= MAX_ADDITION_BYTES:
        config = await _read_capped(
            storage, str(parsed.config.digest), parsed.config.size, "config"
        )
    return ManifestDocuments(raw, parsed, config)


async def addition_content(
    storage: ObjectStore,
    artifact: Artifact,
    addition: str,
    chart_cache: LruCache[tuple[str, str], tuple[str | None, str | None]] | None = None,
) -> tuple[str, bytes]:
    """(content type, body) of an addition ``find_addition_artifact`` allowed, read from
    the blobs with no transaction open; never more than ``MAX_ADDITION_BYTES`` a blob.
    A chart's file is unpacked off the event loop, once per archive and file when
    ``chart_cache`` is given (a refusal is kept too: a hostile archive costs once)."""
    body = await _read_capped(storage, artifact.digest, 0, "manifest", MAX_MANIFEST_BYTES)
    try:
        parsed = parse_manifest(body, artifact.manifest_media_type)
    except AppError:
        raise NotFoundError(f"the manifest {artifact.digest} cannot be read") from None
    config = None
    if parsed.config is not None:
        config = await _read_capped(
            storage, str(parsed.config.digest), parsed.config.size, "config"
        )
    if addition == "build_history":
        history = build_history(config or b"{}")
        return "application/json; charset=utf-8", json.dumps(history).encode()
    if addition == "dependencies":
        return "application/json; charset=utf-8", json.dumps(chart_dependencies(config)).encode()
    layer = next((d for d in parsed.layers if d.media_type == CHART_LAYER), None)
    layer = layer or (parsed.layers[0] if parsed.layers else None)
    if layer is None:
        raise NotFoundError(f"chart {artifact.digest} has no chart archive layer")
    wanted = "values.yaml" if addition == "values.yaml" else "readme.md"
    key = (str(layer.digest), wanted)
    found, kept = chart_cache.get(key) if chart_cache is not None else (False, None)
    if not found or kept is None:
        archive = await _read_capped(storage, str(layer.digest), layer.size, "chart")
        try:
            files = await to_thread.run_sync(chart_files, archive, (wanted,))
            kept = (files.values if wanted == "values.yaml" else files.readme, None)
        except NotFoundError as exc:
            kept = (None, exc.message)
        if chart_cache is not None:
            chart_cache.put(key, kept)
    text, refused = kept
    if refused is not None:
        raise NotFoundError(refused)
    if text is None:
        raise NotFoundError(f"chart {artifact.digest} has no {wanted}")
    # Markdown from a user: callers must send it with a sandboxing CSP (see the API handler).
    content_type = "text/plain" if wanted == "values.yaml" else "text/markdown"
    return f"{content_type}; charset=utf-8", text.encode()


def build_history(config: bytes) -> list[dict[str, Any]]:
    """The image config's ``history`` (Harbor's ``build_history`` addition)."""
    try:
        document = json.loads(config)
    except (ValueError, RecursionError):
        raise NotFoundError("the image config is not JSON; it has no build history") from None
    history = document.get("history") if isinstance(document, dict) else None
    return [h for h in history if isinstance(h, dict)] if isinstance(history, list) else []


@dataclass(frozen=True, slots=True)
class ChartFiles:
    values: str | None
    readme: str | None
    chart_yaml: str | None


class _ChartTooLarge(Exception):
    """The archive unpacks past ``MAX_CHART_UNPACKED_BYTES``."""


class _CappedGunzip(io.RawIOBase):
    """A gzip archive's bytes, decompressed lazily, refusing past ``limit`` bytes."""

    def __init__(self, archive: bytes, limit: int) -> None:
        self._source = gzip.GzipFile(fileobj=io.BytesIO(archive))
        self._left = limit

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer)
        data = self._source.read(min(len(view), self._left + 1))
        self._left -= len(data)
        if self._left < 0:
            raise _ChartTooLarge
        view[: len(data)] = data
        return len(data)


def chart_files(
    archive: bytes, wanted: Iterable[str] = ("values.yaml", "readme.md", "chart.yaml")
) -> ChartFiles:
    """``values.yaml``, ``README.md`` and ``Chart.yaml`` of a chart archive (``.tgz``), or
    only those ``wanted``; members in sub-charts (``charts/``) are ignored.

    CPU-bound and bounded: it streams the archive once, stops as soon as every wanted file
    is found, and refuses an archive of more than ``MAX_CHART_MEMBERS`` members or
    ``MAX_CHART_UNPACKED_BYTES`` unpacked. Call it off the event loop."""
    found: dict[str, str | None] = dict.fromkeys(("values.yaml", "readme.md", "chart.yaml"))
    missing = {name for name in wanted if name in found}
    gzipped = archive[:2] == b"\x1f\x8b"
    stream: io.RawIOBase | io.BytesIO = (
        _CappedGunzip(archive, MAX_CHART_UNPACKED_BYTES) if gzipped else io.BytesIO(archive)
    )
    try:
        with tarfile.open(fileobj=stream, mode="r|") as tar:
            for count, member in enumerate(tar, 1):
                if not missing:
                    break
                if count % _YIELD_EVERY == 0:
                    time.sleep(0)  # hand the GIL to the event loop's thread now, not in 5 ms
                if count > MAX_CHART_MEMBERS:
                    raise NotFoundError(
                        f"the chart archive has more than {MAX_CHART_MEMBERS} members; not read"
                    )
                parts = member.name.split("/")
                if len(parts) != 2 or not member.isfile():
                    continue
                key = parts[1].lower()
                if key not in missing or member.size > _MAX_CHART_FILE_BYTES:
                    continue
                handle = tar.extractfile(member)
                if handle is not None:
                    found[key] = handle.read(_MAX_CHART_FILE_BYTES).decode("utf-8", "replace")
                    missing.discard(key)
    except _ChartTooLarge:
        raise NotFoundError(
            f"the chart archive unpacks to more than {MAX_CHART_UNPACKED_BYTES} bytes; not read"
        ) from None
    except (tarfile.TarError, OSError, EOFError, ValueError, zlib.error):
        raise NotFoundError("the chart archive cannot be read") from None
    return ChartFiles(found["values.yaml"], found["readme.md"], found["chart.yaml"])


def chart_dependencies(config: bytes | None) -> list[dict[str, Any]]:
    """A chart's dependencies: from its config JSON (Helm copies Chart.yaml there)."""
    if config is not None:
        try:
            document = json.loads(config)
        except (ValueError, RecursionError):
            document = None
        if isinstance(document, dict) and isinstance(document.get("dependencies"), list):
            return [d for d in document["dependencies"] if isinstance(d, dict)]
    return []
