"""``/api/v2.0`` repository and artifact browsing (Harbor's swagger, read side).

``{repository_name}`` arrives encoded twice over when it holds a slash
(``a/b`` -> ``a%252Fb``): the router decodes once, ``_repository_name`` once more,
as Harbor does. Writes (delete, copy, tags, labels) live in ``write_api``.
"""

from __future__ import annotations

from urllib.parse import unquote

from starlette.responses import JSONResponse, Response

from dockyard.artifacts import schemas, service
from dockyard.errors import NotFoundError
from dockyard.http.api import (
    ApiRequest,
    Operation,
    json_response,
    operation,
    paged_response,
)

REPOSITORY = "/projects/{project_name}/repositories/{repository_name}"
ARTIFACT = REPOSITORY + "/artifacts/{reference}"
_LISTING = ("q", "sort", "page", "page_size")
_CSP = "sandbox; default-src 'none'"
"""Sent with additions: a document from a user is never a page that can run or load."""
_ARTIFACT_FLAGS = (
    "with_tag",
    "with_label",
    "with_scan_overview",
    "with_sbom_overview",
    "with_immutable_status",
    "with_accessory",
    "with_inherited_accessory",
)


def _repository_name(api: ApiRequest) -> str:
    return unquote(api.path("repository_name"))


def _options(api: ApiRequest) -> service.ArtifactOptions:
    """The ``with_*`` flags; each is checked (a 400 for anything but a boolean) even where
    there is nothing to add yet (signatures)."""
    flags = {name: api.query_bool(name) for name in api.operation.query if name.startswith("with_")}
    return service.ArtifactOptions(
        with_tag=api.query_bool("with_tag", default=True),
        with_label=flags["with_label"],
        with_immutable_status=flags["with_immutable_status"],
        with_accessory=flags["with_accessory"],
        with_scan_overview=flags["with_scan_overview"],
        with_sbom_overview=flags["with_sbom_overview"],
    )


# --- repositories --------------------------------------------------------------------------


@operation(
    "GET", "/repositories", "listAllRepositories", query=_LISTING, response=list[schemas.Repository]
)
async def list_all_repositories(api: ApiRequest) -> Response:
    """Repositories of every project the caller may see (all of them for administrators)."""
    page = api.page()
    principal = await api.principal()
    async with api.state.db.read() as session:
        found, total = await service.list_all_repositories(
            session, principal, api.query("q"), api.query("sort"), page
        )
    return paged_response(api, found, total, page)


@operation(
    "GET",
    "/projects/{project_name}/repositories",
    "listRepositories",
    query=_LISTING,
    response=list[schemas.Repository],
)
async def list_repositories(api: ApiRequest) -> Response:
    """A project's repositories, filtered (``q``: name, fuzzy with ``~``), sorted and paged."""
    page = api.page()
    principal = await api.principal()
    async with api.state.db.read() as session:
        found, total = await service.list_repositories(
            session, principal, api.path("project_name"), api.query("q"), api.query("sort"), page
        )
    return paged_response(api, found, total, page)


@operation("GET", REPOSITORY, "getRepository", response=schemas.Repository)
async def get_repository(api: ApiRequest) -> Response:
    """One repository with its artifact count."""
    principal = await api.principal()
    async with api.state.db.read() as session:
        found = await service.get_repository(
            session, principal, api.path("project_name"), _repository_name(api)
        )
    return json_response(found)


# --- artifacts -----------------------------------------------------------------------------


@operation(
    "GET",
    REPOSITORY + "/artifacts",
    "listArtifacts",
    query=(*_LISTING, *_ARTIFACT_FLAGS),
    response=list[schemas.Artifact],
)
async def list_artifacts(api: ApiRequest) -> Response:
    """A repository's artifacts (accessories are listed with their subject instead)."""
    page = api.page()
    options = _options(api)
    principal = await api.principal()
    async with api.state.db.read() as session:
        found, total = await service.list_artifacts(
            session,
            principal,
            api.path("project_name"),
            _repository_name(api),
            options,
            api.query("q"),
            api.query("sort"),
            page,
        )
    return paged_response(api, found, total, page)


