"""Harbor's vulnerability report (scanner adapter API, ``HarborVulnerabilityReport``,
mime type ``application/vnd.security.vulnerability.report; version=1.1``) and its summary.

Pure: findings in, plain dicts out, ready for ``json.dumps``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .osv import SEVERITIES, SEVERITY_RANK

VULNERABILITY_REPORT_MIME = "application/vnd.security.vulnerability.report; version=1.1"
SCANNER_NAME = "Dockyard"
SCANNER_VENDOR = "Dockyard"


@dataclass(frozen=True, slots=True)
class Finding:
    """One vulnerability of one installed package."""

    id: str
    package: str
    version: str
    fix_version: str
    severity: str
    description: str = ""
    links: tuple[str, ...] = ()
    cvss_v3_vector: str = ""
    cvss_v3_score: float | None = None
    cvss_v2_vector: str = ""
    cvss_v2_score: float | None = None
    cwe_ids: tuple[str, ...] = ()
    vendor_attributes: Mapping[str, Any] = field(default_factory=dict)


def highest(severities: Iterable[str]) -> str:
    """The most severe of ``severities`` on Harbor's scale; ``Unknown`` for none."""
    return max(severities, key=lambda s: SEVERITY_RANK.get(s, 0), default="Unknown")


def vulnerability_item(finding: Finding) -> dict[str, Any]:
    cvss: dict[str, Any] = {}
    if finding.cvss_v3_score is not None:
        cvss["score_v3"] = finding.cvss_v3_score
        cvss["vector_v3"] = finding.cvss_v3_vector
    if finding.cvss_v2_score is not None:
        cvss["score_v2"] = finding.cvss_v2_score
        cvss["vector_v2"] = finding.cvss_v2_vector
    item: dict[str, Any] = {
        "id": finding.id,
        "package": finding.package,
        "version": finding.version,
        "fix_version": finding.fix_version,
        "severity": finding.severity,
        "description": finding.description,
        "links": list(finding.links),
        "cwe_ids": list(finding.cwe_ids),
        "vendor_attributes": dict(finding.vendor_attributes),
    }
    if cvss:
        item["preferred_cvss"] = cvss
    return item


def vulnerability_report(
    findings: Iterable[Finding],
    *,
    artifact: Mapping[str, Any] | None = None,
    scanner_version: str = "",
    generated_at: datetime | None = None,
) -> dict[str, Any]:
    """The report: findings most severe first, then by package and id."""
    ordered = sorted(
        findings, key=lambda f: (-SEVERITY_RANK.get(f.severity, 0), f.package, f.id, f.version)
    )
    when = (generated_at or datetime.now(UTC)).astimezone(UTC)
    report: dict[str, Any] = {
        "generated_at": when.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "scanner": {"name": SCANNER_NAME, "vendor": SCANNER_VENDOR, "version": scanner_version},
        "severity": highest(f.severity for f in ordered),
        "vulnerabilities": [vulnerability_item(f) for f in ordered],
    }
    if artifact:
        report["artifact"] = dict(artifact)
    return report


def summary(report: Mapping[str, Any]) -> dict[str, Any]:
    """Harbor's ``VulnerabilitySummary`` of a report: total, fixable, and a count per severity
    (only the severities that occur, as Harbor lists them)."""
    counts = dict.fromkeys(SEVERITIES, 0)
    total = fixable = 0
    for item in report.get("vulnerabilities", ()):
        total += 1
        if item.get("fix_version"):
            fixable += 1
        severity = item.get("severity")
        counts[severity if severity in counts else "Unknown"] += 1
    return {
        "total": total,
        "fixable": fixable,
        "summary": {name: n for name, n in counts.items() if n},
    }
