"""Scanner adapter interop, end to end: Dockyard A (the registry) registers Dockyard B's
built-in adapter (``scanner_adapter_enabled``) as an external scanner over HTTP, with
each auth kind, and scans images pushed to A. B has no copy of them: it pulls each from A
with the short-lived pull token A hands it, so exact findings prove the whole path —
A's adapter client, the credential, B's pull and matching, A's report storage and the
Harbor API that shows it. SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from tests.integration.test_webhooks import _serve as serve_receiver
from tests.support import scanner_images as images
from tests.support.adapter_pair import adapter_pair
from tests.support.server import DockyardServer

PREFIX = "IOP"
KEY = "interop-adapter-key-0123"
API = "/api/v2.0"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
GZIP_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
VULN_MIME = "application/vnd.security.vulnerability.report; version=1.1"
FINAL = ("Success", "Error", "Stopped")
AUTH_KINDS = [
    ("Bearer", KEY),
    ("Basic", f"harbor:{KEY}"),
    ("X-ScannerAdapter-API-Key", KEY),
]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def servers(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[DockyardServer, DockyardServer]]:
    """(A, B): A scans with B's adapter; both reach each other on loopback."""
    with adapter_pair(request.param, tmp_path_factory.mktemp("osv"), PREFIX, KEY) as pair:
        yield pair


@pytest.fixture(scope="module")
def registry(servers: tuple[DockyardServer, DockyardServer]) -> Iterator[httpx.Client]:
    """A's admin, with Basic credentials on every request (the API and /v2/ take them)."""
    a = servers[0]
    with httpx.Client(base_url=a.url, auth=a.admin_auth, timeout=60) as client:
        yield client


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _push_blob(client: httpx.Client, repo: str, data: bytes) -> str:
    found = _digest(data)
    answer = client.post(f"/v2/{repo}/blobs/uploads/", params={"digest": found}, content=data)
    assert answer.status_code == 201, answer.text
    return found


def _push_manifest(client: httpx.Client, repo: str, doc: dict[str, Any], tag: str) -> str:
    data = json.dumps(doc).encode()
    answer = client.put(
        f"/v2/{repo}/manifests/{tag}", content=data, headers={"Content-Type": doc["mediaType"]}
    )
    assert answer.status_code == 201, answer.text
    return _digest(data)


def _push_alpine(client: httpx.Client, repo: str, tag: str) -> tuple[str, int]:
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {}}).encode()
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": _push_blob(client, repo, config),
            "size": len(config),
        },
        "layers": [
            {"mediaType": GZIP_LAYER, "digest": _push_blob(client, repo, blob), "size": len(blob)}
            for blob in images.alpine_layers()
        ],
    }
    return _push_manifest(client, repo, doc, tag), len(json.dumps(doc).encode())


def _private_project(client: httpx.Client, **metadata: str) -> str:
    name = f"p{uuid.uuid4().hex[:10]}"
    body = {"project_name": name, "metadata": {"public": "false", **metadata}}
    answer = client.post(f"{API}/projects", json=body)
    assert answer.status_code == 201, answer.text
    return name


def _register(client: httpx.Client, adapter: DockyardServer, auth: str, credential: str) -> str:
    body = {
        "name": f"dockyard-b-{uuid.uuid4().hex[:8]}",
        "url": f"{adapter.url}/scanner/v1",
        "auth": auth,
        "access_credential": credential,
    }
    ping = client.post(f"{API}/scanners/ping", json=body)
    assert ping.status_code == 200 or not credential.endswith(KEY), ping.text
    answer = client.post(f"{API}/scanners", json=body)
    assert answer.status_code == 201, answer.text
    return answer.headers["Location"].rsplit("/", 1)[1]


def _use(client: httpx.Client, project: str, registration: str) -> None:
    answer = client.put(f"{API}/projects/{project}/scanner", json={"uuid": registration})
    assert answer.status_code == 200, answer.text


def _artifact(project: str, repo: str, reference: str) -> str:
    return f"{API}/projects/{project}/repositories/{repo}/artifacts/{reference}"


def _wait(client: httpx.Client, url: str, flag: str = "with_scan_overview") -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while True:
        found = client.get(url, params={flag: "true"}).json()
        if flag == "with_scan_overview":
            summary = (found.get("scan_overview") or {}).get(VULN_MIME, {})
        else:
            summary = found.get("sbom_overview") or {}
        if summary.get("scan_status") in FINAL:
            return dict(summary)
        assert time.monotonic() < deadline, found
        time.sleep(0.2)


def _findings(client: httpx.Client, url: str) -> images.Expected:
    answer = client.get(f"{url}/additions/vulnerabilities")
    assert answer.status_code == 200, answer.text
    return images.findings_of(answer.json()[VULN_MIME], PREFIX)


