"""Scan reports: one current report per (artifact, scanner, MIME type), and the
vulnerability records they link to.

A scan request sets the report row to ``Pending`` under a new ``uuid`` (Harbor's
``report_id``); when the adapter's report arrives, ``store_vulnerabilities`` replaces
the report's links, summary and status in one transaction, so a reader sees the old
report or the new one, never half of each. A record (one finding: CVE, package,
version, fix, severity, description…) is stored once, keyed by the SHA-256 of its
canonical JSON, and shared by every report that found it; records the old report held
and no report holds any more are deleted in the same transaction, so rescanning an
image any number of times leaves the database the size it was.

The summary shown by artifact listings (``scan_overview``) is stored on the report row,
so a listing reads one row per artifact and MIME type and never counts findings.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple, Protocol

from sqlalchemy import delete, exists, insert, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import defer

from dockyard.db.base import utcnow
from dockyard.scan import schemas
from dockyard.scan.client import SBOM_MIME, VULNERABILITY_MIME
from dockyard.scan.models import ReportVulnerability, ScanReport, VulnerabilityRecord

PENDING = "Pending"
RUNNING = "Running"
SUCCESS = "Success"
ERROR = "Error"
STOPPED = "Stopped"
SEVERITIES = ("Unknown", "Negligible", "Low", "Medium", "High", "Critical")
"""Harbor's severities, lowest first (``None`` when nothing was found)."""
_CHUNK = 500
_MAX_DESCRIPTION = 8192
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"))
"""A record's data as its fingerprint hashes it (``json.dumps`` with these options, without
making an encoder per finding of every report stored)."""


def _loads(text: str | None) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def severity_of(value: str | None) -> str:
    """An adapter's severity spelt as Harbor does (anything unknown is ``Unknown``)."""
    text = (value or "").strip().capitalize()
    return text if text in SEVERITIES else "Unknown"


def _rank(severity: str) -> int:
    return SEVERITIES.index(severity) if severity in SEVERITIES else -1


# --- starting and ending scans -------------------------------------------------------------


async def begin(
    session: AsyncSession,
    *,
    artifact_id: int,
    digest: str,
    registration_uuid: str,
    mime_type: str,
    report_uuid: str,
    execution_id: int,
) -> ScanReport:
    """The report row of a new scan, ``Pending`` under ``report_uuid`` (the previous
    report's findings stay visible until the new ones replace them)."""
    row: ScanReport | None = await session.scalar(
        select(ScanReport).where(
            ScanReport.artifact_id == artifact_id,
            ScanReport.registration_uuid == registration_uuid,
            ScanReport.mime_type == mime_type,
        )
    )
    if row is None:
        row = ScanReport(
            artifact_id=artifact_id,
            digest=digest,
            registration_uuid=registration_uuid,
            mime_type=mime_type,
            severity="",
        )
        session.add(row)
    row.uuid = report_uuid
    row.status = PENDING
    row.status_message = ""
    row.execution_id = execution_id
    row.task_id = None
    row.start_time = utcnow()
    row.end_time = None
    await session.flush()
    return row


@dataclass(frozen=True, slots=True)
class NewScan:
    """One artifact of a batch of new scans (``begin_many``)."""

    artifact_id: int
    digest: str
    registration_uuid: str
    report_uuid: str
    task_id: int | None


async def begin_many(
    session: AsyncSession, scans: Sequence[NewScan], mime_type: str, execution_id: int
) -> None:
    """``begin`` for a batch of artifacts, in one read of their existing rows and one flush
    (scan all enqueues hundreds at a time)."""
    if not scans:
        return
    existing = {
        (row.artifact_id, row.registration_uuid): row
        for row in await session.scalars(
            select(ScanReport)
            .options(defer(ScanReport.content))
            .where(
                ScanReport.artifact_id.in_([s.artifact_id for s in scans]),
                ScanReport.mime_type == mime_type,
            )
        )
    }
    now = utcnow()
    for scan in scans:
        row = existing.get((scan.artifact_id, scan.registration_uuid))
        if row is None:
            row = ScanReport(
                artifact_id=scan.artifact_id,
                digest=scan.digest,
                registration_uuid=scan.registration_uuid,
                mime_type=mime_type,
                severity="",
            )
            session.add(row)
        row.uuid = scan.report_uuid
        row.status = PENDING
        row.status_message = ""
        row.execution_id = execution_id
        row.task_id = scan.task_id
        row.start_time = now
        row.end_time = None
    await session.flush()


