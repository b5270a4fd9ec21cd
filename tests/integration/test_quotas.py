"""Storage quotas through the registry: exact usage over unique blobs, refusals that leave
nothing behind, release on delete, and no overshoot when pushers race."""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass

import httpx
import pytest
from sqlalchemy import func, select
from tests.integration.registry_helpers import (
    OCI_MANIFEST,
    blob_row_exists,
    digest_of,
    error_code,
    image_manifest,
    push_blob,
    rows_in_repository,
)

from dockyard.http.state import AppState
from dockyard.projects.service import create_project
from dockyard.quota import repository as quota_repo
from dockyard.quota.service import human_size
from dockyard.registry.models import Artifact, ProjectBlob, Tag


@dataclass(frozen=True)
class Image:
    digest: str
    manifest: bytes
    blobs: dict[str, int]
    """Every blob the image needs (config, layers, the manifest itself): digest -> size."""


def build_image(config: bytes, layers: list[bytes]) -> Image:
    manifest = image_manifest(
        (digest_of(config), len(config)), [(digest_of(layer), len(layer)) for layer in layers]
    )
    blobs = {digest_of(part): len(part) for part in [config, *layers]}
    blobs[digest_of(manifest)] = len(manifest)
    return Image(digest_of(manifest), manifest, blobs)


async def push(
    client: httpx.AsyncClient, repo: str, tag: str, config: bytes, layers: list[bytes]
) -> Image:
    image = build_image(config, layers)
    for part in [config, *layers]:
        await push_blob(client, repo, part)
    response = await put_manifest(client, repo, tag, image.manifest)
    assert response.status_code == 201, response.text
    return image


async def put_manifest(
    client: httpx.AsyncClient, repo: str, reference: str, manifest: bytes
) -> httpx.Response:
    return await client.put(
        f"/v2/{repo}/manifests/{reference}",
        content=manifest,
        headers={"Content-Type": OCI_MANIFEST},
    )


def unique(*images: Image) -> int:
    """The usage of a project holding ``images``: each blob once."""
    sizes: dict[str, int] = {}
    for image in images:
        sizes.update(image.blobs)
    return sum(sizes.values())


async def new_project(state: AppState, storage_limit: int | None = None) -> tuple[int, str]:
    name = f"q{uuid.uuid4().hex[:12]}"
    async with state.db.write() as session:
        project = await create_project(session, name, owner_id=1, storage_limit=storage_limit)
        return project.project_id, name


async def usage(state: AppState, project_id: int) -> tuple[int, int]:
    """(limit, stored usage) of the project's quota row."""
    async with state.db.read() as session:
        quota = await quota_repo.find_quota(session, project_id)
        assert quota is not None
        return quota.hard_storage, quota.used_storage


async def recomputed(state: AppState, project_id: int) -> int:
    async with state.db.read() as session:
        return await quota_repo.usage_of(session, project_id)


async def project_blob_count(state: AppState, project_id: int) -> int:
    async with state.db.read() as session:
        count = await session.scalar(
            select(func.count())
            .select_from(ProjectBlob)
            .where(ProjectBlob.project_id == project_id)
        )
    return int(count or 0)


