"""Console pages of a repository and its artifacts: the artifact list, one artifact, and the
changes a user makes there (description, tags, labels, copy, delete)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from markdown_it import MarkdownIt
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from dockyard.artifacts import service as artifacts
from dockyard.artifacts import writes
from dockyard.artifacts.schemas import Artifact
from dockyard.console.projects import allowed_in, header, pages_of, project_url
from dockyard.console.web import Page, with_query
from dockyard.db.listing import PageRequest
from dockyard.errors import AppError, BadRequestError, DeniedError, NotFoundError, UnauthorizedError
from dockyard.iam.policy import Action, Resource
from dockyard.labels import service as labels
from dockyard.labels.models import Label
from dockyard.projects import service as projects
from dockyard.registry.models import Artifact as ArtifactRow
from dockyard.signatures import service as signatures
from dockyard.signatures.schemas import SignatureStatus

_MARKDOWN = MarkdownIt("commonmark", {"html": False, "linkify": False}).disable("image")


def render_markdown(text: str) -> str:
    """Markdown with raw HTML disabled (it is shown as text) and no images; links are kept
    only when they are http(s) or relative (markdown-it's own ``validateLink`` drops
    ``javascript:`` and friends)."""
    html: str = _MARKDOWN.render(text)
    return html


def repo_url(project: str, repository: str, rest: str = "") -> str:
    base = f"{project_url(project, 'repositories')}/{quote(repository, safe='/')}"
    return base + (f"/-/{rest}" if rest else "")


def artifact_url(project: str, repository: str, reference: str, rest: str = "") -> str:
    url = repo_url(project, repository, f"artifacts/{quote(reference, safe=':')}")
    return url + (f"/{rest}" if rest else "")


def pull_commands(
    host: str,
    project: str,
    repository: str,
    artifact_type: str | None,
    reference: str,
    by_tag: bool,
) -> list[tuple[str, str]]:
    """(client, command) pairs fitting the artifact's type."""
    where = f"{host}/{project}/{repository}"
    ref = f"{where}:{reference}" if by_tag else f"{where}@{reference}"
    kind = (artifact_type or "").upper()
    if kind == "CHART":
        version = f" --version {reference}" if by_tag else ""
        return [("helm", f"helm pull oci://{where}{version}")]
    if kind == "IMAGE":
        return [("docker", f"docker pull {ref}"), ("podman", f"podman pull {ref}")]
    return [("oras", f"oras pull {ref}")]


def _inner(page: Page) -> str:
    return page.path("repository")


async def labels_for(session: AsyncSession, page: Page, project_id: int) -> list[Label]:
    """The global labels and the project's, for pickers and filters (first 100 of each)."""
    found = []
    for scope, owner in (("g", None), ("p", project_id)):
        some, _ = await labels.list_labels(
            session,
            page.principal,
            scope=scope,
            project_id=owner,
            name=None,
            q=None,
            sort="name",
            page=PageRequest(1, 100),
        )
        found += some
    return found