async def current(session: AsyncSession, report_uuid: str) -> ScanReport | None:
    """The report row still waiting for ``report_uuid`` (None: a newer scan replaced it,
    or the artifact is gone)."""
    found: ScanReport | None = await session.scalar(
        select(ScanReport)
        .options(defer(ScanReport.content))
        .where(ScanReport.uuid == report_uuid)
        .with_for_update()
    )
    return found


async def mark(
    session: AsyncSession, report_uuid: str, status: str, message: str = ""
) -> ScanReport | None:
    """Set the status of the scan ``report_uuid`` (if it is still the current one)."""
    row = await current(session, report_uuid)
    if row is None:
        return None
    row.status = status
    row.status_message = message[:2048]
    if status in (SUCCESS, ERROR, STOPPED):
        row.end_time = utcnow()
    return row


def _record_fields(item: schemas.VulnerabilityItem) -> dict[str, Any]:
    data = item.model_dump(mode="json", exclude_none=True)
    data["severity"] = severity_of(item.severity)
    if isinstance(data.get("description"), str):
        data["description"] = data["description"][:_MAX_DESCRIPTION]
    canonical = _CANONICAL.encode(data)
    return {
        "fingerprint": hashlib.sha256(canonical.encode()).hexdigest(),
        "cve_id": item.id,
        "package": item.package,
        "package_version": item.version,
        "fix_version": item.fix_version or "",
        "severity": data["severity"],
        "cvss_score_v3": item.preferred_cvss.score_v3 if item.preferred_cvss else None,
        "data": canonical,
    }


def summarise(
    items: Sequence[schemas.VulnerabilityItem],
) -> tuple[str, schemas.VulnerabilitySummary]:
    counts: dict[str, int] = {}
    fixable = 0
    for item in items:
        severity = severity_of(item.severity)
        counts[severity] = counts.get(severity, 0) + 1
        fixable += bool(item.fix_version)
    overall = max(counts, key=_rank) if counts else "None"
    return overall, schemas.VulnerabilitySummary(total=len(items), fixable=fixable, summary=counts)


def _insert_ignoring_duplicates(session: AsyncSession) -> Any:
    dialect = session.get_bind().dialect.name
    maker = pg_insert if dialect == "postgresql" else sqlite_insert
    return maker(VulnerabilityRecord).on_conflict_do_nothing(index_elements=["fingerprint"])


async def store_vulnerabilities(
    session: AsyncSession,
    report: ScanReport,
    scanner: schemas.AdapterScanner,
    items: Sequence[schemas.VulnerabilityItem],
) -> None:
    """Replace ``report``'s findings with ``items`` and mark it ``Success`` (one transaction)."""
    fields: dict[str, dict[str, Any]] = {}
    for item in items:
        values = _record_fields(item)
        fields.setdefault(values["fingerprint"], values)
    unique = list(fields.values())
    for start in range(0, len(unique), _CHUNK):
        await session.execute(_insert_ignoring_duplicates(session), unique[start : start + _CHUNK])
    new_ids: set[int] = set()
    prints = list(fields)
    for start in range(0, len(prints), _CHUNK):
        found = await session.scalars(
            select(VulnerabilityRecord.id).where(
                VulnerabilityRecord.fingerprint.in_(prints[start : start + _CHUNK])
            )
        )
        new_ids.update(found)
    old_ids = set(
        await session.scalars(
            select(ReportVulnerability.record_id).where(ReportVulnerability.report_id == report.id)
        )
    )
    gone = old_ids - new_ids
    added = new_ids - old_ids
    if gone:
        for chunk in _chunks(sorted(gone)):
            await session.execute(
                delete(ReportVulnerability).where(
                    ReportVulnerability.report_id == report.id,
                    ReportVulnerability.record_id.in_(chunk),
                )
            )
    if added:
        rows = [{"report_id": report.id, "record_id": record} for record in sorted(added)]
        for start in range(0, len(rows), _CHUNK):
            await session.execute(insert(ReportVulnerability), rows[start : start + _CHUNK])
    if gone:
        await _drop_orphans(session, gone)
    overall, summary = summarise(items)
    report.severity = overall
    report.summary = summary.model_dump_json()
    report.scanner = scanner.model_dump_json()
    report.content = None
    report.status = SUCCESS
    report.status_message = ""
    report.end_time = utcnow()


