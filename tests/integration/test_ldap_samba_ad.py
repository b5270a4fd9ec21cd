"""LDAP sign-in's core cases against a real Active Directory: Debian's Samba as an AD DC
(``tests/support/samba_ad.py``), on SQLite and PostgreSQL. The OpenLDAP suites
(``test_ldap_signin.py``, ``test_ldap_groups.py``) check AD's shape on OpenLDAP; this one
checks AD itself: ``sAMAccountName`` as the sign-in name, ``memberOf`` kept by the server,
an admin group reached through a nested group, a wrong password, a user in no group.

Skipped, with the reason, when Samba cannot run as an AD DC here (not installed, not
root, LDAP's port 389 taken on 127.0.0.1)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from starlette.applications import Starlette
from tests.integration.conftest import ADMIN_PASSWORD, make_client, serving
from tests.support.samba_ad import (
    ADMIN_DN,
    BASE_DN,
    USER_PASSWORD,
    SambaAD,
    SambaUnavailable,
    group_dn,
    start_samba_ad,
)

PROJECT = "adproject"
REPOSITORY = f"{PROJECT}/app"


@pytest.fixture(scope="module")
def samba() -> Iterator[SambaAD]:
    try:
        server = start_samba_ad()
    except SambaUnavailable as exc:
        pytest.skip(f"Samba cannot run as an AD DC here: {exc}")
    try:
        yield server
    finally:
        server.close()


def _settings(samba: SambaAD) -> dict[str, Any]:
    return {
        "auth_mode": "ldap_auth",
        "ldap_url": samba.url,
        "ldap_search_dn": ADMIN_DN,
        "ldap_search_password": "Adm1n-Passw0rd!",
        "ldap_base_dn": BASE_DN,
        "ldap_filter": "(&(objectClass=user)(!(objectClass=computer)))",
        "ldap_uid": "sAMAccountName",
        "ldap_scope": 2,
        "ldap_group_base_dn": BASE_DN,
        "ldap_group_search_filter": "(objectClass=group)",
        "ldap_group_attribute_name": "cn",
        "ldap_group_membership_attribute": "memberOf",
        "ldap_group_admin_dn": group_dn("Registry Admins"),
    }


@pytest.fixture(scope="module")
async def ad_app(
    module_database_url: str, tmp_path_factory: pytest.TempPathFactory, samba: SambaAD
) -> AsyncIterator[Starlette]:
    from dockyard.settings import Settings

    data_dir: Path = tmp_path_factory.mktemp("samba-data")
    settings = Settings(
        data_dir=data_dir, database_url=module_database_url, admin_password=ADMIN_PASSWORD
    )
    async with serving(settings) as application:
        async with make_client(application, ("admin", ADMIN_PASSWORD)) as admin:
            answer = await admin.put("/api/v2.0/configurations", json=_settings(samba))
            assert answer.status_code == 200, answer.text
            pinged = await admin.post("/api/v2.0/ldap/ping", content=b"")
            assert pinged.json()["success"] is True, pinged.text
            created = await admin.post("/api/v2.0/projects", json={"project_name": PROJECT})
            assert created.status_code == 201, created.text
            added = await admin.post(
                f"/api/v2.0/projects/{PROJECT}/members",
                json={"role_id": 2, "member_group": {"ldap_group_dn": group_dn("Registry Devs")}},
            )
            assert added.status_code == 201, added.text
        yield application


async def _granted(app: Starlette, name: str, password: str = USER_PASSWORD) -> set[str] | int:
    """The actions the token service grants, or the refusal's status."""
    async with make_client(app) as client:
        answer = await client.get(
            "/service/token",
            params={"service": "dockyard", "scope": f"repository:{REPOSITORY}:pull,push"},
            auth=(name, password),
        )
    if answer.status_code != 200:
        return answer.status_code
    claims = jwt.decode(answer.json()["token"], options={"verify_signature": False})
    return {a for entry in claims["access"] for a in entry["actions"]}


async def test_sign_in_by_samaccountname_onboards_the_user(ad_app: Starlette) -> None:
    assert await _granted(ad_app, "hpym") == {"pull", "push"}  # through Registry Devs
    async with make_client(ad_app, ("hpym", USER_PASSWORD)) as hank:
        me = (await hank.get("/api/v2.0/users/current")).json()
    assert me["username"] == "hpym"
    assert me["email"] == "hpym@dockyard.test"
    assert me["realname"] == "Hank Pym"
    assert me["admin_role_in_auth"] is False


async def test_wrong_passwords_and_strangers_sign_in_nobody(ad_app: Starlette) -> None:
    assert await _granted(ad_app, "hpym", "not-the-password") == 401
    assert await _granted(ad_app, "nobody-here") == 401
    assert await _granted(ad_app, "hpym*") == 401
    assert await _granted(ad_app, "sstrange") == set()  # signs in; in no group


async def test_the_admin_group_through_a_nested_group(ad_app: Starlette) -> None:
    """jvandyne is in Ops Leads, which is in Registry Admins (ldap_group_admin_dn)."""
    async with make_client(ad_app, ("jvandyne", USER_PASSWORD)) as janet:
        me = await janet.get("/api/v2.0/users/current")
        assert me.status_code == 200, me.text
        assert me.json()["admin_role_in_auth"] is True
        assert (await janet.get("/api/v2.0/configurations")).status_code == 200
    async with make_client(ad_app, ("hpym", USER_PASSWORD)) as hank:
        assert (await hank.get("/api/v2.0/configurations")).status_code == 403


async def test_directory_groups_are_searched_by_name(ad_app: Starlette) -> None:
    async with make_client(ad_app, ("admin", ADMIN_PASSWORD)) as admin:
        found = await admin.get("/api/v2.0/ldap/groups/search", params={"groupname": "Registry"})
        assert found.status_code == 200, found.text
        names = {(g["group_name"], g["ldap_group_dn"]) for g in found.json()}
        assert names == {
            ("Registry Devs", group_dn("Registry Devs")),
            ("Registry Admins", group_dn("Registry Admins")),
        }
        users = await admin.get("/api/v2.0/ldap/users/search", params={"username": "jvandyne"})
        assert [u["username"] for u in users.json()] == ["jvandyne"]


async def test_a_group_left_takes_the_role_away(ad_app: Starlette, samba: SambaAD) -> None:
    samba.tool("group", "addmembers", "Registry Devs", "sstrange")
    assert await _granted(ad_app, "sstrange") == {"pull", "push"}
    samba.tool("group", "removemembers", "Registry Devs", "sstrange")
    assert await _granted(ad_app, "sstrange") == set()  # memberOf on the entry: seen at once
