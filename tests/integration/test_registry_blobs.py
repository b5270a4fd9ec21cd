"""``/v2/`` base and blob endpoints: end-1, end-2 (GET/HEAD, ranges) and end-10 (DELETE)."""

from __future__ import annotations

import httpx
from sqlalchemy import func, select
from tests.integration.registry_helpers import digest_of, error_code, push_blob

from dockyard.http.state import AppState
from dockyard.registry.models import Blob, Repository, RepositoryBlob
from dockyard.storage import blob_key

API_VERSION = "registry/2.0"
MISSING = digest_of(b"never pushed anywhere")


async def _links(state: AppState, repo: str, digest: str) -> int:
    async with state.db.read() as session:
        count = await session.scalar(
            select(func.count())
            .select_from(RepositoryBlob)
            .join(Repository, Repository.repository_id == RepositoryBlob.repository_id)
            .join(Blob, Blob.id == RepositoryBlob.blob_id)
            .where(Repository.name == repo, Blob.digest == digest)
        )
    return int(count or 0)


# --- end-1 -------------------------------------------------------------------------------


async def test_base_endpoint_admin(admin: httpx.AsyncClient) -> None:
    for path in ("/v2/", "/v2"):
        response = await admin.get(path)
        assert response.status_code == 200
        assert response.headers["docker-distribution-api-version"] == API_VERSION
        assert response.json() == {}


async def test_base_endpoint_anonymous_is_challenged(anon: httpx.AsyncClient) -> None:
    response = await anon.get("/v2/")
    assert response.status_code == 401
    assert response.headers["www-authenticate"]
    assert response.headers["docker-distribution-api-version"] == API_VERSION
    assert error_code(response) == "UNAUTHORIZED"
    assert response.json()["errors"][0]["message"]


async def test_base_endpoint_wrong_password(app: object, anon: httpx.AsyncClient) -> None:
    response = await anon.get("/v2/", auth=("admin", "wrong-password"))
    assert response.status_code == 401
    assert "www-authenticate" in response.headers
    assert error_code(response) == "UNAUTHORIZED"


# --- end-2 -------------------------------------------------------------------------------


async def test_get_and_head_blob(admin: httpx.AsyncClient, unique_repo: str) -> None:
    data = b"blob contents " * 100
    digest = await push_blob(admin, unique_repo, data)

    response = await admin.get(f"/v2/{unique_repo}/blobs/{digest}")
    assert response.status_code == 200
    assert response.content == data
    assert response.headers["content-length"] == str(len(data))
    assert response.headers["docker-content-digest"] == digest
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.headers["docker-distribution-api-version"] == API_VERSION

    head = await admin.head(f"/v2/{unique_repo}/blobs/{digest}")
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == str(len(data))
    assert head.headers["docker-content-digest"] == digest
    assert head.headers["content-type"] == "application/octet-stream"


async def test_empty_blob(admin: httpx.AsyncClient, unique_repo: str) -> None:
    digest = await push_blob(admin, unique_repo, b"")
    response = await admin.get(f"/v2/{unique_repo}/blobs/{digest}")
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["content-length"] == "0"
    head = await admin.head(f"/v2/{unique_repo}/blobs/{digest}")
    assert head.headers["content-length"] == "0"


RANGES = [
    ("bytes=0-9", 0, 9),
    ("bytes=10-19", 10, 19),
    ("bytes=990-", 990, 999),
    ("bytes=-5", 995, 999),
    ("bytes=995-5000", 995, 999),
    ("bytes=0-0", 0, 0),
]


async def test_blob_range(admin: httpx.AsyncClient, unique_repo: str) -> None:
    data = bytes(range(256)) * 3 + b"x" * 232  # 1000 bytes
    digest = await push_blob(admin, unique_repo, data)
    for header, start, end in RANGES:
        response = await admin.get(f"/v2/{unique_repo}/blobs/{digest}", headers={"Range": header})
        assert response.status_code == 206, header
        assert response.content == data[start : end + 1], header
        assert response.headers["content-range"] == f"bytes {start}-{end}/{len(data)}"
        assert response.headers["content-length"] == str(end - start + 1)
        assert response.headers["docker-content-digest"] == digest
        assert response.headers["docker-distribution-api-version"] == API_VERSION


async def test_blob_range_unsatisfiable(admin: httpx.AsyncClient, unique_repo: str) -> None:
    data = b"y" * 1000
    digest = await push_blob(admin, unique_repo, data)
    for header in ("bytes=1000-", "bytes=5000-6000", "bytes=-0"):
        response = await admin.get(f"/v2/{unique_repo}/blobs/{digest}", headers={"Range": header})
        assert response.status_code == 416, header
        assert error_code(response) == "RANGE_INVALID"
        assert response.headers["docker-distribution-api-version"] == API_VERSION


