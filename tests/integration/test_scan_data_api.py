"""CVE export and the security hub through the app, on SQLite and PostgreSQL: findings of
scanned images (a stub adapter's reports) exported as a CSV by a job and downloaded by
their owner only, the security summary and the vulnerability search with its filters;
RBAC and bad input with Harbor's error body; each answer checked against the swagger.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import update
from starlette.applications import Starlette
from tests.integration.conftest import make_client, serving
from tests.integration.registry_helpers import push_image
from tests.integration.test_scanners import _member, _project, _register, _user
from tests.support.postgres import postgres_admin_url, temporary_database
from tests.support.scan_stub import StubAdapter, stub_adapter, vulnerability

from dockyard.db.base import utcnow
from dockyard.http.state import AppState
from dockyard.iam.policy import Role
from dockyard.jobs.models import Execution
from dockyard.projects import repository as projects_repo
from dockyard.scan import export, securityhub
from dockyard.settings import Settings

API = "/api/v2.0"
ADMIN = ("admin", "Harbor12345")
PASSWORD = "Passw0rdPassw0rd"
VULN_MIME = "application/vnd.security.vulnerability.report; version=1.1"
EXPORT = {"X-Scan-Data-Type": VULN_MIME}
SKIP = {"X-Dockyard-Contract": "skip"}
FORMULA = "=HYPERLINK(1)"
"""A package name a spreadsheet would run as a formula."""
A_FINDINGS = [
    vulnerability(
        "CVE-2026-0001",
        "openssl",
        "Critical",
        fix_version="3.0.9",
        preferred_cvss={"score_v3": 9.8},
        cwe_ids=["CWE-79"],
    ),
    vulnerability("CVE-2026-0002", "zlib", "High", preferred_cvss={"score_v3": 7.5}),
]
B_FINDINGS = [
    vulnerability("CVE-2026-0002", "zlib", "High", preferred_cvss={"score_v3": 7.5}),
    vulnerability("CVE-2026-0003", FORMULA, "Low", preferred_cvss={"score_v3": 3.1}),
]


@pytest.fixture(scope="module")
def adapter() -> Iterator[StubAdapter]:
    with stub_adapter() as stub:
        yield stub


@pytest.fixture(scope="module")
async def data_app(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Starlette]:
    with contextlib.ExitStack() as stack:
        if settings.effective_database_url.startswith("sqlite"):
            url = f"sqlite:///{tmp_path_factory.mktemp('scandata-db') / 'dockyard.db'}"
        else:
            url = stack.enter_context(temporary_database(postgres_admin_url()))
        configured = settings.model_copy(
            update={
                "database_url": url,
                "data_dir": tmp_path_factory.mktemp("scandata-data"),
                "outbound_timeout_seconds": 2.0,
            }
        )
        async with serving(configured) as application:
            yield application


@pytest.fixture(scope="module")
def state(data_app: Starlette) -> AppState:
    result: AppState = data_app.state.dockyard
    return result


@pytest.fixture
async def admin(data_app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client(data_app, ADMIN) as client:
        yield client


@dataclass
class Scanned:
    project: str
    project_id: int
    a: str
    b: str
    developer: str
    guest: str


async def _scan(admin: httpx.AsyncClient, url: str) -> None:
    response = await admin.post(f"{url}/scan")
    assert response.status_code == 202, response.text
    deadline = time.monotonic() + 30
    while True:
        shown = await admin.get(url, params={"with_scan_overview": "true"})
        status = (shown.json().get("scan_overview") or {}).get(VULN_MIME, {}).get("scan_status")
        if status in ("Success", "Error"):
            assert status == "Success"
            return
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)


@pytest.fixture(scope="module")
async def scanned(data_app: Starlette, state: AppState, adapter: StubAdapter) -> Scanned:
    """One project, two scanned images (``a:v1`` and ``b:v2``), a developer and a guest."""
    async with make_client(data_app, ADMIN) as admin:
        await _register(admin, adapter.url)
        project = await _project(state)
        a, _ = await push_image(admin, f"{project}/a", "v1", seed=b"export-a")
        b, _ = await push_image(admin, f"{project}/b", "v2", seed=b"export-b")
        base = f"{API}/projects/{project}/repositories"
        adapter.vulnerabilities = A_FINDINGS
        await _scan(admin, f"{base}/a/artifacts/{a}")
        adapter.vulnerabilities = B_FINDINGS
        await _scan(admin, f"{base}/b/artifacts/{b}")
    developer, guest = await _user(state), await _user(state)
    await _member(state, project, developer, Role.DEVELOPER)
    await _member(state, project, guest, Role.GUEST)
    async with state.db.read() as session:
        found = await projects_repo.find_project_by_name(session, project)
        assert found is not None
    return Scanned(project, found.project_id, a, b, developer, guest)


# --- CVE export ----------------------------------------------------------------------------


async def _export(client: httpx.AsyncClient, body: dict[str, Any]) -> int:
    response = await client.post(f"{API}/export/cve", json=body, headers=EXPORT)
    assert response.status_code == 200, response.text
    execution_id: int = response.json()["id"]
    deadline = time.monotonic() + 30
    while True:
        shown = await client.get(f"{API}/export/cve/execution/{execution_id}")
        assert shown.status_code == 200, shown.text
        if shown.json()["status"] in ("Success", "Error"):
            assert shown.json()["status"] == "Success", shown.json()
            assert shown.json()["file_present"] is True
            return execution_id
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)


async def _csv(
    client: httpx.AsyncClient, execution_id: int, filename: str = ""
) -> list[dict[str, str]]:
    response = await client.get(f"{API}/export/cve/download/{execution_id}")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    named = filename or f"cve-export-{execution_id}.csv"
    assert response.headers["content-disposition"] == f'attachment; filename="{named}"'
    return list(csv.DictReader(io.StringIO(response.text)))


async def test_cve_export_csv(data_app: Starlette, scanned: Scanned) -> None:
    async with make_client(data_app, (scanned.developer, PASSWORD)) as developer:
        execution_id = await _export(
            developer, {"job_name": "all of it/2026", "projects": [scanned.project_id]}
        )
        rows = await _csv(developer, execution_id, "all_of_it_2026.csv")
        assert [(r["Repository"], r["CVE"], r["Severity"]) for r in rows] == [
            (f"{scanned.project}/a", "CVE-2026-0001", "Critical"),
            (f"{scanned.project}/a", "CVE-2026-0002", "High"),
            (f"{scanned.project}/b", "CVE-2026-0002", "High"),
            (f"{scanned.project}/b", "CVE-2026-0003", "Low"),
        ]
        first = rows[0]
        assert first["Project"] == scanned.project and first["Owner"] == "admin"
        assert first["Artifact Digest"] == scanned.a and first["Tags"] == "v1"
        assert first["Package"] == "openssl" and first["Current Version"] == "1.0"
        assert first["Fixed in version"] == "3.0.9" and first["CVSS3 Score"] == "9.8"
        assert first["CWE Ids"] == "CWE-79"
        listed = (await developer.get(f"{API}/export/cve/executions")).json()["items"]
        assert [item["id"] for item in listed] == [execution_id]
        assert listed[0]["user_name"] == scanned.developer

        # Filters: repositories, tags and CVE ids ({a,b} lists, globs).
        only_b = await _export(developer, {"projects": [scanned.project_id], "repositories": "{b}"})
        assert {r["Repository"] for r in await _csv(developer, only_b)} == {f"{scanned.project}/b"}
        tagged = await _export(developer, {"projects": [scanned.project_id], "tags": "v*"})
        assert len(await _csv(developer, tagged)) == 4
        none = await _export(developer, {"projects": [scanned.project_id], "tags": "{latest}"})
        assert await _csv(developer, none) == []
        one_cve = await _export(
            developer, {"projects": [scanned.project_id], "cveIds": "CVE-2026-0002"}
        )
        assert [r["Repository"] for r in await _csv(developer, one_cve)] == [
            f"{scanned.project}/a",
            f"{scanned.project}/b",
        ]

    # Owner only: another user (even the admin) may not read or download it.
    async with make_client(data_app, ADMIN) as admin:
        for url in (
            f"{API}/export/cve/execution/{execution_id}",
            f"{API}/export/cve/download/{execution_id}",
        ):
            response = await admin.get(url)
            assert response.status_code == 403, response.text
            assert response.json()["errors"][0]["code"] == "FORBIDDEN"
        assert execution_id not in [
            i["id"] for i in (await admin.get(f"{API}/export/cve/executions")).json()["items"]
        ]


async def test_a_spreadsheet_formula_is_not_exported_as_one(
    data_app: Starlette, scanned: Scanned
) -> None:
    async with make_client(data_app, ADMIN) as admin:
        execution_id = await _export(admin, {"projects": [scanned.project_id]})
        rows = await _csv(admin, execution_id)
    assert [r["Package"] for r in rows if r["CVE"] == "CVE-2026-0003"] == ["'" + FORMULA]


@pytest.mark.parametrize(
    ("body", "headers", "status", "words"),
    [
        ({"projects": [1]}, {}, 400, "X-Scan-Data-Type"),
        ({"projects": [1]}, {"X-Scan-Data-Type": "text/plain"}, 400, "X-Scan-Data-Type"),
        ({"projects": []}, EXPORT, 400, "exactly one project"),
        ({"projects": [1, 2]}, EXPORT, 400, "exactly one project"),
        ({"projects": ["1"]}, EXPORT, 400, "projects"),
        ({"projects": [1], "colour": "red"}, EXPORT, 400, "colour"),
        ({"projects": [1], "cveIds": "not a cve!"}, EXPORT, 400, "cveIds"),
        ({"projects": [99999]}, EXPORT, 404, ""),
    ],
)
async def test_bad_export_requests(
    admin: httpx.AsyncClient,
    scanned: Scanned,
    body: dict[str, Any],
    headers: dict[str, str],
    status: int,
    words: str,
) -> None:
    response = await admin.post(f"{API}/export/cve", json=body, headers=headers)
    assert response.status_code == status, response.text
    assert words in response.json()["errors"][0]["message"]


async def test_export_rbac_and_unknown_executions(
    data_app: Starlette, scanned: Scanned, admin: httpx.AsyncClient
) -> None:
    async with make_client(data_app, (scanned.guest, PASSWORD)) as guest:
        response = await guest.post(
            f"{API}/export/cve", json={"projects": [scanned.project_id]}, headers=EXPORT
        )
        assert response.status_code == 403, response.text
    async with make_client(data_app, None) as anonymous:
        response = await anonymous.get(f"{API}/export/cve/executions")
        assert response.status_code == 401
    for url in (f"{API}/export/cve/execution/987654", f"{API}/export/cve/download/987654"):
        response = await admin.get(url)
        assert response.status_code == 404, response.text
        assert response.json()["errors"][0]["code"] == "NOT_FOUND"
    # Not an id: a 400 (Harbor's swagger declares none for this operation; Harbor answers one).
    bad = await admin.get(f"{API}/export/cve/execution/abc", headers=SKIP)
    assert bad.status_code == 400


# --- the security hub ----------------------------------------------------------------------


async def test_security_summary(admin: httpx.AsyncClient, scanned: Scanned) -> None:
    response = await admin.get(f"{API}/security/summary")
    assert response.status_code == 200, response.text
    assert response.json() == {
        "critical_cnt": 1,
        "high_cnt": 2,  # the same record in two images is two findings
        "medium_cnt": 0,
        "low_cnt": 1,
        "none_cnt": 0,
        "unknown_cnt": 0,
        "total_vuls": 4,
        "scanned_cnt": 2,
        "total_artifact": 2,
        "fixable_cnt": 1,
    }
    full = (
        await admin.get(
            f"{API}/security/summary",
            params={"with_dangerous_cve": "true", "with_dangerous_artifact": "true"},
        )
    ).json()
    assert [(c["cve_id"], c["cvss_score_v3"]) for c in full["dangerous_cves"]] == [
        ("CVE-2026-0001", 9.8),
        ("CVE-2026-0002", 7.5),
        ("CVE-2026-0003", 3.1),
    ]
    assert full["dangerous_cves"][0]["package"] == "openssl"
    assert [
        (a["digest"], a["critical_cnt"], a["high_cnt"], a["medium_cnt"])
        for a in full["dangerous_artifacts"]
    ] == [(scanned.a, 1, 1, 0), (scanned.b, 0, 1, 0)]
    bad = await admin.get(  # a 400 Harbor's swagger does not declare for this operation
        f"{API}/security/summary", params={"with_dangerous_cve": "maybe"}, headers=SKIP
    )
    assert bad.status_code == 400, bad.text


async def _vul(admin: httpx.AsyncClient, **params: str) -> tuple[list[dict[str, Any]], int]:
    response = await admin.get(f"{API}/security/vul", params=params)
    assert response.status_code == 200, response.text
    return response.json(), int(response.headers["X-Total-Count"])


async def test_vulnerability_search(admin: httpx.AsyncClient, scanned: Scanned) -> None:
    items, total = await _vul(admin)
    assert total == 4
    assert [(i["cve_id"], i["cvss_v3_score"]) for i in items] == [
        ("CVE-2026-0001", 9.8),
        ("CVE-2026-0002", 7.5),
        ("CVE-2026-0002", 7.5),
        ("CVE-2026-0003", 3.1),
    ]
    first = items[0]
    assert first["digest"] == scanned.a and first["project_id"] == scanned.project_id
    assert first["repository_name"] == f"{scanned.project}/a"
    assert first["package"] == "openssl" and first["version"] == "1.0"
    assert first["fixed_version"] == "3.0.9" and first["severity"] == "Critical"
    assert "tags" not in first

    async def cves(q: str) -> list[str]:
        found, count = await _vul(admin, q=q)
        assert count == len(found)
        return [f"{i['cve_id']}@{i['repository_name'].rsplit('/', 1)[1]}" for i in found]

    assert await cves("cve_id=CVE-2026-0002") == ["CVE-2026-0002@a", "CVE-2026-0002@b"]
    assert await cves("severity=Low") == ["CVE-2026-0003@b"]
    assert await cves("cvss_score_v3=[7~10]") == [
        "CVE-2026-0001@a",
        "CVE-2026-0002@a",
        "CVE-2026-0002@b",
    ]
    assert await cves("cvss_score_v3=[~4]") == ["CVE-2026-0003@b"]
    assert len(await cves(f"project_id={scanned.project_id}")) == 4
    assert await cves("project_id=99999") == []
    assert await cves(f"repository_name={scanned.project}/b") == [
        "CVE-2026-0002@b",
        "CVE-2026-0003@b",
    ]
    assert await cves("package=openssl") == ["CVE-2026-0001@a"]
    assert await cves("tag=v2") == ["CVE-2026-0002@b", "CVE-2026-0003@b"]
    assert await cves(f"digest={scanned.a}") == ["CVE-2026-0001@a", "CVE-2026-0002@a"]
    assert await cves("severity=High,package=zlib") == ["CVE-2026-0002@a", "CVE-2026-0002@b"]

    tagged, _ = await _vul(admin, with_tag="true", q="package=openssl")
    assert tagged[0]["tags"] == ["v1"]
    page, total = await _vul(admin, page="2", page_size="1")
    assert total == 4 and [i["cve_id"] for i in page] == ["CVE-2026-0002"]
    _, tuned = await _vul(admin, tune_count="true")
    assert tuned == 4


async def test_tuned_count_past_its_limit_still_links_the_next_page(
    admin: httpx.AsyncClient, scanned: Scanned, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(securityhub, "TUNE_COUNT_LIMIT", 2)  # 4 findings: past the limit
    pages = []
    url: str | None = f"{API}/security/vul?tune_count=true&page_size=3"
    while url is not None:
        response = await admin.get(url)
        assert response.status_code == 200, response.text
        assert response.headers["X-Total-Count"] == "-1"
        pages.append([i["cve_id"] for i in response.json()])
        nxt = [p for p in response.headers.get("Link", "").split(",") if 'rel="next"' in p]
        url = nxt[0].split(";")[0].strip(" <>") if nxt else None
    assert [len(p) for p in pages] == [3, 1]
    everything, total = await _vul(admin)
    assert total == 4
    assert [c for p in pages for c in p] == [i["cve_id"] for i in everything]


@pytest.mark.parametrize(
    "q",
    ["colour=red", "cvss_score_v3=[high~low]", "repository_name=[a~b]", "tag=~v", "cve_id"],
)
async def test_bad_vulnerability_queries(
    admin: httpx.AsyncClient, scanned: Scanned, q: str
) -> None:
    response = await admin.get(f"{API}/security/vul", params={"q": q})
    assert response.status_code == 400, response.text
    assert response.json()["errors"][0]["code"] == "BAD_REQUEST"


async def test_security_hub_is_for_system_admins(data_app: Starlette, scanned: Scanned) -> None:
    async with make_client(data_app, (scanned.developer, PASSWORD)) as developer:
        response = await developer.get(f"{API}/security/summary")
        assert response.status_code == 403, response.text
        assert response.json()["errors"][0]["code"] == "FORBIDDEN"
        # Harbor answers 403 here too; its swagger does not declare it for this operation.
        response = await developer.get(f"{API}/security/vul", headers=SKIP)
        assert response.status_code == 403, response.text
    async with make_client(data_app, None) as anonymous:
        for url in (f"{API}/security/summary", f"{API}/security/vul"):
            assert (await anonymous.get(url)).status_code == 401


async def test_robots_granted_the_system_resources(
    data_app: Starlette, admin: httpx.AsyncClient, scanned: Scanned
) -> None:
    """A system robot granted security-hub and scan-all read uses them, and nothing more."""
    access = [
        {"resource": "security-hub", "action": "read", "effect": "allow"},
        {"resource": "security-hub", "action": "list", "effect": "allow"},
        {"resource": "scan-all", "action": "read", "effect": "allow"},
    ]
    body = {
        "name": f"hub{scanned.project[-6:]}",
        "level": "system",
        "duration": -1,
        "permissions": [{"kind": "system", "namespace": "/", "access": access}],
    }
    created = await admin.post(f"{API}/robots", json=body)
    assert created.status_code == 201, created.text
    robot = (created.json()["name"], created.json()["secret"])
    async with make_client(data_app, robot) as client:
        assert (await client.get(f"{API}/security/summary")).status_code == 200
        assert (await client.get(f"{API}/security/vul")).status_code == 200
        assert (await client.get(f"{API}/scans/all/metrics")).status_code == 200
        refused = await client.post(
            f"{API}/system/scanAll/schedule", json={"schedule": {"type": "Manual"}}
        )
        assert refused.status_code == 403, refused.text


async def test_a_pruned_export_takes_its_csv_with_it(
    data_app: Starlette, state: AppState, scanned: Scanned
) -> None:
    async with make_client(data_app, ADMIN) as admin:
        old = await _export(admin, {"projects": [scanned.project_id]})
        kept = await _export(admin, {"projects": [scanned.project_id]})
        assert await state.storage.stat(export.file_key(old)) is not None
        # Finished longer ago than job_execution_retention_days (30): the next prune takes it.
        async with state.db.write() as session:
            await session.execute(
                update(Execution)
                .where(Execution.id == old)
                .values(end_time=utcnow() - timedelta(days=40))
            )
        assert state.jobs is not None
        assert await state.jobs.prune() >= 1
        assert await state.storage.stat(export.file_key(old)) is None
        assert (await admin.get(f"{API}/export/cve/execution/{old}")).status_code == 404
        assert (await admin.get(f"{API}/export/cve/execution/{kept}")).json()["file_present"]
        assert await _csv(admin, kept)
