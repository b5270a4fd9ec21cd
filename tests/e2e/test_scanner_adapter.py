"""The built-in scanner's adapter face over HTTP, end to end: a ``dockyard serve`` with the
adapter enabled scans images pushed to itself, pulling them over /v2/ with a real credential
(the admin's Basic credential, exchanged for a token as Harbor's robots are). Hostile images,
garbage requests and wrong keys give clear errors, never a 500. SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import tarfile
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.support import scanner_images as images
from tests.support.layer_tars import layer
from tests.support.postgres import postgres_admin_url, temporary_database
from tests.support.server import DockyardServer, free_port

PREFIX = "E2E"
KEY = "adapter-key-0123456789"
MAX_SCAN_BYTES = 64 << 20
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
GZIP_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
VULN_MIME = "application/vnd.security.vulnerability.report; version=1.1"
SBOM_MIME = "application/vnd.security.sbom.report+json; version=1.0"
REQUEST_MIME = "application/vnd.scanner.adapter.scan.request+json; version=1.1"
ERROR_MIME = "application/vnd.scanner.adapter.error+json; version=1.0"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def backend_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DockyardServer]:
    env = {
        "DOCKYARD_SCANNER_ADAPTER_ENABLED": "true",
        "DOCKYARD_SCANNER_ADAPTER_API_KEY": KEY,
        "DOCKYARD_SCANNER_ADAPTER_MAX_SCAN_BYTES": str(MAX_SCAN_BYTES),
    }
    osv = tmp_path_factory.mktemp("osv") / "records.json"
    osv.write_text(json.dumps(images.osv_records(PREFIX)))
    if request.param == "sqlite":
        with DockyardServer(env=env) as running:
            running.cli("vulndb", "import", str(osv))
            yield running
        return
    with (
        temporary_database(postgres_admin_url()) as url,
        DockyardServer(database_url=url, env=env) as running,
    ):
        running.cli("vulndb", "import", str(osv))
        yield running


@pytest.fixture(scope="module")
def registry(backend_server: DockyardServer) -> Iterator[httpx.Client]:
    with backend_server.client() as client:
        yield client


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def push_blob(client: httpx.Client, repo: str, data: bytes) -> str:
    found = digest(data)
    answer = client.post(f"/v2/{repo}/blobs/uploads/", params={"digest": found}, content=data)
    assert answer.status_code == 201, answer.text
    return found


def push_manifest(client: httpx.Client, repo: str, doc: dict[str, Any], tag: str) -> str:
    data = json.dumps(doc).encode()
    answer = client.put(
        f"/v2/{repo}/manifests/{tag}", content=data, headers={"Content-Type": doc["mediaType"]}
    )
    assert answer.status_code == 201, answer.text
    return digest(data)


def push_image(client: httpx.Client, repo: str, layers: list[bytes], tag: str) -> str:
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {}}).encode()
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": push_blob(client, repo, config),
            "size": len(config),
        },
        "layers": [
            {"mediaType": GZIP_LAYER, "digest": push_blob(client, repo, blob), "size": len(blob)}
            for blob in layers
        ],
    }
    return push_manifest(client, repo, doc, tag)


def spec_ok(doc: Any, schema: str) -> bool:
    """``doc`` is valid for the adapter spec's schema (true when the spec is absent here)."""
    problems = images.adapter_spec_problems(doc, schema)
    assert not problems, problems[:5]
    return True


