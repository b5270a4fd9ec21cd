"""The console's New Project form makes a proxy cache project (Harbor's "Proxy Cache"
switch with the endpoint picker), in English and in Chinese, in a real Chromium."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Page, expect
from tests.console.test_browser import sign_in
from tests.support.server import DockyardServer, free_port


@pytest.fixture(scope="module")
def server() -> Iterator[DockyardServer]:
    # The endpoint is a loopback URL (nothing listens: making a project does not call it).
    with DockyardServer(env={"DOCKYARD_EGRESS_ALLOW_LOOPBACK": "true"}) as running:
        yield running


def _endpoint(server: DockyardServer) -> tuple[int, str]:
    name = f"upstream-{uuid.uuid4().hex[:6]}"
    with httpx.Client(base_url=server.url, auth=server.admin_auth, timeout=30) as client:
        created = client.post(
            "/api/v2.0/registries",
            json={
                "name": name,
                "type": "docker-registry",
                "url": f"http://127.0.0.1:{free_port()}",
            },
        )
        assert created.status_code == 201, created.text
    return int(created.headers["location"].rsplit("/", 1)[1]), name


def test_create_a_proxy_cache_project(page: Page, server: DockyardServer) -> None:
    registry_id, endpoint = _endpoint(server)
    sign_in(page, "admin", server.admin_password)
    page.get_by_test_id("new-project").click()
    page.get_by_label("Project name").fill("hub")
    page.get_by_label("Proxy Cache").check()
    page.get_by_label("Registry endpoint to proxy").select_option(
        label=f"{endpoint} (docker-registry)"
    )
    page.get_by_label("Bandwidth to the upstream (KiB/s)").fill("2048")
    page.get_by_role("button", name="Create").click()
    expect(page.get_by_role("status")).to_contain_text("Project hub was created.")

    with httpx.Client(base_url=server.url, auth=server.admin_auth, timeout=30) as client:
        shown = client.get("/api/v2.0/projects/hub").json()
    assert shown["registry_id"] == registry_id
    assert shown["metadata"]["proxy_speed_kb"] == "2048"
    assert shown["metadata"]["retention_id"]

    # The same switch in Chinese; without it a project is an ordinary one.
    page.goto("/harbor/projects")
    page.get_by_role("link", name="简体中文").click()
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    page.get_by_test_id("new-project").click()
    expect(page.get_by_label("镜像代理")).to_be_visible()
    page.get_by_role("link", name="English").click()
    expect(page).to_have_url(re.compile(r"/harbor/projects"))
    page.get_by_test_id("new-project").click()
    page.get_by_label("Project name").fill("plain")
    page.get_by_role("button", name="Create").click()
    expect(page.get_by_role("status")).to_contain_text("Project plain was created.")
    with httpx.Client(base_url=server.url, auth=server.admin_auth, timeout=30) as client:
        assert client.get("/api/v2.0/projects/plain").json()["registry_id"] in (0, None)
