"""Online GC against a real server: skopeo pushes images that share layers with deleted
ones while garbage collections run back to back; afterwards every pushed image pulls
back byte for byte and storage holds exactly the blobs the images need."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.support.oci_layout import (
    MEDIA_TYPE_IMAGE_MANIFEST,
    ImageInfo,
    blob_path,
    make_image_layout,
    read_json_blob,
    write_blob,
    write_json_blob,
)
from tests.support.seaweedfs import s3_storage, shared_seaweedfs
from tests.support.server import DockyardServer
from tests.support.skopeo import Skopeo, SkopeoError

pytestmark = pytest.mark.e2e
GC = "/api/v2.0/system/gc"
WINDOW_HOURS = 0.0015  # 5.4 s: fractions of an hour are allowed


def _push(skopeo: Skopeo, server: DockyardServer, layout: Path, tag: str, ref: str) -> str:
    """Push; returns the digest of the manifest skopeo wrote (it may rewrite the source's
    when it reuses a blob the registry already has in another compression)."""
    digest_file = layout.parent / f"{layout.name}-{ref.replace('/', '_')}.digest"
    skopeo.run(
        "copy",
        "--digestfile",
        str(digest_file),
        "--dest-tls-verify=false",
        "--dest-creds",
        server.admin_creds,
        f"oci:{layout}:{tag}",
        f"docker://{server.registry}/{ref}",
    )
    return digest_file.read_text().strip()


def _push_retrying(
    skopeo: Skopeo, server: DockyardServer, layout: Path, tag: str, ref: str, refusals: list[str]
) -> str:
    """A push the collection refused (it claimed a blob the push named first) is a
    correct outcome; pushing again uploads what went. Three tries at most."""
    for attempt in range(3):
        try:
            return _push(skopeo, server, layout, tag, ref)
        except SkopeoError as exc:
            refusals.append(f"{ref} attempt {attempt}: {str(exc)[-300:]}")
    raise AssertionError(f"{ref} could not be pushed: {refusals}")


def _derive(old: ImageInfo, path: Path, seed: int) -> tuple[str, set[str]]:
    """A new image in its own layout: the old image's first two layers, one new layer,
    a new config. Returns (its manifest digest, the digests it needs)."""
    shutil.copytree(old.path, path)
    new_layer = hashlib.sha256(f"new-layer-{seed}".encode()).digest() * 2048
    layer_digest, layer_size = write_blob(path, new_layer)
    config = read_json_blob(old.path, old.config_digest)
    config["created"] = f"2026-01-0{seed % 9 + 1}T00:00:00Z"
    config_digest, config_size = write_json_blob(path, config)
    old_manifest = old.manifest()
    layers = [*old_manifest["layers"][:2]]
    layers.append({"mediaType": layers[0]["mediaType"], "digest": layer_digest, "size": layer_size})
    manifest = {
        "schemaVersion": 2,
        "mediaType": MEDIA_TYPE_IMAGE_MANIFEST,
        "config": {**old_manifest["config"], "digest": config_digest, "size": config_size},
        "layers": layers,
    }
    digest, size = write_json_blob(path, manifest)
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": MEDIA_TYPE_IMAGE_MANIFEST,
                "digest": digest,
                "size": size,
                "annotations": {"org.opencontainers.image.ref.name": "v2"},
            }
        ],
    }
    (path / "index.json").write_text(json.dumps(index))
    return digest, {digest, config_digest, *(layer["digest"] for layer in layers)}


def _gc(client: httpx.Client, **parameters: Any) -> dict[str, Any] | None:
    """Run GC now and wait; None when another run was still going."""
    body = {"schedule": {"type": "Manual"}, "parameters": parameters}
    response = client.post(f"{GC}/schedule", json=body)
    if response.status_code == 409:
        return None
    assert response.status_code == 201, response.text
    gc_id = response.headers["Location"].rsplit("/", 1)[1]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        run: dict[str, Any] = client.get(f"{GC}/{gc_id}").json()
        if run["job_status"] in ("Success", "Error", "Stopped"):
            assert run["job_status"] == "Success", run
            return run
        time.sleep(0.05)
    raise AssertionError(f"GC {gc_id} did not finish")


def _stored(server: DockyardServer) -> set[str]:
    bucket = server.env.get("DOCKYARD_STORAGE_S3_BUCKET")
    if bucket is not None:  # DOCKYARD_TEST_STORAGE=s3: the blobs are in its bucket
        storage = s3_storage(shared_seaweedfs(), bucket)

        async def keys() -> list[str]:
            return [key async for key in storage.list("blobs/")]

        # blobs/<algorithm>/<two hex digits>/<encoded>
        return {f"{k.split('/')[1]}:{k.split('/')[3]}" for k in asyncio.run(keys())}
    root = server.data_dir / "storage" / "blobs"
    found = set()
    for directory, _, files in os.walk(root):
        parts = Path(directory).relative_to(root).parts  # <algorithm>/<two hex digits>
        found.update(f"{parts[0]}:{name}" for name in files if len(parts) == 2)
    return found


def _pull_and_compare(
    skopeo: Skopeo, server: DockyardServer, ref: str, dest: Path, manifest_digest: str
) -> set[str]:
    """Pull ``ref``: it must be the manifest pushed, with every blob intact; returns the
    digests it needs (manifest, config, layers)."""
    skopeo.run(
        "copy",
        "--src-tls-verify=false",
        "--src-creds",
        server.admin_creds,
        f"docker://{server.registry}/{ref}",
        f"oci:{dest}:pulled",
    )
    pulled = json.loads((dest / "index.json").read_text())["manifests"][0]
    assert pulled["digest"] == manifest_digest, ref  # the very manifest bytes
    manifest = read_json_blob(dest, manifest_digest)
    for descriptor in [manifest["config"], *manifest["layers"]]:
        data = blob_path(dest, descriptor["digest"]).read_bytes()
        assert "sha256:" + hashlib.sha256(data).hexdigest() == descriptor["digest"], ref
    return {manifest_digest, *(d["digest"] for d in [manifest["config"], *manifest["layers"]])}


def test_pushes_during_gc_survive_and_storage_ends_exact(
    server: DockyardServer, skopeo: Skopeo, tmp_path: Path
) -> None:
    with httpx.Client(base_url=server.url, auth=server.admin_auth, timeout=60) as client:
        _scenario(server, skopeo, tmp_path, client)


def _scenario(server: DockyardServer, skopeo: Skopeo, tmp_path: Path, client: httpx.Client) -> None:
    olds = [
        make_image_layout(tmp_path / f"old{i}", layers=3, layer_size=48 * 1024, seed=100 + i)
        for i in range(4)
    ]
    for i, old in enumerate(olds):
        _push(skopeo, server, old.path, "latest", f"library/gc-old{i}:v1")
    for i in range(4):
        deleted = client.delete(f"/api/v2.0/projects/library/repositories/gc-old{i}/artifacts/v1")
        assert deleted.status_code == 200, deleted.text
    # The window protects what in-flight pushes uploaded but have not named in a manifest
    # yet; the deleted images' blobs must be older than it to be collectable.
    time.sleep(WINDOW_HOURS * 3600 + 0.5)

    # What gets pushed while GC runs: (layout, tag, reference, manifest digest, needs).
    pushes: list[tuple[Path, str, str, str, set[str]]] = []
    for i, old in enumerate(olds):
        digest, needs = _derive(old, tmp_path / f"new{i}", i)
        # Even: into the repository still linked to the deleted layers (HEAD says "have
        # it"); odd: into a new one (mount from the old repository, or upload).
        ref = f"library/gc-old{i}:v2" if i % 2 == 0 else f"library/gc-new{i}:v1"
        pushes.append((tmp_path / f"new{i}", "v2", ref, digest, needs))
    for i in (0, 3):  # the deleted images themselves, again, elsewhere
        old = olds[i]
        needs = {old.manifest_digest, *old.blob_digests}
        pushes.append((old.path, "latest", f"library/gc-again{i}:v1", old.manifest_digest, needs))

    refusals: list[str] = []
    done = threading.Event()
    runs: list[dict[str, Any]] = []
    with ThreadPoolExecutor(3) as pool:
        futures = [
            pool.submit(_push_retrying, skopeo, server, layout, tag, ref, refusals)
            for layout, tag, ref, _, _ in pushes
        ]
        while not all(f.done() for f in futures):
            run = _gc(client, time_window=WINDOW_HOURS, workers=4, delete_untagged=True)
            if run is not None:
                runs.append(run)
        for future in futures:
            future.result()
    done.set()
    assert runs, "GC ran while the pushes went on"

    final = _gc(client, time_window=0, workers=4, delete_untagged=True)  # nothing in flight
    assert final is not None
    freed = sum(json.loads(r["job_parameters"])["freed_space"] for r in [*runs, final])
    assert freed > 0, "the deleted images' own layers were collected"

    needed: set[str] = set()
    for n, ((_, _, ref, _, _), future) in enumerate(zip(pushes, futures, strict=True)):
        needed |= _pull_and_compare(skopeo, server, ref, tmp_path / f"pulled{n}", future.result())
    assert _stored(server) == needed, "storage holds exactly the blobs the images need"
    print(f"{len(runs) + 1} GC runs; refused pushes retried: {len(refusals)}")
