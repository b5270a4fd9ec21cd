"""Hostile and malformed input on every ``/v2/`` endpoint: a clear 4xx, never a 500,
and nothing stored."""

from __future__ import annotations

import base64
import json

import httpx
from sqlalchemy import func, select
from tests.integration.registry_helpers import (
    OCI_MANIFEST,
    digest_of,
    error_code,
    image_manifest,
    push_blob,
    push_image,
)

from dockyard.http.state import AppState
from dockyard.registry.models import BlobUpload, Repository

API_VERSION = "registry/2.0"
DIGEST = digest_of(b"some blob")


def assert_client_error(response: httpx.Response, *statuses: int) -> None:
    """A 4xx among ``statuses``; a JSON OCI error body whenever /v2/ routing reached us."""
    assert response.status_code < 500, response.text
    assert response.status_code in statuses, (response.status_code, response.text)
    json_error = response.headers.get("content-type") == "application/json"
    if json_error and response.status_code >= 400 and response.request.method != "HEAD":
        errors = response.json()["errors"]
        assert errors[0]["code"]
        assert errors[0]["message"]


async def _row_counts(state: AppState) -> tuple[int, int]:
    async with state.db.read() as session:
        repositories = await session.scalar(select(func.count()).select_from(Repository))
        uploads = await session.scalar(select(func.count()).select_from(BlobUpload))
    return int(repositories or 0), int(uploads or 0)


# --- hostile repository names ----------------------------------------------------------------

# Paths as sent on the wire (already percent-encoded where that matters).
HOSTILE_NAMES = [
    "../x",
    "library/../x",
    "library/%2e%2e/x",
    "library/%2E%2E/etc",
    "%2e%2e/%2e%2e/etc",
    "library/%2e/x",
    "library//x",
    "library/x/",
    "/library/x",
    "Library/x",
    "library/X",
    "library/" + "a" * 300,
    "library/%C3%BCn%C3%AFc%C3%B8de",
    "library/%00x",
    "library/x%0Ay",
    "library/x%20y",
    "library/a%5Cb",
    "library/-x",
    "library/x..y",
    "library/x__-y",
    "library%2F..%2Fx",
    "x",
]


def _paths(name: str) -> list[tuple[str, str]]:
    return [
        ("GET", f"/v2/{name}/manifests/latest"),
        ("HEAD", f"/v2/{name}/manifests/latest"),
        ("PUT", f"/v2/{name}/manifests/latest"),
        ("DELETE", f"/v2/{name}/manifests/latest"),
        ("GET", f"/v2/{name}/blobs/{DIGEST}"),
        ("DELETE", f"/v2/{name}/blobs/{DIGEST}"),
        ("POST", f"/v2/{name}/blobs/uploads/"),
        ("POST", f"/v2/{name}/blobs/uploads/?digest={DIGEST}"),
        ("PATCH", f"/v2/{name}/blobs/uploads/abc"),
        ("GET", f"/v2/{name}/tags/list"),
        ("GET", f"/v2/{name}/referrers/{DIGEST}"),
    ]


async def test_hostile_repository_names(admin: httpx.AsyncClient, state: AppState) -> None:
    before = await _row_counts(state)
    for name in HOSTILE_NAMES:
        for method, path in _paths(name):
            # An explicit httpx.URL keeps the percent-encoding exactly as written.
            url = httpx.URL(f"http://registry.test{path}")
            body = b"some blob" if method in {"PUT", "POST", "PATCH"} else None
            response = await admin.request(method, url, content=body)
            assert_client_error(response, 400, 404)
            if method == "HEAD":
                continue
            if response.status_code == 400:
                assert error_code(response) == "NAME_INVALID", (method, path, response.text)
            elif response.headers.get("content-type") == "application/json":
                # 404 only where the router cannot tell a name apart, never a lookup.
                assert error_code(response) == "NOT_FOUND", (method, path, response.text)
    assert await _row_counts(state) == before


async def test_invalid_name_message_says_why(admin: httpx.AsyncClient) -> None:
    response = await admin.get("/v2/library/UPPER/tags/list")
    assert response.status_code == 400
    assert error_code(response) == "NAME_INVALID"
    assert "uppercase" in response.json()["errors"][0]["message"]
    long = await admin.get("/v2/library/" + "a" * 300 + "/tags/list")
    assert long.status_code == 400
    assert "255" in long.json()["errors"][0]["message"]


async def test_mount_from_hostile_name(admin: httpx.AsyncClient, unique_repo: str) -> None:
    digest = await push_blob(admin, unique_repo, b"mount me")
    target = f"{unique_repo}-target"
    for source in ("../x", "library/../" + unique_repo.split("/")[1], "%2e%2e", "\x00", "A/B"):
        response = await admin.post(
            f"/v2/{target}/blobs/uploads/", params={"mount": digest, "from": source}
        )
        assert response.status_code == 202, source
    assert (await admin.get(f"/v2/{target}/blobs/{digest}")).status_code == 404