async def repository(page: Page) -> Response:
    """The artifact list. An exact tag filter is one indexed lookup (a tag names at most one
    artifact); a label filter and the plain list page in the database as the API does."""
    name, inner = page.path("project"), _inner(page)
    request = page.page_request()
    label_filter = page.query("label")
    label_id = int(label_filter) if label_filter.isdigit() and len(label_filter) < 12 else None
    tag_filter = page.query("tag").strip()[:128]
    options = artifacts.ArtifactOptions(
        with_tag=True,
        with_label=True,
        with_accessory=True,
        with_immutable_status=True,
        with_scan_overview=True,
        with_sbom_overview=True,
    )
    async with page.state.db.read() as session:
        target = await artifacts.resolve_repository(
            session, page.principal, name, inner, Action.READ, Resource.REPOSITORY
        )
        project, context = target.project, target.context
        view = header(context)
        if tag_filter:
            found = await _tagged(session, page, project.name, inner, tag_filter, options)
            if label_id is not None:
                found = [a for a in found if label_id in {x.id for x in a.labels or []}]
            total = len(found)
        else:
            found, total = await artifacts.list_artifacts(
                session,
                page.principal,
                project.name,
                inner,
                options,
                f"labels={label_id}" if label_id is not None else None,
                "-push_time",
                request,
            )
        all_labels = await labels_for(session, page, project.project_id)
    row = target.repository
    host = page.registry_host()
    rows: list[dict[str, Any]] = []
    for artifact in found:
        digest = artifact.digest or ""
        tags = [t.name or "" for t in artifact.tags or []]
        reference = tags[0] if tags else digest
        rows.append(
            {
                "artifact": artifact,
                "reference": reference,
                "url": artifact_url(project.name, inner, digest),
                "pull": pull_commands(
                    host, project.name, inner, artifact.type, reference, bool(tags)
                ),
            }
        )
    return page.render(
        "repositories/repository.html",
        tab="repositories",
        project=view,
        context=context,
        allowed=allowed_in(page, context),
        repository=row,
        filtered=bool(tag_filter) or label_id is not None,
        inner=inner,
        rows=rows,
        paging=pages_of(total, request),
        labels=all_labels,
        label_filter=label_filter,
        tag_filter=tag_filter,
        description_html=render_markdown(row.description or ""),
        repo_url=lambda rest="": repo_url(project.name, inner, rest),
        list_url=lambda **p: with_query(
            repo_url(project.name, inner), label=label_filter, tag=tag_filter, **p
        ),
        registry=host,
    )


async def _tagged(
    session: AsyncSession,
    page: Page,
    project: str,
    inner: str,
    tag: str,
    options: artifacts.ArtifactOptions,
) -> list[Artifact]:
    try:
        return [await artifacts.get_artifact(session, page.principal, project, inner, tag, options)]
    except (DeniedError, UnauthorizedError):
        raise
    except AppError:
        return []  # no such tag (or not a tag at all): nothing matches


async def artifact_detail(page: Page) -> Response:
    name, inner, reference = page.path("project"), _inner(page), page.path("reference")
    options = artifacts.ArtifactOptions(
        with_tag=True,
        with_label=True,
        with_accessory=True,
        with_immutable_status=True,
        with_scan_overview=True,
        with_sbom_overview=True,
    )
    async with page.state.db.read() as session:
        project, context = await projects.resolve_project(session, page.principal, name, True)
        view = header(context)
        artifact = await artifacts.get_artifact(
            session, page.principal, project.name, inner, reference, options
        )
        all_labels = await labels_for(session, page, project.project_id)
        signed = await _signatures(page, session, artifact)
        copy_targets, _ = await projects.list_projects(
            session, page.principal, projects.ProjectQuery(with_detail=False), PageRequest(1, 100)
        )
    documents: artifacts.ManifestDocuments | None = None
    try:
        documents = await artifacts.manifest_documents(
            page.state.storage, artifact.digest or "", artifact.manifest_media_type or ""
        )
    except NotFoundError:
        documents = None  # the page still shows what the database knows
    config = documents.config if documents is not None else None
    history = artifacts.build_history(config) if config else []
    tags = [t.name or "" for t in artifact.tags or []]
    attached = {label.id for label in artifact.labels or []}
    return page.render(
        "repositories/artifact.html",
        tab="repositories",
        project=view,
        context=context,
        allowed=allowed_in(page, context),
        inner=inner,
        artifact=artifact,
        manifest_text=_pretty(documents.raw) if documents is not None else None,
        config_text=_pretty(config) if config is not None else None,
        layers=documents.parsed.layers if documents is not None else [],
        history=history,
        pull=pull_commands(
            page.registry_host(),
            project.name,
            inner,
            artifact.type,
            tags[0] if tags else artifact.digest or "",
            bool(tags),
        ),
        labels=[label for label in all_labels if label.id not in attached],
        signatures=signed,
        copy_targets=[p.name for p in copy_targets],
        repo_url=lambda rest="": repo_url(project.name, inner, rest),
        artifact_url=lambda rest="": artifact_url(project.name, inner, artifact.digest or "", rest),
    )


_SIGNATURE_TYPES = ("signature.cosign", "signature.notation")


