"""Small helpers for driving /v2/ in integration tests."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import httpx
from sqlalchemy import func, select

from dockyard.http.state import AppState
from dockyard.registry.models import Blob, Repository

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"


def digest_of(data: bytes, algorithm: str = "sha256") -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


async def push_blob(client: httpx.AsyncClient, repo: str, data: bytes) -> str:
    digest = digest_of(data)
    response = await client.post(
        f"/v2/{repo}/blobs/uploads/", params={"digest": digest}, content=data
    )
    assert response.status_code == 201, response.text
    return digest


def image_manifest(
    config: tuple[str, int],
    layers: list[tuple[str, int]],
    *,
    subject: tuple[str, int] | None = None,
    artifact_type: str | None = None,
    config_type: str = OCI_CONFIG,
    annotations: dict[str, str] | None = None,
) -> bytes:
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": config_type, "digest": config[0], "size": config[1]},
        "layers": [{"mediaType": OCI_LAYER, "digest": d, "size": s} for d, s in layers],
    }
    if artifact_type:
        doc["artifactType"] = artifact_type
    if subject:
        doc["subject"] = {"mediaType": OCI_MANIFEST, "digest": subject[0], "size": subject[1]}
    if annotations:
        doc["annotations"] = annotations
    return json.dumps(doc).encode()


async def push_image(
    client: httpx.AsyncClient,
    repo: str,
    tag: str | None = "latest",
    *,
    layers: int = 2,
    seed: bytes = b"",
) -> tuple[str, bytes]:
    """Push a small image; returns (manifest digest, manifest bytes)."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "seed": seed.hex()}).encode()
    config_digest = await push_blob(client, repo, config)
    pushed = []
    for i in range(layers):
        data = seed + f"layer-{i}-".encode() + repo.encode()
        pushed.append((await push_blob(client, repo, data), len(data)))
    manifest = image_manifest((config_digest, len(config)), pushed)
    reference = tag or digest_of(manifest)
    response = await client.put(
        f"/v2/{repo}/manifests/{reference}",
        content=manifest,
        headers={"Content-Type": OCI_MANIFEST},
    )
    assert response.status_code == 201, response.text
    return digest_of(manifest), manifest


def error_code(response: httpx.Response) -> str:
    body = response.json()
    return str(body["errors"][0]["code"])


async def rows_in_repository(state: AppState, model: Any, repo: str) -> int:
    """How many rows of ``model`` (a table with ``repository_id``) belong to ``repo``."""
    async with state.db.read() as session:
        count = await session.scalar(
            select(func.count())
            .select_from(model)
            .join(Repository, Repository.repository_id == model.repository_id)
            .where(Repository.name == repo)
        )
    return int(count or 0)


async def blob_row_exists(state: AppState, digest: str) -> bool:
    async with state.db.read() as session:
        return await session.scalar(select(Blob.id).where(Blob.digest == digest)) is not None
