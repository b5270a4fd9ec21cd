"""Manifests: end-3 (GET/HEAD), end-7 (PUT) and end-9 (DELETE) for every manifest kind."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from tests.integration.registry_helpers import (
    OCI_INDEX,
    OCI_LAYER,
    OCI_MANIFEST,
    blob_row_exists,
    digest_of,
    error_code,
    image_manifest,
    push_blob,
    push_image,
    rows_in_repository,
)

from dockyard.http.state import AppState
from dockyard.registry.models import Artifact, Tag
from dockyard.storage import blob_key

API_VERSION = "registry/2.0"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
MISSING = digest_of(b"no such manifest")


# --- helpers ---------------------------------------------------------------------------------


async def _put(
    client: httpx.AsyncClient, repo: str, reference: str, body: bytes, media_type: str
) -> httpx.Response:
    return await client.put(
        f"/v2/{repo}/manifests/{reference}", content=body, headers={"Content-Type": media_type}
    )


async def _assert_nothing_recorded(
    state: AppState, repo: str, digest: str, *, bytes_too: bool = True
) -> None:
    """No rows for the refused manifest; with ``bytes_too``, no bytes in storage either.

    A manifest refused only once the database is consulted (a missing blob) may
    leave its bytes behind: they are written before the rows, by design, for GC.
    """
    assert await rows_in_repository(state, Artifact, repo) == 0
    assert await rows_in_repository(state, Tag, repo) == 0
    assert not await blob_row_exists(state, digest)
    if bytes_too:
        assert await state.storage.stat(blob_key(digest)) is None


async def _config_and_layer(client: httpx.AsyncClient, repo: str, seed: str) -> dict[str, Any]:
    config = json.dumps({"architecture": "amd64", "os": "linux", "seed": seed}).encode()
    layer = f"layer bytes {seed}".encode()
    return {
        "config": (await push_blob(client, repo, config), len(config)),
        "layer": (await push_blob(client, repo, layer), len(layer)),
    }


def _docker_manifest(config: tuple[str, int], layer: tuple[str, int]) -> bytes:
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": {"mediaType": DOCKER_CONFIG, "digest": config[0], "size": config[1]},
            "layers": [{"mediaType": DOCKER_LAYER, "digest": layer[0], "size": layer[1]}],
        }
    ).encode()


def _index(media_type: str, children: list[tuple[str, bytes, str]]) -> bytes:
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": media_type,
            "manifests": [
                {
                    "mediaType": child_type,
                    "digest": digest_of(body),
                    "size": len(body),
                    "platform": {"architecture": arch, "os": "linux"},
                }
                for arch, (child_type, body) in zip(
                    ("amd64", "arm64", "s390x"),
                    ((t, b) for _, b, t in children),
                    strict=False,
                )
            ],
        }
    ).encode()


async def _assert_served(
    client: httpx.AsyncClient, repo: str, reference: str, body: bytes, media_type: str
) -> None:
    digest = digest_of(body)
    response = await client.get(f"/v2/{repo}/manifests/{reference}")
    assert response.status_code == 200, response.text
    assert response.content == body
    assert response.headers["content-type"] == media_type
    assert response.headers["docker-content-digest"] == digest
    assert response.headers["content-length"] == str(len(body))
    assert response.headers["docker-distribution-api-version"] == API_VERSION
    head = await client.head(f"/v2/{repo}/manifests/{reference}")
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-type"] == media_type
    assert head.headers["docker-content-digest"] == digest
    assert head.headers["content-length"] == str(len(body))


# --- push and pull ----------------------------------------------------------------------------


async def test_oci_manifest_by_tag(admin: httpx.AsyncClient, unique_repo: str) -> None:
    parts = await _config_and_layer(admin, unique_repo, "oci")
    body = image_manifest(parts["config"], [parts["layer"]])
    digest = digest_of(body)
    response = await _put(admin, unique_repo, "v1", body, OCI_MANIFEST)
    assert response.status_code == 201
    assert response.headers["docker-content-digest"] == digest
    assert httpx.URL(response.headers["location"]).path == f"/v2/{unique_repo}/manifests/{digest}"
    assert response.headers["docker-distribution-api-version"] == API_VERSION
    assert "oci-subject" not in response.headers
    await _assert_served(admin, unique_repo, "v1", body, OCI_MANIFEST)
    await _assert_served(admin, unique_repo, digest, body, OCI_MANIFEST)
    # Pushing the same manifest again is harmless.
    assert (await _put(admin, unique_repo, "v1", body, OCI_MANIFEST)).status_code == 201


async def test_oci_manifest_by_digest_has_no_tag(
    admin: httpx.AsyncClient, state: AppState, unique_repo: str
) -> None:
    parts = await _config_and_layer(admin, unique_repo, "by-digest")
    body = image_manifest(parts["config"], [parts["layer"]])
    digest = digest_of(body)
    response = await _put(admin, unique_repo, digest, body, OCI_MANIFEST)
    assert response.status_code == 201
    assert response.headers["docker-content-digest"] == digest
    await _assert_served(admin, unique_repo, digest, body, OCI_MANIFEST)
    assert await rows_in_repository(state, Tag, unique_repo) == 0
    tags = await admin.get(f"/v2/{unique_repo}/tags/list")
    assert tags.json()["tags"] == []


async def test_manifest_by_sha512_digest(admin: httpx.AsyncClient, unique_repo: str) -> None:
    parts = await _config_and_layer(admin, unique_repo, "sha512")
    body = image_manifest(parts["config"], [parts["layer"]])
    digest = digest_of(body, "sha512")
    response = await _put(admin, unique_repo, digest, body, OCI_MANIFEST)
    assert response.status_code == 201, response.text
    assert response.headers["docker-content-digest"] == digest
    got = await admin.get(f"/v2/{unique_repo}/manifests/{digest}")
    assert got.status_code == 200
    assert got.content == body
    assert got.headers["docker-content-digest"] == digest


async def test_docker_schema2_manifest(admin: httpx.AsyncClient, unique_repo: str) -> None:
    parts = await _config_and_layer(admin, unique_repo, "docker")
    body = _docker_manifest(parts["config"], parts["layer"])
    response = await _put(admin, unique_repo, "docker", body, DOCKER_MANIFEST)
    assert response.status_code == 201, response.text
    await _assert_served(admin, unique_repo, "docker", body, DOCKER_MANIFEST)


async def test_docker_manifest_list(admin: httpx.AsyncClient, unique_repo: str) -> None:
    children = []
    for arch in ("amd64", "arm64"):
        parts = await _config_and_layer(admin, unique_repo, arch)
        body = _docker_manifest(parts["config"], parts["layer"])
        assert (await _put(admin, unique_repo, digest_of(body), body, DOCKER_MANIFEST)).is_success
        children.append((arch, body, DOCKER_MANIFEST))
    index = _index(DOCKER_LIST, children)
    response = await _put(admin, unique_repo, "multi", index, DOCKER_LIST)
    assert response.status_code == 201, response.text
    await _assert_served(admin, unique_repo, "multi", index, DOCKER_LIST)
    await _assert_served(
        admin, unique_repo, digest_of(children[0][1]), children[0][1], DOCKER_MANIFEST
    )


async def test_oci_index(admin: httpx.AsyncClient, unique_repo: str) -> None:
    children = []
    for arch in ("amd64", "arm64"):
        _, body = await push_image(admin, unique_repo, None, seed=arch.encode())
        children.append((arch, body, OCI_MANIFEST))
    index = _index(OCI_INDEX, children)
    response = await _put(admin, unique_repo, "multi", index, OCI_INDEX)
    assert response.status_code == 201, response.text
    await _assert_served(admin, unique_repo, "multi", index, OCI_INDEX)


async def test_manifest_without_content_type_uses_media_type_field(
    admin: httpx.AsyncClient, unique_repo: str
) -> None:
    parts = await _config_and_layer(admin, unique_repo, "generic")
    body = image_manifest(parts["config"], [parts["layer"]])
    response = await admin.put(f"/v2/{unique_repo}/manifests/plain", content=body)
    assert response.status_code == 201, response.text
    await _assert_served(admin, unique_repo, "plain", body, OCI_MANIFEST)


async def test_artifact_with_empty_config_and_subject(
    admin: httpx.AsyncClient, unique_repo: str
) -> None:
    subject_digest, subject_body = await push_image(admin, unique_repo, "app")
    empty = await push_blob(admin, unique_repo, b"{}")
    assert empty == "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
    sbom = b'{"spdxVersion": "SPDX-2.3"}'
    sbom_digest = await push_blob(admin, unique_repo, sbom)
    body = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": "application/spdx+json",
            "config": {"mediaType": OCI_EMPTY, "digest": empty, "size": 2, "data": "e30="},
            "layers": [
                {"mediaType": "application/spdx+json", "digest": sbom_digest, "size": len(sbom)}
            ],
            "subject": {
                "mediaType": OCI_MANIFEST,
                "digest": subject_digest,
                "size": len(subject_body),
            },
            "annotations": {"org.opencontainers.image.created": "2024-01-01T00:00:00Z"},
        }
    ).encode()
    digest = digest_of(body)
    response = await _put(admin, unique_repo, digest, body, OCI_MANIFEST)
    assert response.status_code == 201, response.text
    assert response.headers["oci-subject"] == subject_digest
    assert response.headers["docker-content-digest"] == digest
    await _assert_served(admin, unique_repo, digest, body, OCI_MANIFEST)
    assert (await admin.get(f"/v2/{unique_repo}/blobs/{empty}")).content == b"{}"


async def test_referrer_pushed_before_its_subject(
    admin: httpx.AsyncClient, unique_repo: str
) -> None:
    empty = await push_blob(admin, unique_repo, b"{}")
    absent = digest_of(b"a subject nobody pushed")
    body = image_manifest(
        (empty, 2),
        [(empty, 2)],
        subject=(absent, 100),
        artifact_type="application/vnd.example.sig",
        config_type=OCI_EMPTY,
    )
    response = await _put(admin, unique_repo, digest_of(body), body, OCI_MANIFEST)
    assert response.status_code == 201, response.text
    assert response.headers["oci-subject"] == absent


# --- refused pushes -----------------------------------------------------------------------------


async def test_put_by_digest_with_other_body(
    admin: httpx.AsyncClient, state: AppState, unique_repo: str
) -> None:
    parts = await _config_and_layer(admin, unique_repo, "mismatch")
    body = image_manifest(parts["config"], [parts["layer"]])
    wrong = digest_of(body + b" ")
    response = await _put(admin, unique_repo, wrong, body, OCI_MANIFEST)
    assert response.status_code == 400
    assert error_code(response) == "DIGEST_INVALID"
    await _assert_nothing_recorded(state, unique_repo, digest_of(body))
    assert (await admin.get(f"/v2/{unique_repo}/manifests/{wrong}")).status_code == 404


async def test_manifest_with_missing_blob(
    admin: httpx.AsyncClient, state: AppState, unique_repo: str
) -> None:
    parts = await _config_and_layer(admin, unique_repo, "missing")
    absent = digest_of(b"layer never pushed")
    body = image_manifest(parts["config"], [parts["layer"], (absent, 18)])
    response = await _put(admin, unique_repo, "broken", body, OCI_MANIFEST)
    assert response.status_code == 400
    assert error_code(response) == "MANIFEST_BLOB_UNKNOWN"
    assert absent in response.json()["errors"][0]["message"]
    await _assert_nothing_recorded(state, unique_repo, digest_of(body), bytes_too=False)
    missing = await admin.get(f"/v2/{unique_repo}/manifests/broken")
    assert missing.status_code == 404
    assert error_code(missing) == "MANIFEST_UNKNOWN"


async def test_manifest_with_blob_of_another_repository(
    admin: httpx.AsyncClient, state: AppState, unique_repo: str
) -> None:
    other = f"{unique_repo}-other"
    parts = await _config_and_layer(admin, other, "elsewhere")
    body = image_manifest(parts["config"], [parts["layer"]])
    response = await _put(admin, unique_repo, "stolen", body, OCI_MANIFEST)
    assert response.status_code == 400
    assert error_code(response) == "MANIFEST_BLOB_UNKNOWN"
    assert await rows_in_repository(state, Artifact, unique_repo) == 0


async def test_index_with_missing_child(
    admin: httpx.AsyncClient, state: AppState, unique_repo: str
) -> None:
    _, present = await push_image(admin, unique_repo, None)
    absent = b'{"schemaVersion": 2, "pretend": true}'
    index = _index(OCI_INDEX, [("amd64", present, OCI_MANIFEST), ("arm64", absent, OCI_MANIFEST)])
    before = await rows_in_repository(state, Artifact, unique_repo)
    response = await _put(admin, unique_repo, "multi", index, OCI_INDEX)
    assert response.status_code == 400
    assert error_code(response) == "MANIFEST_BLOB_UNKNOWN"
    assert digest_of(absent) in response.json()["errors"][0]["message"]
    assert await rows_in_repository(state, Artifact, unique_repo) == before
    assert await rows_in_repository(state, Tag, unique_repo) == 0


@pytest.mark.parametrize(
    ("body", "media_type"),
    [
        (b"{not json", OCI_MANIFEST),
        (b" \n ", OCI_MANIFEST),
        (b"[]", OCI_MANIFEST),
        (b'{"schemaVersion": 1, "name": "x", "tag": "y", "fsLayers": []}', OCI_MANIFEST),
        (
            b'{"schemaVersion": 1, "name": "x", "tag": "y", "fsLayers": []}',
            "application/vnd.docker.distribution.manifest.v1+prettyjws",
        ),
        (b'{"schemaVersion": 2, "mediaType": "text/html", "config": {}}', "text/html"),
        (b'{"schemaVersion": 2, "mediaType": "application/vnd.example+json"}', OCI_MANIFEST),
        (b'{"schemaVersion": 2, "mediaType": "' + OCI_MANIFEST.encode() + b'"}', OCI_MANIFEST),
        (
            b'{"schemaVersion": 2, "mediaType": "' + OCI_INDEX.encode() + b'", "manifests": 3}',
            OCI_INDEX,
        ),
        (b'{"schemaVersion": 2, "config": {"digest": "nope"}}', OCI_MANIFEST),
        (b"\xff\xfe{}", OCI_MANIFEST),
    ],
    ids=[
        "not-json",
        "empty",
        "array",
        "schema1-body",
        "schema1-signed",
        "foreign-media-type",
        "unknown-media-type",
        "no-config",
        "manifests-not-array",
        "bad-descriptor",
        "not-utf8",
    ],
)
async def test_invalid_manifest(
    admin: httpx.AsyncClient, state: AppState, unique_repo: str, body: bytes, media_type: str
) -> None:
    response = await _put(admin, unique_repo, "bad", body, media_type)
    assert response.status_code == 400, response.text
    assert error_code(response) == "MANIFEST_INVALID"
    assert response.headers["docker-distribution-api-version"] == API_VERSION
    await _assert_nothing_recorded(state, unique_repo, digest_of(body))


async def test_content_type_disagrees_with_media_type(
    admin: httpx.AsyncClient, state: AppState, unique_repo: str
) -> None:
    parts = await _config_and_layer(admin, unique_repo, "disagree")
    body = image_manifest(parts["config"], [parts["layer"]])
    response = await _put(admin, unique_repo, "x", body, DOCKER_MANIFEST)
    assert response.status_code == 400
    assert error_code(response) == "MANIFEST_INVALID"
    assert await rows_in_repository(state, Artifact, unique_repo) == 0


async def test_manifest_too_large(
    admin: httpx.AsyncClient, state: AppState, unique_repo: str
) -> None:
    parts = await _config_and_layer(admin, unique_repo, "big")
    doc = json.loads(image_manifest(parts["config"], [parts["layer"]]))
    doc["annotations"] = {"padding": "x" * (4 * 1024 * 1024)}
    body = json.dumps(doc).encode()
    response = await _put(admin, unique_repo, "big", body, OCI_MANIFEST)
    assert response.status_code == 413
    assert error_code(response) == "SIZE_INVALID"
    await _assert_nothing_recorded(state, unique_repo, digest_of(body))

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 1 << 20):
            yield body[start : start + (1 << 20)]

    streamed = await admin.put(
        f"/v2/{unique_repo}/manifests/big",
        content=chunks(),
        headers={"Content-Type": OCI_MANIFEST},
    )
    assert streamed.status_code == 413
    assert error_code(streamed) == "SIZE_INVALID"
    await _assert_nothing_recorded(state, unique_repo, digest_of(body))


async def test_invalid_tag(admin: httpx.AsyncClient, state: AppState, unique_repo: str) -> None:
    parts = await _config_and_layer(admin, unique_repo, "tags")
    body = image_manifest(parts["config"], [parts["layer"]])
    for tag in ("-leading-dash", ".dot", "a" * 129, "has+plus"):
        response = await _put(admin, unique_repo, tag, body, OCI_MANIFEST)
        assert response.status_code == 400, tag
        assert error_code(response) in {"TAG_INVALID", "MANIFEST_INVALID"}
        got = await admin.get(f"/v2/{unique_repo}/manifests/{tag}")
        assert got.status_code == 404
        assert error_code(got) == "MANIFEST_UNKNOWN"
    assert await rows_in_repository(state, Artifact, unique_repo) == 0


async def test_anonymous_push_is_refused(
    admin: httpx.AsyncClient, anon: httpx.AsyncClient, state: AppState, unique_repo: str
) -> None:
    parts = await _config_and_layer(admin, unique_repo, "anon")
    body = image_manifest(parts["config"], [parts["layer"]])
    response = await _put(anon, unique_repo, "anon", body, OCI_MANIFEST)
    assert response.status_code == 401
    assert "www-authenticate" in response.headers
    assert error_code(response) == "UNAUTHORIZED"
    await _assert_nothing_recorded(state, unique_repo, digest_of(body))


# --- unknown things -------------------------------------------------------------------------------


async def test_unknown_manifest(admin: httpx.AsyncClient, unique_repo: str) -> None:
    await push_image(admin, unique_repo, "exists", layers=0)
    for reference in ("nope", MISSING):
        for method in ("GET", "HEAD", "DELETE"):
            response = await admin.request(method, f"/v2/{unique_repo}/manifests/{reference}")
            assert response.status_code == 404, (method, reference)
            if method != "HEAD":
                assert error_code(response) == "MANIFEST_UNKNOWN"


async def test_unknown_repository(admin: httpx.AsyncClient, unique_repo: str) -> None:
    for reference in ("latest", MISSING):
        for method in ("GET", "DELETE"):
            response = await admin.request(method, f"/v2/{unique_repo}/manifests/{reference}")
            assert response.status_code == 404, (method, reference)
            assert error_code(response) == "NAME_UNKNOWN"
    head = await admin.head(f"/v2/{unique_repo}/manifests/latest")
    assert head.status_code == 404


async def test_malformed_digest_reference(admin: httpx.AsyncClient, unique_repo: str) -> None:
    await push_image(admin, unique_repo, "exists", layers=0)
    for method in ("PUT", "DELETE"):
        response = await admin.request(
            method, f"/v2/{unique_repo}/manifests/sha256:abc", content=b"{}"
        )
        assert response.status_code == 400, method
        assert error_code(response) == "DIGEST_INVALID"
    # A GET names no manifest (the spec's and Harbor's answer, not a 400).
    got = await admin.get(f"/v2/{unique_repo}/manifests/sha256:abc")
    assert got.status_code == 404
    assert error_code(got) == "MANIFEST_UNKNOWN"


# --- delete and retag ---------------------------------------------------------------------


async def test_delete_by_tag_keeps_manifest(
    admin: httpx.AsyncClient, state: AppState, unique_repo: str
) -> None:
    digest, body = await push_image(admin, unique_repo, "v1")
    response = await admin.delete(f"/v2/{unique_repo}/manifests/v1")
    assert response.status_code == 202
    assert response.headers["docker-distribution-api-version"] == API_VERSION
    gone = await admin.get(f"/v2/{unique_repo}/manifests/v1")
    assert gone.status_code == 404
    assert error_code(gone) == "MANIFEST_UNKNOWN"
    await _assert_served(admin, unique_repo, digest, body, OCI_MANIFEST)
    assert await rows_in_repository(state, Artifact, unique_repo) == 1


async def test_delete_by_digest_removes_manifest_and_tags(
    admin: httpx.AsyncClient, state: AppState, unique_repo: str
) -> None:
    digest, body = await push_image(admin, unique_repo, "v1")
    await _put(admin, unique_repo, "v2", body, OCI_MANIFEST)
    keep, _ = await push_image(admin, unique_repo, "keep", seed=b"keep")
    response = await admin.delete(f"/v2/{unique_repo}/manifests/{digest}")
    assert response.status_code == 202
    for reference in ("v1", "v2", digest):
        gone = await admin.get(f"/v2/{unique_repo}/manifests/{reference}")
        assert gone.status_code == 404
        assert error_code(gone) == "MANIFEST_UNKNOWN"
    tags = await admin.get(f"/v2/{unique_repo}/tags/list")
    assert tags.json()["tags"] == ["keep"]
    assert await rows_in_repository(state, Artifact, unique_repo) == 1
    assert (await admin.get(f"/v2/{unique_repo}/manifests/{keep}")).status_code == 200
    # Nor do the deleted manifest's bytes stay readable through the blob endpoint.
    as_blob = await admin.get(f"/v2/{unique_repo}/blobs/{digest}")
    assert as_blob.status_code == 404
    assert error_code(as_blob) == "BLOB_UNKNOWN"
    again = await admin.delete(f"/v2/{unique_repo}/manifests/{digest}")
    assert again.status_code == 404
    assert error_code(again) == "MANIFEST_UNKNOWN"


async def test_delete_in_one_repository_leaves_the_other(
    admin: httpx.AsyncClient, unique_repo: str
) -> None:
    other = f"{unique_repo}-twin"
    digest, _ = await push_image(admin, unique_repo, "v1")
    twin, _ = await push_image(admin, other, "v1")
    assert twin != digest  # layers name their repository, so the images differ
    assert (await admin.delete(f"/v2/{unique_repo}/manifests/{digest}")).status_code == 202
    assert (await admin.get(f"/v2/{other}/manifests/v1")).status_code == 200


async def test_delete_child_of_index_conflicts(
    admin: httpx.AsyncClient, state: AppState, unique_repo: str
) -> None:
    child_digest, child = await push_image(admin, unique_repo, None)
    index = _index(OCI_INDEX, [("amd64", child, OCI_MANIFEST)])
    index_digest = digest_of(index)
    assert (await _put(admin, unique_repo, "multi", index, OCI_INDEX)).status_code == 201

    # The child's cosign signature: a refused delete must leave it too (one transaction).
    signature_tag = "sha256-" + child_digest.removeprefix("sha256:") + ".sig"
    signature, _ = await push_image(admin, unique_repo, signature_tag, seed=b"signature")

    refused = await admin.delete(f"/v2/{unique_repo}/manifests/{child_digest}")
    assert refused.status_code == 409
    message = refused.json()["errors"][0]["message"]
    assert index_digest in message
    assert "index" in message
    assert (await admin.get(f"/v2/{unique_repo}/manifests/{child_digest}")).status_code == 200
    assert (await admin.get(f"/v2/{unique_repo}/manifests/{signature}")).status_code == 200
    assert await rows_in_repository(state, Artifact, unique_repo) == 3

    # Deleting the index takes the child nothing else holds with it (Harbor's rule).
    assert (await admin.delete(f"/v2/{unique_repo}/manifests/{index_digest}")).status_code == 202
    for gone in (child_digest, signature):
        assert (await admin.get(f"/v2/{unique_repo}/manifests/{gone}")).status_code == 404
    assert await rows_in_repository(state, Artifact, unique_repo) == 0


async def test_delete_by_digest_takes_accessories_and_unheld_children(
    admin: httpx.AsyncClient, state: AppState, unique_repo: str
) -> None:
    subject_digest, subject_body = await push_image(admin, unique_repo, "app")
    subject = (subject_digest, len(subject_body))
    # A referrer (OCI subject) and a cosign signature tag both belong to the subject.
    empty = await push_blob(admin, unique_repo, b"{}")
    payload = b"signature payload"
    layer = await push_blob(admin, unique_repo, payload)
    referrer = image_manifest(
        (empty, 2), [(layer, len(payload))], subject=subject, artifact_type="application/x.sig"
    )
    referrer_digest = digest_of(referrer)
    assert (
        await _put(admin, unique_repo, referrer_digest, referrer, OCI_MANIFEST)
    ).status_code == 201
    cosign_tag = "sha256-" + subject_digest.removeprefix("sha256:") + ".sig"
    cosign_digest, _ = await push_image(admin, unique_repo, cosign_tag, seed=b"cosign")
    # An index whose children are one untagged image and one tagged image.
    loose_digest, loose = await push_image(admin, unique_repo, None, seed=b"loose")
    kept_digest, kept = await push_image(admin, unique_repo, "kept", seed=b"kept")
    index = _index(OCI_INDEX, [("amd64", loose, OCI_MANIFEST), ("arm64", kept, OCI_MANIFEST)])
    index_digest = digest_of(index)
    assert (await _put(admin, unique_repo, "multi", index, OCI_INDEX)).status_code == 201
    unrelated, _ = await push_image(admin, unique_repo, "other", seed=b"other")
    assert await rows_in_repository(state, Artifact, unique_repo) == 7

    assert (await admin.delete(f"/v2/{unique_repo}/manifests/{subject_digest}")).status_code == 202
    for gone in (subject_digest, referrer_digest, cosign_digest):
        response = await admin.get(f"/v2/{unique_repo}/manifests/{gone}")
        assert response.status_code == 404, gone
        assert error_code(response) == "MANIFEST_UNKNOWN"
    referrers = await admin.get(f"/v2/{unique_repo}/referrers/{subject_digest}")
    assert referrers.json()["manifests"] == []

    assert (await admin.delete(f"/v2/{unique_repo}/manifests/{index_digest}")).status_code == 202
    assert (await admin.get(f"/v2/{unique_repo}/manifests/{loose_digest}")).status_code == 404
    for stays in (kept_digest, unrelated):
        assert (await admin.get(f"/v2/{unique_repo}/manifests/{stays}")).status_code == 200
    assert await rows_in_repository(state, Artifact, unique_repo) == 2
    tags = await admin.get(f"/v2/{unique_repo}/tags/list")
    assert tags.json()["tags"] == ["kept", "other"]


async def test_tag_moves_to_new_manifest(
    admin: httpx.AsyncClient, state: AppState, unique_repo: str
) -> None:
    first, first_body = await push_image(admin, unique_repo, "latest", seed=b"one")
    second, second_body = await push_image(admin, unique_repo, "latest", seed=b"two")
    assert first != second
    await _assert_served(admin, unique_repo, "latest", second_body, OCI_MANIFEST)
    await _assert_served(admin, unique_repo, first, first_body, OCI_MANIFEST)
    assert await rows_in_repository(state, Tag, unique_repo) == 1
    assert (await admin.get(f"/v2/{unique_repo}/tags/list")).json()["tags"] == ["latest"]


async def test_anonymous_cannot_delete_manifest(
    admin: httpx.AsyncClient, anon: httpx.AsyncClient, unique_repo: str
) -> None:
    digest, _ = await push_image(admin, unique_repo, "v1")
    for reference in ("v1", digest):
        response = await anon.delete(f"/v2/{unique_repo}/manifests/{reference}")
        assert response.status_code == 401
        assert "www-authenticate" in response.headers
    assert (await admin.get(f"/v2/{unique_repo}/manifests/v1")).status_code == 200


async def test_manifest_with_layer_listed_twice_and_foreign_layer(
    admin: httpx.AsyncClient, unique_repo: str
) -> None:
    parts = await _config_and_layer(admin, unique_repo, "dupes")
    doc = json.loads(image_manifest(parts["config"], [parts["layer"], parts["layer"]]))
    doc["layers"].append(
        {
            "mediaType": OCI_LAYER,
            "digest": digest_of(b"fetched from elsewhere"),
            "size": 22,
            "urls": ["https://example.com/layer"],
        }
    )
    body = json.dumps(doc).encode()
    response = await _put(admin, unique_repo, "dupes", body, OCI_MANIFEST)
    assert response.status_code == 201, response.text
