"""Console pages of vulnerability scanning (docs/scanning.md): the scan state of artifacts,
an artifact's vulnerabilities and scan log, the Scan / Stop / SBOM actions, the
administration's interrogation services (scanner registrations) and system CVE allowlist,
and a project's scanner and CVE allowlist.

Every handler calls the same service as the REST API (``scan/service.py``,
``scan/registrations.py``, ``projects/allowlists.py``), which authorises the caller; the
templates hide with ``allowed`` what the caller may not do.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response, StreamingResponse

from dockyard.artifacts import service as artifacts
from dockyard.console.projects import allowed_in, header, pages_of, project_url
from dockyard.console.repositories import artifact_url, labels_for, repo_url
from dockyard.console.scan_state import RANK, SEVERITIES, scan_state
from dockyard.console.web import PREFIX, SECURITY_HEADERS, Page, with_query
from dockyard.db.listing import PageRequest
from dockyard.errors import BadRequestError, NotFoundError
from dockyard.iam.policy import Action, Resource, can
from dockyard.projects import allowlists
from dockyard.projects import service as projects
from dockyard.projects.schemas import CVEAllowlist, CVEAllowlistItem, ProjectReq
from dockyard.projects.schemas import Project as ProjectView
from dockyard.scan import export, registrations
from dockyard.scan import service as scans
from dockyard.scan.client import (
    SBOM,
    VULNERABILITY_MIME,
)
from dockyard.scan.schemas import (
    ProjectScanner,
)
from dockyard.scan.schemas import (
    ScannerRegistration as ScannerView,
)

SYSTEM_ALLOWLIST = PREFIX + "/admin/cve-allowlist"
FINDINGS_PAGE = 50
_MAX_IDS_FIELD = 64 * 1024


# --- artifact actions -----------------------------------------------------------------------


def _scan_type(page: Page) -> str:
    return scans.scan_type_of(page.field("scan_type") or None)


async def scan_artifact(page: Page) -> Response:
    name, inner, reference = page.path("project"), page.path("repository"), page.path("reference")
    kind = _scan_type(page)
    async with page.state.db.write() as session:
        await scans.scan_artifact(session, page.principal, name, inner, reference, kind)
    flash = "flash.sbom_started" if kind == SBOM else "flash.scan_started"
    return page.redirect(page.back(), flash)


async def stop_scan(page: Page) -> Response:
    name, inner, reference = page.path("project"), page.path("repository"), page.path("reference")
    kind = _scan_type(page)
    async with page.state.db.write() as session:
        await scans.stop_scan(session, page.principal, name, inner, reference, kind)
    return page.redirect(page.back(), "flash.scan_stopped")


async def scan_log(page: Page) -> Response:
    name, inner, reference = page.path("project"), page.path("repository"), page.path("reference")
    report_id = page.path("report")
    async with page.state.db.read() as session:
        project, context = await projects.resolve_project(session, page.principal, name, True)
        text = await scans.report_log(session, page.principal, name, inner, reference, report_id)
    return page.render(
        "scanning/log.html",
        tab="repositories",
        project=header(context),
        context=context,
        allowed=allowed_in(page, context),
        text=text,
        report_id=report_id,
        back=artifact_url(project.name, inner, reference, "vulnerabilities"),
    )


# --- SBOMs -------------------------------------------------------------------------------

SBOM_SHOWN_BYTES = 512 * 1024
"""The artifact page shows an SBOM document up to this size; any size is downloadable."""
SBOM_MAX_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class SbomDocument:
    digest: str
    media_type: str
    content: bytes

    @property
    def filename(self) -> str:
        kind = "cdx" if "cyclonedx" in self.media_type else "spdx"
        return f"sbom-{self.digest.removeprefix('sha256:')[:12]}.{kind}.json"


async def sbom_document(page: Page, project: str, inner: str, reference: str) -> SbomDocument:
    """The SBOM of the artifact, read from its ``harbor.sbom`` accessory (``sbom:read`` and
    ``artifact:read``); a 404 when it has none."""
    options = artifacts.ArtifactOptions(with_sbom_overview=True)
    async with page.state.db.read() as session:
        found, context = await projects.resolve_project(session, page.principal, project, True)
        projects.require(page.principal, Action.READ, Resource.SBOM, context)
        artifact = await artifacts.get_artifact(
            session, page.principal, found.name, inner, reference, options
        )
        digest = artifact.sbom_overview.sbom_digest if artifact.sbom_overview else None
        if not digest:
            raise NotFoundError(f"artifact {artifact.digest} has no SBOM")
        accessory = await artifacts.get_artifact(
            session, page.principal, found.name, inner, digest, artifacts.ArtifactOptions()
        )
    documents = await artifacts.manifest_documents(
        page.state.storage, digest, accessory.manifest_media_type or ""
    )
    if not documents.parsed.layers:
        raise NotFoundError(f"the SBOM {digest} holds no document")
    layer = documents.parsed.layers[0]
    content = await artifacts.blob_content(
        page.state.storage, str(layer.digest), layer.size, "SBOM", SBOM_MAX_BYTES
    )
    return SbomDocument(digest, layer.media_type, content)


def sbom_text(document: SbomDocument) -> str | None:
    """The document pretty-printed for the page (None: too large, or not JSON)."""
    if len(document.content) > SBOM_SHOWN_BYTES:
        return None
    try:
        return json.dumps(json.loads(document.content), indent=2, ensure_ascii=False)
    except (ValueError, RecursionError):
        return None


async def download_sbom(page: Page) -> Response:
    name, inner, reference = page.path("project"), page.path("repository"), page.path("reference")
    document = await sbom_document(page, name, inner, reference)
    return Response(
        document.content,
        media_type=document.media_type,
        headers={
            **SECURITY_HEADERS,
            "Content-Disposition": f'attachment; filename="{document.filename}"',
        },
    )


async def sbom_page(page: Page) -> Response:
    """The artifact's SBOM tab: its state, Generate SBOM, the document and its download."""
    name, inner, reference = page.path("project"), page.path("repository"), page.path("reference")
    options = artifacts.ArtifactOptions(with_sbom_overview=True)
    async with page.state.db.read() as session:
        project, context = await projects.resolve_project(session, page.principal, name, True)
        artifact = await artifacts.get_artifact(
            session, page.principal, project.name, inner, reference, options
        )
    overview = artifact.sbom_overview
    document = None
    if overview is not None and overview.sbom_digest:
        document = await sbom_document(page, project.name, inner, artifact.digest or "")
    return page.render(
        "scanning/sbom.html",
        tab="repositories",
        project=header(context),
        context=context,
        allowed=allowed_in(page, context),
        artifact=artifact,
        overview=overview,
        document=document,
        text=sbom_text(document) if document is not None else None,
        repo_url=lambda rest="": repo_url(project.name, inner, rest),
        artifact_url=lambda rest="": artifact_url(project.name, inner, artifact.digest or "", rest),
    )


