"""Access to /v2/ and the token service: Basic, bearer tokens, anonymous, roles."""

from __future__ import annotations

import base64
import json
import time
import uuid

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from tests.integration.conftest import ADMIN_PASSWORD, make_client
from tests.integration.registry_helpers import error_code, push_image

from dockyard.http.state import AppState
from dockyard.iam.models import User
from dockyard.iam.passwords import hash_password
from dockyard.iam.policy import Role
from dockyard.projects import repository as projects_repo
from dockyard.projects.models import ProjectMember
from dockyard.projects.service import create_project

USER_PASSWORD = "Passw0rdPassw0rd"


async def _user(state: AppState, name: str | None = None) -> str:
    username = name or f"u{uuid.uuid4().hex[:10]}"
    async with state.db.write() as session:
        session.add(User(username=username, password=hash_password(USER_PASSWORD)))
    return username


async def _private_project(state: AppState) -> str:
    name = f"p{uuid.uuid4().hex[:10]}"
    async with state.db.write() as session:
        await create_project(session, name, owner_id=1, public=False)
    return name


async def _add_member(state: AppState, project: str, username: str, role: Role) -> None:
    async with state.db.write() as session:
        found = await projects_repo.find_project_by_name(session, project)
        assert found is not None
        user_id = await _find_user_id(state, username)
        session.add(
            ProjectMember(
                project_id=found.project_id, entity_id=user_id, entity_type="u", role=int(role)
            )
        )


async def _find_user_id(state: AppState, username: str) -> int:
    from dockyard.iam import repository as users

    async with state.db.read() as session:
        user = await users.find_user_by_name(session, username)
    assert user is not None
    return user.user_id


async def _token(
    client: httpx.AsyncClient, scope: str, auth: tuple[str, str] | None = None
) -> dict[str, object]:
    params = {"service": "dockyard", "scope": scope}
    if auth is None:  # the client's own credentials, if it has any
        response = await client.get("/service/token", params=params)
    else:
        response = await client.get("/service/token", params=params, auth=auth)
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


def _access(token: str) -> list[dict[str, object]]:
    payload = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    access: list[dict[str, object]] = payload["access"]
    return access


def _bearer(token: object) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --- the token flow ----------------------------------------------------------------------


async def test_anonymous_request_is_challenged_with_scope(anon: httpx.AsyncClient) -> None:
    response = await anon.put("/v2/library/x/manifests/latest", content=b"{}")
    assert response.status_code == 401
    assert error_code(response) == "UNAUTHORIZED"
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith('Bearer realm="http://registry.test/service/token"')
    assert 'service="dockyard"' in challenge
    assert 'scope="repository:library/x:pull,push"' in challenge


async def test_token_grants_push_and_registry_honours_it(
    app: Starlette, anon: httpx.AsyncClient, unique_repo: str
) -> None:
    body = await _token(anon, f"repository:{unique_repo}:pull,push", ("admin", ADMIN_PASSWORD))
    assert body["token"] == body["access_token"]
    assert isinstance(body["expires_in"], int) and body["expires_in"] > 0
    assert "issued_at" in body
    assert _access(str(body["token"])) == [
        {"type": "repository", "name": unique_repo, "actions": ["pull", "push"]}
    ]
    async with make_client(app) as client:
        client.headers.update(_bearer(body["token"]))
        digest, _ = await push_image(client, unique_repo)
        got = await client.get(f"/v2/{unique_repo}/manifests/latest")
        assert got.status_code == 200
        assert got.headers["docker-content-digest"] == digest
        # The token names one repository: another needs another token.
        other = await client.get("/v2/library/other/tags/list")
        assert other.status_code == 401
        assert 'error="insufficient_scope"' in other.headers["www-authenticate"]


