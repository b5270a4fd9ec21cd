"""Console pages through the ASGI app on SQLite and PostgreSQL: every page answers, hostile
names are escaped, and the repository/artifact pages show and change what was pushed."""

from __future__ import annotations

import html
import json
import re
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette
from tests.console.helpers import sign_in
from tests.integration.conftest import ADMIN_PASSWORD, make_client
from tests.integration.registry_helpers import (
    OCI_INDEX,
    OCI_MANIFEST,
    digest_of,
    image_manifest,
    push_blob,
    push_image,
)

HOSTILE = "<script>alert(1)</script>"


@pytest.fixture
async def console(app: Starlette) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    async with make_client(app) as client:
        yield client, await sign_in(client, "admin", ADMIN_PASSWORD)


@pytest.fixture
async def project(admin: httpx.AsyncClient) -> str:
    name = f"c{uuid.uuid4().hex[:10]}"
    response = await admin.post("/api/v2.0/projects", json={"project_name": name})
    assert response.status_code == 201
    return name


def flash(page: httpx.Response) -> str:
    found = re.search(r'<div class="flash[^"]*"[^>]*>(.*?)</div>', page.text, re.S)
    return html.unescape(found.group(1)) if found else ""


async def follow(client: httpx.AsyncClient, response: httpx.Response) -> httpx.Response:
    assert response.status_code == 303, response.text
    return await client.get(response.headers["location"])


async def test_every_page_answers(
    console: tuple[httpx.AsyncClient, str], project: str, admin: httpx.AsyncClient
) -> None:
    client, _ = console
    await push_image(admin, f"{project}/app")
    digest = (await admin.get(f"/api/v2.0/projects/{project}/repositories/app/artifacts")).json()[
        0
    ]["digest"]
    pages = [
        "/harbor/dashboard",
        "/harbor/projects",
        "/harbor/projects?q=c&sort=-created&page=1",
        f"/harbor/projects/{project}",
        f"/harbor/projects/{project}/repositories",
        f"/harbor/projects/{project}/repositories/app",
        f"/harbor/projects/{project}/repositories/app/-/artifacts/{digest}",
        f"/harbor/projects/{project}/repositories/app/-/artifacts/latest",
        f"/harbor/projects/{project}/repositories/app/-/artifacts/latest/vulnerabilities",
        f"/harbor/projects/{project}/scanner",
        f"/harbor/projects/{project}/cve-export",
        f"/harbor/projects/{project}/members",
        f"/harbor/projects/{project}/robots",
        f"/harbor/projects/{project}/labels",
        f"/harbor/projects/{project}/immutability",
        f"/harbor/projects/{project}/logs",
        f"/harbor/projects/{project}/configuration",
        "/harbor/account/profile",
        "/harbor/admin/users",
        "/harbor/admin/groups",
        "/harbor/admin/robots",
        "/harbor/admin/labels",
        "/harbor/admin/audit-logs?username=admin&operation=create",
        "/harbor/admin/configuration",
        "/harbor/admin/system",
        "/harbor/admin/quotas",
        "/harbor/admin/interrogation-services",
        "/harbor/admin/cve-allowlist",
        "/harbor/admin/security-hub",
        "/harbor/admin/security-hub?severity=High&cvss_from=1&cvss_to=x&tag=a,b",
    ]
    for path in pages:
        for language in ("en", "zh-CN"):
            client.cookies.set("dy_lang", language)
            response = await client.get(path)
            assert response.status_code == 200, f"{path}: {response.status_code}"
            assert response.headers["content-type"].startswith("text/html")
            assert response.headers["cache-control"] == "no-store"
            assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
            assert response.headers["x-frame-options"] == "DENY"
    client.cookies.delete("dy_lang")
    # Nonsense in the query never breaks a page.
    vulnerabilities = (
        f"/harbor/projects/{project}/repositories/app/-/artifacts/latest/vulnerabilities"
    )
    for path in [
        "/harbor/projects?page=-1&sort=%00",
        f"/harbor/projects/{project}/logs?page=x",
        f"{vulnerabilities}?sort=%00&severity=x&q=%ff&page=-3",
    ]:
        assert (await client.get(path)).status_code == 200
    assert (await client.get("/harbor/projects/no-such-project")).status_code == 404
    assert (await client.get("/harbor/no/such/page")).status_code == 404
    # The other faces still answer at their paths.
    assert (await client.get("/api/v2.0/ping")).status_code == 200
    assert (await client.get("/v2/")).status_code == 401
    assert (await client.get("/")).headers["location"] == "/harbor/dashboard"


