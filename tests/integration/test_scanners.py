"""Scanner registrations, the project scanner and scans through the app, on SQLite and
PostgreSQL: Harbor's shapes (the contract check of every answer), RBAC, credentials sealed
at rest, and every way an adapter can fail — unreachable, hanging, answering garbage,
refusing the scan, never finishing — ending as a scan in ``Error`` (or ``Stopped``), never a
500. The scan that succeeds is tested against a real adapter (``test_scan_interop.py``);
the misbehaving servers here answer only what their failure needs.

The module runs its own app on its own database, so that the first registration is the
default and outbound calls time out after a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from starlette.applications import Starlette
from tests.integration.conftest import make_client, serving
from tests.integration.registry_helpers import OCI_INDEX, OCI_MANIFEST, push_image
from tests.integration.test_webhooks import Receiver
from tests.integration.test_webhooks import _serve as serve_receiver
from tests.support.hostile_http import hostile_server
from tests.support.postgres import postgres_admin_url, temporary_database

from dockyard.http.state import AppState
from dockyard.iam.models import User
from dockyard.iam.passwords import hash_password
from dockyard.iam.policy import Role
from dockyard.jobs.models import Execution
from dockyard.projects import repository as projects_repo
from dockyard.projects.models import ProjectMember
from dockyard.projects.service import create_project
from dockyard.registry.models import Artifact
from dockyard.scan import reports
from dockyard.scan.client import VULNERABILITY_MIME
from dockyard.scan.models import (
    ProjectScanner,
    ReportVulnerability,
    ScannerRegistration,
    VulnerabilityRecord,
)
from dockyard.scan.schemas import AdapterScanner, VulnerabilityItem
from dockyard.settings import Settings
from dockyard.system import secretbox

API = "/api/v2.0"
PASSWORD = "Passw0rdPassw0rd"
ADMIN = ("admin", "Harbor12345")
FINAL = ("Success", "Error", "Stopped")
SKIP = {"X-Dockyard-Contract": "skip"}
"""For answers right for Dockyard that Harbor's swagger does not declare for the operation
(a 400 from ``updateScanner``, a 409 from ``createScanner``…: Harbor answers those too)."""


# --- the module's own app ----------------------------------------------------------------


@pytest.fixture(scope="module")
async def scan_app(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Starlette]:
    with contextlib.ExitStack() as stack:
        if settings.effective_database_url.startswith("sqlite"):
            url = f"sqlite:///{tmp_path_factory.mktemp('scan-db') / 'dockyard.db'}"
        else:
            url = stack.enter_context(temporary_database(postgres_admin_url()))
        configured = settings.model_copy(
            update={
                "database_url": url,
                "data_dir": tmp_path_factory.mktemp("scan-data"),
                "outbound_timeout_seconds": 1.0,
                "scan_timeout_seconds": 4.0,
            }
        )
        async with serving(configured) as application:
            yield application


@pytest.fixture(scope="module")
def scan_state(scan_app: Starlette) -> AppState:
    result: AppState = scan_app.state.dockyard
    return result


@pytest.fixture
async def admin(scan_app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client(scan_app, ADMIN) as client:
        yield client


@pytest.fixture(scope="module")
def closed_port() -> str:
    """A loopback URL where nothing listens (an adapter that disappeared)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# --- a misbehaving adapter ---------------------------------------------------------------

METADATA = {
    "scanner": {"name": "Stub", "vendor": "Tests", "version": "0"},
    "capabilities": [
        {
            "type": "vulnerability",
            "consumes_mime_types": ["application/vnd.oci.image.manifest.v1+json"],
            "produces_mime_types": [VULNERABILITY_MIME],
        }
    ],
}


@dataclass
class Misbehaving:
    """Answers ``/metadata`` well and then fails as ``scan``/``report`` say:
    ``scan`` a (status, body) for ``POST /scan``; ``report`` one for the report (302s
    carry ``Refresh-After: 1``). Records each request's path and headers."""

    scan: tuple[int, Any] = (202, {"id": "s1"})
    report: tuple[int, Any] = (302, None)
    url: str = ""
    seen: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    bodies: list[Any] = field(default_factory=list)


