"""``dockyard sign`` and ``dockyard verify`` against a real server on both databases: skopeo
pushes an image, the CLI signs it in both storage forms, verifies it with the right key and
refuses a foreign one, and the artifact API lists the signature as a cosign accessory."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from tests.support.oci_layout import ImageInfo, make_image_layout
from tests.support.server import DockyardServer
from tests.support.skopeo import Skopeo

pytestmark = pytest.mark.e2e


def _write_key(
    directory: Path, name: str, key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
) -> tuple[Path, Path]:
    private = directory / f"{name}.key"
    public = directory / f"{name}.pub"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"key-secret"),
        )
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    directory = tmp_path_factory.mktemp("keys")
    return {
        "ecdsa": _write_key(directory, "ecdsa", ec.generate_private_key(ec.SECP256R1())),
        "ed25519": _write_key(directory, "ed25519", ed25519.Ed25519PrivateKey.generate()),
        "foreign": _write_key(directory, "foreign", ec.generate_private_key(ec.SECP384R1())),
    }


@pytest.fixture(scope="module")
def pushed(
    backend_server: DockyardServer, skopeo: Skopeo, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, ImageInfo]:
    project = f"sig{uuid.uuid4().hex[:8]}"
    backend_server.create_project(project)
    image = make_image_layout(tmp_path_factory.mktemp("img"), layers=1, layer_size=1024, tag="1.0")
    skopeo.run(
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        backend_server.admin_creds,
        f"oci:{image.path}:1.0",
        f"docker://{backend_server.registry}/{project}/app:1.0",
    )
    return f"{project}/app", image


def _dockyard(server: DockyardServer, *args: str) -> subprocess.CompletedProcess[str]:
    user, password = server.admin_auth
    env = {
        "PATH": "/usr/bin:/bin",
        "DOCKYARD_USERNAME": user,
        "DOCKYARD_PASSWORD": password,
        "DOCKYARD_KEY_PASSWORD": "key-secret",
    }
    return subprocess.run(
        [sys.executable, "-m", "dockyard", *args, "--plain-http"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_sign_then_verify_in_both_storage_forms(
    backend_server: DockyardServer,
    pushed: tuple[str, ImageInfo],
    keys: dict[str, tuple[Path, Path]],
) -> None:
    repo, image = pushed
    by_tag = f"{backend_server.registry}/{repo}:1.0"
    by_digest = f"{backend_server.registry}/{repo}@{image.manifest_digest}"

    nothing = _dockyard(backend_server, "verify", "--key", str(keys["ecdsa"][1]), by_tag)
    assert nothing.returncode == 1, nothing.stderr
    assert "no cosign signature found" in nothing.stdout

    signed = _dockyard(backend_server, "sign", "--key", str(keys["ecdsa"][0]), by_tag)
    assert signed.returncode == 0, signed.stderr
    tag = f"sha256-{image.manifest_digest.split(':')[1]}.sig"
    assert tag in signed.stdout
    assert "signing" in signed.stderr  # progress goes to stderr

    # Signing again with the same key appends nothing; another key appends a layer.
    again = _dockyard(backend_server, "sign", "--key", str(keys["ecdsa"][0]), by_digest)
    assert again.returncode == 0 and "already signed" in again.stdout
    second = _dockyard(
        backend_server, "sign", "--key", str(keys["ed25519"][0]), "--storage", "referrer", by_digest
    )
    assert second.returncode == 0, second.stderr
    assert "referrer" in second.stdout

    with backend_server.client() as client:
        sig = client.get(
            f"/v2/{repo}/manifests/{tag}",
            headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
        )
        assert sig.status_code == 200
        manifest = sig.json()
        assert [layer["mediaType"] for layer in manifest["layers"]] == [
            "application/vnd.dev.cosign.simplesigning.v1+json"
        ]
        assert "dev.cosignproject.cosign/signature" in manifest["layers"][0]["annotations"]

        project, name = repo.split("/", 1)
        listed = httpx.get(
            f"{backend_server.url}/api/v2.0/projects/{project}/repositories/{name}/artifacts",
            params={"with_accessory": "true"},
            auth=backend_server.admin_auth,
            timeout=30,
        )
        assert listed.status_code == 200, listed.text
        [artifact] = [a for a in listed.json() if a["digest"] == image.manifest_digest]
        kinds = sorted(a["type"] for a in artifact["accessories"])
        assert kinds == ["signature.cosign", "signature.cosign"]

    for name in ("ecdsa", "ed25519"):
        ok = _dockyard(backend_server, "verify", "--key", str(keys[name][1]), by_tag)
        assert ok.returncode == 0, ok.stdout + ok.stderr
        assert "verified: " in ok.stdout

    foreign = _dockyard(backend_server, "verify", "--key", str(keys["foreign"][1]), by_tag)
    assert foreign.returncode == 1
    assert "NOT verified" in foreign.stdout
    assert "does not verify with any of the 1 trusted cosign keys" in foreign.stdout


def test_errors_say_what_to_do(
    backend_server: DockyardServer,
    pushed: tuple[str, ImageInfo],
    keys: dict[str, tuple[Path, Path]],
) -> None:
    repo, _ = pushed
    missing = _dockyard(
        backend_server,
        "sign",
        "--key",
        str(keys["ecdsa"][0]),
        f"{backend_server.registry}/{repo}:nope",
    )
    assert missing.returncode == 1
    assert "push it first" in missing.stderr

    no_host = _dockyard(backend_server, "verify", "--key", str(keys["ecdsa"][1]), "library/app:1")
    assert no_host.returncode != 0 and "registry host" in no_host.stderr

    public_as_private = _dockyard(
        backend_server,
        "sign",
        "--key",
        str(keys["ecdsa"][1]),
        f"{backend_server.registry}/{repo}:1.0",
    )
    assert public_as_private.returncode != 0 and "not a PEM private key" in public_as_private.stderr

    user, _ = backend_server.admin_auth
    wrong = subprocess.run(
        [
            sys.executable,
            "-m",
            "dockyard",
            "sign",
            "--key",
            str(keys["ecdsa"][0]),
            "--plain-http",
            f"{backend_server.registry}/{repo}:1.0",
        ],
        capture_output=True,
        text=True,
        env={
            "PATH": "/usr/bin:/bin",
            "DOCKYARD_USERNAME": user,
            "DOCKYARD_PASSWORD": "wrong",
            "DOCKYARD_KEY_PASSWORD": "key-secret",
        },
        timeout=120,
        check=False,
    )
    assert wrong.returncode == 1
    assert "DOCKYARD_PASSWORD" in wrong.stderr
