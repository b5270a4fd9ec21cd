"""The rows a manifest push records for later features: index children and accessories."""

from __future__ import annotations

import json

import httpx
from sqlalchemy import select
from tests.integration.registry_helpers import (
    OCI_INDEX,
    OCI_MANIFEST,
    digest_of,
    image_manifest,
    push_blob,
    push_image,
)

from dockyard.http.state import AppState
from dockyard.registry.models import Artifact, ArtifactAccessory, ArtifactReference


async def test_index_children_and_referrer_accessory(
    admin: httpx.AsyncClient, state: AppState, unique_repo: str
) -> None:
    child, child_body = await push_image(admin, unique_repo, tag=None, seed=b"child")
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {
                    "mediaType": OCI_MANIFEST,
                    "digest": child,
                    "size": len(child_body),
                    "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"},
                }
            ],
        }
    ).encode()
    put = await admin.put(
        f"/v2/{unique_repo}/manifests/multi", content=index, headers={"Content-Type": OCI_INDEX}
    )
    assert put.status_code == 201, put.text

    empty = await push_blob(admin, unique_repo, b"{}")
    referrer = image_manifest(
        (empty, 2),
        [],
        subject=(child, len(child_body)),
        artifact_type="application/vnd.example.sbom",
        config_type="application/vnd.oci.empty.v1+json",
    )
    put = await admin.put(
        f"/v2/{unique_repo}/manifests/{digest_of(referrer)}",
        content=referrer,
        headers={"Content-Type": OCI_MANIFEST},
    )
    assert put.status_code == 201, put.text

    async with state.db.read() as session:
        artifacts = {
            a.digest: a
            for a in (
                await session.execute(
                    select(Artifact).where(Artifact.repository_name == unique_repo)
                )
            ).scalars()
        }
        parent = artifacts[digest_of(index)]
        references = (
            (
                await session.execute(
                    select(ArtifactReference).where(ArtifactReference.parent_id == parent.id)
                )
            )
            .scalars()
            .all()
        )
        accessories = (
            (
                await session.execute(
                    select(ArtifactAccessory).where(
                        ArtifactAccessory.artifact_id == artifacts[digest_of(referrer)].id
                    )
                )
            )
            .scalars()
            .all()
        )

    assert parent.size == len(index) + artifacts[child].size
    assert [(r.child_id, r.child_digest) for r in references] == [(artifacts[child].id, child)]
    assert json.loads(references[0].platform or "{}") == {
        "architecture": "arm64",
        "os": "linux",
        "variant": "v8",
    }
    assert len(accessories) == 1
    assert accessories[0].subject_artifact_id == artifacts[child].id
    assert accessories[0].type == "subject.accessory"  # Harbor's type for a generic referrer
    assert artifacts[digest_of(referrer)].subject_digest == child
