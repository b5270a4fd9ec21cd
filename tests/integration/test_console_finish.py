"""The console's finish (issue 15) through the ASGI app on SQLite and PostgreSQL: artifact
kinds as labelled icons, the label ✕ beside its chip, robot permissions in words and the
robot form's default lifetime, texts said once and translated, the favicon."""

from __future__ import annotations

import html
import json
import re
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import event
from starlette.applications import Starlette
from tests.console.helpers import sign_in
from tests.integration.conftest import ADMIN_PASSWORD, make_client
from tests.integration.registry_helpers import OCI_INDEX, OCI_MANIFEST, push_image
from tests.integration.test_console_pages import flash, follow

from dockyard.http.state import AppState
from dockyard.iam.policy import Principal
from dockyard.system import overview


@pytest.fixture
async def console(app: Starlette) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    async with make_client(app) as client:
        yield client, await sign_in(client, "admin", ADMIN_PASSWORD)


@pytest.fixture
async def project(admin: httpx.AsyncClient) -> str:
    name = f"f{uuid.uuid4().hex[:10]}"
    response = await admin.post("/api/v2.0/projects", json={"project_name": name})
    assert response.status_code == 201
    return name


def detail(page: httpx.Response) -> str:
    found = re.search(r'data-testid="error-detail">(.*?)</p>', page.text, re.S)
    return html.unescape(found.group(1)) if found else ""


async def test_artifact_kinds_are_labelled_icons_and_a_label_x_sits_beside_its_chip(
    console: tuple[httpx.AsyncClient, str], project: str, admin: httpx.AsyncClient
) -> None:
    client, csrf = console
    repository = f"{project}/app"
    digest, manifest = await push_image(admin, repository, "v1")
    # the index's child is listed under its index (as Harbor lists it), so the image kind
    # is shown by a second, standalone image
    await push_image(admin, repository, "solo", seed=b"solo")
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": digest, "size": len(manifest)}],
    }
    pushed = await admin.put(
        f"/v2/{repository}/manifests/all",
        content=json.dumps(index).encode(),
        headers={"Content-Type": OCI_INDEX},
    )
    assert pushed.status_code == 201, pushed.text
    for language, image, index_word in (("en", "Image", "Index"), ("zh-CN", "镜像", "镜像索引")):
        client.cookies.set("dy_lang", language)
        page = await client.get(f"/harbor/projects/{project}/repositories/app")
        kinds = re.findall(r'data-kind="(\w+)"><svg[^>]*>.*?</svg>([^<]+)</span>', page.text, re.S)
        assert sorted(kinds) == sorted([("image", image), ("index", index_word)]), kinds
        assert "type-icon" not in page.text  # the old blue square
    client.cookies.delete("dy_lang")
    # A label attached to the artifact: its remove button is in the chip's own element
    # (a <form> inside a <p> used to close the paragraph and drop the ✕ to a new line).
    made = await client.post(
        f"/harbor/projects/{project}/labels",
        data={"_csrf": csrf, "name": "prod", "color": "#00aa00"},
    )
    await follow(client, made)
    project_id = (await admin.get(f"/api/v2.0/projects/{project}")).json()["project_id"]
    label = (
        await admin.get("/api/v2.0/labels", params={"scope": "p", "project_id": project_id})
    ).json()[0]
    artifact = f"/harbor/projects/{project}/repositories/app/-/artifacts/{digest}"
    await follow(
        client,
        await client.post(f"{artifact}/labels", data={"_csrf": csrf, "label_id": str(label["id"])}),
    )
    page = await client.get(artifact)
    chip = re.search(
        r'<span class="chip-item" data-label-chip="prod">(.*?)</span>\s*</div>', page.text, re.S
    )
    assert chip is not None, page.text
    assert "prod" in chip.group(1) and "✕</button></form>" in chip.group(1)
    assert "<p>{% for label" not in page.text and '<p><span class="label-chip' not in page.text
    assert re.search(r'data-kind="image"', page.text)


