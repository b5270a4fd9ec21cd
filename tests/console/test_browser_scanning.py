"""The console's vulnerability scanning in Chromium against a real ``dockyard serve`` (issue 18).

One server plays both parts: the registry, and (``scanner_adapter_enabled``) the built-in
scanner adapter, registered from the Interrogation Services page at its own
``/scanner/v1`` with a Bearer key, with OSV records for the test images loaded. An
administrator adds scanners (after a test connection), sets the default, disables and
deletes one, scans an image from the repository page and reads its findings (sorted,
filtered, allowlisted ones marked, the scan log); sets the system and project CVE
allowlists, the project's scanning switches and its scanner; runs scan all, exports CVEs,
generates an SBOM and reads the security hub; a developer sees no Scan button and is
refused when posting one; a scan that never ends is stopped; the pages in 简体中文.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Locator, Page, expect
from tests.console.test_browser import PASSWORD, sign_in
from tests.support import scan_stub
from tests.support import scanner_images as images
from tests.support.server import DockyardServer

PREFIX = "UIS"
KEY = "console-scanner-key-0123"
API = "/api/v2.0"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
GZIP_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
ADMIN = "/harbor/admin/interrogation-services"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockyardServer]:
    env = {
        "DOCKYARD_EGRESS_ALLOW_LOOPBACK": "true",
        "DOCKYARD_JOB_POLL_SECONDS": "0.2",
        "DOCKYARD_SCANNER_ADAPTER_ENABLED": "true",
        "DOCKYARD_SCANNER_ADAPTER_API_KEY": KEY,
    }
    osv = tmp_path_factory.mktemp("osv") / "records.json"
    osv.write_text(json.dumps(images.osv_records(PREFIX)))
    with DockyardServer(env=env) as running:
        running.cli("vulndb", "import", str(osv))
        yield running


def _api(server: DockyardServer) -> httpx.Client:
    return httpx.Client(base_url=server.url, auth=server.admin_auth, timeout=60)


def _blob(client: httpx.Client, repo: str, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    answer = client.post(f"/v2/{repo}/blobs/uploads/", params={"digest": digest}, content=data)
    assert answer.status_code == 201, answer.text
    return digest


def _push_alpine(client: httpx.Client, repo: str, tag: str) -> str:
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {}}).encode()
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": _blob(client, repo, config),
            "size": len(config),
        },
        "layers": [
            {"mediaType": GZIP_LAYER, "digest": _blob(client, repo, blob), "size": len(blob)}
            for blob in images.alpine_layers()
        ],
    }
    data = json.dumps(doc).encode()
    answer = client.put(
        f"/v2/{repo}/manifests/{tag}", content=data, headers={"Content-Type": OCI_MANIFEST}
    )
    assert answer.status_code == 201, answer.text
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _project(client: httpx.Client) -> str:
    name = f"p{uuid.uuid4().hex[:8]}"
    answer = client.post(f"{API}/projects", json={"project_name": name})
    assert answer.status_code == 201, answer.text
    return name


def _add_scanner(page: Page, name: str, url: str, auth: str, credential: str) -> None:
    page.goto(ADMIN)
    details = page.locator("details.card")
    if details.get_attribute("open") is None:
        page.get_by_text("New scanner").click()
    page.get_by_label("Name", exact=True).fill(name)
    page.get_by_label("Endpoint URL").fill(url)
    page.get_by_label("Authorization").select_option(auth)
    page.get_by_label("Credential").fill(credential)
    page.get_by_role("button", name="Add", exact=True).click()
    expect(page.get_by_role("status")).to_contain_text(f"Scanner {name} was added.")


def _row(page: Page, name: str) -> Locator:
    return page.locator(f'tr[data-scanner="{name}"]')


def _shoot(page: Page, folder: Path, name: str) -> None:
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)
    assert (folder / f"{name}.png").stat().st_size > 1000


def test_interrogation_services_scan_findings_allowlists_and_settings(
    page: Page, server: DockyardServer, screenshots: Path
) -> None:
    adapter = f"{server.url}/scanner/v1"
    sign_in(page, "admin", server.admin_password)
    page.get_by_role("link", name="Interrogation Services").click()
    expect(page.get_by_role("heading", name="Interrogation Services")).to_be_visible()

    # Test connection of the add form: a wrong key is refused with the adapter's reason,
    # the right one answers with the scanner's name; nothing is saved either way.
    page.get_by_text("New scanner").click()
    page.get_by_label("Name", exact=True).fill("builtin")
    page.get_by_label("Endpoint URL").fill(adapter)
    page.get_by_label("Authorization").select_option("Bearer")
    page.get_by_label("Credential").fill("not-the-key")
    page.get_by_role("button", name="Test connection").click()
    expect(page.get_by_test_id("ping-result")).to_contain_text("The scanner cannot be used")
    expect(page.get_by_label("Endpoint URL")).to_have_value(adapter)  # the form is kept
    page.get_by_label("Credential").fill(KEY)
    page.get_by_role("button", name="Test connection").click()
    expect(page.get_by_test_id("ping-result")).to_contain_text("The scanner answered: Dockyard")
    expect(page.locator("tr[data-scanner]")).to_have_count(0)

    _add_scanner(page, "builtin", adapter, "Bearer", KEY)
    expect(_row(page, "builtin").get_by_test_id("default-badge")).to_be_visible()
    _add_scanner(page, "second", adapter, "X-ScannerAdapter-API-Key", KEY)
    second = _row(page, "second")
    second.get_by_role("button", name="Test connection").click()
    expect(page.get_by_role("status")).to_contain_text("Scanner second answered: Dockyard")
    second.get_by_role("button", name="Set as default").click()
    expect(page.get_by_role("status")).to_contain_text("second is now the default scanner.")
    expect(_row(page, "builtin").get_by_test_id("default-badge")).to_have_count(0)
    _row(page, "builtin").get_by_role("button", name="Set as default").click()
    _row(page, "second").get_by_role("button", name="Disable").click()
    expect(_row(page, "second").get_by_test_id("scanner-state")).to_have_text("Disabled")

    with _api(server) as client:
        listed = {s["name"]: s for s in client.get(f"{API}/scanners").json()}
        assert listed["builtin"]["is_default"] is True
        assert listed["builtin"]["auth"] == "Bearer"
        assert listed["second"]["disabled"] is True
        project = _project(client)
        digest = _push_alpine(client, f"{project}/alpine", "3.19")

    # The project's Scanner tab offers the enabled scanners only.
    page.goto(f"/harbor/projects/{project}/scanner")
    expect(page.get_by_test_id("current-scanner")).to_contain_text("builtin")
    options = page.get_by_label("Scanner").locator("option")
    expect(options).to_have_count(1)
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_contain_text("The project's scanner was changed.")

    page.goto(ADMIN)
    _row(page, "second").get_by_test_id("delete-scanner-second").click()
    _row(page, "second").get_by_role("button", name="Yes, do it").click()
    expect(page.get_by_role("status")).to_contain_text("Scanner second was deleted.")

    # Scan from the repository page; the bar shows the stored summary once it is done.
    page.goto(f"/harbor/projects/{project}/repositories/alpine")
    row = page.locator(f'tr[data-digest="{digest}"]')
    expect(row.locator("[data-scan-status]")).to_have_attribute("data-scan-status", "none")
    expect(row).to_contain_text("Not scanned")
    row.get_by_role("button", name="Scan").click()
    expect(page.get_by_role("status")).to_contain_text("The scan has started.")
    deadline = time.monotonic() + 90
    while row.locator('[data-scan-status="Success"]').count() == 0:
        assert time.monotonic() < deadline, row.inner_html()
        time.sleep(0.5)
        page.reload()
    expect(row.get_by_test_id("vuln-total")).to_have_text("2 vulnerabilities")
    expect(row.locator(".vuln-link")).to_have_attribute("title", "1 high, 1 unknown")

    # The vulnerabilities tab: exact findings, sorting, filters, the scan log.
    row.locator(".vuln-link").click()
    expect(page).to_have_url(re.compile(r"/vulnerabilities$"))
    findings = page.get_by_test_id("findings")
    musl, openssl = f"{PREFIX}-MUSL", f"{PREFIX}-OPENSSL"
    expect(findings.locator("tbody tr")).to_have_count(2)
    first = findings.locator("tbody tr").first
    expect(first).to_have_attribute("data-cve", musl)  # most severe first
    expect(first).to_contain_text("musl")
    expect(first).to_contain_text("1.2.4_git20230717-r4")
    expect(first).to_contain_text("1.2.4_git20230717-r10")
    expect(first).to_contain_text("High")
    openssl_row = findings.locator(f'tr[data-cve="{openssl}"]')
    expect(openssl_row).to_contain_text("libcrypto3")
    expect(openssl_row).to_contain_text("3.1.4-r1")
    expect(openssl_row).to_have_attribute("data-severity", "Unknown")
    page.locator('a[data-sort="id"]').click()
    expect(page).to_have_url(re.compile(r"sort=id"))
    expect(findings.locator("tbody tr").first).to_have_attribute("data-cve", musl)
    page.locator('a[data-sort="id"]').click()  # again: descending
    expect(page).to_have_url(re.compile(r"sort=-id"))
    expect(findings.locator("tbody tr").first).to_have_attribute("data-cve", openssl)
    page.get_by_label("Severity").select_option("High")
    page.get_by_role("button", name="Filter").click()
    expect(findings.locator("tbody tr")).to_have_count(1)
    page.get_by_label("Severity").select_option("")
    page.get_by_label("CVE, package or text").fill("libcrypto")
    page.get_by_role("button", name="Filter").click()
    expect(findings.locator("tbody tr")).to_have_count(1)
    expect(findings.locator("tbody tr")).to_have_attribute("data-cve", openssl)
    expect(page.locator("tr[data-allowlisted]")).to_have_count(0)
    page.get_by_test_id("scan-log-link").click()
    expect(page.get_by_test_id("scan-log")).to_be_visible()

    # The SBOM tab: Generate SBOM, the document shown and downloadable.
    page.goto(f"/harbor/projects/{project}/repositories/alpine/-/artifacts/{digest}/sbom")
    expect(page.get_by_test_id("no-sbom")).to_be_visible()
    page.get_by_role("button", name="Generate SBOM").click()
    expect(page.get_by_role("status")).to_contain_text("The SBOM is being generated.")
    deadline = time.monotonic() + 90
    while page.get_by_test_id("sbom-download").count() == 0:
        assert time.monotonic() < deadline, page.get_by_test_id("sbom").inner_text()
        time.sleep(0.5)
        page.reload()
    expect(page.get_by_test_id("sbom-document")).to_contain_text("spdxVersion")
    expect(page.get_by_test_id("sbom-document")).to_contain_text("musl")
    with page.expect_download() as download:
        page.get_by_test_id("sbom-download").click()
    saved = json.loads(Path(download.value.path()).read_text())
    assert saved["spdxVersion"].startswith("SPDX-")
    assert any(p.get("name") == "musl" for p in saved.get("packages", []))
    page.goto(f"/harbor/projects/{project}/repositories/alpine")
    expect(row.locator('[data-sbom-status="Success"]')).to_contain_text("SBOM ready")

    # CVE export from the project's repositories: the CSV of its findings, downloaded.
    page.goto(f"/harbor/projects/{project}/repositories")
    page.get_by_test_id("cve-export-link").click()
    page.get_by_label("CVE ids").fill(musl)
    page.get_by_role("button", name="Export", exact=True).click()
    expect(page.get_by_role("status")).to_contain_text("The CVE export has started")
    deadline = time.monotonic() + 90
    while page.get_by_test_id("export-download").count() == 0:
        assert time.monotonic() < deadline, page.get_by_test_id("cve-exports").inner_text()
        time.sleep(0.5)
        page.reload()
    with page.expect_download() as download:
        page.get_by_test_id("export-download").click()
    lines = Path(download.value.path()).read_text().splitlines()
    assert lines[0].startswith("Project,"), lines[0]
    assert len(lines) == 2 and musl in lines[1] and "musl" in lines[1], lines

    # Scan all from Interrogation Services: run now, progress to the end, a schedule.
    page.goto(ADMIN)
    progress = page.get_by_test_id("scan-all-progress")
    expect(progress).to_contain_text("Scan all has not run yet.")
    page.get_by_role("button", name="Scan now").click()
    expect(page.get_by_role("status")).to_contain_text("Scan all has started.")
    deadline = time.monotonic() + 90
    while progress.get_attribute("data-ongoing") != "false" or "scans finished" not in (
        progress.text_content() or ""
    ):
        assert time.monotonic() < deadline, progress.text_content()
        time.sleep(0.5)
        page.reload()
    expect(progress).to_contain_text("1 of 1 scans finished")  # the one image so far
    expect(progress.locator('[data-metric="Success"]')).to_contain_text("1")
    scan_all = page.get_by_test_id("scan-all")
    scan_all.get_by_label("Schedule").select_option("Daily")
    scan_all.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_contain_text("The scan all schedule was saved.")
    with _api(server) as client:
        schedule = client.get(f"{API}/system/scanAll/schedule").json()
        assert schedule["schedule"]["type"] == "Daily", schedule

    # The security hub: the summary and a search.
    page.get_by_role("link", name="Security Hub").click()
    expect(page.get_by_test_id("hub-total")).to_have_text("2")
    expect(page.get_by_test_id("hub-scanned")).to_have_text("1 of 1")
    expect(page.get_by_test_id("dangerous-artifacts")).to_contain_text(f"{project}/alpine")
    search = page.get_by_test_id("hub-search")
    search.get_by_label("Severity").select_option("High")
    search.get_by_role("button", name="Search").click()
    results = page.get_by_test_id("hub-results")
    expect(results.locator("tbody tr")).to_have_count(1)
    expect(results.locator("tbody tr")).to_have_attribute("data-cve", musl)
    expect(results).to_contain_text("3.19")  # the tag
    results.get_by_role("link", name=f"{project}/alpine").click()
    expect(page).to_have_url(re.compile(r"/vulnerabilities$"))

    # The system allowlist: add two ids with an expiry, remove one.
    page.goto("/harbor/admin/cve-allowlist")
    editor = page.get_by_test_id("system-allowlist")
    editor.get_by_label("Add CVE ids").fill(f"{openssl}, CVE-2024-0001")
    editor.get_by_label("Never expires").uncheck()
    editor.get_by_label("Expires on").fill("2099-12-31")
    editor.get_by_role("button", name="Update allowlist").click()
    expect(page.get_by_role("status")).to_contain_text("The CVE allowlist was saved.")
    expect(editor.locator("[data-cve]")).to_have_count(2)
    expect(page.get_by_test_id("system-allowlist-expiry")).to_contain_text("2099-12-31")
    editor.get_by_role("button", name="Remove CVE-2024-0001 from the allowlist").click()
    expect(editor.locator("[data-cve]")).to_have_count(1)

    # Project configuration: scanning switches, the project's own allowlist.
    page.goto(f"/harbor/projects/{project}/configuration")
    page.get_by_label("Automatically scan images on push").check()
    page.get_by_label("Automatically generate an SBOM on push").check()
    page.get_by_label("Prevent vulnerable images from running").check()
    page.get_by_label(
        "Prevent images with vulnerabilities of this severity or higher"
    ).select_option("high")
    page.get_by_label("Use the project's own allowlist").check()
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.get_by_role("status")).to_contain_text("The configuration was saved.")
    with _api(server) as client:  # musl is High and not allowlisted yet: refused
        assert client.get(f"/v2/{project}/alpine/manifests/3.19").status_code == 412
    own = page.get_by_test_id("project-allowlist")
    own.get_by_label("Add CVE ids").fill(musl)
    own.get_by_role("button", name="Update allowlist").click()
    expect(page.get_by_role("status")).to_contain_text("The CVE allowlist was saved.")
    with _api(server) as client:
        shown = client.get(f"{API}/projects/{project}").json()
        assert shown["metadata"]["auto_scan"] == "true"
        assert shown["metadata"]["auto_sbom_generation"] == "true"
        assert shown["metadata"]["prevent_vul"] == "true"
        assert shown["metadata"]["severity"] == "high"
        assert shown["metadata"]["reuse_sys_cve_allowlist"] == "false"
        assert [i["cve_id"] for i in shown["cve_allowlist"]["items"]] == [musl]
        system = client.get(f"{API}/system/CVEAllowlist").json()
        assert [i["cve_id"] for i in system["items"]] == [openssl]
        assert system["expires_at"] == 4102444799  # 2099-12-31 23:59:59 UTC
        # musl (High) is allowlisted by the project: the pull is allowed.
        assert client.get(f"/v2/{project}/alpine/manifests/3.19").status_code == 200

    page.goto(
        f"/harbor/projects/{project}/repositories/alpine/-/artifacts/{digest}/vulnerabilities"
    )
    expect(page.locator(f'tr[data-cve="{musl}"]')).to_have_attribute("data-allowlisted", "true")
    expect(page.locator(f'tr[data-cve="{openssl}"]')).not_to_have_attribute(
        "data-allowlisted", "true"
    )
    _shoot(page, screenshots, "vulnerabilities-en")

    # 简体中文: the same page in Chinese.
    page.context.add_cookies([{"name": "dy_lang", "value": "zh-CN", "url": server.url}])
    page.reload()
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    expect(page.get_by_test_id("vulnerabilities-tab")).to_have_text("漏洞")
    expect(page.get_by_test_id("findings")).to_contain_text("高危")
    expect(page.get_by_test_id("findings")).to_contain_text("白名单")
    expect(page.get_by_label("严重程度")).to_be_visible()
    _shoot(page, screenshots, "vulnerabilities-zh")
    page.goto(ADMIN)
    expect(page.get_by_role("heading", name="审查服务")).to_be_visible()
    expect(_row(page, "builtin")).to_contain_text("默认")
    page.context.add_cookies([{"name": "dy_lang", "value": "en", "url": server.url}])
    page.goto(f"/harbor/projects/{project}/repositories/alpine")
    _shoot(page, screenshots, "repository-scanned-en")
    page.goto(ADMIN)
    _shoot(page, screenshots, "interrogation-services-en")


def test_a_developer_sees_findings_but_no_scan_button_and_is_refused(
    browser: Browser, server: DockyardServer
) -> None:
    name = f"u{uuid.uuid4().hex[:8]}"
    with _api(server) as client:
        project = _project(client)
        digest = _push_alpine(client, f"{project}/alpine", "1")
        created = client.post(
            f"{API}/users",
            json={
                "username": name,
                "email": f"{name}@example.org",
                "realname": name,
                "password": PASSWORD,
            },
        )
        assert created.status_code == 201, created.text
        member = client.post(
            f"{API}/projects/{project}/members",
            json={"role_id": 2, "member_user": {"username": name}},
        )
        assert member.status_code == 201, member.text
    ctx = browser.new_context(base_url=server.url, locale="en-US")
    ctx.set_default_timeout(15_000)
    page = ctx.new_page()
    try:
        sign_in(page, name, PASSWORD)
        page.goto(f"/harbor/projects/{project}/repositories/alpine")
        row = page.locator(f'tr[data-digest="{digest}"]')
        expect(row).to_contain_text("Not scanned")
        expect(row.locator('[data-action="scan"]')).to_have_count(0)
        expect(page.get_by_role("link", name="Interrogation Services")).to_have_count(0)
        csrf = re.search(r'name="_csrf" value="([^"]+)"', page.content())
        assert csrf is not None
        refused = ctx.request.post(
            f"/harbor/projects/{project}/repositories/alpine/-/artifacts/{digest}/scan",
            form={"_csrf": csrf.group(1), "scan_type": "vulnerability"},
            max_redirects=0,
        )
        assert refused.status == 403, refused.text()
        admin_page = ctx.request.get(ADMIN, max_redirects=0)
        assert admin_page.status == 403
        # The Scanner tab shows the project's scanner without the choice.
        page.goto(f"/harbor/projects/{project}/scanner")
        expect(page.get_by_test_id("project-scanner")).to_be_visible()
        expect(page.get_by_label("Scanner")).to_have_count(0)
    finally:
        ctx.close()


@contextlib.contextmanager
def _stalling_adapter() -> Iterator[str]:
    """An adapter that takes scans and never finishes one (its report stays ``302``)."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _send(self, status: int, body: object, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path.endswith("/metadata"):
                self._send(200, scan_stub.METADATA)
            else:
                self._send(302, {}, {"Refresh-After": "1", "Location": self.path})

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self._send(202, {"id": uuid.uuid4().hex})

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_a_running_scan_is_stopped_from_the_repository_page(
    page: Page, server: DockyardServer
) -> None:
    with _stalling_adapter() as url, _api(server) as client:
        created = client.post(
            f"{API}/scanners", json={"name": f"stall-{uuid.uuid4().hex[:6]}", "url": url}
        )
        assert created.status_code == 201, created.text
        scanner = created.headers["Location"].rsplit("/", 1)[1]
        project = _project(client)
        chosen = client.put(f"{API}/projects/{project}/scanner", json={"uuid": scanner})
        assert chosen.status_code == 200, chosen.text
        digest = _push_alpine(client, f"{project}/alpine", "1")
        sign_in(page, "admin", server.admin_password)
        page.goto(f"/harbor/projects/{project}/repositories/alpine")
        row = page.locator(f'tr[data-digest="{digest}"]')
        row.get_by_role("button", name="Scan", exact=True).click()
        expect(row).to_contain_text("Scanning…")
        row.get_by_role("button", name="Stop scan").click()
        expect(page.get_by_role("status")).to_contain_text("The scan was stopped.")
        deadline = time.monotonic() + 30
        while row.locator('[data-scan-status="Stopped"]').count() == 0:
            assert time.monotonic() < deadline, row.inner_html()
            time.sleep(0.5)
            page.reload()
        expect(row).to_contain_text("Scan stopped")
        expect(row.get_by_role("button", name="Scan", exact=True)).to_be_visible()
        assert client.delete(f"{API}/scanners/{scanner}").status_code == 200
