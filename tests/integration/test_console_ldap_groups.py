"""LDAP and OIDC user groups on the console's user groups page, and LDAP groups added as
project members through the directory picker, against a real OpenLDAP
(``tests/support/slapd.py``) on SQLite and PostgreSQL. The browser's view of the same
pages is ``tests/console/test_browser_ldap_groups.py``."""

from __future__ import annotations

import html
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from tests.console.helpers import sign_in
from tests.integration.conftest import ADMIN_PASSWORD, make_client, serving
from tests.support.slapd import (
    BASE_DN,
    SEARCH_DN,
    SEARCH_PASSWORD,
    USER_PASSWORD,
    Slapd,
    group_dn,
    start_slapd,
)

GROUPS = "/harbor/admin/groups"
CONFIG: dict[str, Any] = {
    "auth_mode": "ldap_auth",
    "ldap_search_dn": SEARCH_DN,
    "ldap_search_password": SEARCH_PASSWORD,
    "ldap_base_dn": BASE_DN,
    "ldap_filter": "(objectClass=inetOrgPerson)",
    "ldap_uid": "uid",
    "ldap_group_base_dn": BASE_DN,
    "ldap_group_search_filter": "(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames))",
    "ldap_group_attribute_name": "cn",
    "ldap_group_membership_attribute": "memberOf",
}


@pytest.fixture(scope="module")
def slapd() -> Iterator[Slapd]:
    server = start_slapd(groups=True)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
async def ldap_app(
    module_database_url: str, tmp_path_factory: pytest.TempPathFactory, slapd: Slapd
) -> AsyncIterator[Starlette]:
    from dockyard.settings import Settings

    data_dir: Path = tmp_path_factory.mktemp("cldapg-data")
    settings = Settings(
        data_dir=data_dir, database_url=module_database_url, admin_password=ADMIN_PASSWORD
    )
    async with serving(settings) as application:
        async with make_client(application, ("admin", ADMIN_PASSWORD)) as admin:
            answer = await admin.put(
                "/api/v2.0/configurations", json={**CONFIG, "ldap_url": slapd.url}
            )
            assert answer.status_code == 200, answer.text
        yield application