def data(label: str, size: int) -> bytes:
    """``size`` bytes no other test pushes."""
    head = f"{label}-{uuid.uuid4().hex}-".encode()
    return (head * (size // len(head) + 1))[:size]


async def test_new_project_gets_a_quota_row(state: AppState) -> None:
    project_id, _ = await new_project(state, storage_limit=12345)
    assert await usage(state, project_id) == (12345, 0)
    unlimited, _ = await new_project(state)
    assert await usage(state, unlimited) == (-1, 0)


async def test_shared_layers_count_once_per_project(
    admin: httpx.AsyncClient, state: AppState
) -> None:
    first, first_name = await new_project(state)
    second, second_name = await new_project(state)
    shared = data("shared", 3000)
    config = data("config", 200)
    one = await push(admin, f"{first_name}/one", "v1", config, [shared, data("a", 1000)])
    two = await push(admin, f"{first_name}/two", "v1", config, [shared, data("b", 500)])
    # The same layer again in the first repository, under another tag: nothing new.
    again = await push(admin, f"{first_name}/one", "v2", config, [shared])
    other = await push(admin, f"{second_name}/app", "v1", config, [shared])

    expected = unique(one, two, again)
    assert expected < sum(one.blobs.values()) + sum(two.blobs.values()) + sum(again.blobs.values())
    assert await usage(state, first) == (-1, expected)
    assert await recomputed(state, first) == expected
    # The other project holds the shared layer too, and is charged for it.
    assert await usage(state, second) == (-1, unique(other))
    assert unique(other) == len(shared) + len(config) + len(other.manifest)


async def test_mount_from_another_project_is_charged(
    admin: httpx.AsyncClient, state: AppState
) -> None:
    _, source_name = await new_project(state)
    target, target_name = await new_project(state)
    layer = data("mounted", 2048)
    digest = await push_blob(admin, f"{source_name}/src", layer)
    response = await admin.post(
        f"/v2/{target_name}/dst/blobs/uploads/",
        params={"mount": digest, "from": f"{source_name}/src"},
    )
    assert response.status_code == 201, response.text
    assert await usage(state, target) == (-1, len(layer))


async def test_upload_over_the_limit_is_refused_and_leaves_nothing(
    admin: httpx.AsyncClient, state: AppState
) -> None:
    limit = 10 * 1024 * 1024
    project_id, name = await new_project(state, storage_limit=limit)
    fits = data("fits", limit - 512 * 1024)
    await push_blob(admin, f"{name}/app", fits)
    too_big = data("big", 1024 * 1024)
    digest = digest_of(too_big)
    response = await admin.post(
        f"/v2/{name}/app/blobs/uploads/", params={"digest": digest}, content=too_big
    )
    assert response.status_code == 403, response.text
    assert error_code(response) == "DENIED"
    message = response.json()["errors"][0]["message"]
    assert message == (
        f"quota exceeded: project {name} uses 9.5 MiB ({len(fits)} bytes) of its "
        f"10.0 MiB ({limit} bytes) storage limit; this request needs 1.0 MiB (1048576 bytes) more"
    )
    # Nothing of the refused blob is readable or recorded; the usage did not move.
    assert (await admin.head(f"/v2/{name}/app/blobs/{digest}")).status_code == 404
    assert not await blob_row_exists(state, digest)
    assert await usage(state, project_id) == (limit, len(fits))
    assert await recomputed(state, project_id) == len(fits)


async def test_chunked_upload_over_the_limit_is_refused(
    admin: httpx.AsyncClient, state: AppState
) -> None:
    project_id, name = await new_project(state, storage_limit=1000)
    blob = data("chunked", 1001)
    started = await admin.post(f"/v2/{name}/app/blobs/uploads/")
    assert started.status_code == 202
    location = started.headers["Location"]
    patched = await admin.patch(
        location, content=blob, headers={"Content-Type": "application/octet-stream"}
    )
    assert patched.status_code == 202
    done = await admin.put(patched.headers["Location"], params={"digest": digest_of(blob)})
    assert done.status_code == 403
    assert "1000 B storage limit" in done.json()["errors"][0]["message"]
    assert (await admin.head(f"/v2/{name}/app/blobs/{digest_of(blob)}")).status_code == 404
    assert await usage(state, project_id) == (1000, 0)


async def test_manifest_push_over_the_limit_is_refused_and_leaves_nothing(
    admin: httpx.AsyncClient, state: AppState
) -> None:
    config, layer = data("config", 300), data("layer", 4000)
    image = build_image(config, [layer])
    blobs_only = len(config) + len(layer)
    # Room for the config and the layer, one byte short of the manifest.
    project_id, name = await new_project(state, storage_limit=unique(image) - 1)
    repo = f"{name}/app"
    await push_blob(admin, repo, config)
    await push_blob(admin, repo, layer)
    response = await put_manifest(admin, repo, "v1", image.manifest)
    assert response.status_code == 403, response.text
    assert error_code(response) == "DENIED"
    message = response.json()["errors"][0]["message"]
    assert f"uses {human_size(blobs_only)} ({blobs_only} bytes)" in message
    assert f"needs {len(image.manifest)} B more" in message
    assert (await admin.get(f"/v2/{repo}/manifests/v1")).status_code == 404
    assert (await admin.get(f"/v2/{repo}/manifests/{image.digest}")).status_code == 404
    assert await rows_in_repository(state, Artifact, repo) == 0
    assert await rows_in_repository(state, Tag, repo) == 0
    assert await usage(state, project_id) == (unique(image) - 1, blobs_only)
    # Raised by one byte, the same push passes.
    async with state.db.write() as session:
        quota = await quota_repo.find_quota(session, project_id)
        assert quota is not None
        quota.hard_storage = unique(image)
    assert (await put_manifest(admin, repo, "v1", image.manifest)).status_code == 201
    assert await usage(state, project_id) == (unique(image), unique(image))


async def test_deleting_artifacts_releases_blobs_no_other_artifact_needs(
    admin: httpx.AsyncClient, state: AppState
) -> None:
    project_id, name = await new_project(state)
    shared, config = data("shared", 5000), data("config", 100)
    one = await push(admin, f"{name}/one", "v1", config, [shared, data("a", 700)])
    two = await push(admin, f"{name}/two", "v1", config, [shared, data("b", 900)])
    copy = await push(admin, f"{name}/three", "v1", config, [shared, data("c", 300)])
    assert await usage(state, project_id) == (-1, unique(one, two, copy))

    deleted = await admin.delete(f"/v2/{name}/one/manifests/{one.digest}")
    assert deleted.status_code == 202, deleted.text
    # The shared layer and config stay counted: two and three still need them.
    assert await usage(state, project_id) == (-1, unique(two, copy))
    assert await recomputed(state, project_id) == unique(two, copy)

    # Deleting a tag releases nothing; deleting the artifact does.
    assert (await admin.delete(f"/v2/{name}/two/manifests/v1")).status_code == 202
    assert await usage(state, project_id) == (-1, unique(two, copy))
    assert (await admin.delete(f"/v2/{name}/two/manifests/{two.digest}")).status_code == 202
    assert await usage(state, project_id) == (-1, unique(copy))
    assert (await admin.delete(f"/v2/{name}/three/manifests/{copy.digest}")).status_code == 202
    assert await usage(state, project_id) == (-1, 0)
    assert await project_blob_count(state, project_id) == 0


async def test_same_artifact_in_two_repositories_is_released_with_the_last(
    admin: httpx.AsyncClient, state: AppState
) -> None:
    project_id, name = await new_project(state)
    config, layer = data("config", 100), data("layer", 2000)
    first = await push(admin, f"{name}/a", "v1", config, [layer])
    second = await push(admin, f"{name}/b", "v1", config, [layer])
    assert first.digest == second.digest
    assert await usage(state, project_id) == (-1, unique(first))
    assert (await admin.delete(f"/v2/{name}/a/manifests/{first.digest}")).status_code == 202
    assert await usage(state, project_id) == (-1, unique(first))
    assert (await admin.delete(f"/v2/{name}/b/manifests/{first.digest}")).status_code == 202
    assert await usage(state, project_id) == (-1, 0)


async def test_release_in_one_project_leaves_another_alone(
    admin: httpx.AsyncClient, state: AppState
) -> None:
    first, first_name = await new_project(state)
    second, second_name = await new_project(state)
    config, layer = data("config", 100), data("layer", 3000)
    image = await push(admin, f"{first_name}/app", "v1", config, [layer])
    await push(admin, f"{second_name}/app", "v1", config, [layer])
    assert (await admin.delete(f"/v2/{first_name}/app/manifests/{image.digest}")).status_code == 202
    assert await usage(state, first) == (-1, 0)
    assert await usage(state, second) == (-1, unique(image))


async def test_blobs_never_referenced_stay_counted(
    admin: httpx.AsyncClient, state: AppState
) -> None:
    project_id, name = await new_project(state)
    loose = data("loose", 1234)
    await push_blob(admin, f"{name}/app", loose)
    image = await push(admin, f"{name}/app", "v1", data("config", 50), [data("l", 60)])
    assert (await admin.delete(f"/v2/{name}/app/manifests/{image.digest}")).status_code == 202
    # Uploaded but never in a manifest: counted until garbage collection.
    assert await usage(state, project_id) == (-1, len(loose))


async def test_concurrent_uploads_cannot_overshoot(
    admin: httpx.AsyncClient, state: AppState
) -> None:
    size = 4096
    limit = 3 * size + size // 2
    project_id, name = await new_project(state, storage_limit=limit)
    blobs = [data(f"race{i}", size) for i in range(8)]

    async def upload(blob: bytes) -> int:
        response = await admin.post(
            f"/v2/{name}/app/blobs/uploads/", params={"digest": digest_of(blob)}, content=blob
        )
        return response.status_code

    statuses = await asyncio.gather(*(upload(blob) for blob in blobs))
    assert sorted(statuses) == [201] * 3 + [403] * 5
    assert await usage(state, project_id) == (limit, 3 * size)
    assert await recomputed(state, project_id) == 3 * size


async def test_concurrent_manifest_pushes_cannot_overshoot(
    admin: httpx.AsyncClient, state: AppState
) -> None:
    config, layer = data("config", 100), data("layer", 1000)
    manifests = [
        json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": digest_of(config),
                    "size": len(config),
                },
                "layers": [
                    {
                        "mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": digest_of(layer),
                        "size": len(layer),
                    }
                ],
                "annotations": {"n": f"{i:04d}"},
            }
        ).encode()
        for i in range(6)
    ]
    assert len({len(m) for m in manifests}) == 1
    each = len(manifests[0])
    limit = len(config) + len(layer) + 2 * each
    project_id, name = await new_project(state, storage_limit=limit)
    await push_blob(admin, f"{name}/app", config)
    await push_blob(admin, f"{name}/app", layer)
    statuses = await asyncio.gather(
        *(put_manifest(admin, f"{name}/app", f"t{i}", m) for i, m in enumerate(manifests))
    )
    assert sorted(r.status_code for r in statuses) == [201] * 2 + [403] * 4
    assert await usage(state, project_id) == (limit, limit)
    assert await rows_in_repository(state, Artifact, f"{name}/app") == 2


