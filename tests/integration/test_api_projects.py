"""/api/v2.0/projects: create, read, list (q, sort, paging), update, delete, summary, metadata."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import delete, func, select
from starlette.applications import Starlette
from tests.integration.conftest import make_client
from tests.integration.registry_helpers import push_image

from dockyard.http.state import AppState
from dockyard.iam.models import User
from dockyard.iam.passwords import hash_password
from dockyard.immutability.models import ImmutableTagRule
from dockyard.labels.models import Label
from dockyard.projects.models import Project, ProjectMember, ProjectMetadata
from dockyard.quota.models import Quota
from dockyard.registry.models import Repository
from dockyard.retention.models import RetentionPolicy
from dockyard.webhooks.models import WebhookPolicy

API = "/api/v2.0"
PASSWORD = "Passw0rdPassw0rd"


def _name(prefix: str = "p") -> str:
    return f"{prefix}{uuid.uuid4().hex[:12]}"


async def _user(state: AppState) -> tuple[str, int]:
    username = _name("u")
    async with state.db.write() as session:
        user = User(username=username, password=hash_password(PASSWORD))
        session.add(user)
        await session.flush()
        return username, user.user_id


async def _create(client: httpx.AsyncClient, name: str, **body: Any) -> int:
    response = await client.post(f"{API}/projects", json={"project_name": name, **body})
    assert response.status_code == 201, response.text
    location = response.headers["location"]
    assert location.startswith(f"{API}/projects/")
    return int(location.rsplit("/", 1)[1])


async def _rows_named(state: AppState, name: str) -> int:
    async with state.db.read() as session:
        count = await session.scalar(
            select(func.count()).select_from(Project).where(Project.name == name)
        )
    return int(count or 0)


def _code(response: httpx.Response) -> str:
    return str(response.json()["errors"][0]["code"])


# --- create and read -----------------------------------------------------------------------


async def test_user_creates_project_and_reads_it_by_id_and_by_name(
    app: Starlette, state: AppState, anon: httpx.AsyncClient
) -> None:
    username, user_id = await _user(state)
    name = _name()
    async with make_client(app, (username, PASSWORD)) as client:
        project_id = await _create(
            client, name, metadata={"public": "false", "reuse_sys_cve_allowlist": "true"}
        )
        by_id = await client.get(f"{API}/projects/{project_id}")
        assert by_id.status_code == 200, by_id.text
        body = by_id.json()
        assert body["project_id"] == project_id
        assert body["name"] == name
        assert body["owner_id"] == user_id
        assert body["owner_name"] == username
        assert body["deleted"] is False
        assert body["registry_id"] == 0
        assert body["repo_count"] == 0
        assert body["metadata"] == {"public": "false", "reuse_sys_cve_allowlist": "true"}
        assert body["current_user_role_id"] == 1
        assert body["current_user_role_ids"] == [1]
        assert body["togglable"] is True
        assert body["creation_time"] and body["update_time"]

        by_name = await client.get(f"{API}/projects/{name}")
        assert by_name.json() == body
        header = await client.get(f"{API}/projects/{name}", headers={"X-Is-Resource-Name": "true"})
        assert header.json() == body
        # With the header, an all-digit segment is a name, and no project has that name.
        as_name = await client.get(
            f"{API}/projects/{project_id}", headers={"X-Is-Resource-Name": "true"}
        )
        assert as_name.status_code == 404
        # Anything but true is false (the operation has no 400 to refuse it with).
        other_flag = await client.get(
            f"{API}/projects/{project_id}", headers={"X-Is-Resource-Name": "x"}
        )
        assert other_flag.json() == body

    # Private: the anonymous caller is asked to sign in.
    assert (await anon.get(f"{API}/projects/{project_id}")).status_code == 401


async def test_location_can_carry_the_name(admin: httpx.AsyncClient) -> None:
    name = _name()
    response = await admin.post(
        f"{API}/projects",
        json={"project_name": name},
        headers={"X-Resource-Name-In-Location": "true"},
    )
    assert response.status_code == 201
    assert response.headers["location"] == f"{API}/projects/{name}"
    assert response.content == b""


async def test_deprecated_public_flag_and_storage_limit(admin: httpx.AsyncClient) -> None:
    name = _name()
    project_id = await _create(admin, name, public=True, storage_limit=-1)
    body = (await admin.get(f"{API}/projects/{project_id}")).json()
    assert body["metadata"]["public"] == "true"
    # metadata.public wins over the deprecated flag.
    other = _name()
    other_id = await _create(admin, other, public=True, metadata={"public": "false"})
    assert (await admin.get(f"{API}/projects/{other_id}")).json()["metadata"]["public"] == "false"


@pytest.mark.parametrize(
    "bad_name",
    [
        "UpperCase",
        "-leading-dash",
        "a" * 300,
        "a/b",
        "x'; DROP TABLE project;--",
        "",
        "has space",
        "trailing-",
        "nul\x00byte",
    ],
)
async def test_invalid_names_are_refused_and_nothing_is_created(
    admin: httpx.AsyncClient, state: AppState, bad_name: str
) -> None:
    response = await admin.post(f"{API}/projects", json={"project_name": bad_name})
    assert response.status_code == 400, response.text
    assert _code(response) == "BAD_REQUEST"
    # (PostgreSQL cannot even be asked about a name holding NUL.)
    assert await _rows_named(state, bad_name.replace("\x00", "")) == 0


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"project_name": 5},
        {"project_name": "ok", "public": "yes"},
        {"project_name": "ok", "metadata": {"public": "maybe"}},
        {"project_name": "ok", "metadata": {"public": True}},
        {"project_name": "ok", "metadata": {"severity": "extreme"}},
        {"project_name": "ok", "storage_limit": -5},
        {"project_name": "ok", "storage_limit": "10"},
        [],
    ],
)
async def test_malformed_create_bodies(
    admin: httpx.AsyncClient, state: AppState, body: Any
) -> None:
    name = _name()
    if isinstance(body, dict) and body.get("project_name") == "ok":
        body = {**body, "project_name": name}
    response = await admin.post(f"{API}/projects", json=body)
    assert response.status_code == 400, response.text
    assert await _rows_named(state, name) == 0


async def test_proxy_cache_project_needs_an_admin_and_an_endpoint(
    app: Starlette, admin: httpx.AsyncClient, state: AppState
) -> None:
    """Harbor's rules; the proxy cache itself is tested in test_proxy_cache.py."""
    username, _ = await _user(state)
    name = _name()
    async with make_client(app, (username, PASSWORD)) as client:
        response = await client.post(
            f"{API}/projects", json={"project_name": name, "registry_id": 1}
        )
        assert response.status_code == 403
        assert "Only system admin can create proxy cache project" in response.text
    for registry_id in (0, 987654321):
        response = await admin.post(
            f"{API}/projects", json={"project_name": name, "registry_id": registry_id}
        )
        assert response.status_code == 400
    assert await _rows_named(state, name) == 0


