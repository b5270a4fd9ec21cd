"""Console pages of a repository and its artifacts: the artifact list, one artifact, and the
changes a user makes there (description, tags, labels, copy, delete)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from markdown_it import MarkdownIt
from starlette.responses import Response

from dockyard.artifacts import service as artifacts
from dockyard.artifacts import writes
from dockyard.console.projects import allowed_in, pages_of, project_url
from dockyard.console.web import Page, with_query
from dockyard.db.listing import PageRequest
from dockyard.errors import BadRequestError
from dockyard.labels import service as labels
from dockyard.projects import service as projects

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


async def repository(page: Page) -> Response:
    name, inner = page.path("project"), _inner(page)
    request = page.page_request()
    label_filter = page.query("label")
    tag_filter = page.query("tag").strip()[:128]
    q_parts = []
    if label_filter.isdigit() and len(label_filter) < 12:
        q_parts.append(f"labels={label_filter}")
    if tag_filter and "," not in tag_filter and "=" not in tag_filter:
        q_parts.append(f"tags=~{tag_filter}")
    options = artifacts.ArtifactOptions(
        with_tag=True, with_label=True, with_accessory=True, with_immutable_status=True
    )
    async with page.state.db.read() as session:
        project, context = await projects.resolve_project(session, page.principal, name, True)
        view = await projects.project_view(session, page.principal, project, context)
        repo_view = await artifacts.get_repository(session, page.principal, project.name, inner)
        found, total = await artifacts.list_artifacts(
            session,
            page.principal,
            project.name,
            inner,
            options,
            ",".join(q_parts) or None,
            "-push_time",
            request,
        )
        project_labels, _ = await labels.list_labels(
            session,
            page.principal,
            scope="p",
            project_id=project.project_id,
            name=None,
            q=None,
            sort="name",
            page=PageRequest(1, 100),
        )
        global_labels, _ = await labels.list_labels(
            session,
            page.principal,
            scope="g",
            project_id=None,
            name=None,
            q=None,
            sort="name",
            page=PageRequest(1, 100),
        )
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
        repository=repo_view,
        inner=inner,
        rows=rows,
        paging=pages_of(total, request),
        labels=[*global_labels, *project_labels],
        label_filter=label_filter,
        tag_filter=tag_filter,
        description_html=render_markdown(repo_view.description or ""),
        repo_url=lambda rest="": repo_url(project.name, inner, rest),
        list_url=lambda **p: with_query(
            repo_url(project.name, inner), label=label_filter, tag=tag_filter, **p
        ),
        registry=host,
    )


async def artifact_detail(page: Page) -> Response:
    name, inner, reference = page.path("project"), _inner(page), page.path("reference")
    options = artifacts.ArtifactOptions(
        with_tag=True, with_label=True, with_accessory=True, with_immutable_status=True
    )
    async with page.state.db.read() as session:
        project, context = await projects.resolve_project(session, page.principal, name, True)
        view = await projects.project_view(session, page.principal, project, context)
        artifact = await artifacts.get_artifact(
            session, page.principal, project.name, inner, reference, options
        )
        project_labels, _ = await labels.list_labels(
            session,
            page.principal,
            scope="p",
            project_id=project.project_id,
            name=None,
            q=None,
            sort="name",
            page=PageRequest(1, 100),
        )
        global_labels, _ = await labels.list_labels(
            session,
            page.principal,
            scope="g",
            project_id=None,
            name=None,
            q=None,
            sort="name",
            page=PageRequest(1, 100),
        )
        copy_targets, _ = await projects.list_projects(
            session, page.principal, projects.ProjectQuery(with_detail=False), PageRequest(1, 100)
        )
    documents = await artifacts.manifest_documents(
        page.state.storage, artifact.digest or "", artifact.manifest_media_type or ""
    )
    config_text = None
    if documents.config is not None:
        config_text = _pretty(documents.config)
    history = artifacts.build_history(documents.config) if documents.config else []
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
        manifest_text=_pretty(documents.raw),
        config_text=config_text,
        layers=documents.parsed.layers,
        history=history,
        pull=pull_commands(
            page.registry_host(),
            project.name,
            inner,
            artifact.type,
            tags[0] if tags else artifact.digest or "",
            bool(tags),
        ),
        labels=[label for label in [*global_labels, *project_labels] if label.id not in attached],
        copy_targets=[p.name for p in copy_targets],
        repo_url=lambda rest="": repo_url(project.name, inner, rest),
        artifact_url=lambda rest="": artifact_url(project.name, inner, artifact.digest or "", rest),
    )


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