async def test_hostile_names_are_escaped(
    console: tuple[httpx.AsyncClient, str], project: str, admin: httpx.AsyncClient
) -> None:
    client, csrf = console
    response = await client.post(
        f"/harbor/projects/{project}/labels",
        data={"_csrf": csrf, "name": f"x{HOSTILE}"[:128], "color": "#ff0000"},
    )
    labels = await follow(client, response)
    assert HOSTILE not in labels.text
    assert html.escape(HOSTILE, quote=False) in labels.text.replace("&#39;", "'")
    # A repository description in Markdown: raw HTML and javascript: links are not rendered.
    await push_image(admin, f"{project}/doc")
    description = f"# Title\n\n{HOSTILE}\n\n[click](javascript:alert(1)) **bold**"
    saved = await client.post(
        f"/harbor/projects/{project}/repositories/doc/-/description",
        data={"_csrf": csrf, "description": description},
    )
    page = await follow(client, saved)
    assert "<h1>Title</h1>" in page.text
    assert "<strong>bold</strong>" in page.text
    assert HOSTILE not in page.text
    assert 'href="javascript:' not in page.text
    # A refused action's reason (which may echo user input) is escaped in the flash message.
    refused = await client.post(
        f"/harbor/projects/{project}/members",
        data={
            "_csrf": csrf,
            "kind": "user",
            "name": HOSTILE,
            "role_id": "2",
            "_back": "/harbor/projects",
        },
    )
    shown = await follow(client, refused)
    assert HOSTILE not in shown.text
    assert "not found" in flash(shown)


async def test_artifacts_tags_and_labels(
    console: tuple[httpx.AsyncClient, str], project: str, admin: httpx.AsyncClient
) -> None:
    client, csrf = console
    digest, _ = await push_image(admin, f"{project}/web", "v1")
    await push_image(admin, f"{project}/web", "v2", seed=b"two")
    repo = f"/harbor/projects/{project}/repositories/web"
    page = await client.get(repo)
    assert 'data-tag="v1"' in page.text and 'data-tag="v2"' in page.text
    assert f"docker pull registry.test/{project}/web:v1" in page.text
    by_tag = await client.get(repo, params={"tag": "v2"})
    assert 'data-tag="v2"' in by_tag.text and 'data-tag="v1"' not in by_tag.text
    nothing = await client.get(repo, params={"tag": "nope"})
    assert "No artifact matches the filter." in nothing.text
    # Add a tag on the artifact page, then delete it (the confirmation is a form of its own).
    artifact = f"{repo}/-/artifacts/{digest}"
    detail = await client.get(artifact)
    assert '"schemaVersion": 2' in html.unescape(detail.text)
    added = await client.post(
        f"{artifact}/tags", data={"_csrf": csrf, "tag": "stable", "_back": repo}
    )
    assert "stable" in flash(await follow(client, added))
    tags = await admin.get(f"/api/v2.0/projects/{project}/repositories/web/artifacts/{digest}/tags")
    assert sorted(t["name"] for t in tags.json()) == ["stable", "v1"]
    deleted = await client.post(
        f"{artifact}/tags/delete", data={"_csrf": csrf, "tag": "stable", "_back": repo}
    )
    assert "stable" in flash(await follow(client, deleted))
    tags = await admin.get(f"/api/v2.0/projects/{project}/repositories/web/artifacts/{digest}/tags")
    assert [t["name"] for t in tags.json()] == ["v1"]
    # A label, attached on the artifact page, filters the list.
    made = await client.post(
        f"/harbor/projects/{project}/labels",
        data={"_csrf": csrf, "name": "prod", "color": "#00aa00"},
    )
    await follow(client, made)
    label_id = (
        await admin.get(
            "/api/v2.0/labels",
            params={"scope": "p", "project_id": await _project_id(admin, project)},
        )
    ).json()[0]["id"]
    attached = await client.post(
        f"{artifact}/labels", data={"_csrf": csrf, "label_id": str(label_id), "_back": artifact}
    )
    await follow(client, attached)
    filtered = await client.get(repo, params={"label": str(label_id)})
    assert 'data-tag="v1"' in filtered.text and 'data-tag="v2"' not in filtered.text
    # The project cannot be deleted while it holds repositories; the page says why.
    refused = await client.post(f"/harbor/projects/{project}/delete", data={"_csrf": csrf})
    assert "cannot be deleted" in flash(await follow(client, refused))
    # Deleting the artifact.
    gone = await client.post(f"{artifact}/delete", data={"_csrf": csrf})
    await follow(client, gone)
    listed = await admin.get(f"/api/v2.0/projects/{project}/repositories/web/artifacts")
    assert digest not in [a["digest"] for a in listed.json()]