async def test_blob_range_ignored_serves_whole_blob(
    admin: httpx.AsyncClient, unique_repo: str
) -> None:
    """Ranges the spec lets a server ignore (RFC 9110 14.2) give the whole blob."""
    data = b"z" * 100
    digest = await push_blob(admin, unique_repo, data)
    for header in ("lines=1-2", "bytes=0-1,5-6", "bytes=9-2", "bytes=x-y", "bytes=-", ""):
        response = await admin.get(f"/v2/{unique_repo}/blobs/{digest}", headers={"Range": header})
        assert response.status_code == 200, header
        assert response.content == data
        assert response.headers["content-length"] == "100"
        assert "content-range" not in response.headers


async def test_unknown_blob(admin: httpx.AsyncClient, unique_repo: str) -> None:
    await push_blob(admin, unique_repo, b"make the repository exist")
    for method in ("GET", "HEAD"):
        response = await admin.request(method, f"/v2/{unique_repo}/blobs/{MISSING}")
        assert response.status_code == 404
        assert response.headers["docker-distribution-api-version"] == API_VERSION
        if method == "GET":
            assert error_code(response) == "BLOB_UNKNOWN"


async def test_blob_in_unknown_repository(admin: httpx.AsyncClient, unique_repo: str) -> None:
    response = await admin.get(f"/v2/{unique_repo}/blobs/{MISSING}")
    assert response.status_code == 404
    assert error_code(response) in {"BLOB_UNKNOWN", "NAME_UNKNOWN"}


async def test_blob_malformed_digest(admin: httpx.AsyncClient, unique_repo: str) -> None:
    for digest in ("sha256:abc", "md5:" + "0" * 32, "SHA256:" + "0" * 64, "nope"):
        response = await admin.get(f"/v2/{unique_repo}/blobs/{digest}")
        assert response.status_code == 400, digest
        assert error_code(response) == "DIGEST_INVALID"


async def test_blob_is_scoped_to_its_repository(
    admin: httpx.AsyncClient, state: AppState, unique_repo: str
) -> None:
    other = unique_repo + "-other"
    data = b"only in repository A"
    digest = await push_blob(admin, unique_repo, data)
    await push_blob(admin, other, b"repository B exists")

    refused = await admin.get(f"/v2/{other}/blobs/{digest}")
    assert refused.status_code == 404
    assert error_code(refused) == "BLOB_UNKNOWN"
    assert (await admin.head(f"/v2/{other}/blobs/{digest}")).status_code == 404

    mounted = await admin.post(
        f"/v2/{other}/blobs/uploads/", params={"mount": digest, "from": unique_repo}
    )
    assert mounted.status_code == 201
    assert await _links(state, other, digest) == 1
    response = await admin.get(f"/v2/{other}/blobs/{digest}")
    assert response.status_code == 200
    assert response.content == data


async def test_anonymous_pull_of_public_blob(
    admin: httpx.AsyncClient, anon: httpx.AsyncClient, unique_repo: str
) -> None:
    data = b"public data"
    digest = await push_blob(admin, unique_repo, data)
    response = await anon.get(f"/v2/{unique_repo}/blobs/{digest}")
    assert response.status_code == 200
    assert response.content == data


# --- end-10 -------------------------------------------------------------------------------


async def test_delete_blob(admin: httpx.AsyncClient, state: AppState, unique_repo: str) -> None:
    digest = await push_blob(admin, unique_repo, b"to be deleted")
    other = unique_repo + "-keeps"
    await admin.post(f"/v2/{other}/blobs/uploads/", params={"mount": digest, "from": unique_repo})

    response = await admin.delete(f"/v2/{unique_repo}/blobs/{digest}")
    assert response.status_code == 202
    assert response.headers["docker-distribution-api-version"] == API_VERSION
    assert await _links(state, unique_repo, digest) == 0

    gone = await admin.get(f"/v2/{unique_repo}/blobs/{digest}")
    assert gone.status_code == 404
    assert error_code(gone) == "BLOB_UNKNOWN"
    # The other repository's link, and the bytes, are untouched.
    assert (await admin.get(f"/v2/{other}/blobs/{digest}")).status_code == 200
    assert await state.storage.stat(blob_key(digest)) is not None

    again = await admin.delete(f"/v2/{unique_repo}/blobs/{digest}")
    assert again.status_code == 404
    assert error_code(again) == "BLOB_UNKNOWN"


async def test_delete_blob_malformed_digest(admin: httpx.AsyncClient, unique_repo: str) -> None:
    response = await admin.delete(f"/v2/{unique_repo}/blobs/sha256:short")
    assert response.status_code == 400
    assert error_code(response) == "DIGEST_INVALID"


async def test_anonymous_cannot_delete_blob(
    admin: httpx.AsyncClient, anon: httpx.AsyncClient, state: AppState, unique_repo: str
) -> None:
    digest = await push_blob(admin, unique_repo, b"anonymous may not delete")
    response = await anon.delete(f"/v2/{unique_repo}/blobs/{digest}")
    assert response.status_code == 401
    assert "www-authenticate" in response.headers
    assert error_code(response) == "UNAUTHORIZED"
    assert await _links(state, unique_repo, digest) == 1
