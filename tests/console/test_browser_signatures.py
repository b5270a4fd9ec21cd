"""The console's content trust in a real browser (Debian's Chromium through Playwright) against
a real ``dockyard serve`` (issue 22): a project admin trusts a cosign key and turns content
trust on from the configuration page, and the artifact page shows which signature verifies."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

import httpx
from playwright.sync_api import Page, expect
from tests.console.test_browser import sign_in
from tests.support import cosign_sign
from tests.support.oci_layout import make_image_layout
from tests.support.server import DockyardServer
from tests.support.skopeo import Skopeo

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def _push_signature(
    client: httpx.Client, repo: str, subject: str, signature: cosign_sign.CosignSignature
) -> None:
    for blob in (signature.config, signature.payload):
        digest = "sha256:" + hashlib.sha256(blob).hexdigest()
        posted = client.post(f"/v2/{repo}/blobs/uploads/", params={"digest": digest}, content=blob)
        assert posted.status_code == 201, posted.text
    put = client.put(
        f"/v2/{repo}/manifests/{cosign_sign.signature_tag(subject)}",
        content=signature.manifest,
        headers={"Content-Type": OCI_MANIFEST},
    )
    assert put.status_code == 201, put.text


def test_trust_a_key_turn_content_trust_on_and_see_verified_signatures(
    page: Page, server: DockyardServer, skopeo: Skopeo, tmp_path: Path
) -> None:
    project = f"p{uuid.uuid4().hex[:8]}"
    repo = f"{project}/app"
    with httpx.Client(base_url=server.url, auth=server.admin_auth, timeout=30) as client:
        assert client.post("/api/v2.0/projects", json={"project_name": project}).status_code == 201
        image = make_image_layout(
            tmp_path / "image",
            layers=1,
            layer_size=1024,
            tag="1.0",
        )
        skopeo.run(
            "copy",
            "--dest-tls-verify=false",
            "--dest-creds",
            server.admin_creds,
            f"oci:{image.path}:1.0",
            f"docker://{server.registry}/{repo}:1.0",
        )
        trusted, stranger = cosign_sign.new_key(), cosign_sign.new_key()
        sign_in(page, "admin", server.admin_password)
        page.goto(f"/harbor/projects/{project}/configuration")
        page.get_by_label("Kind").select_option("cosign")
        page.get_by_label("Public key or root certificate (PEM)").fill(
            cosign_sign.public_pem(trusted)
        )
        page.get_by_label("Description").fill("release pipeline")
        page.get_by_role("button", name="Trust this key").click()
        expect(page.get_by_role("status")).to_contain_text("The key is trusted.")
        expect(page.get_by_test_id("trusted-keys")).to_contain_text("release pipeline")
        expect(page.get_by_test_id("trusted-keys")).to_contain_text("ECDSA-P256")
        page.get_by_label("Prevent pulls of images without a cosign signature").check()
        page.get_by_role("button", name="Save").click()
        expect(page.get_by_role("status")).to_contain_text("The configuration was saved.")
        manifest = client.get(f"/v2/{repo}/manifests/1.0")
        assert manifest.status_code == 412, manifest.text

        digest = image.manifest_digest
        good = cosign_sign.sign(trusted, repo, digest, nonce="good")
        _push_signature(client, repo, digest, good)
        bad = cosign_sign.sign(stranger, repo, digest, nonce="bad")
        _push_signature(client, repo, digest, bad)
        assert client.get(f"/v2/{repo}/manifests/1.0").status_code == 200

    page.goto(f"/harbor/projects/{project}/repositories/app/-/artifacts/1.0")
    table = page.get_by_test_id("signatures")
    expect(table).to_contain_text("✓ verified")
    expect(table).to_contain_text("✗ not verified")
    expect(page.locator(f'[data-signature="{good.digest}"]')).to_have_attribute(
        "data-verified", "true"
    )
    expect(page.locator(f'[data-signature="{bad.digest}"]')).to_have_attribute(
        "data-verified", "false"
    )