async def _project_id(admin: httpx.AsyncClient, name: str) -> int:
    project_id: int = (await admin.get(f"/api/v2.0/projects/{name}")).json()["project_id"]
    return project_id


async def test_robot_secret_is_shown_once(
    console: tuple[httpx.AsyncClient, str], project: str, app: Starlette
) -> None:
    client, csrf = console
    created = await client.post(
        f"/harbor/projects/{project}/robots",
        data={"_csrf": csrf, "name": "ci", "perm": ["repository:pull", "repository:push"]},
    )
    assert created.status_code == 200
    secret = re.search(r'data-testid="robot-secret".*?data-copy="([^"]+)"', created.text, re.S)
    assert secret is not None
    name = f"robot${project}+ci"
    # The secret works on the registry…
    async with make_client(app, (name, secret.group(1))) as robot:
        await push_image(robot, f"{project}/by-robot")
    # …and appears on no page after.
    listing = await client.get(f"/harbor/projects/{project}/robots")
    assert name in listing.text
    assert secret.group(1) not in listing.text


async def test_language_and_theme_preferences(console: tuple[httpx.AsyncClient, str]) -> None:
    client, _ = console
    switched = await client.get("/harbor/preferences?lang=zh-CN&next=/harbor/account/profile")
    assert switched.status_code == 303
    assert switched.headers["location"] == "/harbor/account/profile"
    page = await client.get("/harbor/account/profile")
    assert '<html lang="zh-CN"' in page.text and "用户设置" in page.text
    back = await client.get("/harbor/preferences?lang=en&next=https://evil.example/")
    assert back.headers["location"] == "/harbor/projects"
    page = await client.get("/harbor/account/profile")
    assert "User profile" in page.text
    await client.get("/harbor/preferences?theme=dark&next=/harbor/projects")
    assert 'data-theme="dark"' in (await client.get("/harbor/projects")).text


async def test_browser_language_is_the_default(app: Starlette) -> None:
    async with make_client(app) as client:
        page = await client.get("/harbor/sign-in", headers={"Accept-Language": "zh-CN,zh;q=0.9"})
        assert "登录" in page.text


async def test_copy_an_artifact_to_another_project(
    console: tuple[httpx.AsyncClient, str], project: str, admin: httpx.AsyncClient
) -> None:
    client, csrf = console
    digest, _ = await push_image(admin, f"{project}/src", "v1")
    target = f"c{uuid.uuid4().hex[:10]}"
    assert (
        await admin.post("/api/v2.0/projects", json={"project_name": target})
    ).status_code == 201
    copied = await client.post(
        f"/harbor/projects/{project}/repositories/src/-/artifacts/{digest}/copy",
        data={"_csrf": csrf, "target_project": target, "target_repository": "copied"},
    )
    assert copied.headers["location"] == f"/harbor/projects/{target}/repositories/copied"
    listed = await admin.get(f"/api/v2.0/projects/{target}/repositories/copied/artifacts")
    assert [a["digest"] for a in listed.json()] == [digest]


