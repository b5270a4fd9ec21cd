"""``/v2/`` answers that Harbor's tooling can tell apart (issue 14, items 1, 2, 6 and 14).

Each test pins Harbor's (v2.15) or the OCI distribution spec's answer: status,
error code and, where scripts match on it, the message text.
"""

from __future__ import annotations

import uuid

import httpx
from starlette.applications import Starlette
from tests.integration.conftest import ADMIN_PASSWORD, make_client
from tests.integration.registry_helpers import error_code, push_blob, push_image
from tests.support.registry_auth import parse_challenge

# --- item 1: an invalid reference names no manifest --------------------------------------


async def test_invalid_reference_on_get_and_head_is_manifest_unknown(
    admin: httpx.AsyncClient, unique_repo: str
) -> None:
    await push_image(admin, unique_repo, "v1", layers=0)
    for reference in (".INVALID_MANIFEST_NAME", "-dash", "a" * 129, "sha256:abc", "sha256:"):
        url = f"/v2/{unique_repo}/manifests/{reference}"
        got = await admin.get(url)
        assert got.status_code == 404, (reference, got.text)
        assert error_code(got) == "MANIFEST_UNKNOWN", reference
        head = await admin.head(url)
        assert head.status_code == 404, reference
    # PUT keeps 400: the reference would be stored, so it must be valid.
    put = await admin.put(
        f"/v2/{unique_repo}/manifests/.INVALID_MANIFEST_NAME",
        content=b"{}",
        headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
    )
    assert put.status_code == 400
    assert error_code(put) in {"TAG_INVALID", "MANIFEST_INVALID"}


# --- item 2: a mount's challenge names the source repository -------------------------------


async def _follow_challenge(
    client: httpx.AsyncClient, response: httpx.Response, auth: tuple[str, str]
) -> dict[str, str]:
    """Fetch a token for exactly what the challenge asks, as docker and skopeo do."""
    assert response.status_code == 401, response.text
    scheme, params = parse_challenge(response.headers["www-authenticate"])
    assert scheme == "bearer"
    query = [("service", params["service"])]
    query += [("scope", scope) for scope in params["scope"].split()]
    token = await client.get(params["realm"], params=query, auth=auth)
    assert token.status_code == 200, token.text
    return {"Authorization": f"Bearer {token.json()['token']}"}


async def test_mount_challenge_offers_source_pull_so_a_token_client_mounts(
    app: Starlette, admin: httpx.AsyncClient, unique_repo: str
) -> None:
    digest = await push_blob(admin, unique_repo, b"mount me " + uuid.uuid4().bytes)
    target = f"library/t{uuid.uuid4().hex[:12]}"
    async with make_client(app) as client:
        url = f"/v2/{target}/blobs/uploads/"
        params = {"mount": digest, "from": unique_repo}
        first = await client.post(url, params=params)
        _, challenge = parse_challenge(first.headers["www-authenticate"])
        assert set(challenge["scope"].split()) == {
            f"repository:{target}:pull,push",
            f"repository:{unique_repo}:pull",
        }
        headers = await _follow_challenge(client, first, ("admin", ADMIN_PASSWORD))
        mounted = await client.post(url, params=params, headers=headers)
        assert mounted.status_code == 201, mounted.text
        assert mounted.headers["docker-content-digest"] == digest
        assert (await client.head(f"/v2/{target}/blobs/{digest}", headers=headers)).status_code == (
            200
        )
        # Without the source's pull in the token the spec's fallback still holds: an upload.
        plain = await _follow_challenge(client, await client.post(url), ("admin", ADMIN_PASSWORD))
        fallback = await client.post(url, params=params, headers=plain)
        assert fallback.status_code == 202


# --- item 6: Harbor's message for a token that lacks the action ---------------------------


async def test_token_without_the_action_gets_harbors_message(
    app: Starlette, admin: httpx.AsyncClient, unique_repo: str
) -> None:
    await push_image(admin, unique_repo, "v1", layers=0)
    async with make_client(app) as client:
        token = await client.get(
            "/service/token",
            params={"service": "dockyard", "scope": f"repository:{unique_repo}:pull"},
            auth=("admin", ADMIN_PASSWORD),
        )
        headers = {"Authorization": f"Bearer {token.json()['token']}"}
        response = await client.post(f"/v2/{unique_repo}/blobs/uploads/", headers=headers)
    assert response.status_code == 401
    assert error_code(response) == "UNAUTHORIZED"
    message = response.json()["errors"][0]["message"]
    assert message == f"unauthorized to access repository: {unique_repo}, action: push"


# --- item 14: a system robot granted catalog:read lists the catalog -------------------------


async def test_system_robot_with_catalog_read_lists_the_catalog(
    app: Starlette, admin: httpx.AsyncClient, unique_repo: str
) -> None:
    await push_image(admin, unique_repo, "v1", layers=0)
    robots = []
    for access in ([{"resource": "catalog", "action": "read"}], []):
        body = {
            "name": f"cat{uuid.uuid4().hex[:8]}",
            "level": "system",
            "duration": -1,
            "permissions": [
                {
                    "kind": "system",
                    "namespace": "/",
                    "access": [*access, {"resource": "project", "action": "list"}],
                }
            ],
        }
        created = await admin.post("/api/v2.0/robots", json=body)
        assert created.status_code == 201, created.text
        robots.append((created.json()["name"], created.json()["secret"]))
    reader, other = robots

    async with make_client(app, reader) as client:
        listed = await client.get("/v2/_catalog", params={"n": 10000})
        assert listed.status_code == 200, listed.text
        assert unique_repo in listed.json()["repositories"]
        token = await client.get(
            "/service/token", params={"service": "dockyard", "scope": "registry:catalog:*"}
        )
        bearer = {"Authorization": f"Bearer {token.json()['token']}"}
        by_token = await client.get("/v2/_catalog", params={"n": 10000}, headers=bearer)
        assert by_token.status_code == 200, by_token.text
        assert unique_repo in by_token.json()["repositories"]
    async with make_client(app, other) as client:
        refused = await client.get("/v2/_catalog")
        assert refused.status_code == 403
        assert error_code(refused) == "DENIED"
