"""CVE export (Harbor's ``scan data export``): the findings of a project's images as a
CSV file, built by a job and downloadable by whoever asked for it.

``request_export`` checks the criteria and ``export-cve:create`` in the project (project
admins, maintainers, developers; robots granted it) and enqueues one execution of vendor
type ``SCAN_DATA_EXPORT`` whose vendor id is the requester's user id (robots: 0, their
name is kept). Its single task (``build``) reads the current successful vulnerability
reports of the project's scanner joined to their records, ``_CHUNK`` artifacts at a time,
filters them (repositories and tags: glob patterns with ``{a,b}`` alternatives and ``*``;
CVE ids; labels), writes the CSV to a temporary file and stores it in the blob storage
under ``exports/cve/<execution id>.csv`` (garbage collection only looks under
``blobs/`` and ``uploads/``). Executions are listed and read, and the file downloaded, by
their owner only (``list_exports``, ``get_export``, ``export_file``); the console may call
these with a session and a principal.

Columns (Harbor's export): Project, Owner, Scanner, Repository, Artifact Digest, Tags, CVE,
Package, Current Version, Fixed in version, Severity, CVSS3 Score, CWE Ids, Additional
Information (the adapter's vendor attributes as JSON).
"""

from __future__ import annotations

import csv
import io
import json
import re
import tempfile
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, StrictInt, StrictStr, ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from dockyard.artifacts.repository import tag_names
from dockyard.errors import BadRequestError, DeniedError, NotFoundError
from dockyard.iam.models import User
from dockyard.iam.policy import Action, Principal, Resource
from dockyard.immutability.matcher import PatternError, compile_pattern, match
from dockyard.jobs import service as jobs
from dockyard.jobs.models import Execution
from dockyard.jobs.runner import JobContext, JobEnvironment, JobType, PermanentJobError
from dockyard.labels.models import LabelReference
from dockyard.projects.models import Project
from dockyard.projects.service import require, resolve_project
from dockyard.registry.models import Artifact
from dockyard.scan import registrations, reports
from dockyard.scan.client import VULNERABILITY_MIME
from dockyard.scan.models import ReportVulnerability, ScanReport, VulnerabilityRecord
from dockyard.storage import Storage

JOB_TYPE = "SCAN_DATA_EXPORT"
SCAN_DATA_TYPE = VULNERABILITY_MIME
"""The only ``X-Scan-Data-Type`` there is (Harbor's)."""
COLUMNS = (
    "Project",
    "Owner",
    "Scanner",
    "Repository",
    "Artifact Digest",
    "Tags",
    "CVE",
    "Package",
    "Current Version",
    "Fixed in version",
    "Severity",
    "CVSS3 Score",
    "CWE Ids",
    "Additional Information",
)
_CHUNK = 200
_MAX_PATTERN = 1024
_MAX_CVES = 1000


class ExportRequest(BaseModel):
    """Harbor's ``ScanDataExportRequest``."""

    model_config = ConfigDict(extra="forbid")

    job_name: StrictStr | None = None
    projects: list[StrictInt] | None = None
    labels: list[StrictInt] | None = None
    repositories: StrictStr | None = None
    cveIds: StrictStr | None = None
    tags: StrictStr | None = None


def file_key(execution_id: int) -> str:
    return f"exports/cve/{execution_id}.csv"


# --- the criteria ----------------------------------------------------------------------------


def _alternatives(text: str | None) -> list[str]:
    """``{a,b}`` or ``a,b`` as ``["a", "b"]``; empty for none."""
    value = (text or "").strip()
    if len(value) > _MAX_PATTERN:
        raise BadRequestError(f"a filter is at most {_MAX_PATTERN} characters")
    if value.startswith("{") and value.endswith("}"):
        value = value[1:-1]
    return [part.strip() for part in value.split(",") if part.strip()]


