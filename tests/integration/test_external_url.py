"""``external_url`` is what the token realm and Location headers use behind a proxy."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette
from tests.integration.conftest import ADMIN_PASSWORD, make_client

from dockyard.app import create_app
from dockyard.settings import Settings


@pytest.fixture
async def proxied(settings: Settings, app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    # Same (already migrated) database and storage as the session app.
    behind_proxy = settings.model_copy(update={"external_url": "https://registry.example.com"})
    application = create_app(behind_proxy)
    async with application.router.lifespan_context(application), make_client(application) as client:
        yield client


async def test_realm_and_locations_use_external_url(proxied: httpx.AsyncClient) -> None:
    challenge = await proxied.get("/v2/")
    assert challenge.status_code == 401
    assert (
        'realm="https://registry.example.com/service/token"'
        in challenge.headers["www-authenticate"]
    )
    started = await proxied.post(
        "/v2/library/proxied/blobs/uploads/", auth=("admin", ADMIN_PASSWORD)
    )
    assert started.status_code == 202
    assert started.headers["location"].startswith(
        "https://registry.example.com/v2/library/proxied/blobs/uploads/"
    )


async def test_without_external_url_the_request_host_is_used(anon: httpx.AsyncClient) -> None:
    response = await anon.get("/v2/", headers={"Host": "mirror.internal:8443"})
    assert (
        'realm="http://mirror.internal:8443/service/token"' in response.headers["www-authenticate"]
    )
