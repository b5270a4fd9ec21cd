"""``dockyard sign`` and ``dockyard verify`` against a registry that challenges with ``Basic``
(not the token flow): the same round trip, credentials sent directly."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from tests.support.oci_layout import make_image_layout
from tests.support.server import DockyardServer
from tests.support.skopeo import Skopeo

pytestmark = pytest.mark.e2e


def _run(server: DockyardServer, *args: str) -> subprocess.CompletedProcess[str]:
    user, password = server.admin_auth
    return subprocess.run(
        [sys.executable, "-m", "dockyard", *args, "--plain-http", "-u", user],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "DOCKYARD_PASSWORD": password},
        timeout=120,
        check=False,
    )


def test_sign_and_verify_with_basic_challenge(
    basic_server: DockyardServer, skopeo: Skopeo, tmp_path: Path
) -> None:
    project = f"sigb{uuid.uuid4().hex[:8]}"
    basic_server.create_project(project)
    image = make_image_layout(tmp_path / "img", layers=1, layer_size=512, tag="v1")
    skopeo.run(
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        basic_server.admin_creds,
        f"oci:{image.path}:v1",
        f"docker://{basic_server.registry}/{project}/app:v1",
    )
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private, public = tmp_path / "rsa.key", tmp_path / "rsa.pub"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    ref = f"{basic_server.registry}/{project}/app@{image.manifest_digest}"
    signed = _run(basic_server, "sign", "--key", str(private), "--storage", "referrer", ref)
    assert signed.returncode == 0, signed.stderr
    verified = _run(basic_server, "verify", "--key", str(public), ref)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.startswith("verified: referrer sha256:")
    # A username without a password is refused before any request.
    lonely = subprocess.run(
        [sys.executable, "-m", "dockyard", "verify", "--key", str(public), "-u", "x", ref],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
        timeout=60,
        check=False,
    )
    assert lonely.returncode != 0 and "DOCKYARD_PASSWORD" in lonely.stderr
