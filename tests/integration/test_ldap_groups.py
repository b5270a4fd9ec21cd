"""LDAP groups, nested groups, the admin group, Active Directory's shape and TLS, against a
real OpenLDAP (``tests/support/slapd.py``: the memberof overlay, groups with ``member`` and
with ``uniqueMember``, a chain of nested groups, a cycle, 1,500 bulk users and groups, and
a CA-signed certificate on ``ldaps://`` and StartTLS).

One slapd and one app per database (SQLite, PostgreSQL) for the module. Roles are checked
through the token service (the actions a token grants) and ``/v2/`` (an upload started or
refused), the way docker, podman and skopeo meet them.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import ldap3
import pytest
from sqlalchemy import func, select
from starlette.applications import Starlette
from tests.integration.conftest import ADMIN_PASSWORD, make_client, serving, unchecked_client
from tests.support.certs import make_ca
from tests.support.slapd import (
    AD_GROUPS_DN,
    AD_USERS_DN,
    BASE_DN,
    ROOT_DN,
    ROOT_PASSWORD,
    SEARCH_DN,
    SEARCH_PASSWORD,
    USER_PASSWORD,
    Slapd,
    group_dn,
    start_slapd,
)

from dockyard.http.state import AppState
from dockyard.iam.models import User, UserGroup, UserGroupMembership

CONFIGURATIONS = "/api/v2.0/configurations"
PROJECT = "ldapgroups"
REPOSITORY = f"{PROJECT}/app"
BULK = 1500
CONFIG: dict[str, Any] = {
    "auth_mode": "ldap_auth",
    "ldap_search_dn": SEARCH_DN,
    "ldap_search_password": SEARCH_PASSWORD,
    "ldap_base_dn": BASE_DN,
    "ldap_filter": "(objectClass=inetOrgPerson)",
    "ldap_uid": "uid",
    "ldap_scope": 2,
    "ldap_timeout": 5,
    "ldap_group_base_dn": BASE_DN,
    "ldap_group_search_filter": "(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames))",
    "ldap_group_attribute_name": "cn",
    "ldap_group_search_scope": 2,
    "ldap_group_admin_dn": group_dn("registry-admins"),
    "ldap_group_membership_attribute": "memberOf,uniqueMember",
}
# The project's group members (role ids: 2 developer, 3 guest, 4 maintainer).
MEMBERS = {
    group_dn("developers"): 2,
    group_dn("team-c"): 3,  # carol is in team-a, in team-b, in team-c
    group_dn("maintainers"): 4,  # bob, through uniqueMember
    group_dn("loop-2"): 2,  # dave is in loop-1; loop-1 and loop-2 hold each other
    group_dn("special"): 3,  # pobrien, whose DN holds , ( ) *
}


@pytest.fixture(scope="module")
def slapd() -> Iterator[Slapd]:
    server = start_slapd(groups=True, bulk=BULK, tls=True)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
async def groups_app(
    module_database_url: str, tmp_path_factory: pytest.TempPathFactory, slapd: Slapd
) -> AsyncIterator[Starlette]:
    from dockyard.settings import Settings

    data_dir: Path = tmp_path_factory.mktemp("ldapg-data")
    settings = Settings(
        data_dir=data_dir, database_url=module_database_url, admin_password=ADMIN_PASSWORD
    )
    async with serving(settings) as application:
        async with make_client(application, ("admin", ADMIN_PASSWORD)) as admin:
            answer = await admin.put(CONFIGURATIONS, json={**CONFIG, "ldap_url": slapd.url})
            assert answer.status_code == 200, answer.text
            created = await admin.post("/api/v2.0/projects", json={"project_name": PROJECT})
            assert created.status_code == 201, created.text
            for dn, role in MEMBERS.items():
                # Named by DN only: the group is found in the directory and onboarded.
                added = await admin.post(
                    f"/api/v2.0/projects/{PROJECT}/members",
                    json={"role_id": role, "member_group": {"ldap_group_dn": dn}},
                )
                assert added.status_code == 201, (dn, added.text)
        yield application


@pytest.fixture(scope="module")
def groups_state(groups_app: Starlette) -> AppState:
    result: AppState = groups_app.state.dockyard
    return result


@pytest.fixture
async def admin(groups_app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client(groups_app, ("admin", ADMIN_PASSWORD)) as client:
        yield client


async def _granted(app: Starlette, name: str, password: str = USER_PASSWORD) -> set[str]:
    """The actions the token service grants ``name`` on the project's repository."""
    async with make_client(app) as client:
        answer = await client.get(
            "/service/token",
            params={"service": "dockyard", "scope": f"repository:{REPOSITORY}:pull,push"},
            auth=(name, password),
        )
    assert answer.status_code == 200, answer.text
    claims = jwt.decode(answer.json()["token"], options={"verify_signature": False})
    return {a for entry in claims["access"] for a in entry["actions"]}