class Adapter:
    def __init__(self, server: DockyardServer) -> None:
        self.server = server
        self.http = httpx.Client(
            base_url=f"{server.url}/scanner/v1",
            headers={"X-ScannerAdapter-API-Key": KEY},
            timeout=60,
        )

    def scan(
        self, repo: str, reference: str, *, authorization: str | None = None
    ) -> httpx.Response:
        creds = base64.b64encode(f"admin:{self.server.admin_password}".encode()).decode()
        body = {
            "registry": {
                "url": self.server.url,
                "authorization": authorization or f"Basic {creds}",
            },
            "artifact": {"repository": repo, "digest": reference, "mime_type": OCI_MANIFEST},
        }
        return self.http.post(
            "/scan", content=json.dumps(body), headers={"Content-Type": REQUEST_MIME}
        )

    def report(self, scan_id: str, accept: str = VULN_MIME, **params: str) -> httpx.Response:
        """The report, polled as Harbor does: 302 + Refresh-After until it is ready."""
        deadline = time.monotonic() + 120
        while True:
            answer = self.http.get(
                f"/scan/{scan_id}/report", headers={"Accept": accept}, params=params
            )
            if answer.status_code != 302:
                return answer
            assert answer.headers["Refresh-After"] == "2"
            assert time.monotonic() < deadline, "the scan did not finish"
            time.sleep(0.2)  # shorter than Refresh-After: the test has nothing else to wait on

    def scan_and_report(self, repo: str, reference: str, **kw: str) -> httpx.Response:
        accepted = self.scan(repo, reference, **kw)
        assert accepted.status_code == 202, accepted.text
        assert spec_ok(accepted.json(), "ScanResponse")
        return self.report(accepted.json()["id"])


@pytest.fixture(scope="module")
def adapter(backend_server: DockyardServer) -> Iterator[Adapter]:
    client = Adapter(backend_server)
    yield client
    client.http.close()


@pytest.fixture(scope="module")
def debian(registry: httpx.Client) -> str:
    return push_image(registry, "library/scan-debian", images.debian_layers(), "1")


@pytest.fixture(scope="module")
def alpine(registry: httpx.Client) -> str:
    return push_image(registry, "library/scan-alpine", images.alpine_layers(), "1")


def test_metadata(adapter: Adapter) -> None:
    answer = adapter.http.get("/metadata")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith(
        "application/vnd.scanner.adapter.metadata+json"
    )
    doc = answer.json()
    assert spec_ok(doc, "ScannerAdapterMetadata")
    assert doc["scanner"]["name"] == "Dockyard"
    kinds = {c["type"]: c for c in doc["capabilities"]}
    assert VULN_MIME in kinds["vulnerability"]["produces_mime_types"]
    assert kinds["sbom"]["produces_mime_types"] == [SBOM_MIME]
    assert OCI_MANIFEST in kinds["vulnerability"]["consumes_mime_types"]
    # the newest imported record's time
    assert (
        doc["properties"]["harbor.scanner-adapter/vulnerability-database-updated-at"]
        == images.MODIFIED
    )


def test_debian_image_report(adapter: Adapter, debian: str) -> None:
    answer = adapter.scan_and_report("library/scan-debian", debian)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == VULN_MIME
    report = answer.json()
    assert spec_ok(report, "HarborVulnerabilityReport")
    assert images.findings_of(report, PREFIX) == images.expected_debian(PREFIX)
    assert report["artifact"]["digest"] == debian
    assert report["severity"] == "Critical"
    assert report["scanner"]["name"] == "Dockyard"


def test_index_resolves_to_linux_amd64(
    adapter: Adapter, registry: httpx.Client, debian: str, alpine: str
) -> None:
    repo = "library/scan-debian"
    # the alpine image copied into this repository, as the first (arm64) entry
    alpine_manifest = registry.get(
        f"/v2/library/scan-alpine/manifests/{alpine}", headers={"Accept": OCI_MANIFEST}
    ).content
    doc = json.loads(alpine_manifest)
    for blob in (doc["config"], *doc["layers"]):
        data = registry.get(f"/v2/library/scan-alpine/blobs/{blob['digest']}").content
        push_blob(registry, repo, data)
    arm = push_manifest(registry, repo, doc, "arm")
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {
                "mediaType": OCI_MANIFEST,
                "digest": arm,
                "size": len(alpine_manifest),
                "platform": {"os": "linux", "architecture": "arm64"},
            },
            {
                "mediaType": OCI_MANIFEST,
                "digest": debian,
                "size": 1,
                "platform": {"os": "linux", "architecture": "amd64"},
            },
        ],
    }
    index["manifests"][1]["size"] = len(
        registry.get(f"/v2/{repo}/manifests/{debian}", headers={"Accept": OCI_MANIFEST}).content
    )
    index_digest = push_manifest(registry, repo, index, "multi")
    report = adapter.scan_and_report(repo, index_digest).json()
    assert images.findings_of(report, PREFIX) == images.expected_debian(PREFIX)


