"""HTTP auth proxy sign-in (``auth_mode: http_auth``) against a real auth proxy server
the tests start on loopback (``tests/support/authproxy.py``).

The module runs its own app on a fresh database (the mode can change only while
``admin`` is the only user), on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from starlette.applications import Starlette
from tests.console.helpers import sign_in
from tests.integration.conftest import ADMIN_PASSWORD, make_client, serving
from tests.support.authproxy import PASSWORD, AuthProxyServer, Garbage
from tests.support.postgres import postgres_admin_url, temporary_database

from dockyard.http.state import AppState
from dockyard.iam.models import User, UserGroup, UserGroupMembership
from dockyard.settings import Settings

CONFIGURATIONS = "/api/v2.0/configurations"
TOKEN = "/service/token"
PROJECT = "proxyteam"
SCOPE = f"repository:{PROJECT}/app:pull,push"
ADMIN_GROUP = "registry-admins"


@pytest.fixture(scope="module")
def proxy() -> Iterator[AuthProxyServer]:
    server = AuthProxyServer()
    server.add("alice", ["developers", "everyone"])
    server.add("bob", ["everyone"])
    server.add("carol", [ADMIN_GROUP])
    server.add("dora@example.org", [])
    server.add("root-boss", [])
    server.add("erin", ["everyone"])  # never signs in: every attempt meets a broken proxy
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def tls_proxy() -> Iterator[AuthProxyServer]:
    server = AuthProxyServer(tls=True)
    server.add("tess", ["tls-people"])
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def proxy_database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('authproxy-sqlite') / 'dockyard.db'}"
        return
    with temporary_database(postgres_admin_url()) as url:
        yield url


def _proxy_settings(proxy: AuthProxyServer) -> dict[str, object]:
    return {
        "auth_mode": "http_auth",
        "http_authproxy_endpoint": proxy.login_url,
        "http_authproxy_tokenreview_endpoint": proxy.review_url,
        "http_authproxy_verify_cert": True,
        "http_authproxy_server_certificate": "",
        "http_authproxy_admin_groups": ADMIN_GROUP,
        "http_authproxy_admin_usernames": "root-boss",
    }


@pytest.fixture(scope="module")
async def proxy_app(
    proxy_database_url: str, tmp_path_factory: pytest.TempPathFactory, proxy: AuthProxyServer
) -> AsyncIterator[Starlette]:
    data_dir: Path = tmp_path_factory.mktemp("authproxy-data")
    settings = Settings(
        data_dir=data_dir,
        database_url=proxy_database_url,
        admin_password=ADMIN_PASSWORD,
        login_failure_limit=50,
        outbound_timeout_seconds=5,
    )
    async with serving(settings) as application:
        async with make_client(application, ("admin", ADMIN_PASSWORD)) as admin:
            answer = await admin.put(CONFIGURATIONS, json=_proxy_settings(proxy))
            assert answer.status_code == 200, answer.text
            created = await admin.post("/api/v2.0/projects", json={"project_name": PROJECT})
            assert created.status_code == 201, created.text
        yield application


@pytest.fixture(scope="module")
def proxy_state(proxy_app: Starlette) -> AppState:
    result: AppState = proxy_app.state.dockyard
    return result


def _unchecked_client(app: Starlette, auth: tuple[str, str] | None = None) -> httpx.AsyncClient:
    """A client that may see a 503 (``make_client`` refuses every 5xx): the proxy is
    down or broken on purpose, and the sign-in must say so."""
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40001))
    return httpx.AsyncClient(transport=transport, base_url="http://registry.test", auth=auth)


async def _user(state: AppState, name: str) -> User | None:
    async with state.db.read() as session:
        found: User | None = await session.scalar(select(User).where(User.username == name))
        return found


async def _user_count(state: AppState) -> int:
    async with state.db.read() as session:
        return len((await session.scalars(select(User.user_id))).all())


async def _groups_of(state: AppState, name: str) -> dict[str, int]:
    async with state.db.read() as session:
        rows = await session.execute(
            select(UserGroup.group_name, UserGroup.group_type)
            .join(UserGroupMembership, UserGroupMembership.group_id == UserGroup.id)
            .join(User, User.user_id == UserGroupMembership.user_id)
            .where(User.username == name)
        )
        return {str(n): int(t) for n, t in rows.all()}


async def _token(client: httpx.AsyncClient, name: str, password: str) -> httpx.Response:
    return await client.get(
        TOKEN, params={"service": "dockyard", "scope": SCOPE}, auth=(name, password)
    )


def _granted(answer: httpx.Response) -> set[str]:
    payload = answer.json()["token"].split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return {a for entry in claims.get("access", []) for a in entry["actions"]}


async def test_settings_are_shown_and_editable(
    proxy_app: Starlette, proxy: AuthProxyServer
) -> None:
    async with make_client(proxy_app, ("admin", ADMIN_PASSWORD)) as admin:
        items = (await admin.get(CONFIGURATIONS)).json()
        info = (await admin.get("/api/v2.0/systeminfo")).json()
    assert items["auth_mode"] == {"value": "http_auth", "editable": True}
    assert items["http_authproxy_endpoint"] == {"value": proxy.login_url, "editable": True}
    assert items["http_authproxy_tokenreview_endpoint"]["value"] == proxy.review_url
    assert items["http_authproxy_admin_groups"] == {"value": ADMIN_GROUP, "editable": True}
    assert items["http_authproxy_skip_search"] == {"value": False, "editable": True}
    assert items["primary_auth_mode"] == {"value": False, "editable": True}
    assert info["auth_mode"] == "http_auth"
    assert info["authproxy_settings"] == {
        "endpoint": proxy.login_url,
        "tokenreivew_endpoint": proxy.review_url,  # Harbor's spelling
        "skip_search": False,
        "verify_cert": True,
        "server_certificate": "",
    }
    async with make_client(proxy_app) as anonymous:
        assert "authproxy_settings" not in (await anonymous.get("/api/v2.0/systeminfo")).json()


async def test_sign_in_onboards_the_user_with_its_groups(
    proxy_app: Starlette, proxy_state: AppState, proxy: AuthProxyServer
) -> None:
    async with make_client(proxy_app) as anonymous:
        token = await _token(anonymous, "alice", PASSWORD)
        assert token.status_code == 200, token.text
    alice = await _user(proxy_state, "alice")
    assert alice is not None
    assert alice.realname == "alice" and alice.password == "" and alice.email is None
    assert not alice.sysadmin_flag and not alice.admin_role_in_auth
    assert await _groups_of(proxy_state, "alice") == {"developers": 2, "everyone": 2}
    assert proxy.reviews[-1]["apiVersion"] == "authentication.k8s.io/v1beta1"
    assert proxy.reviews[-1]["kind"] == "TokenReview"
    # The REST API (Basic) and the console sign in the same way.
    async with make_client(proxy_app, ("alice", PASSWORD)) as own:
        me = await own.get("/api/v2.0/users/current")
        assert me.status_code == 200, me.text
        assert me.json()["username"] == "alice"
        assert me.json()["admin_role_in_auth"] is False
    async with make_client(proxy_app) as browser:
        login = await browser.post("/c/login", data={"principal": "alice", "password": PASSWORD})
        assert login.status_code == 200, login.text
    # An address as a name is kept as the e-mail address too, as Harbor does.
    async with make_client(proxy_app) as anonymous:
        assert (await _token(anonymous, "dora@example.org", PASSWORD)).status_code == 200
    dora = await _user(proxy_state, "dora@example.org")
    assert dora is not None and dora.email == "dora@example.org"


async def test_groups_follow_the_latest_review(
    proxy_app: Starlette, proxy_state: AppState, proxy: AuthProxyServer
) -> None:
    async with make_client(proxy_app) as anonymous:
        assert (await _token(anonymous, "bob", PASSWORD)).status_code == 200
        assert await _groups_of(proxy_state, "bob") == {"everyone": 2}
        proxy.accounts["bob"].groups = ["testers"]
        try:
            assert (await _token(anonymous, "bob", PASSWORD)).status_code == 200
            assert await _groups_of(proxy_state, "bob") == {"testers": 2}
        finally:
            proxy.accounts["bob"].groups = ["everyone"]


async def test_an_http_group_member_gets_the_group_s_role(
    proxy_app: Starlette, proxy: AuthProxyServer
) -> None:
    async with make_client(proxy_app) as anonymous:
        assert (await _token(anonymous, "alice", PASSWORD)).status_code == 200  # onboarded
        assert _granted(await _token(anonymous, "alice", PASSWORD)) == set()
    async with make_client(proxy_app, ("admin", ADMIN_PASSWORD)) as admin:
        member = await admin.post(
            f"/api/v2.0/projects/{PROJECT}/members",
            headers={"X-Is-Resource-Name": "true"},
            json={"role_id": 2, "member_group": {"group_name": "developers", "group_type": 2}},
        )
        assert member.status_code == 201, member.text
    async with make_client(proxy_app) as anonymous:
        assert _granted(await _token(anonymous, "alice", PASSWORD)) == {"pull", "push"}
        assert _granted(await _token(anonymous, "bob", PASSWORD)) == set()


async def test_admin_groups_and_usernames_make_administrators(
    proxy_app: Starlette, proxy_state: AppState, proxy: AuthProxyServer
) -> None:
    for name in ("carol", "root-boss"):
        async with make_client(proxy_app, (name, PASSWORD)) as user:
            me = await user.get("/api/v2.0/users/current")
            assert me.status_code == 200, me.text
            assert me.json()["admin_role_in_auth"] is True
            assert me.json()["sysadmin_flag"] is False
            assert (await user.get(CONFIGURATIONS)).status_code == 200
    async with make_client(proxy_app, ("bob", PASSWORD)) as bob:
        assert (await bob.get(CONFIGURATIONS)).status_code == 403
    # Out of the admin group: no longer an administrator from the next sign-in on.
    proxy.accounts["carol"].groups = ["everyone"]
    try:
        async with make_client(proxy_app, ("carol", PASSWORD)) as carol:
            assert (await carol.get(CONFIGURATIONS)).status_code == 403
        found = await _user(proxy_state, "carol")
        assert found is not None and not found.admin_role_in_auth
    finally:
        proxy.accounts["carol"].groups = [ADMIN_GROUP]


async def test_wrong_passwords_and_unknown_names_are_refused_and_create_nobody(
    proxy_app: Starlette, proxy_state: AppState, proxy: AuthProxyServer
) -> None:
    before = await _user_count(proxy_state)
    async with make_client(proxy_app) as anonymous:
        assert (await _token(anonymous, "alice", "wrong")).status_code == 401
        refused = await _token(anonymous, "nobody", PASSWORD)
        assert refused.status_code == 401
        assert refused.json()["errors"][0]["code"] == "UNAUTHORIZED"
        async with make_client(proxy_app, ("nobody", PASSWORD)) as api:
            assert (await api.get("/api/v2.0/users/current")).status_code == 401
        logins = proxy.logins
        # Names that cannot be Basic credentials or a user: refused without asking.
        for name in ("x" * 300, "tab\tname", "nul\u0000name"):
            assert (await _token(anonymous, name, PASSWORD)).status_code == 401
        assert (await _token(anonymous, "alice", "")).status_code == 401
        assert proxy.logins == logins
    assert await _user_count(proxy_state) == before


@pytest.mark.parametrize(
    "review_name",
    ["admin", "robot$sneaky", "has,comma", " padded", "x" * 300, "nul\u0000name"],
)
async def test_hostile_names_from_the_review_sign_nobody_in(
    proxy_app: Starlette, proxy_state: AppState, proxy: AuthProxyServer, review_name: str
) -> None:
    before = await _user_count(proxy_state)
    proxy.add("mallory", review_name=review_name)
    try:
        async with _unchecked_client(proxy_app) as client:
            answer = await _token(client, "mallory", PASSWORD)
        assert answer.status_code in (401, 503), answer.text
        assert answer.json()["errors"][0]["message"]
    finally:
        del proxy.accounts["mallory"]
    assert await _user_count(proxy_state) == before
    admin = await _user(proxy_state, "admin")
    assert admin is not None and not admin.admin_role_in_auth


_GROUPS_TOO_MANY = {"authenticated": True, "user": {"username": "alice", "groups": ["g"] * 501}}


@pytest.mark.parametrize(
    ("garbage", "said"),
    [
        (Garbage("login", 200, b"<html>welcome</html>", "text/html"), "not JSON"),
        (Garbage("login", 200, b"[1, 2]"), "not an object"),
        (Garbage("login", 200, b'{"session_id": 7}'), "session_id"),
        (Garbage("login", 200, b"{}"), "session_id"),
        (Garbage("login", 500, b"boom"), "answered 500"),
        (Garbage("login", 200, b'{"session_id": "' + b"a" * 70000 + b'"}'), "more than"),
        (Garbage("tokenreview", 200, b"not json"), "not JSON"),
        (Garbage("tokenreview", 200, b'{"status": "yes"}'), "status"),
        (Garbage("tokenreview", 200, b'{"status": {"authenticated": "yes"}}'), "authenticated"),
        (Garbage("tokenreview", 200, b'{"status": {"authenticated": true}}'), "status.user"),
        (
            Garbage("tokenreview", 200, b'{"status": {"authenticated": true, "user": {}}}'),
            "username",
        ),
        (
            Garbage(
                "tokenreview",
                200,
                b'{"status": {"authenticated": true, "user": {"username": "alice", '
                b'"groups": "admins"}}}',
            ),
            "groups",
        ),
        (Garbage("tokenreview", 200, json.dumps({"status": _GROUPS_TOO_MANY}).encode()), "500"),
        (
            Garbage(
                "tokenreview",
                200,
                b'{"status": {"authenticated": true, "user": {"username": "alice", '
                b'"groups": ["\\u0000x"]}}}',
            ),
            "group",
        ),
        (Garbage("tokenreview", 404, b"no such page"), "answered 404"),
    ],
)
async def test_garbage_from_the_proxy_is_a_clear_503(
    proxy_app: Starlette,
    proxy_state: AppState,
    proxy: AuthProxyServer,
    garbage: Garbage,
    said: str,
) -> None:
    before = await _user_count(proxy_state)
    proxy.garbage = garbage
    try:
        async with _unchecked_client(proxy_app) as client:
            answer = await _token(client, "erin", PASSWORD)
            assert answer.status_code == 503, answer.text
            message = answer.json()["errors"][0]["message"]
            assert said in message and "auth proxy" in message
            assert (await _token(client, "admin", ADMIN_PASSWORD)).status_code == 200
    finally:
        proxy.garbage = None
    assert await _user_count(proxy_state) == before
    assert await _user(proxy_state, "erin") is None


async def test_a_review_that_says_no_is_a_wrong_password(
    proxy_app: Starlette, proxy_state: AppState, proxy: AuthProxyServer
) -> None:
    proxy.garbage = Garbage("tokenreview", 200, b'{"status": {"authenticated": false}}')
    try:
        async with make_client(proxy_app) as anonymous:
            assert (await _token(anonymous, "bob", PASSWORD)).status_code == 401
    finally:
        proxy.garbage = None


async def test_proxy_down_is_a_clear_503_and_admin_and_robots_still_sign_in(
    proxy_app: Starlette, proxy: AuthProxyServer
) -> None:
    async with make_client(proxy_app, ("admin", ADMIN_PASSWORD)) as admin:
        robot = await admin.post(
            "/api/v2.0/robots",
            json={
                "name": "proxydown",
                "level": "system",
                "duration": -1,
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
        robot_name, robot_secret = robot.json()["name"], robot.json()["secret"]
        moved = await admin.put(
            CONFIGURATIONS,
            json={
                "http_authproxy_endpoint": "http://127.0.0.1:9/login",
                "http_authproxy_tokenreview_endpoint": "http://127.0.0.1:9/tokenreview",
            },
        )
        assert moved.status_code == 200, moved.text
        try:
            async with _unchecked_client(proxy_app) as client:
                down = await _token(client, "alice", PASSWORD)
                assert down.status_code == 503, down.text
                message = down.json()["errors"][0]["message"]
                assert "cannot be reached" in message and "admin" in message
                async with _unchecked_client(proxy_app, ("alice", PASSWORD)) as alice:
                    api = await alice.get("/api/v2.0/users/current")
                    assert api.status_code == 503
                    assert api.json()["errors"][0]["code"] == "SERVICE_UNAVAILABLE"
                    registry = await alice.get("/v2/")
                    assert registry.status_code == 503
                    assert registry.json()["errors"][0]["code"] == "UNAVAILABLE"
                assert (await _token(client, "admin", ADMIN_PASSWORD)).status_code == 200
                assert (await _token(client, robot_name, robot_secret)).status_code == 200
                unset = await admin.put(CONFIGURATIONS, json={"http_authproxy_endpoint": ""})
                assert unset.status_code == 200
                unconfigured = await _token(client, "alice", PASSWORD)
                assert unconfigured.status_code == 503
                assert "http_authproxy_endpoint" in unconfigured.json()["errors"][0]["message"]
        finally:
            restored = await admin.put(CONFIGURATIONS, json=_proxy_settings(proxy))
            assert restored.status_code == 200


async def test_tls_with_the_administrator_s_ca(
    proxy_app: Starlette, proxy: AuthProxyServer, tls_proxy: AuthProxyServer
) -> None:
    base = {
        "http_authproxy_endpoint": tls_proxy.login_url,
        "http_authproxy_tokenreview_endpoint": tls_proxy.review_url,
    }
    async with (
        make_client(proxy_app, ("admin", ADMIN_PASSWORD)) as admin,
        _unchecked_client(proxy_app) as client,
    ):
        try:
            unknown_ca = await admin.put(
                CONFIGURATIONS, json=base | {"http_authproxy_verify_cert": True}
            )
            assert unknown_ca.status_code == 200
            refused = await _token(client, "tess", PASSWORD)
            assert refused.status_code == 503, refused.text
            assert "CERTIFICATE_VERIFY_FAILED" in refused.text
            pinned = await admin.put(
                CONFIGURATIONS, json={"http_authproxy_server_certificate": tls_proxy.ca_pem}
            )
            assert pinned.status_code == 200, pinned.text
            assert (await _token(client, "tess", PASSWORD)).status_code == 200
            unverified = await admin.put(
                CONFIGURATIONS,
                json={"http_authproxy_server_certificate": "", "http_authproxy_verify_cert": False},
            )
            assert unverified.status_code == 200
            assert (await _token(client, "tess", PASSWORD)).status_code == 200
        finally:
            restored = await admin.put(CONFIGURATIONS, json=_proxy_settings(proxy))
            assert restored.status_code == 200


@pytest.mark.parametrize(
    "change",
    [
        {"http_authproxy_endpoint": "ftp://auth.example.com/login"},
        {"http_authproxy_endpoint": "https://user:pw@auth.example.com/login"},
        {"http_authproxy_endpoint": "auth.example.com/login"},
        {"http_authproxy_tokenreview_endpoint": "https://auth example.com/"},
        {"http_authproxy_tokenreview_endpoint": "https://" + "a" * 2000 + ".com/"},
        {"http_authproxy_server_certificate": "not a certificate"},
        {"http_authproxy_server_certificate": "-----BEGIN CERTIFICATE-----\nAAAA\n"},
        {"http_authproxy_admin_usernames": "a," + "b" * 300},
        {"http_authproxy_verify_cert": "yes"},
        {"http_authproxy_skip_search": 1},
        {"primary_auth_mode": "true"},
    ],
)
async def test_bad_settings_are_refused_and_nothing_changes(
    proxy_app: Starlette, change: dict[str, object]
) -> None:
    async with make_client(proxy_app, ("admin", ADMIN_PASSWORD)) as admin:
        before = (await admin.get(CONFIGURATIONS)).json()
        refused = await admin.put(CONFIGURATIONS, json=change)
        assert refused.status_code == 400, refused.text
        assert refused.json()["errors"][0]["message"]
        assert (await admin.get(CONFIGURATIONS)).json() == before


async def test_the_mode_cannot_change_once_users_exist(proxy_app: Starlette) -> None:
    async with make_client(proxy_app) as anonymous:
        assert (await _token(anonymous, "alice", PASSWORD)).status_code == 200
    async with make_client(proxy_app, ("admin", ADMIN_PASSWORD)) as admin:
        for mode in ("db_auth", "ldap_auth"):
            refused = await admin.put(CONFIGURATIONS, json={"auth_mode": mode})
            assert refused.status_code == 400
            assert "only user" in refused.json()["errors"][0]["message"]
        same = await admin.put(CONFIGURATIONS, json={"auth_mode": "http_auth"})
        assert same.status_code == 200, same.text
        # Local users cannot be made while another mode signs people in.
        made = await admin.post(
            "/api/v2.0/users",
            json={
                "username": "local",
                "email": "local@example.org",
                "realname": "Local",
                "password": "Local-Passw0rd",
            },
        )
        assert made.status_code == 403


async def test_skip_search_onboards_members_added_by_name(
    proxy_app: Starlette, proxy_state: AppState, proxy: AuthProxyServer
) -> None:
    members = f"/api/v2.0/projects/{PROJECT}/members"
    by_name = {"X-Is-Resource-Name": "true"}
    frank = {"role_id": 3, "member_user": {"username": "frank"}}
    ops = {"role_id": 3, "member_group": {"group_name": "ops", "group_type": 2}}
    async with make_client(proxy_app, ("admin", ADMIN_PASSWORD)) as admin:
        # Off (Harbor's default): the proxy cannot be searched, so an unseen name is unknown.
        for body in (frank, ops):
            refused = await admin.post(members, headers=by_name, json=body)
            assert refused.status_code == 400, refused.text
        assert await _user(proxy_state, "frank") is None
        assert (
            await admin.put(CONFIGURATIONS, json={"http_authproxy_skip_search": True})
        ).is_success
        try:
            for body in (frank, ops):
                added = await admin.post(members, headers=by_name, json=body)
                assert added.status_code == 201, added.text
            for hostile in ("bad,name", "x" * 300, "admin"):
                body = {"role_id": 3, "member_user": {"username": hostile}}
                refused = await admin.post(members, headers=by_name, json=body)
                assert refused.status_code in (400, 409), refused.text
        finally:
            restored = await admin.put(CONFIGURATIONS, json={"http_authproxy_skip_search": False})
            assert restored.is_success
    made = await _user(proxy_state, "frank")
    assert made is not None and made.realname == "frank" and made.password == ""
    assert await _user(proxy_state, "bad,name") is None
    # frank signs in later through the proxy as the same user, with ops's role.
    proxy.add("frank", ["ops"])
    async with make_client(proxy_app) as anonymous:
        assert _granted(await _token(anonymous, "frank", PASSWORD)) == {"pull"}


# --- the console's authentication section --------------------------------------------------


async def test_console_section_refuses_bad_input_and_non_administrators(
    proxy_app: Starlette, proxy: AuthProxyServer
) -> None:
    form_url = "/harbor/admin/configuration/authentication"
    async with make_client(proxy_app) as anonymous:
        assert (await _token(anonymous, "bob", PASSWORD)).status_code == 200  # bob exists
    async with make_client(proxy_app, ("admin", ADMIN_PASSWORD)) as admin:
        before = (await admin.get(CONFIGURATIONS)).json()
    async with make_client(proxy_app) as browser:
        csrf = await sign_in(browser, "admin", ADMIN_PASSWORD)
        page = (await browser.get("/harbor/admin/configuration")).text
        assert (
            "Proxy-Passw0rd" not in page
            and 'name="ldap_search_password" type="password" value=""' in page
        )
        assert 'id="auth-mode" name="auth_mode" disabled' in page  # users exist
        base = {"_csrf": csrf, "http_authproxy_endpoint": proxy.login_url}
        for hostile in (
            {"http_authproxy_endpoint": "javascript:alert(1)"},
            {"http_authproxy_tokenreview_endpoint": "https://" + "a" * 5000},
            {"http_authproxy_server_certificate": "-----BEGIN CERTIFICATE-----\nnope"},
            {"ldap_url": "http://not-ldap"},
            {"ldap_scope": "9"},
            {"ldap_timeout": "soon"},
            {"auth_mode": "db_auth"},  # sent anyway while other users exist
            {"auth_mode": "../../etc"},
        ):
            refused = await browser.post(form_url, data=base | hostile)
            assert refused.status_code == 303, refused.text
            shown = await browser.get(refused.headers["location"])
            assert "Not done" in shown.text, hostile
        missing_csrf = await browser.post(form_url, data={"http_authproxy_endpoint": ""})
        assert missing_csrf.status_code == 403
    async with make_client(proxy_app, ("admin", ADMIN_PASSWORD)) as admin:
        assert (await admin.get(CONFIGURATIONS)).json() == before
    async with make_client(proxy_app) as browser:
        csrf = await sign_in(browser, "bob", PASSWORD)
        denied = await browser.post(form_url, data={"_csrf": csrf, "http_authproxy_endpoint": ""})
        assert denied.status_code == 403
        ping = await browser.post(
            "/harbor/admin/configuration/ldap-ping", data={"_csrf": csrf, "ldap_url": "ldap://x"}
        )
        assert ping.status_code == 403
        imported = await browser.post(
            "/harbor/admin/users/ldap-import", data={"_csrf": csrf, "uid": "x"}
        )
        assert imported.status_code == 403


async def test_tokenreview_names_sign_in_with_a_token_the_proxy_issued(
    proxy_app: Starlette, proxy: AuthProxyServer
) -> None:
    """Harbor's ``tokenreview$<name>``: the password is a token, reviewed as it is."""
    proxy.sessions["k8s-service-account-token"] = "alice"
    try:
        async with make_client(proxy_app) as anonymous:
            logins = proxy.logins
            good = await _token(anonymous, "tokenreview$alice", "k8s-service-account-token")
            assert good.status_code == 200, good.text
            assert proxy.logins == logins  # no login call: the token was reviewed directly
            for name, token in (
                ("tokenreview$bob", "k8s-service-account-token"),  # someone else's token
                ("tokenreview$alice", "unknown-token"),
                ("tokenreview$alice", ""),
            ):
                assert (await _token(anonymous, name, token)).status_code == 401, name
        async with make_client(proxy_app, ("tokenreview$alice", "k8s-service-account-token")) as c:
            me = await c.get("/api/v2.0/users/current")
            assert me.status_code == 200 and me.json()["username"] == "alice"
    finally:
        del proxy.sessions["k8s-service-account-token"]