# --- a project that does not exist -----------------------------------------------------------


async def test_push_into_missing_project(
    admin: httpx.AsyncClient, state: AppState, unique_repo: str
) -> None:
    project = "nosuchproject" + unique_repo[-8:]
    name = f"{project}/app"
    data = b"orphan bytes"
    before = await _row_counts(state)

    session = await admin.post(f"/v2/{name}/blobs/uploads/")
    monolithic = await admin.post(
        f"/v2/{name}/blobs/uploads/", params={"digest": digest_of(data)}, content=data
    )
    config = await push_blob(admin, unique_repo, b"{}")
    manifest = image_manifest((config, 2), [])
    put = await admin.put(
        f"/v2/{name}/manifests/v1", content=manifest, headers={"Content-Type": OCI_MANIFEST}
    )
    mount = await admin.post(
        f"/v2/{name}/blobs/uploads/", params={"mount": config, "from": unique_repo}
    )
    for response in (session, monolithic, put, mount):
        assert response.status_code == 404, response.text
        assert error_code(response) == "NAME_UNKNOWN"
        assert project in response.json()["errors"][0]["message"]
        assert response.headers["docker-distribution-api-version"] == API_VERSION

    after = await _row_counts(state)
    assert after[1] == before[1]  # no upload sessions left behind
    async with state.db.read() as db:
        assert await db.scalar(select(Repository.name).where(Repository.name == name)) is None
    assert (await admin.get(f"/v2/{name}/tags/list")).status_code == 404


async def test_pull_from_missing_project(admin: httpx.AsyncClient) -> None:
    for path in ("/v2/nosuchproj/app/manifests/latest", "/v2/nosuchproj/app/tags/list"):
        response = await admin.get(path)
        assert response.status_code == 404
        assert error_code(response) == "NAME_UNKNOWN"


# --- methods and endpoints -------------------------------------------------------------------


UNSUPPORTED = [
    ("POST", "/v2/{repo}/manifests/latest", {"GET", "HEAD", "PUT", "DELETE"}),
    ("PATCH", "/v2/{repo}/manifests/latest", {"GET", "HEAD", "PUT", "DELETE"}),
    ("PUT", "/v2/{repo}/blobs/" + DIGEST, {"GET", "HEAD", "DELETE"}),
    ("POST", "/v2/{repo}/blobs/" + DIGEST, {"GET", "HEAD", "DELETE"}),
    ("GET", "/v2/{repo}/blobs/uploads/", {"POST"}),
    ("DELETE", "/v2/{repo}/blobs/uploads/", {"POST"}),
    ("POST", "/v2/{repo}/blobs/uploads/abc", {"GET", "PATCH", "PUT", "DELETE"}),
    ("DELETE", "/v2/{repo}/tags/list", {"GET"}),
    ("PUT", "/v2/{repo}/tags/list", {"GET"}),
    ("DELETE", "/v2/{repo}/referrers/" + DIGEST, {"GET"}),
    ("DELETE", "/v2/", {"GET", "HEAD"}),
    ("POST", "/v2/", {"GET", "HEAD"}),
    ("POST", "/v2/_catalog", {"GET"}),
    ("DELETE", "/v2/_catalog", {"GET"}),
]


async def test_unsupported_method(admin: httpx.AsyncClient, unique_repo: str) -> None:
    for method, path, allow in UNSUPPORTED:
        response = await admin.request(method, path.format(repo=unique_repo), content=b"x")
        assert response.status_code == 405, (method, path)
        assert error_code(response) == "UNSUPPORTED"
        assert {m.strip() for m in response.headers["allow"].split(",")} == allow
        assert response.headers["docker-distribution-api-version"] == API_VERSION


async def test_unknown_endpoint(admin: httpx.AsyncClient, unique_repo: str) -> None:
    for path in (
        "/v2/{repo}/nothing",
        "/v2/{repo}/manifests/",
        "/v2/{repo}/tags/list/",
        "/v2/{repo}/tags",
        "/v2/{repo}/blobs/",
        "/v2/{repo}/referrers/",
        "/v2/_catalog/x",
    ):
        response = await admin.get(path.format(repo=unique_repo))
        assert_client_error(response, 404)
        assert error_code(response) == "NOT_FOUND", path


# --- credentials -----------------------------------------------------------------------------