def test_alpine_image_and_its_sboms(adapter: Adapter, alpine: str) -> None:
    accepted = adapter.scan("library/scan-alpine", alpine)
    scan_id = accepted.json()["id"]
    report = adapter.report(scan_id).json()
    assert images.findings_of(report, PREFIX) == images.expected_alpine(PREFIX)
    spdx = adapter.report(scan_id, SBOM_MIME, sbom_media_type="application/spdx+json")
    assert spdx.status_code == 200 and spdx.headers["content-type"] == SBOM_MIME
    doc = spdx.json()
    assert spec_ok(doc, "HarborSbomReport")
    assert doc["media_type"] == "application/spdx+json"
    assert doc["sbom"]["spdxVersion"] == "SPDX-2.3"
    assert {p["name"] for p in doc["sbom"]["packages"]} >= {"musl", "busybox", "libcrypto3"}
    cdx = adapter.report(
        scan_id, SBOM_MIME, sbom_media_type="application/vnd.cyclonedx+json"
    ).json()
    assert cdx["sbom"]["specVersion"] == "1.6"
    purls = {c.get("purl") for c in cdx["sbom"]["components"]}
    assert "pkg:apk/alpine/musl@1.2.4_git20230717-r4?arch=x86_64&distro=alpine-3.19.1" in purls
    missing = adapter.report(scan_id, SBOM_MIME)
    assert missing.status_code == 400 and "sbom_media_type" in missing.json()["error"]["message"]
    assert adapter.report(scan_id, "text/html").status_code == 400


# --- refusals -------------------------------------------------------------------------------


def test_keys(backend_server: DockyardServer) -> None:
    base = f"{backend_server.url}/scanner/v1/metadata"
    assert httpx.get(base).status_code == 401
    wrong = httpx.get(base, headers={"X-ScannerAdapter-API-Key": "nope"})
    assert wrong.status_code == 401 and wrong.headers["content-type"] == ERROR_MIME
    assert "API key" in wrong.json()["error"]["message"]
    assert httpx.get(base, headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
    basic = base64.b64encode(f"harbor:{KEY}".encode()).decode()
    assert httpx.get(base, headers={"Authorization": f"Basic {basic}"}).status_code == 200
    assert httpx.get(base, headers={"Authorization": "Basic %%%"}).status_code == 401


def request_body(url: str, repo: str, reference: str) -> bytes:
    doc = {"registry": {"url": url}, "artifact": {"repository": repo, "digest": reference}}
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"not json", 400, "not JSON"),
        (b"[]", 400, "not a JSON object"),
        (b'{"registry": 1, "artifact": {}}', 400, "must be objects"),
        (
            b'{"registry": {"url": 5}, "artifact": {"repository": "a", "digest": "x"}}',
            400,
            "'registry.url' must be a string",
        ),
        (
            b'{"registry": {"url": "ftp://x"}, "artifact": {"repository": "a/b", "digest": "sha256:'
            + b"0" * 64
            + b'"}}',
            422,
            "http(s) URL",
        ),
        (
            request_body("http://x", "A/../b", "sha256:" + "0" * 64),
            422,
            "not a repository name",
        ),
        (
            request_body("http://x", "a/b", "sha256:zz"),
            422,
            "digest",
        ),
        (b"{" * 100000, 400, "larger than"),
    ],
)
def test_garbage_scan_requests(adapter: Adapter, body: bytes, status: int, message: str) -> None:
    answer = adapter.http.post("/scan", content=body, headers={"Content-Type": REQUEST_MIME})
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == ERROR_MIME
    assert spec_ok(answer.json(), "ErrorResponse")
    assert message in answer.json()["error"]["message"]