async def test_proxy_users_have_no_password_here(
    proxy_app: Starlette, proxy_state: AppState
) -> None:
    async with make_client(proxy_app) as anonymous:
        assert (await _token(anonymous, "bob", PASSWORD)).status_code == 200
    bob = await _user(proxy_state, "bob")
    assert bob is not None
    change = {"old_password": PASSWORD, "new_password": "Other-Passw0rd"}
    async with make_client(proxy_app, ("bob", PASSWORD)) as own:
        refused = await own.put(f"/api/v2.0/users/{bob.user_id}/password", json=change)
        assert refused.status_code == 403
        assert "HTTP auth proxy" in refused.json()["errors"][0]["message"]
    after = await _user(proxy_state, "bob")
    assert after is not None and after.password == ""


async def test_leaving_a_group_at_the_proxy_revokes_tokens_from_before(
    proxy_app: Starlette, proxy: AuthProxyServer
) -> None:
    proxy.add("gina", ["pushers"])
    async with make_client(proxy_app) as anonymous:
        assert (await _token(anonymous, "gina", PASSWORD)).status_code == 200  # groups made
    async with make_client(proxy_app, ("admin", ADMIN_PASSWORD)) as admin:
        member = await admin.post(
            f"/api/v2.0/projects/{PROJECT}/members",
            headers={"X-Is-Resource-Name": "true"},
            json={"role_id": 2, "member_group": {"group_name": "pushers", "group_type": 2}},
        )
        assert member.status_code == 201, member.text
    async with make_client(proxy_app) as anonymous:
        before = await _token(anonymous, "gina", PASSWORD)
        assert _granted(before) == {"pull", "push"}
        bearer = {"Authorization": f"Bearer {before.json()['token']}"}
        upload = f"/v2/{PROJECT}/app/blobs/uploads/"
        started = await anonymous.post(upload, headers=bearer)
        assert started.status_code == 202, started.text
        proxy.accounts["gina"].groups = []
        assert _granted(await _token(anonymous, "gina", PASSWORD)) == set()
        refused = await anonymous.post(upload, headers=bearer)
        assert refused.status_code in (401, 403), refused.text


async def test_a_metadata_address_is_never_called(
    proxy_app: Starlette, proxy: AuthProxyServer
) -> None:
    """The endpoint may be on loopback or a private network (an administrator chose it),
    never on a cloud metadata address."""
    async with (
        make_client(proxy_app, ("admin", ADMIN_PASSWORD)) as admin,
        _unchecked_client(proxy_app) as client,
    ):
        moved = await admin.put(
            CONFIGURATIONS, json={"http_authproxy_endpoint": "http://169.254.169.254/login"}
        )
        assert moved.status_code == 200
        try:
            refused = await _token(client, "alice", PASSWORD)
            assert refused.status_code == 503
            assert "egress policy" in refused.json()["errors"][0]["message"]
        finally:
            restored = await admin.put(CONFIGURATIONS, json=_proxy_settings(proxy))
            assert restored.status_code == 200
