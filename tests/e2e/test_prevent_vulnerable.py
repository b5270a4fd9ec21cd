"""Vulnerability prevention end to end: Dockyard A registers Dockyard B's built-in adapter
(as test_scan_interop.py does), scans an Alpine image whose apk database matches two OSV
records written by the test (``PV-MUSL`` High, ``PV-OPENSSL`` Unknown), and the project's
``prevent_vul`` + ``severity`` refuse its pulls with Harbor's 412 PROJECTPOLICYVIOLATION
until the CVE allowlists (the project's, or the system's reused) exempt the findings.
httpx and skopeo pull; SQLite and PostgreSQL."""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.e2e.test_scan_interop import _artifact, _push_alpine, _register, _use, _wait
from tests.support.adapter_pair import adapter_pair
from tests.support.server import DockyardServer
from tests.support.skopeo import Skopeo

PREFIX = "PV"
KEY = "prevent-adapter-key-0123"
API = "/api/v2.0"
MUSL = f"{PREFIX}-MUSL"
OPENSSL = f"{PREFIX}-OPENSSL"
POLICY = "cannot be pulled due to configured policy in 'Prevent images with vulnerability"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def servers(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[DockyardServer, DockyardServer]]:
    """(A, B): A scans with B's adapter; both reach each other on loopback."""
    with adapter_pair(request.param, tmp_path_factory.mktemp("osv"), PREFIX, KEY) as pair:
        yield pair


