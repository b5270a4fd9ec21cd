"""skopeo pushes and pulls images through a real server, on SQLite and on PostgreSQL."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import httpx
import pytest
from tests.support.oci_layout import (
    MEDIA_TYPE_IMAGE_INDEX,
    MEDIA_TYPE_IMAGE_MANIFEST,
    ImageInfo,
    blob_path,
    layout_tags,
    make_image_layout,
    make_index_layout,
)
from tests.support.registry_auth import fetch_token
from tests.support.server import DockyardServer
from tests.support.skopeo import Skopeo

pytestmark = pytest.mark.e2e

INSECURE_DEST = "--dest-tls-verify=false"
INSECURE_SRC = "--src-tls-verify=false"


def push(skopeo: Skopeo, server: DockyardServer, source: str, ref: str, *extra: str) -> str:
    result = skopeo.run(
        "copy",
        *extra,
        INSECURE_DEST,
        "--dest-creds",
        server.admin_creds,
        source,
        f"docker://{server.registry}/{ref}",
    )
    return result.stderr + result.stdout


def pull(
    skopeo: Skopeo, server: DockyardServer, ref: str, dest: Path, tag: str, *extra: str
) -> None:
    skopeo.run(
        "copy",
        *extra,
        INSECURE_SRC,
        "--src-creds",
        server.admin_creds,
        f"docker://{server.registry}/{ref}",
        f"oci:{dest}:{tag}",
    )


def assert_blobs_intact(layout: Path, digests: tuple[str, ...] | list[str]) -> None:
    """Every blob is present and its bytes hash to its name."""
    for digest in digests:
        data = blob_path(layout, digest).read_bytes()
        assert "sha256:" + hashlib.sha256(data).hexdigest() == digest


def assert_same_image(pulled: Path, tag: str, image: ImageInfo) -> None:
    assert layout_tags(pulled)[tag] == image.manifest_digest
    manifest_bytes = blob_path(pulled, image.manifest_digest).read_bytes()
    assert manifest_bytes == blob_path(image.path, image.manifest_digest).read_bytes()
    manifest = json.loads(manifest_bytes)
    assert manifest["config"]["digest"] == image.config_digest
    assert [layer["digest"] for layer in manifest["layers"]] == list(image.layer_digests)
    assert_blobs_intact(pulled, image.blob_digests)
    for digest in image.blob_digests:
        assert blob_path(pulled, digest).read_bytes() == blob_path(image.path, digest).read_bytes()


def test_push_then_pull_single_image(
    skopeo: Skopeo, backend_server: DockyardServer, repo_name: str, tmp_path: Path
) -> None:
    image = make_image_layout(tmp_path / "src", layers=3, tag="v1")
    push(skopeo, backend_server, f"oci:{image.path}:v1", f"{repo_name}:v1")

    pull(skopeo, backend_server, f"{repo_name}:v1", tmp_path / "out", "v1")

    assert_same_image(tmp_path / "out", "v1", image)


def test_pull_by_digest(
    skopeo: Skopeo, backend_server: DockyardServer, repo_name: str, tmp_path: Path
) -> None:
    image = make_image_layout(tmp_path / "src", layers=1)
    push(skopeo, backend_server, f"oci:{image.path}:latest", f"{repo_name}:latest")

    pull(skopeo, backend_server, f"{repo_name}@{image.manifest_digest}", tmp_path / "out", "x")

    assert_same_image(tmp_path / "out", "x", image)


def test_multi_arch_index_round_trip(
    skopeo: Skopeo, backend_server: DockyardServer, repo_name: str, tmp_path: Path
) -> None:
    index = make_index_layout(tmp_path / "src", tag="multi")
    push(skopeo, backend_server, f"oci:{index.path}:multi", f"{repo_name}:multi", "--all")

    raw = skopeo.run(
        "inspect",
        "--raw",
        "--tls-verify=false",
        "--creds",
        backend_server.admin_creds,
        f"docker://{backend_server.registry}/{repo_name}:multi",
    ).stdout
    assert raw.encode() == blob_path(index.path, index.index_digest).read_bytes()
    assert json.loads(raw)["mediaType"] == MEDIA_TYPE_IMAGE_INDEX

    out = tmp_path / "out"
    pull(skopeo, backend_server, f"{repo_name}:multi", out, "multi", "--all")
    assert layout_tags(out)["multi"] == index.index_digest
    pulled_index = json.loads(blob_path(out, index.index_digest).read_bytes())
    assert [m["digest"] for m in pulled_index["manifests"]] == [
        image.manifest_digest for image in index.images
    ]
    for image in index.images:
        assert_blobs_intact(out, (image.manifest_digest, *image.blob_digests))


def test_pull_one_platform_of_an_index(
    skopeo: Skopeo, backend_server: DockyardServer, repo_name: str, tmp_path: Path
) -> None:
    index = make_index_layout(tmp_path / "src", tag="multi")
    push(skopeo, backend_server, f"oci:{index.path}:multi", f"{repo_name}:multi", "--all")
    arm64 = next(image for image in index.images if image.platform[1] == "arm64")

    out = tmp_path / "out"
    pull(
        skopeo,
        backend_server,
        f"{repo_name}:multi",
        out,
        "arm",
        "--override-os",
        "linux",
        "--override-arch",
        "arm64",
        "--override-variant",
        "v8",
    )

    assert layout_tags(out)["arm"] == arm64.manifest_digest
    assert_blobs_intact(out, arm64.blob_digests)


def test_image_with_many_layers(
    skopeo: Skopeo, backend_server: DockyardServer, repo_name: str, tmp_path: Path
) -> None:
    image = make_image_layout(tmp_path / "src", layers=40, layer_size=4096)
    push(skopeo, backend_server, f"oci:{image.path}:latest", f"{repo_name}:latest")

    pull(skopeo, backend_server, f"{repo_name}:latest", tmp_path / "out", "latest")

    assert len(image.layer_digests) == 40
    assert_same_image(tmp_path / "out", "latest", image)


def test_larger_layers(
    skopeo: Skopeo, backend_server: DockyardServer, repo_name: str, tmp_path: Path
) -> None:
    # big enough that clients and server stream in many chunks
    image = make_image_layout(tmp_path / "src", layers=2, layer_size=12 * 1024 * 1024, tag="big")
    push(skopeo, backend_server, f"oci:{image.path}:big", f"{repo_name}:big")

    pull(skopeo, backend_server, f"{repo_name}:big", tmp_path / "out", "big")

    assert_same_image(tmp_path / "out", "big", image)


def test_second_repository_reuses_blobs(
    skopeo: Skopeo, backend_server: DockyardServer, repo_name: str, tmp_path: Path
) -> None:
    image = make_image_layout(tmp_path / "src", layers=3)
    push(skopeo, backend_server, f"oci:{image.path}:latest", f"{repo_name}-a:1")
    log_offset = backend_server.log_offset()

    push(skopeo, backend_server, f"oci:{image.path}:latest", f"{repo_name}-b:1")

    # skopeo remembers where it pushed the layers and mounts them (POST ?mount=&from= -> 201)
    # instead of uploading them again; the access log shows which it did
    log = backend_server.output_since(log_offset)
    mounts = re.findall(rf'"POST /v2/{re.escape(repo_name)}-b/blobs/uploads/\S*" 201', log)
    assert len(mounts) >= len(image.layer_digests), log
    pull(skopeo, backend_server, f"{repo_name}-b:1", tmp_path / "out", "1")
    assert_same_image(tmp_path / "out", "1", image)


def test_cross_repository_mount_over_http(
    skopeo: Skopeo, backend_server: DockyardServer, repo_name: str, tmp_path: Path
) -> None:
    image = make_image_layout(tmp_path / "src", layers=1)
    source, target = f"{repo_name}-a", f"{repo_name}-b"
    push(skopeo, backend_server, f"oci:{image.path}:latest", f"{source}:1")
    layer = image.layer_digests[0]

    def bearer(*scopes: str) -> dict[str, str]:
        response = fetch_token(
            backend_server.url, list(scopes), credentials=backend_server.admin_auth
        )
        assert response.status_code == 200, response.text
        return {"Authorization": f"Bearer {response.json()['token']}"}

    # as docker does: a token for pushing to the target and pulling from the source
    both = bearer(f"repository:{target}:pull,push", f"repository:{source}:pull")
    # a token without pull on the source must not be able to mount from it
    target_only = bearer(f"repository:{target}:pull,push")
    mount = {"mount": layer, "from": source}
    with httpx.Client(base_url=backend_server.url, timeout=60) as client:
        before = client.head(f"/v2/{target}/blobs/{layer}", headers=both)
        refused = client.post(f"/v2/{target}/blobs/uploads/", params=mount, headers=target_only)
        still_missing = client.head(f"/v2/{target}/blobs/{layer}", headers=both)
        mounted = client.post(f"/v2/{target}/blobs/uploads/", params=mount, headers=both)
        after = client.get(f"/v2/{target}/blobs/{layer}", headers=both)

    assert before.status_code == 404
    assert refused.status_code == 202, refused.text  # an ordinary upload session instead
    assert refused.headers["location"]
    assert still_missing.status_code == 404
    assert mounted.status_code == 201, mounted.text
    assert mounted.headers["docker-content-digest"] == layer
    assert mounted.headers["location"].endswith(f"/v2/{target}/blobs/{layer}")
    assert after.status_code == 200
    assert after.content == blob_path(image.path, layer).read_bytes()


def test_inspect_raw_and_list_tags(
    skopeo: Skopeo, backend_server: DockyardServer, repo_name: str, tmp_path: Path
) -> None:
    image = make_image_layout(tmp_path / "src", layers=2)
    for tag in ("v2", "v1", "latest"):
        push(skopeo, backend_server, f"oci:{image.path}:latest", f"{repo_name}:{tag}")
    creds = ("--tls-verify=false", "--creds", backend_server.admin_creds)
    ref = f"docker://{backend_server.registry}/{repo_name}"

    raw = skopeo.run("inspect", "--raw", *creds, f"{ref}:v1").stdout
    info = skopeo.json("inspect", *creds, f"{ref}:v2")
    tags = skopeo.json("list-tags", *creds, ref)

    assert raw.encode() == blob_path(image.path, image.manifest_digest).read_bytes()
    assert json.loads(raw)["mediaType"] == MEDIA_TYPE_IMAGE_MANIFEST
    assert info["Digest"] == image.manifest_digest
    assert info["Layers"] == list(image.layer_digests)
    assert (info["Os"], info["Architecture"]) == ("linux", "amd64")
    assert tags["Repository"] == f"{backend_server.registry}/{repo_name}"
    assert sorted(tags["Tags"]) == ["latest", "v1", "v2"]


def test_delete_by_digest(
    skopeo: Skopeo, backend_server: DockyardServer, repo_name: str, tmp_path: Path
) -> None:
    image = make_image_layout(tmp_path / "src", layers=1)
    push(skopeo, backend_server, f"oci:{image.path}:latest", f"{repo_name}:doomed")
    creds = ("--tls-verify=false", "--creds", backend_server.admin_creds)
    ref = f"docker://{backend_server.registry}/{repo_name}"

    skopeo.run("delete", *creds, f"{ref}@{image.manifest_digest}")

    gone = skopeo.run("inspect", "--raw", *creds, f"{ref}@{image.manifest_digest}", check=False)
    assert gone.returncode != 0
    assert "manifest unknown" in gone.stderr.lower(), gone.stderr
    with backend_server.client() as client:
        by_digest = client.get(
            f"/v2/{repo_name}/manifests/{image.manifest_digest}",
            headers={"Accept": MEDIA_TYPE_IMAGE_MANIFEST},
        )
        by_tag = client.get(
            f"/v2/{repo_name}/manifests/doomed", headers={"Accept": MEDIA_TYPE_IMAGE_MANIFEST}
        )
    assert by_digest.status_code == 404
    assert by_digest.json()["errors"][0]["code"] == "MANIFEST_UNKNOWN"
    assert by_tag.status_code == 404
    assert by_tag.json()["errors"][0]["code"] == "MANIFEST_UNKNOWN"


def test_data_survives_a_restart(
    skopeo: Skopeo, backend_server: DockyardServer, repo_name: str, tmp_path: Path
) -> None:
    image = make_image_layout(tmp_path / "src", layers=2)
    push(skopeo, backend_server, f"oci:{image.path}:latest", f"{repo_name}:kept")

    backend_server.restart()

    pull(skopeo, backend_server, f"{repo_name}:kept", tmp_path / "out", "kept")
    assert_same_image(tmp_path / "out", "kept", image)