@contextlib.contextmanager
def misbehaving(**kw: Any) -> Iterator[Misbehaving]:
    state = Misbehaving(**kw)

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
            state.seen.append(("GET", self.path, dict(self.headers)))
            if self.path == "/metadata":
                self._send(200, METADATA)
            else:
                status, body = state.report
                self._send(status, body, {"Refresh-After": "1"} if status == 302 else None)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            state.bodies.append(json.loads(self.rfile.read(length) or b"null"))
            state.seen.append(("POST", self.path, dict(self.headers)))
            self._send(*state.scan)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


# --- helpers -----------------------------------------------------------------------------


def _uid(stem: str) -> str:
    return f"{stem}{uuid.uuid4().hex[:10]}"


async def _register(admin: httpx.AsyncClient, url: str, **extra: Any) -> str:
    body = {"name": _uid("scanner-"), "url": url, **extra}
    response = await admin.post(f"{API}/scanners", json=body)
    assert response.status_code == 201, response.text
    return response.headers["Location"].rsplit("/", 1)[1]


async def _project(state: AppState, *, public: bool = False) -> str:
    name = _uid("p")
    async with state.db.write() as session:
        await create_project(session, name, owner_id=1, public=public)
    return name


async def _user(state: AppState) -> str:
    username = _uid("u")
    async with state.db.write() as session:
        session.add(User(username=username, password=hash_password(PASSWORD)))
    return username


async def _member(state: AppState, project: str, username: str, role: Role) -> None:
    async with state.db.write() as session:
        found = await projects_repo.find_project_by_name(session, project)
        user = await session.scalar(select(User).where(User.username == username))
        assert found is not None and user is not None
        session.add(
            ProjectMember(
                project_id=found.project_id,
                entity_id=user.user_id,
                entity_type="u",
                role=int(role),
            )
        )


async def _use_scanner(admin: httpx.AsyncClient, project: str, registration: str) -> None:
    response = await admin.put(
        f"{API}/projects/{project}/scanner",
        json={"uuid": registration},
        headers={"X-Is-Resource-Name": "true"},
    )
    assert response.status_code == 200, response.text


def _artifact_url(project: str, repository: str, reference: str) -> str:
    return f"{API}/projects/{project}/repositories/{repository}/artifacts/{reference}"


async def _overview(admin: httpx.AsyncClient, url: str) -> dict[str, Any]:
    response = await admin.get(url, params={"with_scan_overview": "true"})
    assert response.status_code == 200, response.text
    overview: dict[str, Any] = response.json().get("scan_overview") or {}
    return overview.get(VULNERABILITY_MIME, {})


