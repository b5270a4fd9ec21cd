"""Images and OSV records for the built-in scanner's tests, with the findings they must give.

The Debian image carries this machine's own ``/var/lib/dpkg/status`` (hundreds of real
packages) and ``os-release``, a Python dist-info, an npm tree and, when present, Debian's Go
binary ``/usr/bin/skopeo`` (its Go standard library version). The Alpine image has an apk
database written per its format. The OSV records are written here for chosen packages; the
expected findings are computed from ``dpkg-query`` and the files written, not from the
scanner.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.layer_tars import layer, layer_of_files

SKOPEO = Path("/usr/bin/skopeo")
MODIFIED = "2025-01-01T00:00:00Z"
CRITICAL_V3 = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"  # 9.8
HIGH_V3 = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H"  # 7.5
ALPINE_RELEASE = b'NAME="Alpine Linux"\nID=alpine\nVERSION_ID=3.19.1\n'
APK_DB = (
    b"P:musl\nV:1.2.4_git20230717-r4\nA:x86_64\no:musl\n\n"
    b"P:busybox\nV:1.36.1-r15\nA:x86_64\no:busybox\n\n"
    b"P:libcrypto3\nV:3.1.4-r0\nA:x86_64\no:openssl\n\n"
)


@dataclass(frozen=True)
class Installed:
    name: str
    version: str
    source: str
    source_version: str


def dpkg_packages() -> list[Installed]:
    fmt = "${db:Status-Abbrev}\\t${Package}\\t${Version}\\t${source:Package}\\t${source:Version}\\n"
    out = subprocess.run(
        ["dpkg-query", "-W", "-f", fmt], capture_output=True, text=True, check=True
    )
    found = []
    for line in out.stdout.splitlines():
        status, name, version, source, source_version = line.split("\t")
        if status.startswith("ii"):
            found.append(Installed(name, version, source, source_version))
    return found


def go_stdlib_version() -> str:
    match = re.search(rb"\bgo(1\.\d+(?:\.\d+)?)\b", SKOPEO.read_bytes())
    assert match
    return match.group(1).decode()


def debian_layers() -> list[bytes]:
    files = [
        ("/var/lib/dpkg/status", "var/lib/dpkg/status"),
        ("/usr/lib/os-release", "etc/os-release"),
    ]
    if SKOPEO.exists():
        files.append((str(SKOPEO), "usr/bin/skopeo"))
    app = layer(
        [
            (
                "usr/lib/python3/dist-packages/Requests-2.25.0.dist-info/METADATA",
                b"Metadata-Version: 2.1\nName: Requests\nVersion: 2.25.0\n",
            ),
            (
                "usr/lib/python3/dist-packages/foo_bar-2.0.0rc1.dist-info/METADATA",
                b"Metadata-Version: 2.1\nName: foo_bar\nVersion: 2.0.0rc1\n",
            ),
            ("app/node_modules/lodash/package.json", b'{"name":"lodash","version":"4.17.20"}'),
            (
                "app/node_modules/@acme/widget/package.json",
                b'{"name":"@acme/widget","version":"1.0.0-beta.1"}',
            ),
        ]
    )
    return [layer_of_files(files), app]


def alpine_layers() -> list[bytes]:
    return [layer([("etc/os-release", ALPINE_RELEASE), ("lib/apk/db/installed", APK_DB)])]


def _record(
    vid: str,
    ecosystem: str,
    name: str,
    events: list[dict[str, str]],
    *,
    kind: str = "ECOSYSTEM",
    **extra: Any,
) -> dict[str, Any]:
    return {
        "id": vid,
        "modified": MODIFIED,
        "summary": f"test advisory {vid}",
        "affected": [
            {
                "package": {"ecosystem": ecosystem, "name": name},
                "ranges": [{"type": kind, "events": events}],
            }
        ],
        "references": [{"type": "ADVISORY", "url": f"https://osv.invalid/{vid}"}],
        **extra,
    }


def _by_name(name: str) -> Installed:
    return next(p for p in dpkg_packages() if p.name == name)


def _epoch_package() -> Installed:
    return next(p for p in dpkg_packages() if re.match(r"\d+:", p.source_version))


def osv_records(prefix: str) -> list[dict[str, Any]]:
    """Records for the test images; ``prefix`` keeps ids apart between test modules."""
    libc = _by_name("libc6")
    dpkg = _by_name("dpkg")
    epoch = _epoch_package()
    epoch_upstream = epoch.source_version.split(":", 1)[1]
    cvss = lambda vector: {"severity": [{"type": "CVSS_V3", "score": vector}]}  # noqa: E731
    records = [
        # the glibc source: every binary built from it is affected, fixed in a later revision
        _record(
            f"{prefix}-GLIBC-1",
            "Debian:12",
            libc.source,
            [{"introduced": "0"}, {"fixed": libc.source_version + "+1"}],
            **cvss(CRITICAL_V3),
            database_specific={"cwe_ids": ["CWE-787"]},
        ),
        # fixed in exactly the installed version: not affected
        _record(
            f"{prefix}-GLIBC-2",
            "Debian:12",
            libc.source,
            [{"introduced": "0"}, {"fixed": libc.source_version}],
        ),
        # another Debian release: not this image's
        _record(
            f"{prefix}-GLIBC-3",
            "Debian:11",
            libc.source,
            [{"introduced": "0"}, {"fixed": libc.source_version + "+1"}],
        ),
        # last_affected is the installed version: affected, no fix
        _record(
            f"{prefix}-DPKG-1",
            "Debian:12",
            dpkg.source,
            [{"introduced": "0"}, {"last_affected": dpkg.source_version}],
            **cvss(HIGH_V3),
        ),
        # the epoch outranks a higher upstream version: not affected
        _record(
            f"{prefix}-EPOCH-1",
            "Debian:12",
            epoch.source,
            [{"introduced": "0"}, {"fixed": epoch_upstream + "9"}],
        ),
        # withdrawn: never reported
        _record(
            f"{prefix}-WITHDRAWN",
            "Debian:12",
            libc.source,
            [{"introduced": "0"}],
            withdrawn="2025-01-02T00:00:00Z",
        ),
        # PyPI: names normalised (Requests, foo_bar), the ecosystem's own severity word
        _record(
            f"{prefix}-REQUESTS",
            "PyPI",
            "requests",
            [{"introduced": "2.0"}, {"fixed": "2.31.0"}],
            database_specific={"severity": "MODERATE"},
        ),
        _record(f"{prefix}-FOO", "PyPI", "Foo.Bar", [{"introduced": "0"}, {"fixed": "2.0.0"}]),
        # npm: a plain package, a scoped pre-release in a SEMVER range
        _record(
            f"{prefix}-LODASH",
            "npm",
            "lodash",
            [{"introduced": "0"}, {"fixed": "4.17.21"}],
            **cvss(CRITICAL_V3),
        ),
        _record(
            f"{prefix}-WIDGET",
            "npm",
            "@acme/widget",
            [{"introduced": "0"}, {"fixed": "1.0.0"}],
            kind="SEMVER",
            database_specific={"severity": "LOW"},
        ),
        # Alpine: -rN compared as numbers; the origin package is what advisories name
        _record(
            f"{prefix}-MUSL",
            "Alpine:v3.19",
            "musl",
            [{"introduced": "0"}, {"fixed": "1.2.4_git20230717-r10"}],
            **cvss(HIGH_V3),
        ),
        _record(
            f"{prefix}-BUSYBOX",
            "Alpine:v3.19",
            "busybox",
            [{"introduced": "0"}, {"fixed": "1.36.1-r2"}],
        ),
        _record(
            f"{prefix}-OPENSSL",
            "Alpine:v3.19",
            "openssl",
            [{"introduced": "3.0.0-r0"}, {"fixed": "3.1.4-r1"}],
        ),
    ]
    if SKOPEO.exists():
        records.append(
            _record(
                f"{prefix}-GO",
                "Go",
                "stdlib",
                [{"introduced": "0"}, {"fixed": "1.999.0"}],
                kind="SEMVER",
            )
        )
    return records


Expected = set[tuple[str, str, str, str, str]]
"""(id, package, installed version, fix version, severity)"""


def expected_debian(prefix: str) -> Expected:
    libc = _by_name("libc6")
    dpkg = _by_name("dpkg")
    found: Expected = {
        (f"{prefix}-GLIBC-1", p.name, p.version, libc.source_version + "+1", "Critical")
        for p in dpkg_packages()
        if p.source == libc.source
    }
    found |= {
        (f"{prefix}-DPKG-1", p.name, p.version, "", "High")
        for p in dpkg_packages()
        if p.source == dpkg.source
    }
    found |= {
        (f"{prefix}-REQUESTS", "Requests", "2.25.0", "2.31.0", "Medium"),
        (f"{prefix}-FOO", "foo_bar", "2.0.0rc1", "2.0.0", "Unknown"),
        (f"{prefix}-LODASH", "lodash", "4.17.20", "4.17.21", "Critical"),
        (f"{prefix}-WIDGET", "@acme/widget", "1.0.0-beta.1", "1.0.0", "Low"),
    }
    if SKOPEO.exists():
        found.add((f"{prefix}-GO", "stdlib", "v" + go_stdlib_version(), "1.999.0", "Unknown"))
    return found


def expected_alpine(prefix: str) -> Expected:
    return {
        (f"{prefix}-MUSL", "musl", "1.2.4_git20230717-r4", "1.2.4_git20230717-r10", "High"),
        (f"{prefix}-OPENSSL", "libcrypto3", "3.1.4-r0", "3.1.4-r1", "Unknown"),
    }


def findings_of(report: dict[str, Any], prefix: str) -> Expected:
    return {
        (v["id"], v["package"], v["version"], v["fix_version"], v["severity"])
        for v in report["vulnerabilities"]
        if v["id"].startswith(prefix + "-")
    }


# --- Harbor's scanner adapter spec (../shared/harbor-api/scanner-adapter-openapi.yaml) -------

ADAPTER_SPEC = (
    Path(__file__).resolve().parents[2].parent
    / "shared"
    / "harbor-api"
    / "scanner-adapter-openapi.yaml"
)


def adapter_spec_problems(doc: Any, schema: str) -> list[str] | None:
    """Where ``doc`` breaks the spec's ``components.schemas[schema]`` (additional properties
    allowed, as OpenAPI 3.0 says); None when the spec is not on this machine."""
    if not ADAPTER_SPEC.exists():
        return None
    import jsonschema
    import yaml

    spec = yaml.safe_load(ADAPTER_SPEC.read_text())
    wrapper = {"components": spec["components"], "$ref": f"#/components/schemas/{schema}"}
    validator = jsonschema.Draft202012Validator(wrapper)
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(doc)]
