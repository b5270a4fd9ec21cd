"""SBOM on push, end to end: Dockyard A (the registry, ``auto_sbom_generation`` on) scans
with Dockyard B's built-in adapter, which pulls the image from A and answers an SPDX SBOM;
A stores it as a ``harbor.sbom`` accessory, and skopeo pulls that accessory by digest like
any OCI artifact. SQLite and PostgreSQL."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.e2e.test_scan_interop import KEY, _private_project, _push_alpine, _register, _use
from tests.support.adapter_pair import adapter_pair
from tests.support.server import DockyardServer
from tests.support.skopeo import Skopeo

API = "/api/v2.0"
HARBOR_SBOM = "application/vnd.goharbor.harbor.sbom.v1"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def servers(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[DockyardServer, DockyardServer]]:
    with adapter_pair(request.param, tmp_path_factory.mktemp("osv"), "SBM", KEY) as pair:
        yield pair


def _sbom_overview(client: httpx.Client, url: str) -> dict[str, Any]:
    deadline = time.monotonic() + 90
    while True:
        answer = client.get(url, params={"with_sbom_overview": "true"})
        assert answer.status_code == 200, answer.text
        overview: dict[str, Any] = answer.json().get("sbom_overview") or {}
        if overview.get("scan_status") in ("Success", "Error", "Stopped"):
            return overview
        assert time.monotonic() < deadline, overview
        time.sleep(0.3)


def test_sbom_on_push_is_pulled_with_skopeo(
    servers: tuple[DockyardServer, DockyardServer], skopeo: Skopeo, tmp_path: Path
) -> None:
    a, b = servers
    with httpx.Client(base_url=a.url, auth=a.admin_auth, timeout=60) as client:
        project = _private_project(client, auto_sbom_generation="true")
        _use(client, project, _register(client, b, "Bearer", KEY))
        digest, _ = _push_alpine(client, f"{project}/alpine", "3.19")
        overview = _sbom_overview(
            client, f"{API}/projects/{project}/repositories/alpine/artifacts/{digest}"
        )
        assert overview["scan_status"] == "Success", overview
        sbom_digest = overview["sbom_digest"]
        referrers = client.get(f"/v2/{project}/alpine/referrers/{digest}").json()["manifests"]
        assert [(r["digest"], r["artifactType"]) for r in referrers] == [(sbom_digest, HARBOR_SBOM)]

    out = tmp_path / "sbom"
    skopeo.run(
        "copy",
        "--src-tls-verify=false",
        "--src-creds",
        a.admin_creds,
        f"docker://{a.registry}/{project}/alpine@{sbom_digest}",
        f"dir:{out}",
    )
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["artifactType"] == HARBOR_SBOM
    assert manifest["subject"]["digest"] == digest
    layer = manifest["layers"][0]
    assert layer["mediaType"] == "application/spdx+json"
    document = json.loads((out / layer["digest"].split(":", 1)[1]).read_text())
    assert document["spdxVersion"] == "SPDX-2.3"
    names = {package["name"] for package in document["packages"]}
    assert "musl" in names, sorted(names)[:20]