@operation(
    "GET",
    "/projects/{project_name_or_id}/artifacts",
    "listArtifactsOfProject",
    query=(*_LISTING, *_ARTIFACT_FLAGS),
    response=list[schemas.Artifact],
)
async def list_project_artifacts(api: ApiRequest) -> Response:
    """The artifacts of every repository of a project."""
    page = api.page()
    options = _options(api)
    raw = api.header("X-Is-Resource-Name")
    by_name = raw is not None and raw.strip().lower() in ("true", "1")
    principal = await api.principal()
    async with api.state.db.read() as session:
        found, total = await service.list_project_artifacts(
            session,
            principal,
            api.path("project_name_or_id"),
            by_name,
            options,
            api.query("q"),
            api.query("sort"),
            page,
        )
    return paged_response(api, found, total, page)


@operation(
    "GET",
    ARTIFACT,
    "getArtifact",
    query=(*_ARTIFACT_FLAGS, "with_signature"),
    response=schemas.Artifact,
)
async def get_artifact(api: ApiRequest) -> Response:
    """One artifact by tag or digest."""
    options = _options(api)
    principal = await api.principal()
    async with api.state.db.read() as session:
        found = await service.get_artifact(
            session,
            principal,
            api.path("project_name"),
            _repository_name(api),
            api.path("reference"),
            options,
        )
    return json_response(found)


@operation(
    "GET",
    ARTIFACT + "/tags",
    "listTags",
    query=(*_LISTING, "with_immutable_status"),
    response=list[schemas.Tag],
)
async def list_tags(api: ApiRequest) -> Response:
    """The tags of one artifact."""
    page = api.page()
    immutable = api.query_bool("with_immutable_status")
    principal = await api.principal()
    async with api.state.db.read() as session:
        found, total = await service.list_tags(
            session,
            principal,
            api.path("project_name"),
            _repository_name(api),
            api.path("reference"),
            immutable,
            api.query("q"),
            api.query("sort"),
            page,
        )
    return paged_response(api, found, total, page)


@operation(
    "GET",
    ARTIFACT + "/accessories",
    "listAccessories",
    query=_LISTING,
    response=list[schemas.Accessory],
)
async def list_accessories(api: ApiRequest) -> Response:
    """The signatures, SBOMs and other referrers attached to one artifact."""
    page = api.page()
    principal = await api.principal()
    async with api.state.db.read() as session:
        found, total = await service.list_accessories(
            session,
            principal,
            api.path("project_name"),
            _repository_name(api),
            api.path("reference"),
            api.query("q"),
            api.query("sort"),
            page,
        )
    return paged_response(api, found, total, page)


@operation("GET", ARTIFACT + "/additions/{addition}", "getAddition")
async def get_addition(api: ApiRequest) -> Response:
    """An image's build history, a chart's values.yaml, readme.md or dependencies, or
    vulnerabilities (the current report by the project's scanner; ``{}``: not scanned)."""
    addition = api.path("addition")
    if addition not in service.ADDITIONS:
        raise NotFoundError(
            f"no addition {addition[:64]!r}; additions: {', '.join(service.ADDITIONS)}"
        )
    principal = await api.principal()
    async with api.state.db.read() as session:
        artifact = await service.find_addition_artifact(
            session,
            principal,
            api.path("project_name"),
            _repository_name(api),
            api.path("reference"),
            addition,
        )
        if addition == service.VULNERABILITIES:
            return JSONResponse(await service.vulnerabilities_of(session, artifact))
    content_type, body = await service.addition_content(
        api.state.storage, artifact, addition, api.state.chart_files
    )
    # A chart's README and values are the uploader's words: a browser that opens them on
    # the registry's origin runs nothing (nosniff comes from the middleware).
    return Response(body, headers={"Content-Type": content_type, "Content-Security-Policy": _CSP})


operations: list[Operation] = [
    list_all_repositories,
    list_repositories,
    get_repository,
    list_artifacts,
    list_project_artifacts,
    get_artifact,
    list_tags,
    list_accessories,
    get_addition,
]