@pytest.fixture
async def admin(ldap_app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client(ldap_app, ("admin", ADMIN_PASSWORD)) as client:
        yield client


@pytest.fixture
async def console(ldap_app: Starlette) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    async with make_client(ldap_app) as client:
        yield client, await sign_in(client, "admin", ADMIN_PASSWORD)


def flash(page: httpx.Response) -> str:
    found = re.search(r'<div class="flash[^"]*"[^>]*>(.*?)</div>', page.text, re.S)
    return html.unescape(found.group(1)) if found else ""


async def post(client: httpx.AsyncClient, url: str, data: dict[str, str]) -> str:
    """POST a console form; the flash message the page it leads to shows."""
    answer = await client.post(url, data=data)
    assert answer.status_code == 303, answer.text
    return flash(await client.get(answer.headers["location"]))


async def groups_named(admin: httpx.AsyncClient, dn: str) -> list[dict[str, Any]]:
    answer = await admin.get("/api/v2.0/usergroups", params={"ldap_group_dn": dn})
    assert answer.status_code == 200, answer.text
    found: list[dict[str, Any]] = answer.json()
    return found


def picked(page: str) -> dict[str, bool]:
    """The picker's groups: DN -> whether it can be picked (not disabled)."""
    options = re.findall(r'<input type="radio" name="ldap_group_dn" value="([^"]*)"([^>]*)>', page)
    return {html.unescape(dn): "disabled" not in rest for dn, rest in options}


async def test_the_picker_searches_the_directory_and_marks_groups_already_made(
    console: tuple[httpx.AsyncClient, str], admin: httpx.AsyncClient
) -> None:
    client, csrf = console
    page = await client.get(GROUPS, params={"ldap_group_q": "team"})
    assert page.status_code == 200
    assert picked(page.text) == {group_dn(n): True for n in ("team-a", "team-b", "team-c")}
    # htmx asks for the results alone as the field changes.
    partial = await client.get(GROUPS + "/ldap-picker", params={"ldap_group_q": "loop"})
    assert partial.text.lstrip().startswith('<fieldset id="ldap-group-picks"')
    assert set(picked(partial.text)) == {group_dn("loop-1"), group_dn("loop-2")}
    # Filter syntax in the search matches itself: nothing, and no error.
    for hostile in ("*)(cn=*", "team)", "\\2a"):
        answer = await client.get(GROUPS + "/ldap-picker", params={"ldap_group_q": hostile})
        assert picked(answer.text) == {}, hostile
        assert 'data-testid="ldap-group-none"' in answer.text
    # "*" lists groups (the AD-shaped branch's too, the filter keeps people out).
    everything = picked((await client.get(GROUPS, params={"ldap_group_q": "*"})).text)
    assert group_dn("AD Devs", f"ou=adgroups,{BASE_DN}") in everything
    assert not any(dn.startswith("uid=") for dn in everything)

    dn = group_dn("loop-1")
    message = await post(
        client, GROUPS, {"_csrf": csrf, "group_type": "1", "ldap_group_dn": dn, "group_name": ""}
    )
    assert message == "User group loop-1 was created."
    made = await groups_named(admin, dn)
    assert [(g["group_name"], g["group_type"], g["ldap_group_dn"]) for g in made] == [
        ("loop-1", 1, dn)
    ]
    # Searched again, loop-1 is a user group already and cannot be picked twice.
    again = await client.get(GROUPS, params={"ldap_group_q": "loop"})
    assert picked(again.text) == {dn: False, group_dn("loop-2"): True}
    assert "(already a user group)" in again.text
    # Picked anyway (a stale page): the API's 409, shown as the reason.
    refused = await post(client, GROUPS, {"_csrf": csrf, "group_type": "1", "ldap_group_dn": dn})
    assert "already exists" in refused


async def test_ldap_groups_by_typed_dn_named_renamed_and_deleted(
    console: tuple[httpx.AsyncClient, str], admin: httpx.AsyncClient
) -> None:
    client, csrf = console
    dn = group_dn("ops-leads")
    message = await post(
        client,
        GROUPS,
        {"_csrf": csrf, "group_type": "1", "typed_dn": f"CN=ops-leads, OU=groups, {BASE_DN}"},
    )
    assert message == "User group ops-leads was created."
    (group,) = await groups_named(admin, dn)
    assert group["ldap_group_dn"] == dn  # as the directory spells it
    renamed = await post(
        client, f"{GROUPS}/{group['id']}/rename", {"_csrf": csrf, "group_name": "Ops leads"}
    )
    assert renamed == "The user group is now called Ops leads."
    (group,) = await groups_named(admin, dn)
    assert group["group_name"] == "Ops leads"
    listed = await client.get(GROUPS)
    assert f"<code>{dn}</code>" in listed.text and ">LDAP<" in listed.text
    deleted = await post(client, f"{GROUPS}/{group['id']}/delete", {"_csrf": csrf})
    assert deleted == "The user group was deleted."
    assert await groups_named(admin, dn) == []


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({}, "pick a directory group or type its DN"),
        (
            {"ldap_group_dn": group_dn("team-a"), "typed_dn": group_dn("team-b")},
            "not both",
        ),
        ({"typed_dn": group_dn("no-such-group")}, "has no group at"),
        ({"typed_dn": f"uid=alice,ou=people,{BASE_DN}"}, "has no group at"),  # not a group
        ({"typed_dn": "not a DN"}, "not a valid DN"),
        ({"typed_dn": "cn=x\x00,dc=example"}, "not a valid DN"),
        ({"typed_dn": "cn=" + "x" * 600}, "not a valid DN"),
    ],
)
async def test_bad_ldap_groups_are_refused_with_the_reason(
    console: tuple[httpx.AsyncClient, str],
    admin: httpx.AsyncClient,
    fields: dict[str, str],
    reason: str,
) -> None:
    client, csrf = console
    before = (await admin.get("/api/v2.0/usergroups", params={"page_size": "100"})).json()
    message = await post(client, GROUPS, {"_csrf": csrf, "group_type": "1", **fields})
    assert reason in message
    after = (await admin.get("/api/v2.0/usergroups", params={"page_size": "100"})).json()
    assert after == before


async def test_oidc_and_http_groups_by_name(
    console: tuple[httpx.AsyncClient, str], admin: httpx.AsyncClient
) -> None:
    client, csrf = console
    name = f"sso-{uuid.uuid4().hex[:6]}"
    for kind in ("3", "2"):
        message = await post(
            client, GROUPS, {"_csrf": csrf, "group_type": kind, "group_name": name}
        )
        assert message == f"User group {name} was created."
    found = (await admin.get("/api/v2.0/usergroups", params={"group_name": name})).json()
    assert sorted(g["group_type"] for g in found) == [2, 3]
    assert all(g.get("ldap_group_dn", "") == "" for g in found)
    page = await client.get(GROUPS)
    assert ">OIDC<" in page.text and ">HTTP<" in page.text