# --- CVE export ------------------------------------------------------------------------------


async def cve_export_page(page: Page) -> Response:
    """A project's CVE export: the form (repositories, tags, CVE ids, labels) and the caller's
    exports with their state and download (refreshing while one is being built)."""
    async with page.state.db.read() as session:
        project, context = await projects.resolve_project(
            session, page.principal, page.path("project"), True
        )
        projects.require(page.principal, Action.LIST, Resource.EXPORT_CVE, context)
        mine = await export.list_exports(session, page.principal, page.state.storage)
        labels = await labels_for(session, page, project.project_id)
    return page.render(
        "scanning/cve_export.html",
        tab="repositories",
        project=header(context),
        context=context,
        allowed=allowed_in(page, context),
        exports=mine,
        active=any(e.status in ("Pending", "Running") for e in mine),
        labels=labels,
    )


async def request_cve_export(page: Page) -> Response:
    name = page.path("project")
    label_ids = [int(v) for v in page.fields("labels") if v.isdigit() and len(v) < 12]
    async with page.state.db.write() as session:
        project, _ = await projects.resolve_project(session, page.principal, name, True)
        body = export.ExportRequest(
            job_name=page.field("job_name").strip() or None,
            projects=[project.project_id],
            labels=label_ids or None,
            repositories=page.field("repositories").strip() or None,
            tags=page.field("tags").strip() or None,
            cveIds=page.field("cve_ids").strip() or None,
        )
        await export.request_export(session, page.principal, body, export.SCAN_DATA_TYPE)
    return page.redirect(project_url(project.name, "cve-export"), "flash.cve_export_started")


async def download_cve_export(page: Page) -> Response:
    execution_id = page.path_int("execution")
    async with page.state.db.read() as session:
        found = await export.export_file(session, page.principal, execution_id, page.state.storage)
    return StreamingResponse(
        page.state.storage.read(found.key),
        media_type="text/csv",
        headers={
            **SECURITY_HEADERS,
            "Content-Disposition": f'attachment; filename="{found.filename}"',
        },
    )


# --- the vulnerabilities of an artifact -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Finding:
    id: str
    severity: str
    package: str
    version: str
    fix_version: str
    cvss: float | None
    description: str
    link: str
    allowlisted: bool