def _pattern(text: str | None) -> list[str]:
    """A repository or tag filter as the one doublestar pattern immutability and retention
    rules use (``immutability/matcher.py``: ``*`` within a segment, ``**`` across,
    ``{a,b}`` anywhere); ``a,b`` without braces means ``{a,b}``; empty for none."""
    value = (text or "").strip()
    if len(value) > _MAX_PATTERN:
        raise BadRequestError(f"a filter is at most {_MAX_PATTERN} characters")
    if not value:
        return []
    if "," in value and "{" not in value:
        value = "{" + value + "}"
    try:
        compile_pattern(value)
    except PatternError as exc:
        raise BadRequestError(f"filter {value!r}: {exc}") from None
    return [value]


def matches(patterns: Sequence[str], value: str) -> bool:
    """The project's doublestar matching; no patterns match everything."""
    return not patterns or any(match(pattern, value) for pattern in patterns)


@dataclass(frozen=True, slots=True)
class Criteria:
    project_id: int
    repositories: list[str]
    tags: list[str]
    cve_ids: list[str]
    labels: list[int]

    def as_dict(self) -> dict[str, Any]:
        return {
            "project_id": self.project_id,
            "repositories": self.repositories,
            "tags": self.tags,
            "cve_ids": self.cve_ids,
            "labels": self.labels,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Criteria:
        return cls(
            int(raw["project_id"]),
            [str(x) for x in raw.get("repositories", [])],
            [str(x) for x in raw.get("tags", [])],
            [str(x) for x in raw.get("cve_ids", [])],
            [int(x) for x in raw.get("labels", [])],
        )


def parse_request(raw: bytes) -> ExportRequest:
    try:
        return ExportRequest.model_validate_json(raw or b"{}")
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise BadRequestError(f"invalid export criteria ({where}): {first['msg']}") from None


_CVE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,254}$")


async def request_export(
    session: AsyncSession, principal: Principal, body: ExportRequest, scan_data_type: str | None
) -> Execution:
    """``exportScanData``: one project (Harbor's limit), ``export-cve:create`` in it."""
    if (scan_data_type or "").strip() != SCAN_DATA_TYPE:
        raise BadRequestError(f"X-Scan-Data-Type must be {SCAN_DATA_TYPE!r}")
    if principal.is_anonymous:
        require(principal, Action.CREATE, Resource.EXPORT_CVE, None)
    projects = body.projects or []
    if len(projects) != 1:
        raise BadRequestError("projects must name exactly one project id")
    project, context = await resolve_project(session, principal, str(projects[0]))
    require(principal, Action.CREATE, Resource.EXPORT_CVE, context)
    cve_ids = _alternatives(body.cveIds)
    if len(cve_ids) > _MAX_CVES or any(not _CVE.match(c) for c in cve_ids):
        raise BadRequestError(f"cveIds: at most {_MAX_CVES} ids, each like CVE-2024-1234")
    criteria = Criteria(
        project.project_id,
        _pattern(body.repositories),
        _pattern(body.tags),
        cve_ids,
        sorted(set(body.labels or [])),
    )
    name = (body.job_name or "").strip()[:255]
    attrs = {
        "user_id": principal.user_id or 0,
        "user_name": principal.name,
        "job_name": name,
        "criteria": criteria.as_dict(),
    }
    return await jobs.enqueue(
        session,
        JOB_TYPE,
        vendor_id=principal.user_id or 0,
        extra_attrs=attrs,
        tasks=[jobs.TaskSpec(params=attrs, max_attempts=3)],
    )


# --- reading executions ----------------------------------------------------------------------


class ExportExecution(BaseModel):
    """Harbor's ``ScanDataExportExecution``."""

    id: int
    user_id: int
    status: str
    trigger: str
    start_time: Any = None
    end_time: Any = None
    status_text: str
    user_name: str
    file_present: bool


def _owner(row: Execution) -> str:
    return str(jobs.loads(row.extra_attrs).get("user_name") or "")


def _view(row: Execution, present: bool) -> ExportExecution:
    attrs = jobs.loads(row.extra_attrs)
    return ExportExecution(
        id=row.id,
        user_id=int(attrs.get("user_id") or 0),
        status=row.status,
        trigger=row.trigger,
        start_time=row.start_time,
        end_time=row.end_time,
        status_text=row.status_message,
        user_name=str(attrs.get("user_name") or ""),
        file_present=present,
    )