@pytest.mark.parametrize("limit", [0, -1])
async def test_zero_and_unlimited(admin: httpx.AsyncClient, state: AppState, limit: int) -> None:
    project_id, name = await new_project(state, storage_limit=limit)
    blob = data("one", 10)
    response = await admin.post(
        f"/v2/{name}/app/blobs/uploads/", params={"digest": digest_of(blob)}, content=blob
    )
    assert response.status_code == (403 if limit == 0 else 201)
    assert await usage(state, project_id) == (limit, 0 if limit == 0 else 10)
    # An empty blob costs nothing, so even a full project takes it.
    await push_blob(admin, f"{name}/app", b"")
    assert await usage(state, project_id) == (limit, 0 if limit == 0 else 10)


async def test_project_without_a_quota_row_gets_one_when_charged(
    admin: httpx.AsyncClient, state: AppState
) -> None:
    """Projects from before quotas existed: their row appears, counting what they hold."""
    project_id, name = await new_project(state)
    first = data("before", 700)
    await push_blob(admin, f"{name}/app", first)
    async with state.db.write() as session:
        quota = await quota_repo.find_quota(session, project_id)
        await session.delete(quota)
    second = data("after", 300)
    await push_blob(admin, f"{name}/app", second)
    assert await usage(state, project_id) == (-1, 1000)