async def test_duplicate_name_is_a_conflict(admin: httpx.AsyncClient, state: AppState) -> None:
    name = _name()
    await _create(admin, name)
    again = await admin.post(f"{API}/projects", json={"project_name": name})
    assert again.status_code == 409
    assert _code(again) == "CONFLICT"
    assert await _rows_named(state, name) == 1


async def test_anonymous_cannot_create(anon: httpx.AsyncClient, state: AppState) -> None:
    name = _name()
    response = await anon.post(f"{API}/projects", json={"project_name": name})
    assert response.status_code == 401
    assert await _rows_named(state, name) == 0


async def test_head_project(admin: httpx.AsyncClient) -> None:
    name = _name()
    await _create(admin, name)
    found = await admin.head(f"{API}/projects", params={"project_name": name})
    assert found.status_code == 200
    assert found.content == b""
    missing = await admin.head(f"{API}/projects", params={"project_name": _name()})
    assert missing.status_code == 404
    assert missing.content == b""
    assert (await admin.head(f"{API}/projects")).status_code == 400


# --- listing -------------------------------------------------------------------------------


async def test_listing_pages_sorts_and_filters(admin: httpx.AsyncClient) -> None:
    prefix = _name("l")
    names = [f"{prefix}-{suffix}" for suffix in ("b", "a", "c")]
    ids = {name: await _create(admin, name) for name in names}
    await admin.put(f"{API}/projects/{ids[names[0]]}", json={"metadata": {"public": "true"}})

    first = await admin.get(
        f"{API}/projects", params={"q": f"name=~{prefix}", "sort": "-name", "page_size": 2}
    )
    assert first.status_code == 200, first.text
    assert first.headers["x-total-count"] == "3"
    assert [p["name"] for p in first.json()] == [f"{prefix}-c", f"{prefix}-b"]
    assert 'rel="next"' in first.headers["link"]
    second = await admin.get(
        f"{API}/projects",
        params={"q": f"name=~{prefix}", "sort": "-name", "page_size": 2, "page": 2},
    )
    assert [p["name"] for p in second.json()] == [f"{prefix}-a"]
    assert 'rel="prev"' in second.headers["link"]

    by_id = await admin.get(f"{API}/projects", params={"q": f"project_id={ids[names[1]]}"})
    assert [p["name"] for p in by_id.json()] == [names[1]]
    any_of = await admin.get(
        f"{API}/projects",
        params={"q": f"project_id={{{ids[names[1]]} {ids[names[2]]}}}", "sort": "project_id"},
    )
    assert [p["project_id"] for p in any_of.json()] == sorted([ids[names[1]], ids[names[2]]])
    public = await admin.get(f"{API}/projects", params={"q": f"name=~{prefix},public=true"})
    assert [p["name"] for p in public.json()] == [names[0]]
    private = await admin.get(f"{API}/projects", params={"name": prefix, "public": "false"})
    assert sorted(p["name"] for p in private.json()) == sorted(names[1:])
    by_owner = await admin.get(f"{API}/projects", params={"name": prefix, "owner": "admin"})
    assert by_owner.headers["x-total-count"] == "3"
    nobody = await admin.get(f"{API}/projects", params={"name": prefix, "owner": "nobody"})
    assert nobody.json() == []
    created = await admin.get(
        f"{API}/projects",
        params={
            "q": f"name=~{prefix},creation_time=[2000-01-01T00:00:00~]",
            "sort": "creation_time",
        },
    )
    assert created.headers["x-total-count"] == "3"
    for project in first.json():
        assert project["owner_name"] == "admin"
        assert project["repo_count"] == 0
        assert "public" in project["metadata"]
    lean = await admin.get(f"{API}/projects", params={"name": prefix, "with_detail": "false"})
    assert all("owner_name" not in p for p in lean.json())


