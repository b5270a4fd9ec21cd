"""A scanner adapter stub that answers both capabilities at once: a fixed vulnerability
report and an SPDX SBOM whose document the test chooses (``StubAdapter.sbom``), so the
tests of scan all, SBOM accessories, CVE export and the security hub get finished scans
without pulling images. Records each ``POST /scan`` body."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

VULNERABILITY_MIME = "application/vnd.security.vulnerability.report; version=1.1"
SBOM_MIME = "application/vnd.security.sbom.report+json; version=1.0"
MANIFESTS = [
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
]
METADATA = {
    "scanner": {"name": "Stub", "vendor": "Tests", "version": "1"},
    "capabilities": [
        {
            "type": "vulnerability",
            "consumes_mime_types": MANIFESTS,
            "produces_mime_types": [VULNERABILITY_MIME],
        },
        {
            "type": "sbom",
            "consumes_mime_types": MANIFESTS,
            "produces_mime_types": [SBOM_MIME],
            "additional_attributes": {"sbom_media_types": ["application/spdx+json"]},
        },
    ],
}

LEGACY_METADATA = {
    "scanner": {"name": "Old", "vendor": "Tests", "version": "0.9"},
    "capabilities": [
        {
            "consumes_mime_types": MANIFESTS,
            "produces_mime_types": [
                "application/vnd.scanner.adapter.vuln.report.harbor+json; version=1.0"
            ],
        }
    ],
    "properties": {"harbor.scanner-adapter/scanner-type": "os-package-vulnerability"},
}
"""What an adapter of scanner API v1.0 answers: no capability ``type``, report v1.0 only."""


def vulnerability(cve: str, package: str, severity: str, **extra: Any) -> dict[str, Any]:
    return {"id": cve, "package": package, "version": "1.0", "severity": severity, **extra}


@dataclass
class StubAdapter:
    url: str = ""
    vulnerabilities: list[dict[str, Any]] = field(
        default_factory=lambda: [vulnerability("CVE-2026-1", "openssl", "High")]
    )
    sbom: Any = field(default_factory=lambda: {"spdxVersion": "SPDX-2.3", "name": "stub"})
    """The SBOM document answered (``None``: a report without one)."""
    pending: bool = False
    """Answer 302 for every report (a scan that never finishes)."""
    bodies: list[dict[str, Any]] = field(default_factory=list)
    legacy: bool = False
    """Answer as an adapter of API v1.0 (``LEGACY_METADATA``)."""
    accepts: list[str] = field(default_factory=list)
    """The ``Accept`` of each report request."""

    def report(self, accept: str) -> dict[str, Any]:
        scanner = (LEGACY_METADATA if self.legacy else METADATA)["scanner"]
        if "sbom" in accept:
            doc: dict[str, Any] = {
                "generated_at": "2026-01-01T00:00:00Z",
                "scanner": scanner,
                "media_type": "application/spdx+json",
            }
            if self.sbom is not None:
                doc["sbom"] = self.sbom
            return doc
        severities = [v["severity"] for v in self.vulnerabilities]
        return {
            "generated_at": "2026-01-01T00:00:00Z",
            "scanner": scanner,
            "severity": severities[0] if severities else "None",
            "vulnerabilities": self.vulnerabilities,
        }


@contextlib.contextmanager
def stub_adapter() -> Iterator[StubAdapter]:
    state = StubAdapter()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
            data = b"" if body is None else json.dumps(body).encode()
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path == "/metadata":
                self._send(200, LEGACY_METADATA if state.legacy else METADATA)
                return
            state.accepts.append(self.headers.get("Accept", ""))
            if state.pending:
                self._send(302, None, {"Refresh-After": "1"})
            else:
                self._send(200, state.report(self.headers.get("Accept", "")))

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            state.bodies.append(json.loads(self.rfile.read(length) or b"null"))
            self._send(202, {"id": f"scan-{len(state.bodies)}"})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
