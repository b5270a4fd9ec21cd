"""Registries and Replications in a real browser (Debian's Chromium through Playwright)
against a real ``dockyard serve``, with Debian's ``docker-registry`` (htpasswd Basic auth)
as the remote, both started once for the module: an endpoint added after testing its
connection, a rule made, "Replicate now", the execution succeeding, its task's log, the
image at the destination; a refused form; the pages in 简体中文; a non-administrator sees
neither page and is refused at their URLs."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect
from tests.console.test_browser import (
    PASSWORD,
    api,
    new_project,
    new_user,
    push,
    shoot,
    sign_in,
)
from tests.console.test_browser_layout import LAPTOP, PHONE, _check
from tests.support.docker_registry import DockerRegistry, available, start_docker_registry
from tests.support.oci_layout import make_image_layout
from tests.support.server import DockyardServer
from tests.support.skopeo import Skopeo

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not available(), reason="docker-registry is not installed"),
]


@pytest.fixture(scope="module")
def remote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockerRegistry]:
    with start_docker_registry(tmp_path_factory.mktemp("ui-remote"), auth="basic") as reg:
        yield reg


def _remote_tags(remote: DockerRegistry, repository: str) -> list[str]:
    assert remote.credentials is not None
    answer = httpx.get(
        f"{remote.url}/v2/{repository}/tags/list", auth=remote.credentials, timeout=10
    )
    if answer.status_code == 404:
        return []
    assert answer.status_code == 200, answer.text
    return sorted(answer.json().get("tags") or [])


def test_add_an_endpoint_make_a_rule_and_replicate(
    page: Page,
    server: DockyardServer,
    remote: DockerRegistry,
    skopeo: Skopeo,
    tmp_path: Path,
    screenshots: Path,
) -> None:
    project = new_project(server)
    image = make_image_layout(tmp_path / "image", layers=2, layer_size=4096)
    push(skopeo, server, image, f"{project}/app:v1", server.admin_creds)
    sign_in(page, "admin", server.admin_password)

    # A new endpoint: its connection tested before it is saved (htmx answers in place).
    page.get_by_test_id("admin-nav").get_by_role("link", name="Registries").click()
    expect(page).to_have_url(re.compile(r"/harbor/admin/registries$"))
    page.get_by_test_id("new-registry").click()
    endpoint = f"dr-{uuid.uuid4().hex[:6]}"
    page.get_by_label("Provider").select_option(label="Docker Registry")
    page.get_by_test_id("registry-name").fill(endpoint)
    page.get_by_test_id("registry-url").fill(remote.url)
    page.get_by_test_id("registry-key").fill(remote.username)
    page.get_by_test_id("registry-secret").fill("not-the-password")
    page.get_by_test_id("test-connection").click()
    expect(page.get_by_test_id("ping-failed")).to_contain_text("The test failed")
    page.get_by_test_id("registry-secret").fill(remote.password)
    page.get_by_test_id("test-connection").click()
    expect(page.get_by_test_id("ping-ok")).to_have_text(
        "The connection and the credentials are fine."
    )
    expect(page).to_have_url(re.compile(r"/harbor/admin/registries/new$"))  # nothing saved yet
    page.get_by_test_id("save-registry").click()
    expect(page.get_by_role("status").first).to_have_text(
        f"Registry endpoint {endpoint} was created."
    )
    row = page.locator(f'tr[data-registry="{endpoint}"]')
    expect(row).to_contain_text(remote.url)
    expect(row).to_contain_text("Docker Registry")
    expect(row.locator("[data-status]")).to_have_attribute("data-status", "unknown")
    # The saved endpoint's test (its stored secret) records it healthy.
    row.get_by_test_id("registry-ping").click()
    expect(page.get_by_role("status").first).to_contain_text("connection and credentials are fine")
    expect(row.locator("[data-status]")).to_have_attribute("data-status", "healthy")
    shoot(page, screenshots, "registries-en")

    # A rule: a refused cron comes back in the form, as typed, with the reason.
    page.get_by_test_id("admin-nav").get_by_role("link", name="Replications").click()
    page.get_by_test_id("new-rule").click()
    rule = f"to-dr-{uuid.uuid4().hex[:6]}"
    page.get_by_test_id("rule-name").fill(rule)
    page.get_by_test_id("mode-push").check()
    page.get_by_test_id("rule-registry").select_option(
        label=f"{endpoint} (Docker Registry, {remote.url})"
    )
    page.get_by_test_id("rule-name-filter").fill(f"{project}/**")
    page.get_by_test_id("rule-tag-filter").fill("v*")
    page.get_by_test_id("rule-namespace").fill("mirror")
    page.get_by_test_id("rule-trigger").select_option("scheduled")
    page.get_by_test_id("rule-cron").fill("at noon")
    page.get_by_test_id("save-rule").click()
    expect(page.get_by_test_id("form-error")).to_contain_text("Not saved:")
    expect(page.get_by_test_id("form-error")).to_contain_text("cron")
    expect(page.get_by_test_id("rule-name")).to_have_value(rule)
    expect(page.get_by_test_id("rule-name-filter")).to_have_value(f"{project}/**")
    shoot(page, screenshots, "replication-rule-refused-en")
    page.get_by_test_id("rule-trigger").select_option("manual")
    page.get_by_test_id("rule-cron").fill("")
    page.get_by_test_id("save-rule").click()
    expect(page.get_by_role("status").first).to_have_text(f"Replication rule {rule} was created.")
    rule_row = page.locator(f'tr[data-rule="{rule}"]')
    expect(rule_row).to_contain_text(endpoint)
    expect(rule_row).to_contain_text("mirror")
    expect(rule_row).to_contain_text("Manual")
    shoot(page, screenshots, "replications-en")

    # Replicate now: the executions page follows the run until it succeeds.
    rule_row.get_by_test_id("replicate-now").click()
    expect(page.get_by_role("status").first).to_have_text(
        re.compile(r"Replication execution \d+ was started\.")
    )
    run = page.get_by_test_id("executions").locator("tbody tr").first
    expect(run.locator("[data-status]")).to_have_attribute("data-status", "Succeed", timeout=60_000)
    expect(run.locator('[data-count="succeed"]')).to_have_text("2")  # the plan and one copy
    expect(run.locator('[data-count="failed"]')).to_have_text("0")
    expect(run.locator('[data-count="in_progress"]')).to_have_text("0")
    shoot(page, screenshots, "replication-executions-en")
    run.get_by_test_id("run-detail").click()
    copy = page.locator('tr[data-operation="copy"]')
    expect(copy).to_have_count(1)
    expect(copy).to_contain_text(f"{project}/app:[v1]")
    expect(copy).to_contain_text("mirror/app:[v1]")
    expect(copy.locator("[data-status]")).to_have_attribute("data-status", "Success")
    copy.get_by_test_id("log-link").click()
    expect(page.get_by_test_id("job-log")).to_contain_text(f"copied {project}/app:v1 to mirror/app")
    shoot(page, screenshots, "replication-tasks-en")
    assert _remote_tags(remote, "mirror/app") == ["v1"]

    # The endpoint is in use: its deletion is refused with the rule's name.
    page.get_by_test_id("admin-nav").get_by_role("link", name="Registries").click()
    row = page.locator(f'tr[data-registry="{endpoint}"]')
    row.get_by_test_id("delete-registry").click()
    row.get_by_role("button", name="Yes, do it").click()
    expect(page.get_by_role("alert")).to_contain_text(rule)
    expect(page.locator(f'tr[data-registry="{endpoint}"]')).to_have_count(1)

    # Disable, then delete the rule; then the endpoint goes.
    page.get_by_test_id("admin-nav").get_by_role("link", name="Replications").click()
    rule_row = page.locator(f'tr[data-rule="{rule}"]')
    rule_row.get_by_test_id("toggle-rule").click()
    expect(rule_row.locator("[data-enabled]")).to_have_attribute("data-enabled", "false")
    expect(rule_row.get_by_test_id("replicate-now")).to_have_count(0)
    rule_row.get_by_test_id("delete-rule").click()
    rule_row.get_by_role("button", name="Yes, do it").click()
    expect(page.get_by_role("status").first).to_have_text(f"Replication rule {rule} was deleted.")
    page.get_by_test_id("admin-nav").get_by_role("link", name="Registries").click()
    row = page.locator(f'tr[data-registry="{endpoint}"]')
    row.get_by_test_id("delete-registry").click()
    row.get_by_role("button", name="Yes, do it").click()
    expect(page.get_by_role("status").first).to_have_text(
        f"Registry endpoint {endpoint} was deleted."
    )


def test_the_pages_in_chinese(page: Page, server: DockyardServer, screenshots: Path) -> None:
    sign_in(page, "admin", server.admin_password)
    page.goto("/harbor/admin/replications")
    page.get_by_role("link", name="简体中文").click()
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    expect(page.get_by_role("heading", name="复制管理")).to_be_visible()
    page.get_by_test_id("new-rule").click()
    expect(page.get_by_role("heading", name="新建复制规则")).to_be_visible()
    expect(page.get_by_text("基于推送：从本仓库复制到端点")).to_be_visible()
    page.get_by_test_id("admin-nav").get_by_role("link", name="仓库管理").click()
    expect(page.get_by_role("heading", name="仓库管理")).to_be_visible()
    shoot(page, screenshots, "registries-zh")
    page.get_by_role("link", name="English").click()
    expect(page.locator("html")).to_have_attribute("lang", "en")


def test_a_non_administrator_sees_neither_page(page: Page, server: DockyardServer) -> None:
    user = new_user(server)
    sign_in(page, user, PASSWORD)
    expect(page.get_by_test_id("admin-nav")).to_have_count(0)
    expect(page.get_by_role("link", name="Registries")).to_have_count(0)
    for path in ("/harbor/admin/registries", "/harbor/admin/replications/new"):
        answer = page.goto(path)
        assert answer is not None and answer.status == 403, path
        expect(page.get_by_role("heading", level=1)).to_contain_text("403")


@pytest.fixture(scope="module")
def made(server: DockyardServer, remote: DockerRegistry) -> dict[str, int]:
    """An endpoint and a rule with a finished execution, made through the API."""
    with api(server) as client:
        endpoint = client.post(
            "/api/v2.0/registries",
            json={
                "name": f"layout-{uuid.uuid4().hex[:6]}",
                "type": "docker-registry",
                "url": remote.url,
                "description": "the disaster recovery site, reached over the private link",
                "credential": {
                    "type": "basic",
                    "access_key": remote.username,
                    "access_secret": remote.password,
                },
            },
        )
        assert endpoint.status_code == 201, endpoint.text
        registry_id = int(endpoint.headers["location"].rsplit("/", 1)[1])
        rule = client.post(
            "/api/v2.0/replication/policies",
            json={
                "name": f"layout-{uuid.uuid4().hex[:6]}",
                "dest_registry": {"id": registry_id},
                "filters": [{"type": "name", "value": "nothing-here/**"}],
                "trigger": {"type": "scheduled", "trigger_settings": {"cron": "0 0 3 * * *"}},
            },
        )
        assert rule.status_code == 201, rule.text
        policy_id = int(rule.headers["location"].rsplit("/", 1)[1])
        run = client.post("/api/v2.0/replication/executions", json={"policy_id": policy_id})
        assert run.status_code == 201, run.text
        execution_id = int(run.headers["location"].rsplit("/", 1)[1])
    return {"registry": registry_id, "policy": policy_id, "execution": execution_id}


@pytest.mark.parametrize(
    ("viewport", "lang", "theme"), [(LAPTOP, "en", "light"), (PHONE, "zh-CN", "dark")]
)
def test_the_pages_fit_a_laptop_and_a_phone(
    browser: Browser,
    server: DockyardServer,
    made: dict[str, int],
    viewport: dict[str, int],
    lang: str,
    theme: str,
) -> None:
    """The layout facts every console page keeps (``test_browser_layout``), on these pages."""
    context = browser.new_context(base_url=server.url, viewport=viewport, locale="en-US")
    context.set_default_timeout(15_000)
    try:
        page = context.new_page()
        sign_in(page, "admin", server.admin_password)
        host = server.url.split("//", 1)[1].split(":", 1)[0]
        context.add_cookies(
            [
                {"name": "dy_lang", "value": lang, "domain": host, "path": "/"},
                {"name": "dy_theme", "value": theme, "domain": host, "path": "/"},
            ]
        )
        rules = "/harbor/admin/replications"
        for path in (
            "/harbor/admin/registries",
            "/harbor/admin/registries/new",
            f"/harbor/admin/registries/{made['registry']}/edit",
            rules,
            f"{rules}/new",
            f"{rules}/{made['policy']}/edit",
            f"{rules}/{made['policy']}",
            f"{rules}/{made['policy']}/executions/{made['execution']}",
        ):
            _check(page, path, viewport, theme, lang)
    finally:
        context.close()