async def test_pull_only_token_cannot_push_or_delete(
    admin: httpx.AsyncClient, anon: httpx.AsyncClient, unique_repo: str
) -> None:
    digest, _ = await push_image(admin, unique_repo)
    body = await _token(anon, f"repository:{unique_repo}:pull", ("admin", ADMIN_PASSWORD))
    headers = _bearer(body["token"])
    assert (
        await anon.get(f"/v2/{unique_repo}/manifests/{digest}", headers=headers)
    ).status_code == 200
    pushed = await anon.post(f"/v2/{unique_repo}/blobs/uploads/", headers=headers)
    assert pushed.status_code == 401
    assert "pull,push" in pushed.headers["www-authenticate"]
    deleted = await anon.delete(f"/v2/{unique_repo}/manifests/{digest}", headers=headers)
    assert deleted.status_code == 401
    assert (await admin.get(f"/v2/{unique_repo}/manifests/{digest}")).status_code == 200


async def test_anonymous_token_has_pull_on_public_project_only(
    state: AppState, anon: httpx.AsyncClient
) -> None:
    private = await _private_project(state)
    body = await _token(anon, "repository:library/app:pull,push,delete")
    assert _access(str(body["token"])) == [
        {"type": "repository", "name": "library/app", "actions": ["pull"]}
    ]
    body = await _token(anon, f"repository:{private}/app:pull")
    assert _access(str(body["token"])) == []


async def test_unknown_scope_types_and_bad_names_get_nothing(anon: httpx.AsyncClient) -> None:
    auth = ("admin", ADMIN_PASSWORD)
    body = await _token(anon, "widget:library/app:pull", auth)
    assert _access(str(body["token"])) == []
    body = await _token(anon, "repository:../etc:pull", auth)
    assert _access(str(body["token"])) == []


# --- forged and broken tokens --------------------------------------------------------------


def _claims(state: AppState, **overrides: object) -> dict[str, object]:
    now = int(time.time())
    claims: dict[str, object] = {
        "iss": state.tokens.issuer,
        "sub": "admin",
        "aud": state.tokens.service,
        "iat": now,
        "nbf": now,
        "exp": now + 300,
        "access": [{"type": "repository", "name": "library/forged", "actions": ["pull", "push"]}],
    }
    claims.update(overrides)
    return claims


def _forgeries(state: AppState) -> dict[str, str]:
    real_key = state.tokens._private_key
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
    payload = base64.urlsafe_b64encode(json.dumps(_claims(state)).encode()).rstrip(b"=").decode()
    now = int(time.time())
    return {
        "other key": jwt.encode(_claims(state), other_key, algorithm="RS256"),
        "expired": jwt.encode(
            _claims(state, iat=now - 4000, nbf=now - 4000, exp=now - 3600),
            real_key,
            algorithm="RS256",
        ),
        "wrong audience": jwt.encode(
            _claims(state, aud="someone-else"), real_key, algorithm="RS256"
        ),
        "wrong issuer": jwt.encode(_claims(state, iss="evil"), real_key, algorithm="RS256"),
        "alg none": f"{header}.{payload}.",
        "garbage": "not.a.token",
        "access not a list": jwt.encode(_claims(state, access="*"), real_key, algorithm="RS256"),
    }


@pytest.mark.parametrize(
    "kind",
    [
        "other key",
        "expired",
        "wrong audience",
        "wrong issuer",
        "alg none",
        "garbage",
        "access not a list",
    ],
)
async def test_forged_tokens_are_refused(
    state: AppState, anon: httpx.AsyncClient, kind: str
) -> None:
    token = _forgeries(state)[kind]
    response = await anon.post("/v2/library/forged/blobs/uploads/", headers=_bearer(token))
    assert response.status_code == 401
    assert error_code(response) == "UNAUTHORIZED"
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    async with state.db.read() as session:
        from dockyard.registry import repository as repo

        assert await repo.find_repository_ref(session, "library/forged") is None


# --- Basic auth and roles --------------------------------------------------------------------


async def test_wrong_password_and_unknown_user_look_the_same(anon: httpx.AsyncClient) -> None:
    wrong = await anon.get("/v2/", auth=("admin", "not-the-password"))
    unknown = await anon.get("/v2/", auth=("nobody-here", "not-the-password"))
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()
    token_wrong = await anon.get("/service/token", auth=("admin", "nope"))
    token_unknown = await anon.get("/service/token", auth=("nobody-here", "nope"))
    assert token_wrong.status_code == token_unknown.status_code == 401
    assert token_wrong.json() == token_unknown.json()