GARBAGE_AUTHORIZATION = [
    b"garbage",
    b"Basic",
    b"Basic !!!",
    b"Basic \xe9\xe9",
    b"Basic " + base64.b64encode(b"no-colon"),
    b"Basic " + base64.b64encode(b":no-user"),
    b"Basic " + base64.b64encode(b"\xff\xfe:\xfd"),
    b"Basic " + base64.b64encode(b"ad\x00min:x"),
    b"Basic " + base64.b64encode(b"admin:wrong"),
    b"Bearer",
    b"Bearer not-a-token",
    b"Bearer a.b.c",
    b"Negotiate abc",
]


async def test_garbage_authorization(
    admin: httpx.AsyncClient, anon: httpx.AsyncClient, state: AppState, unique_repo: str
) -> None:
    await push_image(admin, unique_repo, "v1", layers=0)
    before = await _row_counts(state)
    for header in GARBAGE_AUTHORIZATION:
        for method, path in [
            ("GET", "/v2/"),
            ("GET", "/v2/_catalog"),
            ("GET", f"/v2/{unique_repo}/tags/list"),
            ("GET", f"/v2/{unique_repo}/manifests/v1"),
            ("POST", f"/v2/{unique_repo}/blobs/uploads/"),
            ("DELETE", f"/v2/{unique_repo}/manifests/v1"),
        ]:
            response = await anon.request(method, path, headers={"Authorization": header})
            assert response.status_code == 401, (header, method, path, response.text)
            assert error_code(response) == "UNAUTHORIZED"
            assert response.headers["www-authenticate"]
            assert response.headers["docker-distribution-api-version"] == API_VERSION
    assert await _row_counts(state) == before
    assert (await admin.get(f"/v2/{unique_repo}/manifests/v1")).status_code == 200


# --- headers and parameters ------------------------------------------------------------------


async def test_bad_content_length(
    admin: httpx.AsyncClient, state: AppState, unique_repo: str
) -> None:
    data = b"abc"
    before = await _row_counts(state)
    for value in (b"abc", b"-1", b"1e3", b"\xb2", b"12 ", b""):
        response = await admin.post(
            f"/v2/{unique_repo}/blobs/uploads/",
            params={"digest": digest_of(data)},
            content=data,
            headers={"Content-Length": value},
        )
        assert_client_error(response, 400)
        assert error_code(response) == "SIZE_INVALID", value
        manifest = await admin.put(
            f"/v2/{unique_repo}/manifests/v1",
            content=b"{}",
            headers={"Content-Length": value, "Content-Type": OCI_MANIFEST},
        )
        assert_client_error(manifest, 400)
    assert (await _row_counts(state))[1] == before[1]


BAD_CONTENT_RANGES = [
    "bytes",
    "0-",
    "-5",
    "5-2",
    "a-b",
    "0-9/5",
    "0-9/x",
    "0--9",
    "99999999999999999999-1",
    "\xb2-3",
]


async def test_bad_content_range_on_put(admin: httpx.AsyncClient, unique_repo: str) -> None:
    response = await admin.post(f"/v2/{unique_repo}/blobs/uploads/")
    location = httpx.URL(response.headers["location"]).path
    data = b"0123456789"
    for value in BAD_CONTENT_RANGES:
        put = await admin.put(
            location,
            params={"digest": digest_of(data)},
            content=data,
            headers={"Content-Range": value.encode("latin-1")},
        )
        assert_client_error(put, 400, 416)
        assert error_code(put) in {"RANGE_INVALID", "SIZE_INVALID"}, value
        assert (await admin.get(f"/v2/{unique_repo}/blobs/{digest_of(data)}")).status_code == 404
        status = await admin.get(location)
        assert status.status_code == 204
        assert status.headers["range"] == "0-0"


async def test_hostile_upload_ids(admin: httpx.AsyncClient, unique_repo: str) -> None:
    await push_blob(admin, unique_repo, b"the repository exists")
    for upload_id in ("%00", "x" * 300, "..", "%2e%2e", "a%0Ab", "%C3%A9", "abc%20def"):
        url = httpx.URL(f"http://registry.test/v2/{unique_repo}/blobs/uploads/{upload_id}")
        for method in ("GET", "PATCH", "PUT", "DELETE"):
            response = await admin.request(
                method,
                url.copy_merge_params({"digest": DIGEST}) if method == "PUT" else url,
                content=b"x" if method in {"PATCH", "PUT"} else None,
            )
            assert_client_error(response, 404, 405)
            json_error = response.headers.get("content-type") == "application/json"
            if response.status_code == 404 and json_error and upload_id not in {"..", "%2e%2e"}:
                assert error_code(response) == "BLOB_UPLOAD_UNKNOWN", (method, upload_id)