async def _signatures(
    page: Page, session: AsyncSession, artifact: Artifact
) -> list[SignatureStatus]:
    """The artifact's signatures with their verification state (verdicts computed once,
    bounded, when missing; docs/signatures.md); none read when it has no signature."""
    if not any(a.type in _SIGNATURE_TYPES for a in artifact.accessories or []):
        return []
    row = await session.get(ArtifactRow, artifact.id)
    if row is None:
        return []
    checker = signatures.SignatureChecker(page.state.db, page.state.storage)
    return await signatures.signature_status(checker, session, row)


def _pretty(raw: bytes) -> str:
    try:
        return json.dumps(json.loads(raw), indent=2, ensure_ascii=False)
    except (ValueError, RecursionError):
        return raw.decode("utf-8", "replace")


# --- changes ----------------------------------------------------------------------------------


async def update_description(page: Page) -> Response:
    name, inner = page.path("project"), _inner(page)
    async with page.state.db.write() as session:
        await writes.update_repository(
            session, page.principal, page.actor(), name, inner, page.field("description")
        )
    return page.redirect(repo_url(name, inner), "flash.description_saved")


async def delete_repository(page: Page) -> Response:
    name, inner = page.path("project"), _inner(page)
    async with page.state.db.write() as session:
        await writes.delete_repository(
            session, page.state.registry, page.principal, page.actor(), name, inner
        )
    return page.redirect(project_url(name, "repositories"), "flash.repository_deleted", name=inner)


async def add_tag(page: Page) -> Response:
    name, inner, reference = page.path("project"), _inner(page), page.path("reference")
    tag = page.field("tag").strip()
    async with page.state.db.write() as session:
        await writes.create_tag(
            session, page.state.registry, page.principal, page.actor(), name, inner, reference, tag
        )
    return page.redirect(page.back(), "flash.tag_added", tag=tag)


async def delete_tag(page: Page) -> Response:
    name, inner, reference = page.path("project"), _inner(page), page.path("reference")
    tag = page.field("tag")
    async with page.state.db.write() as session:
        await writes.delete_tag(
            session, page.state.registry, page.principal, page.actor(), name, inner, reference, tag
        )
    return page.redirect(page.back(), "flash.tag_deleted", tag=tag)


async def delete_artifact(page: Page) -> Response:
    name, inner, reference = page.path("project"), _inner(page), page.path("reference")
    async with page.state.db.write() as session:
        await writes.delete_artifact(
            session, page.state.registry, page.principal, page.actor(), name, inner, reference
        )
    return page.redirect(repo_url(name, inner), "flash.artifact_deleted")


async def copy_artifact(page: Page) -> Response:
    name, inner, reference = page.path("project"), _inner(page), page.path("reference")
    target_project = page.field("target_project").strip()
    target_repo = page.field("target_repository").strip() or inner
    if not target_project:
        raise BadRequestError("choose the project to copy to")
    async with page.state.db.write() as session:
        await writes.copy_artifact(
            session,
            page.state.registry,
            page.principal,
            page.actor(),
            target_project,
            target_repo,
            f"{name}/{inner}@{reference}",
        )
    return page.redirect(
        repo_url(target_project, target_repo),
        "flash.artifact_copied",
        target=f"{target_project}/{target_repo}",
    )


async def add_label(page: Page) -> Response:
    name, inner, reference = page.path("project"), _inner(page), page.path("reference")
    label_id = page.int_field("label_id")
    async with page.state.db.write() as session:
        await labels.add_artifact_label(
            session,
            page.principal,
            page.actor(),
            labels.ArtifactRef(name, inner, reference),
            label_id,
        )
    return page.redirect(page.back(), "flash.label_added")


async def remove_label(page: Page) -> Response:
    name, inner, reference = page.path("project"), _inner(page), page.path("reference")
    label_id = page.path_int("label")
    async with page.state.db.write() as session:
        await labels.remove_artifact_label(
            session,
            page.principal,
            page.actor(),
            labels.ArtifactRef(name, inner, reference),
            label_id,
        )
    return page.redirect(page.back(), "flash.label_removed")
