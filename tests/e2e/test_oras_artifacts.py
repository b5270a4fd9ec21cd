"""OCI artifacts with the oras Python SDK: push, pull, subject and the referrers API."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import oras.oci
import oras.provider
import pytest
import requests
from tests.support.server import DockyardServer

pytestmark = pytest.mark.e2e

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"
EMPTY = "application/vnd.oci.empty.v1+json"
EMPTY_DIGEST = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"

FILE_TYPE = "application/vnd.dockyard.test.file.v1"
CONFIG_TYPE = "application/vnd.dockyard.test.config.v1+json"
SIGNATURE_CONFIG_TYPE = "application/vnd.dockyard.test.signature.config.v1+json"
SBOM_TYPE = "application/vnd.dockyard.test.sbom.v1+json"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Oras:
    """An oras-py client logged in as admin, and the docker config file that holds the login."""

    registry: oras.provider.Registry
    server: DockyardServer
    docker_config: Path

    def target(self, ref: str) -> str:
        return f"{self.server.registry}/{ref}"

    def url(self, path: str) -> str:
        return f"http://{self.server.registry}{path}"

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        response: requests.Response = self.registry.do_request(self.url(path), method, **kwargs)
        return response


@pytest.fixture
def client(server: DockyardServer, tmp_path: Path) -> Oras:
    docker_config = tmp_path / "docker-config.json"
    registry = oras.provider.Registry(hostname=server.registry, insecure=True)
    registry.login(
        username="admin",
        password=server.admin_password,
        hostname=server.registry,
        config_path=str(docker_config),
    )
    assert server.registry in json.loads(docker_config.read_text())["auths"]
    return Oras(registry=registry, server=server, docker_config=docker_config)


def push_file_artifact(client: Oras, tmp_path: Path, ref: str) -> tuple[requests.Response, bytes]:
    payload = os.urandom(50_000) + b"dockyard"
    artifact = tmp_path / "payload.bin"
    artifact.write_bytes(payload)
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"purpose": "e2e"}))
    response = client.registry.push(
        target=client.target(ref),
        files=[f"{artifact}:{FILE_TYPE}"],
        manifest_config=f"{config}:{CONFIG_TYPE}",
        manifest_annotations={"org.opencontainers.image.description": "an e2e artifact"},
        disable_path_validation=True,
        config_path=str(client.docker_config),
        quiet=True,
    )
    return response, payload


def test_push_and_pull_a_file_artifact(client: Oras, repo_name: str, tmp_path: Path) -> None:
    pushed, payload = push_file_artifact(client, tmp_path, f"{repo_name}:v1")

    assert pushed.status_code == 201, pushed.text
    digest = pushed.headers["Docker-Content-Digest"]
    files = client.registry.pull(
        target=client.target(f"{repo_name}:v1"),
        outdir=str(tmp_path / "pulled"),
        config_path=str(client.docker_config),
    )

    assert [Path(f).name for f in files] == ["payload.bin"]
    assert Path(files[0]).read_bytes() == payload
    manifest = client.registry.get_manifest(client.target(f"{repo_name}@{digest}"))
    assert manifest["config"]["mediaType"] == CONFIG_TYPE
    assert manifest["layers"][0]["mediaType"] == FILE_TYPE
    assert manifest["layers"][0]["digest"] == sha256(payload)
    assert manifest["annotations"] == {"org.opencontainers.image.description": "an e2e artifact"}
    raw = client.request("GET", f"/v2/{repo_name}/manifests/v1", headers={"Accept": MANIFEST})
    assert raw.status_code == 200
    assert sha256(raw.content) == digest
    assert raw.headers["Content-Type"] == MANIFEST


def test_chunked_upload_of_a_larger_file(client: Oras, repo_name: str, tmp_path: Path) -> None:
    payload = os.urandom(3 * 1024 * 1024 + 12345)
    artifact = tmp_path / "big.bin"
    artifact.write_bytes(payload)

    pushed = client.registry.push(
        target=client.target(f"{repo_name}:chunked"),
        files=[f"{artifact}:{FILE_TYPE}"],
        disable_path_validation=True,
        do_chunked=True,
        chunk_size=1024 * 1024,
        config_path=str(client.docker_config),
        quiet=True,
    )
    assert pushed.status_code == 201, pushed.text
    files = client.registry.pull(
        target=client.target(f"{repo_name}:chunked"),
        outdir=str(tmp_path / "pulled"),
        config_path=str(client.docker_config),
    )

    assert Path(files[0]).read_bytes() == payload
    blob = client.request("GET", f"/v2/{repo_name}/blobs/{sha256(payload)}")
    assert blob.status_code == 200
    assert blob.content == payload
    assert blob.headers["Docker-Content-Digest"] == sha256(payload)


def put_manifest_by_digest(client: Oras, repo: str, manifest: dict[str, Any]) -> requests.Response:
    body = json.dumps(manifest, separators=(",", ":")).encode()
    return client.request(
        "PUT",
        f"/v2/{repo}/manifests/{sha256(body)}",
        data=body,
        headers={"Content-Type": MANIFEST},
    )


def upload_blob(
    client: Oras, tmp_path: Path, repo: str, data: bytes, media_type: str
) -> dict[str, Any]:
    path = tmp_path / f"blob-{sha256(data)[7:19]}"
    path.write_bytes(data)
    descriptor = {"mediaType": media_type, "digest": sha256(data), "size": len(data)}
    response = client.registry.upload_blob(str(path), client.target(repo), descriptor)
    assert response.status_code in (200, 201), response.text
    return descriptor


def test_referrers(client: Oras, repo_name: str, tmp_path: Path) -> None:
    subject_response, _ = push_file_artifact(client, tmp_path, f"{repo_name}:v1")
    assert subject_response.status_code == 201, subject_response.text
    subject_digest = subject_response.headers["Docker-Content-Digest"]
    subject_bytes = client.request(
        "GET", f"/v2/{repo_name}/manifests/{subject_digest}", headers={"Accept": MANIFEST}
    ).content
    subject = {"mediaType": MANIFEST, "digest": subject_digest, "size": len(subject_bytes)}

    # 1. a signature-like artifact through oras-py's own subject support (artifact type taken
    #    from its config media type, as OCI 1.1 says for manifests without artifactType)
    signature = tmp_path / "sig"
    signature.mkdir()
    (signature / "signature.txt").write_bytes(b"signed: " + subject_digest.encode())
    signature_config = signature / "config.json"
    signature_config.write_text("{}")
    signed = client.registry.push(
        target=client.target(f"{repo_name}:signature"),
        files=[f"{signature / 'signature.txt'}:text/plain"],
        manifest_config=f"{signature_config}:{SIGNATURE_CONFIG_TYPE}",
        subject=oras.oci.Subject(**subject),
        disable_path_validation=True,
        config_path=str(client.docker_config),
        quiet=True,
    )
    assert signed.status_code == 201, signed.text
    assert signed.headers.get("OCI-Subject") == subject_digest
    signature_digest = signed.headers["Docker-Content-Digest"]

    # 2. an SBOM built by hand: artifactType, the empty config, pushed by digest
    empty = upload_blob(client, tmp_path, repo_name, b"{}", EMPTY)
    assert empty["digest"] == EMPTY_DIGEST
    sbom_layer = upload_blob(
        client, tmp_path, repo_name, json.dumps({"packages": []}).encode(), SBOM_TYPE
    )
    sbom_manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "artifactType": SBOM_TYPE,
        "config": empty,
        "layers": [sbom_layer],
        "subject": subject,
        "annotations": {"org.opencontainers.image.created": "2026-01-01T00:00:00Z"},
    }
    sbom = put_manifest_by_digest(client, repo_name, sbom_manifest)
    assert sbom.status_code == 201, sbom.text
    assert sbom.headers.get("OCI-Subject") == subject_digest
    sbom_digest = sbom.headers["Docker-Content-Digest"]
    assert sbom_digest == sha256(json.dumps(sbom_manifest, separators=(",", ":")).encode())

    # every referrer
    listed = client.request("GET", f"/v2/{repo_name}/referrers/{subject_digest}")
    assert listed.status_code == 200, listed.text
    assert listed.headers["Content-Type"].split(";")[0] == INDEX
    assert "OCI-Filters-Applied" not in listed.headers
    index = listed.json()
    assert index["schemaVersion"] == 2
    assert index["mediaType"] == INDEX
    by_digest = {entry["digest"]: entry for entry in index["manifests"]}
    assert set(by_digest) == {signature_digest, sbom_digest}
    assert by_digest[signature_digest]["artifactType"] == SIGNATURE_CONFIG_TYPE
    assert by_digest[sbom_digest]["artifactType"] == SBOM_TYPE
    assert by_digest[sbom_digest]["annotations"] == sbom_manifest["annotations"]
    for entry in index["manifests"]:
        assert entry["mediaType"] == MANIFEST
        body = client.request(
            "GET", f"/v2/{repo_name}/manifests/{entry['digest']}", headers={"Accept": MANIFEST}
        ).content
        assert entry["size"] == len(body)

    # filtered by artifactType
    filtered = client.request(
        "GET",
        f"/v2/{repo_name}/referrers/{subject_digest}?artifactType={quote(SBOM_TYPE, safe='')}",
    )
    assert filtered.status_code == 200, filtered.text
    assert filtered.headers.get("OCI-Filters-Applied") == "artifactType"
    assert [entry["digest"] for entry in filtered.json()["manifests"]] == [sbom_digest]

    # a digest nothing refers to: an empty index, not an error
    nothing = client.request("GET", f"/v2/{repo_name}/referrers/{sha256(b'nothing')}")
    assert nothing.status_code == 200, nothing.text
    assert nothing.json()["manifests"] == []


def test_deleting_a_referrer_removes_it_from_the_list(
    client: Oras, repo_name: str, tmp_path: Path
) -> None:
    subject_response, _ = push_file_artifact(client, tmp_path, f"{repo_name}:v1")
    subject_digest = subject_response.headers["Docker-Content-Digest"]
    size = len(
        client.request(
            "GET", f"/v2/{repo_name}/manifests/{subject_digest}", headers={"Accept": MANIFEST}
        ).content
    )
    empty = upload_blob(client, tmp_path, repo_name, b"{}", EMPTY)
    note = {
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "artifactType": "application/vnd.dockyard.test.note",
        "config": empty,
        "layers": [empty],
        "subject": {"mediaType": MANIFEST, "digest": subject_digest, "size": size},
    }
    put = put_manifest_by_digest(client, repo_name, note)
    assert put.status_code == 201, put.text
    note_digest = put.headers["Docker-Content-Digest"]
    before = client.request("GET", f"/v2/{repo_name}/referrers/{subject_digest}").json()

    # oras-py keeps answering challenges with the token it has, which lacks "delete"; a
    # client that asks for the challenged scope (as docker and skopeo do) is used instead
    with client.server.client() as admin:
        deleted = admin.delete(f"/v2/{repo_name}/manifests/{note_digest}")
    after = client.request("GET", f"/v2/{repo_name}/referrers/{subject_digest}").json()

    assert [entry["digest"] for entry in before["manifests"]] == [note_digest]
    assert deleted.status_code == 202, deleted.text
    assert after["manifests"] == []
