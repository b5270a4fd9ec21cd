"""Descriptor sizes in a pushed manifest must be true (issue 12, item 8).

A size that does not fit the database, or that differs from the stored object's, is
refused with 400 MANIFEST_INVALID before anything is recorded — never a 500, and never
an artifact that claims exabytes.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from tests.integration.registry_helpers import (
    OCI_INDEX,
    OCI_LAYER,
    OCI_MANIFEST,
    digest_of,
    error_code,
    image_manifest,
    push_blob,
    push_image,
    rows_in_repository,
)

from dockyard.http.state import AppState
from dockyard.registry.models import Artifact

HUGE = 2**63 - 1


async def _parts(client: httpx.AsyncClient, repo: str) -> tuple[tuple[str, int], tuple[str, int]]:
    config = json.dumps({"architecture": "amd64", "os": "linux", "repo": repo}).encode()
    layer = f"layer of {repo}".encode() * 100
    return (
        (await push_blob(client, repo, config), len(config)),
        (await push_blob(client, repo, layer), len(layer)),
    )


async def _put(
    client: httpx.AsyncClient, repo: str, body: bytes, media_type: str
) -> httpx.Response:
    return await client.put(
        f"/v2/{repo}/manifests/sized", content=body, headers={"Content-Type": media_type}
    )


async def _refused(
    client: httpx.AsyncClient, state: AppState, repo: str, body: bytes, media_type: str
) -> dict[str, Any]:
    before = await rows_in_repository(state, Artifact, repo)
    response = await _put(client, repo, body, media_type)
    assert response.status_code == 400, response.text
    assert error_code(response) == "MANIFEST_INVALID"
    assert await rows_in_repository(state, Artifact, repo) == before
    missing = await client.get(f"/v2/{repo}/manifests/sized")
    assert missing.status_code == 404
    error: dict[str, Any] = response.json()["errors"][0]
    return error


async def test_layers_whose_sizes_overflow_together(
    admin: httpx.AsyncClient, state: AppState, unique_repo: str
) -> None:
    config, layer = await _parts(admin, unique_repo)
    # Stored layers that claim the largest size each (the 500)...
    body = image_manifest(config, [(layer[0], HUGE), (layer[0], HUGE)])
    await _refused(admin, state, unique_repo, body, OCI_MANIFEST)
    # ...and foreign layers (not stored, so nothing to compare with) whose sum overflows.
    doc = json.loads(image_manifest(config, [layer]))
    for name in (b"far away", b"further away"):
        doc["layers"].append(
            {
                "mediaType": OCI_LAYER,
                "digest": digest_of(name),
                "size": HUGE,
                "urls": ["https://example.com/layer"],
            }
        )
    error = await _refused(admin, state, unique_repo, json.dumps(doc).encode(), OCI_MANIFEST)
    assert "more than" in error["message"]


@pytest.mark.parametrize("declared", [2**62, 1, -1])
async def test_layer_size_differs_from_the_blob(
    admin: httpx.AsyncClient, state: AppState, unique_repo: str, declared: int
) -> None:
    config, layer = await _parts(admin, unique_repo)
    body = image_manifest(config, [(layer[0], declared)])
    await _refused(admin, state, unique_repo, body, OCI_MANIFEST)


async def test_config_size_differs_from_the_blob(
    admin: httpx.AsyncClient, state: AppState, unique_repo: str
) -> None:
    config, layer = await _parts(admin, unique_repo)
    body = image_manifest((config[0], config[1] + 1), [layer])
    error = await _refused(admin, state, unique_repo, body, OCI_MANIFEST)
    assert error["message"].startswith("config declares")
    # the true sizes are accepted, and the artifact's size is what is stored
    good = image_manifest(config, [layer])
    assert (await _put(admin, unique_repo, good, OCI_MANIFEST)).status_code == 201
    async with state.db.read() as session:
        size = await session.scalar(select(Artifact.size).where(Artifact.digest == digest_of(good)))
    assert size == len(good) + config[1] + layer[1]


async def test_index_child_size_differs_from_the_manifest(
    admin: httpx.AsyncClient, state: AppState, unique_repo: str
) -> None:
    child_digest, child = await push_image(admin, unique_repo, None)
    for declared in (len(child) + 7, 2**62):
        index = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_INDEX,
                "manifests": [
                    {"mediaType": OCI_MANIFEST, "digest": child_digest, "size": declared}
                ],
            }
        ).encode()
        error = await _refused(admin, state, unique_repo, index, OCI_INDEX)
        assert error["message"].startswith("manifests[0] declares")


async def test_subject_size_is_checked_where_the_subject_is_stored(
    admin: httpx.AsyncClient, state: AppState, unique_repo: str
) -> None:
    subject_digest, subject = await push_image(admin, unique_repo, "subject")
    config, layer = await _parts(admin, unique_repo)
    wrong = image_manifest(
        config, [layer], subject=(subject_digest, 2**62), artifact_type="application/x-test"
    )
    error = await _refused(admin, state, unique_repo, wrong, OCI_MANIFEST)
    assert error["message"].startswith("subject declares")
    right = image_manifest(
        config, [layer], subject=(subject_digest, len(subject)), artifact_type="application/x-test"
    )
    assert (await _put(admin, unique_repo, right, OCI_MANIFEST)).status_code == 201
    # A subject not stored (pushed later) cannot be compared: its size is taken as given.
    absent = image_manifest(
        config, [layer], subject=(digest_of(b"later"), 1234), artifact_type="application/x-other"
    )
    response = await admin.put(
        f"/v2/{unique_repo}/manifests/{digest_of(absent)}",
        content=absent,
        headers={"Content-Type": OCI_MANIFEST},
    )
    assert response.status_code == 201, response.text
