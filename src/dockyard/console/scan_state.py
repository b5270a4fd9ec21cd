"""The scan state of an artifact as the console shows it (the vulnerability bar and the SBOM
column), from the stored scan overview the artifact listing reads (docs/scanning.md).

Template globals (``scan_state``, ``sbom_state``); no console imports, so every console
module and ``web.py`` may use it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from dockyard.scan.client import VULNERABILITY_MIME
from dockyard.scan.schemas import NativeReportSummary, SBOMOverview

SEVERITIES = ("Critical", "High", "Medium", "Low", "Negligible", "Unknown")
"""Harbor's severities, most severe first (the bar's order and the filter's choices)."""
RANK = {name: len(SEVERITIES) - i for i, name in enumerate(SEVERITIES)}


@dataclass(frozen=True, slots=True)
class ScanState:
    """What the vulnerability bar shows of an artifact's stored scan overview."""

    status: str
    """``none`` (never scanned), or Harbor's Pending, Running, Success, Error, Stopped."""
    report_id: str = ""
    severity: str = ""
    total: int = 0
    fixable: int = 0
    counts: list[tuple[str, int, int]] = field(default_factory=list)
    """(severity, count, share of the bar in percent), most severe first, counts > 0."""
    percent: int = 0

    @property
    def active(self) -> bool:
        return self.status in ("Pending", "Running")


def scan_state(overview: dict[str, NativeReportSummary] | None) -> ScanState:
    found = (overview or {}).get(VULNERABILITY_MIME)
    if found is None or not found.scan_status:
        return ScanState("none")
    summary = found.summary
    counts: list[tuple[str, int, int]] = []
    total = fixable = 0
    if summary is not None:
        total, fixable = summary.total, summary.fixable
        for severity in SEVERITIES:
            count = summary.summary.get(severity, 0)
            if count > 0:
                counts.append((severity, count, max(1, round(count * 100 / max(total, 1)))))
    return ScanState(
        status=found.scan_status,
        report_id=found.report_id or "",
        severity=found.severity or "",
        total=total,
        fixable=fixable,
        counts=counts,
        percent=found.complete_percent or 0,
    )


def sbom_state(overview: SBOMOverview | None) -> str:
    """``none`` or the SBOM scan's status."""
    if overview is None or not overview.scan_status:
        return "none"
    return overview.scan_status


def expiry_date(expires_at: int | None) -> str:
    """An allowlist's expiry as the date field shows it (blank: never)."""
    return "" if expires_at is None else datetime.fromtimestamp(expires_at, UTC).date().isoformat()
