"""Layout facts of every console page in Chromium at 1366 px (a laptop) and 390 px (a phone),
in English and 简体中文, light and dark: nothing scrolls sideways, the project tabs stay on
one row, sizes, tags, kinds and pull commands never wrap mid-value, row buttons are one size,
the phone's header is one row with the navigation folded and tables become stacked rows.

One server and one browser for the module; facts are read with one ``evaluate`` per page
(bounding boxes, scroll widths, line counts of text ranges), never by waiting.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect
from tests.console.test_browser import api, push, shoot, sign_in
from tests.support.oci_layout import ImageInfo, make_image_layout
from tests.support.server import DockyardServer
from tests.support.skopeo import Skopeo

LAPTOP = {"width": 1366, "height": 768}
PHONE = {"width": 390, "height": 844}
LIGHT_BG, DARK_BG = "rgb(246, 248, 250)", "rgb(15, 20, 26)"

# One evaluate per page: everything the assertions need, measured by the browser.
FACTS = (Path(__file__).parent / "layout_facts.js").read_text("utf-8")


@pytest.fixture(scope="module")
def site(
    server: DockyardServer, skopeo: Skopeo, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    """A project with two images (one with a long tag and a label), a member and a robot."""
    image: ImageInfo = make_image_layout(
        tmp_path_factory.mktemp("layout") / "image", layers=2, layer_size=1423
    )
    name = f"layout{uuid.uuid4().hex[:6]}"
    with api(server) as client:
        made = client.post("/api/v2.0/projects", json={"project_name": name, "public": False})
        assert made.status_code == 201, made.text
    push(skopeo, server, image, f"{name}/team/web-frontend:v1.2.3", server.admin_creds)
    push(
        skopeo,
        server,
        image,
        f"{name}/team/web-frontend:release-2026-12-candidate",
        server.admin_creds,
    )
    with api(server) as client:
        _prepare(client, name, image.manifest_digest)
    return {"project": name, "digest": image.manifest_digest}


def _prepare(client: httpx.Client, project: str, digest: str) -> None:
    project_id = client.get(f"/api/v2.0/projects/{project}").json()["project_id"]
    label = client.post(
        "/api/v2.0/labels",
        json={"name": "production", "color": "#1a7f37", "scope": "p", "project_id": project_id},
    )
    assert label.status_code == 201, label.text
    label_id = int(label.headers["location"].rsplit("/", 1)[1])
    attached = client.post(
        f"/api/v2.0/projects/{project}/repositories/team%252Fweb-frontend/artifacts/{digest}/labels",
        json={"id": label_id},
    )
    assert attached.status_code == 200, attached.text
    robot = client.post(
        "/api/v2.0/robots",
        json={
            "name": "ci",
            "level": "project",
            "duration": -1,
            "permissions": [
                {
                    "kind": "project",
                    "namespace": project,
                    "access": [{"resource": "repository", "action": "pull"}],
                }
            ],
        },
    )
    assert robot.status_code == 201, robot.text


def _pages(site: dict[str, str]) -> list[str]:
    p = f"/harbor/projects/{site['project']}"
    repo = f"{p}/repositories/team/web-frontend"
    return [
        "/harbor/dashboard",
        "/harbor/projects",
        p,
        f"{p}/repositories",
        repo,
        f"{repo}/-/artifacts/{site['digest']}",
        f"{repo}/-/artifacts/{site['digest']}/vulnerabilities",
        f"{p}/members",
        f"{p}/robots",
        f"{p}/labels",
        f"{p}/scanner",
        f"{p}/immutability",
        f"{p}/retention",
        f"{p}/webhooks",
        f"{p}/logs",
        f"{p}/configuration",
        "/harbor/admin/users",
        "/harbor/admin/robots",
        "/harbor/admin/quotas",
        "/harbor/admin/gc",
        "/harbor/admin/job-service",
        "/harbor/admin/configuration",
        "/harbor/admin/system",
        "/harbor/admin/interrogation-services",
        "/harbor/admin/cve-allowlist",
        "/harbor/admin/security-hub",
        f"{p}/cve-export",
        f"{repo}/-/artifacts/{site['digest']}/sbom",
    ]


def _check(
    page: Page, path: str, viewport: dict[str, int], theme: str, lang: str
) -> dict[str, Any]:
    response = page.goto(path, wait_until="domcontentloaded")
    assert response is not None and response.status == 200, path
    facts: dict[str, Any] = page.evaluate(FACTS)
    where = f"{path} at {viewport['width']}px, {lang}, {theme}"
    assert facts["scrollWidth"] <= facts["width"], (
        f"{where}: scrolls sideways {facts['scrollWidth']}: {facts['overflowing']}"
    )
    assert not facts["wrapped"], f"{where}: wraps mid-value {facts['wrapped']}"
    assert facts["background"] == (DARK_BG if theme == "dark" else LIGHT_BG), where
    assert facts["lang"] == ("zh-CN" if lang == "zh-CN" else "en"), where
    assert all(offset <= 6 for offset in facts["chips"]), f"{where}: a label's ✕ is off its line"
    for kind in facts["kinds"]:
        assert 12 <= kind["icon"] <= 20 and kind["text"], f"{where}: kind {kind}"
    if viewport is LAPTOP:
        assert len(set(facts["tabs"])) <= 1, f"{where}: the project tabs wrap {facts['tabs']}"
        assert facts["tabsOverflow"] <= 0, f"{where}: the project tabs overflow"
        assert facts["sidebarShown"], where
    else:
        assert facts["topbarHeight"] <= 56, f"{where}: the header wraps ({facts['topbarHeight']}px)"
        assert not facts["sidebarShown"], f"{where}: the navigation is not folded"
        for table in facts["stacked"]:
            assert table["stack"] and table["display"] == "block" and table["fits"], (
                f"{where}: a table is not stacked {table}"
            )
    buttons = set(facts["rowButtons"])
    assert max(buttons, default=0) - min(buttons, default=0) <= 1, f"{where}: row buttons {buttons}"
    return facts


@pytest.mark.parametrize(
    ("viewport", "lang", "theme"),
    [
        (LAPTOP, "en", "light"),
        (LAPTOP, "zh-CN", "dark"),
        (PHONE, "en", "dark"),
        (PHONE, "zh-CN", "light"),
        (LAPTOP, "en", "dark"),
        (LAPTOP, "zh-CN", "light"),
        (PHONE, "en", "light"),
        (PHONE, "zh-CN", "dark"),
    ],
    ids=lambda value: str(value["width"]) if isinstance(value, dict) else str(value),
)
def test_every_page_at_laptop_and_phone_widths(
    browser: Browser,
    server: DockyardServer,
    site: dict[str, str],
    screenshots: Path,
    viewport: dict[str, int],
    lang: str,
    theme: str,
) -> None:
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
        heights: set[int] = set()
        for path in _pages(site):
            facts = _check(page, path, viewport, theme, lang)
            heights |= set(facts["rowButtons"])
        # Buttons of one kind are one size across pages too.
        assert max(heights) - min(heights) <= 1, f"row buttons differ between pages: {heights}"
        if (viewport, lang, theme) == (LAPTOP, "en", "light"):
            page.goto("/harbor/dashboard")
            shoot(page, screenshots, "dashboard-en")
        if viewport is PHONE:
            # After an in-place (htmx-boosted) page swap the tables are stacked too, and the
            # current project tab is scrolled into view.
            page.goto("/harbor/dashboard")
            page.locator("[data-nav-toggle]").click()
            page.locator('#sidebar a[href="/harbor/projects"]').click()
            expect(page.locator("table.stack tbody tr").first).to_be_visible()
            page.goto(f"/harbor/projects/{site['project']}/configuration")
            current = page.locator('.tabs [aria-current="page"]').bounding_box()
            assert current is not None and current["x"] + current["width"] <= PHONE["width"]
        if (viewport, lang, theme) == (PHONE, "zh-CN", "dark"):
            page.goto(_pages(site)[4])
            shoot(page, screenshots, "repository-phone-zh-dark")
    finally:
        context.close()
