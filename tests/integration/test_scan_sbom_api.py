"""SBOMs as Harbor stores them, on SQLite and PostgreSQL: an SBOM scan (asked, or on push
with ``auto_sbom_generation``) pushes a ``harbor.sbom`` accessory whose subject is the
image, found by the referrers API, pulled by digest over ``/v2/``, listed among the
artifact's accessories and as ``sbom_digest`` in ``sbom_overview``; regenerating
replaces it; a report without a document ends the scan in ``Error``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from tests.integration.conftest import make_client, serving
from tests.integration.registry_helpers import push_image
from tests.integration.test_scanners import _project, _register
from tests.support.postgres import postgres_admin_url, temporary_database
from tests.support.scan_stub import StubAdapter, stub_adapter

from dockyard.http.state import AppState
from dockyard.settings import Settings

API = "/api/v2.0"
ADMIN = ("admin", "Harbor12345")
HARBOR_SBOM = "application/vnd.goharbor.harbor.sbom.v1"
VULN_MIME = "application/vnd.security.vulnerability.report; version=1.1"
LEGACY_MIME = "application/vnd.scanner.adapter.vuln.report.harbor+json; version=1.0"
FINAL = ("Success", "Error", "Stopped")


@pytest.fixture(scope="module")
def adapter() -> Iterator[StubAdapter]:
    with stub_adapter() as stub:
        yield stub


@pytest.fixture(scope="module")
async def sbom_app(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory, adapter: StubAdapter
) -> AsyncIterator[Starlette]:
    with contextlib.ExitStack() as stack:
        if settings.effective_database_url.startswith("sqlite"):
            url = f"sqlite:///{tmp_path_factory.mktemp('sbom-db') / 'dockyard.db'}"
        else:
            url = stack.enter_context(temporary_database(postgres_admin_url()))
        configured = settings.model_copy(
            update={
                "database_url": url,
                "data_dir": tmp_path_factory.mktemp("sbom-data"),
                "outbound_timeout_seconds": 2.0,
            }
        )
        async with serving(configured) as application:
            async with make_client(application, ADMIN) as client:
                await _register(client, adapter.url)  # the default scanner
            yield application


@pytest.fixture(scope="module")
def state(sbom_app: Starlette) -> AppState:
    result: AppState = sbom_app.state.dockyard
    return result


@pytest.fixture
async def admin(sbom_app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client(sbom_app, ADMIN) as client:
        yield client


def _url(project: str, repository: str, reference: str) -> str:
    return f"{API}/projects/{project}/repositories/{repository}/artifacts/{reference}"


async def _sbom_overview(admin: httpx.AsyncClient, url: str, within: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        response = await admin.get(url, params={"with_sbom_overview": "true"})
        assert response.status_code == 200, response.text
        overview: dict[str, Any] = response.json().get("sbom_overview") or {}
        if overview.get("scan_status") in FINAL:
            return overview
        assert time.monotonic() < deadline, overview
        await asyncio.sleep(0.1)


async def _referrers(admin: httpx.AsyncClient, repo: str, digest: str) -> list[dict[str, Any]]:
    response = await admin.get(f"/v2/{repo}/referrers/{digest}")
    assert response.status_code == 200, response.text
    manifests: list[dict[str, Any]] = response.json()["manifests"]
    return manifests


async def test_sbom_on_push_is_an_accessory_pullable_by_digest(
    admin: httpx.AsyncClient, state: AppState, adapter: StubAdapter
) -> None:
    project = await _project(state)
    response = await admin.put(
        f"{API}/projects/{project}", json={"metadata": {"auto_sbom_generation": "true"}}
    )
    assert response.status_code == 200, response.text
    adapter.sbom = {"spdxVersion": "SPDX-2.3", "name": "first"}
    digest, _ = await push_image(admin, f"{project}/app", "v1", seed=b"sbom-1")
    url = _url(project, "app", digest)
    overview = await _sbom_overview(admin, url)
    assert overview["scan_status"] == "Success", overview
    sbom_digest = overview["sbom_digest"]
    assert sbom_digest.startswith("sha256:")
    assert overview["scanner"] == {"name": "Stub", "vendor": "Tests", "version": "1"}

    # A referrer of the image, of Harbor's SBOM artifact type.
    referrers = await _referrers(admin, f"{project}/app", digest)
    assert [(r["digest"], r["artifactType"]) for r in referrers] == [(sbom_digest, HARBOR_SBOM)]
    # Pulled by digest as any OCI client does: manifest, then the document's blob.
    manifest = await admin.get(
        f"/v2/{project}/app/manifests/{sbom_digest}",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
    )
    assert manifest.status_code == 200, manifest.text
    body = manifest.json()
    assert hashlib.sha256(manifest.content).hexdigest() == sbom_digest.split(":")[1]
    assert body["subject"]["digest"] == digest and body["artifactType"] == HARBOR_SBOM
    layer = body["layers"][0]
    assert layer["mediaType"] == "application/spdx+json"
    blob = await admin.get(f"/v2/{project}/app/blobs/{layer['digest']}")
    assert blob.status_code == 200
    assert json.loads(blob.content) == {"spdxVersion": "SPDX-2.3", "name": "first"}

    # The artifact API: an accessory of type harbor.sbom; not a repository artifact of its own.
    accessories = (await admin.get(f"{url}/accessories")).json()
    assert [(a["digest"], a["type"]) for a in accessories] == [(sbom_digest, "harbor.sbom")]
    listed = await admin.get(
        f"{API}/projects/{project}/repositories/app/artifacts",
        params={"with_sbom_overview": "true", "with_accessory": "true"},
    )
    assert [a["digest"] for a in listed.json()] == [digest], listed.json()
    assert listed.json()[0]["sbom_overview"]["sbom_digest"] == sbom_digest

    # Regenerating replaces it: a new document, a new accessory, the old one gone.
    adapter.sbom = {"spdxVersion": "SPDX-2.3", "name": "second"}
    response = await admin.post(f"{url}/scan", json={"scan_type": "sbom"})
    assert response.status_code == 202, response.text
    deadline = time.monotonic() + 30
    while True:
        overview = await _sbom_overview(admin, url)
        if overview.get("sbom_digest") not in (None, sbom_digest):
            break
        assert time.monotonic() < deadline, overview
        await asyncio.sleep(0.1)
    second = overview["sbom_digest"]
    referrers = await _referrers(admin, f"{project}/app", digest)
    assert [r["digest"] for r in referrers] == [second]
    gone = await admin.get(f"/v2/{project}/app/manifests/{sbom_digest}")
    assert gone.status_code == 404
    # The SBOM accessory is not an image: pushing it scanned nothing.
    scanned = [b["artifact"]["digest"] for b in adapter.bodies]
    assert sbom_digest not in scanned and second not in scanned


async def test_a_report_without_a_document_is_a_scan_error(
    admin: httpx.AsyncClient, state: AppState, adapter: StubAdapter
) -> None:
    project = await _project(state)
    digest, _ = await push_image(admin, f"{project}/app", "v1", seed=b"sbom-none")
    url = _url(project, "app", digest)
    adapter.sbom = None
    try:
        response = await admin.post(f"{url}/scan", json={"scan_type": "sbom"})
        assert response.status_code == 202, response.text
        overview = await _sbom_overview(admin, url)
    finally:
        adapter.sbom = {"spdxVersion": "SPDX-2.3", "name": "stub"}
    assert overview["scan_status"] == "Error"
    assert "sbom_digest" not in overview
    assert await _referrers(admin, f"{project}/app", digest) == []
    log = await admin.get(f"{url}/scan/{overview['report_id']}/log")
    assert "holds no SBOM document" in log.text


async def test_auto_sbom_generation_takes_true_and_false_only(
    admin: httpx.AsyncClient, state: AppState
) -> None:
    project = await _project(state)
    url = f"{API}/projects/{project}/metadatas/auto_sbom_generation"
    response = await admin.put(url, json={"auto_sbom_generation": "yes"})
    assert response.status_code == 400
    assert response.json()["errors"][0]["code"] == "BAD_REQUEST"
    assert (await admin.put(url, json={"auto_sbom_generation": "false"})).status_code == 200


async def test_an_adapter_of_scanner_api_v1_0(
    admin: httpx.AsyncClient, state: AppState, adapter: StubAdapter
) -> None:
    """Its report v1.0 is asked for and kept as the vulnerability report; an SBOM, which it
    cannot make, ends the scan ``Error`` saying so."""
    project = await _project(state)
    digest, _ = await push_image(admin, f"{project}/old", "v1", seed=b"legacy")
    url = _url(project, "old", digest)
    adapter.legacy = True
    adapter.accepts.clear()
    try:
        assert (await admin.post(f"{url}/scan")).status_code == 202
        deadline = time.monotonic() + 30
        while True:
            shown = await admin.get(url, params={"with_scan_overview": "true"})
            summary = (shown.json().get("scan_overview") or {}).get(VULN_MIME, {})
            if summary.get("scan_status") in FINAL:
                break
            assert time.monotonic() < deadline, summary
            await asyncio.sleep(0.1)
        assert summary["scan_status"] == "Success", summary
        assert summary["summary"]["summary"] == {"High": 1}
        assert summary["scanner"]["name"] == "Old"
        assert adapter.accepts == [LEGACY_MIME]
        response = await admin.post(f"{url}/scan", json={"scan_type": "sbom"})
        assert response.status_code == 202
        overview = await _sbom_overview(admin, url)
    finally:
        adapter.legacy = False
    assert overview["scan_status"] == "Error"
    log = await admin.get(f"{url}/scan/{overview['report_id']}/log")
    assert "does not make" in log.text
