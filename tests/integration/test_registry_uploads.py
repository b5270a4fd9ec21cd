"""Blob uploads: end-4a/4b (POST), end-5 (PATCH), end-6 (PUT), end-11 (mount), end-13 (status)
and cancelling an upload, with everything a refused upload must leave behind: nothing."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette
from tests.integration.conftest import make_client
from tests.integration.registry_helpers import (
    blob_row_exists,
    digest_of,
    error_code,
    push_blob,
    rows_in_repository,
)

from dockyard.http.state import AppState
from dockyard.iam.models import User
from dockyard.iam.passwords import hash_password
from dockyard.projects.service import create_project
from dockyard.registry.models import BlobUpload
from dockyard.storage import blob_key

API_VERSION = "registry/2.0"


# --- helpers ----------------------------------------------------------------------------


async def _open(client: httpx.AsyncClient, repo: str) -> str:
    """Start an upload session; returns its Location path."""
    response = await client.post(f"/v2/{repo}/blobs/uploads/")
    assert response.status_code == 202, response.text
    return httpx.URL(response.headers["location"]).path


async def _assert_not_stored(
    client: httpx.AsyncClient, state: AppState, repo: str, digest: str
) -> None:
    assert (await client.get(f"/v2/{repo}/blobs/{digest}")).status_code == 404
    assert not await blob_row_exists(state, digest)
    assert await state.storage.stat(blob_key(digest)) is None
    assert await rows_in_repository(state, BlobUpload, repo) == 0


def _assert_upload_headers(response: httpx.Response, repo: str, size: int) -> None:
    location = httpx.URL(response.headers["location"])
    upload_id = response.headers["docker-upload-uuid"]
    assert location.path == f"/v2/{repo}/blobs/uploads/{upload_id}"
    assert response.headers["range"] == f"0-{max(size - 1, 0)}"
    assert response.headers["docker-distribution-api-version"] == API_VERSION


def _unique_bytes(n: int = 64) -> bytes:
    return (uuid.uuid4().hex.encode() * (n // 32 + 1))[:n]


# --- monolithic ----------------------------------------------------------------------------


async def test_monolithic_post(admin: httpx.AsyncClient, state: AppState, unique_repo: str) -> None:
    data = _unique_bytes(1000)
    digest = digest_of(data)
    response = await admin.post(
        f"/v2/{unique_repo}/blobs/uploads/", params={"digest": digest}, content=data
    )
    assert response.status_code == 201
    assert response.headers["docker-content-digest"] == digest
    assert httpx.URL(response.headers["location"]).path == f"/v2/{unique_repo}/blobs/{digest}"
    assert response.headers["docker-distribution-api-version"] == API_VERSION
    assert (await admin.get(f"/v2/{unique_repo}/blobs/{digest}")).content == data
    assert await rows_in_repository(state, BlobUpload, unique_repo) == 0


async def test_monolithic_post_of_existing_blob(admin: httpx.AsyncClient, unique_repo: str) -> None:
    data = _unique_bytes()
    digest = await push_blob(admin, unique_repo, data)
    again = await admin.post(
        f"/v2/{unique_repo}/blobs/uploads/", params={"digest": digest}, content=data
    )
    assert again.status_code == 201
    assert (await admin.get(f"/v2/{unique_repo}/blobs/{digest}")).content == data


async def test_post_then_put_with_body(
    admin: httpx.AsyncClient, state: AppState, unique_repo: str
) -> None:
    response = await admin.post(f"/v2/{unique_repo}/blobs/uploads/")
    assert response.status_code == 202
    _assert_upload_headers(response, unique_repo, 0)
    assert response.headers["content-length"] == "0"
    location = httpx.URL(response.headers["location"]).path

    data = _unique_bytes(500)
    digest = digest_of(data)
    put = await admin.put(location, params={"digest": digest}, content=data)
    assert put.status_code == 201
    assert put.headers["docker-content-digest"] == digest
    assert httpx.URL(put.headers["location"]).path == f"/v2/{unique_repo}/blobs/{digest}"
    assert (await admin.get(f"/v2/{unique_repo}/blobs/{digest}")).content == data
    assert await rows_in_repository(state, BlobUpload, unique_repo) == 0
    gone = await admin.get(location)
    assert gone.status_code == 404
    assert error_code(gone) == "BLOB_UPLOAD_UNKNOWN"


# --- chunked --------------------------------------------------------------------------------


async def test_chunked_without_content_range(admin: httpx.AsyncClient, unique_repo: str) -> None:
    data = _unique_bytes(300)
    location = await _open(admin, unique_repo)
    offset = 0
    for chunk in (data[:100], data[100:250], data[250:]):
        response = await admin.patch(location, content=chunk)
        offset += len(chunk)
        assert response.status_code == 202, response.text
        _assert_upload_headers(response, unique_repo, offset)
        location = httpx.URL(response.headers["location"]).path
    digest = digest_of(data)
    put = await admin.put(location, params={"digest": digest})
    assert put.status_code == 201
    assert put.headers["docker-content-digest"] == digest
    assert (await admin.get(f"/v2/{unique_repo}/blobs/{digest}")).content == data


async def test_chunked_with_content_range(admin: httpx.AsyncClient, unique_repo: str) -> None:
    data = _unique_bytes(300)
    location = await _open(admin, unique_repo)
    # Each spelling clients use: bare, "bytes a-b/total", "bytes=a-b".
    spans = (
        (0, 99, "{start}-{end}"),
        (100, 199, "bytes {start}-{end}/*"),
        (200, 299, "bytes={start}-{end}"),
    )
    for start, end, style in spans:
        response = await admin.patch(
            location,
            content=data[start : end + 1],
            headers={
                "Content-Range": style.format(start=start, end=end),
                "Content-Type": "application/octet-stream",
            },
        )
        assert response.status_code == 202, response.text
        _assert_upload_headers(response, unique_repo, end + 1)
    digest = digest_of(data)
    put = await admin.put(location, params={"digest": digest})
    assert put.status_code == 201
    assert (await admin.get(f"/v2/{unique_repo}/blobs/{digest}")).content == data


async def test_final_put_carries_last_chunk(admin: httpx.AsyncClient, unique_repo: str) -> None:
    data = _unique_bytes(300)
    location = await _open(admin, unique_repo)
    assert (await admin.patch(location, content=data[:200])).status_code == 202
    digest = digest_of(data)
    put = await admin.put(
        location,
        params={"digest": digest},
        content=data[200:],
        headers={"Content-Range": "200-299"},
    )
    assert put.status_code == 201, put.text
    assert (await admin.get(f"/v2/{unique_repo}/blobs/{digest}")).content == data


async def test_out_of_order_chunk(admin: httpx.AsyncClient, unique_repo: str) -> None:
    data = _unique_bytes(300)
    location = await _open(admin, unique_repo)
    await admin.patch(location, content=data[:100], headers={"Content-Range": "0-99"})

    for bad in ("200-299", "50-149", "0-99"):
        response = await admin.patch(
            location, content=data[100:200], headers={"Content-Range": bad}
        )
        assert response.status_code == 416, bad
        assert error_code(response) == "RANGE_INVALID"
        _assert_upload_headers(response, unique_repo, 100)

    # The refused chunks left the upload as it was; it carries on.
    status = await admin.get(location)
    assert status.headers["range"] == "0-99"
    ok = await admin.patch(location, content=data[100:], headers={"Content-Range": "100-299"})
    assert ok.status_code == 202
    digest = digest_of(data)
    assert (await admin.put(location, params={"digest": digest})).status_code == 201
    assert (await admin.get(f"/v2/{unique_repo}/blobs/{digest}")).content == data


async def test_final_put_out_of_order(admin: httpx.AsyncClient, unique_repo: str) -> None:
    location = await _open(admin, unique_repo)
    await admin.patch(location, content=b"a" * 10)
    response = await admin.put(
        location,
        params={"digest": digest_of(b"a" * 20)},
        content=b"a" * 10,
        headers={"Content-Range": "20-29"},
    )
    assert response.status_code == 416
    assert error_code(response) == "RANGE_INVALID"
    assert response.headers["range"] == "0-9"


# --- status and cancel ----------------------------------------------------------------------


async def test_upload_status(admin: httpx.AsyncClient, unique_repo: str) -> None:
    location = await _open(admin, unique_repo)
    empty = await admin.get(location)
    assert empty.status_code == 204
    assert empty.content == b""
    _assert_upload_headers(empty, unique_repo, 0)

    await admin.patch(location, content=b"x" * 42)
    status = await admin.get(location)
    assert status.status_code == 204
    _assert_upload_headers(status, unique_repo, 42)


async def test_cancel_upload(admin: httpx.AsyncClient, state: AppState, unique_repo: str) -> None:
    location = await _open(admin, unique_repo)
    await admin.patch(location, content=b"partial")
    response = await admin.delete(location)
    assert response.status_code == 204
    assert response.headers["docker-distribution-api-version"] == API_VERSION
    assert await rows_in_repository(state, BlobUpload, unique_repo) == 0

    for method in ("GET", "PATCH", "DELETE"):
        after = await admin.request(
            method, location, content=b"more" if method == "PATCH" else None
        )
        assert after.status_code == 404, method
        assert error_code(after) == "BLOB_UPLOAD_UNKNOWN"
    put = await admin.put(location, params={"digest": digest_of(b"partial")})
    assert put.status_code == 404
    assert error_code(put) == "BLOB_UPLOAD_UNKNOWN"
    assert not await blob_row_exists(state, digest_of(b"partial"))


async def test_unknown_upload_id(admin: httpx.AsyncClient, unique_repo: str) -> None:
    await push_blob(admin, unique_repo, b"the repository exists")
    for method in ("GET", "PATCH", "PUT", "DELETE"):
        response = await admin.request(
            method,
            f"/v2/{unique_repo}/blobs/uploads/{uuid.uuid4().hex}",
            params={"digest": digest_of(b"x")} if method == "PUT" else None,
            content=b"x" if method in {"PATCH", "PUT"} else None,
        )
        assert response.status_code == 404, method
        assert error_code(response) == "BLOB_UPLOAD_UNKNOWN"


async def test_upload_belongs_to_its_repository(
    admin: httpx.AsyncClient, state: AppState, unique_repo: str
) -> None:
    location = await _open(admin, unique_repo)
    upload_id = location.rsplit("/", 1)[1]
    other = f"{unique_repo}-other"
    await push_blob(admin, other, b"other exists")
    stolen = f"/v2/{other}/blobs/uploads/{upload_id}"
    assert (await admin.get(stolen)).status_code == 404
    assert (await admin.patch(stolen, content=b"x")).status_code == 404
    put = await admin.put(stolen, params={"digest": digest_of(b"")})
    assert put.status_code == 404
    assert error_code(put) == "BLOB_UPLOAD_UNKNOWN"
    assert (await admin.delete(stolen)).status_code == 404
    assert await rows_in_repository(state, BlobUpload, unique_repo) == 1


# --- digests ---------------------------------------------------------------------------------


async def test_wrong_digest_monolithic(
    admin: httpx.AsyncClient, state: AppState, unique_repo: str
) -> None:
    data = _unique_bytes()
    claimed = digest_of(b"something else")
    response = await admin.post(
        f"/v2/{unique_repo}/blobs/uploads/", params={"digest": claimed}, content=data
    )
    assert response.status_code == 400
    assert error_code(response) == "DIGEST_INVALID"
    await _assert_not_stored(admin, state, unique_repo, claimed)
    await _assert_not_stored(admin, state, unique_repo, digest_of(data))


async def test_wrong_digest_on_close_discards_upload(
    admin: httpx.AsyncClient, state: AppState, unique_repo: str
) -> None:
    data = _unique_bytes()
    location = await _open(admin, unique_repo)
    await admin.patch(location, content=data)
    claimed = digest_of(b"not the data")
    response = await admin.put(location, params={"digest": claimed})
    assert response.status_code == 400
    assert error_code(response) == "DIGEST_INVALID"
    gone = await admin.get(location)
    assert gone.status_code == 404
    assert error_code(gone) == "BLOB_UPLOAD_UNKNOWN"
    await _assert_not_stored(admin, state, unique_repo, claimed)
    await _assert_not_stored(admin, state, unique_repo, digest_of(data))


async def test_malformed_digest(
    admin: httpx.AsyncClient, state: AppState, unique_repo: str
) -> None:
    data = _unique_bytes()
    location = await _open(admin, unique_repo)
    await admin.patch(location, content=data)
    for digest in (
        "sha256:1234",
        "sha256:" + "G" * 64,
        "md5:" + "0" * 32,
        "sha256",
        "SHA256:" + "a" * 64,
    ):
        monolithic = await admin.post(
            f"/v2/{unique_repo}/blobs/uploads/", params={"digest": digest}, content=data
        )
        assert monolithic.status_code == 400, digest
        assert error_code(monolithic) == "DIGEST_INVALID"
        # only the session below is left
        assert await rows_in_repository(state, BlobUpload, unique_repo) == 1
        assert not await blob_row_exists(state, digest_of(data))

        close = await admin.put(location, params={"digest": digest})
        assert close.status_code == 400, digest
        assert error_code(close) == "DIGEST_INVALID"
    # A malformed digest is the client's typo: the upload survives for a retry.
    retry = await admin.put(location, params={"digest": digest_of(data)})
    assert retry.status_code == 201


async def test_close_without_digest(admin: httpx.AsyncClient, unique_repo: str) -> None:
    location = await _open(admin, unique_repo)
    response = await admin.put(location, content=b"abc")
    assert response.status_code == 400
    assert error_code(response) == "DIGEST_INVALID"


async def test_sha512_monolithic_and_chunked(admin: httpx.AsyncClient, unique_repo: str) -> None:
    data = _unique_bytes(700)
    digest = digest_of(data, "sha512")
    response = await admin.post(
        f"/v2/{unique_repo}/blobs/uploads/", params={"digest": digest}, content=data
    )
    assert response.status_code == 201, response.text
    assert response.headers["docker-content-digest"] == digest
    got = await admin.get(f"/v2/{unique_repo}/blobs/{digest}")
    assert got.status_code == 200
    assert got.content == data
    assert got.headers["docker-content-digest"] == digest

    other = _unique_bytes(300)
    location = await _open(admin, unique_repo)
    await admin.patch(location, content=other[:150])
    other_digest = digest_of(other, "sha512")
    put = await admin.put(location, params={"digest": other_digest}, content=other[150:])
    assert put.status_code == 201, put.text
    head = await admin.head(f"/v2/{unique_repo}/blobs/{other_digest}")
    assert head.headers["content-length"] == "300"

    wrong = await admin.post(
        f"/v2/{unique_repo}/blobs/uploads/",
        params={"digest": digest_of(b"other", "sha512")},
        content=data,
    )
    assert wrong.status_code == 400
    assert error_code(wrong) == "DIGEST_INVALID"


# --- truncated bodies --------------------------------------------------------------------------


async def test_monolithic_body_shorter_than_content_length(
    admin: httpx.AsyncClient, state: AppState, unique_repo: str
) -> None:
    data = _unique_bytes(100)
    digest = digest_of(data)
    response = await admin.post(
        f"/v2/{unique_repo}/blobs/uploads/",
        params={"digest": digest},
        content=data[:60],
        headers={"Content-Length": "100"},
    )
    assert response.status_code == 400
    assert error_code(response) == "SIZE_INVALID"
    await _assert_not_stored(admin, state, unique_repo, digest)
    await _assert_not_stored(admin, state, unique_repo, digest_of(data[:60]))


async def test_patch_shorter_than_content_range(
    admin: httpx.AsyncClient, state: AppState, unique_repo: str
) -> None:
    location = await _open(admin, unique_repo)
    await admin.patch(location, content=b"a" * 10)
    response = await admin.patch(location, content=b"b" * 5, headers={"Content-Range": "10-29"})
    assert response.status_code in {400, 416}
    assert error_code(response) in {"SIZE_INVALID", "RANGE_INVALID"}
    status = await admin.get(location)
    assert status.headers["range"] == "0-9"
    # Nothing of the refused chunk was kept: the upload completes with the first 10 bytes.
    put = await admin.put(location, params={"digest": digest_of(b"a" * 10)})
    assert put.status_code == 201
    assert await rows_in_repository(state, BlobUpload, unique_repo) == 0


async def test_patch_shorter_than_content_length(
    admin: httpx.AsyncClient, unique_repo: str
) -> None:
    location = await _open(admin, unique_repo)
    response = await admin.patch(location, content=b"c" * 5, headers={"Content-Length": "50"})
    assert response.status_code == 400
    assert error_code(response) == "SIZE_INVALID"
    assert (await admin.get(location)).headers["range"] == "0-0"


async def test_final_put_shorter_than_declared(
    admin: httpx.AsyncClient, state: AppState, unique_repo: str
) -> None:
    data = _unique_bytes(80)
    digest = digest_of(data)
    location = await _open(admin, unique_repo)
    await admin.patch(location, content=data[:40])
    response = await admin.put(
        location,
        params={"digest": digest},
        content=data[40:60],
        headers={"Content-Range": "40-79"},
    )
    assert response.status_code == 400
    assert error_code(response) == "SIZE_INVALID"
    assert (await admin.get(f"/v2/{unique_repo}/blobs/{digest}")).status_code == 404
    assert not await blob_row_exists(state, digest)


async def test_bad_content_range(admin: httpx.AsyncClient, unique_repo: str) -> None:
    location = await _open(admin, unique_repo)
    for value in ("abc", "-1", "5-2", "bytes 0-9/5", "0-99999999999999999999"):
        response = await admin.patch(location, content=b"d" * 10, headers={"Content-Range": value})
        assert response.status_code in {400, 416}, value
        assert error_code(response) in {"RANGE_INVALID", "SIZE_INVALID", "BLOB_UPLOAD_INVALID"}
        assert (await admin.get(location)).headers["range"] == "0-0"


async def test_bad_content_length(admin: httpx.AsyncClient, unique_repo: str) -> None:
    location = await _open(admin, unique_repo)
    response = await admin.patch(location, content=b"d" * 10, headers={"Content-Length": "ten"})
    assert response.status_code == 400
    assert (await admin.get(location)).headers["range"] == "0-0"


# --- cross-repository mount -------------------------------------------------------------------


async def test_mount_from_repository_that_has_the_blob(
    admin: httpx.AsyncClient, state: AppState, unique_repo: str
) -> None:
    data = _unique_bytes()
    digest = await push_blob(admin, unique_repo, data)
    target = f"{unique_repo}-mounted"
    response = await admin.post(
        f"/v2/{target}/blobs/uploads/", params={"mount": digest, "from": unique_repo}
    )
    assert response.status_code == 201
    assert response.headers["docker-content-digest"] == digest
    assert httpx.URL(response.headers["location"]).path == f"/v2/{target}/blobs/{digest}"
    assert (await admin.get(f"/v2/{target}/blobs/{digest}")).content == data
    assert await rows_in_repository(state, BlobUpload, target) == 0


async def test_mount_falls_back_to_upload_when_source_lacks_blob(
    admin: httpx.AsyncClient, unique_repo: str
) -> None:
    source = f"{unique_repo}-source"
    await push_blob(admin, source, b"the source exists")
    data = _unique_bytes()
    digest = digest_of(data)
    for origin in (source, f"{unique_repo}-no-such-repo", "Not/A/Valid/Name"):
        response = await admin.post(
            f"/v2/{unique_repo}/blobs/uploads/", params={"mount": digest, "from": origin}
        )
        assert response.status_code == 202, origin
        _assert_upload_headers(response, unique_repo, 0)
    # The session it opened is a real one.
    location = httpx.URL(response.headers["location"]).path
    put = await admin.put(location, params={"digest": digest}, content=data)
    assert put.status_code == 201


async def test_mount_with_digest_falls_back_to_monolithic(
    admin: httpx.AsyncClient, unique_repo: str
) -> None:
    data = _unique_bytes()
    digest = digest_of(data)
    response = await admin.post(
        f"/v2/{unique_repo}/blobs/uploads/",
        params={"mount": digest, "from": f"{unique_repo}-nothing", "digest": digest},
        content=data,
    )
    assert response.status_code == 201
    assert (await admin.get(f"/v2/{unique_repo}/blobs/{digest}")).content == data


@pytest.fixture
async def outsider(
    app: Starlette, state: AppState
) -> AsyncIterator[tuple[httpx.AsyncClient, str, str]]:
    """A user owning project ``own`` but not a member of private project ``secret``.

    Yields (client, own project, secret project).
    """
    suffix = uuid.uuid4().hex[:8]
    username, password = f"user{suffix}", f"Pw-{suffix}-x1"
    own, secret = f"own{suffix}", f"secret{suffix}"
    async with state.db.write() as session:
        user = User(username=username, password=hash_password(password), email=f"{suffix}@t.test")
        session.add(user)
        await session.flush()
        await create_project(session, own, owner_id=user.user_id)
        await create_project(session, secret, owner_id=1)
    async with make_client(app, (username, password)) as client:
        yield client, own, secret


async def test_mount_from_unreadable_source_opens_upload(
    admin: httpx.AsyncClient,
    state: AppState,
    outsider: tuple[httpx.AsyncClient, str, str],
) -> None:
    client, own, secret = outsider
    data = _unique_bytes()
    digest = await push_blob(admin, f"{secret}/hidden", data)
    target = f"{own}/app"
    response = await client.post(
        f"/v2/{target}/blobs/uploads/", params={"mount": digest, "from": f"{secret}/hidden"}
    )
    assert response.status_code == 202
    _assert_upload_headers(response, target, 0)
    assert (await client.get(f"/v2/{target}/blobs/{digest}")).status_code == 404
    # The outsider can read neither the blob nor the source repository.
    refused = await client.get(f"/v2/{secret}/hidden/blobs/{digest}")
    assert refused.status_code == 403
    assert error_code(refused) == "DENIED"
