"""``/api/v2.0/labels`` and labels on artifacts: global and project labels, who may
manage them, attaching and detaching, hostile input, and the audit events."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from starlette.applications import Starlette
from tests.integration.conftest import make_client
from tests.integration.registry_helpers import error_code, push_image

from dockyard.audit.models import AuditLog
from dockyard.http.state import AppState
from dockyard.iam.models import User
from dockyard.iam.passwords import hash_password
from dockyard.iam.policy import Role
from dockyard.labels.models import Label, LabelReference
from dockyard.projects.models import ProjectMember
from dockyard.projects.service import create_project

API = "/api/v2.0"
PASSWORD = "Passw0rdPassw0rd"
LABEL_KEYS = {
    "id",
    "name",
    "description",
    "color",
    "scope",
    "project_id",
    "creation_time",
    "update_time",
}
# Statuses Harbor answers although the operation's swagger does not declare them
# (a label id that is not a number); the contract check skips these requests.
UNDECLARED = {"X-Dockyard-Contract": "skip"}


# --- helpers -------------------------------------------------------------------------------


def _uid(stem: str) -> str:
    return f"{stem}{uuid.uuid4().hex[:10]}"


async def _user(state: AppState) -> str:
    username = _uid("u")
    async with state.db.write() as session:
        session.add(User(username=username, password=hash_password(PASSWORD)))
    return username


async def _project(state: AppState, *, public: bool = False) -> tuple[str, int]:
    name = _uid("lp")
    async with state.db.write() as session:
        project = await create_project(session, name, owner_id=1, public=public)
        return name, project.project_id


async def _member(state: AppState, project_id: int, username: str, role: Role) -> None:
    async with state.db.write() as session:
        user_id = await session.scalar(select(User.user_id).where(User.username == username))
        assert user_id is not None
        session.add(
            ProjectMember(project_id=project_id, entity_id=user_id, entity_type="u", role=int(role))
        )


def _as(app: Starlette, username: str) -> httpx.AsyncClient:
    return make_client(app, (username, PASSWORD))


async def _create(client: httpx.AsyncClient, **body: Any) -> int:
    response = await client.post(f"{API}/labels", json=body)
    assert response.status_code == 201, response.text
    location = response.headers["location"]
    assert location.startswith(f"{API}/labels/")
    return int(location.rsplit("/", 1)[1])


async def _label_rows(state: AppState) -> int:
    async with state.db.read() as session:
        return int(await session.scalar(select(func.count()).select_from(Label)) or 0)


async def _references(state: AppState, label_id: int) -> int:
    async with state.db.read() as session:
        count = await session.scalar(
            select(func.count())
            .select_from(LabelReference)
            .where(LabelReference.label_id == label_id)
        )
    return int(count or 0)


async def _events(state: AppState, resource_type: str, resource: str) -> list[tuple[Any, ...]]:
    """(operation, username, project_id, succeeded) of the events about ``resource``."""
    async with state.db.read() as session:
        rows = await session.execute(
            select(
                AuditLog.operation,
                AuditLog.username,
                AuditLog.project_id,
                AuditLog.operation_result,
            )
            .where(AuditLog.resource_type == resource_type, AuditLog.resource == resource)
            .order_by(AuditLog.id)
        )
    return [tuple(row) for row in rows]


def _labels_url(project: str, repo: str, reference: str) -> str:
    return f"{API}/projects/{project}/repositories/{repo}/artifacts/{reference}/labels"


# --- global labels -------------------------------------------------------------------------


async def test_global_label_crud_listing_and_audit(
    admin: httpx.AsyncClient, state: AppState
) -> None:
    stem = _uid("g")
    names = [f"{stem}-b", f"{stem}-a", f"{stem}-c"]
    ids = [
        await _create(admin, name=n, scope="g", color="#00FF7f", description=f"about {n}")
        for n in names
    ]

    got = await admin.get(f"{API}/labels/{ids[0]}")
    assert got.status_code == 200
    body = got.json()
    assert set(body) == LABEL_KEYS
    assert (body["id"], body["name"], body["scope"], body["project_id"]) == (
        ids[0],
        names[0],
        "g",
        0,
    )
    assert (body["color"], body["description"]) == ("#00FF7f", f"about {names[0]}")

    # A global label ignores a project id, as Harbor does.
    ignored = await _create(admin, name=f"{stem}-d", scope="g", project_id=1)
    assert (await admin.get(f"{API}/labels/{ignored}")).json()["project_id"] == 0

    listed = await admin.get(f"{API}/labels", params={"scope": "g", "name": stem})
    assert listed.status_code == 200
    assert listed.headers["x-total-count"] == "4"
    by_name = await admin.get(
        f"{API}/labels", params={"scope": "g", "name": stem, "sort": "name", "page_size": 2}
    )
    assert [label["name"] for label in by_name.json()] == [f"{stem}-a", f"{stem}-b"]
    assert by_name.headers["x-total-count"] == "4"
    assert 'rel="next"' in by_name.headers["link"]
    second = await admin.get(
        f"{API}/labels",
        params={"scope": "g", "name": stem, "sort": "-name", "page": 2, "page_size": 3},
    )
    assert [label["name"] for label in second.json()] == [f"{stem}-a"]
    assert 'rel="prev"' in second.headers["link"]
    exact = await admin.get(f"{API}/labels", params={"q": f"name={names[2]}"})
    assert [label["id"] for label in exact.json()] == [ids[2]]
    fuzzy = await admin.get(f"{API}/labels", params={"scope": "g", "q": f"name=~{stem}-"})
    assert fuzzy.headers["x-total-count"] == "4"
    # Global labels are not project labels.
    assert (await admin.get(f"{API}/labels", params={"q": f"name={names[2]}"})).json()
    _, project_id = await _project(state)
    in_project = await admin.get(
        f"{API}/labels", params={"scope": "p", "project_id": project_id, "name": stem}
    )
    assert in_project.status_code == 200 and in_project.json() == []

    renamed = f"{stem}-z"
    updated = await admin.put(
        f"{API}/labels/{ids[0]}",
        json={"name": renamed, "description": "new", "color": "", "scope": "g", "project_id": 0},
    )
    assert updated.status_code == 200, updated.text
    body = (await admin.get(f"{API}/labels/{ids[0]}")).json()
    assert (body["name"], body["description"], body["color"]) == (renamed, "new", "")
    # Fields left out keep their value.
    assert (await admin.put(f"{API}/labels/{ids[0]}", json={"color": "#000000"})).status_code == 200
    body = (await admin.get(f"{API}/labels/{ids[0]}")).json()
    assert (body["name"], body["description"], body["color"]) == (renamed, "new", "#000000")

    assert (await admin.put(f"{API}/labels/{ids[0]}", json={"scope": "p"})).status_code == 400
    assert (await admin.put(f"{API}/labels/{ids[0]}", json={"project_id": 3})).status_code == 400
    taken = await admin.put(f"{API}/labels/{ids[0]}", json={"name": names[1]})
    assert taken.status_code == 409 and error_code(taken) == "CONFLICT"
    duplicate = await admin.post(f"{API}/labels", json={"name": names[1], "scope": "g"})
    assert duplicate.status_code == 409
    assert (await admin.get(f"{API}/labels/{ids[0]}")).json()["name"] == renamed

    assert (await admin.delete(f"{API}/labels/{ids[0]}")).status_code == 200
    assert (await admin.get(f"{API}/labels/{ids[0]}")).status_code == 404
    assert (await admin.delete(f"{API}/labels/{ids[0]}")).status_code == 404

    assert await _events(state, "label", names[0]) == [("create", "admin", 0, True)]
    assert await _events(state, "label", renamed) == [
        ("update", "admin", 0, True),
        ("update", "admin", 0, True),
        ("delete", "admin", 0, True),
    ]
    assert await _events(state, "label", names[1]) == [("create", "admin", 0, True)]


async def test_only_administrators_manage_global_labels(
    app: Starlette, admin: httpx.AsyncClient, anon: httpx.AsyncClient, state: AppState
) -> None:
    name = _uid("g")
    label_id = await _create(admin, name=name, scope="g")
    before = await _label_rows(state)
    async with _as(app, await _user(state)) as user:
        listed = await user.get(f"{API}/labels", params={"scope": "g", "name": name})
        assert [label["id"] for label in listed.json()] == [label_id]
        assert (await user.get(f"{API}/labels/{label_id}")).status_code == 200
        refused = await user.post(f"{API}/labels", json={"name": _uid("g"), "scope": "g"})
        assert refused.status_code == 403 and error_code(refused) == "FORBIDDEN"
        assert (await user.put(f"{API}/labels/{label_id}", json={"name": "x"})).status_code == 403
        assert (await user.delete(f"{API}/labels/{label_id}")).status_code == 403

    assert (await anon.get(f"{API}/labels")).status_code == 401
    assert (await anon.get(f"{API}/labels/{label_id}")).status_code == 401
    assert (await anon.post(f"{API}/labels", json={"name": "x", "scope": "g"})).status_code == 401
    assert (await anon.put(f"{API}/labels/{label_id}", json={"name": "x"})).status_code == 401
    assert (await anon.delete(f"{API}/labels/{label_id}")).status_code == 401

    assert await _label_rows(state) == before
    assert (await admin.get(f"{API}/labels/{label_id}")).json()["name"] == name
    assert await _events(state, "label", name) == [("create", "admin", 0, True)]


# --- project labels ------------------------------------------------------------------------


async def test_project_labels_follow_the_role_table(
    app: Starlette, admin: httpx.AsyncClient, anon: httpx.AsyncClient, state: AppState
) -> None:
    _, project_id = await _project(state)
    _, other_id = await _project(state)
    users = {role: await _user(state) for role in Role}
    for role, username in users.items():
        await _member(state, project_id, username, role)
    outsider = await _user(state)
    name = _uid("p")

    for role in (Role.DEVELOPER, Role.GUEST, Role.LIMITED_GUEST):
        async with _as(app, users[role]) as client:
            refused = await client.post(
                f"{API}/labels", json={"name": name, "scope": "p", "project_id": project_id}
            )
            assert refused.status_code == 403, role
    async with _as(app, outsider) as client:
        refused = await client.post(
            f"{API}/labels", json={"name": name, "scope": "p", "project_id": project_id}
        )
        assert refused.status_code == 403
    assert await _events(state, "label", name) == []

    async with _as(app, users[Role.MAINTAINER]) as maintainer:
        label_id = await _create(
            maintainer, name=name, scope="p", project_id=project_id, color="#ABCDEF"
        )
        # The same name is free in another scope or project, not in the same one.
        assert (
            await maintainer.post(
                f"{API}/labels", json={"name": name, "scope": "p", "project_id": project_id}
            )
        ).status_code == 409
        # A maintainer of one project manages nothing in another.
        assert (
            await maintainer.post(
                f"{API}/labels", json={"name": name, "scope": "p", "project_id": other_id}
            )
        ).status_code == 403
    elsewhere = await _create(admin, name=name, scope="p", project_id=other_id)
    global_twin = await _create(admin, name=name, scope="g")
    assert len({label_id, elsewhere, global_twin}) == 3

    body = (await admin.get(f"{API}/labels/{label_id}")).json()
    assert (body["scope"], body["project_id"], body["color"]) == ("p", project_id, "#ABCDEF")

    params: dict[str, str | int] = {"scope": "p", "project_id": project_id}
    for role in (Role.GUEST, Role.DEVELOPER):
        async with _as(app, users[role]) as client:
            listed = await client.get(f"{API}/labels", params=params)
            assert listed.status_code == 200
            assert [label["id"] for label in listed.json()] == [label_id]
            assert (await client.get(f"{API}/labels/{label_id}")).status_code == 200
            assert (
                await client.put(f"{API}/labels/{label_id}", json={"description": "x"})
            ).status_code == 403
            assert (await client.delete(f"{API}/labels/{label_id}")).status_code == 403
    async with _as(app, users[Role.LIMITED_GUEST]) as client:
        assert (await client.get(f"{API}/labels", params=params)).status_code == 403
    async with _as(app, outsider) as client:
        # The project is private: the outsider learns nothing of it or of its labels.
        assert (await client.get(f"{API}/labels", params=params)).status_code == 403
        assert (
            await client.get(f"{API}/labels", params={"scope": "p", "project_id": 99999999})
        ).status_code == 403
        assert (await client.get(f"{API}/labels/{label_id}")).status_code == 404
        assert (await client.delete(f"{API}/labels/{label_id}")).status_code == 404
    assert (await anon.get(f"{API}/labels", params=params)).status_code == 401

    async with _as(app, users[Role.PROJECT_ADMIN]) as project_admin:
        updated = await project_admin.put(
            f"{API}/labels/{label_id}", json={"description": "by the project admin"}
        )
        assert updated.status_code == 200
        assert (await project_admin.delete(f"{API}/labels/{elsewhere}")).status_code == 404
        assert (await project_admin.put(f"{API}/labels/{global_twin}", json={})).status_code == 403
    assert (await admin.get(f"{API}/labels/{label_id}")).json()["description"] == (
        "by the project admin"
    )

    # Scope and project are required and must make sense.
    assert (await admin.get(f"{API}/labels", params={"scope": "p"})).status_code == 400
    assert (await admin.get(f"{API}/labels", params={"scope": "x"})).status_code == 400
    assert (
        await admin.get(f"{API}/labels", params={"scope": "p", "project_id": 99999999})
    ).status_code == 400
    assert (
        await admin.post(f"{API}/labels", json={"name": _uid("p"), "scope": "p"})
    ).status_code == 400
    assert (
        await admin.post(
            f"{API}/labels", json={"name": _uid("p"), "scope": "p", "project_id": 99999999}
        )
    ).status_code == 400

    async with _as(app, users[Role.MAINTAINER]) as maintainer:
        assert (await maintainer.delete(f"{API}/labels/{label_id}")).status_code == 200
    assert (await admin.get(f"{API}/labels/{label_id}")).status_code == 404
    maintainer_name = users[Role.MAINTAINER]
    assert await _events(state, "label", name) == [
        ("create", maintainer_name, project_id, True),
        ("create", "admin", other_id, True),
        ("create", "admin", 0, True),
        ("update", users[Role.PROJECT_ADMIN], project_id, True),
        ("delete", maintainer_name, project_id, True),
    ]


# --- labels on artifacts -------------------------------------------------------------------


async def test_attach_and_detach_labels_on_a_pushed_image(
    app: Starlette, admin: httpx.AsyncClient, anon: httpx.AsyncClient, state: AppState
) -> None:
    project, project_id = await _project(state)
    _, other_id = await _project(state)
    repo = f"{project}/team/app"
    digest, _ = await push_image(admin, repo, "v1")
    encoded = "team%252Fapp"
    developer, guest, outsider = await _user(state), await _user(state), await _user(state)
    await _member(state, project_id, developer, Role.DEVELOPER)
    await _member(state, project_id, guest, Role.GUEST)

    global_name, project_name = _uid("g"), _uid("p")
    global_id = await _create(admin, name=global_name, scope="g")
    project_label = await _create(admin, name=project_name, scope="p", project_id=project_id)
    foreign = await _create(admin, name=_uid("f"), scope="p", project_id=other_id)

    by_tag = _labels_url(project, encoded, "v1")
    by_digest = _labels_url(project, encoded, digest)
    async with _as(app, developer) as client:
        assert (await client.post(by_tag, json={"id": global_id})).status_code == 200
        assert (await client.post(by_digest, json={"id": project_label})).status_code == 200
        again = await client.post(by_digest, json={"id": global_id})
        assert again.status_code == 409 and error_code(again) == "CONFLICT"
        refused = await client.post(by_tag, json={"id": foreign})
        assert refused.status_code == 400
        assert (await client.post(by_tag, json={"id": 99999999})).status_code == 404
        assert (await client.post(by_tag, json={})).status_code == 400
        assert (
            await client.post(_labels_url(project, encoded, "nosuchtag"), json={"id": global_id})
        ).status_code == 404
        assert (
            await client.post(_labels_url(project, "nosuch", "v1"), json={"id": global_id})
        ).status_code == 404
        assert (
            await client.post(_labels_url(project, encoded, "sha256:zz"), json={"id": global_id})
        ).status_code == 404
    async with _as(app, guest) as client:
        assert (await client.post(by_tag, json={"id": foreign})).status_code == 403
        assert (await client.delete(f"{by_tag}/{global_id}")).status_code == 403
    async with _as(app, outsider) as client:
        assert (await client.post(by_tag, json={"id": global_id})).status_code == 404
        assert (await client.delete(f"{by_tag}/{global_id}")).status_code == 404
    assert (await anon.post(by_tag, json={"id": global_id})).status_code == 401
    assert (await anon.delete(f"{by_tag}/{global_id}")).status_code == 401

    assert await _references(state, global_id) == 1
    assert await _references(state, project_label) == 1
    assert await _references(state, foreign) == 0

    async with _as(app, developer) as client:
        assert (await client.delete(f"{by_tag}/{global_id}")).status_code == 200
        assert (await client.delete(f"{by_tag}/{global_id}")).status_code == 404
        assert (await client.delete(f"{by_tag}/99999999")).status_code == 404
        not_a_number = await client.delete(f"{by_tag}/abc", headers=UNDECLARED)
        assert not_a_number.status_code == 400
    assert await _references(state, global_id) == 0

    # Deleting a label detaches it from every artifact.
    assert (await admin.delete(f"{API}/labels/{project_label}")).status_code == 200
    assert await _references(state, project_label) == 0

    attached = f"{repo}@{digest}:{global_name}"
    assert await _events(state, "artifact-label", attached) == [
        ("create", developer, project_id, True),
        ("delete", developer, project_id, True),
    ]
    assert await _events(state, "artifact-label", f"{repo}@{digest}:{project_name}") == [
        ("create", developer, project_id, True)
    ]
    assert await _events(state, "label", project_name) == [
        ("create", "admin", project_id, True),
        ("delete", "admin", project_id, True),
    ]


async def test_labels_on_an_artifact_of_a_one_part_repository_go_with_it(
    admin: httpx.AsyncClient, state: AppState
) -> None:
    project, _ = await _project(state)
    digest, _ = await push_image(admin, f"{project}/app", None)
    label_id = await _create(admin, name=_uid("g"), scope="g")
    url = _labels_url(project, "app", digest)
    assert (await admin.post(url, json={"id": label_id})).status_code == 200
    assert await _references(state, label_id) == 1
    assert (await admin.delete(f"{url}/{label_id}")).status_code == 200
    assert await _references(state, label_id) == 0

    # An artifact that goes takes its labels with it; the label stays.
    assert (await admin.post(url, json={"id": label_id})).status_code == 200
    assert (await admin.delete(f"/v2/{project}/app/manifests/{digest}")).status_code == 202
    assert await _references(state, label_id) == 0
    assert (await admin.get(f"{API}/labels/{label_id}")).status_code == 200
    assert (await admin.post(url, json={"id": label_id})).status_code == 404


# --- hostile input -------------------------------------------------------------------------

BAD_BODIES: dict[str, Any] = {
    "colour word": {"name": "ok", "scope": "g", "color": "red"},
    "short colour": {"name": "ok", "scope": "g", "color": "#12345"},
    "long colour": {"name": "ok", "scope": "g", "color": "#1234567"},
    "not hex": {"name": "ok", "scope": "g", "color": "#GGGGGG"},
    "colour injection": {"name": "ok", "scope": "g", "color": "#fff'; --"},
    "huge name": {"name": "x" * 10_000, "scope": "g"},
    "129 characters": {"name": "x" * 129, "scope": "g"},
    "empty name": {"name": "", "scope": "g"},
    "blank name": {"name": "   ", "scope": "g"},
    "no name": {"scope": "g"},
    "NUL in name": {"name": "a\x00b", "scope": "g"},
    "newline in name": {"name": "a\nb", "scope": "g"},
    "number as name": {"name": 42, "scope": "g"},
    "no scope": {"name": "ok"},
    "bad scope": {"name": "ok", "scope": "global"},
    "negative project": {"name": "ok", "scope": "p", "project_id": -1},
    "huge project": {"name": "ok", "scope": "p", "project_id": 2**40},
    "string project": {"name": "ok", "scope": "p", "project_id": "1"},
    "huge description": {"name": "ok", "scope": "g", "description": "d" * 1025},
    "NUL in description": {"name": "ok", "scope": "g", "description": "a\x00"},
    "a list": [{"name": "ok", "scope": "g"}],
}


@pytest.mark.parametrize("case", sorted(BAD_BODIES))
async def test_bad_label_bodies_are_refused(
    admin: httpx.AsyncClient, state: AppState, case: str
) -> None:
    before = await _label_rows(state)
    response = await admin.post(f"{API}/labels", json=BAD_BODIES[case])
    assert response.status_code == 400, response.text
    assert error_code(response) == "BAD_REQUEST"
    assert await _label_rows(state) == before


async def test_hostile_requests_change_nothing(admin: httpx.AsyncClient, state: AppState) -> None:
    name = _uid("h")
    label_id = await _create(admin, name=name, scope="g", color="#123456")
    before = await _label_rows(state)
    url = f"{API}/labels/{label_id}"

    for body in (
        {"color": "blue"},
        {"name": "y" * 10_000},
        {"name": "\x07bell"},
        {"name": ""},
        {"description": "d" * 5000},
        {"project_id": -5},
        {"id": 2**70},
    ):
        assert (await admin.put(url, json=body)).status_code == 400, body
    assert (await admin.put(url, content=b"{not json")).status_code == 400
    assert (await admin.put(url, content=b"")).status_code == 400
    assert (await admin.post(f"{API}/labels", content=b"\xff\xfe")).status_code == 400

    for bad in ("abc", "-1", "1.5", "99999999999999999999", "%27%20OR%201=1"):
        assert (await admin.get(f"{API}/labels/{bad}", headers=UNDECLARED)).status_code == 400
        assert (await admin.put(f"{API}/labels/{bad}", json={"name": "x"})).status_code == 400
        assert (await admin.delete(f"{API}/labels/{bad}")).status_code == 400
    assert (await admin.get(f"{API}/labels/0")).status_code == 404
    assert (await admin.get(f"{API}/labels/999999999999999999")).status_code == 404

    for params in (
        {"page_size": "1000"},
        {"page": "0"},
        {"sort": "password"},
        {"sort": "name; DROP TABLE harbor_label"},
        {"q": "scope=p"},
        {"q": "name=~x,bogus=1"},
        {"q": "id=abc"},
        {"project_id": "abc", "scope": "p"},
        {"project_id": "-3", "scope": "p"},
        {"name": "a\x00"},
    ):
        listed = await admin.get(f"{API}/labels", params=params)
        assert listed.status_code == 400, params

    # Text that looks like SQL is only text: stored and found verbatim, nothing else.
    sneaky = f"{name}'; DROP TABLE harbor_label; --"
    sneaky_id = await _create(admin, name=sneaky, scope="g", description="' OR '1'='1")
    assert (await admin.get(f"{API}/labels/{sneaky_id}")).json()["name"] == sneaky
    found = await admin.get(f"{API}/labels", params={"name": "%' OR 1=1 --"})
    assert found.status_code == 200 and found.json() == []
    wildcard = await admin.get(f"{API}/labels", params={"name": f"{name}%"})
    assert wildcard.json() == []
    like = await admin.get(f"{API}/labels", params={"name": name, "sort": "id"})
    assert [label["id"] for label in like.json()] == [label_id, sneaky_id]

    assert await _label_rows(state) == before + 1
    body = (await admin.get(url)).json()
    assert (body["name"], body["color"]) == (name, "#123456")
    assert await _events(state, "label", name) == [("create", "admin", 0, True)]


# --- robots --------------------------------------------------------------------------------


def _robot_body(kind: str, namespace: str, *pairs: str) -> dict[str, Any]:
    access = [
        {"resource": p.split(":")[0], "action": p.split(":")[1], "effect": "allow"} for p in pairs
    ]
    return {
        "name": _uid("r"),
        "level": "project" if kind == "project" else "system",
        "duration": -1,
        "permissions": [{"kind": kind, "namespace": namespace, "access": access}],
    }


async def _robot(admin: httpx.AsyncClient, body: dict[str, Any]) -> tuple[str, str]:
    response = await admin.post(f"{API}/robots", json=body)
    assert response.status_code == 201, response.text
    created = response.json()
    return str(created["name"]), str(created["secret"])


async def test_robots_act_within_their_grants(
    app: Starlette, admin: httpx.AsyncClient, state: AppState
) -> None:
    project, project_id = await _project(state)
    digest, _ = await push_image(admin, f"{project}/app", "v1")
    url = _labels_url(project, "app", "v1")
    label_name = _uid("p")
    project_label = await _create(admin, name=label_name, scope="p", project_id=project_id)

    labeller = await _robot(
        admin,
        _robot_body("project", project, "artifact-label:create", "artifact-label:delete"),
    )
    async with make_client(app, labeller) as robot:
        assert (await robot.post(url, json={"id": project_label})).status_code == 200
        assert (await robot.delete(f"{url}/{project_label}")).status_code == 200
        refused = await robot.post(
            f"{API}/labels", json={"name": _uid("p"), "scope": "p", "project_id": project_id}
        )
        assert refused.status_code == 403

    curator = await _robot(admin, _robot_body("system", "/", "label:create", "label:delete"))
    name = _uid("g")
    async with make_client(app, curator) as robot:
        label_id = await _create(robot, name=name, scope="g")
        assert (await robot.put(f"{API}/labels/{label_id}", json={"name": "x"})).status_code == 403
        assert (await robot.post(url, json={"id": label_id})).status_code == 404
        assert (await robot.delete(f"{API}/labels/{label_id}")).status_code == 200
    assert await _events(state, "label", name) == [
        ("create", curator[0], 0, True),
        ("delete", curator[0], 0, True),
    ]
    assert await _events(state, "artifact-label", f"{project}/app@{digest}:{label_name}") == [
        ("create", labeller[0], project_id, True),
        ("delete", labeller[0], project_id, True),
    ]