async def _push_starts(app: Starlette, name: str) -> int:
    """The status of starting a blob upload with ``name``'s Basic credentials on /v2/."""
    async with unchecked_client(app, (name, USER_PASSWORD)) as client:
        answer = await client.post(f"/v2/{REPOSITORY}/blobs/uploads/")
        if answer.status_code == 202:
            await client.delete(answer.headers["location"])
        return answer.status_code


async def _groups_of(state: AppState, name: str) -> set[str]:
    async with state.db.read() as session:
        rows = await session.scalars(
            select(UserGroup.group_name)
            .join(UserGroupMembership, UserGroupMembership.group_id == UserGroup.id)
            .join(User, User.user_id == UserGroupMembership.user_id)
            .where(User.username == name)
        )
        return set(rows)


async def _counts(state: AppState) -> tuple[int, int]:
    async with state.db.read() as session:
        users = await session.scalar(select(func.count()).select_from(User))
        groups = await session.scalar(select(func.count()).select_from(UserGroup))
    return int(users or 0), int(groups or 0)


def _directory(slapd: Slapd) -> ldap3.Connection:
    return ldap3.Connection(
        ldap3.Server("127.0.0.1", port=slapd.port), ROOT_DN, ROOT_PASSWORD, auto_bind=True
    )


# --- roles through groups ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "actions", "groups"),
    [
        ("alice", {"pull", "push"}, {"developers"}),
        ("carol", {"pull"}, {"team-a", "team-b", "team-c"}),  # nested twice
        ("bob", {"pull", "push"}, {"maintainers"}),  # uniqueMember on the group
        ("dave", {"pull", "push"}, {"loop-1", "loop-2"}),  # the cycle ends
        ("pobrien", {"pull"}, {"special"}),  # a DN with , ( ) *
        ("erin", set(), set()),  # in no group
    ],
)
async def test_group_membership_gives_the_group_s_role(
    groups_app: Starlette,
    groups_state: AppState,
    name: str,
    actions: set[str],
    groups: set[str],
) -> None:
    assert await _granted(groups_app, name) == actions
    # Only groups that are Dockyard user groups are recorded (team-a and team-b were
    # onboarded by nobody: they count through team-c but hold no row).
    recorded = await _groups_of(groups_state, name)
    assert recorded == groups & {dn.split(",")[0][3:] for dn in MEMBERS}
    pushed = await _push_starts(groups_app, name)
    assert pushed == 202 if "push" in actions else pushed in (401, 403)


async def test_a_group_left_in_the_directory_takes_the_role_away(
    groups_app: Starlette, groups_state: AppState, slapd: Slapd
) -> None:
    # grace joins developers for this test, then leaves.
    dn = group_dn("developers")
    member = "uid=grace,ou=people,dc=example,dc=org"
    conn = _directory(slapd)
    try:
        assert conn.modify(dn, {"member": [(ldap3.MODIFY_ADD, [member])]}), conn.result
        assert "push" in await _granted(groups_app, "grace")
        async with make_client(groups_app) as client:
            held = await client.get(
                "/service/token",
                params={"service": "dockyard", "scope": f"repository:{REPOSITORY}:push"},
                auth=("grace", USER_PASSWORD),
            )
        token = held.json()["token"]
        assert conn.modify(dn, {"member": [(ldap3.MODIFY_DELETE, [member])]}), conn.result
    finally:
        conn.unbind()
    assert "push" not in await _granted(groups_app, "grace")
    assert "developers" not in await _groups_of(groups_state, "grace")
    # The token from before holds no longer: the membership's removal revoked it.
    async with unchecked_client(groups_app) as client:
        refused = await client.post(
            f"/v2/{REPOSITORY}/blobs/uploads/", headers={"Authorization": f"Bearer {token}"}
        )
    assert refused.status_code in (401, 403), refused.text


async def test_thousands_of_groups_are_capped_not_fatal(
    groups_app: Starlette, groups_state: AppState
) -> None:
    """grace is in 1,500 bulk groups (uniqueMember): the walk is paged and capped, the
    sign-in works, and none of those groups becomes a Dockyard group."""
    before = await _counts(groups_state)
    assert await _granted(groups_app, "grace") == set()
    after = await _counts(groups_state)
    assert after[1] == before[1]