async def test_anonymous_pull_public_but_never_push(
    admin: httpx.AsyncClient, anon: httpx.AsyncClient, unique_repo: str
) -> None:
    digest, manifest = await push_image(admin, unique_repo)
    got = await anon.get(f"/v2/{unique_repo}/manifests/latest")
    assert got.status_code == 200 and got.content == manifest
    refused = await anon.post(f"/v2/{unique_repo}/blobs/uploads/", params={"digest": digest})
    assert refused.status_code == 401
    assert (await anon.delete(f"/v2/{unique_repo}/manifests/{digest}")).status_code == 401


async def test_private_project_roles(
    app: Starlette, state: AppState, admin: httpx.AsyncClient
) -> None:
    project = await _private_project(state)
    repo = f"{project}/app"
    digest, _ = await push_image(admin, repo)
    outsider = await _user(state)
    developer = await _user(state)
    guest = await _user(state)
    await _add_member(state, project, developer, Role.DEVELOPER)
    await _add_member(state, project, guest, Role.GUEST)

    async with make_client(app) as anon:
        response = await anon.get(f"/v2/{repo}/manifests/latest")
        assert response.status_code == 401
    async with make_client(app, (outsider, USER_PASSWORD)) as client:
        response = await client.get(f"/v2/{repo}/manifests/latest")
        assert response.status_code == 403
        assert error_code(response) == "DENIED"
        body = await _token(client, f"repository:{repo}:pull,push")
        assert _access(str(body["token"])) == []
    async with make_client(app, (guest, USER_PASSWORD)) as client:
        assert (await client.get(f"/v2/{repo}/manifests/latest")).status_code == 200
        assert (await client.post(f"/v2/{repo}/blobs/uploads/")).status_code == 403
        body = await _token(client, f"repository:{repo}:pull,push,delete")
        assert _access(str(body["token"]))[0]["actions"] == ["pull"]
    async with make_client(app, (developer, USER_PASSWORD)) as client:
        await push_image(client, repo, "dev", seed=b"dev")
        response = await client.delete(f"/v2/{repo}/manifests/{digest}")
        assert response.status_code == 403
        body = await _token(client, f"repository:{repo}:pull,push,delete")
        assert _access(str(body["token"]))[0]["actions"] == ["pull", "push"]
    assert (await admin.get(f"/v2/{repo}/manifests/{digest}")).status_code == 200


async def test_catalog_is_for_administrators(
    app: Starlette,
    state: AppState,
    admin: httpx.AsyncClient,
    anon: httpx.AsyncClient,
    unique_repo: str,
) -> None:
    await push_image(admin, unique_repo)
    listed = await admin.get("/v2/_catalog", params={"n": 100000})
    assert listed.status_code == 200
    assert unique_repo in listed.json()["repositories"]
    refused = await anon.get("/v2/_catalog")
    assert refused.status_code == 401
    assert 'scope="registry:catalog:*"' in refused.headers["www-authenticate"]
    user = await _user(state)
    async with make_client(app, (user, USER_PASSWORD)) as client:
        assert (await client.get("/v2/_catalog")).status_code == 403
        body = await _token(client, "registry:catalog:*")
        assert _access(str(body["token"])) == []
    body = await _token(anon, "registry:catalog:*", ("admin", ADMIN_PASSWORD))
    assert _access(str(body["token"])) == [
        {"type": "registry", "name": "catalog", "actions": ["*"]}
    ]
    by_token = await anon.get("/v2/_catalog", headers=_bearer(body["token"]))
    assert by_token.status_code == 200


async def test_push_to_missing_project_names_it(admin: httpx.AsyncClient) -> None:
    response = await admin.post("/v2/nosuchproject/app/blobs/uploads/")
    assert response.status_code == 404
    assert error_code(response) == "NAME_UNKNOWN"
    assert "nosuchproject" in response.json()["errors"][0]["message"]


# --- OAuth2 form and refresh tokens ------------------------------------------------------------


