"""An OIDC user's CLI secret with real clients: sign in through a real provider
(``tests/support/oidc_provider.py``) against a real ``dockyard serve``, then skopeo and
podman log in with the secret, get access through the OIDC group recorded at sign-in,
and keep working while the provider is down (the secret does not hang on the provider's
tokens); a regenerated secret replaces the old one at once.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from tests.support.oci_layout import make_image_layout
from tests.support.oidc_provider import (
    CLIENT_ID,
    CLIENT_SECRET,
    BrowserFlow,
    OidcProviderServer,
    start_provider,
)
from tests.support.podman import Podman
from tests.support.server import DockyardServer
from tests.support.skopeo import Skopeo

PROJECT = "oidcteam"
_SECRET = re.compile(r'data-testid="cli-secret">.*?<code>([^<]+)</code>', re.S)
_CSRF = re.compile(r'name="_csrf" value="([^"]*)"')


@pytest.fixture(scope="module")
def oidc_server() -> Iterator[tuple[DockyardServer, OidcProviderServer]]:
    dockyard = DockyardServer(env={"DOCKYARD_EGRESS_ALLOW_LOOPBACK": "true"})
    provider = start_provider(
        [dockyard.url + "/c/oidc/callback"],
        {"dana": {"preferred_username": "dana", "email": "dana@example.org", "groups": ["team"]}},
    )
    try:
        with dockyard:
            admin = httpx.Client(base_url=dockyard.url, auth=dockyard.admin_auth, timeout=30)
            with admin:
                configured = admin.put(
                    "/api/v2.0/configurations",
                    json={
                        "auth_mode": "oidc_auth",
                        "oidc_name": "Team IdP",
                        "oidc_endpoint": provider.issuer,
                        "oidc_client_id": CLIENT_ID,
                        "oidc_client_secret": CLIENT_SECRET,
                        "oidc_scope": "openid,profile,email,groups",
                        "oidc_groups_claim": "groups",
                        "oidc_auto_onboard": True,
                    },
                )
                assert configured.status_code == 200, configured.text
                dockyard.create_project(PROJECT)
                group = admin.post(
                    "/api/v2.0/usergroups", json={"group_name": "team", "group_type": 3}
                )
                assert group.status_code == 201, group.text
                group_id = int(group.headers["location"].rsplit("/", 1)[1])
                member = admin.post(
                    f"/api/v2.0/projects/{PROJECT}/members",
                    json={"role_id": 2, "member_group": {"id": group_id}},
                )
                assert member.status_code == 201, member.text
            yield dockyard, provider
    finally:
        provider.close()


@pytest.fixture(scope="module")
async def signed_in(
    oidc_server: tuple[DockyardServer, OidcProviderServer],
) -> AsyncIterator[tuple[BrowserFlow, str]]:
    dockyard, _ = oidc_server
    async with (
        httpx.AsyncClient(base_url=dockyard.url, timeout=30) as console,
        httpx.AsyncClient(timeout=30) as idp,
    ):
        browser = BrowserFlow(console, idp, dockyard.url)
        landed = await browser.sign_in("dana")
        assert landed.status_code == 303, landed.text
        profile = await console.get("/harbor/account/profile")
        found = _SECRET.search(profile.text)
        assert found, profile.text
        yield browser, found.group(1)


async def test_skopeo_and_podman_with_the_cli_secret(
    oidc_server: tuple[DockyardServer, OidcProviderServer],
    signed_in: tuple[BrowserFlow, str],
    skopeo: Skopeo,
    podman: Podman,
    tmp_path: Path,
) -> None:
    dockyard, provider = oidc_server
    browser, secret = signed_in
    image = make_image_layout(tmp_path / "src", layers=1)
    target = f"docker://{dockyard.registry}/{PROJECT}/app:1"
    pushed = skopeo.run(
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        f"dana:{secret}",
        f"oci:{image.path}:{image.tag}",
        target,
        check=False,
    )
    assert pushed.returncode == 0, pushed.stderr  # a developer through the OIDC group "team"
    wrong = skopeo.run(
        "inspect", "--tls-verify=false", "--creds", f"dana:x{secret}", target, check=False
    )
    assert wrong.returncode != 0

    login = podman.run(
        "login", "--tls-verify=false", "-u", "dana", "-p", secret, dockyard.registry, check=False
    )
    assert login.returncode == 0, login.stderr

    # The provider is gone: the CLI secret still works (nothing of the provider's is needed).
    assert provider.process is not None
    provider.process.terminate()
    provider.process.wait(timeout=10)
    inspected = skopeo.run(
        "inspect", "--tls-verify=false", "--creds", f"dana:{secret}", target, check=False
    )
    assert inspected.returncode == 0, inspected.stderr

    # A regenerated secret replaces the old one at once.
    page = await browser.console.get("/harbor/account/profile")
    csrf = _CSRF.search(page.text)
    assert csrf
    regenerated = await browser.console.post(
        "/harbor/account/cli-secret", data={"_csrf": csrf.group(1)}
    )
    assert regenerated.status_code == 303
    newer = _SECRET.search((await browser.console.get("/harbor/account/profile")).text)
    assert newer and newer.group(1) != secret
    old = skopeo.run(
        "inspect", "--tls-verify=false", "--creds", f"dana:{secret}", target, check=False
    )
    assert old.returncode != 0
    new = skopeo.run(
        "inspect", "--tls-verify=false", "--creds", f"dana:{newer.group(1)}", target, check=False
    )
    assert new.returncode == 0, new.stderr