async def test_pushes_racing_deletes_keep_the_numbers_right(
    admin: httpx.AsyncClient, state: AppState
) -> None:
    """A tag pushed anew while the artifact it pointed at is deleted, many times over:
    no deadlock (the clients fail any 5xx) and the stored usage stays exact."""
    project_id, name = await new_project(state)
    repo = f"{name}/app"
    config, shared = data("config", 100), data("shared", 2000)
    current = await push(admin, repo, "v", config, [shared, data("l0", 300)])
    for round_number in range(1, 9):
        layer = data(f"l{round_number}", 300)
        await push_blob(admin, repo, layer)
        following = build_image(config, [shared, layer])
        pushed, deleted = await asyncio.gather(
            put_manifest(admin, repo, "v", following.manifest),
            admin.delete(f"/v2/{repo}/manifests/{current.digest}"),
        )
        assert pushed.status_code == 201, pushed.text
        assert deleted.status_code == 202, deleted.text
        current = following
    _, stored = await usage(state, project_id)
    assert stored == await recomputed(state, project_id)
    # What is left: the last image, and nothing of the deleted ones but their layers'
    # bytes nobody references (the racing rounds' fresh uploads are all referenced).
    assert stored == unique(current)


async def test_layers_named_again_after_their_release_are_charged_again(
    admin: httpx.AsyncClient, state: AppState
) -> None:
    """A deleted artifact's layers stay readable in their repository (OCI), uncounted; a
    manifest that names them again without uploading them is charged for them."""
    config, layer = data("config", 100), data("layer", 3000)
    image = build_image(config, [layer])
    project_id, name = await new_project(state, storage_limit=unique(image))
    repo = f"{name}/app"
    await push(admin, repo, "v1", config, [layer])
    assert (await admin.delete(f"/v2/{repo}/manifests/{image.digest}")).status_code == 202
    assert await usage(state, project_id) == (unique(image), 0)
    assert (await admin.head(f"/v2/{repo}/blobs/{digest_of(layer)}")).status_code == 200

    # Pushed again by manifest only: charged in full, within the limit.
    assert (await put_manifest(admin, repo, "v1", image.manifest)).status_code == 201
    assert await usage(state, project_id) == (unique(image), unique(image))
    assert await recomputed(state, project_id) == unique(image)
    assert (await admin.delete(f"/v2/{repo}/manifests/{image.digest}")).status_code == 202

    # Now with five bytes already stored, the same push no longer fits.
    await push_blob(admin, repo, data("small", 5))
    response = await put_manifest(admin, repo, "v2", image.manifest)
    assert response.status_code == 403, response.text
    assert error_code(response) == "DENIED"
    # The manifest's own bytes fit; its config and layer, counted again, do not.
    again = len(config) + len(layer)
    message = response.json()["errors"][0]["message"]
    assert message.endswith(f"this request needs {human_size(again)} ({again} bytes) more")
    assert (await admin.get(f"/v2/{repo}/manifests/v2")).status_code == 404
    assert await usage(state, project_id) == (unique(image), 5)
    assert await recomputed(state, project_id) == 5


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (-1, "unlimited"),
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (9961472, "9.5 MiB"),
        (10 * 1024**3, "10.0 GiB"),
        (2**63 - 1, "8.0 EiB"),
    ],
)
def test_human_size(size: int, text: str) -> None:
    assert human_size(size) == text


async def test_limits_switched_off_count_but_never_refuse(
    admin: httpx.AsyncClient, state: AppState
) -> None:
    """Harbor's ``quota_per_project_enable``: off, usage is still counted but no limit refuses."""
    config_url = "/api/v2.0/configurations"
    project_id, name = await new_project(state, storage_limit=1024)
    small, big = data("small", 512), data("big", 4096)
    await push_blob(admin, f"{name}/app", small)
    refused = await admin.post(
        f"/v2/{name}/app/blobs/uploads/", params={"digest": digest_of(big)}, content=big
    )
    assert refused.status_code == 403
    switch = await admin.put(config_url, json={"quota_per_project_enable": False})
    assert switch.status_code == 200
    try:
        items = (await admin.get(config_url)).json()
        assert items["quota_per_project_enable"] == {"value": False, "editable": True}
        await push_blob(admin, f"{name}/app", big)
        assert await usage(state, project_id) == (1024, len(small) + len(big))
    finally:
        await admin.put(config_url, json={"quota_per_project_enable": True})
    again = data("again", 64)
    refused = await admin.post(
        f"/v2/{name}/app/blobs/uploads/", params={"digest": digest_of(again)}, content=again
    )
    assert refused.status_code == 403
