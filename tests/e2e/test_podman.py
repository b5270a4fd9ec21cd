"""podman (Debian's) logs in, pushes and pulls through a real server.

podman is a different client from skopeo in the ways that matter here: ``podman login``
stores credentials and checks them against ``/v2/`` first, and ``push --format v2s2``
converts an OCI image to a Docker schema 2 manifest on the way.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from tests.support.oci_layout import make_image_layout
from tests.support.podman import Podman
from tests.support.server import DockyardServer

pytestmark = pytest.mark.e2e

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
TLS = "--tls-verify=false"


def _image_id(podman: Podman, reference: str) -> str:
    return podman.run("image", "inspect", "--format", "{{.Id}}", reference).stdout.strip()


def test_login_push_both_formats_pull_and_anonymous_rules(
    server: DockyardServer, podman: Podman, tmp_path: Path
) -> None:
    layout = tmp_path / "source"
    make_image_layout(layout, layers=2, layer_size=32 * 1024, tag="1")
    source_id = podman.pull(f"oci:{layout}:1")
    podman.run("tag", source_id, "localhost/podman-source:1")
    name = f"podman-{uuid.uuid4().hex[:8]}"
    target = f"{server.registry}/library/{name}"

    refused = podman.run(
        "login", TLS, "-u", "admin", "-p", "not-the-password", server.registry, check=False
    )
    assert refused.returncode != 0
    podman.run("login", TLS, "-u", "admin", "-p", server.admin_password, server.registry)
    podman.run("push", TLS, "--format", "v2s2", "localhost/podman-source:1", f"{target}:v2s2")
    podman.run("push", TLS, "--format", "oci", "localhost/podman-source:1", f"{target}:oci")

    with server.client() as client:
        response = client.get(f"/api/v2.0/projects/library/repositories/{name}/artifacts")
    assert response.status_code == 200, response.text
    kinds = {
        tag["name"]: artifact["manifest_media_type"]
        for artifact in response.json()
        for tag in artifact["tags"] or []
    }
    assert kinds == {"v2s2": DOCKER_MANIFEST, "oci": OCI_MANIFEST}

    # Pulled back, both are the image that went in (the id is the config's digest).
    podman.run("rmi", "-a", "-f")
    for tag in ("v2s2", "oci"):
        podman.pull(f"{target}:{tag}", TLS)
        assert _image_id(podman, f"{target}:{tag}") == source_id

    # Signed out: pulling from the public project still works, pushing never does.
    podman.run("logout", server.registry)
    podman.run("rmi", "-a", "-f")
    podman.pull(f"{target}:oci", TLS)
    denied = podman.run("push", TLS, f"{target}:oci", f"{target}:anonymous", check=False)
    assert denied.returncode != 0
    assert "unauthorized" in denied.stderr.lower() or "authentication" in denied.stderr.lower()
    with server.client() as client:
        assert client.get(f"/v2/library/{name}/manifests/anonymous").status_code == 404
