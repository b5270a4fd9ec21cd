"""LDAP sign-in (``auth_mode: ldap_auth``) against a real OpenLDAP (``tests/support/slapd.py``).

The module runs its own app on a fresh database (the mode can change only while
``admin`` is the only user), on SQLite and on PostgreSQL, and its own ``slapd``.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from starlette.applications import Starlette
from tests.integration.conftest import ADMIN_PASSWORD, make_client, serving, unchecked_client
from tests.support.slapd import (
    BASE_DN,
    PEOPLE_DN,
    SEARCH_DN,
    SEARCH_PASSWORD,
    USER_PASSWORD,
    Slapd,
    start_slapd,
)

from dockyard.http.state import AppState
from dockyard.iam.models import User
from dockyard.settings import Settings
from dockyard.system.models import Property

CONFIGURATIONS = "/api/v2.0/configurations"
TOKEN = "/service/token"
SCOPE = "repository:library/ldap-test:pull"


@pytest.fixture(scope="module")
def slapd() -> Iterator[Slapd]:
    server = start_slapd()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
async def ldap_app(
    module_database_url: str, tmp_path_factory: pytest.TempPathFactory, slapd: Slapd
) -> AsyncIterator[Starlette]:
    data_dir: Path = tmp_path_factory.mktemp("ldap-data")
    settings = Settings(
        data_dir=data_dir,
        database_url=module_database_url,
        admin_password=ADMIN_PASSWORD,
        login_failure_limit=5,
    )
    async with serving(settings) as application:
        async with make_client(application, ("admin", ADMIN_PASSWORD)) as admin:
            answer = await admin.put(
                CONFIGURATIONS,
                json={
                    "auth_mode": "ldap_auth",
                    "ldap_url": slapd.url,
                    "ldap_search_dn": SEARCH_DN,
                    "ldap_search_password": SEARCH_PASSWORD,
                    "ldap_base_dn": BASE_DN,
                    "ldap_filter": "(objectClass=inetOrgPerson)",
                    "ldap_uid": "uid",
                    "ldap_scope": 2,
                    "ldap_timeout": 3,
                },
            )
            assert answer.status_code == 200, answer.text
        yield application


@pytest.fixture(scope="module")
def ldap_state(ldap_app: Starlette) -> AppState:
    result: AppState = ldap_app.state.dockyard
    return result


@pytest.fixture
async def client(ldap_app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client(ldap_app) as http:
        yield http


async def _user(state: AppState, name: str) -> User | None:
    async with state.db.read() as session:
        found: User | None = await session.scalar(select(User).where(User.username == name))
        return found


async def _token(client: httpx.AsyncClient, name: str, password: str) -> httpx.Response:
    return await client.get(
        TOKEN, params={"service": "dockyard", "scope": SCOPE}, auth=(name, password)
    )


async def test_settings_are_shown_but_the_password_never(ldap_app: Starlette, slapd: Slapd) -> None:
    async with make_client(ldap_app, ("admin", ADMIN_PASSWORD)) as admin:
        items = (await admin.get(CONFIGURATIONS)).json()
        info = (await admin.get("/api/v2.0/systeminfo")).json()
    assert items["auth_mode"] == {"value": "ldap_auth", "editable": True}
    assert items["ldap_url"] == {"value": slapd.url, "editable": True}
    assert items["ldap_uid"] == {"value": "uid", "editable": True}
    assert "ldap_search_password" not in items
    assert info["auth_mode"] == "ldap_auth"


async def test_the_search_password_is_stored_encrypted(ldap_state: AppState) -> None:
    async with ldap_state.db.read() as session:
        stored = await session.get(Property, "ldap_search_password")
        key = await session.get(Property, "settings_secret_key")
    assert stored is not None and key is not None
    assert SEARCH_PASSWORD not in stored.v
    assert stored.v.startswith("gAAAA")  # a Fernet token


async def test_first_sign_in_onboards_the_user(
    client: httpx.AsyncClient, ldap_state: AppState
) -> None:
    assert await _user(ldap_state, "alice") is None
    answer = await _token(client, "alice", USER_PASSWORD)
    assert answer.status_code == 200, answer.text
    assert answer.json()["token"]
    user = await _user(ldap_state, "alice")
    assert user is not None
    assert (user.email, user.realname, user.password) == ("alice@example.org", "Alice L.", "")
    assert not user.sysadmin_flag
    # Signing in again finds the same user, and no password of its own was given to it.
    assert (await _token(client, "alice", USER_PASSWORD)).status_code == 200
    async with ldap_state.db.read() as session:
        rows = (await session.scalars(select(User).where(User.username == "alice"))).all()
    assert len(rows) == 1


async def test_realname_falls_back_to_cn(client: httpx.AsyncClient, ldap_state: AppState) -> None:
    assert (await _token(client, "bob", USER_PASSWORD)).status_code == 200
    user = await _user(ldap_state, "bob")
    assert user is not None and (user.email, user.realname) == ("bob@example.org", "Bob Builder")


async def test_every_door_takes_directory_credentials(ldap_app: Starlette) -> None:
    async with make_client(ldap_app, ("carol", USER_PASSWORD)) as carol:
        current = await carol.get("/api/v2.0/users/current")
        assert current.status_code == 200, current.text
        assert current.json()["username"] == "carol"
        assert current.json()["email"] == "carol@example.org"
        # /v2/ with Basic credentials.
        assert (await carol.get("/v2/")).status_code == 200
    async with make_client(ldap_app) as browser:
        login = await browser.post(
            "/c/login", data={"principal": "carol", "password": USER_PASSWORD}
        )
        assert login.status_code == 200, login.text
        assert "sid" in browser.cookies
    async with make_client(ldap_app) as browser:
        wrong = await browser.post("/c/login", data={"principal": "carol", "password": "nope"})
        assert "sid" not in browser.cookies, wrong.text


@pytest.mark.parametrize(
    ("name", "password"),
    [
        ("alice", "wrong-password"),
        ("alice", ""),  # an anonymous bind would succeed: refused before any bind
        ("nobody", USER_PASSWORD),
        ("printer", USER_PASSWORD),  # outside ldap_filter
        ("*", USER_PASSWORD),
        ("al*", USER_PASSWORD),
        ("*)(uid=*", USER_PASSWORD),
        ("alice)(uid=*", USER_PASSWORD),
        ("alice\x00", USER_PASSWORD),
        ("x" * 300, USER_PASSWORD),
    ],
)
async def test_wrong_credentials_and_injections_sign_in_nobody(
    client: httpx.AsyncClient, ldap_state: AppState, name: str, password: str
) -> None:
    header = base64.b64encode(f"{name}:{password}".encode()).decode()
    answer = await client.get(
        TOKEN,
        params={"service": "dockyard", "scope": SCOPE},
        headers={"Authorization": f"Basic {header}"},
    )
    assert answer.status_code == 401, answer.text
    async with ldap_state.db.read() as session:
        names = set((await session.scalars(select(User.username))).all())
    assert names <= {"admin", "alice", "bob", "carol", "dave", "frank", "grace"}


async def test_a_user_in_another_branch_signs_in_with_subtree_scope(
    client: httpx.AsyncClient,
) -> None:
    assert (await _token(client, "erin", USER_PASSWORD)).status_code == 200


async def test_admin_signs_in_from_the_database(client: httpx.AsyncClient) -> None:
    assert (await _token(client, "admin", ADMIN_PASSWORD)).status_code == 200
    assert (await _token(client, "admin", USER_PASSWORD)).status_code == 401


async def test_no_local_users_are_created_in_ldap_mode(ldap_app: Starlette) -> None:
    async with make_client(ldap_app, ("admin", ADMIN_PASSWORD)) as admin:
        refused = await admin.post(
            "/api/v2.0/users",
            json={
                "username": "local1",
                "email": "local1@example.org",
                "realname": "Local",
                "password": "Local-Passw0rd",
            },
        )
        assert refused.status_code == 403
        assert "ldap_auth" in refused.json()["errors"][0]["message"]


async def test_directory_users_passwords_are_not_kept_here(
    ldap_app: Starlette, ldap_state: AppState
) -> None:
    async with make_client(ldap_app) as anonymous:
        assert (await _token(anonymous, "alice", USER_PASSWORD)).status_code == 200
    alice = await _user(ldap_state, "alice")
    assert alice is not None
    change = {"old_password": USER_PASSWORD, "new_password": "Other-Passw0rd"}
    async with make_client(ldap_app, ("admin", ADMIN_PASSWORD)) as admin:
        refused = await admin.put(f"/api/v2.0/users/{alice.user_id}/password", json=change)
        assert refused.status_code == 403
        assert "directory" in refused.json()["errors"][0]["message"]
    async with make_client(ldap_app, ("alice", USER_PASSWORD)) as own:
        refused = await own.put(f"/api/v2.0/users/{alice.user_id}/password", json=change)
        assert refused.status_code == 403
    after = await _user(ldap_state, "alice")
    assert after is not None
    assert after.password == ""  # nothing stored
    async with make_client(ldap_app) as anonymous:
        assert (await _token(anonymous, "alice", "Other-Passw0rd")).status_code == 401


async def test_the_mode_cannot_change_once_users_exist(ldap_app: Starlette) -> None:
    async with make_client(ldap_app, ("admin", ADMIN_PASSWORD)) as admin:
        refused = await admin.put(CONFIGURATIONS, json={"auth_mode": "db_auth"})
        assert refused.status_code == 400
        assert "only user" in refused.json()["errors"][0]["message"]
        # Sending the current mode back (tools send every item) is not a change.
        same = await admin.put(CONFIGURATIONS, json={"auth_mode": "ldap_auth"})
        assert same.status_code == 200, same.text
        missing = await admin.put(CONFIGURATIONS, json={"auth_mode": "uaa_auth"})
        assert missing.status_code == 400
        assert "not supported by Dockyard yet" in missing.json()["errors"][0]["message"]
        # OIDC and the auth proxy exist now: refused here because users exist, like any
        # change of mode.
        for mode in ("oidc_auth", "http_auth"):
            refused = await admin.put(CONFIGURATIONS, json={"auth_mode": mode})
            assert refused.status_code == 400
            assert "only user" in refused.json()["errors"][0]["message"]


async def test_a_wrong_search_password_is_a_clear_unavailable(ldap_app: Starlette) -> None:
    async with (
        make_client(ldap_app, ("admin", ADMIN_PASSWORD)) as admin,
        unchecked_client(ldap_app) as client,
    ):
        changed = await admin.put(CONFIGURATIONS, json={"ldap_search_password": "wrong"})
        assert changed.status_code == 200
        try:
            answer = await _token(client, "alice", USER_PASSWORD)
            assert answer.status_code == 503
            assert "ldap_search_dn" in answer.text
        finally:
            restored = await admin.put(
                CONFIGURATIONS, json={"ldap_search_password": SEARCH_PASSWORD}
            )
            assert restored.status_code == 200
        assert (await _token(client, "alice", USER_PASSWORD)).status_code == 200


async def test_directory_down_is_a_clear_error_and_admin_still_signs_in(
    ldap_app: Starlette, slapd: Slapd
) -> None:
    async with unchecked_client(ldap_app) as client:
        await _directory_down(ldap_app, client, slapd)


async def _directory_down(ldap_app: Starlette, client: httpx.AsyncClient, slapd: Slapd) -> None:
    assert (await _token(client, "dave", USER_PASSWORD)).status_code == 200  # pool warm
    slapd.stop()
    try:
        for _ in range(2):  # the pooled connection fails, then a fresh one cannot connect
            token = await _token(client, "dave", USER_PASSWORD)
            assert token.status_code == 503, token.text
            assert "cannot be reached" in token.json()["errors"][0]["message"]
        async with unchecked_client(ldap_app, ("dave", USER_PASSWORD)) as dave:
            api = await dave.get("/api/v2.0/users/current")
            assert api.status_code == 503
            assert api.json()["errors"][0]["code"] == "SERVICE_UNAVAILABLE"
            registry = await dave.get("/v2/")
            assert registry.status_code == 503
            assert registry.json()["errors"][0]["code"] == "UNAVAILABLE"
        assert (await _token(client, "admin", ADMIN_PASSWORD)).status_code == 200
    finally:
        slapd.start()
    assert (await _token(client, "dave", USER_PASSWORD)).status_code == 200


async def test_the_login_throttle_still_applies(client: httpx.AsyncClient) -> None:
    for _ in range(5):
        assert (await _token(client, "bob", "wrong-password")).status_code == 401
    throttled = await _token(client, "bob", USER_PASSWORD)
    assert throttled.status_code == 429
    assert PEOPLE_DN not in throttled.text


# --- Harbor's /ldap operations -------------------------------------------------------------


async def test_ping_answers_harbor_s_shape(ldap_app: Starlette, slapd: Slapd) -> None:
    async with make_client(ldap_app, ("admin", ADMIN_PASSWORD)) as admin:
        stored = await admin.post("/api/v2.0/ldap/ping")
        assert stored.status_code == 200, stored.text
        assert stored.json() == {"success": True, "message": "the directory answered"}
        # A configuration being tried: the stored password is used where none is given.
        tried = await admin.post(
            "/api/v2.0/ldap/ping", json={"ldap_url": slapd.url, "ldap_search_dn": SEARCH_DN}
        )
        assert tried.json()["success"] is True
        wrong = await admin.post(
            "/api/v2.0/ldap/ping", json={"ldap_search_password": "not-the-password"}
        )
        assert wrong.status_code == 200
        assert wrong.json()["success"] is False
        assert "ldap_search_dn" in wrong.json()["message"]
        nowhere = await admin.post(
            "/api/v2.0/ldap/ping",
            json={"ldap_url": "ldap://127.0.0.1:1", "ldap_connection_timeout": 2},
        )
        assert nowhere.json()["success"] is False
        assert "cannot be reached" in nowhere.json()["message"]
        no_base = await admin.post("/api/v2.0/ldap/ping", json={"ldap_base_dn": "dc=nowhere"})
        assert no_base.json()["success"] is False
        for bad in (
            {"ldap_url": "http://x"},
            {"ldap_scope": 7},
            {"ldap_scope": "2"},
            {"username": 7},  # none of LdapConf's fields: a mistake, not "test the stored one"
        ):
            refused = await admin.post("/api/v2.0/ldap/ping", json=bad)
            assert refused.status_code == 400, (bad, refused.text)
    async with make_client(ldap_app, ("alice", USER_PASSWORD)) as alice:
        assert (await alice.post("/api/v2.0/ldap/ping")).status_code == 403


async def test_search_finds_exact_names_and_never_more(ldap_app: Starlette) -> None:
    async with make_client(ldap_app, ("admin", ADMIN_PASSWORD)) as admin:
        one = await admin.get("/api/v2.0/ldap/users/search", params={"username": "grace"})
        assert one.status_code == 200, one.text
        assert one.json() == [
            {"username": "grace", "realname": "Rear Admiral Hopper", "email": "grace@example.org"}
        ]
        everyone = await admin.get("/api/v2.0/ldap/users/search")
        names = {u["username"] for u in everyone.json()}
        assert {"alice", "bob", "erin", "grace"} <= names and "printer" not in names
        for hostile in ("*", "gr*", "*)(uid=*", "grace)(uid=*", "x" * 300):
            none = await admin.get("/api/v2.0/ldap/users/search", params={"username": hostile})
            assert none.status_code == 200 and none.json() == [], hostile
    async with make_client(ldap_app, ("alice", USER_PASSWORD)) as alice:
        assert (await alice.get("/api/v2.0/ldap/users/search")).status_code == 403


async def test_import_creates_users_and_lists_failures(
    ldap_app: Starlette, ldap_state: AppState
) -> None:
    async with make_client(ldap_app, ("admin", ADMIN_PASSWORD)) as admin:
        done = await admin.post(
            "/api/v2.0/ldap/users/import", json={"ldap_uid_list": ["frank", "grace"]}
        )
        assert done.status_code == 200, done.text
        frank = await _user(ldap_state, "frank")
        assert frank is not None and frank.email == "frank@example.org"
        # Harbor answers the uids it could not import with 404 and a list (not its error body).
        partly = await admin.post(
            "/api/v2.0/ldap/users/import",
            json={"ldap_uid_list": ["frank", "nobody", "*"]},
            headers={"X-Dockyard-Contract": "skip"},
        )
        assert partly.status_code == 404
        assert partly.json() == [
            {"uid": "frank", "error": "the user already exists"},
            {"uid": "nobody", "error": "not found in the directory"},
            {"uid": "*", "error": "not found in the directory"},
        ]
        for bad in ({"ldap_uid_list": []}, {"ldap_uid_list": "frank"}, {}):
            refused = await admin.post("/api/v2.0/ldap/users/import", json=bad)
            assert refused.status_code == 400, (bad, refused.text)
    async with make_client(ldap_app, ("alice", USER_PASSWORD)) as alice:
        denied = await alice.post("/api/v2.0/ldap/users/import", json={"ldap_uid_list": ["x"]})
        assert denied.status_code == 403


async def test_search_without_a_directory_is_a_clear_400(app: Starlette) -> None:
    """The suite's own app, in db_auth mode with no ldap_url: nothing to search."""
    async with make_client(app, ("admin", ADMIN_PASSWORD)) as admin:
        refused = await admin.get("/api/v2.0/ldap/users/search", params={"username": "alice"})
        assert refused.status_code == 400
        assert "ldap_url" in refused.json()["errors"][0]["message"]