async def test_profile_and_password(app: Starlette, admin: httpx.AsyncClient) -> None:
    name, password = f"u{uuid.uuid4().hex[:10]}", "Passw0rd!x"
    created = await admin.post(
        "/api/v2.0/users",
        json={
            "username": name,
            "email": f"{name}@example.org",
            "realname": "R",
            "password": password,
        },
    )
    assert created.status_code == 201
    async with make_client(app) as client:
        csrf = await sign_in(client, name, password)
        saved = await client.post(
            "/harbor/account/profile",
            data={
                "_csrf": csrf,
                "email": f"{name}@example.net",
                "realname": "New Name",
                "comment": "",
            },
        )
        page = await follow(client, saved)
        assert flash(page) == "Your profile was saved."
        assert 'value="New Name"' in page.text
        wrong = await client.post(
            "/harbor/account/password",
            data={
                "_csrf": csrf,
                "old_password": "nope",
                "new_password": "Xx1xxxxxxx",
                "confirm_password": "Xx1xxxxxxx",
            },
        )
        assert flash(await follow(client, wrong)) == "The current password is not correct."
        changed = await client.post(
            "/harbor/account/password",
            data={
                "_csrf": csrf,
                "old_password": password,
                "new_password": "Newpassw0rd",
                "confirm_password": "Newpassw0rd",
            },
        )
        assert flash(await follow(client, changed)) == "Your password was changed."
    async with make_client(app) as client:
        await sign_in(client, name, "Newpassw0rd")


async def test_administrators_manage_users(
    console: tuple[httpx.AsyncClient, str], admin: httpx.AsyncClient, app: Starlette
) -> None:
    client, csrf = console
    name = f"u{uuid.uuid4().hex[:10]}"
    created = await client.post(
        "/harbor/admin/users",
        data={
            "_csrf": csrf,
            "username": name,
            "email": f"{name}@example.org",
            "realname": "N",
            "password": "Passw0rd!x",
        },
    )
    assert flash(await follow(client, created)) == f"User {name} was created."
    user_id = (await admin.get("/api/v2.0/users", params={"q": f"username={name}"})).json()[0][
        "user_id"
    ]
    granted = await client.post(f"/harbor/admin/users/{user_id}/grant-admin", data={"_csrf": csrf})
    await follow(client, granted)
    assert (await admin.get(f"/api/v2.0/users/{user_id}")).json()["sysadmin_flag"] is True
    reset = await client.post(
        f"/harbor/admin/users/{user_id}/password", data={"_csrf": csrf, "password": "Reset1passw"}
    )
    await follow(client, reset)
    async with make_client(app) as other:
        await sign_in(other, name, "Reset1passw")
        assert 'data-testid="admin-nav"' in (await other.get("/harbor/projects")).text
    deleted = await client.post(f"/harbor/admin/users/{user_id}/delete", data={"_csrf": csrf})
    await follow(client, deleted)
    assert (await admin.get(f"/api/v2.0/users/{user_id}")).status_code == 404


async def test_groups_become_members_by_exact_name(
    console: tuple[httpx.AsyncClient, str], project: str, admin: httpx.AsyncClient
) -> None:
    client, csrf = console
    stem = f"g{uuid.uuid4().hex[:8]}"
    for name in (f"{stem}-long", stem):
        made = await client.post(
            "/harbor/admin/groups", data={"_csrf": csrf, "group_name": name, "group_type": "2"}
        )
        assert flash(await follow(client, made)) == f"User group {name} was created."
    added = await client.post(
        f"/harbor/projects/{project}/members",
        data={"_csrf": csrf, "kind": "group", "name": stem, "role_id": "4"},
    )
    await follow(client, added)
    members = (await admin.get(f"/api/v2.0/projects/{project}/members")).json()
    groups = [(m["entity_name"], m["role_id"]) for m in members if m["entity_type"] == "g"]
    assert groups == [(stem, 4)]
    member_id = next(m["id"] for m in members if m["entity_type"] == "g")
    changed = await client.post(
        f"/harbor/projects/{project}/members/{member_id}/role",
        data={"_csrf": csrf, "role_id": "2"},
    )
    await follow(client, changed)
    member = await admin.get(f"/api/v2.0/projects/{project}/members/{member_id}")
    assert member.json()["role_id"] == 2
    removed = await client.post(
        f"/harbor/projects/{project}/members/{member_id}/delete", data={"_csrf": csrf}
    )
    await follow(client, removed)
    gone = await admin.get(f"/api/v2.0/projects/{project}/members/{member_id}")
    assert gone.status_code == 404