@pytest.fixture(scope="module")
def registry(servers: tuple[DockyardServer, DockyardServer]) -> Iterator[httpx.Client]:
    a = servers[0]
    with httpx.Client(base_url=a.url, auth=a.admin_auth, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def skopeo(tmp_path_factory: pytest.TempPathFactory) -> Skopeo:
    found = shutil.which("skopeo")
    if found is None:
        pytest.skip("skopeo is not installed")
    return Skopeo(found, tmp_path_factory.mktemp("skopeo"))


def _project(client: httpx.Client, **metadata: str) -> str:
    name = f"pv{uuid.uuid4().hex[:10]}"
    body = {"project_name": name, "metadata": {"public": "false", **metadata}}
    answer = client.post(f"{API}/projects", json=body)
    assert answer.status_code == 201, answer.text
    return name


def _set(client: httpx.Client, project: str, **body: Any) -> None:
    answer = client.put(f"{API}/projects/{project}", json=body)
    assert answer.status_code == 200, answer.text


def _refusal(client: httpx.Client, ref: str, reference: str) -> str | None:
    """None when the manifest is served (GET and HEAD agree); else Harbor's message."""
    url = f"/v2/{ref}/manifests/{reference}"
    got = client.get(url)
    head = client.head(url)
    assert head.status_code == got.status_code, (head.status_code, got.status_code)
    if got.status_code == 200:
        return None
    assert got.status_code == 412, got.text
    error = got.json()["errors"][0]
    assert error["code"] == "PROJECTPOLICYVIOLATION"
    return str(error["message"])


def _skopeo_pulls(skopeo: Skopeo, server: DockyardServer, ref: str, out: Path) -> bool:
    result = skopeo.run(
        "copy",
        "--src-tls-verify=false",
        "--src-creds",
        server.admin_creds,
        f"docker://{server.registry}/{ref}",
        f"oci:{out}:{uuid.uuid4().hex[:8]}",
        check=False,
    )
    return result.returncode == 0


def test_vulnerable_pulls_are_refused_until_allowlisted(
    servers: tuple[DockyardServer, DockyardServer],
    registry: httpx.Client,
    skopeo: Skopeo,
    tmp_path: Path,
) -> None:
    a, adapter = servers
    project = _project(registry, prevent_vul="true", severity="high")
    _use(registry, project, _register(registry, adapter, "Bearer", KEY))
    ref = f"{project}/alpine"
    digest, _ = _push_alpine(registry, ref, "3.19")

    # Not scanned yet, and a scanner applies: refused as Harbor refuses it.
    message = _refusal(registry, ref, "3.19")
    assert message is not None and "without vulnerability scanning" in message
    assert '"High" or higher' in message

    # The scan itself pulls from A with the scanner's credential: never refused.
    url = _artifact(project, "alpine", digest)
    assert registry.post(f"{url}/scan", json={"scan_type": "vulnerability"}).status_code == 202
    summary = _wait(registry, url)
    assert summary["scan_status"] == "Success", summary
    assert summary["severity"] == "High"

    expected = (
        f'current image with 1 vulnerability {POLICY} severity of "High" or higher from '
        "running.' To continue with pull, please contact your project administrator to "
        "exempt matched vulnerabilities through configuring the CVE allowlist."
    )
    assert _refusal(registry, ref, "3.19") == expected
    assert _refusal(registry, ref, digest) == expected
    assert not _skopeo_pulls(skopeo, a, f"{ref}:3.19", tmp_path / "refused")

    # severity none: the Unknown finding counts too
    _set(registry, project, metadata={"severity": "none"})
    message = _refusal(registry, ref, digest)
    assert message is not None and "with 2 vulnerabilities" in message and '"None"' in message

    # the project's allowlist exempts the High finding: served at "high"
    _set(registry, project, metadata={"severity": "high"})
    _set(registry, project, cve_allowlist={"items": [{"cve_id": MUSL}]})
    assert _refusal(registry, ref, "3.19") is None
    assert _refusal(registry, ref, digest) is None
    assert _skopeo_pulls(skopeo, a, f"{ref}:3.19", tmp_path / "allowed")
    # the Unknown finding ranks below Low (None < Unknown < Low): served at "low" too,
    # refused at "none"
    _set(registry, project, metadata={"severity": "low"})
    assert _refusal(registry, ref, digest) is None
    _set(registry, project, metadata={"severity": "none"})
    assert "with 1 vulnerability" in (_refusal(registry, ref, digest) or "")
    _set(registry, project, metadata={"severity": "high"})

    # expired: counts as empty
    past = int(time.time()) - 60
    _set(registry, project, cve_allowlist={"items": [{"cve_id": MUSL}], "expires_at": past})
    assert _refusal(registry, ref, digest) == expected
    future = int(time.time()) + 3600
    _set(registry, project, cve_allowlist={"items": [{"cve_id": MUSL}], "expires_at": future})
    assert _refusal(registry, ref, digest) is None

    # reuse the system's allowlist instead of the project's
    _set(registry, project, cve_allowlist={"items": []})
    assert _refusal(registry, ref, digest) == expected
    system = {"items": [{"cve_id": MUSL}, {"cve_id": OPENSSL}]}
    assert registry.put(f"{API}/system/CVEAllowlist", json=system).status_code == 200
    assert _refusal(registry, ref, digest) == expected  # not reused yet
    _set(registry, project, metadata={"reuse_sys_cve_allowlist": "true"})
    assert _refusal(registry, ref, digest) is None
    expired = {**system, "expires_at": past}
    assert registry.put(f"{API}/system/CVEAllowlist", json=expired).status_code == 200
    assert _refusal(registry, ref, digest) == expected
    _set(registry, project, metadata={"reuse_sys_cve_allowlist": "false"})

    # a severity above the findings: served; prevent_vul off: served
    _set(registry, project, metadata={"severity": "critical"})
    assert _refusal(registry, ref, digest) is None
    _set(registry, project, metadata={"severity": "high", "prevent_vul": "false"})
    assert _refusal(registry, ref, digest) is None
    assert _skopeo_pulls(skopeo, a, f"{ref}:3.19", tmp_path / "off")


def test_an_artifact_no_scanner_could_scan_is_served(registry: httpx.Client) -> None:
    """A project whose chosen scanner is disabled: nothing will ever scan its artifacts,
    so prevent_vul cannot wait for a report (Harbor's ``IsScannable`` is false)."""
    project = _project(registry, prevent_vul="true", severity="low")
    body = {"name": f"off-{uuid.uuid4().hex[:8]}", "url": "http://127.0.0.1:9/scanner/v1"}
    created = registry.post(f"{API}/scanners", json=body)
    assert created.status_code == 201, created.text
    registration = created.headers["Location"].rsplit("/", 1)[1]
    _use(registry, project, registration)
    answer = registry.put(f"{API}/scanners/{registration}", json={**body, "disabled": True})
    assert answer.status_code == 200, answer.text
    ref = f"{project}/alpine"
    digest, _ = _push_alpine(registry, ref, "1")
    assert _refusal(registry, ref, digest) is None


def test_allowlist_api_refuses_bad_input_and_strangers(
    servers: tuple[DockyardServer, DockyardServer], registry: httpx.Client
) -> None:
    a = servers[0]
    good = {"items": [{"cve_id": "CVE-2024-0001"}], "expires_at": None}
    assert registry.put(f"{API}/system/CVEAllowlist", json=good).status_code == 200
    before = registry.get(f"{API}/system/CVEAllowlist").json()
    assert before["project_id"] == 0 and before["items"] == [{"cve_id": "CVE-2024-0001"}]
    for bad in (
        {"items": [{"cve_id": ""}]},
        {"items": [{"cve_id": "CVE-1"}, {"cve_id": "CVE-1"}]},
        {"items": [{"cve_id": "x" * 300}]},
        {"items": [{"cve_id": "CVE 1; DROP"}]},
        {"items": [{"cve_id": 7}]},
        {"items": {"cve_id": "CVE-1"}},
        {"expires_at": -5},
        {"expires_at": "tomorrow"},
        {"items": [{"cve_id": f"CVE-{n}"} for n in range(10_001)]},
    ):
        answer = registry.put(f"{API}/system/CVEAllowlist", json=bad)
        assert answer.status_code == 400, (bad, answer.text)
        assert answer.json()["errors"][0]["code"] == "BAD_REQUEST"
    assert registry.put(f"{API}/system/CVEAllowlist", content=b"{").status_code == 400
    assert registry.get(f"{API}/system/CVEAllowlist").json() == before

    # RBAC: anyone signed in reads it; only a system administrator writes it
    with httpx.Client(base_url=a.url, timeout=30) as anonymous:
        assert anonymous.get(f"{API}/system/CVEAllowlist").status_code == 401
        assert anonymous.put(f"{API}/system/CVEAllowlist", json=good).status_code == 401
    user = f"u{uuid.uuid4().hex[:8]}"
    password = "Passw0rd-" + uuid.uuid4().hex[:8]
    made = registry.post(
        f"{API}/users",
        json={
            "username": user,
            "password": password,
            "email": f"{user}@example.com",
            "realname": user,
        },
    )
    assert made.status_code == 201, made.text
    project = _project(registry)
    member = {"role_id": 2, "member_user": {"username": user}}  # developer
    assert registry.post(f"{API}/projects/{project}/members", json=member).status_code == 201
    with httpx.Client(base_url=a.url, auth=(user, password), timeout=30) as stranger:
        assert stranger.get(f"{API}/system/CVEAllowlist").json() == before
        assert stranger.put(f"{API}/system/CVEAllowlist", json=good).status_code == 403
        answer = stranger.put(f"{API}/projects/{project}", json={"cve_allowlist": good})
        assert answer.status_code == 403, answer.text
    assert registry.get(f"{API}/system/CVEAllowlist").json() == before
    shown = registry.get(f"{API}/projects/{project}").json()
    assert shown["cve_allowlist"]["items"] == []

    # a project's bad allowlist: 400, nothing stored, on create too
    bad_create = {"project_name": f"pv{uuid.uuid4().hex[:8]}", "cve_allowlist": {"items": [{}]}}
    assert registry.post(f"{API}/projects", json=bad_create).status_code == 400
    assert (
        registry.head(
            f"{API}/projects", params={"project_name": bad_create["project_name"]}
        ).status_code
        == 404
    )
