"""Listings: end-8a/8b (tags/list), the ``_catalog`` extension and end-12a/12b (referrers)."""

from __future__ import annotations

import json
import re
import uuid

import httpx
from tests.integration.registry_helpers import (
    OCI_INDEX,
    OCI_MANIFEST,
    digest_of,
    error_code,
    image_manifest,
    push_blob,
    push_image,
)

from dockyard.http.state import AppState

API_VERSION = "registry/2.0"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
LINK = re.compile(r'<(?P<url>[^>]+)>; rel="next"')


async def _tag(client: httpx.AsyncClient, repo: str, body: bytes, *tags: str) -> None:
    for tag in tags:
        response = await client.put(
            f"/v2/{repo}/manifests/{tag}", content=body, headers={"Content-Type": OCI_MANIFEST}
        )
        assert response.status_code == 201, response.text


async def _follow(client: httpx.AsyncClient, url: str, key: str) -> tuple[list[str], int]:
    """Walk ``Link`` headers from ``url``; returns every item and the number of pages."""
    items: list[str] = []
    pages = 0
    next_url: str | None = url
    while next_url is not None:
        response = await client.get(next_url)
        assert response.status_code == 200, response.text
        pages += 1
        items.extend(response.json()[key])
        link = response.headers.get("link")
        match = LINK.fullmatch(link) if link else None
        assert link is None or match is not None, link
        next_url = match["url"] if match else None
        assert pages < 50
    return items, pages


# --- tags/list --------------------------------------------------------------------------------

TAGS = ["v1.0", "V2", "latest", "1.0", "1-0", "1_0", "_private", "a", "B", "zeta", "Zeta"]


async def test_tags_in_lexical_order(admin: httpx.AsyncClient, unique_repo: str) -> None:
    _, body = await push_image(admin, unique_repo, None, layers=0)
    await _tag(admin, unique_repo, body, *TAGS)
    response = await admin.get(f"/v2/{unique_repo}/tags/list")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["docker-distribution-api-version"] == API_VERSION
    assert "link" not in response.headers
    assert response.json() == {"name": unique_repo, "tags": sorted(TAGS)}


async def test_tags_paginated(admin: httpx.AsyncClient, unique_repo: str) -> None:
    _, body = await push_image(admin, unique_repo, None, layers=0)
    await _tag(admin, unique_repo, body, *TAGS)
    expected = sorted(TAGS)

    first = await admin.get(f"/v2/{unique_repo}/tags/list", params={"n": 4})
    assert first.json()["tags"] == expected[:4]
    match = LINK.fullmatch(first.headers["link"])
    assert match is not None
    next_url = httpx.URL(match["url"])
    assert next_url.path == f"/v2/{unique_repo}/tags/list"
    assert next_url.params["n"] == "4"
    assert next_url.params["last"] == expected[3]

    for n, pages in ((1, len(TAGS)), (4, 3), (5, 3), (11, 1), (100, 1)):
        items, walked = await _follow(admin, f"/v2/{unique_repo}/tags/list?n={n}", "tags")
        assert items == expected, n
        assert walked == pages, n


async def test_tags_last_without_n(admin: httpx.AsyncClient, unique_repo: str) -> None:
    _, body = await push_image(admin, unique_repo, None, layers=0)
    await _tag(admin, unique_repo, body, *TAGS)
    expected = sorted(TAGS)
    response = await admin.get(f"/v2/{unique_repo}/tags/list", params={"last": "a"})
    assert response.json()["tags"] == [t for t in expected if t > "a"]
    between = await admin.get(f"/v2/{unique_repo}/tags/list", params={"last": "M", "n": 2})
    assert between.json()["tags"] == [t for t in expected if t > "M"][:2]
    past = await admin.get(f"/v2/{unique_repo}/tags/list", params={"last": "zzz"})
    assert past.json()["tags"] == []
    assert "link" not in past.headers