HOSTILE_REFERENCES = [
    "sha256:" + "a" * 300,
    "sha256:%00",
    "%00",
    "a" * 129,
    "sha256:",
    ":",
    "%C3%A9",
    "sha256:" + "A" * 64,
    "sha384:" + "a" * 96,
]


async def test_hostile_manifest_references(
    admin: httpx.AsyncClient, state: AppState, unique_repo: str
) -> None:
    await push_image(admin, unique_repo, "v1", layers=0)
    before = await _row_counts(state)
    for reference in HOSTILE_REFERENCES:
        url = f"http://registry.test/v2/{unique_repo}/manifests/{reference}"
        for method in ("GET", "HEAD", "PUT", "DELETE"):
            response = await admin.request(
                method,
                httpx.URL(url),
                content=b"{}" if method == "PUT" else None,
                headers={"Content-Type": OCI_MANIFEST},
            )
            if method in {"GET", "HEAD"}:  # names no manifest: the spec's and Harbor's 404
                assert_client_error(response, 404)
                if method == "GET":
                    assert error_code(response) == "MANIFEST_UNKNOWN", reference
                continue
            assert_client_error(response, 400)
            codes = {"DIGEST_INVALID", "MANIFEST_INVALID", "TAG_INVALID"}
            assert error_code(response) in codes, (method, reference)
    assert await _row_counts(state) == before


async def test_hostile_blob_digests(admin: httpx.AsyncClient, unique_repo: str) -> None:
    await push_blob(admin, unique_repo, b"the repository exists")
    for digest in ("sha256:" + "a" * 300, "%00", "sha256:%00", ":", "abc"):
        url = httpx.URL(f"http://registry.test/v2/{unique_repo}/blobs/{digest}")
        for method in ("GET", "HEAD", "DELETE"):
            response = await admin.request(method, url)
            assert_client_error(response, 400)
            if method != "HEAD":
                assert error_code(response) == "DIGEST_INVALID", (method, digest)
        upload = await admin.post(
            f"/v2/{unique_repo}/blobs/uploads/", params={"digest": digest}, content=b"x"
        )
        assert_client_error(upload, 400)
        assert error_code(upload) == "DIGEST_INVALID"


async def test_hostile_listing_parameters(admin: httpx.AsyncClient, unique_repo: str) -> None:
    await push_image(admin, unique_repo, "v1", layers=0)
    for query in (
        {"n": "\x00"},
        {"n": "9" * 40},
        {"last": "\x00"},
        {"last": "é" * 500},
        {"n": "2", "last": "\uffff"},
    ):
        for path in (f"/v2/{unique_repo}/tags/list", "/v2/_catalog"):
            response = await admin.get(path, params=query)
            assert_client_error(response, 200, 400)


async def test_hostile_referrers_filter(admin: httpx.AsyncClient, unique_repo: str) -> None:
    digest, _ = await push_image(admin, unique_repo, "v1", layers=0)
    for artifact_type in ("\x00", "é" * 500, "a" * 5000, "x/y; z=\x01"):
        response = await admin.get(
            f"/v2/{unique_repo}/referrers/{digest}", params={"artifactType": artifact_type}
        )
        assert response.status_code == 200
        assert response.json()["manifests"] == []


async def test_manifest_with_hostile_json(
    admin: httpx.AsyncClient, state: AppState, unique_repo: str
) -> None:
    config = await push_blob(admin, unique_repo, b"{}")
    base = json.loads(image_manifest((config, 2), []))
    before = await _row_counts(state)
    bodies = [
        b"[" * 100_000 + b"]" * 100_000,
        b'{"schemaVersion": 2, "n": 1' + b"0" * 10_000 + b"}",
        b'{"schemaVersion": NaN}',
        json.dumps({**base, "annotations": {"k": "\x00"}}).encode(),
        json.dumps({**base, "config": {**base["config"], "size": -1}}).encode(),
        json.dumps({**base, "config": {**base["config"], "size": 2**64}}).encode(),
        json.dumps({**base, "config": {**base["config"], "size": "2"}}).encode(),
        json.dumps({**base, "layers": [None]}).encode(),
        json.dumps({**base, "subject": "sha256:abc"}).encode(),
        json.dumps({**base, "artifactType": "not a media type"}).encode(),
        b'{"schemaVersion": 2, "mediaType": "\\ud800"}',
    ]
    for body in bodies:
        response = await admin.put(
            f"/v2/{unique_repo}/manifests/hostile",
            content=body,
            headers={"Content-Type": OCI_MANIFEST},
        )
        assert_client_error(response, 400)
        assert error_code(response) in {"MANIFEST_INVALID", "DIGEST_INVALID"}, body[:80]
    assert await _row_counts(state) == before
    assert (await admin.get(f"/v2/{unique_repo}/manifests/hostile")).status_code == 404