async def test_project_list_pages_and_answers_htmx_with_the_table_only(
    console: tuple[httpx.AsyncClient, str], admin: httpx.AsyncClient
) -> None:
    client, _ = console
    stem = f"pg{uuid.uuid4().hex[:6]}"
    for i in range(17):
        created = await admin.post("/api/v2.0/projects", json={"project_name": f"{stem}-{i:02d}"})
        assert created.status_code == 201
    first = await client.get("/harbor/projects", params={"q": stem})
    assert first.text.count(f">{stem}-") == 15
    assert "1–15 of 17" in html.unescape(first.text)
    second = await client.get("/harbor/projects", params={"q": stem, "page": "2"})
    assert second.text.count(f">{stem}-") == 2
    newest = await client.get("/harbor/projects", params={"q": stem, "sort": "-name"})
    assert newest.text.index(f">{stem}-16<") < newest.text.index(f">{stem}-15<")
    partial = await client.get(
        "/harbor/projects",
        params={"q": stem},
        headers={"HX-Request": "true", "HX-Target": "project-table"},
    )
    assert partial.text.lstrip().startswith('<div id="project-table">')
    assert "<html" not in partial.text


async def test_administrators_set_project_quotas(
    console: tuple[httpx.AsyncClient, str], project: str, admin: httpx.AsyncClient
) -> None:
    client, csrf = console
    project_id = await _project_id(admin, project)
    quotas = (await admin.get("/api/v2.0/quotas", params={"reference_id": str(project_id)})).json()
    quota_id = quotas[0]["id"]
    page = await client.get("/harbor/admin/quotas", params={"sort": "used"})
    assert page.status_code == 200
    saved = await client.post(
        f"/harbor/admin/quotas/{quota_id}",
        data={"_csrf": csrf, "limit_gib": "1.5", "_back": "/harbor/admin/quotas"},
    )
    assert flash(await follow(client, saved)) == "The quota was saved."
    quota = (await admin.get(f"/api/v2.0/quotas/{quota_id}")).json()
    assert quota["hard"]["storage"] == int(1.5 * 1024**3)
    refused = await client.post(
        f"/harbor/admin/quotas/{quota_id}",
        data={"_csrf": csrf, "limit_gib": "lots", "_back": "/harbor/admin/quotas"},
    )
    assert "number of GiB" in flash(await follow(client, refused))


async def test_member_name_suggestions(
    console: tuple[httpx.AsyncClient, str], project: str, admin: httpx.AsyncClient, app: Starlette
) -> None:
    client, _ = console
    name = f"sugg{uuid.uuid4().hex[:8]}"
    created = await admin.post(
        "/api/v2.0/users",
        json={
            "username": name,
            "email": f"{name}@example.org",
            "realname": "S",
            "password": "Passw0rd!x",
        },
    )
    assert created.status_code == 201
    url = f"/harbor/projects/{project}/members/suggestions"
    found = await client.get(url, params={"name": name[:8], "kind": "user"})
    assert found.status_code == 200
    assert f'<option value="{name}">' in found.text
    assert found.text.startswith('<datalist id="member-suggestions">')
    assert "<option" not in (await client.get(url, params={"name": "x"})).text  # too short
    # Only those who may add members get suggestions.
    async with make_client(app) as other:
        await sign_in(other, name, "Passw0rd!x")
        assert (await other.get(url, params={"name": "adm"})).status_code == 404
        public = await other.get(
            "/harbor/projects/library/members/suggestions", params={"name": "adm"}
        )
        assert public.status_code == 403