async def _wait_scan(admin: httpx.AsyncClient, url: str, within: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        summary = await _overview(admin, url)
        if summary.get("scan_status") in FINAL:
            return summary
        assert time.monotonic() < deadline, summary
        await asyncio.sleep(0.1)


async def _scanned_image(
    state: AppState, admin: httpx.AsyncClient, adapter_url: str
) -> tuple[str, str]:
    """A project using a new registration of ``adapter_url`` and an image in it; the
    artifact's API URL and the registration's uuid."""
    project = await _project(state)
    registration = await _register(admin, adapter_url)
    await _use_scanner(admin, project, registration)
    digest, _ = await push_image(admin, f"{project}/app", "v1")
    return _artifact_url(project, "app", digest), registration


async def _log(admin: httpx.AsyncClient, url: str, report_id: str) -> str:
    response = await admin.get(f"{url}/scan/{report_id}/log")
    assert response.status_code == 200, response.text
    return response.text


# --- registrations -----------------------------------------------------------------------


async def test_registrations_keep_harbor_shapes_and_one_default(
    admin: httpx.AsyncClient, scan_state: AppState
) -> None:
    first = await _register(admin, "http://127.0.0.1:1/", auth="Bearer", access_credential="tok-1")
    second = await _register(
        admin,
        "https://scanner.example.com",
        auth="Basic",
        access_credential="user:pw",
        description="second",
        skip_certVerify=True,
        use_internal_addr=True,
    )
    shown = (await admin.get(f"{API}/scanners/{second}")).json()
    assert shown["url"] == "https://scanner.example.com"
    assert shown["auth"] == "Basic" and shown["access_credential"] == ""
    assert shown["skip_certVerify"] is True and shown["use_internal_addr"] is True
    assert shown["is_default"] is False and shown["disabled"] is False
    listing = await admin.get(f"{API}/scanners", params={"sort": "name", "page_size": 100})
    assert int(listing.headers["X-Total-Count"]) >= 2
    defaults = [s["uuid"] for s in listing.json() if s["is_default"]]
    assert len(defaults) == 1

    # One default at a time.
    assert (await admin.patch(f"{API}/scanners/{second}", json={"is_default": True})).is_success
    listing = await admin.get(f"{API}/scanners", params={"q": "is_default=true"})
    assert [s["uuid"] for s in listing.json()] == [second]
    project = await _project(scan_state)
    found = await admin.get(f"{API}/projects/{project}/scanner")
    assert found.json()["uuid"] == second  # the default serves projects that chose none

    # An update without a credential keeps the sealed one.
    async with scan_state.db.read() as session:
        before = await session.scalar(
            select(ScannerRegistration.access_credential).where(ScannerRegistration.uuid == first)
        )
    body = {"name": _uid("renamed-"), "url": "http://127.0.0.1:2", "auth": "Bearer"}
    assert (await admin.put(f"{API}/scanners/{first}", json=body)).status_code == 200
    async with scan_state.db.read() as session:
        row = await session.scalar(
            select(ScannerRegistration).where(ScannerRegistration.uuid == first)
        )
        assert row is not None
        assert row.access_credential == before and row.url == "http://127.0.0.1:2"

    # The default cannot be disabled; a disabled one is no candidate.
    body = {"name": "x" + _uid(""), "url": "http://127.0.0.1:2", "disabled": True}
    refused = await admin.put(f"{API}/scanners/{second}", json=body, headers=SKIP)
    assert refused.status_code == 400
    third = await _register(admin, "http://127.0.0.1:3", disabled=True)
    candidates = await admin.get(
        f"{API}/projects/{project}/scanner/candidates", params={"page_size": 100}
    )
    assert third not in {s["uuid"] for s in candidates.json()}
    refused = await admin.put(f"{API}/projects/{project}/scanner", json={"uuid": third})
    assert refused.status_code == 400

    deleted = await admin.delete(f"{API}/scanners/{third}")
    assert deleted.status_code == 200 and deleted.json()["uuid"] == third
    assert (await admin.get(f"{API}/scanners/{third}")).status_code == 404


async def test_credentials_are_sealed_at_rest_and_never_shown(
    admin: httpx.AsyncClient, scan_state: AppState
) -> None:
    for auth, secret in (
        ("Bearer", "bearer-secret-1234"),
        ("Basic", "scanuser:basic-secret-1234"),
        ("X-ScannerAdapter-API-Key", "api-key-secret-1234"),
    ):
        registration = await _register(
            admin, "http://127.0.0.1:4", auth=auth, access_credential=secret
        )
        async with scan_state.db.read() as session:
            row = await session.scalar(
                select(ScannerRegistration).where(ScannerRegistration.uuid == registration)
            )
            assert row is not None
            assert secret not in row.access_credential and row.access_credential
            assert await secretbox.open_sealed(session, row.access_credential) == secret
        for answer in (
            await admin.get(f"{API}/scanners/{registration}"),
            await admin.get(f"{API}/scanners", params={"page_size": 100}),
        ):
            assert secret not in answer.text


@pytest.mark.parametrize(
    "body",
    [
        {"url": "http://127.0.0.1:5"},
        {"name": "", "url": "http://127.0.0.1:5"},
        {"name": "n", "url": ""},
        {"name": "n", "url": "ftp://127.0.0.1/"},
        {"name": "n", "url": "not a url"},
        {"name": "n", "url": "http://169.254.169.254/"},
        {"name": "n", "url": "http://metadata.google.internal/"},
        {"name": "n", "url": "http://user:pw@127.0.0.1:5/"},
        {"name": "n", "url": "http://127.0.0.1:5", "auth": "Digest", "access_credential": "x"},
        {"name": "n", "url": "http://127.0.0.1:5", "auth": "Bearer"},
        {"name": "n", "url": "http://127.0.0.1:5", "auth": "Basic", "access_credential": "nocolon"},
        {"name": "n", "url": "http://127.0.0.1:5", "auth": "Bearer", "access_credential": "a\nb"},
        {"name": "n" * 300, "url": "http://127.0.0.1:5"},
        {"name": "n", "url": "http://127.0.0.1:5", "description": "nul\u0000"},
        {"name": "n", "url": "http://127.0.0.1:5", "disabled": "maybe"},
    ],
)
async def test_bad_registrations_are_refused(
    admin: httpx.AsyncClient, scan_state: AppState, body: dict[str, Any]
) -> None:
    async with scan_state.db.read() as session:
        before = await session.scalar(select(func.count()).select_from(ScannerRegistration))
    response = await admin.post(f"{API}/scanners", json=body)
    assert response.status_code == 400, response.text
    async with scan_state.db.read() as session:
        after = await session.scalar(select(func.count()).select_from(ScannerRegistration))
    assert after == before


async def test_other_bad_input(admin: httpx.AsyncClient, scan_state: AppState) -> None:
    name = _uid("dup-")
    body = {"name": name, "url": "http://127.0.0.1:6"}
    assert (await admin.post(f"{API}/scanners", json=body)).status_code == 201
    assert (await admin.post(f"{API}/scanners", json=body, headers=SKIP)).status_code == 409
    missing = "0" * 36
    assert (await admin.get(f"{API}/scanners/{missing}")).status_code == 404
    assert (await admin.get(f"{API}/scanners/{'x' * 5000}")).status_code == 404
    assert (await admin.delete(f"{API}/scanners/{missing}")).status_code == 404
    assert (await admin.post(f"{API}/scanners", content=b"{not json")).status_code == 400
    surrogate = b'{"name": "bad\\ud800name", "url": "http://127.0.0.1:5"}'
    assert (await admin.post(f"{API}/scanners", content=surrogate)).status_code == 400
    project = await _project(scan_state)
    refused = await admin.put(f"{API}/projects/{project}/scanner", json={"uuid": missing})
    assert refused.status_code == 400
    digest, _ = await push_image(admin, f"{project}/app", "v1")
    url = _artifact_url(project, "app", digest)
    for sent in ({"scan_type": "bogus"}, {"scan_type": 7}, "[]"):
        kwargs: dict[str, Any] = {"content": sent} if isinstance(sent, str) else {"json": sent}
        assert (await admin.post(f"{url}/scan", **kwargs)).status_code == 400
    assert (await admin.get(f"{url}/scan/{missing}/log")).status_code == 404
    nowhere = _artifact_url(project, "app", "sha256:" + "0" * 64)
    assert (
        await admin.post(f"{nowhere}/scan", json={"scan_type": "vulnerability"})
    ).status_code == 404


async def test_rbac(scan_app: Starlette, scan_state: AppState, admin: httpx.AsyncClient) -> None:
    registration = await _register(admin, "http://127.0.0.1:7")
    project = await _project(scan_state)
    chief, developer, guest, outsider = [await _user(scan_state) for _ in range(4)]
    await _member(scan_state, project, chief, Role.PROJECT_ADMIN)
    await _member(scan_state, project, developer, Role.DEVELOPER)
    await _member(scan_state, project, guest, Role.GUEST)
    scanner_url = f"{API}/projects/{project}/scanner"
    digest, _ = await push_image(admin, f"{project}/app", "v1")
    scan_url = _artifact_url(project, "app", digest) + "/scan"

    async with make_client(scan_app) as anon:
        assert (await anon.get(f"{API}/scanners")).status_code == 401
    async with make_client(scan_app, (chief, PASSWORD)) as client:
        assert (await client.get(f"{API}/scanners")).status_code == 403
        body = {"name": _uid("no-"), "url": "http://127.0.0.1:7"}
        assert (await client.post(f"{API}/scanners", json=body)).status_code == 403
        assert (await client.delete(f"{API}/scanners/{registration}")).status_code == 403
        assert (await client.get(scanner_url)).status_code == 200
        assert (await client.get(scanner_url + "/candidates")).status_code == 200
        put = await client.put(scanner_url, json={"uuid": registration})
        assert put.status_code == 200
    async with make_client(scan_app, (developer, PASSWORD)) as client:
        assert (await client.get(scanner_url)).status_code == 200
        put = await client.put(scanner_url, json={"uuid": registration})
        assert put.status_code == 403
        assert (await client.post(scan_url, json={"scan_type": "vulnerability"})).status_code == 403
    async with make_client(scan_app, (guest, PASSWORD)) as client:
        assert (await client.get(scanner_url)).status_code == 200
        assert (await client.get(scanner_url + "/candidates")).status_code == 403
    async with make_client(scan_app, (outsider, PASSWORD)) as client:
        assert (await client.get(scanner_url)).status_code == 404
    async with make_client(scan_app, (chief, PASSWORD)) as client:
        assert (await client.post(scan_url, json={"scan_type": "vulnerability"})).status_code == 202


# --- adapters that cannot be used ----------------------------------------------------------


async def test_ping_and_metadata_of_unusable_adapters_are_400s(
    admin: httpx.AsyncClient, closed_port: str
) -> None:
    targets = [closed_port]
    with hostile_server("endless") as endless, hostile_server("drip-headers") as hanging:
        targets += [endless.url, hanging.url]
        for url in targets:
            started = time.monotonic()
            response = await admin.post(f"{API}/scanners/ping", json={"name": "p", "url": url})
            assert response.status_code == 400, response.text
            assert "GET /metadata" in response.json()["errors"][0]["message"]
            assert time.monotonic() - started < 10
        registration = await _register(admin, hanging.url)
        response = await admin.get(f"{API}/scanners/{registration}/metadata", headers=SKIP)
        assert response.status_code == 400
        assert "no answer within" in response.text
    refused = await admin.post(
        f"{API}/scanners/ping", json={"name": "p", "url": "http://169.254.169.254/"}
    )
    assert refused.status_code == 400


async def test_ping_of_a_working_metadata_endpoint(admin: httpx.AsyncClient) -> None:
    with misbehaving() as adapter:
        body = {
            "name": "p",
            "url": adapter.url,
            "auth": "X-ScannerAdapter-API-Key",
            "access_credential": "k-123",
        }
        assert (await admin.post(f"{API}/scanners/ping", json=body)).status_code == 200
        _, path, headers = adapter.seen[-1]
        assert path == "/metadata" and headers["X-ScannerAdapter-API-Key"] == "k-123"
        registration = await _register(admin, adapter.url, auth="Basic", access_credential="me:pw")
        metadata = await admin.get(f"{API}/scanners/{registration}/metadata")
        assert metadata.status_code == 200
        assert metadata.json()["scanner"]["name"] == "Stub"
        assert adapter.seen[-1][2]["Authorization"] == "Basic bWU6cHc="


@pytest.mark.parametrize("failure", ["disappeared", "garbage", "hangs"])
async def test_scans_by_unusable_adapters_end_in_error(
    admin: httpx.AsyncClient, scan_state: AppState, closed_port: str, failure: str
) -> None:
    with contextlib.ExitStack() as stack:
        if failure == "disappeared":
            url, expected = closed_port, "GET /metadata"
        elif failure == "garbage":
            url = stack.enter_context(hostile_server("endless")).url
            expected = "longer than"
        else:
            url = stack.enter_context(hostile_server("drip-headers")).url
            expected = "no answer within"
        artifact, _ = await _scanned_image(scan_state, admin, url)
        response = await admin.post(f"{artifact}/scan", json={"scan_type": "vulnerability"})
        assert response.status_code == 202
        summary = await _wait_scan(admin, artifact)
    assert summary["scan_status"] == "Error"
    assert "summary" not in summary
    log = await _log(admin, artifact, summary["report_id"])
    assert expected in log, log


async def test_the_adapters_own_message_is_the_scan_error(
    admin: httpx.AsyncClient, scan_state: AppState
) -> None:
    refusal = (422, {"error": {"message": "cannot pull that artifact, sorry"}})
    with misbehaving(scan=refusal) as adapter:
        artifact, _ = await _scanned_image(scan_state, admin, adapter.url)
        assert (await admin.post(f"{artifact}/scan")).status_code == 202
        summary = await _wait_scan(admin, artifact)
        assert summary["scan_status"] == "Error"
        log = await _log(admin, artifact, summary["report_id"])
        assert "cannot pull that artifact, sorry" in log
        # The scan request carried the registry's URL and a pull-only token.
        (sent,) = adapter.bodies
        assert sent["artifact"]["repository"].endswith("/app")
        assert sent["registry"]["authorization"].startswith("Bearer ")
        assert sent["enabled_capabilities"] == [
            {"type": "vulnerability", "produces_mime_types": [VULNERABILITY_MIME]}
        ]
        token = sent["registry"]["authorization"].split(" ", 1)[1]
        claims = scan_state.tokens.verify(token)
        # pull, and scanner-pull (Harbor's scanner robot): the pull policies let it through
        assert [(s.type, s.name, sorted(s.actions)) for s in claims.access] == [
            ("repository", sent["artifact"]["repository"], ["pull", "scanner-pull"])
        ]
        assert claims.expires_at - time.time() < 4 + 120


async def _scan_then_stop(admin: httpx.AsyncClient, artifact: str) -> dict[str, Any]:
    """Start a scan, stop it once it runs; its summary, ``Stopped``."""
    assert (await admin.post(f"{artifact}/scan")).status_code == 202
    deadline = time.monotonic() + 20
    while (await _overview(admin, artifact)).get("scan_status") != "Running":
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    stopped = await admin.post(f"{artifact}/scan/stop", json={"scan_type": "vulnerability"})
    assert stopped.status_code == 202
    summary = await _wait_scan(admin, artifact)
    assert summary["scan_status"] == "Stopped"
    return summary


async def test_a_report_that_never_comes_hits_the_time_limit_and_can_be_stopped(
    admin: httpx.AsyncClient, scan_state: AppState
) -> None:
    with misbehaving() as adapter:  # 302 + Refresh-After: 1, for ever
        artifact, _ = await _scanned_image(scan_state, admin, adapter.url)
        assert (await admin.post(f"{artifact}/scan")).status_code == 202
        summary = await _wait_scan(admin, artifact, within=30)
        assert summary["scan_status"] == "Error"
        log = await _log(admin, artifact, summary["report_id"])
        assert "time limit" in log
        polls = [p for m, p, _ in adapter.seen if p.startswith("/scan/s1/report")]
        assert 2 <= len(polls) <= 6  # Refresh-After was honoured, not a busy loop

        summary = await _scan_then_stop(admin, artifact)
    nothing = await admin.post(f"{artifact}/scan/stop", json={"scan_type": "vulnerability"})
    assert nothing.status_code == 400


async def test_scan_without_a_usable_scanner_is_422(
    admin: httpx.AsyncClient, scan_state: AppState
) -> None:
    project = await _project(scan_state)
    disabled = await _register(admin, "http://127.0.0.1:8")
    async with scan_state.db.write() as session:
        found = await projects_repo.find_project_by_name(session, project)
        assert found is not None
        row = await session.scalar(
            select(ScannerRegistration).where(ScannerRegistration.uuid == disabled)
        )
        assert row is not None
        session.add(ProjectScanner(project_id=found.project_id, registration_id=row.id))
        row.disabled = True
    digest, _ = await push_image(admin, f"{project}/app", "v1")
    response = await admin.post(f"{_artifact_url(project, 'app', digest)}/scan")
    assert response.status_code == 422
    assert "disabled" in response.text


# --- reports: one per artifact, records shared ---------------------------------------------


def _item(cve: str, package: str, severity: str, fix: str = "") -> VulnerabilityItem:
    return VulnerabilityItem(
        id=cve, package=package, version="1.0", fix_version=fix, severity=severity
    )


async def _counts(state: AppState) -> tuple[int, int]:
    async with state.db.read() as session:
        records = await session.scalar(select(func.count()).select_from(VulnerabilityRecord))
        links = await session.scalar(select(func.count()).select_from(ReportVulnerability))
    return int(records or 0), int(links or 0)


async def test_rescans_replace_the_report_and_share_records(
    admin: httpx.AsyncClient, scan_state: AppState
) -> None:
    project = await _project(scan_state)
    registration = await _register(admin, "http://127.0.0.1:9")
    await _use_scanner(admin, project, registration)
    first, _ = await push_image(admin, f"{project}/a", "v1", seed=b"a")
    second, _ = await push_image(admin, f"{project}/b", "v1", seed=b"b")
    scanner = AdapterScanner(name="Stub", vendor="Tests", version="1")
    findings = [
        _item("CVE-1", "openssl", "critical", "1.1"),
        _item("CVE-2", "zlib", "High"),
        _item("CVE-3", "bash", "weird"),
    ]

    async def scan(digest: str, items: list[VulnerabilityItem]) -> None:
        async with scan_state.db.write() as session:
            artifact = await session.scalar(select(Artifact).where(Artifact.digest == digest))
            assert artifact is not None
            row = await reports.begin(
                session,
                artifact_id=artifact.id,
                digest=digest,
                registration_uuid=registration,
                mime_type=VULNERABILITY_MIME,
                report_uuid=str(uuid.uuid4()),
                execution_id=0,
            )
            await reports.store_vulnerabilities(session, row, scanner, items)

    before = await _counts(scan_state)
    await scan(first, findings)
    await scan(second, findings[:2])
    after = await _counts(scan_state)
    assert after[0] - before[0] == 3  # shared by both reports, stored once
    assert after[1] - before[1] == 5
    for _ in range(3):  # rescans change nothing
        await scan(first, findings)
    assert await _counts(scan_state) == after
    # A rescan that no longer finds CVE-3 drops it (no other report holds it).
    await scan(first, findings[:2])
    assert await _counts(scan_state) == (after[0] - 1, after[1] - 1)

    url = _artifact_url(project, "b", second)
    summary = await _overview(admin, url)
    assert summary["scan_status"] == "Success" and summary["severity"] == "Critical"
    assert summary["summary"] == {"total": 2, "fixable": 1, "summary": {"Critical": 1, "High": 1}}
    assert summary["scanner"] == {"name": "Stub", "vendor": "Tests", "version": "1"}
    listing = await admin.get(
        f"{API}/projects/{project}/repositories/b/artifacts",
        params={"with_scan_overview": "true", "with_sbom_overview": "true"},
    )
    assert listing.json()[0]["scan_overview"][VULNERABILITY_MIME]["report_id"]
    plain = await admin.get(f"{API}/projects/{project}/repositories/b/artifacts")
    assert "scan_overview" not in plain.json()[0]
    addition = await admin.get(f"{url}/additions/vulnerabilities")
    report = addition.json()[VULNERABILITY_MIME]
    assert [(v["id"], v["severity"]) for v in report["vulnerabilities"]] == [
        ("CVE-1", "Critical"),
        ("CVE-2", "High"),
    ]
    # Deleting the artifact takes its report and the records only it held.
    await scan(second, [_item("CVE-only-b", "curl", "Low")])
    records, _ = await _counts(scan_state)
    assert (await admin.delete(url)).status_code == 200
    assert (await _counts(scan_state))[0] == records - 1


async def test_auto_scan_enqueues_a_scan_with_the_push(
    admin: httpx.AsyncClient, scan_state: AppState, closed_port: str
) -> None:
    project = await _project(scan_state)
    registration = await _register(admin, closed_port)
    await _use_scanner(admin, project, registration)

    async def scans() -> int:
        async with scan_state.db.read() as session:
            count = await session.scalar(
                select(func.count())
                .select_from(Execution)
                .where(Execution.vendor_type == "IMAGE_SCAN", Execution.trigger == "EVENT")
            )
        return int(count or 0)

    before = await scans()
    await push_image(admin, f"{project}/off", "v1", seed=b"off")
    assert await scans() == before
    response = await admin.put(
        f"{API}/projects/{project}", json={"metadata": {"auto_scan": "true"}}
    )
    assert response.status_code == 200, response.text
    digest, _ = await push_image(admin, f"{project}/on", "v1", seed=b"on")
    assert await scans() == before + 1
    summary = await _wait_scan(admin, _artifact_url(project, "on", digest))
    assert summary["scan_status"] == "Error"  # the adapter is gone; the push was not refused
    shown = (await admin.get(f"{API}/projects/{project}")).json()["metadata"]
    assert shown["auto_scan"] == "true"


async def test_an_index_shows_its_childrens_summaries_added_up(
    admin: httpx.AsyncClient, scan_state: AppState
) -> None:
    project = await _project(scan_state)
    registration = await _register(admin, "http://127.0.0.1:10")
    await _use_scanner(admin, project, registration)
    children = []
    for seed in (b"x", b"y"):
        digest, manifest = await push_image(admin, f"{project}/multi", None, seed=seed)
        children.append({"mediaType": OCI_MANIFEST, "digest": digest, "size": len(manifest)})
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children})
    pushed = await admin.put(
        f"/v2/{project}/multi/manifests/v1",
        content=index,
        headers={"Content-Type": OCI_INDEX},
    )
    assert pushed.status_code == 201
    scanner = AdapterScanner(name="Stub", vendor="Tests", version="1")
    async with scan_state.db.write() as session:
        for child, outcome in zip(children, ("ok", "broken"), strict=True):
            artifact = await session.scalar(
                select(Artifact).where(Artifact.digest == child["digest"])
            )
            assert artifact is not None
            row = await reports.begin(
                session,
                artifact_id=artifact.id,
                digest=child["digest"],
                registration_uuid=registration,
                mime_type=VULNERABILITY_MIME,
                report_uuid=str(uuid.uuid4()),
                execution_id=0,
            )
            if outcome == "ok":
                items = [_item("CVE-9", "libx", "Medium", "2"), _item("CVE-8", "liby", "Low")]
                await reports.store_vulnerabilities(session, row, scanner, items)
            else:
                await reports.mark(session, row.uuid, reports.ERROR, "adapter said no")
    summary = await _overview(admin, _artifact_url(project, "multi", "v1"))
    assert summary["scan_status"] == "Error"
    assert summary["complete_percent"] == 100
    assert summary["severity"] == "Medium"
    assert summary["summary"] == {"total": 2, "fixable": 1, "summary": {"Medium": 1, "Low": 1}}


