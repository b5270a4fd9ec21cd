"""Robot accounts driven by skopeo against a real server: push and pull with a robot's secret."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.support.oci_layout import ImageInfo, blob_path, layout_tags, make_image_layout
from tests.support.server import DockyardServer
from tests.support.skopeo import Skopeo

pytestmark = pytest.mark.e2e

NO_TLS_DEST = "--dest-tls-verify=false"
NO_TLS_SRC = "--src-tls-verify=false"


def _access(*actions: str) -> list[dict[str, str]]:
    return [{"resource": "repository", "action": a, "effect": "allow"} for a in actions]


def _create_robot(server: DockyardServer, body: dict[str, Any]) -> str:
    """Create a robot as admin; returns ``name:secret`` as skopeo's ``--creds`` takes it."""
    response = httpx.post(
        f"{server.url}/api/v2.0/robots", json=body, auth=server.admin_auth, timeout=30
    )
    assert response.status_code == 201, response.text
    created = response.json()
    return f"{created['name']}:{created['secret']}"


def _project_robot(server: DockyardServer, project: str, *actions: str) -> str:
    return _create_robot(
        server,
        {
            "name": f"ci{uuid.uuid4().hex[:8]}",
            "level": "project",
            "duration": -1,
            "permissions": [{"kind": "project", "namespace": project, "access": _access(*actions)}],
        },
    )


def _private_project(server: DockyardServer) -> str:
    project = f"robots{uuid.uuid4().hex[:8]}"
    server.create_project(project)
    return project


def _push(skopeo: Skopeo, server: DockyardServer, image: ImageInfo, ref: str, creds: str) -> Any:
    return skopeo.run(
        "copy",
        NO_TLS_DEST,
        "--dest-creds",
        creds,
        f"oci:{image.path}:{image.tag}",
        f"docker://{server.registry}/{ref}",
        check=False,
    )


def _pull(skopeo: Skopeo, server: DockyardServer, ref: str, out: Path, creds: str) -> Any:
    return skopeo.run(
        "copy",
        NO_TLS_SRC,
        "--src-creds",
        creds,
        f"docker://{server.registry}/{ref}",
        f"oci:{out}:pulled",
        check=False,
    )


def _assert_pulled(out: Path, image: ImageInfo) -> None:
    assert layout_tags(out)["pulled"] == image.manifest_digest
    for digest in image.blob_digests:
        assert blob_path(out, digest).read_bytes() == blob_path(image.path, digest).read_bytes()


def test_project_robot_pushes_and_pulls(
    skopeo: Skopeo, server: DockyardServer, tmp_path: Path
) -> None:
    project = _private_project(server)
    creds = _project_robot(server, project, "pull", "push")
    assert creds.startswith(f"robot${project}+")
    image = make_image_layout(tmp_path / "src", layers=2)

    pushed = _push(skopeo, server, image, f"{project}/app:1", creds)
    assert pushed.returncode == 0, pushed.stderr
    pulled = _pull(skopeo, server, f"{project}/app:1", tmp_path / "out", creds)
    assert pulled.returncode == 0, pulled.stderr

    _assert_pulled(tmp_path / "out", image)


def test_system_robot_covering_the_project_pushes_and_pulls(
    skopeo: Skopeo, server: DockyardServer, tmp_path: Path
) -> None:
    project = _private_project(server)
    creds = _create_robot(
        server,
        {
            "name": f"sys{uuid.uuid4().hex[:8]}",
            "level": "system",
            "permissions": [
                {
                    "kind": "system",
                    "namespace": "/",
                    "access": [{"resource": "catalog", "action": "read"}],
                },
                {"kind": "project", "namespace": project, "access": _access("pull", "push")},
            ],
        },
    )
    image = make_image_layout(tmp_path / "src", layers=1)

    pushed = _push(skopeo, server, image, f"{project}/app:sys", creds)
    assert pushed.returncode == 0, pushed.stderr
    pulled = _pull(skopeo, server, f"{project}/app:sys", tmp_path / "out", creds)
    assert pulled.returncode == 0, pulled.stderr

    _assert_pulled(tmp_path / "out", image)
    other = _private_project(server)
    refused = _push(skopeo, server, image, f"{other}/app:sys", creds)
    assert refused.returncode != 0


def test_pull_only_robot_cannot_push(
    skopeo: Skopeo, server: DockyardServer, tmp_path: Path
) -> None:
    project = _private_project(server)
    creds = _project_robot(server, project, "pull")
    image = make_image_layout(tmp_path / "src", layers=1)
    by_admin = _push(skopeo, server, image, f"{project}/app:1", server.admin_creds)
    assert by_admin.returncode == 0, by_admin.stderr

    pulled = _pull(skopeo, server, f"{project}/app:1", tmp_path / "out", creds)
    refused = _push(skopeo, server, image, f"{project}/app:2", creds)

    assert pulled.returncode == 0, pulled.stderr
    _assert_pulled(tmp_path / "out", image)
    assert refused.returncode != 0
    stderr = refused.stderr.lower()
    assert "denied" in stderr or "unauthorized" in stderr or "authentication required" in stderr
    with server.client() as admin:
        assert admin.get(f"/v2/{project}/app/manifests/2").status_code == 404


def test_disabled_robot_can_no_longer_pull(
    skopeo: Skopeo, server: DockyardServer, tmp_path: Path
) -> None:
    project = _private_project(server)
    creds = _project_robot(server, project, "pull", "push")
    image = make_image_layout(tmp_path / "src", layers=1)
    assert _push(skopeo, server, image, f"{project}/app:1", creds).returncode == 0
    name = creds.split(":", 1)[0]
    listed = httpx.get(
        f"{server.url}/api/v2.0/robots",
        params={"q": f"name={name}"},
        auth=server.admin_auth,
        timeout=30,
    )
    assert listed.status_code == 200 and len(listed.json()) == 1
    robot_id = listed.json()[0]["id"]

    disabled = httpx.put(
        f"{server.url}/api/v2.0/robots/{robot_id}",
        json={"disable": True},
        auth=server.admin_auth,
        timeout=30,
    )

    assert disabled.status_code == 200
    refused = _pull(skopeo, server, f"{project}/app:1", tmp_path / "out", creds)
    assert refused.returncode != 0
