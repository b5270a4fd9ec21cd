"""Content trust through a real server with skopeo (issue 22), SQLite and PostgreSQL.

skopeo pushes an image; with ``enable_content_trust_cosign`` on, skopeo's pull and a plain
HTTP GET are refused with Harbor's ``412 PROJECTPOLICYVIOLATION``; a cosign signature
(made with ``cryptography`` in cosign's tag-scheme format, ``tests/support/cosign_sign.py``)
lets it through; once the project trusts keys, a signature for another digest or by a key
it does not trust does not, and one by its key does; deleting the signature refuses the pull again.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from tests.support import cosign_sign
from tests.support.oci_layout import make_image_layout
from tests.support.server import DockyardServer
from tests.support.skopeo import Skopeo

pytestmark = pytest.mark.e2e

API = "/api/v2.0"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def _push_blob(client: httpx.Client, repo: str, data: bytes) -> None:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    response = client.post(f"/v2/{repo}/blobs/uploads/", params={"digest": digest}, content=data)
    assert response.status_code == 201, response.text


def _push_signature(
    client: httpx.Client, repo: str, subject: str, signature: cosign_sign.CosignSignature
) -> None:
    _push_blob(client, repo, signature.config)
    _push_blob(client, repo, signature.payload)
    response = client.put(
        f"/v2/{repo}/manifests/{cosign_sign.signature_tag(subject)}",
        content=signature.manifest,
        headers={"Content-Type": OCI_MANIFEST},
    )
    assert response.status_code == 201, response.text


def _pull(skopeo: Skopeo, server: DockyardServer, ref: str, out: Path) -> tuple[bool, str]:
    result = skopeo.run(
        "copy",
        "--src-tls-verify=false",
        "--src-creds",
        server.admin_creds,
        f"docker://{server.registry}/{ref}",
        f"oci:{out}:x",
        check=False,
    )
    return result.returncode == 0, result.stderr


def test_skopeo_pull_needs_a_signature(
    backend_server: DockyardServer, skopeo: Skopeo, tmp_path: Path
) -> None:
    server = backend_server
    project = f"ct{uuid.uuid4().hex[:10]}"
    repo = f"{project}/app"
    with httpx.Client(base_url=server.url, auth=server.admin_auth, timeout=60) as api:
        _scenario(api, server, skopeo, tmp_path, project, repo)


def _scenario(
    api: httpx.Client,
    server: DockyardServer,
    skopeo: Skopeo,
    tmp_path: Path,
    project: str,
    repo: str,
) -> None:
    created = api.post(
        f"{API}/projects",
        json={
            "project_name": project,
            "metadata": {"public": "false", "enable_content_trust_cosign": "true"},
        },
    )
    assert created.status_code == 201, created.text
    image = make_image_layout(tmp_path / "src", layers=2, layer_size=4096, tag="1.0")
    skopeo.run(
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        server.admin_creds,
        f"oci:{image.path}:1.0",
        f"docker://{server.registry}/{repo}:1.0",
    )
    digest = image.manifest_digest

    ok, stderr = _pull(skopeo, server, f"{repo}:1.0", tmp_path / "refused")
    assert not ok and "not signed by cosign" in stderr, stderr
    refused = api.get(f"/v2/{repo}/manifests/1.0")
    assert refused.status_code == 412
    assert refused.json()["errors"][0]["code"] == "PROJECTPOLICYVIOLATION"

    # A signature that names another digest does not count once keys are set; without
    # keys, Harbor's rule only asks that a signature exists.
    trusted, stranger = cosign_sign.new_key(), cosign_sign.new_key()
    _push_signature(api, repo, digest, cosign_sign.sign(stranger, repo, digest))
    ok, stderr = _pull(skopeo, server, f"{repo}:1.0", tmp_path / "signed")
    assert ok, stderr

    key = api.post(
        f"{API}/projects/{project}/trusted-keys",
        json={"kind": "cosign", "pem": cosign_sign.public_pem(trusted)},
    )
    assert key.status_code == 201, key.text
    ok, stderr = _pull(skopeo, server, f"{repo}:1.0", tmp_path / "untrusted")
    assert not ok and "with a key the project trusts" in stderr, stderr
    other = "sha256:" + "0" * 64
    _push_signature(api, repo, digest, cosign_sign.sign(trusted, repo, other, nonce="x"))
    assert api.get(f"/v2/{repo}/manifests/{digest}").status_code == 412

    _push_signature(api, repo, digest, cosign_sign.sign(trusted, repo, digest, nonce="ok"))
    ok, stderr = _pull(skopeo, server, f"{repo}:1.0", tmp_path / "trusted")
    assert ok, stderr

    status = api.get(f"{API}/projects/{project}/repositories/app/artifacts/{digest}/signatures")
    assert status.status_code == 200, status.text
    assert len(status.json()) == 3
    assert [s["verified"] for s in status.json()].count(True) == 1, status.text

    # Deleting the project's keys goes back to Harbor's rule; deleting the signatures
    # refuses the pull again.
    assert api.delete(key.headers["location"]).status_code == 200
    assert api.get(f"/v2/{repo}/manifests/1.0").status_code == 200
    for signature in status.json():
        gone = api.delete(f"/v2/{repo}/manifests/{signature['digest']}")
        assert gone.status_code == 202, gone.text
    ok, stderr = _pull(skopeo, server, f"{repo}:1.0", tmp_path / "again")
    assert not ok and "not signed by cosign" in stderr, stderr


def test_dockyard_sign_makes_an_image_pullable(
    backend_server: DockyardServer, skopeo: Skopeo, tmp_path: Path
) -> None:
    """``dockyard sign`` (the other half of issue 22) signs an image; with the project's
    key trusted and content trust on, skopeo pulls it, and an unsigned neighbour is refused."""
    server = backend_server
    project = f"ds{uuid.uuid4().hex[:10]}"
    repo = f"{project}/app"
    key = cosign_sign.new_key()
    key_file = tmp_path / "key.pem"
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with httpx.Client(base_url=server.url, auth=server.admin_auth, timeout=60) as api:
        created = api.post(f"{API}/projects", json={"project_name": project})
        assert created.status_code == 201, created.text
        for tag, seed in (("1.0", 1), ("2.0", 2)):
            image = make_image_layout(tmp_path / tag, layers=1, layer_size=2048, seed=seed, tag=tag)
            skopeo.run(
                "copy",
                "--dest-tls-verify=false",
                "--dest-creds",
                server.admin_creds,
                f"oci:{image.path}:{tag}",
                f"docker://{server.registry}/{repo}:{tag}",
            )
        user, password = server.admin_auth
        signed = subprocess.run(
            [
                sys.executable,
                "-m",
                "dockyard",
                "sign",
                "--key",
                str(key_file),
                f"{server.registry}/{repo}:1.0",
                "--plain-http",
            ],
            capture_output=True,
            text=True,
            env={"PATH": "/usr/bin:/bin", "DOCKYARD_USERNAME": user, "DOCKYARD_PASSWORD": password},
            timeout=120,
            check=False,
        )
        assert signed.returncode == 0, signed.stderr
        trusted = api.post(
            f"{API}/projects/{project}/trusted-keys",
            json={"kind": "cosign", "pem": cosign_sign.public_pem(key)},
        )
        assert trusted.status_code == 201, trusted.text
        switched = api.put(
            f"{API}/projects/{project}", json={"metadata": {"enable_content_trust_cosign": "true"}}
        )
        assert switched.status_code == 200, switched.text
    ok, stderr = _pull(skopeo, server, f"{repo}:1.0", tmp_path / "signed")
    assert ok, stderr
    ok, stderr = _pull(skopeo, server, f"{repo}:2.0", tmp_path / "unsigned")
    assert not ok and "not signed by cosign" in stderr, stderr
    # With content trust already on, dockyard sign still reads the unsigned manifest it signs
    # (it names itself as a signer, as Harbor lets cosign), and the image becomes pullable.
    late = subprocess.run(
        [
            *(sys.executable, "-m", "dockyard", "sign", "--key", str(key_file)),
            *("--plain-http", f"{server.registry}/{repo}:2.0"),
        ],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "DOCKYARD_USERNAME": user, "DOCKYARD_PASSWORD": password},
        timeout=120,
        check=False,
    )
    assert late.returncode == 0, late.stderr
    ok, stderr = _pull(skopeo, server, f"{repo}:2.0", tmp_path / "signed-later")
    assert ok, stderr
