"""The built-in scanner's tables: OSV records, stored once, and their affected packages."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Float, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from dockyard.db.base import Base, BigId, UTCDateTime, utcnow


class VulnRecord(Base):
    """One OSV record (``GHSA-…``, ``DSA-…``, ``CVE-…``), replaced when a newer ``modified``
    is imported. Lists are JSON text."""

    __tablename__ = "vuln_record"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    modified: Mapped[datetime] = mapped_column(UTCDateTime)
    published: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    aliases: Mapped[str] = mapped_column(Text, default="[]")
    summary: Mapped[str] = mapped_column(Text, default="")
    details: Mapped[str] = mapped_column(Text, default="")
    severity: Mapped[str] = mapped_column(String(16), default="Unknown")
    """On Harbor's scale (Unknown…Critical), from CVSS v3 bands or the source's own word."""
    cvss_v3_vector: Mapped[str] = mapped_column(String(256), default="")
    cvss_v3_score: Mapped[float | None] = mapped_column(Float, nullable=True)
    cvss_v2_vector: Mapped[str] = mapped_column(String(256), default="")
    cvss_v2_score: Mapped[float | None] = mapped_column(Float, nullable=True)
    cwe_ids: Mapped[str] = mapped_column(Text, default="[]")
    links: Mapped[str] = mapped_column(Text, default="[]")
    withdrawn: Mapped[bool] = mapped_column(Boolean, default=False)
    import_time: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class VulnAffected(Base):
    """A package one record affects in one ecosystem (``Debian:12``, ``PyPI``…), with its OSV
    ``ranges`` and ``versions`` as JSON. ``package`` is the lookup key (PyPI's normalised)."""

    __tablename__ = "vuln_affected"
    __table_args__ = (Index("ix_vuln_affected_ecosystem_package", "ecosystem", "package"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    vuln_id: Mapped[str] = mapped_column(
        ForeignKey("vuln_record.id", ondelete="CASCADE"), index=True
    )
    ecosystem: Mapped[str] = mapped_column(String(64))
    package: Mapped[str] = mapped_column(String(255))
    ranges: Mapped[str] = mapped_column(Text, default="[]")
    versions: Mapped[str] = mapped_column(Text, default="[]")
    severity: Mapped[str] = mapped_column(String(16), default="")


class AdapterScan(Base):
    """A scan request received by the built-in scanner's adapter face (``POST /scan``).

    The registry credential it came with is never stored: it lives in the running task only.
    ``report`` is the Harbor vulnerability report (JSON) once ``status`` is ``Success``;
    ``message`` says why when it is ``Error``. Rows go after ``expires_at``.
    """

    __tablename__ = "scanner_adapter_scan"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), default="Pending")
    repository: Mapped[str] = mapped_column(String(255), default="")
    digest: Mapped[str] = mapped_column(String(128), default="")
    report: Mapped[str] = mapped_column(Text, default="")
    inventory: Mapped[str] = mapped_column(Text, default="")
    """The inventory as JSON (packages and OS), so an SBOM is built in either format on ask."""
    message: Mapped[str] = mapped_column(Text, default="")
    creation_time: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    update_time: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class VulnDbGeneration(Base):
    """One row: bumped by every import batch that writes, so a process that caches records
    (``service.VulnCache``) knows to drop them."""

    __tablename__ = "vuln_db_generation"

    id: Mapped[int] = mapped_column(primary_key=True)
    generation: Mapped[int] = mapped_column(BigId, default=0)
    update_time: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