async def store_sbom(
    session: AsyncSession,
    report: ScanReport,
    scanner: schemas.AdapterScanner,
    content: str,
    sbom_digest: str = "",
) -> None:
    """Keep the SBOM report as the adapter gave it and mark it ``Success``; ``summary``
    holds ``{"sbom_digest": …}``, the accessory it was pushed as (``scan/sbom.py``)."""
    report.content = content
    report.scanner = scanner.model_dump_json()
    report.severity = ""
    report.summary = json.dumps({"sbom_digest": sbom_digest}) if sbom_digest else None
    report.status = SUCCESS
    report.status_message = ""
    report.end_time = utcnow()


def _chunks(values: Sequence[int]) -> Iterable[Sequence[int]]:
    for start in range(0, len(values), _CHUNK):
        yield values[start : start + _CHUNK]


async def _drop_orphans(session: AsyncSession, candidates: Iterable[int]) -> None:
    """Delete the records among ``candidates`` that no report links any more."""
    for chunk in _chunks(sorted(candidates)):
        await session.execute(
            delete(VulnerabilityRecord).where(
                VulnerabilityRecord.id.in_(chunk),
                ~exists().where(ReportVulnerability.record_id == VulnerabilityRecord.id),
            )
        )


async def drop_orphans_of_artifacts(session: AsyncSession, artifact_ids: Sequence[int]) -> None:
    """Before artifacts go: their reports' records that nothing else links go too."""
    if not artifact_ids:
        return
    held = set(
        await session.scalars(
            select(ReportVulnerability.record_id)
            .join(ScanReport, ScanReport.id == ReportVulnerability.report_id)
            .where(ScanReport.artifact_id.in_(artifact_ids))
        )
    )
    if not held:
        return
    await session.execute(delete(ScanReport).where(ScanReport.artifact_id.in_(artifact_ids)))
    await _drop_orphans(session, held)


# --- reading -------------------------------------------------------------------------------


