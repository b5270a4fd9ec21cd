"""Tag immutability enforced at the registry's hook seam: an immutable tag may be pushed
once (and the same manifest again), never moved to another manifest, never deleted."""

from __future__ import annotations

import json
from typing import Any

import httpx
from tests.integration.registry_helpers import (
    OCI_MANIFEST,
    digest_of,
    error_code,
    image_manifest,
    push_blob,
    push_image,
)
from tests.integration.test_api_immutable_rules import API, create, new_project, rule

from dockyard.http.state import AppState
from dockyard.immutability.service import immutable_tags


async def tag_digest(client: httpx.AsyncClient, repo: str, tag: str) -> str | None:
    response = await client.head(f"/v2/{repo}/manifests/{tag}", headers={"Accept": OCI_MANIFEST})
    if response.status_code == 404:
        return None
    assert response.status_code == 200, response.text
    return response.headers["docker-content-digest"]


async def push_over(
    client: httpx.AsyncClient, repo: str, tag: str, seed: bytes
) -> tuple[str, httpx.Response]:
    """Push a new image straight under ``tag``: its blobs, then the manifest by tag only.
    Returns the manifest's digest and the manifest PUT's answer."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "seed": seed.hex()}).encode()
    layer = b"layer-" + seed
    config_digest = await push_blob(client, repo, config)
    layer_digest = await push_blob(client, repo, layer)
    manifest = image_manifest((config_digest, len(config)), [(layer_digest, len(layer))])
    response = await client.put(
        f"/v2/{repo}/manifests/{tag}", content=manifest, headers={"Content-Type": OCI_MANIFEST}
    )
    return digest_of(manifest), response


async def protected(admin: httpx.AsyncClient, repo: str, tag: str, seed: bytes = b"again") -> bool:
    """Whether ``repo:tag`` (which exists) refuses to move; leaves it where it was."""
    before = await tag_digest(admin, repo, tag)
    digest, response = await push_over(admin, repo, tag, seed)
    if response.status_code == 201:
        assert await tag_digest(admin, repo, tag) == digest
        return False
    assert response.status_code == 403, response.text
    assert error_code(response) == "DENIED"
    assert await tag_digest(admin, repo, tag) == before
    return True


async def test_an_immutable_tag_is_pushed_once_and_never_moved(
    admin: httpx.AsyncClient, state: AppState
) -> None:
    project, project_id = await new_project(admin)
    await create(admin, project, rule("app", "v*"))
    repo = f"{project}/app"

    # the first push of an immutable tag is allowed, and so is the same manifest again
    first, manifest = await push_image(admin, repo, "v1", seed=b"first")
    response = await admin.put(
        f"/v2/{repo}/manifests/v1", content=manifest, headers={"Content-Type": OCI_MANIFEST}
    )
    assert response.status_code == 201, response.text

    # moving it is refused with DENIED, nothing of the push is kept
    third, response = await push_over(admin, repo, "v1", b"third")
    assert response.status_code == 403, response.text
    assert error_code(response) == "DENIED"
    message = response.json()["errors"][0]["message"]
    assert f"'{repo}:v1' configured as immutable, cannot be overwritten" in message
    assert "rule" in message and "'v*'" in message
    assert await tag_digest(admin, repo, "v1") == first
    assert (await admin.head(f"/v2/{repo}/manifests/{third}")).status_code == 404

    # a tag no rule selects moves freely; pushes by digest are never refused
    await push_image(admin, repo, "latest", seed=b"first")
    assert not await protected(admin, repo, "latest")
    await push_image(admin, repo, None, seed=b"by-digest")

    async with state.db.read() as session:
        assert await immutable_tags(session, project_id, repo, []) == set()
        assert await immutable_tags(session, project_id, repo, ["v1", "v2", "latest"]) == {
            "v1",
            "v2",
        }
        assert await immutable_tags(session, project_id, f"{project}/other", ["v1"]) == set()


async def test_immutable_tags_cannot_be_deleted(admin: httpx.AsyncClient) -> None:
    project, _ = await new_project(admin)
    await create(admin, project, rule("**", "release-*"))
    repo = f"{project}/team/app"
    digest, manifest = await push_image(admin, repo, "release-1")
    await admin.put(
        f"/v2/{repo}/manifests/dev", content=manifest, headers={"Content-Type": OCI_MANIFEST}
    )

    response = await admin.delete(f"/v2/{repo}/manifests/release-1")
    assert response.status_code == 403
    assert error_code(response) == "DENIED"
    assert (
        "the tag release-1 configured as immutable, cannot be deleted"
        in response.json()["errors"][0]["message"]
    )
    # by digest: the artifact carries an immutable tag (and a mutable one)
    response = await admin.delete(f"/v2/{repo}/manifests/{digest}")
    assert response.status_code == 403
    assert "release-1 configured as immutable" in response.json()["errors"][0]["message"]
    assert await tag_digest(admin, repo, "release-1") == digest
    assert await tag_digest(admin, repo, "dev") == digest

    # the mutable tag goes; the artifact stays with its immutable one
    response = await admin.delete(f"/v2/{repo}/manifests/dev")
    assert response.status_code == 202, response.text
    assert await tag_digest(admin, repo, "dev") is None
    assert await tag_digest(admin, repo, "release-1") == digest

    # an artifact without immutable tags can be deleted
    other, _ = await push_image(admin, repo, "nightly", seed=b"nightly")
    assert (await admin.delete(f"/v2/{repo}/manifests/{other}")).status_code == 202


async def _rules_say(
    admin: httpx.AsyncClient, body: dict[str, Any], cases: dict[tuple[str, str], bool]
) -> None:
    """Push every (repository, tag) of ``cases``, add the rule, and check which tags move."""
    project, _ = await new_project(admin)
    for repo, tag in cases:
        await push_image(admin, f"{project}/{repo}", tag, seed=b"one")
    await create(admin, project, body)
    for (repo, tag), immutable in cases.items():
        assert await protected(admin, f"{project}/{repo}", tag) is immutable, (repo, tag)


async def test_excludes_alternatives_and_double_stars(admin: httpx.AsyncClient) -> None:
    # tag excludes: everything but latest
    await _rules_say(
        admin,
        rule("**", "latest", tag_decoration="excludes"),
        {("app", "v1"): True, ("app", "latest"): False, ("a/b", "x"): True},
    )
    # repository excludes
    await _rules_say(
        admin,
        rule("sandbox/**", "**", repo_decoration="repoExcludes"),
        {("sandbox/x", "v1"): False, ("prod/x", "v1"): True, ("sandboxed", "v1"): True},
    )
    # {a,b} alternatives, and * that stays in one segment against ** that crosses
    await _rules_say(
        admin,
        rule("{api,web}/*", "{v1,v2}.{0,1}"),
        {
            ("api/svc", "v1.0"): True,
            ("web/svc", "v2.1"): True,
            ("web/svc", "v3.0"): False,
            ("web/svc/deep", "v1.0"): False,
            ("db/svc", "v1.0"): False,
        },
    )
    await _rules_say(
        admin,
        rule("**/svc", "?.*"),
        {("svc", "1.0"): True, ("a/b/svc", "2.x"): True, ("a/svc2", "1.0"): False},
    )


async def test_repository_patterns_do_not_see_the_project_name(admin: httpx.AsyncClient) -> None:
    project, _ = await new_project(admin)
    await push_image(admin, f"{project}/app", "v1")
    await create(admin, project, rule(f"{project}/**", "**"))
    assert not await protected(admin, f"{project}/app", "v1", seed=b"moved")
    await create(admin, project, rule("app", "**"))
    assert await protected(admin, f"{project}/app", "v1", seed=b"refused")


async def test_disabled_and_deleted_rules_have_no_effect(admin: httpx.AsyncClient) -> None:
    project, _ = await new_project(admin)
    repo = f"{project}/app"
    rules = f"{API}/projects/{project}/immutabletagrules"
    disabled = await create(admin, project, rule("**", "**", disabled=True))
    await push_image(admin, repo, "v1", seed=b"one")
    assert not await protected(admin, repo, "v1", seed=b"two")

    response = await admin.put(f"{rules}/{disabled}", json={"disabled": False})
    assert response.status_code == 200
    assert await protected(admin, repo, "v1", seed=b"three")
    assert (await admin.delete(f"/v2/{repo}/manifests/v1")).status_code == 403

    response = await admin.put(f"{rules}/{disabled}", json={"disabled": True})
    assert response.status_code == 200
    assert not await protected(admin, repo, "v1", seed=b"four")

    await admin.put(f"{rules}/{disabled}", json={"disabled": False})
    assert (await admin.delete(f"{rules}/{disabled}")).status_code == 200
    assert (await admin.delete(f"/v2/{repo}/manifests/v1")).status_code == 202


async def test_rules_of_other_projects_do_not_apply(admin: httpx.AsyncClient) -> None:
    guarded, _ = await new_project(admin)
    free, _ = await new_project(admin)
    await create(admin, guarded, rule("**", "**"))
    await push_image(admin, f"{free}/app", "v1")
    await push_image(admin, f"{guarded}/app", "v1")
    assert not await protected(admin, f"{free}/app", "v1")
    assert await protected(admin, f"{guarded}/app", "v1")


async def test_api_deletes_of_an_immutable_tag_are_refused(admin: httpx.AsyncClient) -> None:
    """The artifact API deletes through the same seam (its own tests cover it in depth)."""
    project, _ = await new_project(admin)
    await create(admin, project, rule("app", "v1"))
    digest, _ = await push_image(admin, f"{project}/app", "v1")
    repository = f"{API}/projects/{project}/repositories/app"
    for path in (
        repository,
        f"{repository}/artifacts/{digest}",
        f"{repository}/artifacts/v1",
        f"{repository}/artifacts/{digest}/tags/v1",
    ):
        response = await admin.delete(path)
        assert response.status_code == 412, (path, response.text)
        message = response.json()["errors"][0]["message"]
        assert "the tag v1 configured as immutable, cannot be deleted" in message
    assert await tag_digest(admin, f"{project}/app", "v1") == digest
