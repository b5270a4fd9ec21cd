"""Harbor's scanner and scan shapes (swagger definitions of the same names), and the
scanner adapter API v1.2 shapes the client reads (``scanner-adapter-openapi.yaml``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

# --- Harbor's REST API ---------------------------------------------------------------------


class Scanner(BaseModel):
    name: str | None = None
    vendor: str | None = None
    version: str | None = None


class ScannerRegistration(BaseModel):
    uuid: str | None = None
    name: str | None = None
    description: str | None = None
    url: str | None = None
    disabled: bool | None = None
    is_default: bool | None = None
    auth: str | None = None
    access_credential: str | None = None
    """Always blank when shown: the credential is kept sealed and never returned."""
    skip_certVerify: bool | None = None
    use_internal_addr: bool | None = None
    create_time: datetime | None = None
    update_time: datetime | None = None
    adapter: str | None = None
    vendor: str | None = None
    version: str | None = None
    health: str | None = None
    capabilities: dict[str, Any] | None = None


class ScannerRegistrationReq(BaseModel):
    name: str | None = None
    description: str | None = None
    url: str | None = None
    auth: str | None = None
    access_credential: str | None = None
    skip_certVerify: bool | None = None
    use_internal_addr: bool | None = None
    disabled: bool | None = None


class ScannerRegistrationSettings(BaseModel):
    name: str | None = None
    url: str | None = None
    auth: str | None = None
    access_credential: str | None = None


class IsDefault(BaseModel):
    is_default: bool | None = None


class ProjectScanner(BaseModel):
    uuid: str | None = None


class ScanType(BaseModel):
    scan_type: str | None = None


class ScannerCapability(BaseModel):
    type: str | None = None
    consumes_mime_types: list[str] | None = None
    produces_mime_types: list[str] | None = None


class ScannerAdapterMetadata(BaseModel):
    scanner: Scanner | None = None
    capabilities: list[ScannerCapability] | None = None
    properties: dict[str, str] | None = None


class VulnerabilitySummary(BaseModel):
    total: int = 0
    fixable: int = 0
    summary: dict[str, int] = Field(default_factory=dict)


class NativeReportSummary(BaseModel):
    report_id: str | None = None
    scan_status: str | None = None
    severity: str | None = None
    duration: int | None = None
    summary: VulnerabilitySummary | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    complete_percent: int | None = None
    scanner: Scanner | None = None


class SBOMOverview(BaseModel):
    start_time: datetime | None = None
    end_time: datetime | None = None
    scan_status: str | None = None
    sbom_digest: str | None = None
    report_id: str | None = None
    duration: int | None = None
    scanner: Scanner | None = None


# --- the scanner adapter API v1.2 (what adapters answer) -------------------------------------


class _Lenient(BaseModel):
    """Adapters may add fields; unknown ones are ignored, wrong types refused."""

    model_config = ConfigDict(extra="ignore")


class AdapterScanner(_Lenient):
    name: str = Field(default="", max_length=255)
    vendor: str = Field(default="", max_length=255)
    version: str = Field(default="", max_length=255)


class AdapterCapability(_Lenient):
    type: str = "vulnerability"
    """Absent in adapters older than v1.2: they only scan for vulnerabilities."""
    consumes_mime_types: list[str] = Field(default_factory=list)
    produces_mime_types: list[str] = Field(default_factory=list)


class AdapterMetadata(_Lenient):
    scanner: AdapterScanner
    capabilities: list[AdapterCapability]
    properties: dict[str, str] | None = None


class ScanResponse(_Lenient):
    id: str = Field(min_length=1, max_length=255)


class CVSSDetails(_Lenient):
    score_v3: float | None = None
    score_v2: float | None = None
    vector_v3: str | None = None
    vector_v2: str | None = None


class VulnerabilityItem(_Lenient):
    id: str = Field(min_length=1, max_length=255)
    package: str = Field(default="", max_length=255)
    version: str = Field(default="", max_length=255)
    fix_version: str | None = Field(default="", max_length=255)
    severity: str = "Unknown"
    description: str | None = None
    links: list[str] | None = None
    preferred_cvss: CVSSDetails | None = None
    cwe_ids: list[str] | None = None
    vendor_attributes: dict[str, Any] | None = None


class VulnerabilityReport(_Lenient):
    generated_at: datetime | None = None
    scanner: AdapterScanner | None = None
    severity: str | None = None
    vulnerabilities: list[VulnerabilityItem] | None = None


class Stats(BaseModel):
    """Harbor's ``Stats``: a scan all run's scans counted by status."""

    total: int = 0
    completed: int = 0
    metrics: dict[str, int] = Field(default_factory=dict)
    ongoing: bool = False
    trigger: str | None = None


# --- the security hub ---------------------------------------------------------------------


class DangerousCVE(BaseModel):
    cve_id: str | None = None
    severity: str | None = None
    cvss_score_v3: float | None = None
    desc: str | None = None
    package: str | None = None
    version: str | None = None


class DangerousArtifact(BaseModel):
    project_id: int | None = None
    repository_name: str | None = None
    digest: str | None = None
    critical_cnt: int = 0
    high_cnt: int = 0
    medium_cnt: int = 0


class SecuritySummary(BaseModel):
    """Harbor's ``SecuritySummary``."""

    critical_cnt: int = 0
    high_cnt: int = 0
    medium_cnt: int = 0
    low_cnt: int = 0
    none_cnt: int = 0
    unknown_cnt: int = 0
    total_vuls: int = 0
    scanned_cnt: int = 0
    total_artifact: int = 0
    fixable_cnt: int = 0
    dangerous_cves: list[DangerousCVE] | None = None
    dangerous_artifacts: list[DangerousArtifact] | None = None


class SecurityVulnerability(BaseModel):
    """Harbor's ``VulnerabilityItem`` of the security hub (one finding in one artifact)."""

    project_id: int | None = None
    repository_name: str | None = None
    digest: str | None = None
    tags: list[str] | None = None
    cve_id: str | None = None
    severity: str | None = None
    status: str | None = None
    cvss_v3_score: float | None = None
    package: str | None = None
    version: str | None = None
    fixed_version: str | None = None
    desc: str | None = None
    links: list[str] | None = None