@pytest.mark.parametrize(
    "params",
    [
        {"q": "colour=red"},
        {"q": "project_id=~1"},
        {"q": "project_id=abc"},
        {"q": "project_id=99999999999999999999999"},
        {"q": "public=maybe"},
        {"q": "public=~tr"},
        {"q": "name"},
        {"q": "name=a\x00b"},
        {"q": "creation_time=[yesterday~]"},
        {"sort": "owner_name"},
        {"sort": "name;drop table project"},
        {"page": "0"},
        {"page_size": "101"},
        {"public": "perhaps"},
        {"with_detail": "2"},
    ],
)
async def test_bad_listing_parameters(admin: httpx.AsyncClient, params: dict[str, str]) -> None:
    response = await admin.get(f"{API}/projects", params=params)
    assert response.status_code == 400, response.text


@pytest.mark.parametrize("path", ["/projects", "/audit-logs", "/robots", "/users"])
async def test_sort_keys_are_capped_on_every_listing(admin: httpx.AsyncClient, path: str) -> None:
    """2,500 sort keys once made the database refuse the ORDER BY (a 500); beyond the cap
    every listing answers 400 with Harbor's body, and the cap itself is still accepted."""
    key = {"/projects": "name", "/audit-logs": "op_time", "/robots": "name", "/users": "username"}
    too_many = await admin.get(f"{API}{path}", params={"sort": ",".join([key[path]] * 2500)})
    assert too_many.status_code == 400, too_many.text
    assert too_many.json()["errors"][0]["code"] == "BAD_REQUEST"
    assert "sort" in too_many.json()["errors"][0]["message"]
    at_cap = await admin.get(f"{API}{path}", params={"sort": ",".join([key[path]] * 10)})
    assert at_cap.status_code == 200, at_cap.text


