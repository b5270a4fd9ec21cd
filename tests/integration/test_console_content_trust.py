"""The console's content trust (issue 22), both databases: the project configuration page's
switches and trusted keys (add, list, remove; refusals flashed, nothing stored), and the
artifact page's signatures with their verification state, in English and Chinese."""

from __future__ import annotations

import html
import re
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette
from tests.console.helpers import sign_in
from tests.integration.conftest import ADMIN_PASSWORD, make_client
from tests.integration.registry_helpers import OCI_MANIFEST, push_blob, push_image
from tests.support import cosign_sign

API = "/api/v2.0"


@pytest.fixture
async def console(app: Starlette) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    async with make_client(app) as client:
        yield client, await sign_in(client, "admin", ADMIN_PASSWORD)


def flash(page: httpx.Response) -> str:
    found = re.search(r'<div class="flash[^"]*"[^>]*>(.*?)</div>', page.text, re.S)
    return html.unescape(found.group(1)) if found else ""


async def follow(client: httpx.AsyncClient, response: httpx.Response) -> httpx.Response:
    assert response.status_code == 303, response.text
    return await client.get(response.headers["location"])


async def test_switches_and_trusted_keys_on_the_configuration_page(
    console: tuple[httpx.AsyncClient, str], admin: httpx.AsyncClient
) -> None:
    client, csrf = console
    project = f"c{uuid.uuid4().hex[:10]}"
    assert (await admin.post(f"{API}/projects", json={"project_name": project})).status_code == 201
    base = f"/harbor/projects/{project}"
    saved = await client.post(
        f"{base}/configuration", data={"_csrf": csrf, "enable_content_trust_cosign": "on"}
    )
    assert "saved" in flash(await follow(client, saved))
    metadata = (await admin.get(f"{API}/projects/{project}/metadatas/")).json()
    assert metadata["enable_content_trust_cosign"] == "true"
    assert metadata["enable_content_trust"] == "false"
    page = (await client.get(f"{base}/configuration")).text
    assert 'name="enable_content_trust_cosign" checked' in page
    assert 'name="enable_content_trust" >' in page

    pem = cosign_sign.public_pem(cosign_sign.new_key())
    added = await client.post(
        f"{base}/trusted-keys",
        data={"_csrf": csrf, "kind": "cosign", "pem": pem, "description": "CI <key>"},
    )
    shown = await follow(client, added)
    assert "trusted" in flash(shown)
    keys = (await admin.get(f"{API}/projects/{project}/trusted-keys")).json()
    assert len(keys) == 1 and keys[0]["description"] == "CI <key>"
    assert f'data-key="{keys[0]["key_id"]}"' in shown.text
    assert "CI &lt;key&gt;" in shown.text and "ECDSA-P256" in shown.text

    for bad, words in (
        ({"kind": "cosign", "pem": "not a key"}, "not PEM"),
        ({"kind": "gpg", "pem": pem}, "kind"),
        ({"kind": "notation", "pem": pem}, "identities"),
    ):
        refused = await client.post(f"{base}/trusted-keys", data={"_csrf": csrf, **bad})
        assert words in flash(await follow(client, refused)), bad
    assert len((await admin.get(f"{API}/projects/{project}/trusted-keys")).json()) == 1
    forged = await client.post(
        f"{base}/trusted-keys", data={"_csrf": "x", "kind": "cosign", "pem": pem}
    )
    assert forged.status_code == 403

    removed = await client.post(f"{base}/trusted-keys/{keys[0]['id']}/delete", data={"_csrf": csrf})
    assert "no longer trusted" in flash(await follow(client, removed))
    assert (await admin.get(f"{API}/projects/{project}/trusted-keys")).json() == []


async def test_artifact_page_shows_signatures_and_their_verification(
    console: tuple[httpx.AsyncClient, str], admin: httpx.AsyncClient
) -> None:
    client, _ = console
    project = f"c{uuid.uuid4().hex[:10]}"
    assert (await admin.post(f"{API}/projects", json={"project_name": project})).status_code == 201
    repo = f"{project}/app"
    digest, _ = await push_image(admin, repo, "1.0", seed=b"console")
    trusted, stranger = cosign_sign.new_key(), cosign_sign.new_key()
    made = await admin.post(
        f"{API}/projects/{project}/trusted-keys",
        json={"kind": "cosign", "pem": cosign_sign.public_pem(trusted)},
    )
    assert made.status_code == 201, made.text
    digests = {}
    for name, key in (("good", trusted), ("bad", stranger)):
        signature = cosign_sign.sign(key, repo, digest, nonce=name)
        await push_blob(admin, repo, signature.config)
        await push_blob(admin, repo, signature.payload)
        put = await admin.put(
            f"/v2/{repo}/manifests/{cosign_sign.signature_tag(digest)}",
            content=signature.manifest,
            headers={"Content-Type": OCI_MANIFEST},
        )
        assert put.status_code == 201, put.text
        digests[name] = signature.digest
    url = f"/harbor/projects/{project}/repositories/app/-/artifacts/{digest}"
    page = (await client.get(url)).text
    assert f'data-signature="{digests["good"]}" data-verified="true"' in page
    assert f'data-signature="{digests["bad"]}" data-verified="false"' in page
    assert "✓ verified" in page and "does not verify" in page
    client.cookies.set("dy_lang", "zh-CN")
    chinese = (await client.get(url)).text
    client.cookies.delete("dy_lang")
    assert "✓ 已验证" in chinese and "签名" in chinese