async def test_robot_permissions_in_words_and_the_lifetime_default_from_the_setting(
    console: tuple[httpx.AsyncClient, str], project: str, admin: httpx.AsyncClient
) -> None:
    client, csrf = console
    changed = await admin.put("/api/v2.0/configurations", json={"robot_token_duration": 45})
    assert changed.status_code == 200, changed.text
    try:
        for path in (f"/harbor/projects/{project}/robots", "/harbor/admin/robots"):
            client.cookies.set("dy_lang", "en")
            page = await client.get(path)
            assert 'name="duration" inputmode="numeric" value="45"' in page.text
            assert "(45 days)" in page.text
            rows = re.findall(r'<th scope="row">([^<]+)</th>', page.text)
            assert rows and not [row for row in rows if re.fullmatch(r"[a-z-]+", row)], rows
            assert "> Read</label>" in page.text or "> Pull</label>" in page.text
            client.cookies.set("dy_lang", "zh-CN")
            page = await client.get(path)
            rows = re.findall(r'<th scope="row">([^<]+)</th>', page.text)
            assert "项目" in rows or "仓库" in rows, rows
        client.cookies.set("dy_lang", "en")
        page = await client.get(f"/harbor/projects/{project}/robots")
        assert '<th scope="row">Repositories</th>' in page.text and "> Pull</label>" in page.text
        client.cookies.delete("dy_lang")
        # Left blank, the lifetime is the setting's, as through the API.
        created = await client.post(
            f"/harbor/projects/{project}/robots",
            data={"_csrf": csrf, "name": "ci", "duration": "", "perm": ["repository:pull"]},
        )
        assert created.status_code == 200, created.text
        project_id = (await admin.get(f"/api/v2.0/projects/{project}")).json()["project_id"]
        robots = await admin.get(
            "/api/v2.0/robots", params={"q": f"Level=project,ProjectID={project_id}"}
        )
        (robot,) = robots.json()
        assert robot["duration"] == 45
    finally:
        await admin.put("/api/v2.0/configurations", json={"robot_token_duration": 30})


async def test_texts_said_once_and_translated(
    console: tuple[httpx.AsyncClient, str], project: str, admin: httpx.AsyncClient
) -> None:
    client, csrf = console
    await push_image(admin, f"{project}/app", "v1")
    refused = await client.post(f"/harbor/projects/{project}/delete", data={"_csrf": csrf})
    said = flash(await follow(client, refused))
    assert said.count("delete") == 2 and "can not be deleted" not in said, (
        said
    )  # once, and "delete them"
    client.cookies.set("dy_lang", "zh-CN")
    refused = await client.post(f"/harbor/projects/{project}/delete", data={"_csrf": csrf})
    assert flash(await follow(client, refused)) == "项目中仍有仓库，无法删除；请先删除这些仓库。"
    # The 404 page says what was not found in the reader's language.
    missing = await client.get("/harbor/projects/no-such-project")
    assert missing.status_code == 404
    assert detail(missing) == "找不到项目 no-such-project。"
    missing = await client.get(f"/harbor/projects/{project}/repositories/nope")
    assert missing.status_code == 404 and detail(missing) == "找不到仓库 nope。", detail(missing)
    missing = await client.get(f"/harbor/projects/{project}/repositories/app/-/artifacts/v9")
    assert missing.status_code == 404 and detail(missing) == "找不到制品 app:v9。", detail(missing)
    missing = await client.get("/harbor/no/such/page")
    assert missing.status_code == 404 and detail(missing) == "控制台没有页面 /harbor/no/such/page。"
    client.cookies.set("dy_lang", "en")
    missing = await client.get("/harbor/projects/no-such-project")
    assert detail(missing) == "The project no-such-project was not found."
    client.cookies.delete("dy_lang")


async def test_the_favicon_is_served(app: Starlette) -> None:
    async with make_client(app) as client:
        icon = await client.get("/favicon.ico")
        assert icon.status_code == 200
        assert icon.headers["content-type"] == "image/x-icon"
        assert icon.content[:4] == b"\x00\x00\x01\x00"  # an ICO header
        page = await client.get("/harbor/sign-in")
        assert '<link rel="icon" href="/favicon.ico"' in page.text


