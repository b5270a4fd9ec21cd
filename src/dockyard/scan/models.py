"""Scanner registrations, project scanners, scan reports and vulnerability records.

One current report per (artifact, scanner, report MIME type) (a unique key, so a rescan
updates the row instead of adding one); vulnerability records are stored once, keyed by
a fingerprint of their content, and linked to the reports that found them, so the
database does not grow with every rescan of the same image.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from dockyard.db.base import Base, BigId, UTCDateTime, utcnow


class ScannerRegistration(Base):
    """Harbor's ``ScannerRegistration``: a scanner adapter Dockyard may call."""

    __tablename__ = "scanner_registration"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    uuid: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    url: Mapped[str] = mapped_column(String(2048))
    auth: Mapped[str] = mapped_column(String(32), default="")
    """``""``, ``Basic``, ``Bearer`` or ``X-ScannerAdapter-API-Key``."""
    access_credential: Mapped[str] = mapped_column(Text, default="")
    """Sealed with the settings secret box (``system/secretbox.py``); never shown."""
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    skip_cert_verify: Mapped[bool] = mapped_column(Boolean, default=False)
    use_internal_addr: Mapped[bool] = mapped_column(Boolean, default=False)
    creation_time: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    update_time: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class ProjectScanner(Base):
    """The scanner a project chose (none: the system default)."""

    __tablename__ = "project_scanner"

    project_id: Mapped[int] = mapped_column(
        ForeignKey("project.project_id", ondelete="CASCADE"), primary_key=True
    )
    registration_id: Mapped[int] = mapped_column(
        ForeignKey("scanner_registration.id", ondelete="CASCADE"), index=True
    )


class ScanReport(Base):
    """The current report of one artifact by one scanner in one MIME type."""

    __tablename__ = "scan_report"
    __table_args__ = (
        UniqueConstraint("artifact_id", "registration_uuid", "mime_type"),
        Index("ix_scan_report_task_id", "task_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    uuid: Mapped[str] = mapped_column(String(64), unique=True)
    """Harbor's ``report_id`` (a new one for every scan)."""
    artifact_id: Mapped[int] = mapped_column(ForeignKey("artifact.id", ondelete="CASCADE"))
    digest: Mapped[str] = mapped_column(String(255))
    registration_uuid: Mapped[str] = mapped_column(String(64), index=True)
    mime_type: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16), default="Pending")
    status_message: Mapped[str] = mapped_column(Text, default="")
    execution_id: Mapped[int | None] = mapped_column(BigInteger)
    task_id: Mapped[int | None] = mapped_column(BigInteger)
    severity: Mapped[str] = mapped_column(String(16), default="")
    summary: Mapped[str | None] = mapped_column(Text)
    """JSON: Harbor's ``VulnerabilitySummary`` (vulnerability reports); for an SBOM report
    ``{"sbom_digest": …}``, the accessory it was stored as."""
    scanner: Mapped[str | None] = mapped_column(Text)
    """JSON: the adapter's ``Scanner`` (name, vendor, version) that wrote the report."""
    content: Mapped[str | None] = mapped_column(Text)
    """JSON: the SBOM report (SBOM reports only; vulnerabilities are linked records)."""
    start_time: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    end_time: Mapped[datetime | None] = mapped_column(UTCDateTime)


class VulnerabilityRecord(Base):
    """One finding as an adapter reported it, stored once whatever number of reports hold it."""

    __tablename__ = "vulnerability_record"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    fingerprint: Mapped[str] = mapped_column(String(64), unique=True)
    """SHA-256 of the record's canonical JSON."""
    cve_id: Mapped[str] = mapped_column(String(255), index=True)
    package: Mapped[str] = mapped_column(String(255))
    package_version: Mapped[str] = mapped_column(String(255))
    fix_version: Mapped[str] = mapped_column(String(255), default="")
    severity: Mapped[str] = mapped_column(String(16))
    cvss_score_v3: Mapped[float | None] = mapped_column(Float, index=True)
    """The adapter's ``preferred_cvss.score_v3`` (the security hub filters and sorts on it)."""
    data: Mapped[str] = mapped_column(Text)
    """JSON: the adapter's ``VulnerabilityItem`` as received (checked, capped)."""


class ReportVulnerability(Base):
    """A report found a record."""

    __tablename__ = "report_vulnerability"

    report_id: Mapped[int] = mapped_column(
        ForeignKey("scan_report.id", ondelete="CASCADE"), primary_key=True
    )
    record_id: Mapped[int] = mapped_column(
        ForeignKey("vulnerability_record.id", ondelete="CASCADE"), primary_key=True, index=True
    )