def _require_owner(principal: Principal, row: Execution) -> None:
    if principal.is_anonymous:
        require(principal, Action.READ, Resource.EXPORT_CVE, None)
    if _owner(row) != principal.name:
        raise DeniedError(f"export {row.id} belongs to another user")


async def _mine(session: AsyncSession, principal: Principal) -> list[Execution]:
    if principal.is_anonymous:
        require(principal, Action.LIST, Resource.EXPORT_CVE, None)
    rows = await session.scalars(
        select(Execution)
        .where(Execution.vendor_type == JOB_TYPE, Execution.vendor_id == (principal.user_id or 0))
        .order_by(Execution.id.desc())
    )
    return [row for row in rows if _owner(row) == principal.name]


async def list_exports(
    session: AsyncSession, principal: Principal, storage: Storage
) -> list[ExportExecution]:
    """``getScanDataExportExecutionList``: the caller's own exports, newest first."""
    return [
        _view(row, await storage.stat(file_key(row.id)) is not None)
        for row in await _mine(session, principal)
    ]


async def get_export(
    session: AsyncSession, principal: Principal, execution_id: int, storage: Storage
) -> ExportExecution:
    """``getScanDataExportExecution``: 404 unknown, 403 someone else's."""
    row = await jobs.get_execution(session, execution_id, vendor_type=JOB_TYPE)
    _require_owner(principal, row)
    return _view(row, await storage.stat(file_key(row.id)) is not None)


@dataclass(frozen=True, slots=True)
class ExportFile:
    key: str
    """Where the CSV is in the blob storage."""
    filename: str
    """The name to download it as: the request's ``job_name`` (letters, digits, ``._-``
    kept), else ``cve-export-<id>``, with ``.csv``."""


