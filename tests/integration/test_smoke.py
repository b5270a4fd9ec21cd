from __future__ import annotations

import httpx
from tests.integration.registry_helpers import push_image


async def test_push_then_pull_by_tag(admin: httpx.AsyncClient, unique_repo: str) -> None:
    digest, manifest = await push_image(admin, unique_repo)
    response = await admin.get(f"/v2/{unique_repo}/manifests/latest")
    assert response.status_code == 200
    assert response.content == manifest
    assert response.headers["docker-content-digest"] == digest
