"""The security hub (Harbor's ``securityhub``): the registry's vulnerabilities at a glance
(``security_summary``) and searched (``list_vulnerabilities``), for system admins and
robots granted ``security-hub`` (read, list). The console may call both with a session
and a principal.

Both read the **current successful vulnerability reports of the default scanner** (as
Harbor does) through their links to the shared records, in SQL: counts are ``GROUP BY``
over ``report_vulnerability`` joined to ``vulnerability_record`` (a finding is one link:
the same CVE in two images counts twice), never a report's JSON. The search filters on
indexed columns (the record's ``cve_id``, ``severity``, ``package``, ``cvss_score_v3``;
the artifact's project, repository and digest; a tag through ``tag``) and pages with
``LIMIT``/``OFFSET`` ordered by score, highest first.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, case, exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from dockyard.artifacts.repository import tag_names
from dockyard.db.listing import PageRequest, condition_clause, parse_q
from dockyard.errors import BadRequestError
from dockyard.iam.policy import Action, Principal, Resource
from dockyard.oci.mediatypes import INDEX_TYPES
from dockyard.projects.service import require
from dockyard.registry.models import Artifact, Tag
from dockyard.scan import registrations, reports
from dockyard.scan.client import VULNERABILITY_MIME
from dockyard.scan.models import ReportVulnerability, ScanReport, VulnerabilityRecord
from dockyard.scan.schemas import (
    DangerousArtifact,
    DangerousCVE,
    SecuritySummary,
    SecurityVulnerability,
)

TOP = 5
"""Dangerous CVEs and artifacts shown by the summary (Harbor's five)."""
TUNE_COUNT_LIMIT = 1000
_FILTERS: dict[str, ColumnElement[Any]] = {
    "cve_id": VulnerabilityRecord.cve_id,  # type: ignore[dict-item]
    "severity": VulnerabilityRecord.severity,  # type: ignore[dict-item]
    "package": VulnerabilityRecord.package,  # type: ignore[dict-item]
    "cvss_score_v3": VulnerabilityRecord.cvss_score_v3,  # type: ignore[dict-item]
    "project_id": Artifact.project_id,  # type: ignore[dict-item]
    "repository_name": Artifact.repository_name,  # type: ignore[dict-item]
    "digest": Artifact.digest,  # type: ignore[dict-item]
}


def _findings(registration_uuid: str) -> Select[Any]:
    """Links of the default scanner's current successful reports (add columns to it)."""
    return (
        select()
        .select_from(ReportVulnerability)
        .join(ScanReport, ScanReport.id == ReportVulnerability.report_id)
        .join(VulnerabilityRecord, VulnerabilityRecord.id == ReportVulnerability.record_id)
        .where(
            ScanReport.registration_uuid == registration_uuid,
            ScanReport.mime_type == VULNERABILITY_MIME,
            ScanReport.status == reports.SUCCESS,
        )
    )


async def _default_uuid(session: AsyncSession) -> str | None:
    row = await registrations.default_registration(session)
    return row.uuid if row is not None else None


def _description(data: str) -> str:
    try:
        value = json.loads(data).get("description")
    except (ValueError, AttributeError):
        return ""
    return value if isinstance(value, str) else ""


def _links(data: str) -> list[str]:
    try:
        value = json.loads(data).get("links")
    except (ValueError, AttributeError):
        return []
    return [str(v) for v in value] if isinstance(value, list) else []


async def security_summary(
    session: AsyncSession,
    principal: Principal,
    *,
    with_dangerous_cve: bool = False,
    with_dangerous_artifact: bool = False,
) -> SecuritySummary:
    """``getSecuritySummary``: findings per severity, fixable, scanned and all artifacts;
    optionally the five CVEs with the highest CVSS v3 score and the five artifacts with
    the most critical (then high, medium) findings."""
    require(principal, Action.READ, Resource.SECURITY_HUB, None)
    total_artifacts = await session.scalar(
        select(func.count())
        .select_from(Artifact)
        .where(Artifact.type == "IMAGE", Artifact.manifest_media_type.not_in(INDEX_TYPES))
    )
    summary = SecuritySummary(total_artifact=int(total_artifacts or 0))
    uuid = await _default_uuid(session)
    if uuid is None:
        return summary
    scanned = await session.scalar(
        select(func.count())
        .select_from(ScanReport)
        .where(
            ScanReport.registration_uuid == uuid,
            ScanReport.mime_type == VULNERABILITY_MIME,
            ScanReport.status == reports.SUCCESS,
        )
    )
    summary.scanned_cnt = int(scanned or 0)
    fixable = func.sum(case((VulnerabilityRecord.fix_version != "", 1), else_=0))
    counts = await session.execute(
        _findings(uuid)
        .add_columns(VulnerabilityRecord.severity, func.count(), fixable)
        .group_by(VulnerabilityRecord.severity)
    )
    by_severity: dict[str, int] = {}
    for severity, count, fixed in counts:
        by_severity[str(severity)] = int(count)
        summary.total_vuls += int(count)
        summary.fixable_cnt += int(fixed or 0)
    summary.critical_cnt = by_severity.get("Critical", 0)
    summary.high_cnt = by_severity.get("High", 0)
    summary.medium_cnt = by_severity.get("Medium", 0)
    summary.low_cnt = by_severity.get("Low", 0) + by_severity.get("Negligible", 0)
    summary.unknown_cnt = by_severity.get("Unknown", 0)
    summary.none_cnt = 0
    if with_dangerous_cve:
        rows = await session.execute(
            _findings(uuid)
            .add_columns(
                VulnerabilityRecord.cve_id,
                VulnerabilityRecord.severity,
                VulnerabilityRecord.cvss_score_v3,
                VulnerabilityRecord.package,
                VulnerabilityRecord.package_version,
                VulnerabilityRecord.data,
            )
            .where(VulnerabilityRecord.cvss_score_v3.is_not(None))
            .distinct()
            .order_by(VulnerabilityRecord.cvss_score_v3.desc(), VulnerabilityRecord.cve_id)
            .limit(TOP)
        )
        summary.dangerous_cves = [
            DangerousCVE(
                cve_id=cve,
                severity=severity,
                cvss_score_v3=score,
                desc=_description(data),
                package=package,
                version=version,
            )
            for cve, severity, score, package, version, data in rows
        ]
    if with_dangerous_artifact:
        summary.dangerous_artifacts = await _dangerous_artifacts(session, uuid)
    return summary


async def _dangerous_artifacts(session: AsyncSession, uuid: str) -> list[DangerousArtifact]:
    def counted(severity: str) -> Any:
        return func.sum(case((VulnerabilityRecord.severity == severity, 1), else_=0))

    critical, high, medium = counted("Critical"), counted("High"), counted("Medium")
    rows = await session.execute(
        _findings(uuid)
        .add_columns(ScanReport.artifact_id, critical, high, medium)
        .where(VulnerabilityRecord.severity.in_(("Critical", "High", "Medium")))
        .group_by(ScanReport.artifact_id)
        .order_by(critical.desc(), high.desc(), medium.desc(), ScanReport.artifact_id)
        .limit(TOP)
    )
    found = [(int(a), int(c or 0), int(h or 0), int(m or 0)) for a, c, h, m in rows]
    artifacts = {
        a.id: a
        for a in await session.scalars(
            select(Artifact).where(Artifact.id.in_([f[0] for f in found]))
        )
    }
    return [
        DangerousArtifact(
            project_id=artifacts[a].project_id,
            repository_name=artifacts[a].repository_name,
            digest=artifacts[a].digest,
            critical_cnt=c,
            high_cnt=h,
            medium_cnt=m,
        )
        for a, c, h, m in found
        if a in artifacts
    ]


@dataclass(frozen=True, slots=True)
class VulnerabilityPage:
    items: list[SecurityVulnerability]
    total: int
    """``-1`` when ``tune_count`` and more than ``TUNE_COUNT_LIMIT``."""
    more: bool = False
    """Whether a next page exists (what ``Link`` needs when ``total`` is ``-1``)."""


async def list_vulnerabilities(
    session: AsyncSession,
    principal: Principal,
    q: str | None,
    page: PageRequest,
    *,
    tune_count: bool = False,
    with_tag: bool = False,
) -> VulnerabilityPage:
    """``ListVulnerabilities``: findings filtered by ``q`` (``cve_id``, ``severity``,
    ``package``, ``project_id``, ``repository_name``, ``digest``, ``tag`` exact or
    ``{a b}``; ``cvss_score_v3=[low~high]``), highest score first."""
    require(principal, Action.LIST, Resource.SECURITY_HUB, None)
    uuid = await _default_uuid(session)
    if uuid is None:
        return VulnerabilityPage([], 0)
    stmt = _findings(uuid).join(Artifact, Artifact.id == ScanReport.artifact_id)
    for condition in parse_q(q):
        if condition.key == "tag":
            if condition.kind not in ("exact", "any"):
                raise BadRequestError("q: tag takes an exact value or {a b}")
            stmt = stmt.where(
                exists().where(
                    Tag.artifact_id == Artifact.id,
                    Tag.name.in_(condition.values),
                )
            )
            continue
        column = _FILTERS.get(condition.key)
        if column is None:
            keys = ", ".join(sorted([*_FILTERS, "tag"]))
            raise BadRequestError(f"q cannot filter on {condition.key[:64]!r}; keys: {keys}")
        if condition.key == "cvss_score_v3" and condition.kind not in ("range", "exact"):
            raise BadRequestError("q: cvss_score_v3 takes [low~high] or one score")
        if condition.key != "cvss_score_v3" and condition.kind == "range":
            raise BadRequestError(f"q: {condition.key} takes an exact value, not a range")
        stmt = stmt.where(condition_clause(condition, column))
    counted = stmt.add_columns(ReportVulnerability.record_id)
    if tune_count:
        capped = await session.scalar(
            select(func.count()).select_from(counted.limit(TUNE_COUNT_LIMIT + 1).subquery())
        )
        total = int(capped or 0)
        if total > TUNE_COUNT_LIMIT:
            total = -1
    else:
        total = int(await session.scalar(select(func.count()).select_from(counted.subquery())) or 0)
    rows = await session.execute(
        stmt.add_columns(
            Artifact.id,
            Artifact.project_id,
            Artifact.repository_name,
            Artifact.digest,
            VulnerabilityRecord.cve_id,
            VulnerabilityRecord.severity,
            VulnerabilityRecord.cvss_score_v3,
            VulnerabilityRecord.package,
            VulnerabilityRecord.package_version,
            VulnerabilityRecord.fix_version,
            VulnerabilityRecord.data,
        )
        .order_by(
            VulnerabilityRecord.cvss_score_v3.desc().nulls_last(),
            ReportVulnerability.report_id,
            ReportVulnerability.record_id,
        )
        .limit(page.page_size + 1)  # one more: is there a next page
        .offset((page.page - 1) * page.page_size)
    )
    found = list(rows)
    more = len(found) > page.page_size
    found = found[: page.page_size]
    tags = await tag_names(session, {row[0] for row in found}) if with_tag else {}
    items = [
        SecurityVulnerability(
            project_id=project_id,
            repository_name=repository,
            digest=digest,
            tags=tags.get(artifact_id, []) if with_tag else None,
            cve_id=cve,
            severity=severity,
            cvss_v3_score=score,
            package=package,
            version=version,
            fixed_version=fix or None,
            desc=_description(data),
            links=_links(data),
        )
        for (
            artifact_id,
            project_id,
            repository,
            digest,
            cve,
            severity,
            score,
            package,
            version,
            fix,
            data,
        ) in found
    ]
    return VulnerabilityPage(items, total, more)
