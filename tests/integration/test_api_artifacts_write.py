"""Harbor's artifact writes: deleteArtifact, deleteRepository, updateRepository,
createTag, deleteTag and CopyArtifact, with their refusals, on both databases."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from starlette.applications import Starlette
from tests.integration.conftest import make_client
from tests.integration.registry_helpers import (
    OCI_INDEX,
    OCI_MANIFEST,
    digest_of,
    image_manifest,
    push_blob,
    push_image,
)
from tests.integration.test_api_immutable_rules import create as create_rule
from tests.integration.test_api_immutable_rules import rule

from dockyard.audit.models import AuditLog
from dockyard.http.state import AppState
from dockyard.iam.models import User
from dockyard.iam.passwords import hash_password
from dockyard.projects.service import create_project
from dockyard.registry.models import (
    Artifact,
    ArtifactAccessory,
    Blob,
    ProjectBlob,
    Repository,
    Tag,
)

API = "/api/v2.0"
PASSWORD = "Passw0rdPassw0rd"
SKIP = {"X-Dockyard-Contract": "skip"}
ROLES = {"admin": 1, "developer": 2, "guest": 3, "maintainer": 4}


def _name(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:12]}"


async def _project(admin: httpx.AsyncClient, public: bool = False) -> str:
    name = _name("w")
    body = {"project_name": name, "metadata": {"public": "true" if public else "false"}}
    response = await admin.post(f"{API}/projects", json=body)
    assert response.status_code == 201, response.text
    return name


async def _user(state: AppState) -> str:
    username = _name("u")
    async with state.db.write() as session:
        session.add(User(username=username, password=hash_password(PASSWORD)))
    return username


async def _member(admin: httpx.AsyncClient, project: str, username: str, role: str) -> None:
    body = {"role_id": ROLES[role], "member_user": {"username": username}}
    response = await admin.post(f"{API}/projects/{project}/members", json=body)
    assert response.status_code == 201, response.text


def _repo_path(repository: str) -> str:
    """The API path of ``project/name``: the name encoded twice over, as Harbor wants."""
    project, _, rest = repository.partition("/")
    return f"{API}/projects/{project}/repositories/{rest.replace('/', '%252F')}"


async def _artifacts(state: AppState, repository: str) -> dict[str, list[str]]:
    """Digest -> sorted tags of every artifact row in ``repository``."""
    async with state.db.read() as session:
        rows = (
            await session.execute(
                select(Artifact.digest, Tag.name)
                .outerjoin(Tag, Tag.artifact_id == Artifact.id)
                .join(Repository, Repository.repository_id == Artifact.repository_id)
                .where(Repository.name == repository)
            )
        ).all()
    found: dict[str, list[str]] = {}
    for digest, tag in rows:
        found.setdefault(digest, [])
        if tag is not None:
            found[digest].append(tag)
    return {d: sorted(t) for d, t in found.items()}


async def _repository_exists(state: AppState, repository: str) -> bool:
    async with state.db.read() as session:
        found = await session.scalar(
            select(Repository.repository_id).where(Repository.name == repository)
        )
    return found is not None


async def _push_manifest(
    client: httpx.AsyncClient, repository: str, manifest: bytes, reference: str | None = None
) -> str:
    digest = digest_of(manifest)
    media_type = json.loads(manifest)["mediaType"]
    response = await client.put(
        f"/v2/{repository}/manifests/{reference or digest}",
        content=manifest,
        headers={"Content-Type": media_type},
    )
    assert response.status_code == 201, response.text
    return digest


async def _push_index(
    client: httpx.AsyncClient, repository: str, children: list[tuple[str, bytes]], tag: str
) -> str:
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {
                "mediaType": OCI_MANIFEST,
                "digest": digest,
                "size": len(body),
                "platform": {"architecture": arch, "os": "linux"},
            }
            for (digest, body), arch in zip(children, ("amd64", "arm64", "s390x"), strict=False)
        ],
    }
    return await _push_manifest(client, repository, json.dumps(doc).encode(), tag)


async def _push_referrer(
    client: httpx.AsyncClient, repository: str, subject: tuple[str, bytes], tag: str | None = None
) -> str:
    config = b"{}"
    config_digest = await push_blob(client, repository, config)
    layer = _name("sig").encode()
    layer_digest = await push_blob(client, repository, layer)
    manifest = image_manifest(
        (config_digest, len(config)),
        [(layer_digest, len(layer))],
        subject=(subject[0], len(subject[1])),
        artifact_type="application/vnd.example.signature",
        config_type="application/vnd.oci.empty.v1+json",
    )
    return await _push_manifest(client, repository, manifest, tag)


# --- tags ---------------------------------------------------------------------------------


async def test_create_tag_then_delete_tag_vs_delete_artifact(
    admin: httpx.AsyncClient, state: AppState, unique_repo: str
) -> None:
    digest, _ = await push_image(admin, unique_repo, "v1", seed=b"tags")
    base = f"{_repo_path(unique_repo)}/artifacts"

    created = await admin.post(f"{base}/v1/tags", json={"name": "v2"})
    assert created.status_code == 201, created.text
    assert created.headers["location"] == f"{base}/v1/tags/v2"
    by_digest = await admin.post(f"{base}/{digest}/tags", json={"name": "stable"})
    assert by_digest.status_code == 201, by_digest.text
    assert await _artifacts(state, unique_repo) == {digest: ["stable", "v1", "v2"]}

    again = await admin.post(f"{base}/{digest}/tags", json={"name": "v2"})
    assert again.status_code == 409, again.text
    assert again.json()["errors"][0]["code"] == "CONFLICT"

    # Deleting a tag leaves the artifact; the tag no longer resolves through /v2/.
    untag = await admin.delete(f"{base}/{digest}/tags/v1")
    assert untag.status_code == 200, untag.text
    assert (await admin.get(f"/v2/{unique_repo}/manifests/v1")).status_code == 404
    assert (await admin.get(f"/v2/{unique_repo}/manifests/{digest}")).status_code == 200
    assert await _artifacts(state, unique_repo) == {digest: ["stable", "v2"]}
    missing = await admin.delete(f"{base}/{digest}/tags/v1")
    assert missing.status_code == 404

    # Deleting the artifact by one of its tags takes every tag with it.
    gone = await admin.delete(f"{base}/v2")
    assert gone.status_code == 200, gone.text
    assert await _artifacts(state, unique_repo) == {}
    for reference in (digest, "v2", "stable"):
        answer = await admin.get(f"/v2/{unique_repo}/manifests/{reference}")
        assert answer.status_code == 404
    assert (await admin.delete(f"{base}/{digest}")).status_code == 404


async def test_tag_of_another_artifact_is_not_deleted_through_this_one(
    admin: httpx.AsyncClient, state: AppState, unique_repo: str
) -> None:
    first, _ = await push_image(admin, unique_repo, "one", seed=b"first")
    second, _ = await push_image(admin, unique_repo, "two", seed=b"second")
    base = f"{_repo_path(unique_repo)}/artifacts"
    wrong = await admin.delete(f"{base}/{first}/tags/two")
    assert wrong.status_code == 404
    assert await _artifacts(state, unique_repo) == {first: ["one"], second: ["two"]}


@pytest.mark.parametrize(
    "name", ["", ".hidden", "-dash", "a" * 129, "bad tag", "x/y", "ünï", "a;DROP TABLE tag"]
)
async def test_bad_tag_names_are_refused(
    admin: httpx.AsyncClient, state: AppState, unique_repo: str, name: str
) -> None:
    digest, _ = await push_image(admin, unique_repo, "v1", seed=b"badtag")
    response = await admin.post(
        f"{_repo_path(unique_repo)}/artifacts/{digest}/tags", json={"name": name}
    )
    assert response.status_code == 400, response.text
    assert await _artifacts(state, unique_repo) == {digest: ["v1"]}


async def test_bad_tag_bodies_are_refused(
    admin: httpx.AsyncClient, state: AppState, unique_repo: str
) -> None:
    digest, _ = await push_image(admin, unique_repo, "v1", seed=b"body")
    url = f"{_repo_path(unique_repo)}/artifacts/{digest}/tags"
    for body in (b"", b"{", b"[]", b'{"name": 5}', b'{"nome": "x"}', b'{"name": null}'):
        response = await admin.post(url, content=body, headers={"Content-Type": "application/json"})
        assert response.status_code == 400, (body, response.text)
    assert await _artifacts(state, unique_repo) == {digest: ["v1"]}


# --- indexes and accessories ----------------------------------------------------------------


async def test_index_children_are_protected_and_go_with_their_index(
    admin: httpx.AsyncClient, state: AppState, unique_repo: str
) -> None:
    amd = await push_image(admin, unique_repo, None, seed=b"amd")
    arm = await push_image(admin, unique_repo, "arm-only", seed=b"arm")
    index = await _push_index(admin, unique_repo, [amd, arm], "multi")
    base = f"{_repo_path(unique_repo)}/artifacts"

    refused = await admin.delete(f"{base}/{amd[0]}", headers=SKIP)
    assert refused.status_code == 412, refused.text
    assert "index" in refused.json()["errors"][0]["message"]
    refused_by_tag = await admin.delete(f"{base}/arm-only", headers=SKIP)
    assert refused_by_tag.status_code == 412
    assert set(await _artifacts(state, unique_repo)) == {amd[0], arm[0], index}

    # The index goes with its untagged child; the tagged child stays, now deletable.
    assert (await admin.delete(f"{base}/multi")).status_code == 200
    assert await _artifacts(state, unique_repo) == {arm[0]: ["arm-only"]}
    assert (await admin.delete(f"{base}/arm-only")).status_code == 200
    assert await _artifacts(state, unique_repo) == {}


async def test_accessories_go_with_their_subject(
    admin: httpx.AsyncClient, state: AppState, unique_repo: str
) -> None:
    subject = await push_image(admin, unique_repo, "app", seed=b"subject")
    referrer = await _push_referrer(admin, unique_repo, subject)
    cosign_tag = subject[0].replace(":", "-") + ".sig"
    signature = await push_image(admin, unique_repo, cosign_tag, seed=b"cosign", layers=1)
    other = await push_image(admin, unique_repo, "other", seed=b"other")
    assert set(await _artifacts(state, unique_repo)) == {
        subject[0],
        referrer,
        signature[0],
        other[0],
    }

    response = await admin.delete(f"{_repo_path(unique_repo)}/artifacts/app")
    assert response.status_code == 200, response.text
    assert await _artifacts(state, unique_repo) == {other[0]: ["other"]}
    listed = await admin.get(f"/v2/{unique_repo}/referrers/{subject[0]}")
    assert listed.status_code == 200
    assert listed.json()["manifests"] == []


# --- repositories ---------------------------------------------------------------------------


async def test_delete_repository_removes_everything(
    admin: httpx.AsyncClient, state: AppState, unique_repo: str
) -> None:
    nested = f"{unique_repo}/deep/er"
    for repository in (unique_repo, nested):
        amd = await push_image(admin, repository, None, seed=b"r-amd")
        arm = await push_image(admin, repository, "arm", seed=b"r-arm")
        await _push_index(admin, repository, [amd, arm], "multi")
        await _push_referrer(admin, repository, arm)

    response = await admin.delete(_repo_path(nested))
    assert response.status_code == 200, response.text
    assert not await _repository_exists(state, nested)
    assert await _artifacts(state, nested) == {}
    for path in (f"/v2/{nested}/tags/list", f"/v2/{nested}/manifests/multi"):
        assert (await admin.get(path)).status_code == 404
    assert (await admin.get(f"/v2/{nested}/manifests/{amd[0]}")).status_code == 404
    assert (await admin.delete(_repo_path(nested))).status_code == 404

    # The sibling repository is untouched.
    assert len(await _artifacts(state, unique_repo)) == 4
    assert (await admin.get(f"/v2/{unique_repo}/manifests/multi")).status_code == 200


async def test_update_repository_description_and_its_audit_event(
    admin: httpx.AsyncClient, state: AppState, unique_repo: str
) -> None:
    await push_image(admin, unique_repo, "v1", seed=b"describe")
    text = "A repository — described, with <b>markup</b> and 'quotes'"
    response = await admin.put(_repo_path(unique_repo), json={"description": text})
    assert response.status_code == 200, response.text
    async with state.db.read() as session:
        row = await session.scalar(select(Repository).where(Repository.name == unique_repo))
        assert row is not None and row.description == text
        events = (
            await session.execute(
                select(AuditLog).where(
                    AuditLog.resource == unique_repo, AuditLog.resource_type == "repository"
                )
            )
        ).scalars()
        assert [(e.operation, e.username, e.operation_result) for e in events] == [
            ("update", "admin", True)
        ]
    # Everything else in the body is ignored, as in Harbor.
    ignored = await admin.put(
        _repo_path(unique_repo), json={"name": "library/elsewhere", "pull_count": 99}
    )
    assert ignored.status_code == 200
    async with state.db.read() as session:
        row = await session.scalar(select(Repository).where(Repository.name == unique_repo))
        assert row is not None and row.pull_count == 0 and row.description == ""

    for body in (b"", b"[1]", b'{"description": 7}', b'{"description": "a\\u0000b"}'):
        bad = await admin.put(
            _repo_path(unique_repo), content=body, headers={"Content-Type": "application/json"}
        )
        assert bad.status_code == 400, (body, bad.text)
    missing = await admin.put(_repo_path(f"{unique_repo}x"), json={"description": "x"})
    assert missing.status_code == 404


# --- copy -----------------------------------------------------------------------------------


async def _blob_ids_in_project(state: AppState, project: str) -> set[str]:
    async with state.db.read() as session:
        rows = await session.execute(
            select(Blob.digest)
            .join(ProjectBlob, ProjectBlob.blob_id == Blob.id)
            .join(Repository, Repository.project_id == ProjectBlob.project_id)
            .where(Repository.name.like(f"{project}/%"))
        )
    return set(rows.scalars())


async def test_copy_across_projects_by_tag_and_by_digest(
    admin: httpx.AsyncClient, state: AppState
) -> None:
    source_project, target_project = await _project(admin), await _project(admin)
    source = f"{source_project}/app"
    amd = await push_image(admin, source, None, seed=b"c-amd")
    arm = await push_image(admin, source, None, seed=b"c-arm")
    index = await _push_index(admin, source, [amd, arm], "1.0")
    index_body = (
        await admin.get(f"/v2/{source}/manifests/{index}", headers={"Accept": OCI_INDEX})
    ).content
    referrer = await _push_referrer(admin, source, (index, index_body), None)
    single, _ = await push_image(admin, source, "single", seed=b"c-single")

    target = f"{target_project}/copied/app"
    response = await admin.post(f"{_repo_path(target)}/artifacts", params={"from": f"{source}:1.0"})
    assert response.status_code == 201, response.text
    assert response.headers["location"] == f"{_repo_path(target)}/artifacts/{index}"
    copied = await _artifacts(state, target)
    assert copied == {index: ["1.0"], amd[0]: [], arm[0]: [], referrer: []}

    # The copy is pullable: manifest, children, and every blob the target may now read.
    pulled = await admin.get(f"/v2/{target}/manifests/1.0")
    assert pulled.status_code == 200
    child = await admin.get(f"/v2/{target}/manifests/{amd[0]}")
    assert child.status_code == 200
    for layer in json.loads(child.content)["layers"]:
        assert (await admin.head(f"/v2/{target}/blobs/{layer['digest']}")).status_code == 200
    referrers = await admin.get(f"/v2/{target}/referrers/{index}")
    assert [m["digest"] for m in referrers.json()["manifests"]] == [referrer]
    assert _layer_digests(child.content) <= await _blob_ids_in_project(state, target_project)

    # By digest: copied with every tag it has, as Harbor does; again by tag: the same row.
    await admin.post(f"{_repo_path(source)}/artifacts/single/tags", json={"name": "also"})
    by_digest = await admin.post(
        f"{_repo_path(target)}/artifacts", params={"from": f"{source}@{single}"}
    )
    assert by_digest.status_code == 201, by_digest.text
    assert (await _artifacts(state, target))[single] == ["also", "single"]
    latest = await admin.get(f"{_repo_path(target)}/artifacts/also")
    assert latest.status_code == 200
    assert latest.json()["digest"] == single
    again = await admin.post(f"{_repo_path(target)}/artifacts", params={"from": f"{source}:single"})
    assert again.status_code == 201
    assert (await _artifacts(state, target))[single] == ["also", "single"]
    # The source is untouched.
    assert (await _artifacts(state, source))[index] == ["1.0"]


def _layer_digests(manifest: bytes) -> set[str]:
    return {layer["digest"] for layer in json.loads(manifest)["layers"]}


async def test_copy_needs_pull_on_source_and_push_on_target(
    admin: httpx.AsyncClient, anon: httpx.AsyncClient, state: AppState, app: Starlette
) -> None:
    private, target_project, guest_project = (
        await _project(admin),
        await _project(admin),
        await _project(admin),
    )
    public = await _project(admin, public=True)
    digest, _ = await push_image(admin, f"{private}/src", "v1", seed=b"perm")
    await push_image(admin, f"{public}/src", "v1", seed=b"perm-public")
    username = await _user(state)
    await _member(admin, target_project, username, "developer")
    await _member(admin, guest_project, username, "guest")
    async with make_client(app, (username, PASSWORD)) as user:
        # No access at all to the private source: it does not exist for this user.
        hidden = await user.post(
            f"{_repo_path(f'{target_project}/dst')}/artifacts", params={"from": f"{private}/src:v1"}
        )
        assert hidden.status_code == 404, hidden.text
        # Pull on a public source, but only guest (no push) in the target.
        no_push = await user.post(
            f"{_repo_path(f'{guest_project}/dst')}/artifacts", params={"from": f"{public}/src:v1"}
        )
        assert no_push.status_code == 403, no_push.text
        # A target project the user cannot see at all.
        invisible = await user.post(
            f"{_repo_path(f'{private}/dst')}/artifacts", params={"from": f"{public}/src:v1"}
        )
        assert invisible.status_code == 404
        allowed = await user.post(
            f"{_repo_path(f'{target_project}/dst')}/artifacts", params={"from": f"{public}/src:v1"}
        )
        assert allowed.status_code == 201, allowed.text
    anonymous = await anon.post(
        f"{_repo_path(f'{target_project}/dst2')}/artifacts", params={"from": f"{public}/src:v1"}
    )
    assert anonymous.status_code == 401
    for name in (f"{guest_project}/dst", f"{private}/dst", f"{target_project}/dst2"):
        assert not await _repository_exists(state, name)
    assert digest in await _artifacts(state, f"{private}/src")


@pytest.mark.parametrize(
    "source",
    [
        "",
        "nothing",
        "library",
        "library/:v1",
        "library/app",
        "library/app@",
        "library/app@sha256:abc",
        "library/app@md5:" + "0" * 32,
        "library/app:bad tag",
        "library/app:v1:v2",
        "Library/App:v1",
        "library/../etc:v1",
        "library/app%2Fx:v1",
        "library/app:v1' OR '1'='1",
        "library/app\x00:v1",
        "x" * 2000,
    ],
)
async def test_bad_copy_sources_are_400_and_change_nothing(
    admin: httpx.AsyncClient, state: AppState, source: str
) -> None:
    project = await _project(admin)
    response = await admin.post(
        f"{_repo_path(f'{project}/dst')}/artifacts", params={"from": source}
    )
    assert response.status_code == 400, response.text
    assert not await _repository_exists(state, f"{project}/dst")


async def test_copy_of_what_does_not_exist_is_404(
    admin: httpx.AsyncClient, state: AppState, unique_repo: str
) -> None:
    await push_image(admin, unique_repo, "v1", seed=b"nf")
    project = await _project(admin)
    target = f"{_repo_path(f'{project}/dst')}/artifacts"
    missing_digest = "sha256:" + "0" * 64
    for source in (
        f"{unique_repo}:v2",
        f"{unique_repo}@{missing_digest}",
        f"{unique_repo}x:v1",
        f"{_name('nope')}/app:v1",
    ):
        response = await admin.post(target, params={"from": source})
        assert response.status_code == 404, (source, response.text)
    assert not await _repository_exists(state, f"{project}/dst")


# --- permissions ------------------------------------------------------------------------------


async def test_roles_outsiders_and_anonymous(
    admin: httpx.AsyncClient, anon: httpx.AsyncClient, state: AppState, app: Starlette
) -> None:
    project = await _project(admin)
    repository = f"{project}/app"
    digest, _ = await push_image(admin, repository, "v1", seed=b"roles")
    base = f"{_repo_path(repository)}/artifacts"
    outsider, guest, developer = await _user(state), await _user(state), await _user(state)
    await _member(admin, project, guest, "guest")
    await _member(admin, project, developer, "developer")
    writes = [
        ("DELETE", f"{base}/{digest}", None),
        ("DELETE", _repo_path(repository), None),
        ("PUT", _repo_path(repository), {"description": "x"}),
        ("POST", f"{base}/{digest}/tags", {"name": "new"}),
        ("DELETE", f"{base}/{digest}/tags/v1", None),
    ]
    for method, url, body in writes:
        assert (await anon.request(method, url, json=body)).status_code == 401
    async with make_client(app, (outsider, PASSWORD)) as client:
        for method, url, body in writes:
            assert (await client.request(method, url, json=body)).status_code == 404, url
    async with make_client(app, (guest, PASSWORD)) as client:
        for method, url, body in writes:
            assert (await client.request(method, url, json=body)).status_code == 403, url
    assert await _artifacts(state, repository) == {digest: ["v1"]}
    async with make_client(app, (developer, PASSWORD)) as client:
        # Developers may tag, but not untag, delete artifacts or delete repositories.
        tagged = await client.post(f"{base}/{digest}/tags", json={"name": "dev"})
        assert tagged.status_code == 201
        for method, url, body in (writes[0], writes[1], writes[4]):
            assert (await client.request(method, url, json=body)).status_code == 403, url
        described = await client.put(_repo_path(repository), json={"description": "by dev"})
        assert described.status_code == 200
    assert await _artifacts(state, repository) == {digest: ["dev", "v1"]}


# --- hostile input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "repository_segment",
    [
        "app%25252Fdeep",
        "app'%20OR%20'1'='1",
        "..%252F..%252Fetc",
        "APP",
        "app%00",
        "%252Fapp",
        "app%252F",
        "x" * 300,
    ],
)
async def test_hostile_repository_names_are_404_and_change_nothing(
    admin: httpx.AsyncClient, state: AppState, repository_segment: str
) -> None:
    project = await _project(admin)
    digest, _ = await push_image(admin, f"{project}/app", "v1", seed=b"hostile")
    path = f"{API}/projects/{project}/repositories/{repository_segment}"
    for method, url, body in (
        ("DELETE", path, None),
        ("PUT", path, {"description": "x"}),
        ("DELETE", f"{path}/artifacts/v1", None),
        ("POST", f"{path}/artifacts/v1/tags", {"name": "x"}),
        ("DELETE", f"{path}/artifacts/v1/tags/v1", None),
    ):
        response = await admin.request(method, url, json=body)
        assert response.status_code == 404, (method, url, response.text)
    copy = await admin.post(f"{path}/artifacts", params={"from": f"{project}/app:v1"})
    assert copy.status_code == 404
    assert await _artifacts(state, f"{project}/app") == {digest: ["v1"]}
    async with state.db.read() as session:
        count = await session.scalar(
            select(func.count()).select_from(Repository).where(Repository.name.like(f"{project}/%"))
        )
    assert count == 1


@pytest.mark.parametrize(
    "reference",
    ["sha256:zz", "sha256:" + "0" * 64, "md5:abc", "v1'--", "..v1", "a%2500", "%252F"],
)
async def test_hostile_references_are_404(
    admin: httpx.AsyncClient, state: AppState, unique_repo: str, reference: str
) -> None:
    digest, _ = await push_image(admin, unique_repo, "v1", seed=b"ref")
    base = f"{_repo_path(unique_repo)}/artifacts/{reference}"
    assert (await admin.delete(base)).status_code == 404
    assert (await admin.post(f"{base}/tags", json={"name": "x"})).status_code == 404
    assert (await admin.delete(f"{base}/tags/v1")).status_code == 404
    untag = await admin.delete(f"{_repo_path(unique_repo)}/artifacts/v1/tags/{reference}")
    assert untag.status_code == 404
    assert await _artifacts(state, unique_repo) == {digest: ["v1"]}


async def test_accessory_record_is_copied_with_its_subject(
    admin: httpx.AsyncClient, state: AppState
) -> None:
    source_project, target_project = await _project(admin), await _project(admin)
    source, target = f"{source_project}/app", f"{target_project}/app"
    subject = await push_image(admin, source, "v1", seed=b"acc")
    referrer = await _push_referrer(admin, source, subject)
    cosign_tag = subject[0].replace(":", "-") + ".sig"
    signature, _ = await push_image(admin, source, cosign_tag, seed=b"acc-sig", layers=1)
    response = await admin.post(f"{_repo_path(target)}/artifacts", params={"from": f"{source}:v1"})
    assert response.status_code == 201, response.text
    assert await _artifacts(state, target) == {
        subject[0]: ["v1"],
        referrer: [],
        signature: [cosign_tag],
    }
    async with state.db.read() as session:
        source_records = await session.scalar(
            select(func.count())
            .select_from(ArtifactAccessory)
            .where(ArtifactAccessory.subject_artifact_repo == source)
        )
        target_records = await session.scalar(
            select(func.count())
            .select_from(ArtifactAccessory)
            .where(ArtifactAccessory.subject_artifact_repo == target)
        )
    assert target_records == source_records
    # Deleting the copy's subject takes the copied accessories; the source keeps its own.
    assert (await admin.delete(f"{_repo_path(target)}/artifacts/v1")).status_code == 200
    assert await _artifacts(state, target) == {}
    assert len(await _artifacts(state, source)) == 3


# --- the policy seam: immutability, quotas, audit ---------------------------------------------


async def test_immutable_tags_refuse_api_writes(admin: httpx.AsyncClient, state: AppState) -> None:
    project = await _project(admin)
    repository, other = f"{project}/app", f"{project}/other"
    digest, _ = await push_image(admin, repository, "v1", seed=b"imm")
    other_digest, _ = await push_image(admin, other, "v1", seed=b"imm-other")
    await create_rule(admin, project, rule("**", "v*"))
    base = f"{_repo_path(repository)}/artifacts"

    # Harbor answers 412 PRECONDITION for what an immutability rule refuses.
    for path in (f"{base}/{digest}/tags/v1", f"{base}/v1", _repo_path(repository)):
        refused = await admin.delete(path)
        assert refused.status_code == 412, (path, refused.text)
        assert refused.json()["errors"][0]["code"] == "PRECONDITION"
        assert "configured as immutable, cannot be deleted" in refused.text
    # Copying over an immutable tag would move it.
    moved = await admin.post(f"{_repo_path(other)}/artifacts", params={"from": f"{repository}:v1"})
    assert moved.status_code == 412
    assert "configured as immutable" in moved.json()["errors"][0]["message"]
    assert await _artifacts(state, repository) == {digest: ["v1"]}
    assert await _artifacts(state, other) == {other_digest: ["v1"]}

    # A new immutable tag may be created once; a mutable one comes and goes.
    assert (await admin.post(f"{base}/v1/tags", json={"name": "v2"})).status_code == 201
    assert (await admin.post(f"{base}/v1/tags", json={"name": "latest"})).status_code == 201
    assert (await admin.delete(f"{base}/v1/tags/latest")).status_code == 200
    assert await _artifacts(state, repository) == {digest: ["v1", "v2"]}


async def _quota_used(admin: httpx.AsyncClient, project: str) -> int:
    found = await admin.get(f"{API}/quotas", params={"reference": "project"})
    assert found.status_code == 200
    project_id = (await admin.get(f"{API}/projects/{project}")).json()["project_id"]
    response = await admin.get(
        f"{API}/quotas", params={"reference": "project", "reference_id": str(project_id)}
    )
    assert response.status_code == 200, response.text
    return int(response.json()[0]["used"]["storage"])


async def _project_with_quota(state: AppState, limit: int) -> str:
    name = _name("wq")
    async with state.db.write() as session:
        await create_project(session, name, owner_id=1, storage_limit=limit)
    return name


async def test_copy_is_charged_to_the_target_quota(
    admin: httpx.AsyncClient, state: AppState
) -> None:
    source = await _project(admin)
    digest, manifest = await push_image(admin, f"{source}/app", "v1", seed=b"quota")
    source_used = await _quota_used(admin, source)
    assert source_used > len(manifest)

    small = await _project_with_quota(state, source_used - 1)
    refused = await admin.post(
        f"{_repo_path(f'{small}/app')}/artifacts", params={"from": f"{source}/app:v1"}
    )
    assert refused.status_code == 403, refused.text
    assert not await _repository_exists(state, f"{small}/app")
    assert await _quota_used(admin, small) == 0

    roomy = await _project_with_quota(state, source_used * 10)
    for repository in ("one", "two"):  # the second copy shares every blob: charged once
        copied = await admin.post(
            f"{_repo_path(f'{roomy}/{repository}')}/artifacts",
            params={"from": f"{source}/app:v1"},
        )
        assert copied.status_code == 201, copied.text
        assert await _quota_used(admin, roomy) == source_used
    assert (await admin.delete(_repo_path(f"{roomy}/one"))).status_code == 200
    assert await _quota_used(admin, roomy) == source_used
    assert (await admin.delete(_repo_path(f"{roomy}/two"))).status_code == 200
    assert await _quota_used(admin, roomy) == 0
    assert await _quota_used(admin, source) == source_used
    assert digest in await _artifacts(state, f"{source}/app")


async def test_writes_leave_one_audit_event_each(admin: httpx.AsyncClient, state: AppState) -> None:
    project = await _project(admin)
    repository = f"{project}/app"
    digest, _ = await push_image(admin, repository, "v1", seed=b"audit")
    base = f"{_repo_path(repository)}/artifacts"
    async with state.db.read() as session:
        before = await session.scalar(select(func.max(AuditLog.id))) or 0

    assert (await admin.post(f"{base}/v1/tags", json={"name": "v2"})).status_code == 201
    assert (await admin.delete(f"{base}/v1/tags/v2")).status_code == 200
    copied = await admin.post(
        f"{_repo_path(f'{project}/copy')}/artifacts", params={"from": f"{repository}:v1"}
    )
    assert copied.status_code == 201
    assert (await admin.delete(f"{_repo_path(f'{project}/copy')}/artifacts/v1")).status_code == 200
    assert (await admin.delete(_repo_path(repository))).status_code == 200

    async with state.db.read() as session:
        rows = (
            await session.execute(
                select(AuditLog.operation, AuditLog.resource_type, AuditLog.resource)
                .where(AuditLog.id > before, AuditLog.project_id != 0)
                .where(AuditLog.resource.like(f"{project}/%"))
                .order_by(AuditLog.id)
            )
        ).all()
    assert [tuple(r) for r in rows] == [
        # The seam sees a new tag as a push of that tag (the audit hook's wording).
        ("create", "artifact", f"{repository}:v2"),
        ("delete", "tag", f"{repository}:v2"),
        ("create", "artifact", f"{project}/copy:v1"),
        ("delete", "artifact", f"{project}/copy@{digest}"),
        ("delete", "artifact", f"{repository}@{digest}"),
        ("delete", "repository", repository),
    ]