async def test_repo_count_in_listing_and_summary(admin: httpx.AsyncClient, state: AppState) -> None:
    name = _name()
    project_id = await _create(admin, name)
    await push_image(admin, f"{name}/one")
    await push_image(admin, f"{name}/two")
    listed = await admin.get(f"{API}/projects", params={"q": f"name={name}"})
    assert listed.json()[0]["repo_count"] == 2
    assert (await admin.get(f"{API}/projects/{project_id}")).json()["repo_count"] == 2
    summary = await admin.get(f"{API}/projects/{name}/summary")
    assert summary.status_code == 200
    body = summary.json()
    # The quota's numbers are tested in test_quotas.py.
    assert body.pop("quota")["hard"] == {"storage": -1}
    assert body == {
        "repo_count": 2,
        "project_admin_count": 1,
        "maintainer_count": 0,
        "developer_count": 0,
        "guest_count": 0,
        "limited_guest_count": 0,
    }
    async with state.db.write() as session:
        await session.execute(delete(Repository).where(Repository.project_id == project_id))


# --- update and delete ---------------------------------------------------------------------


async def test_update_project_metadata(admin: httpx.AsyncClient, state: AppState) -> None:
    name = _name()
    project_id = await _create(admin, name)
    before = (await admin.get(f"{API}/projects/{project_id}")).json()
    response = await admin.put(
        f"{API}/projects/{project_id}",
        json={
            "project_name": "ignored-rename",
            "metadata": {"public": "true", "severity": "HIGH", "prevent_vul": "false"},
            "cve_allowlist": {"items": [{"cve_id": "CVE-2020-1"}]},
        },
    )
    assert response.status_code == 200, response.text
    after = (await admin.get(f"{API}/projects/{project_id}")).json()
    assert after["name"] == name
    assert after["metadata"] == {"public": "true", "severity": "high", "prevent_vul": "false"}
    assert after["update_time"] >= before["update_time"]
    assert after["cve_allowlist"]["items"] == [{"cve_id": "CVE-2020-1"}]
    assert after["cve_allowlist"]["project_id"] == project_id

    for bad in (
        {"metadata": {"public": "yes"}},
        {"metadata": {"auto_scan": "TRUE"}},
        {"metadata": {"severity": "unknown"}},
        {"cve_allowlist": {"items": [{"cve_id": ""}]}},
        {"cve_allowlist": {"items": [{"cve_id": "CVE-1"}, {"cve_id": "CVE-1"}]}},
        {"cve_allowlist": {"items": [{"cve_id": "bad id"}]}},
        {"cve_allowlist": {"expires_at": -1}},
        {"cve_allowlist": {"items": "CVE-1"}},
        {"metadata": "public"},
    ):
        refused = await admin.put(f"{API}/projects/{project_id}", json=bad)
        assert refused.status_code == 400, bad
    unchanged = (await admin.get(f"{API}/projects/{project_id}")).json()
    assert unchanged["metadata"] == after["metadata"]
    assert unchanged["cve_allowlist"] == after["cve_allowlist"]
    # Harbor's clients send back what they read, retention_id included: it is ignored
    echoed = await admin.put(
        f"{API}/projects/{project_id}",
        json={"metadata": {**after["metadata"], "retention_id": "3"}},
    )
    assert echoed.status_code == 200, echoed.text
    assert (await admin.get(f"{API}/projects/{project_id}")).json()["metadata"] == after["metadata"]
    missing = await admin.put(f"{API}/projects/{_name()}", json={"metadata": {}})
    assert missing.status_code == 404