def download_filename(execution_id: int, job_name: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", job_name).strip("._")[:100]
    return f"{safe or f'cve-export-{execution_id}'}.csv"


async def export_file(
    session: AsyncSession, principal: Principal, execution_id: int, storage: Storage
) -> ExportFile:
    """``downloadScanData``: the caller's CSV (404 while absent)."""
    row = await jobs.get_execution(session, execution_id, vendor_type=JOB_TYPE)
    _require_owner(principal, row)
    key = file_key(row.id)
    if await storage.stat(key) is None:
        raise NotFoundError(f"export {row.id} has no file ({row.status})")
    job_name = str(jobs.loads(row.extra_attrs).get("job_name") or "")
    return ExportFile(key, download_filename(row.id, job_name))


# --- the job ---------------------------------------------------------------------------------


def _record_fields(data: str) -> tuple[str, str, str]:
    """(CVSS v3 score, CWE ids, vendor attributes JSON) of a stored record."""
    try:
        item = json.loads(data)
    except ValueError:
        return "", "", ""
    if not isinstance(item, dict):
        return "", "", ""
    cvss = item.get("preferred_cvss") or {}
    score = cvss.get("score_v3") if isinstance(cvss, dict) else None
    cwe = item.get("cwe_ids") or []
    attrs = item.get("vendor_attributes")
    return (
        "" if score is None else str(score),
        ",".join(str(c) for c in cwe) if isinstance(cwe, list) else "",
        json.dumps(attrs, sort_keys=True) if attrs else "",
    )


async def _rows(session: AsyncSession, criteria: Criteria) -> AsyncIterator[list[str]]:
    project = await session.get(Project, criteria.project_id)
    if project is None:
        return
    owner = await session.scalar(select(User.username).where(User.user_id == project.owner_id))
    registration = await registrations.registration_of_project(session, project.project_id)
    if registration is None:
        return
    after = 0
    while True:
        stmt = (
            select(Artifact.id, Artifact.repository_name, Artifact.digest, ScanReport.id)
            .join(ScanReport, ScanReport.artifact_id == Artifact.id)
            .where(
                Artifact.project_id == project.project_id,
                Artifact.id > after,
                ScanReport.registration_uuid == registration.uuid,
                ScanReport.mime_type == VULNERABILITY_MIME,
                ScanReport.status == reports.SUCCESS,
            )
            .order_by(Artifact.id)
            .limit(_CHUNK)
        )
        if criteria.labels:
            labelled = select(LabelReference.artifact_id).where(
                LabelReference.label_id.in_(criteria.labels)
            )
            stmt = stmt.where(Artifact.id.in_(labelled))
        batch = list(await session.execute(stmt))
        if not batch:
            return
        after = batch[-1][0]
        ids = [row[0] for row in batch]
        tags = await tag_names(session, ids)
        prefix = project.name + "/"
        wanted = {}
        for artifact_id, repository, digest, report_id in batch:
            if not matches(criteria.repositories, repository.removeprefix(prefix)):
                continue
            names = tags.get(artifact_id, [])
            if criteria.tags and not any(matches(criteria.tags, t) for t in names):
                continue
            wanted[report_id] = (repository, digest, ",".join(names))
        if not wanted:
            continue
        found = select(
            ReportVulnerability.report_id,
            VulnerabilityRecord.cve_id,
            VulnerabilityRecord.package,
            VulnerabilityRecord.package_version,
            VulnerabilityRecord.fix_version,
            VulnerabilityRecord.severity,
            VulnerabilityRecord.data,
        ).join(VulnerabilityRecord, VulnerabilityRecord.id == ReportVulnerability.record_id)
        found = found.where(ReportVulnerability.report_id.in_(sorted(wanted)))
        if criteria.cve_ids:
            found = found.where(VulnerabilityRecord.cve_id.in_(criteria.cve_ids))
        found = found.order_by(ReportVulnerability.report_id, VulnerabilityRecord.cve_id)
        for report_id, cve, package, version, fix, severity, data in await session.execute(found):
            repository, digest, tag_text = wanted[report_id]
            score, cwe, extra = _record_fields(data)
            yield [
                project.name,
                owner or "",
                registration.name,
                repository,
                digest,
                tag_text,
                cve,
                package,
                version,
                fix,
                severity,
                score,
                cwe,
                extra,
            ]


def _safe(cell: str) -> str:
    """A cell a spreadsheet will not run as a formula."""
    return "'" + cell if cell[:1] in ("=", "+", "-", "@", "\t", "\r") else cell


async def build(ctx: JobContext) -> dict[str, Any]:
    """The export job: the CSV into the storage; counts in the execution's attributes."""
    try:
        criteria = Criteria.from_dict(dict(ctx.params["criteria"]))
    except (KeyError, TypeError, ValueError):
        raise PermanentJobError("unreadable export criteria") from None
    count = 0
    with tempfile.SpooledTemporaryFile(max_size=8 << 20, mode="w+b") as spool:
        text = io.TextIOWrapper(spool, encoding="utf-8", newline="")
        writer = csv.writer(text)
        writer.writerow(COLUMNS)
        async with ctx.env.db.read() as session:
            async for row in _rows(session, criteria):
                writer.writerow([_safe(cell) for cell in row])
                count += 1
        text.flush()
        spool.seek(0)

        async def chunks() -> AsyncIterator[bytes]:
            while block := spool.read(1 << 20):
                yield block

        size = await ctx.env.storage.write(file_key(ctx.execution_id), chunks())
        text.detach()
    ctx.log(f"CVE export: {count} rows, {size} bytes")
    async with ctx.env.db.write() as session:
        await jobs.merge_execution_attrs(session, ctx.execution_id, {"rows": count, "size": size})
    return {"rows": count, "size": size}


async def forget(env: JobEnvironment, execution_ids: list[int]) -> None:
    """Executions pruned (``job_execution_retention_count``/``_days``): their CSVs go too."""
    for execution_id in execution_ids:
        await env.storage.delete(file_key(execution_id))


job_types: list[JobType] = [JobType(JOB_TYPE, build, on_pruned=forget)]