class SummaryRow(Protocol):
    """What a summary is made of: a ``ScanReport``, or a row of just these columns."""

    @property
    def uuid(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def severity(self) -> str: ...
    @property
    def summary(self) -> str | None: ...
    @property
    def scanner(self) -> str | None: ...
    @property
    def start_time(self) -> datetime: ...
    @property
    def end_time(self) -> datetime | None: ...


class _Summary(NamedTuple):
    """A report's summary columns as a listing's overviews read them: no ORM object to
    build, and fields read as fast as a tuple's."""

    artifact_id: int
    mime_type: str
    uuid: str
    status: str
    severity: str
    summary: str | None
    scanner: str | None
    start_time: datetime
    end_time: datetime | None


_SUMMARY_COLUMNS = [getattr(ScanReport, name) for name in _Summary._fields]


def _scanner(row: SummaryRow) -> schemas.Scanner | None:
    return _scanner_of(row.scanner)


@functools.lru_cache(maxsize=256)
def _scanner_of(text: str | None) -> schemas.Scanner | None:
    """The scanner of a report (one of few texts: a page's reports share it; the model is
    only read, never changed)."""
    value = _loads(text)
    return schemas.Scanner.model_validate(value) if isinstance(value, dict) else None


def _duration(row: SummaryRow) -> int | None:
    if row.end_time is None:
        return None
    return max(0, int((row.end_time - row.start_time).total_seconds()))


def native_summary(row: SummaryRow) -> schemas.NativeReportSummary:
    summary = _loads(row.summary)
    done = row.status in (SUCCESS, ERROR, STOPPED)
    return schemas.NativeReportSummary(
        report_id=row.uuid,
        scan_status=row.status,
        severity=row.severity or None,
        duration=_duration(row),
        summary=schemas.VulnerabilitySummary.model_validate(summary)
        if isinstance(summary, dict) and row.status == SUCCESS
        else None,
        start_time=row.start_time,
        end_time=row.end_time,
        complete_percent=100 if done else 0,
        scanner=_scanner(row),
    )


def sbom_overview(row: SummaryRow) -> schemas.SBOMOverview:
    stored = _loads(row.summary) if row.status == SUCCESS else None
    digest = stored.get("sbom_digest") if isinstance(stored, dict) else None
    return schemas.SBOMOverview(
        sbom_digest=digest if isinstance(digest, str) and digest else None,
        start_time=row.start_time,
        end_time=row.end_time,
        scan_status=row.status,
        report_id=row.uuid,
        duration=_duration(row),
        scanner=_scanner(row),
    )


@dataclass(frozen=True, slots=True)
class Overviews:
    scan: dict[int, dict[str, schemas.NativeReportSummary]]
    sbom: dict[int, schemas.SBOMOverview]


async def overviews(
    session: AsyncSession,
    artifact_ids: Sequence[int],
    registration_uuid: str | None,
    *,
    with_scan: bool,
    with_sbom: bool,
    children: Mapping[int, Sequence[int]] | None = None,
) -> Overviews:
    """The stored summaries of ``artifact_ids`` by ``registration_uuid`` (one query); an
    index (a key of ``children``) gets its children's summaries added up."""
    result = Overviews({}, {})
    if not artifact_ids or registration_uuid is None or not (with_scan or with_sbom):
        return result
    children = children or {}
    wanted = set(artifact_ids) | {c for listed in children.values() for c in listed}
    mimes = [m for m, on in ((VULNERABILITY_MIME, with_scan), (SBOM_MIME, with_sbom)) if on]
    rows = await session.execute(
        select(*_SUMMARY_COLUMNS).where(
            ScanReport.artifact_id.in_(sorted(wanted)),
            ScanReport.registration_uuid == registration_uuid,
            ScanReport.mime_type.in_(mimes),
        )
    )
    found: dict[int, SummaryRow] = {}
    for row in map(_Summary._make, rows):
        if row.mime_type == SBOM_MIME:
            result.sbom[row.artifact_id] = sbom_overview(row)
        else:
            found[row.artifact_id] = row
            result.scan.setdefault(row.artifact_id, {})[row.mime_type] = native_summary(row)
    for index, listed in children.items():
        parts = [found[c] for c in listed if c in found]
        if parts and index not in found:
            result.scan[index] = {VULNERABILITY_MIME: aggregate(parts)}
    return result


def aggregate(rows: Sequence[SummaryRow]) -> schemas.NativeReportSummary:
    """An index's summary: its children's added up, the worst severity, the least finished
    status (Harbor shows an index so)."""
    statuses = {row.status for row in rows}
    status = next((s for s in (RUNNING, PENDING, ERROR, STOPPED) if s in statuses), SUCCESS)
    if status == PENDING:
        status = RUNNING if statuses - {PENDING} else PENDING
    counts: dict[str, int] = {}
    total = fixable = 0
    severities = []
    for row in rows:
        summary = _loads(row.summary)
        if row.status != SUCCESS or not isinstance(summary, dict):
            continue
        part = schemas.VulnerabilitySummary.model_validate(summary)
        total += part.total
        fixable += part.fixable
        for severity, count in part.summary.items():
            counts[severity] = counts.get(severity, 0) + count
        severities.append(row.severity)
    done = [row for row in rows if row.status in (SUCCESS, ERROR, STOPPED)]
    start = min(row.start_time for row in rows)
    end = max((row.end_time for row in done if row.end_time), default=None)
    finished = len(done) == len(rows)
    return schemas.NativeReportSummary(
        scan_status=status,
        severity=max(severities, key=_rank) if severities else None,
        duration=int((end - start).total_seconds()) if finished and end else None,
        summary=schemas.VulnerabilitySummary(total=total, fixable=fixable, summary=counts)
        if severities
        else None,
        start_time=start,
        end_time=end if finished else None,
        complete_percent=100 * len(done) // len(rows),
        scanner=_scanner(rows[0]),
    )


async def vulnerability_report(
    session: AsyncSession, artifact_id: int, registration_uuid: str | None
) -> dict[str, Any]:
    """``additions/vulnerabilities``: ``{mime type: report}`` of the artifact's current
    successful vulnerability report by the project's scanner (``{}``: none)."""
    if registration_uuid is None:
        return {}
    row: ScanReport | None = await session.scalar(
        select(ScanReport).where(
            ScanReport.artifact_id == artifact_id,
            ScanReport.registration_uuid == registration_uuid,
            ScanReport.mime_type == VULNERABILITY_MIME,
            ScanReport.status == SUCCESS,
        )
    )
    if row is None:
        return {}
    datas = await session.scalars(
        select(VulnerabilityRecord.data)
        .join(ReportVulnerability, ReportVulnerability.record_id == VulnerabilityRecord.id)
        .where(ReportVulnerability.report_id == row.id)
        .order_by(VulnerabilityRecord.cve_id, VulnerabilityRecord.package)
    )
    items = [value for value in (_loads(d) for d in datas) if isinstance(value, dict)]
    items.sort(key=lambda v: (-_rank(str(v.get("severity"))), str(v.get("id"))))
    scanner = _loads(row.scanner)
    return {
        VULNERABILITY_MIME: {
            "generated_at": _iso(row.end_time),
            "scanner": scanner if isinstance(scanner, dict) else None,
            "severity": row.severity or "None",
            "vulnerabilities": items,
        }
    }


def _iso(when: datetime | None) -> str | None:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ") if when is not None else None