async def test_tags_n_zero(admin: httpx.AsyncClient, unique_repo: str) -> None:
    await push_image(admin, unique_repo, "v1", layers=0)
    response = await admin.get(f"/v2/{unique_repo}/tags/list", params={"n": 0})
    assert response.status_code == 200
    assert response.json()["tags"] == []
    assert "link" not in response.headers


async def test_tags_invalid_n(admin: httpx.AsyncClient, unique_repo: str) -> None:
    await push_image(admin, unique_repo, "v1", layers=0)
    for n in ("-1", "abc", "1.5", "²", "0x10", " 3"):
        response = await admin.get(f"/v2/{unique_repo}/tags/list", params={"n": n})
        assert response.status_code == 400, n
        assert error_code(response) == "PAGINATION_NUMBER_INVALID"


async def test_tags_of_unknown_repository(admin: httpx.AsyncClient, unique_repo: str) -> None:
    response = await admin.get(f"/v2/{unique_repo}/tags/list")
    assert response.status_code == 404
    assert error_code(response) == "NAME_UNKNOWN"


async def test_tags_anonymous_on_public_project(
    admin: httpx.AsyncClient, anon: httpx.AsyncClient, unique_repo: str
) -> None:
    await push_image(admin, unique_repo, "v1", layers=0)
    response = await anon.get(f"/v2/{unique_repo}/tags/list")
    assert response.status_code == 200
    assert response.json()["tags"] == ["v1"]


async def test_tags_with_nul_in_last(admin: httpx.AsyncClient, unique_repo: str) -> None:
    await push_image(admin, unique_repo, "v1", layers=0)
    response = await admin.get(f"/v2/{unique_repo}/tags/list", params={"last": "a\x00b"})
    assert response.status_code == 400
    assert error_code(response) == "PAGINATION_NUMBER_INVALID"


# --- _catalog ----------------------------------------------------------------------------------


async def test_catalog(admin: httpx.AsyncClient) -> None:
    prefix = f"library/cat{uuid.uuid4().hex[:8]}"
    names = sorted(f"{prefix}-{suffix}" for suffix in ("b", "a", "c.d", "c-d", "c/d"))
    for name in names:
        await push_image(admin, name, "v1", layers=0)

    response = await admin.get("/v2/_catalog")
    assert response.status_code == 200
    assert response.headers["docker-distribution-api-version"] == API_VERSION
    everything = response.json()["repositories"]
    assert everything == sorted(everything)
    assert [n for n in everything if n.startswith(prefix)] == names

    # Pages from just before our names: exactly ours, in order, n at a time.
    last = prefix
    seen: list[str] = []
    while True:
        page = await admin.get("/v2/_catalog", params={"n": 2, "last": last})
        assert page.status_code == 200
        batch = [n for n in page.json()["repositories"] if n.startswith(prefix)]
        seen.extend(batch)
        if len(batch) < 2 or "link" not in page.headers:
            break
        match = LINK.fullmatch(page.headers["link"])
        assert match is not None
        url = httpx.URL(match["url"])
        assert url.path == "/v2/_catalog"
        assert url.params["n"] == "2"
        last = url.params["last"]
        assert last == batch[-1]
    assert seen == names