@pytest.mark.parametrize(("auth", "credential"), AUTH_KINDS)
def test_a_scans_with_bs_adapter_for_each_auth_kind(
    servers: tuple[DockyardServer, DockyardServer],
    registry: httpx.Client,
    auth: str,
    credential: str,
) -> None:
    _, adapter = servers
    project = _private_project(registry)
    registration = _register(registry, adapter, auth, credential)
    _use(registry, project, registration)
    digest, _ = _push_alpine(registry, f"{project}/alpine", "3.19")
    url = _artifact(project, "alpine", digest)
    answer = registry.post(f"{url}/scan", json={"scan_type": "vulnerability"})
    assert answer.status_code == 202, answer.text
    summary = _wait(registry, url)
    assert summary["scan_status"] == "Success", summary
    assert summary["severity"] == "High"
    assert summary["scanner"]["name"] == "Dockyard"
    assert summary["summary"]["summary"].get("High", 0) >= 1
    assert _findings(registry, url) == images.expected_alpine(PREFIX)
    log = registry.get(f"{url}/scan/{summary['report_id']}/log").text
    assert "vulnerabilities, overall severity High" in log and KEY not in log

    # A rescan replaces the report: a new report id, the same findings.
    assert registry.post(f"{url}/scan").status_code == 202
    again = _wait(registry, url)
    deadline = time.monotonic() + 60
    while again["report_id"] == summary["report_id"] or again["scan_status"] not in FINAL:
        assert time.monotonic() < deadline
        time.sleep(0.2)
        again = _wait(registry, url)
    assert again["scan_status"] == "Success"
    assert _findings(registry, url) == images.expected_alpine(PREFIX)


def test_a_wrong_key_is_a_scan_error_with_the_adapters_words(
    servers: tuple[DockyardServer, DockyardServer], registry: httpx.Client
) -> None:
    _, adapter = servers
    project = _private_project(registry)
    _use(registry, project, _register(registry, adapter, "Bearer", "not-the-key"))
    digest, _ = _push_alpine(registry, f"{project}/alpine", "1")
    url = _artifact(project, "alpine", digest)
    assert registry.post(f"{url}/scan").status_code == 202
    summary = _wait(registry, url)
    assert summary["scan_status"] == "Error"
    log = registry.get(f"{url}/scan/{summary['report_id']}/log").text
    assert "answered 401" in log, log


def test_sbom_index_children_and_scan_on_push(
    servers: tuple[DockyardServer, DockyardServer], registry: httpx.Client
) -> None:
    _, adapter = servers
    project = _private_project(registry, auto_scan="true")
    _use(registry, project, _register(registry, adapter, "X-ScannerAdapter-API-Key", KEY))
    # Scan on push: the image is scanned without asking.
    digest, size = _push_alpine(registry, f"{project}/alpine", "pushed")
    url = _artifact(project, "alpine", digest)
    assert _wait(registry, url)["scan_status"] == "Success"
    assert _findings(registry, url) == images.expected_alpine(PREFIX)

    # An SBOM, through the same adapter.
    assert registry.post(f"{url}/scan", json={"scan_type": "sbom"}).status_code == 202
    sbom = _wait(registry, url, "with_sbom_overview")
    assert sbom["scan_status"] == "Success", sbom

    # An index: its child is scanned (the index gets no report of its own; its overview
    # adds its children's up).
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {
                "mediaType": OCI_MANIFEST,
                "digest": digest,
                "size": size,
                "platform": {"architecture": "amd64", "os": "linux"},
            }
        ],
    }
    index_digest = _push_manifest(registry, f"{project}/alpine", index, "multi")
    before = _wait(registry, url)["report_id"]
    answer = registry.post(f"{_artifact(project, 'alpine', index_digest)}/scan")
    assert answer.status_code == 202
    deadline = time.monotonic() + 60
    while (after := _wait(registry, url))["report_id"] == before:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert after["scan_status"] == "Success"
    # The index shows its children's summaries added up (one child here).
    whole = _wait(registry, _artifact(project, "alpine", index_digest))
    assert whole["scan_status"] == "Success" and whole["complete_percent"] == 100
    assert whole["summary"] == after["summary"] and whole["severity"] == after["severity"]


def test_a_finished_scan_is_the_scanning_completed_webhook_event(
    servers: tuple[DockyardServer, DockyardServer], registry: httpx.Client
) -> None:
    """A's policy hears ``SCANNING_COMPLETED`` with the artifact and the ``scan_overview``
    the API shows, once B's built-in adapter has scanned it."""
    a, adapter = servers
    project = _private_project(registry)
    _use(registry, project, _register(registry, adapter, "Bearer", KEY))
    with contextlib.contextmanager(serve_receiver)(None) as receiver:
        hook = {
            "name": f"h{uuid.uuid4().hex[:8]}",
            "enabled": True,
            "event_types": ["SCANNING_COMPLETED", "SCANNING_FAILED"],
            "targets": [{"type": "http", "address": f"{receiver.url}/scans"}],
        }
        made = registry.post(f"{API}/projects/{project}/webhook/policies", json=hook)
        assert made.status_code == 201, made.text
        digest, _ = _push_alpine(registry, f"{project}/alpine", "3.19")
        url = _artifact(project, "alpine", digest)
        assert registry.post(f"{url}/scan").status_code == 202
        summary = _wait(registry, url)
        assert summary["scan_status"] == "Success", summary
        deadline = time.monotonic() + 60
        while not receiver.wanted("/scans"):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        (delivered,) = receiver.wanted("/scans")
    body = delivered.json()
    assert isinstance(body.pop("occur_at"), int)
    created = body["event_data"]["repository"].pop("date_created")
    assert isinstance(created, int)
    assert body == {
        "type": "SCANNING_COMPLETED",
        "operator": "admin",
        "event_data": {
            "resources": [
                {
                    "digest": digest,
                    "tag": "3.19",
                    "resource_url": f"{urlsplit(a.url).netloc}/{project}/alpine:3.19",
                    "scan_overview": {VULN_MIME: summary},
                }
            ],
            "repository": {
                "name": "alpine",
                "namespace": project,
                "repo_full_name": f"{project}/alpine",
                "repo_type": "private",
            },
        },
    }
    assert summary["severity"] == "High" and summary["summary"]["total"] >= 1