async def test_an_index_shows_its_platforms(
    console: tuple[httpx.AsyncClient, str], project: str, admin: httpx.AsyncClient
) -> None:
    client, _ = console
    repository = f"{project}/multi"
    children = []
    for arch in ("amd64", "arm64"):
        digest, manifest = await push_image(admin, repository, None, seed=arch.encode())
        children.append(
            {
                "mediaType": OCI_MANIFEST,
                "digest": digest,
                "size": len(manifest),
                "platform": {"os": "linux", "architecture": arch},
            }
        )
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children}).encode()
    pushed = await admin.put(
        f"/v2/{repository}/manifests/v1", content=index, headers={"Content-Type": OCI_INDEX}
    )
    assert pushed.status_code == 201, pushed.text
    page = await client.get(f"/harbor/projects/{project}/repositories/multi")
    assert "linux/amd64" in page.text and "linux/arm64" in page.text
    assert page.text.count('class="child"') == 2
    detail = await client.get(f"/harbor/projects/{project}/repositories/multi/-/artifacts/v1")
    for child in children:
        assert child["digest"] in detail.text


async def test_signatures_and_sboms_nest_under_their_subject(
    console: tuple[httpx.AsyncClient, str], project: str, admin: httpx.AsyncClient
) -> None:
    client, _ = console
    repository = f"{project}/signed"
    subject, manifest = await push_image(admin, repository, "v1")
    for artifact_type, seed in (
        ("application/vnd.dev.cosign.artifact.sig.v1+json", b"sig"),
        ("application/vnd.goharbor.harbor.sbom.v1", b"sbom"),
    ):
        config = b"{}"
        config_digest = await push_blob(admin, repository, config)
        layer = seed + repository.encode()
        layer_digest = await push_blob(admin, repository, layer)
        body = image_manifest(
            (config_digest, len(config)),
            [(layer_digest, len(layer))],
            subject=(subject, len(manifest)),
            artifact_type=artifact_type,
        )
        pushed = await admin.put(
            f"/v2/{repository}/manifests/{digest_of(body)}",
            content=body,
            headers={"Content-Type": OCI_MANIFEST},
        )
        assert pushed.status_code == 201, pushed.text
    page = await client.get(f"/harbor/projects/{project}/repositories/signed")
    assert page.text.count('class="child accessory"') == 2
    assert "Cosign signature" in page.text and ">SBOM<" in page.text
    detail = await client.get(f"/harbor/projects/{project}/repositories/signed/-/artifacts/v1")
    assert "Cosign signature" in detail.text


async def test_labels_are_edited_in_place(
    console: tuple[httpx.AsyncClient, str], project: str, admin: httpx.AsyncClient
) -> None:
    client, csrf = console
    project_id = await _project_id(admin, project)
    made = await client.post(
        f"/harbor/projects/{project}/labels",
        data={"_csrf": csrf, "name": "old", "color": "#111111"},
    )
    await follow(client, made)
    listed = await admin.get("/api/v2.0/labels", params={"scope": "p", "project_id": project_id})
    label_id = listed.json()[0]["id"]
    saved = await client.post(
        f"/harbor/projects/{project}/labels/{label_id}/update",
        data={"_csrf": csrf, "name": "new", "color": "#22aa22", "description": "d"},
    )
    assert flash(await follow(client, saved)) == "The label was saved."
    label = (await admin.get(f"/api/v2.0/labels/{label_id}")).json()
    assert (label["name"], label["color"], label["description"]) == ("new", "#22aa22", "d")
    # A project label cannot be edited through another project or the global page.
    other = f"c{uuid.uuid4().hex[:10]}"
    assert (await admin.post("/api/v2.0/projects", json={"project_name": other})).status_code == 201
    wrong = await client.post(
        f"/harbor/projects/{other}/labels/{label_id}/update",
        data={"_csrf": csrf, "name": "hijack", "_back": f"/harbor/projects/{other}/labels"},
    )
    assert "not one of this project's" in flash(await follow(client, wrong))
    wrong = await client.post(
        f"/harbor/admin/labels/{label_id}/update",
        data={"_csrf": csrf, "name": "hijack", "_back": "/harbor/admin/labels"},
    )
    assert "edit it in its project" in flash(await follow(client, wrong))
    assert (await admin.get(f"/api/v2.0/labels/{label_id}")).json()["name"] == "new"