def _cvss(item: dict[str, Any]) -> float | None:
    preferred = item.get("preferred_cvss")
    if not isinstance(preferred, dict):
        return None
    for key in ("score_v3", "score_v2"):
        value = preferred.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    return None


def _finding(item: dict[str, Any], allowed_ids: set[str]) -> Finding:
    links = item.get("links")
    link = (
        next((u for u in links if isinstance(u, str) and u.startswith(("https://", "http://"))), "")
        if isinstance(links, list)
        else ""
    )
    cve = str(item.get("id") or "")
    severity = str(item.get("severity") or "Unknown")
    return Finding(
        id=cve,
        severity=severity if severity in RANK else "Unknown",
        package=str(item.get("package") or ""),
        version=str(item.get("version") or ""),
        fix_version=str(item.get("fix_version") or ""),
        cvss=_cvss(item),
        description=str(item.get("description") or ""),
        link=link,
        allowlisted=cve in allowed_ids,
    )


SORTS: dict[str, Any] = {
    "severity": lambda f: (-RANK[f.severity], -(f.cvss or 0), f.id),
    "cvss": lambda f: (-(f.cvss if f.cvss is not None else -1), f.id),
    "id": lambda f: (f.id, f.package),
    "package": lambda f: (f.package, f.id),
    "fix": lambda f: (f.fix_version == "", f.fix_version, f.id),
}
"""Sort keys of the findings table (``-key`` reverses), most useful order first."""


def sort_findings(findings: list[Finding], sort: str) -> tuple[list[Finding], str]:
    reverse = sort.startswith("-")
    key = sort.lstrip("-")
    if key not in SORTS:
        return sorted(findings, key=SORTS["severity"]), "severity"
    return sorted(findings, key=SORTS[key], reverse=reverse), sort


def filter_findings(findings: list[Finding], severity: str, text: str) -> list[Finding]:
    needle = text.strip().lower()
    return [
        f
        for f in findings
        if (not severity or f.severity == severity)
        and (
            not needle
            or needle in f.id.lower()
            or needle in f.package.lower()
            or needle in f.description.lower()
        )
    ]


async def allowlist_in_force(session: AsyncSession, project: ProjectView) -> tuple[set[str], str]:
    """The ids of the allowlist the pull policy applies to the project (an expired one is
    empty) and which it is: ``system`` or ``project``."""
    reuse = (project.metadata or {}).get("reuse_sys_cve_allowlist") == "true"
    listed = await allowlists.view(session, allowlists.SYSTEM) if reuse else project.cve_allowlist
    which = "system" if reuse else "project"
    if listed is None:
        return set(), which
    if listed.expires_at is not None and listed.expires_at <= datetime.now(UTC).timestamp():
        return set(), which
    return {item.cve_id for item in listed.items or [] if item.cve_id}, which


async def vulnerabilities(page: Page) -> Response:
    name, inner, reference = page.path("project"), page.path("repository"), page.path("reference")
    options = artifacts.ArtifactOptions(with_tag=True, with_scan_overview=True)
    async with page.state.db.read() as session:
        project, context = await projects.resolve_project(session, page.principal, name, True)
        artifact = await artifacts.get_artifact(
            session, page.principal, project.name, inner, reference, options
        )
        addressed = await artifacts.find_addition_artifact(
            session, page.principal, project.name, inner, reference, artifacts.VULNERABILITIES
        )
        report = (await artifacts.vulnerabilities_of(session, addressed)).get(VULNERABILITY_MIME)
        view = await projects.project_view(session, page.principal, project, context)
        allowed_ids, which = await allowlist_in_force(session, view)
    items = report.get("vulnerabilities", []) if isinstance(report, dict) else []
    every = [_finding(item, allowed_ids) for item in items if isinstance(item, dict)]
    severity = page.query("severity")
    severity = severity if severity in RANK else ""
    text = page.query("q")[:200]
    shown, sort = sort_findings(filter_findings(every, severity, text), page.query("sort"))
    request = page.page_request(FINDINGS_PAGE)
    start = (request.page - 1) * request.page_size
    base = artifact_url(project.name, inner, artifact.digest or "", "vulnerabilities")
    return page.render(
        "scanning/vulnerabilities.html",
        tab="repositories",
        project=header(context),
        context=context,
        allowed=allowed_in(page, context),
        inner=inner,
        artifact=artifact,
        scan=scan_state(artifact.scan_overview),
        report=report if isinstance(report, dict) else None,
        findings=shown[start : start + request.page_size],
        matched=len(shown),
        total=len(every),
        allowlisted=sum(f.allowlisted for f in every),
        allowlist_kind=which,
        severities=SEVERITIES,
        severity=severity,
        text=text,
        sort=sort,
        paging=pages_of(len(shown), request),
        repo_url=lambda rest="": repo_url(project.name, inner, rest),
        artifact_url=lambda rest="": artifact_url(project.name, inner, artifact.digest or "", rest),
        list_url=lambda **p: with_query(base, severity=severity, q=text, **({"sort": sort} | p)),
    )


