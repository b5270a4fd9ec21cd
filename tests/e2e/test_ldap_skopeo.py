"""skopeo as an LDAP user against a real ``dockyard serve`` and a real OpenLDAP: login, push,
pull, a wrong password, roles through (nested) LDAP groups, and the directory going down
(admin still works)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.support.oci_layout import layout_tags, make_image_layout
from tests.support.server import DockyardServer
from tests.support.skopeo import Skopeo
from tests.support.slapd import (
    BASE_DN,
    SEARCH_DN,
    SEARCH_PASSWORD,
    USER_PASSWORD,
    Slapd,
    group_dn,
    start_slapd,
)

pytestmark = pytest.mark.e2e

PROJECT = "ldapteam"


@pytest.fixture(scope="module")
def directory() -> Iterator[Slapd]:
    server = start_slapd(groups=True)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def ldap_server(directory: Slapd) -> Iterator[DockyardServer]:
    """A fresh server (only ``admin`` exists, so the mode may change) signing in via LDAP,
    with alice a developer of ``ldapteam``."""
    with DockyardServer() as running, httpx.Client(base_url=running.url, timeout=30) as http:
        api = f"{running.url}/api/v2.0"
        configured = http.put(
            f"{api}/configurations",
            auth=running.admin_auth,
            json={
                "auth_mode": "ldap_auth",
                "ldap_url": directory.url,
                "ldap_search_dn": SEARCH_DN,
                "ldap_search_password": SEARCH_PASSWORD,
                "ldap_base_dn": BASE_DN,
                "ldap_uid": "uid",
                "ldap_group_base_dn": BASE_DN,
                "ldap_group_membership_attribute": "memberOf,uniqueMember",
            },
        )
        assert configured.status_code == 200, configured.text
        created = http.post(
            f"{api}/projects", auth=running.admin_auth, json={"project_name": PROJECT}
        )
        assert created.status_code == 201, created.text
        # alice exists once she has signed in (onboarding); then she can be made a member.
        me = http.get(f"{api}/users/current", auth=("alice", USER_PASSWORD))
        assert me.status_code == 200, me.text
        member = http.post(
            f"{api}/projects/{PROJECT}/members",
            auth=running.admin_auth,
            headers={"X-Is-Resource-Name": "true"},
            json={"role_id": 2, "member_user": {"username": "alice"}},
        )
        assert member.status_code == 201, member.text
        # bob maintains through a uniqueMember group; carol is a guest through team-a in
        # team-b in team-c (groups named by DN only: onboarded from the directory).
        for dn, role in ((group_dn("maintainers"), 4), (group_dn("team-c"), 3)):
            added = http.post(
                f"{api}/projects/{PROJECT}/members",
                auth=running.admin_auth,
                headers={"X-Is-Resource-Name": "true"},
                json={"role_id": role, "member_group": {"ldap_group_dn": dn}},
            )
            assert added.status_code == 201, added.text
        yield running


def test_skopeo_login_push_and_pull_as_an_ldap_user(
    ldap_server: DockyardServer, skopeo: Skopeo, tmp_path: Path
) -> None:
    login = skopeo.run(
        "login", "--tls-verify=false", "-u", "alice", "-p", USER_PASSWORD, ldap_server.registry
    )
    assert "Login Succeeded" in login.stdout
    image = make_image_layout(tmp_path / "src", layers=1, tag="v1")
    target = f"docker://{ldap_server.registry}/{PROJECT}/app:v1"
    skopeo.run("copy", "--dest-tls-verify=false", f"oci:{image.path}:v1", target)
    out = tmp_path / "out"
    skopeo.run("copy", "--src-tls-verify=false", target, f"oci:{out}:v1")
    assert layout_tags(out)["v1"] == image.manifest_digest
    skopeo.run("logout", ldap_server.registry)


def test_groups_give_their_roles_to_skopeo(
    ldap_server: DockyardServer, skopeo: Skopeo, tmp_path: Path
) -> None:
    image = make_image_layout(tmp_path / "src", layers=1, tag="v1")
    target = f"docker://{ldap_server.registry}/{PROJECT}/grouped:v1"
    skopeo.run(
        "copy",
        "--dest-tls-verify=false",
        f"--dest-creds=bob:{USER_PASSWORD}",
        f"oci:{image.path}:v1",
        target,
    )
    refused = skopeo.run(
        "copy",
        "--dest-tls-verify=false",
        f"--dest-creds=carol:{USER_PASSWORD}",
        f"oci:{image.path}:v1",
        f"docker://{ldap_server.registry}/{PROJECT}/guest-push:v1",
        check=False,
    )
    assert refused.returncode != 0
    assert "denied" in refused.stderr.lower() or "unauthorized" in refused.stderr.lower()
    out = tmp_path / "out"
    skopeo.run(
        "copy",
        "--src-tls-verify=false",
        f"--src-creds=carol:{USER_PASSWORD}",
        target,
        f"oci:{out}:v1",
    )
    assert layout_tags(out)["v1"] == image.manifest_digest


def test_skopeo_login_with_a_wrong_password_fails(
    ldap_server: DockyardServer, skopeo: Skopeo
) -> None:
    refused = skopeo.run(
        "login",
        "--tls-verify=false",
        "-u",
        "alice",
        "-p",
        "wrong",
        ldap_server.registry,
        check=False,
    )
    assert refused.returncode != 0
    assert "invalid username/password" in refused.stderr


def test_directory_down_says_so_and_admin_still_logs_in(
    ldap_server: DockyardServer, skopeo: Skopeo, directory: Slapd
) -> None:
    directory.stop()
    try:
        down = skopeo.run(
            "login",
            "--tls-verify=false",
            "-u",
            "alice",
            "-p",
            USER_PASSWORD,
            ldap_server.registry,
            check=False,
        )
        assert down.returncode != 0
        # containers/image prints the token service's status, not its body: a 503, never
        # "invalid username/password" (the API and /v2/ bodies say "cannot be reached").
        assert "503 (Service Unavailable)" in down.stderr, down.stderr
        assert "invalid username/password" not in down.stderr
        admin = skopeo.run(
            "login",
            "--tls-verify=false",
            "-u",
            "admin",
            "-p",
            ldap_server.admin_password,
            ldap_server.registry,
        )
        assert "Login Succeeded" in admin.stdout
    finally:
        directory.start()
    again = skopeo.run(
        "login", "--tls-verify=false", "-u", "alice", "-p", USER_PASSWORD, ldap_server.registry
    )
    assert "Login Succeeded" in again.stdout
