"""The web console in a real browser (Debian's Chromium through Playwright) against a real
``dockyard serve``, with images pushed by skopeo."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect
from tests.console.conftest import DESKTOP, PHONE
from tests.support.oci_layout import ImageInfo, make_image_layout
from tests.support.server import DockyardServer
from tests.support.skopeo import Skopeo

PASSWORD = "Passw0rd!x"


def sign_in(page: Page, username: str, password: str) -> None:
    page.goto("/harbor/sign-in")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/harbor/dashboard$"))  # the overview is the landing page
    expect(page.get_by_test_id("user-menu")).to_contain_text(username)
    page.goto("/harbor/projects")


def api(server: DockyardServer) -> httpx.Client:
    return httpx.Client(base_url=server.url, auth=server.admin_auth, timeout=30)


def new_project(server: DockyardServer, *, public: bool = False) -> str:
    name = f"p{uuid.uuid4().hex[:8]}"
    with api(server) as client:
        response = client.post("/api/v2.0/projects", json={"project_name": name, "public": public})
        assert response.status_code == 201, response.text
    return name


def new_user(server: DockyardServer) -> str:
    name = f"u{uuid.uuid4().hex[:8]}"
    with api(server) as client:
        response = client.post(
            "/api/v2.0/users",
            json={
                "username": name,
                "email": f"{name}@example.org",
                "realname": name,
                "password": PASSWORD,
            },
        )
        assert response.status_code == 201, response.text
    return name


def push(skopeo: Skopeo, server: DockyardServer, image: ImageInfo, ref: str, creds: str) -> None:
    skopeo.run(
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        creds,
        f"oci:{image.path}:{image.tag}",
        f"docker://{server.registry}/{ref}",
    )


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> ImageInfo:
    return make_image_layout(tmp_path_factory.mktemp("layout") / "image", layers=2, layer_size=2048)


def shoot(page: Page, folder: Path, name: str) -> None:
    page.screenshot(path=str(folder / f"{name}.png"))
    assert (folder / f"{name}.png").stat().st_size > 1000


def test_sign_in_create_a_project_push_and_see_it(
    page: Page, server: DockyardServer, skopeo: Skopeo, image: ImageInfo, screenshots: Path
) -> None:
    page.goto("/harbor/projects")
    expect(page).to_have_url(re.compile(r"/harbor/sign-in\?next="))
    shoot(page, screenshots, "sign-in-en")
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill("wrong")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("Invalid username or password")
    sign_in(page, "admin", server.admin_password)

    page.get_by_test_id("new-project").click()
    page.get_by_label("Project name").fill("demo")
    page.get_by_label("Storage quota (GiB)").fill("1")
    page.get_by_role("button", name="Create").click()
    expect(page.get_by_role("status")).to_contain_text("Project demo was created.")
    expect(page.get_by_role("heading", name="This project is empty")).to_be_visible()
    expect(page.get_by_text(f"docker push {server.registry}/demo/my-image:latest")).to_be_visible()

    push(skopeo, server, image, "demo/app:v1", server.admin_creds)
    push(skopeo, server, image, "demo/app:v2", server.admin_creds)
    page.reload()
    expect(page.get_by_test_id("repo-count")).to_have_text("1")
    expect(page.get_by_role("meter")).to_be_visible()
    shoot(page, screenshots, "project-summary-en")
    page.get_by_role("link", name="Repositories").click()
    page.get_by_role("link", name="demo/app").click()
    expect(page.get_by_test_id("repository-name")).to_have_text("demo/app")
    row = page.locator(f'tr[data-digest="{image.manifest_digest}"]')
    expect(row.locator('[data-tag="v1"]')).to_be_visible()
    expect(row.locator('[data-tag="v2"]')).to_be_visible()
    expect(row).to_contain_text(f"docker pull {server.registry}/demo/app:")
    # Push times are localised by the browser (the server renders UTC for scripts-off readers).
    pushed = row.locator("time").first
    expect(pushed).to_have_attribute("data-local", "1")
    expect(pushed).not_to_contain_text("UTC")
    shoot(page, screenshots, "repository-en")
    row.get_by_role("link").first.click()
    expect(page.get_by_role("heading", name="Layers")).to_be_visible()
    expect(page.get_by_text(image.manifest_digest).first).to_be_visible()
    shoot(page, screenshots, "artifact-en")
    page.goto("/harbor/projects")
    shoot(page, screenshots, "projects-en")
    # The search filters the table in place (htmx) as one types.
    page.get_by_label("Search projects by name").fill("zzz-nothing")
    expect(page.get_by_text("No project matches “zzz-nothing”.")).to_be_visible()
    page.get_by_label("Search projects by name").fill("dem")
    expect(page.get_by_role("link", name="demo", exact=True)).to_be_visible()
    expect(page).to_have_url(re.compile(r"q=dem"))


def test_a_member_sees_only_what_the_role_allows(
    browser: Browser, page: Page, server: DockyardServer
) -> None:
    project, user = new_project(server), new_user(server)
    sign_in(page, "admin", server.admin_password)
    page.goto(f"/harbor/projects/{project}/members")
    page.get_by_test_id("new-member").click()
    # htmx fills the name suggestions as one types (and sends no token in the URL).
    with page.expect_request(lambda r: "/members/suggestions" in r.url) as asked:
        page.get_by_label("Name", exact=True).press_sequentially(user[:5])
    assert "_csrf" not in asked.value.url and "kind=user" in asked.value.url
    expect(page.locator(f'#member-suggestions option[value="{user}"]')).to_have_count(1)
    page.get_by_label("Name", exact=True).fill(user)
    page.get_by_label("Role", exact=True).select_option(label="Guest")
    page.get_by_role("button", name="Add", exact=True).click()
    expect(page.get_by_role("status")).to_contain_text(f"{user} is now a member.")
    expect(page.get_by_role("cell", name=user, exact=True)).to_be_visible()

    member = browser.new_context(base_url=server.url, viewport=DESKTOP)
    try:
        as_member = member.new_page()
        sign_in(as_member, user, PASSWORD)
        expect(as_member.get_by_role("link", name=project)).to_be_visible()
        expect(as_member.get_by_test_id("admin-nav")).to_have_count(0)
        as_member.get_by_role("link", name=project).click()
        tabs = as_member.get_by_role("navigation", name="Project sections")
        expect(tabs.get_by_role("link", name="Members")).to_be_visible()
        expect(tabs.get_by_role("link", name="Configuration")).to_be_visible()
        expect(tabs.get_by_role("link", name="Logs")).to_have_count(0)
        expect(as_member.get_by_test_id("delete-project")).to_have_count(0)
        tabs.get_by_role("link", name="Members").click()
        expect(as_member.get_by_role("cell", name=user, exact=True)).to_be_visible()
        expect(as_member.get_by_test_id("new-member")).to_have_count(0)
        tabs.get_by_role("link", name="Robot accounts").click()
        expect(as_member.get_by_test_id("new-robot")).to_have_count(0)
        # Administration is hidden and its pages refuse the member.
        response = as_member.goto("/harbor/admin/users")
        assert response is not None and response.status == 403
        expect(as_member.get_by_role("heading", name="Error 403")).to_be_visible()
    finally:
        member.close()


def test_create_a_robot_copy_its_secret_and_push_with_it(
    page: Page, server: DockyardServer, skopeo: Skopeo, image: ImageInfo, screenshots: Path
) -> None:
    project = new_project(server)
    sign_in(page, "admin", server.admin_password)
    page.goto(f"/harbor/projects/{project}/robots")
    page.get_by_test_id("new-robot").click()
    page.get_by_label("Name", exact=True).fill("builder")
    expect(page.locator('input[value="repository:push"]')).to_be_checked()
    page.get_by_role("button", name="Create").click()
    expect(page.get_by_role("heading", name="Robot account secret")).to_be_visible()
    expect(page.get_by_test_id("robot-name")).to_contain_text(f"robot${project}+builder")
    page.get_by_role("button", name="Copy the secret").click()
    secret = page.evaluate("navigator.clipboard.readText()")
    assert len(secret) >= 20
    expect(page.get_by_role("link", name="Download as JSON")).to_have_attribute(
        "href", re.compile("^data:application/json")
    )
    push(skopeo, server, image, f"{project}/built:1", f"robot${project}+builder:{secret}")
    page.get_by_role("link", name="Done").click()
    expect(page.get_by_role("cell", name=f"robot${project}+builder")).to_be_visible()
    assert secret not in page.content()
    page.goto(f"/harbor/projects/{project}/repositories")
    expect(page.get_by_role("link", name=f"{project}/built")).to_be_visible()


def test_add_a_label_and_filter_by_it(
    page: Page, server: DockyardServer, skopeo: Skopeo, tmp_path: Path
) -> None:
    project = new_project(server)
    first = make_image_layout(tmp_path / "one", layers=1, layer_size=1024, tag="one")
    second = make_image_layout(tmp_path / "two", layers=1, layer_size=1024, tag="two")
    push(skopeo, server, first, f"{project}/svc:one", server.admin_creds)
    push(skopeo, server, second, f"{project}/svc:two", server.admin_creds)
    sign_in(page, "admin", server.admin_password)
    page.goto(f"/harbor/projects/{project}/labels")
    page.get_by_test_id("new-label").click()
    page.get_by_label("Label", exact=True).fill("production")
    page.get_by_role("button", name="Create").click()
    expect(page.get_by_role("status")).to_contain_text("Label production was created.")
    page.goto(f"/harbor/projects/{project}/repositories/svc/-/artifacts/one")
    page.get_by_label("Add label").select_option(label="production")
    page.get_by_role("button", name="Attach label").click()
    expect(page.get_by_role("status")).to_contain_text("The label was added.")
    page.goto(f"/harbor/projects/{project}/repositories/svc")
    page.get_by_label("Label", exact=True).select_option(label="production")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator('[data-tag="one"]')).to_be_visible()
    expect(page.locator('[data-tag="two"]')).to_have_count(0)


def test_delete_a_tag_after_confirming(
    page: Page, server: DockyardServer, skopeo: Skopeo, image: ImageInfo
) -> None:
    project = new_project(server)
    push(skopeo, server, image, f"{project}/tool:keep", server.admin_creds)
    push(skopeo, server, image, f"{project}/tool:drop", server.admin_creds)
    sign_in(page, "admin", server.admin_password)
    page.goto(f"/harbor/projects/{project}/repositories/tool")
    expect(page.locator('[data-tag="drop"]')).to_be_visible()
    page.get_by_test_id("delete-tag-drop").click()
    confirm = page.locator("details[open] .confirm-box")
    expect(confirm).to_contain_text("Delete tag drop?")
    confirm.get_by_role("button", name="Yes, do it").click()
    expect(page.get_by_role("status")).to_contain_text("drop was deleted")
    expect(page.locator('[data-tag="drop"]')).to_have_count(0)
    expect(page.locator('[data-tag="keep"]')).to_be_visible()
    with api(server) as client:
        tags = client.get(
            f"/api/v2.0/projects/{project}/repositories/tool/artifacts/{image.manifest_digest}/tags"
        ).json()
    assert [t["name"] for t in tags] == ["keep"]


def test_switch_to_chinese_and_back(page: Page, server: DockyardServer, screenshots: Path) -> None:
    sign_in(page, "admin", server.admin_password)
    page.get_by_role("link", name="简体中文").click()
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    expect(page.get_by_role("heading", name="项目")).to_be_visible()
    shoot(page, screenshots, "projects-zh")
    page.goto("/harbor/projects/demo")
    expect(page.get_by_role("link", name="镜像仓库")).to_be_visible()
    shoot(page, screenshots, "project-summary-zh")
    page.goto("/harbor/projects/demo/repositories/app")
    shoot(page, screenshots, "repository-zh")
    expect(page.get_by_role("columnheader", name="推送时间")).to_be_visible()
    page.get_by_role("link", name="English").click()
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page).to_have_url(re.compile(r"/harbor/projects/demo/repositories/app$"))
    expect(page.get_by_role("columnheader", name="Pushed")).to_be_visible()


def test_csrf_less_posts_are_refused(page: Page, server: DockyardServer) -> None:
    sign_in(page, "admin", server.admin_password)
    # A request with the session cookie but no token (what a forged cross-site form sends).
    response = page.request.post(
        f"{server.url}/harbor/projects", form={"project_name": "forged"}, max_redirects=0
    )
    assert response.status == 403
    # A real form without the token (neither the field nor the header htmx adds).
    page.goto("/harbor/projects")
    page.get_by_test_id("new-project").click()
    page.get_by_label("Project name").fill("forged2")
    page.evaluate(
        "document.querySelectorAll('input[name=_csrf]').forEach(e => e.remove());"
        "document.body.removeAttribute('hx-headers')"
    )
    page.get_by_role("button", name="Create").click()
    expect(page.get_by_role("heading", name="Error 403")).to_be_visible()
    with api(server) as client:
        for name in ("forged", "forged2"):
            assert client.get(f"/api/v2.0/projects/{name}").status_code == 404


def test_phone_sized_screen_and_dark_theme(
    browser: Browser, server: DockyardServer, screenshots: Path
) -> None:
    phone = browser.new_context(base_url=server.url, viewport=PHONE, color_scheme="dark")
    try:
        page = phone.new_page()
        sign_in(page, "admin", server.admin_password)
        sidebar = page.locator("#sidebar")
        expect(sidebar).to_be_hidden()
        page.get_by_role("button", name="Menu").click()
        expect(sidebar).to_be_visible()
        expect(sidebar.get_by_role("link", name="Audit log", exact=True)).to_be_visible()
        page.get_by_role("button", name="Menu").click()
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"], f"the page scrolls sideways ({width}px)"
        background = page.evaluate("getComputedStyle(document.body).backgroundColor")
        assert background == "rgb(15, 20, 26)"  # the dark theme followed the system
        shoot(page, screenshots, "projects-phone-dark")
        # The theme button flips what is shown (the system's dark here) and remembers it.
        page.get_by_role("link", name="Switch light/dark theme").click()
        expect(page.locator("html")).to_have_attribute("data-theme", "light")
        assert (
            page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(246, 248, 250)"
        )
        page.reload()
        expect(page.locator("html")).to_have_attribute("data-theme", "light")
        # Keyboard: the skip link is the first stop and is visible when focused.
        page.goto("/harbor/projects")
        page.keyboard.press("Tab")
        expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    finally:
        phone.close()
