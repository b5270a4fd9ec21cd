"""The adapter client's pure parts: sign-in headers, ``Refresh-After``, capabilities and
report parsing (``dockyard.scan.client``), and the report summary (``scan.reports``)."""

from __future__ import annotations

import json

import pytest

from dockyard.scan import reports
from dockyard.scan.client import (
    SBOM,
    SBOM_MIME,
    VULNERABILITY,
    VULNERABILITY_MIME,
    AdapterError,
    _refresh_after,
    auth_headers,
    capabilities_mimes,
    parse_report,
)
from dockyard.scan.schemas import AdapterMetadata, VulnerabilityItem

OCI = "application/vnd.oci.image.manifest.v1+json"


def test_auth_headers_as_harbor_sends_them() -> None:
    assert auth_headers("", "x") == {}
    assert auth_headers("Bearer", "") == {}
    assert auth_headers("Bearer", "tok") == {"Authorization": "Bearer tok"}
    assert auth_headers("Basic", "me:pw") == {"Authorization": "Basic bWU6cHc="}
    assert auth_headers("X-ScannerAdapter-API-Key", "k") == {"X-ScannerAdapter-API-Key": "k"}


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [
        (None, 1.0),
        ("", 1.0),
        ("5", 5.0),
        ("0", 0.2),
        ("-3", 0.2),
        ("9999", 60.0),
        ("soon", 1.0),
        ("nan", 1.0),
        ("2.5", 2.5),
    ],
)
def test_refresh_after_is_kept_sane(raw: str | None, seconds: float) -> None:
    assert _refresh_after(raw) == seconds


def test_capabilities_decide_the_mime_types() -> None:
    metadata = AdapterMetadata.model_validate(
        {
            "scanner": {"name": "s"},
            "capabilities": [
                {"consumes_mime_types": [OCI], "produces_mime_types": [VULNERABILITY_MIME]},
                {"type": "sbom", "consumes_mime_types": [OCI], "produces_mime_types": [SBOM_MIME]},
            ],
        }
    )
    assert capabilities_mimes(metadata, VULNERABILITY, OCI) == [VULNERABILITY_MIME]
    assert capabilities_mimes(metadata, SBOM, OCI) == [SBOM_MIME]
    assert capabilities_mimes(metadata, VULNERABILITY, "application/vnd.other") == []
    old = AdapterMetadata.model_validate(
        {
            "scanner": {"name": "s"},
            "capabilities": [
                {
                    "consumes_mime_types": [OCI],
                    "produces_mime_types": [
                        "application/vnd.scanner.adapter.vuln.report.harbor+json; version=1.0"
                    ],
                }
            ],
        }
    )
    # An adapter of API v1.0 makes only Harbor's report v1.0 (the same shape): asked for it.
    v1_0 = "application/vnd.scanner.adapter.vuln.report.harbor+json; version=1.0"
    assert capabilities_mimes(old, VULNERABILITY, OCI) == [v1_0]
    assert capabilities_mimes(old, SBOM, OCI) == []


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"[]",
        b'{"vulnerabilities": 3}',
        b'{"vulnerabilities": [{"id": ""}]}',
        b'{"vulnerabilities": [{"id": "x", "package": 5}]}',
        b"[" * 100_000,
    ],
)
def test_garbage_reports_are_adapter_errors(body: bytes) -> None:
    with pytest.raises(AdapterError) as caught:
        parse_report(VULNERABILITY, body)
    assert "GET /scan/{id}/report" in str(caught.value)
    assert not caught.value.transient


def test_reports_parse() -> None:
    report = parse_report(
        VULNERABILITY,
        json.dumps(
            {
                "scanner": {"name": "s", "vendor": "v", "version": "1", "extra": True},
                "vulnerabilities": [{"id": "CVE-1", "package": "p", "version": "1"}],
            }
        ).encode(),
    )
    assert not isinstance(report, str)
    assert report.vulnerabilities is not None and report.vulnerabilities[0].id == "CVE-1"
    assert parse_report(SBOM, b'{"spdxVersion": "SPDX-2.3"}') == '{"spdxVersion":"SPDX-2.3"}'
    with pytest.raises(AdapterError):
        parse_report(SBOM, b'"a string"')


def test_summary_counts_and_overall_severity() -> None:
    items = [
        VulnerabilityItem(id="a", severity="HIGH", fix_version="2"),
        VulnerabilityItem(id="b", severity="low"),
        VulnerabilityItem(id="c", severity="made-up"),
        VulnerabilityItem(id="d", severity="High", fix_version=""),
    ]
    overall, summary = reports.summarise(items)
    assert overall == "High"
    assert summary.total == 4 and summary.fixable == 1
    assert summary.summary == {"High": 2, "Low": 1, "Unknown": 1}
    assert reports.summarise([]) == ("None", reports.schemas.VulnerabilitySummary())
