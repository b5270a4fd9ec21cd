"""skopeo as an HTTP auth proxy user against a real ``dockyard serve`` and a real auth
proxy on loopback (``tests/support/authproxy.py``): login, push through an HTTP group's
role, pull, a wrong password, and the proxy going down (admin still works)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.support.authproxy import PASSWORD, AuthProxyServer
from tests.support.oci_layout import layout_tags, make_image_layout
from tests.support.server import DockyardServer
from tests.support.skopeo import Skopeo

pytestmark = pytest.mark.e2e

PROJECT = "proxyteam"


@pytest.fixture(scope="module")
def proxy() -> Iterator[AuthProxyServer]:
    server = AuthProxyServer()
    server.add("alice", ["builders"])
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def proxy_server(proxy: AuthProxyServer) -> Iterator[DockyardServer]:
    """A fresh server signing in through the proxy, with the HTTP group ``builders`` a
    developer of ``proxyteam`` (added by name before anyone signed in: skip_search)."""
    with DockyardServer() as running, httpx.Client(base_url=running.url, timeout=30) as http:
        api = f"{running.url}/api/v2.0"
        configured = http.put(
            f"{api}/configurations",
            auth=running.admin_auth,
            json={
                "auth_mode": "http_auth",
                "http_authproxy_endpoint": proxy.login_url,
                "http_authproxy_tokenreview_endpoint": proxy.review_url,
                "http_authproxy_skip_search": True,
            },
        )
        assert configured.status_code == 200, configured.text
        created = http.post(
            f"{api}/projects", auth=running.admin_auth, json={"project_name": PROJECT}
        )
        assert created.status_code == 201, created.text
        member = http.post(
            f"{api}/projects/{PROJECT}/members",
            auth=running.admin_auth,
            headers={"X-Is-Resource-Name": "true"},
            json={"role_id": 2, "member_group": {"group_name": "builders", "group_type": 2}},
        )
        assert member.status_code == 201, member.text
        yield running


def test_skopeo_login_push_and_pull_as_a_proxy_user(
    proxy_server: DockyardServer, skopeo: Skopeo, tmp_path: Path
) -> None:
    login = skopeo.run(
        "login", "--tls-verify=false", "-u", "alice", "-p", PASSWORD, proxy_server.registry
    )
    assert "Login Succeeded" in login.stdout
    image = make_image_layout(tmp_path / "src", layers=1, tag="v1")
    target = f"docker://{proxy_server.registry}/{PROJECT}/app:v1"
    skopeo.run("copy", "--dest-tls-verify=false", f"oci:{image.path}:v1", target)
    out = tmp_path / "out"
    skopeo.run("copy", "--src-tls-verify=false", target, f"oci:{out}:v1")
    assert layout_tags(out)["v1"] == image.manifest_digest
    skopeo.run("logout", proxy_server.registry)


def test_skopeo_login_with_a_wrong_password_fails(
    proxy_server: DockyardServer, skopeo: Skopeo
) -> None:
    refused = skopeo.run(
        "login",
        "--tls-verify=false",
        "-u",
        "alice",
        "-p",
        "wrong",
        proxy_server.registry,
        check=False,
    )
    assert refused.returncode != 0
    assert "invalid username/password" in refused.stderr


def test_proxy_down_says_so_and_admin_still_logs_in(
    proxy_server: DockyardServer, skopeo: Skopeo
) -> None:
    with httpx.Client(base_url=proxy_server.url, timeout=30) as http:
        moved = http.put(
            f"{proxy_server.url}/api/v2.0/configurations",
            auth=proxy_server.admin_auth,
            json={"http_authproxy_endpoint": "http://127.0.0.1:9/login"},
        )
        assert moved.status_code == 200, moved.text
    down = skopeo.run(
        "login",
        "--tls-verify=false",
        "-u",
        "alice",
        "-p",
        PASSWORD,
        proxy_server.registry,
        check=False,
    )
    assert down.returncode != 0
    assert "503 (Service Unavailable)" in down.stderr, down.stderr
    admin = skopeo.run(
        "login",
        "--tls-verify=false",
        "-u",
        "admin",
        "-p",
        proxy_server.admin_password,
        proxy_server.registry,
    )
    assert "Login Succeeded" in admin.stdout
