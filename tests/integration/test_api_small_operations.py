"""Harbor's small operations: volumes, the CA certificate, the internal configuration,
global search, icons, and the vulnerabilities addition of an unscanned artifact."""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import update
from starlette.applications import Starlette
from tests.integration.conftest import make_client
from tests.integration.registry_helpers import digest_of, push_blob, push_image

from dockyard.http.state import AppState
from dockyard.iam.models import User
from dockyard.iam.passwords import hash_password
from dockyard.projects.service import create_project
from dockyard.registry.models import Artifact

API = "/api/v2.0"
PASSWORD = "Small-Passw0rd"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + uuid.uuid4().bytes


@pytest.fixture
async def user(app: Starlette, state: AppState) -> AsyncIterator[httpx.AsyncClient]:
    name = f"small{uuid.uuid4().hex[:8]}"
    async with state.db.write() as session:
        session.add(User(username=name, password=hash_password(PASSWORD)))
    async with make_client(app, (name, PASSWORD)) as client:
        yield client


async def _project(state: AppState, public: bool) -> str:
    name = f"so{uuid.uuid4().hex[:10]}"
    async with state.db.write() as session:
        await create_project(session, name, owner_id=1, public=public)
    return name


async def test_volumes_for_administrators(
    admin: httpx.AsyncClient, user: httpx.AsyncClient, anon: httpx.AsyncClient
) -> None:
    response = await admin.get(f"{API}/systeminfo/volumes")
    assert response.status_code == 200
    [storage] = response.json()["storage"]
    assert storage["total"] > 0 and 0 <= storage["free"] <= storage["total"]
    assert (await user.get(f"{API}/systeminfo/volumes")).status_code == 403
    assert (await anon.get(f"{API}/systeminfo/volumes")).status_code == 401


async def test_no_ca_certificate_to_hand_out(anon: httpx.AsyncClient) -> None:
    response = await anon.get(f"{API}/systeminfo/getcert")
    assert response.status_code == 404
    assert response.json()["errors"][0]["code"] == "NOT_FOUND"


async def test_internal_configuration_for_administrators(
    admin: httpx.AsyncClient, user: httpx.AsyncClient, anon: httpx.AsyncClient
) -> None:
    response = await admin.get(f"{API}/internalconfig")
    assert response.status_code == 200
    items = response.json()
    assert items["token_expiration"]["editable"] is True
    assert items["robot_name_prefix"] == {"value": "robot$", "editable": True}
    assert items["ext_endpoint"]["value"].startswith("http")
    assert (await user.get(f"{API}/internalconfig")).status_code == 403
    assert (await anon.get(f"{API}/internalconfig")).status_code == 401


async def test_search_finds_what_the_caller_may_see(
    admin: httpx.AsyncClient, anon: httpx.AsyncClient, state: AppState
) -> None:
    token = uuid.uuid4().hex[:8]
    public = await _project(state, public=True)
    private = await _project(state, public=False)
    await push_image(admin, f"{public}/find-{token}", "v1")
    await push_image(admin, f"{private}/find-{token}", "v1")

    found = await admin.get(f"{API}/search", params={"q": f"find-{token}"})
    assert found.status_code == 200
    repositories = {r["repository_name"]: r for r in found.json()["repository"]}
    assert set(repositories) == {f"{public}/find-{token}", f"{private}/find-{token}"}
    hit = repositories[f"{public}/find-{token}"]
    assert hit["project_name"] == public and hit["project_public"] is True
    assert hit["artifact_count"] == 1
    assert repositories[f"{private}/find-{token}"]["project_public"] is False

    seen = await anon.get(f"{API}/search", params={"q": f"find-{token}"})
    assert [r["repository_name"] for r in seen.json()["repository"]] == [f"{public}/find-{token}"]

    by_project = await admin.get(f"{API}/search", params={"q": private.upper()})
    assert [p["name"] for p in by_project.json()["project"]] == [private]
    hidden = await anon.get(f"{API}/search", params={"q": private})
    assert hidden.json() == {"project": [], "repository": []}
    odd = await admin.get(f"{API}/search", params={"q": "%' OR 1=1 --"})
    assert odd.json() == {"project": [], "repository": []}


async def test_icons_of_artifacts_the_caller_may_see(
    admin: httpx.AsyncClient, anon: httpx.AsyncClient, state: AppState
) -> None:
    assert (await anon.get(f"{API}/icons/not-a-digest")).status_code == 400
    unknown = digest_of(uuid.uuid4().bytes)
    assert (await anon.get(f"{API}/icons/{unknown}")).status_code == 404
    private = await _project(state, public=False)
    repo = f"{private}/app"
    manifest_digest, _ = await push_image(admin, repo, "v1")
    icon = await push_blob(admin, repo, PNG)
    # A blob no artifact names as its icon is not served, whoever asks.
    assert (await admin.get(f"{API}/icons/{icon}")).status_code == 404
    async with state.db.write() as session:
        await session.execute(
            update(Artifact).where(Artifact.digest == manifest_digest).values(icon=icon)
        )
    served = await admin.get(f"{API}/icons/{icon}")
    assert served.status_code == 200
    assert served.json() == {
        "content-type": "image/png",
        "content": base64.b64encode(PNG).decode(),
    }
    assert (await anon.get(f"{API}/icons/{icon}")).status_code == 404  # a private project's


async def test_vulnerabilities_of_an_unscanned_artifact(
    admin: httpx.AsyncClient, anon: httpx.AsyncClient, state: AppState
) -> None:
    private = await _project(state, public=False)
    await push_image(admin, f"{private}/app", "v1")
    base = f"{API}/projects/{private}/repositories/app/artifacts"
    skip = {"X-Dockyard-Contract": "skip"}  # swagger calls the addition a string
    response = await admin.get(f"{base}/v1/additions/vulnerabilities", headers=skip)
    assert response.status_code == 200
    assert response.json() == {}
    missing = await admin.get(f"{base}/v2/additions/vulnerabilities")
    assert missing.status_code == 404
    assert (await anon.get(f"{base}/v1/additions/vulnerabilities")).status_code in (401, 404)