PASSWORD = "Passw0rd!x"


async def _new_user(admin: httpx.AsyncClient) -> tuple[str, int]:
    name = f"u{uuid.uuid4().hex[:8]}"
    made = await admin.post(
        "/api/v2.0/users",
        json={
            "username": name,
            "email": f"{name}@example.org",
            "realname": name,
            "password": PASSWORD,
        },
    )
    assert made.status_code == 201, made.text
    user_id = int(made.headers["location"].rsplit("/", 1)[1])
    return name, user_id


async def test_the_dashboard_is_the_landing_page(
    app: Starlette, console: tuple[httpx.AsyncClient, str], project: str, admin: httpx.AsyncClient
) -> None:
    client, _ = console
    assert (await client.get("/")).headers["location"] == "/harbor/dashboard"
    await push_image(admin, f"{project}/app", "v1")
    await push_image(admin, f"{project}/app", "v2", seed=b"two")
    other = f"o{uuid.uuid4().hex[:10]}"
    assert (await admin.post("/api/v2.0/projects", json={"project_name": other})).status_code == 201
    await push_image(admin, f"{other}/hidden", "secret")
    # A member sees their project, its pushes (newest first) and its storage; not the other's.
    name, _ = await _new_user(admin)
    added = await admin.post(
        f"/api/v2.0/projects/{project}/members",
        json={"role_id": 3, "member_user": {"username": name}},
    )
    assert added.status_code == 201, added.text
    async with make_client(app) as member:
        await sign_in(member, name, PASSWORD)
        for language, title in (("en", "Overview"), ("zh-CN", "概览")):
            member.cookies.set("dy_lang", language)
            page = await member.get("/harbor/dashboard")
            assert page.status_code == 200
            assert f"<h1>{title}</h1>" in page.text
        member.cookies.delete("dy_lang")
        page = await member.get("/harbor/dashboard")
        assert re.search(r'data-testid="my-project-count">1<', page.text)
        pushes = page.text.split('data-testid="recent-pushes"')[1]
        assert pushes.index(">v2<") < pushes.index(">v1<")
        assert f"{project}/app" in pushes and other not in page.text
        assert 'data-testid="system-users"' not in page.text
        assert 'data-testid="dashboard-queues"' not in page.text
        storage = re.search(r'data-testid="my-storage">([^<]+)<', page.text)
        assert storage is not None and storage.group(1) != "0\u00a0B"
    # An administrator also sees the system's totals and the job queues.
    page = await client.get("/harbor/dashboard")
    assert (
        'data-testid="system-users"' in page.text and 'data-testid="dashboard-queues"' in page.text
    )
    assert 'data-testid="system-repositories"' in page.text
    assert 'aria-current="page">Overview<' in page.text.replace('data-nav="dashboard" ', "")


async def test_the_overview_takes_a_few_indexed_queries(
    state: AppState, project: str, admin: httpx.AsyncClient
) -> None:
    for n in range(3):
        await push_image(admin, f"{project}/r{n}", "v1", seed=str(n).encode())
    principal = Principal(kind="user", name="admin", user_id=1, sysadmin=True)
    statements: list[tuple[str, object]] = []

    def record(conn: object, cursor: object, statement: str, params: object, *_: object) -> None:
        statements.append((statement, params))

    async with state.db.read() as session:
        connection = await session.connection()
        event.listen(connection.sync_connection, "before_cursor_execute", record)
        try:
            seen = await overview.overview(session, principal)
        finally:
            event.remove(connection.sync_connection, "before_cursor_execute", record)
        assert seen.pushes and seen.projects
        assert len(statements) <= 6, [s for s, _ in statements]
        if state.db.dialect == "sqlite":
            # Every read of the artifact table is an index search, never a scan.
            for statement, params in statements:
                if " artifact" not in statement:
                    continue
                plan = await connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", params)
                details = " | ".join(str(row[-1]) for row in plan)
                assert "SCAN artifact" not in details, details
