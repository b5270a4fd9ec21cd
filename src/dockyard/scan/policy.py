"""Vulnerability prevention as a pull policy (``registry/pull_policy.py``).

With the project's ``prevent_vul`` on, a manifest GET/HEAD (by tag or digest) is refused
with Harbor's ``412 PROJECTPOLICYVIOLATION`` when the artifact's current vulnerability
report holds findings at or above the project's ``severity`` (None < Unknown < Low <
Medium < High < Critical; ``Negligible`` ranks as Low, as in Harbor's v3 severities)
once the CVEs of the allowlist in force are removed: the project's own, or the system's
when ``reuse_sys_cve_allowlist`` is ``"true"``; an expired allowlist counts as empty.

An artifact not scanned yet follows Harbor's middleware: when a scanner applies to it
(an enabled scanner is the project's or the default, and it is an image manifest), a pull
is refused ("without vulnerability scanning") until a scan succeeds; so is one whose
scan is pending, running, stopped or failed — otherwise pushing and pulling before the
scan would walk round the policy. With no scanner that could ever scan it, it is served.
Indexes are served (Harbor skips image indexes; each child is checked when pulled) and
so are accessories. Harbor's scanner credential (``scanner-pull``) is never refused.

The decision is one statement: the artifact, the switches, both allowlists, whether a
scanner applies, and the findings of its vulnerability reports *at or above the project's
severity only* (the rank is compared in the join), through indexed keys. No report
content, blob or scanner is read on a pull.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from sqlalchemy import and_, bindparam, case, exists, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.orm import aliased

from dockyard.errors import PolicyViolationError
from dockyard.projects.allowlists import SYSTEM, ids_of
from dockyard.projects.models import CVEAllowlistRow, ProjectMetadata
from dockyard.registry.models import Artifact, Repository
from dockyard.registry.pull_policy import ManifestPullCheck
from dockyard.scan.client import VULNERABILITY_MIME
from dockyard.scan.models import (
    ProjectScanner,
    ReportVulnerability,
    ScannerRegistration,
    ScanReport,
    VulnerabilityRecord,
)
from dockyard.scan.reports import SUCCESS

__all__ = ["VulnerabilityPolicy", "severity_label"]

_RECORD_RANK = {"Unknown": 1, "Negligible": 2, "Low": 2, "Medium": 3, "High": 4, "Critical": 5}
_THRESHOLD_RANK = {"none": 0, "unknown": 1, "low": 2, "medium": 3, "high": 4, "critical": 5}
_LABELS = {0: "None", 1: "Unknown", 2: "Low", 3: "Medium", 4: "High", 5: "Critical"}
_DEFAULT_THRESHOLD = 1
"""A project with ``prevent_vul`` and no ``severity``: any finding (Harbor reads a missing
severity as Unknown, the lowest found)."""

_PREVENT = aliased(ProjectMetadata)
_SEVERITY = aliased(ProjectMetadata)
_REUSE = aliased(ProjectMetadata)
_OWN = aliased(CVEAllowlistRow)
_SYS = aliased(CVEAllowlistRow)
_THRESHOLD = case(
    *((_SEVERITY.value == name, rank) for name, rank in _THRESHOLD_RANK.items()),
    else_=_DEFAULT_THRESHOLD,
)
_RANK = case(
    *((VulnerabilityRecord.severity == name, rank) for name, rank in _RECORD_RANK.items()),
    else_=1,
)
_SCANNER_APPLIES = or_(
    exists().where(
        ProjectScanner.project_id == Artifact.project_id,
        ScannerRegistration.id == ProjectScanner.registration_id,
        ScannerRegistration.disabled.is_(False),
    ),
    and_(
        ~exists().where(ProjectScanner.project_id == Artifact.project_id),
        exists().where(
            ScannerRegistration.is_default.is_(True), ScannerRegistration.disabled.is_(False)
        ),
    ),
)
_FINDINGS = ReportVulnerability.__table__.join(
    VulnerabilityRecord.__table__, VulnerabilityRecord.id == ReportVulnerability.record_id
)
# Built once with bound parameters; one row per finding at or above the threshold (one
# row with no finding when there is none), none when prevent_vul is off.
_STATE = (
    select(
        Artifact.type,
        Artifact.media_type,
        _THRESHOLD,
        _REUSE.value,
        _OWN.items,
        _OWN.expires_at,
        _SYS.items,
        _SYS.expires_at,
        _SCANNER_APPLIES,
        ScanReport.status,
        VulnerabilityRecord.cve_id,
    )
    .select_from(Artifact)
    .join(Repository, Repository.repository_id == Artifact.repository_id)
    .join(
        _PREVENT,
        and_(
            _PREVENT.project_id == Artifact.project_id,
            _PREVENT.name == "prevent_vul",
            _PREVENT.value == "true",
        ),
    )
    .outerjoin(
        _SEVERITY,
        and_(_SEVERITY.project_id == Artifact.project_id, _SEVERITY.name == "severity"),
    )
    .outerjoin(
        _REUSE,
        and_(_REUSE.project_id == Artifact.project_id, _REUSE.name == "reuse_sys_cve_allowlist"),
    )
    .outerjoin(_OWN, _OWN.project_id == Artifact.project_id)
    .outerjoin(_SYS, _SYS.project_id == SYSTEM)
    .outerjoin(
        ScanReport,
        and_(ScanReport.artifact_id == Artifact.id, ScanReport.mime_type == VULNERABILITY_MIME),
    )
    .outerjoin(
        _FINDINGS,
        and_(
            ReportVulnerability.report_id == ScanReport.id,
            ScanReport.status == SUCCESS,
            _RANK >= _THRESHOLD,
        ),
    )
    .where(Repository.name == bindparam("repository"), Artifact.digest == bindparam("digest"))
)


def severity_label(threshold: int) -> str:
    return _LABELS.get(threshold, "Unknown")


@dataclass(slots=True)
class _Verdict:
    threshold: int = _DEFAULT_THRESHOLD
    statuses: set[str] = field(default_factory=set)
    findings: set[str] = field(default_factory=set)
    allowed: frozenset[str] = frozenset()


def _in_force(items: str | None, expires_at: int | None, now: float) -> frozenset[str]:
    if expires_at is not None and expires_at <= now:
        return frozenset()
    return frozenset(ids_of(items))


class VulnerabilityPolicy:
    switches: tuple[str, ...] = ("prevent_vul",)

    async def check_pull(self, conn: AsyncConnection, pull: ManifestPullCheck) -> None:
        if pull.scanner_pull:
            return
        rows = (
            await conn.execute(_STATE, {"repository": pull.repository, "digest": pull.digest})
        ).all()
        if not rows:
            return  # prevent_vul off (or no such artifact: the handler answers that)
        first = rows[0]
        if first[0] != "IMAGE" or not first[1]:
            return  # an index or an accessory
        now = time.time()
        verdict = _Verdict(threshold=int(first[2]))
        if first[3] == "true":
            verdict.allowed = _in_force(first[6], first[7], now)
        else:
            verdict.allowed = _in_force(first[4], first[5], now)
        for row in rows:
            if row[9] is not None:
                verdict.statuses.add(str(row[9]))
            if row[10] is not None:
                verdict.findings.add(str(row[10]))
        label = severity_label(verdict.threshold)
        policy = (
            "cannot be pulled due to configured policy in 'Prevent images with vulnerability "
            f'severity of "{label}" or higher from running.\' '
        )
        if not verdict.statuses:
            if not first[8]:
                return  # no scanner could ever scan it
            raise PolicyViolationError(
                f"current image without vulnerability scanning {policy}"
                "To continue with pull, please contact your project administrator for help."
            )
        if SUCCESS not in verdict.statuses:
            status = sorted(verdict.statuses)[0]
            raise PolicyViolationError(
                f'current image with "{status}" status of vulnerability scanning {policy}'
                "To continue with pull, please contact your project administrator for help."
            )
        blocking = verdict.findings - verdict.allowed
        if blocking:
            thing = "vulnerabilities" if len(blocking) > 1 else "vulnerability"
            raise PolicyViolationError(
                f"current image with {len(blocking)} {thing} {policy}"
                "To continue with pull, please contact your project administrator to exempt "
                "matched vulnerabilities through configuring the CVE allowlist."
            )