async def test_a_project_member_picked_from_the_directory(
    console: tuple[httpx.AsyncClient, str], admin: httpx.AsyncClient, ldap_app: Starlette
) -> None:
    client, csrf = console
    project = f"cl{uuid.uuid4().hex[:8]}"
    created = await admin.post("/api/v2.0/projects", json={"project_name": project})
    assert created.status_code == 201
    members = f"/harbor/projects/{project}/members"
    page = await client.get(members, params={"ldap_group_q": "team-c"})
    assert picked(page.text) == {group_dn("team-c"): True}
    partial = await client.get(members + "/ldap-picker", params={"ldap_group_q": "team-"})
    assert len(picked(partial.text)) == 3
    message = await post(
        client,
        members,
        {"_csrf": csrf, "kind": "ldap_group", "ldap_group_dn": group_dn("team-c"), "role_id": "3"},
    )
    assert message.startswith("team-c ")
    listed = (await admin.get(f"/api/v2.0/projects/{project}/members")).json()
    assert [(m["entity_name"], m["entity_type"], m["role_id"]) for m in listed] == [
        ("admin", "u", 1),
        ("team-c", "g", 3),
    ]
    (group,) = await groups_named(admin, group_dn("team-c"))
    assert group["group_type"] == 1
    # carol is in team-a, in team-b, in team-c: the private project is hers to read now.
    async with make_client(ldap_app, ("carol", USER_PASSWORD)) as carol:
        assert (await carol.get(f"/api/v2.0/projects/{project}")).status_code == 200
    # A group already made is reused (not made twice), by typed DN too.
    other = f"cl{uuid.uuid4().hex[:8]}"
    await admin.post("/api/v2.0/projects", json={"project_name": other})
    again = await post(
        client,
        f"/harbor/projects/{other}/members",
        {"_csrf": csrf, "kind": "ldap_group", "typed_dn": group_dn("team-c"), "role_id": "2"},
    )
    assert "team-c" in again
    assert len(await groups_named(admin, group_dn("team-c"))) == 1
    refused = await post(
        client,
        members,
        {"_csrf": csrf, "kind": "ldap_group", "typed_dn": group_dn("nobody"), "role_id": "2"},
    )
    assert "has no group at" in refused


async def test_only_system_administrators_search_the_directory(
    console: tuple[httpx.AsyncClient, str], admin: httpx.AsyncClient, ldap_app: Starlette
) -> None:
    """A project administrator who is not a system administrator adds LDAP groups by DN;
    the directory is searched for system administrators only (as ``/ldap/groups/search``)."""
    project = f"cp{uuid.uuid4().hex[:8]}"
    await admin.post("/api/v2.0/projects", json={"project_name": project})
    added = await admin.post(
        f"/api/v2.0/projects/{project}/members",
        json={"role_id": 1, "member_user": {"username": "grace"}},
    )
    if added.status_code == 400:  # grace has not signed in yet: import her first
        imported = await admin.post(
            "/api/v2.0/ldap/users/import", json={"ldap_uid_list": ["grace"]}
        )
        assert imported.status_code == 200, imported.text
        added = await admin.post(
            f"/api/v2.0/projects/{project}/members",
            json={"role_id": 1, "member_user": {"username": "grace"}},
        )
    assert added.status_code == 201, added.text
    members = f"/harbor/projects/{project}/members"
    async with make_client(ldap_app) as grace:
        csrf = await sign_in(grace, "grace", USER_PASSWORD)
        page = await grace.get(members, params={"ldap_group_q": "team"})
        assert page.status_code == 200
        assert picked(page.text) == {}
        assert "Only system administrators can search the directory" in page.text
        partial = await grace.get(members + "/ldap-picker", params={"ldap_group_q": "team"})
        assert picked(partial.text) == {}
        message = await post(
            grace,
            members,
            {"_csrf": csrf, "kind": "ldap_group", "typed_dn": group_dn("team-b"), "role_id": "2"},
        )
        assert message.startswith("team-b ")
        # The groups page stays an administrator's.
        assert (await grace.get(GROUPS, params={"ldap_group_q": "team"})).status_code == 403
        assert (await grace.get(GROUPS + "/ldap-picker")).status_code == 403
    # Someone who may not add members gets no picker at all.
    async with make_client(ldap_app) as erin:
        await sign_in(erin, "erin", USER_PASSWORD)
        answer = await erin.get(members + "/ldap-picker", params={"ldap_group_q": "team"})
        assert answer.status_code in (403, 404)