def test_unknown_scan_id(adapter: Adapter) -> None:
    for scan_id in ("00000000-0000-0000-0000-000000000000", "x" * 300):
        answer = adapter.http.get(f"/scan/{scan_id}/report")
        assert answer.status_code == 404 and "no scan request" in answer.json()["error"]["message"]


def failed(answer: httpx.Response) -> str:
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == ERROR_MIME
    message: str = answer.json()["error"]["message"]
    assert message.startswith("the scan failed: ")
    return message


def bomb_layer(size: int) -> bytes:
    """A gzip tar of one file of ``size`` zero bytes: a few hundred KiB that inflate to size."""
    info = tarfile.TarInfo("var/lib/dpkg/status")
    info.size = size
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    out = [packer.compress(info.tobuf(format=tarfile.PAX_FORMAT))]
    chunk = bytes(1 << 20)
    for _ in range(size >> 20):
        out.append(packer.compress(chunk))
    out.append(packer.flush())
    return b"".join(out)


def truncated_layer() -> bytes:
    whole = layer(
        [("etc/os-release", images.ALPINE_RELEASE), ("big", b"x" * 100_000)], compress=False
    )
    return gzip.compress(whole[:5000])


def test_hostile_layers(adapter: Adapter, registry: httpx.Client) -> None:
    repo = "library/scan-hostile"
    cases = {
        "not-gzip": ([b"\x00garbage that is no tar" * 50], "layer 0: "),
        "truncated": ([truncated_layer()], "layer 0: the tar is truncated"),
        "bomb": ([bomb_layer(MAX_SCAN_BYTES + (8 << 20))], f"exceeds the {MAX_SCAN_BYTES} bytes"),
    }
    for tag, (layers, expected) in cases.items():
        reference = push_image(registry, repo, layers, tag)
        message = failed(adapter.scan_and_report(repo, reference))
        assert expected in message, (tag, message)
    # '../' and absolute paths are skipped, not followed: nothing outside the root is read
    escape = layer(
        [
            ("../../var/lib/dpkg/status", Path("/var/lib/dpkg/status").read_bytes()),
            ("/etc/os-release", images.ALPINE_RELEASE),
            ("lib/apk/db/installed", images.APK_DB),
        ]
    )
    reference = push_image(registry, repo, [escape], "escape")
    report = adapter.scan_and_report(repo, reference).json()
    assert images.findings_of(report, PREFIX) == images.expected_alpine(PREFIX)  # the OS was read
    assert not any(
        v["vendor_attributes"]["package_type"] == "deb" for v in report["vulnerabilities"]
    )


def test_registry_failures(adapter: Adapter, backend_server: DockyardServer, debian: str) -> None:
    missing = "sha256:" + "1" * 64
    assert "answered 404" in failed(adapter.scan_and_report("library/scan-debian", missing))
    wrong = base64.b64encode(b"admin:wrong-password").decode()
    message = failed(
        adapter.scan_and_report("library/scan-debian", debian, authorization=f"Basic {wrong}")
    )
    assert "refused the credential" in message
    # a registry that is not there
    body = {
        "registry": {"url": f"http://127.0.0.1:{free_port()}"},
        "artifact": {"repository": "library/x", "digest": debian},
    }
    accepted = adapter.http.post("/scan", content=json.dumps(body))
    assert "cannot reach the registry" in failed(adapter.report(accepted.json()["id"]))
    # the server is still whole: the good image still scans
    assert adapter.scan_and_report("library/scan-debian", debian).status_code == 200
