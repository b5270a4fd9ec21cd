"""The built-in scanner's pure parts: OSV records read, versions matched per ecosystem, the
Harbor report and its summary."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from dockyard.scanner.inventory import OSRelease, Package
from dockyard.scanner.matching import affects, package_key, query_for
from dockyard.scanner.osv import OsvError, Range, parse_record, severity_from_score
from dockyard.scanner.report import Finding, summary, vulnerability_report


def rng(*events: tuple[str, str], kind: str = "ECOSYSTEM") -> Range:
    return Range(kind, tuple(events))


FIXED_AT = rng(("introduced", "0"), ("fixed", "{fix}"))


def fixed_in(fix: str, kind: str = "ECOSYSTEM") -> list[Range]:
    return [rng(("introduced", "0"), ("fixed", fix), kind=kind)]


# --- versions per ecosystem -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("ecosystem", "installed", "fix", "hit"),
    [
        # dpkg: the epoch outranks everything; '~' sorts before anything, even the end
        ("Debian:12", "1:1.0-1", "2.0-1", False),
        ("Debian:12", "1.0-1", "1:0.1-1", True),
        ("Debian:12", "1.0~rc1-1", "1.0-1", True),
        ("Debian:12", "1.0-1", "1.0~rc1-1", False),
        ("Debian:12", "2.36-9+deb12u4", "2.36-9+deb12u10", True),  # numeric, not text, order
        ("Debian:12", "2.36-9+deb12u10", "2.36-9+deb12u10", False),  # the fixed version itself
        # apk: -rN is compared as a number; _rc/_p suffixes
        ("Alpine:v3.19", "1.2.3-r9", "1.2.3-r10", True),
        ("Alpine:v3.19", "1.2.3-r10", "1.2.3-r9", False),
        ("Alpine:v3.19", "1.2.3_rc1-r0", "1.2.3-r0", True),
        ("Alpine:v3.19", "1.2.3_p1-r0", "1.2.3-r0", False),
        # apk's post-release suffixes (Alpine's musl is 1.2.4_git20230717-r4)
        ("Alpine:v3.19", "1.2.4_git20230717-r4", "1.2.4_git20230717-r10", True),
        ("Alpine:v3.19", "1.2.4_git20230717-r4", "1.2.4-r0", False),
        ("Alpine:v3.19", "1.2.4_git5-r0", "1.2.4_p1-r0", True),
        ("Alpine:v3.19", "1.2.4_git5-r0", "1.2.4_git12-r0", True),
        ("Alpine:v3.19", "1.2.4_hg1-r0", "1.2.4_git9-r0", False),
        # rpm: epoch:version-release
        ("Rocky Linux:9", "1:1.0-1.el9", "2.0-1.el9", False),
        ("Rocky Linux:9", "1.0-1.el9", "1.0-2.el9", True),
        # PEP 440: pre-releases sort before the release, post-releases after
        ("PyPI", "2.0.0rc1", "2.0.0", True),
        ("PyPI", "2.0.0.post1", "2.0.0", False),
        ("PyPI", "1!0.1", "2.0", False),  # a PEP 440 epoch
        # semver (npm): a pre-release sorts before its release; build metadata is ignored
        ("npm", "2.0.0-beta.2", "2.0.0", True),
        ("npm", "2.0.0-beta.10", "2.0.0-beta.2", False),
        ("npm", "2.0.0+build.1", "2.0.0", False),
        # Go: module versions with a leading v, pseudo-versions are pre-releases
        ("Go", "v1.2.3", "1.2.4", True),
        ("Go", "v0.0.0-20230101000000-abcdefabcdef", "0.0.1", True),
        # Maven: qualifiers (SNAPSHOT, alpha) sort before the release
        ("Maven", "1.0-SNAPSHOT", "1.0", True),
        ("Maven", "1.0.1", "1.0", False),
    ],
)
def test_version_order_per_ecosystem(ecosystem: str, installed: str, fix: str, hit: bool) -> None:
    assert affects(ecosystem, fixed_in(fix), [], installed) == ((True, fix) if hit else (False, ""))


def test_semver_ranges_of_go_and_npm() -> None:
    ranges = fixed_in("1.5.0", kind="SEMVER")
    assert affects("Go", ranges, [], "1.4.9") == (True, "1.5.0")
    assert affects("Go", ranges, [], "1.5.0") == (False, "")
    assert affects("npm", ranges, [], "1.5.0-rc.1") == (True, "1.5.0")


def test_range_events() -> None:
    two = [rng(("introduced", "1.0"), ("fixed", "1.2"), ("introduced", "2.0"), ("fixed", "2.3"))]
    assert affects("PyPI", two, [], "0.9") == (False, "")
    assert affects("PyPI", two, [], "1.1") == (True, "1.2")
    assert affects("PyPI", two, [], "1.5") == (False, "")
    assert affects("PyPI", two, [], "2.1") == (True, "2.3")
    # events out of order in the record are sorted by version
    shuffled = [
        rng(("fixed", "2.3"), ("introduced", "2.0"), ("fixed", "1.2"), ("introduced", "1.0"))
    ]
    assert affects("PyPI", shuffled, [], "2.1") == (True, "2.3")
    last = [rng(("introduced", "0"), ("last_affected", "1.4"))]
    assert affects("PyPI", last, [], "1.4") == (True, "")  # no fix known
    assert affects("PyPI", last, [], "1.4.1") == (False, "")
    limited = [rng(("introduced", "0"), ("limit", "3.0"))]
    assert affects("PyPI", limited, [], "2.9") == (True, "")
    assert affects("PyPI", limited, [], "3.0") == (False, "")
    # two ranges each fixed: the lowest fix above the version
    both = [*fixed_in("1.9"), *fixed_in("1.7")]
    assert affects("PyPI", both, [], "1.5") == (True, "1.7")


def test_versions_list_and_unreadable_versions() -> None:
    assert affects("npm", [], ["1.0.0", "1.0.1"], "1.0.1") == (True, "")
    assert affects("npm", [], ["1.0.0"], "1.0.2") == (False, "")
    # a version its ecosystem cannot read never falls in a range, nor does a bad bound
    assert affects("npm", fixed_in("2.0.0"), [], "not a version") == (False, "")
    assert affects("npm", fixed_in("garbage!"), [], "1.0.0") == (False, "")
    # an ecosystem not matched by version
    assert affects("crates.io", fixed_in("2.0.0"), [], "1.0.0") == (False, "")


# --- inventory packages as OSV names them ---------------------------------------------------


def test_queries_per_package_type() -> None:
    debian = OSRelease("debian", "12")
    libc = Package("deb", "libc6", "2.36-9+b1", "x", source_name="glibc", source_version="2.36-9")
    q = query_for(libc, debian)
    assert q is not None and (q.ecosystems, q.name, q.version) == (
        ("Debian:12",),
        "glibc",
        "2.36-9",
    )
    alpine = OSRelease("alpine", "3.19.1")
    musl = Package(
        "apk", "musl-utils", "1.2.4-r2", "x", source_name="musl", source_version="1.2.4-r2"
    )
    q = query_for(musl, alpine)
    assert q is not None and (q.ecosystems, q.name) == (("Alpine:v3.19",), "musl")
    rocky = OSRelease("rocky", "9.3")
    q = query_for(Package("rpm", "bash", "5.1-6.el9", "x", epoch=1, source_name="bash"), rocky)
    assert q is not None and (q.ecosystems, q.version) == (("Rocky Linux:9",), "1:5.1-6.el9")
    q = query_for(Package("pypi", "Zope.Interface", "5.0", "x"), None)
    assert q is not None and (q.ecosystems, q.name) == (("PyPI",), "zope-interface")
    q = query_for(Package("npm", "core", "7.0.0", "x", namespace="@babel"), None)
    assert q is not None and q.name == "@babel/core"
    q = query_for(Package("golang", "stdlib", "go1.21.5", "x"), None)
    assert q is not None and (q.ecosystems, q.version) == (("Go",), "1.21.5")
    assert query_for(Package("golang", "example.com/m", "(devel)", "x"), None) is None
    q = query_for(Package("maven", "commons-lang3", "3.12.0", "x", namespace="org.apache"), None)
    assert q is not None and q.name == "org.apache:commons-lang3"
    # a deb package with no known OS is not guessed at
    assert query_for(libc, None) is None
    assert package_key("PyPI", "Foo__Bar.baz") == "foo-bar-baz"


# --- OSV records ----------------------------------------------------------------------------

GOOD: dict[str, Any] = {
    "id": "GHSA-aaaa-bbbb-cccc",
    "modified": "2024-03-01T10:00:00Z",
    "published": "2024-02-01T10:00:00Z",
    "aliases": ["CVE-2024-0001"],
    "summary": "a bug",
    "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}],
    "affected": [
        {
            "package": {"ecosystem": "PyPI", "name": "Foo"},
            "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1.0"}]}],
        }
    ],
    "references": [{"type": "WEB", "url": "https://example.invalid/a"}],
    "database_specific": {"cwe_ids": ["CWE-79", "not-a-cwe"], "severity": "LOW"},
}


def test_a_record_is_read() -> None:
    rec = parse_record(GOOD)
    assert rec.id == "GHSA-aaaa-bbbb-cccc"
    assert rec.modified == datetime(2024, 3, 1, 10, tzinfo=UTC)
    assert (rec.cvss_v3_score, rec.severity) == (9.8, "Critical")  # CVSS wins over LOW
    assert rec.cwe_ids == ("CWE-79",)
    assert rec.links == ("https://example.invalid/a",)
    assert rec.affected[0].ranges == (rng(("introduced", "0"), ("fixed", "1.0")),)


def test_severity_without_cvss() -> None:
    doc = {**GOOD, "severity": None, "database_specific": {"severity": "MODERATE"}}
    assert parse_record(doc).severity == "Medium"
    doc = {**GOOD, "severity": [{"type": "CVSS_V2", "score": "AV:N/AC:L/Au:N/C:P/I:N/A:N"}]}
    rec = parse_record(doc)
    assert (rec.cvss_v2_score, rec.severity) == (5.0, "Medium")
    assert parse_record({"id": "X", "modified": "2024-01-01T00:00:00Z"}).severity == "Unknown"


@pytest.mark.parametrize(
    ("score", "band"),
    [(0.0, "Negligible"), (3.9, "Low"), (4.0, "Medium"), (7.0, "High"), (9.0, "Critical")],
)
def test_cvss_v3_bands(score: float, band: str) -> None:
    assert severity_from_score(score) == band


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"id": 5}, "no 'id'"),
        ({"modified": "yesterday"}, "'modified' is not an RFC 3339 time"),
        ({"affected": {"a": 1}}, "'affected' is not a list"),
        ({"affected": [{"package": {"ecosystem": "PyPI"}}]}, "no ecosystem or name"),
        (
            {
                "affected": [
                    {"package": {"ecosystem": "PyPI", "name": "x"}, "ranges": [{"type": "X"}]}
                ]
            },
            "range type 'X'",
        ),
        (
            {
                "affected": [
                    {
                        "package": {"ecosystem": "PyPI", "name": "x"},
                        "ranges": [{"type": "SEMVER", "events": [{"fixed": "1"}]}],
                    }
                ]
            },
            "no 'introduced' event",
        ),
        ({"aliases": "CVE-1"}, "'aliases' is not a list of strings"),
        ({"severity": [{"type": "CVSS_V3"}]}, "no score string"),
    ],
)
def test_malformed_records_say_why(change: dict[str, Any], reason: str) -> None:
    with pytest.raises(OsvError, match=reason):
        parse_record({**GOOD, **change})
    with pytest.raises(OsvError, match="not a JSON object"):
        parse_record(["a list"])


# --- the report -----------------------------------------------------------------------------


def test_report_and_summary() -> None:
    findings = [
        Finding("CVE-1", "a", "1.0", "1.1", "High", cvss_v3_score=7.5, cvss_v3_vector="CVSS:3.1/x"),
        Finding("CVE-2", "b", "2.0", "", "Critical"),
        Finding("CVE-3", "a", "1.0", "", "Low"),
    ]
    report = vulnerability_report(findings, generated_at=datetime(2026, 1, 1, tzinfo=UTC))
    assert report["severity"] == "Critical"
    assert report["generated_at"] == "2026-01-01T00:00:00.000000Z"
    assert [v["id"] for v in report["vulnerabilities"]] == ["CVE-2", "CVE-1", "CVE-3"]
    assert report["vulnerabilities"][1]["preferred_cvss"] == {
        "score_v3": 7.5,
        "vector_v3": "CVSS:3.1/x",
    }
    assert "preferred_cvss" not in report["vulnerabilities"][0]
    assert summary(report) == {
        "total": 3,
        "fixable": 1,
        "summary": {"Critical": 1, "High": 1, "Low": 1},
    }
    assert vulnerability_report([])["severity"] == "Unknown"
    assert summary(vulnerability_report([])) == {"total": 0, "fixable": 0, "summary": {}}