async def test_catalog_full_walk(admin: httpx.AsyncClient) -> None:
    await push_image(admin, f"library/walk{uuid.uuid4().hex[:8]}", "v1")
    everything = (await admin.get("/v2/_catalog")).json()["repositories"]
    n = max(len(everything) // 4, 1)  # a few pages, however many repositories the session made
    items, pages = await _follow(admin, f"/v2/_catalog?n={n}", "repositories")
    assert items == everything
    assert pages == -(-len(everything) // n)  # ceil: no empty page after a full one


async def test_catalog_omits_repositories_without_manifests(
    admin: httpx.AsyncClient, unique_repo: str
) -> None:
    await push_blob(admin, unique_repo, b"only a blob")
    names = (await admin.get("/v2/_catalog")).json()["repositories"]
    assert unique_repo not in names


async def test_catalog_requires_admin(anon: httpx.AsyncClient) -> None:
    response = await anon.get("/v2/_catalog")
    assert response.status_code == 401
    assert error_code(response) == "UNAUTHORIZED"
    assert "registry:catalog:*" in response.headers["www-authenticate"]
    assert response.headers["docker-distribution-api-version"] == API_VERSION


async def test_catalog_invalid_n(admin: httpx.AsyncClient) -> None:
    for n in ("-2", "x", "²"):
        response = await admin.get("/v2/_catalog", params={"n": n})
        assert response.status_code == 400, n
        assert error_code(response) == "PAGINATION_NUMBER_INVALID"
        assert response.headers["docker-distribution-api-version"] == API_VERSION


async def test_catalog_n_zero_and_nul_last(admin: httpx.AsyncClient) -> None:
    zero = await admin.get("/v2/_catalog", params={"n": 0})
    assert zero.status_code == 200
    assert zero.json()["repositories"] == []
    assert "link" not in zero.headers
    nul = await admin.get("/v2/_catalog", params={"last": "\x00"})
    assert nul.status_code == 400


# --- referrers ----------------------------------------------------------------------------------


async def _referrer(
    client: httpx.AsyncClient,
    repo: str,
    subject: tuple[str, int],
    artifact_type: str | None,
    annotations: dict[str, str] | None = None,
    *,
    config_type: str = OCI_EMPTY,
) -> tuple[str, bytes]:
    empty = await push_blob(client, repo, b"{}")
    payload = f"payload {artifact_type} {uuid.uuid4()}".encode()
    layer = await push_blob(client, repo, payload)
    body = image_manifest(
        (empty, 2),
        [(layer, len(payload))],
        subject=subject,
        artifact_type=artifact_type,
        config_type=config_type,
        annotations=annotations,
    )
    digest = digest_of(body)
    response = await client.put(
        f"/v2/{repo}/manifests/{digest}", content=body, headers={"Content-Type": OCI_MANIFEST}
    )
    assert response.status_code == 201, response.text
    assert response.headers["oci-subject"] == subject[0]
    return digest, body


async def test_referrers(admin: httpx.AsyncClient, unique_repo: str) -> None:
    subject_digest, subject_body = await push_image(admin, unique_repo, "app", layers=0)
    subject = (subject_digest, len(subject_body))
    sig_digest, sig = await _referrer(
        admin, unique_repo, subject, "application/vnd.example.sig", {"signed-by": "me"}
    )
    sbom_digest, sbom = await _referrer(admin, unique_repo, subject, "application/spdx+json")
    # No artifactType: the config's media type stands in for it.
    cfg_digest, cfg = await _referrer(
        admin, unique_repo, subject, None, config_type="application/vnd.example.config+json"
    )

    response = await admin.get(f"/v2/{unique_repo}/referrers/{subject_digest}")
    assert response.status_code == 200
    assert response.headers["content-type"] == OCI_INDEX
    assert response.headers["docker-distribution-api-version"] == API_VERSION
    assert "oci-filters-applied" not in response.headers
    index = response.json()
    assert index["schemaVersion"] == 2
    assert index["mediaType"] == OCI_INDEX
    by_digest = {d["digest"]: d for d in index["manifests"]}
    assert by_digest == {
        sig_digest: {
            "mediaType": OCI_MANIFEST,
            "digest": sig_digest,
            "size": len(sig),
            "artifactType": "application/vnd.example.sig",
            "annotations": {"signed-by": "me"},
        },
        sbom_digest: {
            "mediaType": OCI_MANIFEST,
            "digest": sbom_digest,
            "size": len(sbom),
            "artifactType": "application/spdx+json",
        },
        cfg_digest: {
            "mediaType": OCI_MANIFEST,
            "digest": cfg_digest,
            "size": len(cfg),
            "artifactType": "application/vnd.example.config+json",
        },
    }


async def test_referrers_filtered_by_artifact_type(
    admin: httpx.AsyncClient, unique_repo: str
) -> None:
    subject_digest, subject_body = await push_image(admin, unique_repo, "app", layers=0)
    subject = (subject_digest, len(subject_body))
    sig_digest, _ = await _referrer(admin, unique_repo, subject, "application/vnd.example.sig")
    await _referrer(admin, unique_repo, subject, "application/spdx+json")

    response = await admin.get(
        f"/v2/{unique_repo}/referrers/{subject_digest}",
        params={"artifactType": "application/vnd.example.sig"},
    )
    assert response.status_code == 200
    assert response.headers["oci-filters-applied"] == "artifactType"
    assert response.headers["content-type"] == OCI_INDEX
    assert [d["digest"] for d in response.json()["manifests"]] == [sig_digest]

    for nothing in ("application/none", "a\x00b"):
        empty = await admin.get(
            f"/v2/{unique_repo}/referrers/{subject_digest}", params={"artifactType": nothing}
        )
        assert empty.status_code == 200
        assert empty.headers["oci-filters-applied"] == "artifactType"
        assert empty.json()["manifests"] == []


async def test_referrers_of_digest_without_referrers(
    admin: httpx.AsyncClient, unique_repo: str
) -> None:
    subject_digest, _ = await push_image(admin, unique_repo, "app", layers=0)
    for digest in (subject_digest, digest_of(b"nothing at all"), digest_of(b"x", "sha512")):
        response = await admin.get(f"/v2/{unique_repo}/referrers/{digest}")
        assert response.status_code == 200
        assert response.headers["content-type"] == OCI_INDEX
        assert response.json() == {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}


async def test_referrers_of_other_repository_are_not_listed(
    admin: httpx.AsyncClient, unique_repo: str
) -> None:
    subject_digest, subject_body = await push_image(admin, unique_repo, "app", layers=0)
    other = f"{unique_repo}-other"
    await _referrer(admin, other, (subject_digest, len(subject_body)), "application/x.sig")
    response = await admin.get(f"/v2/{unique_repo}/referrers/{subject_digest}")
    assert response.json()["manifests"] == []


async def test_referrer_deleted_leaves_the_list(
    admin: httpx.AsyncClient, state: AppState, unique_repo: str
) -> None:
    subject_digest, subject_body = await push_image(admin, unique_repo, "app", layers=0)
    subject = (subject_digest, len(subject_body))
    sig_digest, _ = await _referrer(admin, unique_repo, subject, "application/vnd.example.sig")
    assert (await admin.delete(f"/v2/{unique_repo}/manifests/{sig_digest}")).status_code == 202
    response = await admin.get(f"/v2/{unique_repo}/referrers/{subject_digest}")
    assert response.json()["manifests"] == []


async def test_referrers_bad_digest(admin: httpx.AsyncClient, unique_repo: str) -> None:
    await push_image(admin, unique_repo, "app", layers=0)
    for digest in ("sha256:abc", "latest", "md5:" + "0" * 32, "sha256:" + "Z" * 64):
        response = await admin.get(f"/v2/{unique_repo}/referrers/{digest}")
        assert response.status_code == 400, digest
        assert error_code(response) == "DIGEST_INVALID"


async def test_referrers_anonymous_on_public_project(
    admin: httpx.AsyncClient, anon: httpx.AsyncClient, unique_repo: str
) -> None:
    subject_digest, subject_body = await push_image(admin, unique_repo, "app", layers=0)
    await _referrer(
        admin, unique_repo, (subject_digest, len(subject_body)), "application/vnd.example.sig"
    )
    response = await anon.get(f"/v2/{unique_repo}/referrers/{subject_digest}")
    assert response.status_code == 200
    assert len(response.json()["manifests"]) == 1
    assert json.loads(response.content)["mediaType"] == OCI_INDEX