async def test_features_dockyard_lacks_are_not_offered(
    console: tuple[httpx.AsyncClient, str], project: str
) -> None:
    """No robot permission of a missing feature (P2P preheat), no LDAP group type while
    the registry does not sign in with LDAP: the API refuses them (400), so the console
    does not offer them. Scanning and content trust are built, so their switches are
    offered (test_browser_scanning.py, test_console_content_trust.py)."""
    client, _ = console
    configuration = (await client.get(f"/harbor/projects/{project}/configuration")).text
    assert 'name="public"' in configuration
    for switch in ("auto_scan", "prevent_vul", "auto_sbom_generation"):
        assert f'name="{switch}"' in configuration
    offered = {
        f"/harbor/projects/{project}/robots": "repository:pull",
        "/harbor/admin/robots": "catalog:read",
    }
    for page, present in offered.items():
        text = (await client.get(page)).text
        assert f'value="{present}"' in text, page
        for resource in ("preheat-policy", "preheat-instance"):
            assert f'value="{resource}:' not in text, (page, resource)
    groups = (await client.get("/harbor/admin/groups")).text
    assert '<option value="2"' in groups and '<option value="1"' not in groups


async def test_run_time_items_on_the_configuration_page(
    console: tuple[httpx.AsyncClient, str], admin: httpx.AsyncClient
) -> None:
    """token_expiration, session_timeout, robot_name_prefix and quota_per_project_enable
    are edited there, LDAP, OIDC and the HTTP auth proxy in the authentication section;
    items of missing features (UAA…) are not listed."""
    client, csrf = console
    page = (await client.get("/harbor/admin/configuration")).text
    assert 'name="token_expiration"' in page and 'name="session_timeout"' in page
    assert 'name="robot_name_prefix" value="robot$"' in page
    assert 'name="quota_per_project_enable" checked' in page
    assert 'name="read_only" >' in page  # offered, off
    assert 'name="ldap_url"' in page and 'name="http_authproxy_endpoint"' in page
    assert 'name="oidc_endpoint"' in page and 'name="oidc_client_secret"' in page
    assert "uaa_endpoint" not in page
    before = (await admin.get("/api/v2.0/configurations")).json()
    items = {k: v["value"] for k, v in before.items()}
    form = {
        "_csrf": csrf,
        "project_creation_restriction": items["project_creation_restriction"],
        "robot_token_duration": str(items["robot_token_duration"]),
        "storage_per_project": str(items["storage_per_project"]),
        "banner_message": items["banner_message"],
        "disabled_audit_log_event_types": items["disabled_audit_log_event_types"],
        "notification_enable": "on",
        "quota_per_project_enable": "on",
        "token_expiration": "12",
        "session_timeout": "45",
        "robot_name_prefix": "web$",
        **({"self_registration": "on"} if items["self_registration"] else {}),
    }
    try:
        assert (await client.post("/harbor/admin/configuration", data=form)).status_code == 303
        after = (await admin.get("/api/v2.0/configurations")).json()
        assert after["token_expiration"]["value"] == 12
        assert after["session_timeout"]["value"] == 45
        assert after["robot_name_prefix"]["value"] == "web$"
        assert after["quota_per_project_enable"]["value"] is True
        client.cookies.set("dy_lang", "en")
        shown = (await client.get("/harbor/admin/system")).text
        assert "45 minutes" in shown
        assert after["read_only"]["value"] is False
        read_only = {**form, "read_only": "on"}
        assert (await client.post("/harbor/admin/configuration", data=read_only)).status_code == 303
        assert (await admin.get("/api/v2.0/configurations")).json()["read_only"]["value"] is True
        page = (await client.get("/harbor/admin/configuration")).text
        assert 'name="read_only" checked' in page
    finally:
        restore = {k: v["value"] for k, v in before.items() if v["editable"]}
        assert (await admin.put("/api/v2.0/configurations", json=restore)).status_code == 200