async def test_delete_refused_while_repositories_exist(
    admin: httpx.AsyncClient, state: AppState
) -> None:
    name = _name()
    project_id = await _create(admin, name)
    await push_image(admin, f"{name}/app")

    deletable = await admin.get(f"{API}/projects/{project_id}/_deletable")
    assert deletable.json() == {
        "deletable": False,
        "message": "the project contains repositories, can not be deleted",
    }
    refused = await admin.delete(f"{API}/projects/{project_id}")
    assert refused.status_code == 412
    assert _code(refused) == "PRECONDITION_FAILED"
    assert (await admin.get(f"{API}/projects/{project_id}")).status_code == 200

    async with state.db.write() as session:
        await session.execute(delete(Repository).where(Repository.project_id == project_id))
    assert (await admin.get(f"{API}/projects/{project_id}/_deletable")).json() == {
        "deletable": True
    }
    deleted = await admin.delete(f"{API}/projects/{project_id}")
    assert deleted.status_code == 200
    assert (await admin.get(f"{API}/projects/{project_id}")).status_code == 404
    assert (await admin.get(f"{API}/projects/{name}")).status_code == 404
    assert (await admin.delete(f"{API}/projects/{project_id}")).status_code == 404
    listed = await admin.get(f"{API}/projects", params={"q": f"name=~{name}"})
    assert listed.json() == []

    async with state.db.read() as session:
        row = await session.get(Project, project_id)
        assert row is not None and row.deleted and row.name == f"{name}#{project_id}"
        members = await session.scalar(
            select(func.count())
            .select_from(ProjectMember)
            .where(ProjectMember.project_id == project_id)
        )
        metadata = await session.scalar(
            select(func.count())
            .select_from(ProjectMetadata)
            .where(ProjectMetadata.project_id == project_id)
        )
    assert members == 0 and metadata == 0

    # The name is free again, for a new project with a new id.
    again = await _create(admin, name)
    assert again != project_id
    assert (await admin.get(f"{API}/projects/{name}")).json()["project_id"] == again


async def test_longest_name_can_be_deleted_and_reused(admin: httpx.AsyncClient) -> None:
    name = "z" + uuid.uuid4().hex + "a" * (255 - 33)
    assert len(name) == 255
    project_id = await _create(admin, name)
    assert (await admin.delete(f"{API}/projects/{project_id}")).status_code == 200
    assert await _create(admin, name) != project_id


async def test_ids_that_are_not_projects(admin: httpx.AsyncClient) -> None:
    for segment in ("0", "999999999", "99999999999999999999999", "-1", "%00", "A"):
        response = await admin.get(f"{API}/projects/{segment}")
        assert response.status_code == 404, segment


# --- metadata endpoints --------------------------------------------------------------------


async def test_metadata_endpoints(admin: httpx.AsyncClient) -> None:
    name = _name()
    await _create(admin, name)
    base = f"{API}/projects/{name}/metadatas"

    assert (await admin.get(f"{base}/")).json() == {"public": "false"}
    added = await admin.post(
        f"{base}/", json={"reuse_sys_cve_allowlist": "true", "severity": "Low"}
    )
    assert added.status_code == 200, added.text
    assert (await admin.get(f"{base}/")).json() == {
        "public": "false",
        "reuse_sys_cve_allowlist": "true",
        "severity": "low",
    }
    assert (await admin.get(f"{base}/severity")).json() == {"severity": "low"}
    assert (
        await admin.post(f"{base}/", json={"reuse_sys_cve_allowlist": "false"})
    ).status_code == 409

    updated = await admin.put(
        f"{base}/reuse_sys_cve_allowlist", json={"reuse_sys_cve_allowlist": "false"}
    )
    assert updated.status_code == 200
    assert (await admin.get(f"{base}/reuse_sys_cve_allowlist")).json() == {
        "reuse_sys_cve_allowlist": "false"
    }

    assert (await admin.delete(f"{base}/reuse_sys_cve_allowlist")).status_code == 200
    assert (await admin.get(f"{base}/reuse_sys_cve_allowlist")).status_code == 404
    assert (await admin.delete(f"{base}/reuse_sys_cve_allowlist")).status_code == 404
    assert (await admin.get(f"{base}/colour")).status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {"colour": "red"},
        {"public": "yes"},
        {"prevent_vul": "1"},
        {"auto_sbom_generation": "on"},
        {"severity": "catastrophic"},
        {"retention_id": "1"},
        {"public": True},
        {},
        ["public"],
    ],
)
async def test_bad_metadata_is_refused(admin: httpx.AsyncClient, body: Any) -> None:
    name = _name()
    await _create(admin, name)
    base = f"{API}/projects/{name}/metadatas"
    assert (await admin.post(f"{base}/", json=body)).status_code == 400
    assert (await admin.get(f"{base}/")).json() == {"public": "false"}


