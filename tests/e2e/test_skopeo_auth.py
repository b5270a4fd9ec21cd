"""Who may push and pull: the token flow, the Basic challenge, anonymous access, projects."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import httpx
import jwt
import pytest
from tests.support.oci_layout import ImageInfo, blob_path, layout_tags, make_image_layout
from tests.support.registry_auth import parse_challenge
from tests.support.server import DockyardServer
from tests.support.skopeo import Skopeo

pytestmark = pytest.mark.e2e

NO_TLS_DEST = "--dest-tls-verify=false"
NO_TLS_SRC = "--src-tls-verify=false"


def token_claims(token: str) -> dict[str, object]:
    claims: dict[str, object] = jwt.decode(token, options={"verify_signature": False})
    return claims


def granted_actions(token: str, name: str) -> set[str]:
    access = token_claims(token).get("access") or []
    assert isinstance(access, list)
    return {
        action
        for entry in access
        if entry.get("type") == "repository" and entry.get("name") == name
        for action in entry.get("actions", [])
    }


def error_codes(response: httpx.Response) -> list[str]:
    return [error["code"] for error in response.json()["errors"]]


def push_as_admin(skopeo: Skopeo, server: DockyardServer, image: ImageInfo, ref: str) -> None:
    skopeo.run(
        "copy",
        NO_TLS_DEST,
        "--dest-creds",
        server.admin_creds,
        f"oci:{image.path}:{image.tag}",
        f"docker://{server.registry}/{ref}",
    )


def assert_pulled(out: Path, tag: str, image: ImageInfo) -> None:
    assert layout_tags(out)[tag] == image.manifest_digest
    for digest in image.blob_digests:
        assert blob_path(out, digest).read_bytes() == blob_path(image.path, digest).read_bytes()


# --- the token flow ----------------------------------------------------------------------------


def test_v2_challenges_with_bearer(server: DockyardServer) -> None:
    response = httpx.get(f"{server.url}/v2/")

    assert response.status_code == 401
    assert response.headers["docker-distribution-api-version"] == "registry/2.0"
    scheme, params = parse_challenge(response.headers["www-authenticate"])
    assert scheme == "bearer"
    assert params["realm"] == f"{server.url}/service/token"
    assert params["service"] == "dockyard"
    assert error_codes(response) == ["UNAUTHORIZED"]


def test_repository_challenge_names_the_scope(server: DockyardServer) -> None:
    # anonymous may pull from the public project, so ask for something that needs a push
    response = httpx.post(f"{server.url}/v2/library/some-repo/blobs/uploads/")

    assert response.status_code == 401
    scheme, params = parse_challenge(response.headers["www-authenticate"])
    assert scheme == "bearer"
    assert params["realm"] == f"{server.url}/service/token"
    assert params["scope"] == "repository:library/some-repo:pull,push"
    assert error_codes(response) == ["UNAUTHORIZED"]


def test_token_endpoint_grants_admin_pull_and_push(server: DockyardServer) -> None:
    response = httpx.get(
        f"{server.url}/service/token",
        params={"service": "dockyard", "scope": "repository:library/tok:pull,push"},
        auth=server.admin_auth,
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token"]
    assert body["access_token"] == body["token"]
    assert isinstance(body["expires_in"], int)
    assert body["expires_in"] > 0
    assert body["issued_at"]
    assert granted_actions(body["token"], "library/tok") == {"pull", "push"}
    assert token_claims(body["token"])["sub"] == "admin"
    assert token_claims(body["token"])["aud"] == "dockyard"

    v2 = httpx.get(f"{server.url}/v2/", headers={"Authorization": f"Bearer {body['token']}"})
    assert v2.status_code == 200


def test_token_endpoint_gives_anonymous_only_pull_on_a_public_project(
    server: DockyardServer,
) -> None:
    response = httpx.get(
        f"{server.url}/service/token",
        params={"service": "dockyard", "scope": "repository:library/tok:pull,push"},
    )

    assert response.status_code == 200, response.text
    assert granted_actions(response.json()["token"], "library/tok") == {"pull"}


def test_token_endpoint_refuses_a_wrong_password(server: DockyardServer) -> None:
    response = httpx.get(
        f"{server.url}/service/token",
        params={"service": "dockyard", "scope": "repository:library/tok:pull"},
        auth=("admin", "not-the-password"),
    )

    assert response.status_code == 401
    assert error_codes(response) == ["UNAUTHORIZED"]


def test_a_forged_token_is_refused(server: DockyardServer) -> None:
    forged = jwt.encode(
        {
            "iss": "dockyard-token-issuer",
            "sub": "admin",
            "aud": "dockyard",
            "access": [{"type": "repository", "name": "library/x", "actions": ["pull", "push"]}],
        },
        "a-key-the-server-has-never-seen-0123456789",
        algorithm="HS256",
    )

    response = httpx.get(f"{server.url}/v2/", headers={"Authorization": f"Bearer {forged}"})

    assert response.status_code == 401
    assert error_codes(response) == ["UNAUTHORIZED"]


def test_skopeo_with_a_wrong_password_fails(
    skopeo: Skopeo, server: DockyardServer, repo_name: str, tmp_path: Path
) -> None:
    image = make_image_layout(tmp_path / "src", layers=1)

    result = skopeo.run(
        "copy",
        NO_TLS_DEST,
        "--dest-creds",
        "admin:wrong",
        f"oci:{image.path}:latest",
        f"docker://{server.registry}/{repo_name}:1",
        check=False,
    )

    assert result.returncode != 0
    assert "unauthorized" in result.stderr.lower() or "401" in result.stderr, result.stderr


# --- anonymous access --------------------------------------------------------------------------


def test_anonymous_pull_of_a_public_project(
    skopeo: Skopeo, server: DockyardServer, repo_name: str, tmp_path: Path
) -> None:
    image = make_image_layout(tmp_path / "src", layers=2)
    push_as_admin(skopeo, server, image, f"{repo_name}:pub")

    skopeo.run(
        "copy",
        NO_TLS_SRC,
        "--src-no-creds",
        f"docker://{server.registry}/{repo_name}:pub",
        f"oci:{tmp_path / 'out'}:pub",
    )

    assert_pulled(tmp_path / "out", "pub", image)


def test_anonymous_push_is_refused(
    skopeo: Skopeo, server: DockyardServer, repo_name: str, tmp_path: Path
) -> None:
    image = make_image_layout(tmp_path / "src", layers=1)

    result = skopeo.run(
        "copy",
        NO_TLS_DEST,
        "--dest-no-creds",
        f"oci:{image.path}:latest",
        f"docker://{server.registry}/{repo_name}:anon",
        check=False,
    )

    assert result.returncode != 0
    stderr = result.stderr.lower()
    assert "unauthorized" in stderr or "denied" in stderr or "authentication required" in stderr
    with server.client(anonymous=True) as anonymous:
        upload = anonymous.post(f"/v2/{repo_name}/blobs/uploads/")
    assert upload.status_code in (401, 403)
    assert error_codes(upload)[0] in ("UNAUTHORIZED", "DENIED")
    with server.client() as admin:
        manifest = admin.get(f"/v2/{repo_name}/manifests/anon")
    assert manifest.status_code == 404


def test_push_to_a_missing_project_names_the_project(
    skopeo: Skopeo, server: DockyardServer, tmp_path: Path
) -> None:
    project = f"nosuchproject{uuid.uuid4().hex[:8]}"
    image = make_image_layout(tmp_path / "src", layers=1)

    result = skopeo.run(
        "copy",
        NO_TLS_DEST,
        "--dest-creds",
        server.admin_creds,
        f"oci:{image.path}:latest",
        f"docker://{server.registry}/{project}/app:1",
        check=False,
    )

    assert result.returncode != 0
    assert project in result.stderr, result.stderr
    with server.client() as admin:
        upload = admin.post(f"/v2/{project}/app/blobs/uploads/")
    assert upload.status_code in (401, 403, 404), upload.text
    assert project in json.dumps(upload.json()["errors"])


def test_private_project_needs_credentials(
    skopeo: Skopeo, server: DockyardServer, tmp_path: Path
) -> None:
    project = f"private{uuid.uuid4().hex[:8]}"
    server.create_project(project)
    image = make_image_layout(tmp_path / "src", layers=1)
    push_as_admin(skopeo, server, image, f"{project}/app:1")

    anonymous = skopeo.run(
        "copy",
        NO_TLS_SRC,
        "--src-no-creds",
        f"docker://{server.registry}/{project}/app:1",
        f"oci:{tmp_path / 'anon'}:1",
        check=False,
    )
    skopeo.run(
        "copy",
        NO_TLS_SRC,
        "--src-creds",
        server.admin_creds,
        f"docker://{server.registry}/{project}/app:1",
        f"oci:{tmp_path / 'admin'}:1",
    )

    assert anonymous.returncode != 0
    assert_pulled(tmp_path / "admin", "1", image)
    token = httpx.get(
        f"{server.url}/service/token",
        params={"service": "dockyard", "scope": f"repository:{project}/app:pull"},
    )
    assert token.status_code == 200
    assert granted_actions(token.json()["token"], f"{project}/app") == set()


def test_cli_creates_a_public_project(
    skopeo: Skopeo, server: DockyardServer, tmp_path: Path
) -> None:
    project = f"public{uuid.uuid4().hex[:8]}"
    server.create_project(project, public=True)
    image = make_image_layout(tmp_path / "src", layers=1)
    push_as_admin(skopeo, server, image, f"{project}/app:1")

    skopeo.run(
        "copy",
        NO_TLS_SRC,
        "--src-no-creds",
        f"docker://{server.registry}/{project}/app:1",
        f"oci:{tmp_path / 'out'}:1",
    )

    assert_pulled(tmp_path / "out", "1", image)


# --- the Basic challenge -----------------------------------------------------------------------


def test_basic_challenge(basic_server: DockyardServer) -> None:
    anonymous = httpx.get(f"{basic_server.url}/v2/")
    admin = httpx.get(f"{basic_server.url}/v2/", auth=basic_server.admin_auth)
    wrong = httpx.get(f"{basic_server.url}/v2/", auth=("admin", "wrong"))

    assert anonymous.status_code == 401
    scheme, params = parse_challenge(anonymous.headers["www-authenticate"])
    assert scheme == "basic"
    assert "realm" in params
    assert admin.status_code == 200
    assert wrong.status_code == 401


def test_push_and_pull_with_basic_challenge(
    skopeo: Skopeo, basic_server: DockyardServer, repo_name: str, tmp_path: Path
) -> None:
    image = make_image_layout(tmp_path / "src", layers=3)
    push_as_admin(skopeo, basic_server, image, f"{repo_name}:basic")

    skopeo.run(
        "copy",
        NO_TLS_SRC,
        "--src-creds",
        basic_server.admin_creds,
        f"docker://{basic_server.registry}/{repo_name}:basic",
        f"oci:{tmp_path / 'out'}:basic",
    )

    assert_pulled(tmp_path / "out", "basic", image)


def test_basic_challenge_anonymous_pull_and_refused_push(
    skopeo: Skopeo, basic_server: DockyardServer, repo_name: str, tmp_path: Path
) -> None:
    image = make_image_layout(tmp_path / "src", layers=1)
    push_as_admin(skopeo, basic_server, image, f"{repo_name}:1")

    skopeo.run(
        "copy",
        NO_TLS_SRC,
        "--src-no-creds",
        f"docker://{basic_server.registry}/{repo_name}:1",
        f"oci:{tmp_path / 'out'}:1",
    )
    refused = skopeo.run(
        "copy",
        NO_TLS_DEST,
        "--dest-no-creds",
        f"oci:{image.path}:latest",
        f"docker://{basic_server.registry}/{repo_name}:2",
        check=False,
    )

    assert_pulled(tmp_path / "out", "1", image)
    assert refused.returncode != 0