async def test_password_and_refresh_grants(anon: httpx.AsyncClient, unique_repo: str) -> None:
    form = {
        "grant_type": "password",
        "username": "admin",
        "password": ADMIN_PASSWORD,
        "service": "dockyard",
        "scope": f"repository:{unique_repo}:pull",
        "access_type": "offline",
        "client_id": "test",
    }
    response = await anon.post("/service/token", data=form)
    assert response.status_code == 200, response.text
    first = response.json()
    assert _access(first["access_token"])[0]["actions"] == ["pull"]
    refreshed = await anon.post(
        "/service/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": first["refresh_token"],
            "service": "dockyard",
            "scope": f"repository:{unique_repo}:pull,push",
        },
    )
    assert refreshed.status_code == 200, refreshed.text
    assert _access(refreshed.json()["access_token"])[0]["actions"] == ["pull", "push"]
    bad = await anon.post(
        "/service/token",
        data={"grant_type": "refresh_token", "refresh_token": first["access_token"]},
    )
    assert bad.status_code == 401
    unknown = await anon.post("/service/token", data={"grant_type": "client_credentials"})
    assert unknown.status_code == 400


async def test_token_requests_are_capped(anon: httpx.AsyncClient) -> None:
    """A token request's work is bounded: at most 50 scopes, a 16 KiB query."""
    many = [("scope", f"repository:library/r{i}:pull") for i in range(1500)]
    refused = await anon.get("/service/token", params=[("service", "dockyard"), *many])
    assert refused.status_code == 400
    packed = " ".join(f"repository:library/r{i}:pull" for i in range(51))
    assert (await anon.get("/service/token", params={"scope": packed})).status_code == 400
    form = {"grant_type": "password", "username": "admin", "password": ADMIN_PASSWORD}
    posted = await anon.post("/service/token", data={**form, "scope": packed})
    assert posted.status_code == 400
    long_query = await anon.get("/service/token", params={"service": "d" * 17_000})
    assert long_query.status_code == 400
    allowed = await anon.get("/service/token", params=[("service", "dockyard"), *many[:50]])
    assert allowed.status_code == 200
    assert len(_access(str(allowed.json()["token"]))) == 50


async def test_several_scopes_are_each_decided_in_one_request(
    state: AppState, anon: httpx.AsyncClient
) -> None:
    """The token service decides all scopes of a request in one lookup, each project
    once: a member's project, two repositories of it, a private project it is not in,
    a missing project, and a bad name each get what they should."""
    username = await _user(state)
    mine, theirs = await _private_project(state), await _private_project(state)
    await _add_member(state, mine, username, Role.DEVELOPER)
    params = [
        ("service", "dockyard"),
        ("scope", f"repository:{mine}/a:pull,push"),
        ("scope", f"repository:{mine}/b:pull,delete"),
        ("scope", f"repository:{theirs}/c:pull"),
        ("scope", f"repository:missing{uuid.uuid4().hex[:8]}/d:pull"),
        ("scope", "repository:Not_A_Name:pull"),
        ("scope", "registry:catalog:*"),
    ]
    response = await anon.get("/service/token", params=params, auth=(username, USER_PASSWORD))
    assert response.status_code == 200, response.text
    assert _access(response.json()["token"]) == [
        {"type": "repository", "name": f"{mine}/a", "actions": ["pull", "push"]},
        {"type": "repository", "name": f"{mine}/b", "actions": ["pull"]},
    ]


async def test_granted_scopes_keep_the_order_asked(anon: httpx.AsyncClient) -> None:
    params = [
        ("service", "dockyard"),
        ("scope", "repository:library/first:pull"),
        ("scope", "registry:catalog:*"),
        ("scope", "repository:library/second:push"),
    ]
    response = await anon.get("/service/token", params=params, auth=("admin", ADMIN_PASSWORD))
    assert response.status_code == 200, response.text
    assert [(a["type"], a["name"]) for a in _access(response.json()["token"])] == [
        ("repository", "library/first"),
        ("registry", "catalog"),
        ("repository", "library/second"),
    ]