async def test_bad_metadata_update_is_refused(admin: httpx.AsyncClient) -> None:
    name = _name()
    await _create(admin, name)
    base = f"{API}/projects/{name}/metadatas"
    for key, body in (
        ("public", {"public": "nope"}),
        ("public", {"other": "true"}),
        ("colour", {"colour": "red"}),
        ("severity", {"severity": "none-ish"}),
    ):
        response = await admin.put(f"{base}/{key}", json=body)
        assert response.status_code == 400, (key, body)
    assert (await admin.get(f"{base}/")).json() == {"public": "false"}


async def test_delete_takes_labels_rules_quota_and_policies_along(
    admin: httpx.AsyncClient, state: AppState
) -> None:
    name = _name()
    project_id = await _create(admin, name)
    label = await admin.post(
        f"{API}/labels", json={"name": "l1", "scope": "p", "project_id": project_id}
    )
    assert label.status_code == 201, label.text
    rule = await admin.post(
        f"{API}/projects/{project_id}/immutabletagrules",
        json={
            "action": "immutable",
            "template": "immutable_template",
            "scope_selectors": {
                "repository": [{"kind": "doublestar", "decoration": "repoMatches", "pattern": "**"}]
            },
            "tag_selectors": [{"kind": "doublestar", "decoration": "matches", "pattern": "v*"}],
        },
    )
    assert rule.status_code == 201, rule.text
    hook = await admin.post(
        f"{API}/projects/{project_id}/webhook/policies",
        json={
            "name": "h1",
            "enabled": True,
            "event_types": ["PUSH_ARTIFACT"],
            "targets": [{"type": "http", "address": "http://127.0.0.1:9/hook"}],
        },
    )
    assert hook.status_code == 201, hook.text
    retention = await admin.post(
        f"{API}/retentions",
        json={
            "algorithm": "or",
            "rules": [
                {
                    "action": "retain",
                    "template": "always",
                    "params": {},
                    "tag_selectors": [
                        {"kind": "doublestar", "decoration": "matches", "pattern": "**"}
                    ],
                    "scope_selectors": {
                        "repository": [
                            {"kind": "doublestar", "decoration": "repoMatches", "pattern": "**"}
                        ]
                    },
                }
            ],
            "trigger": {"kind": "Schedule", "settings": {"cron": ""}},
            "scope": {"level": "project", "ref": project_id},
        },
    )
    assert retention.status_code == 201, retention.text
    assert (await admin.delete(f"{API}/projects/{project_id}")).status_code == 200

    async with state.db.read() as session:
        for model, where in (
            (Label, Label.project_id == project_id),
            (ImmutableTagRule, ImmutableTagRule.project_id == project_id),
            (Quota, Quota.reference_id == str(project_id)),
            (WebhookPolicy, WebhookPolicy.project_id == project_id),
            (RetentionPolicy, RetentionPolicy.project_id == project_id),
        ):
            count = await session.scalar(select(func.count()).select_from(model).where(where))
            assert count == 0, model.__tablename__


async def test_sbom_on_push_switch_is_stored(admin: httpx.AsyncClient) -> None:
    """``auto_sbom_generation`` is built (scan/hooks.py): both values are stored as sent."""
    name = _name()
    await _create(admin, name, metadata={"public": "false", "auto_sbom_generation": "false"})
    url = f"{API}/projects/{name}/metadatas/auto_sbom_generation"
    assert (await admin.put(url, json={"auto_sbom_generation": "true"})).status_code == 200
    assert (await admin.get(url)).json() == {"auto_sbom_generation": "true"}