# --- CVE allowlists -------------------------------------------------------------------------


def parse_ids(text: str) -> list[str]:
    """CVE ids typed one a line or separated by commas or spaces."""
    if len(text) > _MAX_IDS_FIELD:
        raise BadRequestError("too many CVE ids at once")
    return [part for part in text.replace(",", " ").split() if part]


def expiry_field(page: Page) -> int | None:
    """``never`` ticked (or no date): no expiry; else the date's end (23:59:59 UTC)."""
    if page.checked("never"):
        return None
    raw = page.field("expires").strip()
    if not raw:
        return None
    try:
        day = date.fromisoformat(raw)
    except ValueError:
        raise BadRequestError("the expiry date must be a date (YYYY-MM-DD)") from None
    return int(datetime.combine(day, time(23, 59, 59), UTC).timestamp())


def changed_list(page: Page, current: CVEAllowlist) -> CVEAllowlist:
    """The allowlist after the form: ids added (``add``), one removed (``remove``), and the
    expiry (``expires``/``never``) when the form carries it."""
    ids = [item.cve_id or "" for item in current.items or []]
    removed = page.field("remove")
    if removed:
        ids = [cve for cve in ids if cve != removed]
    for cve in parse_ids(page.field("add")):
        if cve not in ids:
            ids.append(cve)
    expires = expiry_field(page) if "expires" in page.form or "never" in page.form else None
    if "expires" not in page.form and "never" not in page.form:
        expires = current.expires_at
    return CVEAllowlist(items=[CVEAllowlistItem(cve_id=cve) for cve in ids], expires_at=expires)


async def system_allowlist(page: Page) -> Response:
    allowlists.may_change_system(page.principal)
    async with page.state.db.read() as session:
        listed = await allowlists.view(session, allowlists.SYSTEM)
    return page.render(
        "scanning/system_allowlist.html",
        section="cve_allowlist",
        allowlist=listed,
        action=SYSTEM_ALLOWLIST,
    )


async def update_system_allowlist(page: Page) -> Response:
    allowlists.may_change_system(page.principal)
    async with page.state.db.write() as session:
        current = await allowlists.view(session, allowlists.SYSTEM)
        await allowlists.put_system(
            session, page.principal, page.actor(), changed_list(page, current)
        )
    return page.redirect(SYSTEM_ALLOWLIST, "flash.allowlist_saved")


async def update_project_allowlist(page: Page) -> Response:
    async with page.state.db.write() as session:
        project, context = await projects.resolve_project(
            session, page.principal, page.path("project"), True
        )
        view = await projects.project_view(session, page.principal, project, context)
        current = view.cve_allowlist or CVEAllowlist(items=[])
        req = ProjectReq(cve_allowlist=changed_list(page, current))
        await projects.update_project(
            session, page.principal, project, context, req, operator=page.actor()
        )
    return page.redirect(project_url(project.name, "configuration"), "flash.allowlist_saved")


# --- a project's scanner --------------------------------------------------------------------


async def project_scanner(page: Page) -> Response:
    async with page.state.db.read() as session:
        project, context = await projects.resolve_project(
            session, page.principal, page.path("project"), True
        )
        try:
            current = await registrations.project_scanner(
                session, page.principal, project.name, True
            )
        except registrations.ScannerNotFoundError:
            current = None
        candidates: list[ScannerView] = []
        if can(page.principal, Action.CREATE, Resource.SCANNER, context):
            candidates, _ = await registrations.scanner_candidates(
                session, page.principal, project.name, True, None, "name", PageRequest(1, 100)
            )
    return page.render(
        "scanning/project_scanner.html",
        tab="scanner",
        project=header(context),
        context=context,
        allowed=allowed_in(page, context),
        current=current,
        candidates=candidates,
    )


async def set_project_scanner(page: Page) -> Response:
    name = page.path("project")
    async with page.state.db.write() as session:
        await registrations.set_project_scanner(
            session, page.principal, name, True, ProjectScanner(uuid=page.field("uuid"))
        )
    return page.redirect(project_url(name, "scanner"), "flash.project_scanner_set")