# --- the SCANNING_* webhook events -----------------------------------------------------------


@pytest.fixture(scope="module")
def hook_receiver() -> Iterator[Receiver]:
    """One webhook receiver on 127.0.0.1 for the module (``test_webhooks``'s)."""
    with contextlib.contextmanager(serve_receiver)(None) as receiver:
        yield receiver


async def test_a_failed_and_a_stopped_scan_are_webhook_events(
    admin: httpx.AsyncClient, scan_state: AppState, hook_receiver: Receiver
) -> None:
    """``SCANNING_FAILED``/``SCANNING_STOPPED`` reach the project's policies with the
    artifact and its ``scan_overview`` as the API shows it once the scan ended."""
    await admin.put(f"{API}/configurations", json={"notification_enable": True})
    refusal = (422, {"error": {"message": "cannot pull that artifact, sorry"}})
    with misbehaving(scan=refusal) as adapter:
        artifact, _ = await _scanned_image(scan_state, admin, adapter.url)
        project = artifact.split("/")[4]
        hook = {
            "name": _uid("h"),
            "enabled": True,
            "event_types": ["SCANNING_COMPLETED", "SCANNING_FAILED", "SCANNING_STOPPED"],
            "targets": [{"type": "http", "address": f"{hook_receiver.url}/{project}"}],
        }
        made = await admin.post(f"{API}/projects/{project}/webhook/policies", json=hook)
        assert made.status_code == 201, made.text
        assert (await admin.post(f"{artifact}/scan")).status_code == 202
        failed = await _wait_scan(admin, artifact)
        (delivered,) = await hook_receiver.wait_for(f"/{project}", 1)
    digest = artifact.rsplit("/", 1)[1]
    host = scan_state.settings.public_url.split("://", 1)[1]
    body = delivered.json()
    assert isinstance(body.pop("occur_at"), int)
    assert body == {
        "type": "SCANNING_FAILED",
        "operator": "admin",
        "event_data": {
            "resources": [
                {
                    "digest": digest,
                    "tag": "v1",
                    "resource_url": f"{host}/{project}/app:v1",
                    "scan_overview": {VULNERABILITY_MIME: failed},
                }
            ],
            "repository": {
                "date_created": body["event_data"]["repository"]["date_created"],
                "name": "app",
                "namespace": project,
                "repo_full_name": f"{project}/app",
                "repo_type": "private",
            },
        },
    }

    with misbehaving() as adapter:  # the report never comes: stop it
        registration = await _register(admin, adapter.url)
        await _use_scanner(admin, project, registration)
        summary = await _scan_then_stop(admin, artifact)
        events = await hook_receiver.wait_for(f"/{project}", 2)
    second = events[1].json()
    assert second["type"] == "SCANNING_STOPPED"
    (resource,) = second["event_data"]["resources"]
    assert resource["scan_overview"] == {VULNERABILITY_MIME: summary}