async def test_the_admin_group_makes_administrators_through_nesting(
    groups_app: Starlette, groups_state: AppState
) -> None:
    async with make_client(groups_app, ("frank", USER_PASSWORD)) as frank:
        me = await frank.get("/api/v2.0/users/current")
        assert me.status_code == 200, me.text
        assert me.json()["admin_role_in_auth"] is True
        assert me.json()["sysadmin_flag"] is False  # the flag is the administrators' to set
        assert (await frank.get(CONFIGURATIONS)).status_code == 200
        frank_id = me.json()["user_id"]
        own = await frank.get(f"/api/v2.0/users/{frank_id}")
        assert own.json()["admin_role_in_auth"] is True
        # Harbor's rule: told on the caller's own record only, not in anyone else's view.
        listed = await frank.get("/api/v2.0/users", params={"q": "username=frank"})
        assert [u["admin_role_in_auth"] for u in listed.json()] == [False]
    async with make_client(groups_app, ("admin", ADMIN_PASSWORD)) as admin:
        other = await admin.get(f"/api/v2.0/users/{frank_id}")
        assert other.json()["admin_role_in_auth"] is False
        assert (await admin.get("/api/v2.0/users/current")).json()["admin_role_in_auth"] is False
    async with make_client(groups_app, ("alice", USER_PASSWORD)) as alice:
        assert (await alice.get(CONFIGURATIONS)).status_code == 403
        assert (await alice.get("/api/v2.0/users/current")).json()["admin_role_in_auth"] is False


# --- the user groups API and the directory's groups -----------------------------------------


async def test_ldap_user_groups_are_created_by_dn_as_the_directory_has_it(
    admin: httpx.AsyncClient, groups_state: AppState
) -> None:
    dn = group_dn("ops-leads")
    created = await admin.post("/api/v2.0/usergroups", json={"group_type": 1, "ldap_group_dn": dn})
    assert created.status_code == 201, created.text
    group = (await admin.get(created.headers["location"])).json()
    assert group["group_name"] == "ops-leads" and group["ldap_group_dn"] == dn
    before = await _counts(groups_state)
    for body, status in [
        ({"group_type": 1, "ldap_group_dn": dn.upper()}, 409),  # the same group
        ({"group_type": 1, "ldap_group_dn": group_dn("nobody-here")}, 400),
        ({"group_type": 1, "ldap_group_dn": "not a dn"}, 400),
        ({"group_type": 1, "ldap_group_dn": "cn=*)(cn=*,ou=groups,dc=example,dc=org"}, 400),
        ({"group_type": 1, "ldap_group_dn": "cn=x\x00,dc=example,dc=org"}, 400),
        ({"group_type": 1, "ldap_group_dn": "cn=" + "x" * 600}, 400),
        ({"group_type": 1, "group_name": "no-dn"}, 400),
    ]:
        answer = await admin.post("/api/v2.0/usergroups", json=body)
        assert answer.status_code == status, (body, answer.text)
    assert await _counts(groups_state) == before
    listed = await admin.get("/api/v2.0/usergroups", params={"ldap_group_dn": dn})
    assert [g["group_name"] for g in listed.json()] == ["ops-leads"]


async def test_project_members_by_unknown_dn_are_refused(
    admin: httpx.AsyncClient, groups_state: AppState
) -> None:
    before = await _counts(groups_state)
    for dn in (group_dn("nobody-here"), "garbage", "cn=*"):
        answer = await admin.post(
            f"/api/v2.0/projects/{PROJECT}/members",
            json={"role_id": 2, "member_group": {"ldap_group_dn": dn}},
        )
        assert answer.status_code == 400, (dn, answer.text)
    assert await _counts(groups_state) == before


async def test_group_search_answers_harbor_s_shape(admin: httpx.AsyncClient) -> None:
    search = "/api/v2.0/ldap/groups/search"
    teams = await admin.get(search, params={"groupname": "team-"})
    assert teams.status_code == 200, teams.text
    assert sorted(g["group_name"] for g in teams.json()) == ["team-a", "team-b", "team-c"]
    assert {g["group_type"] for g in teams.json()} == {1}
    one = await admin.get(search, params={"groupdn": group_dn("maintainers")})
    assert one.json() == [
        {"group_name": "maintainers", "group_type": 1, "ldap_group_dn": group_dn("maintainers")}
    ]
    assert (await admin.get(search, params={"groupdn": group_dn("nobody")})).json() == []
    # Thousands match: the answer is capped at 100, read in pages.
    bulk = await admin.get(search, params={"groupname": "bulk-group"})
    assert bulk.status_code == 200 and len(bulk.json()) == 100
    users = await admin.get("/api/v2.0/ldap/users/search")
    assert users.status_code == 200 and len(users.json()) == 100
    for hostile in ("*", ")(cn=*", "team-*", "x)(|(cn=*"):
        none = await admin.get(search, params={"groupname": hostile})
        assert none.status_code == 200 and none.json() == [], hostile
    for bad in ({}, {"groupname": "x" * 300}, {"groupname": "a\x00b"}, {"groupdn": "nope"}):
        refused = await admin.get(search, params=bad)
        assert refused.status_code == 400, (bad, refused.text)


async def test_group_search_is_for_administrators(groups_app: Starlette) -> None:
    async with make_client(groups_app, ("alice", USER_PASSWORD)) as alice:
        refused = await alice.get("/api/v2.0/ldap/groups/search", params={"groupname": "team"})
        assert refused.status_code == 403
    async with make_client(groups_app) as anonymous:
        refused = await anonymous.get("/api/v2.0/ldap/groups/search", params={"groupname": "team"})
        assert refused.status_code == 401


async def test_injections_sign_in_nobody_and_create_nothing(
    groups_app: Starlette, groups_state: AppState
) -> None:
    before = await _counts(groups_state)
    async with unchecked_client(groups_app) as client:
        for name in ("*", "*)(uid=*", "al*", "alice)(|(uid=*", "alice\x00", "x" * 300):
            header = base64.b64encode(f"{name}:{USER_PASSWORD}".encode()).decode()
            answer = await client.get(
                "/service/token",
                params={"service": "dockyard", "scope": f"repository:{REPOSITORY}:pull"},
                headers={"Authorization": f"Basic {header}"},
            )
            assert answer.status_code == 401, (name, answer.text)
    assert await _counts(groups_state) == before


async def test_bad_group_settings_are_refused(admin: httpx.AsyncClient) -> None:
    before = (await admin.get(CONFIGURATIONS)).json()
    for change in (
        {"ldap_group_search_filter": "objectClass=group"},
        {"ldap_group_search_filter": "(cn=a"},
        {"ldap_group_search_filter": "(cn)"},
        {"ldap_group_search_filter": "(a=b)(c=d)"},
        {"ldap_filter": "((uid=x))"},
        {"ldap_group_attribute_name": "c n"},
        {"ldap_group_membership_attribute": "memberOf,member,uniqueMember,x"},
        {"ldap_group_membership_attribute": "member(of)"},
        {"ldap_group_search_scope": 3},
        {"ldap_group_base_dn": "no equals sign"},
        {"ldap_ca_cert": "not a certificate"},
        {"ldap_ca_cert": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"},
        {"ldap_starttls": "yes"},
        {"ldap_group_attach_parallel": True},
    ):
        refused = await admin.put(CONFIGURATIONS, json=change)
        assert refused.status_code == 400, (change, refused.text)
    assert (await admin.get(CONFIGURATIONS)).json() == before


# --- Active Directory's shape: sAMAccountName and memberOf ----------------------------------


@pytest.fixture
async def ad_shape(groups_app: Starlette, slapd: Slapd) -> AsyncIterator[None]:
    async with make_client(groups_app, ("admin", ADMIN_PASSWORD)) as admin:
        changed = await admin.put(
            CONFIGURATIONS,
            json={
                "ldap_base_dn": AD_USERS_DN,
                "ldap_uid": "sAMAccountName",
                "ldap_filter": "(objectClass=dockyardAdAccount)",
                "ldap_group_base_dn": AD_GROUPS_DN,
                "ldap_group_search_filter": "(objectClass=groupOfNames)",
                "ldap_group_membership_attribute": "memberOf",
            },
        )
        assert changed.status_code == 200, changed.text
        try:
            yield
        finally:
            restored = await admin.put(CONFIGURATIONS, json={**CONFIG, "ldap_url": slapd.url})
            assert restored.status_code == 200, restored.text


async def test_active_directory_shape(
    groups_app: Starlette, groups_state: AppState, ad_shape: None
) -> None:
    async with make_client(groups_app, ("admin", ADMIN_PASSWORD)) as admin:
        found = await admin.get("/api/v2.0/ldap/users/search", params={"username": "hpym"})
        assert found.json() == [
            {"username": "hpym", "realname": "Hank Pym", "email": "hpym@ad.example.org"}
        ]
        added = await admin.post(
            f"/api/v2.0/projects/{PROJECT}/members",
            json={
                "role_id": 2,
                "member_group": {"ldap_group_dn": f"cn=AD Devs,{AD_GROUPS_DN}"},
            },
        )
        assert added.status_code == 201, added.text
    assert await _granted(groups_app, "hpym") == {"pull", "push"}
    assert await _groups_of(groups_state, "hpym") == {"AD Devs"}
    assert await _granted(groups_app, "jvandyne") == set()
    assert await _push_starts(groups_app, "hpym") == 202


# --- TLS: ldaps:// and StartTLS with the tests' own CA ---------------------------------------


async def _tls_sign_in(app: Starlette, change: dict[str, Any], slapd: Slapd) -> httpx.Response:
    async with make_client(app, ("admin", ADMIN_PASSWORD)) as admin:
        changed = await admin.put(CONFIGURATIONS, json=change)
        assert changed.status_code == 200, changed.text
        try:
            async with unchecked_client(app) as client:
                return await client.get(
                    "/service/token",
                    params={"service": "dockyard", "scope": f"repository:{REPOSITORY}:pull"},
                    auth=("alice", USER_PASSWORD),
                )
        finally:
            restored = await admin.put(
                CONFIGURATIONS,
                json={
                    "ldap_url": slapd.url,
                    "ldap_starttls": False,
                    "ldap_ca_cert": "",
                    "ldap_verify_cert": True,
                },
            )
            assert restored.status_code == 200


@pytest.mark.parametrize(
    ("how", "status"),
    [
        ("ldaps with the CA", 200),
        ("ldaps, the system's CAs", 503),
        ("ldaps unverified", 200),
        ("starttls with the CA", 200),
        ("starttls, the system's CAs", 503),
        ("starttls, another CA", 503),
    ],
)
async def test_tls(groups_app: Starlette, slapd: Slapd, how: str, status: int) -> None:
    change: dict[str, Any] = {
        "ldaps with the CA": {"ldap_url": slapd.ldaps_url, "ldap_ca_cert": slapd.ca_pem},
        "ldaps, the system's CAs": {"ldap_url": slapd.ldaps_url},
        "ldaps unverified": {"ldap_url": slapd.ldaps_url, "ldap_verify_cert": False},
        "starttls with the CA": {"ldap_starttls": True, "ldap_ca_cert": slapd.ca_pem},
        "starttls, the system's CAs": {"ldap_starttls": True},
        "starttls, another CA": {"ldap_starttls": True, "ldap_ca_cert": _other_ca()},
    }[how]
    answer = await _tls_sign_in(groups_app, change, slapd)
    assert answer.status_code == status, answer.text
    if status == 503:
        assert "TLS" in answer.json()["errors"][0]["message"]


def _other_ca() -> str:
    """A CA that signed nothing the directory holds."""
    return make_ca(f"other {secrets.token_hex(2)}").cert_pem.decode()


async def test_internalconfig_shows_dockyard_s_own_tls_items(admin: httpx.AsyncClient) -> None:
    items = (await admin.get("/api/v2.0/internalconfig")).json()
    assert items["ldap_starttls"] == {"value": False, "editable": True}
    assert items["ldap_ca_cert"] == {"value": "", "editable": True}
    assert "ldap_starttls" not in (await admin.get(CONFIGURATIONS)).json()


# --- the directory going down mid-test -------------------------------------------------------


async def test_directory_down_robots_and_admin_keep_working(
    groups_app: Starlette, slapd: Slapd
) -> None:
    async with make_client(groups_app, ("admin", ADMIN_PASSWORD)) as admin:
        robot = await admin.post(
            "/api/v2.0/robots",
            json={
                "name": f"ci{secrets.token_hex(3)}",
                "level": "project",
                "duration": 30,
                "permissions": [
                    {
                        "kind": "project",
                        "namespace": PROJECT,
                        "access": [{"resource": "repository", "action": "pull"}],
                    }
                ],
            },
        )
        assert robot.status_code == 201, robot.text
    robot_auth = (robot.json()["name"], robot.json()["secret"])
    assert "pull" in await _granted(groups_app, "alice")  # pools warm
    slapd.stop()
    try:
        async with unchecked_client(groups_app) as client:
            down = await client.get(
                "/service/token",
                params={"service": "dockyard", "scope": f"repository:{REPOSITORY}:pull"},
                auth=("alice", USER_PASSWORD),
            )
            assert down.status_code == 503, down.text
            assert "cannot be reached" in down.json()["errors"][0]["message"]
        assert await _granted(groups_app, *robot_auth) == {"pull"}
        async with unchecked_client(groups_app, ("admin", ADMIN_PASSWORD)) as admin:
            assert (await admin.get("/api/v2.0/users/current")).status_code == 200
            search = await admin.get("/api/v2.0/ldap/groups/search", params={"groupname": "team"})
            assert search.status_code == 503
    finally:
        slapd.start()
    assert "pull" in await _granted(groups_app, "alice")
