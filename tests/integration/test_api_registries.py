"""Harbor's registry endpoint API (``/registries``, ``/replication/adapters``…) against a
real remote: Debian's ``docker-registry`` with htpasswd Basic auth over TLS with a
self-signed certificate (one per module), on both databases."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from tests.support.docker_registry import DockerRegistry, available, start_docker_registry
from tests.support.server import free_port

from dockyard.http.state import AppState
from dockyard.remotes.models import RegistryEndpoint

pytestmark = pytest.mark.skipif(not available(), reason="docker-registry is not installed")

REGISTRIES = "/api/v2.0/registries"
UNDECLARED = {"X-Dockyard-Contract": "skip"}
PASSWORD = "Passw0rdPassw0rd"


@pytest.fixture(scope="module")
def remote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockerRegistry]:
    with start_docker_registry(
        tmp_path_factory.mktemp("remote"), auth="basic", tls=True
    ) as registry:
        yield registry


def _name() -> str:
    return f"r{uuid.uuid4().hex[:12]}"


def _body(remote: DockerRegistry, **extra: Any) -> dict[str, Any]:
    return {
        "name": _name(),
        "type": "docker-registry",
        "url": remote.url,
        "insecure": True,
        "credential": {
            "type": "basic",
            "access_key": remote.username,
            "access_secret": remote.password,
        },
        **extra,
    }


async def _create(admin: httpx.AsyncClient, body: dict[str, Any]) -> int:
    response = await admin.post(REGISTRIES, json=body)
    assert response.status_code == 201, response.text
    location = response.headers["location"]
    assert location.startswith(f"{REGISTRIES}/")
    return int(location.rsplit("/", 1)[1])


async def _count(state: AppState) -> int:
    async with state.db.read() as session:
        return int(await session.scalar(select(func.count()).select_from(RegistryEndpoint)) or 0)


async def test_lifecycle_masks_and_seals_the_secret(
    admin: httpx.AsyncClient, remote: DockerRegistry, state: AppState
) -> None:
    body = _body(remote, description="build site")
    registry_id = await _create(admin, body)

    got = await admin.get(f"{REGISTRIES}/{registry_id}")
    assert got.status_code == 200
    shown = got.json()
    assert shown["name"] == body["name"]
    assert shown["url"] == remote.url
    assert shown["type"] == "docker-registry"
    assert shown["insecure"] is True
    assert shown["status"] == "unknown"
    assert shown["credential"] == {
        "type": "basic",
        "access_key": remote.username,
        "access_secret": "*****",
    }
    assert remote.password not in got.text

    # At rest the secret is sealed: the row does not hold it.
    async with state.db.read() as session:
        row = await session.get(RegistryEndpoint, registry_id)
        assert row is not None
        assert row.access_secret
        assert remote.password not in row.access_secret

    listed = await admin.get(REGISTRIES, params={"q": f"name={body['name']}"})
    assert listed.status_code == 200
    assert listed.headers["x-total-count"] == "1"
    assert listed.json() == [shown]
    assert remote.password not in listed.text
    by_name = await admin.get(REGISTRIES, params={"name": body["name"][2:9]})
    assert [r["id"] for r in by_name.json()] == [registry_id]

    # The saved endpoint pings with its stored (sealed) secret; the status is recorded.
    ping = await admin.post(f"{REGISTRIES}/ping", json={"id": registry_id})
    assert ping.status_code == 200, ping.text
    assert (await admin.get(f"{REGISTRIES}/{registry_id}")).json()["status"] == "healthy"

    # An update sending the mask back keeps the secret; a wrong one makes the ping fail.
    updated = await admin.put(
        f"{REGISTRIES}/{registry_id}",
        json={"description": "prod", "access_secret": "*****", "name": body["name"] + "x"},
    )
    assert updated.status_code == 200, updated.text
    assert (await admin.post(f"{REGISTRIES}/ping", json={"id": registry_id})).status_code == 200
    assert (
        await admin.put(f"{REGISTRIES}/{registry_id}", json={"access_secret": "wrong-one"})
    ).status_code == 200
    failed = await admin.post(f"{REGISTRIES}/ping", json={"id": registry_id})
    assert failed.status_code == 400
    assert "credentials were refused" in failed.json()["errors"][0]["message"]
    after = (await admin.get(f"{REGISTRIES}/{registry_id}")).json()
    assert after["status"] == "unhealthy"
    assert after["description"] == "prod"
    assert after["name"] == body["name"] + "x"

    info = await admin.get(f"{REGISTRIES}/{registry_id}/info")
    assert info.status_code == 200
    assert info.json()["type"] == "docker-registry"
    assert set(info.json()["supported_triggers"]) == {"manual", "scheduled"}
    assert {f["type"] for f in info.json()["supported_resource_filters"]} == {"name", "tag"}

    deleted = await admin.delete(f"{REGISTRIES}/{registry_id}")
    assert deleted.status_code == 200
    assert (await admin.get(f"{REGISTRIES}/{registry_id}")).status_code == 404
    assert (await admin.delete(f"{REGISTRIES}/{registry_id}")).status_code == 404

    logs = await admin.get("/api/v2.0/audit-logs", params={"q": f"resource=~{body['name']}"})
    operations = sorted(entry["operation"] for entry in logs.json())
    assert operations == ["create", "delete", "update", "update"]


async def test_ping_unsaved(admin: httpx.AsyncClient, remote: DockerRegistry) -> None:
    ok = {
        "type": "docker-registry",
        "url": remote.url,
        "insecure": True,
        "credential_type": "basic",
        "access_key": remote.username,
        "access_secret": remote.password,
    }
    assert (await admin.post(f"{REGISTRIES}/ping", json=ok)).status_code == 200

    wrong = await admin.post(f"{REGISTRIES}/ping", json={**ok, "access_secret": "nope"})
    assert wrong.status_code == 400
    assert "credentials were refused" in wrong.json()["errors"][0]["message"]

    anonymous = {k: v for k, v in ok.items() if not k.startswith(("access", "credential"))}
    refused = await admin.post(f"{REGISTRIES}/ping", json=anonymous)
    assert refused.status_code == 400

    # The certificate is self-signed: refused unless insecure or its CA bundle is given.
    untrusted = await admin.post(f"{REGISTRIES}/ping", json={**ok, "insecure": False})
    assert untrusted.status_code == 400
    assert "certificate" in untrusted.json()["errors"][0]["message"]
    trusted = await admin.post(
        f"{REGISTRIES}/ping", json={**ok, "insecure": False, "ca_certificate": remote.ca_pem}
    )
    assert trusted.status_code == 200, trusted.text


async def test_ping_of_an_endpoint_that_is_down_fails_fast(admin: httpx.AsyncClient) -> None:
    started = time.monotonic()
    down = await admin.post(
        f"{REGISTRIES}/ping",
        json={"type": "docker-registry", "url": f"http://127.0.0.1:{free_port()}"},
    )
    assert down.status_code == 400
    message = down.json()["errors"][0]["message"]
    assert "unhealthy" in message
    assert "127.0.0.1" in message
    assert time.monotonic() - started < 10


async def test_ping_of_a_silent_endpoint_times_out(
    admin: httpx.AsyncClient, state: AppState
) -> None:
    """A server that accepts the connection and never answers: the ping ends by the
    deadline with a clear message, it does not hang."""
    accepted: list[asyncio.StreamWriter] = []

    async def hold(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    saved = state.settings.outbound_timeout_seconds
    object.__setattr__(state.settings, "outbound_timeout_seconds", 0.5)
    try:
        started = time.monotonic()
        silent = await admin.post(
            f"{REGISTRIES}/ping",
            json={"type": "docker-registry", "url": f"http://127.0.0.1:{port}"},
        )
        assert silent.status_code == 400
        assert "no answer" in silent.json()["errors"][0]["message"]
        assert time.monotonic() - started < 8
    finally:
        object.__setattr__(state.settings, "outbound_timeout_seconds", saved)
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_adapters_and_infos(admin: httpx.AsyncClient) -> None:
    kinds = await admin.get("/api/v2.0/replication/adapters")
    assert kinds.status_code == 200
    assert kinds.json() == ["docker-hub", "docker-registry", "harbor"]
    infos = await admin.get("/api/v2.0/replication/adapterinfos")
    assert infos.status_code == 200
    hub = infos.json()["docker-hub"]["endpoint_pattern"]
    assert hub["endpoint_type"] == "EndpointPatternTypeFix"
    assert hub["endpoints"] == [{"key": "hub.docker.com", "value": "https://hub.docker.com"}]


async def test_callers_without_the_right_are_refused(
    admin: httpx.AsyncClient, anon: httpx.AsyncClient, remote: DockerRegistry, state: AppState
) -> None:
    registry_id = await _create(admin, _body(remote))
    username = f"u{uuid.uuid4().hex[:10]}"
    created = await admin.post(
        "/api/v2.0/users",
        json={
            "username": username,
            "email": f"{username}@example.com",
            "realname": "Someone",
            "password": PASSWORD,
        },
    )
    assert created.status_code == 201
    before = await _count(state)
    transport = admin._transport
    async with httpx.AsyncClient(
        transport=transport, base_url=str(admin.base_url), auth=(username, PASSWORD)
    ) as user:
        for client, status in ((anon, 401), (user, 403)):
            for method, path, body in (
                ("GET", REGISTRIES, None),
                ("POST", REGISTRIES, _body(remote)),
                ("GET", f"{REGISTRIES}/{registry_id}", None),
                ("PUT", f"{REGISTRIES}/{registry_id}", {"description": "x"}),
                ("DELETE", f"{REGISTRIES}/{registry_id}", None),
                ("GET", f"{REGISTRIES}/{registry_id}/info", None),
                ("POST", f"{REGISTRIES}/ping", {"id": registry_id}),
                ("GET", "/api/v2.0/replication/adapters", None),
                ("GET", "/api/v2.0/replication/adapterinfos", None),
            ):
                answer = await client.request(method, path, json=body)
                assert answer.status_code == status, (method, path, answer.text)
                assert answer.json()["errors"][0]["code"] in ("UNAUTHORIZED", "FORBIDDEN")
    assert await _count(state) == before
    assert (await admin.get(f"{REGISTRIES}/{registry_id}")).json()["description"] == ""


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"url": "ftp://127.0.0.1/x"}, "http:// or https://"),
        ({"url": "file:///etc/passwd"}, "http:// or https://"),
        ({"url": "not a url at all"}, "url"),
        ({"url": "http://"}, "url"),
        ({"url": "http://user:pw@127.0.0.1:5000"}, "credentials"),
        ({"url": "http://169.254.169.254/latest"}, "egress"),
        ({"url": "http://metadata.google.internal"}, "egress"),
        ({"url": "http://127.0.0.1/" + "a" * 3000}, "longer"),
        ({"url": ""}, "url is required"),
        ({"name": ""}, "name is required"),
        ({"name": "a\x00b"}, "control characters"),
        ({"name": "n" * 300}, "longer"),
        ({"type": "quay"}, "not supported"),
        ({"type": "../../etc"}, "not supported"),
        ({"credential": {"type": "kerberos", "access_key": "a", "access_secret": "b"}}, "type"),
        ({"credential": {"type": "basic", "access_key": "", "access_secret": "b"}}, "access_key"),
        ({"credential": {"type": "oauth", "access_secret": "tok\nen"}}, "control"),
        ({"ca_certificate": "-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----"}, "PEM"),
        ({"insecure": "maybe"}, "insecure"),
    ],
)
async def test_bad_input_is_refused_and_nothing_stored(
    admin: httpx.AsyncClient,
    remote: DockerRegistry,
    state: AppState,
    change: dict[str, Any],
    needle: str,
) -> None:
    before = await _count(state)
    answer = await admin.post(REGISTRIES, json={**_body(remote), **change})
    assert answer.status_code == 400, answer.text
    assert needle in answer.json()["errors"][0]["message"]
    assert await _count(state) == before


async def test_hostile_bodies_and_paths(
    admin: httpx.AsyncClient, remote: DockerRegistry, state: AppState
) -> None:
    before = await _count(state)
    huge = await admin.post(
        REGISTRIES,
        content=b'{"name": "' + b"x" * (2 * 1024 * 1024) + b'"}',
        headers={"Content-Type": "application/json", **UNDECLARED},
    )
    assert huge.status_code in (400, 413)
    not_json = await admin.post(REGISTRIES, content=b"{nope", headers=UNDECLARED)
    assert not_json.status_code == 400
    wrong_shape = await admin.post(REGISTRIES, json=["a"])
    assert wrong_shape.status_code == 400
    assert await _count(state) == before

    for path in (f"{REGISTRIES}/abc", f"{REGISTRIES}/-1", f"{REGISTRIES}/99999999999999999999"):
        answer = await admin.get(path, headers=UNDECLARED)
        assert answer.status_code in (400, 404), path
        assert "errors" in answer.json()
    assert (await admin.get(f"{REGISTRIES}/987654321")).status_code == 404
    assert (await admin.get(f"{REGISTRIES}/987654321/info")).status_code == 404
    missing = await admin.post(f"{REGISTRIES}/ping", json={"id": 987654321})
    assert missing.status_code == 404
    bad_q = await admin.get(REGISTRIES, params={"q": "secret=x"})
    assert bad_q.status_code == 400
    bad_sort = await admin.get(REGISTRIES, params={"sort": "access_secret"})
    assert bad_sort.status_code == 400

    # A second endpoint may not take a name in use, nor be renamed onto one.
    first = _body(remote)
    first_id = await _create(admin, first)
    second_id = await _create(admin, _body(remote))
    assert (
        await admin.post(REGISTRIES, json={**_body(remote), "name": first["name"]})
    ).status_code == 409
    clash = await admin.put(f"{REGISTRIES}/{second_id}", json={"name": first["name"]})
    assert clash.status_code == 409
    unchanged = await admin.put(f"{REGISTRIES}/{first_id}", json={"url": "gopher://x"})
    assert unchanged.status_code == 400
    assert (await admin.get(f"{REGISTRIES}/{first_id}")).json()["url"] == remote.url


async def test_paging(admin: httpx.AsyncClient, remote: DockerRegistry) -> None:
    stem = f"p{uuid.uuid4().hex[:8]}"
    for i in range(3):
        await _create(admin, {**_body(remote), "name": f"{stem}-{i}"})
    first = await admin.get(
        REGISTRIES, params={"q": f"name=~{stem}", "page": "1", "page_size": "2", "sort": "-name"}
    )
    assert first.headers["x-total-count"] == "3"
    assert [r["name"] for r in first.json()] == [f"{stem}-2", f"{stem}-1"]
    assert 'rel="next"' in first.headers["link"]
    second = await admin.get(
        REGISTRIES, params={"q": f"name=~{stem}", "page": "2", "page_size": "2", "sort": "-name"}
    )
    assert [r["name"] for r in second.json()] == [f"{stem}-0"]


def test_module_registry_is_tls(remote: DockerRegistry, tmp_path: Path) -> None:
    """The remote this module pings really is HTTPS with an untrusted certificate."""
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{remote.url}/v2/", timeout=5)


async def test_a_robot_granted_registry_access(
    admin: httpx.AsyncClient, remote: DockerRegistry, state: AppState
) -> None:
    """Registry endpoints are a system resource a robot can be granted (Harbor's catalogue):
    what it holds it may do, nothing more."""
    access = [
        {"resource": "registry", "action": "list"},
        {"resource": "registry", "action": "read"},
        {"resource": "replication-adapter", "action": "list"},
    ]
    created = await admin.post(
        "/api/v2.0/robots",
        json={
            "name": f"s{uuid.uuid4().hex[:10]}",
            "level": "system",
            "duration": -1,
            "permissions": [{"kind": "system", "namespace": "/", "access": access}],
        },
    )
    assert created.status_code == 201, created.text
    robot = (created.json()["name"], created.json()["secret"])
    registry_id = await _create(admin, _body(remote))
    before = await _count(state)
    async with httpx.AsyncClient(
        transport=admin._transport, base_url=str(admin.base_url), auth=robot
    ) as client:
        assert (await client.get(REGISTRIES)).status_code == 200
        assert (await client.get(f"{REGISTRIES}/{registry_id}")).status_code == 200
        assert (await client.get("/api/v2.0/replication/adapters")).status_code == 200
        assert (await client.post(REGISTRIES, json=_body(remote))).status_code == 403
        assert (await client.delete(f"{REGISTRIES}/{registry_id}")).status_code == 403
    assert await _count(state) == before


async def test_a_secret_this_database_cannot_open(
    admin: httpx.AsyncClient, remote: DockerRegistry, state: AppState
) -> None:
    """A sealed secret from another installation's key: a clear 400, never a 500; reads
    and setting the secret again still work."""
    registry_id = await _create(admin, _body(remote))
    async with state.db.write() as session:
        row = await session.get(RegistryEndpoint, registry_id)
        assert row is not None
        row.access_secret = "gAAAAAB-not-sealed-with-this-key"
    ping = await admin.post(f"{REGISTRIES}/ping", json={"id": registry_id})
    assert ping.status_code == 400
    assert "set it again" in ping.json()["errors"][0]["message"]
    keep = await admin.put(f"{REGISTRIES}/{registry_id}", json={"access_key": remote.username})
    assert keep.status_code == 400
    assert (await admin.get(f"{REGISTRIES}/{registry_id}")).status_code == 200
    again = await admin.put(f"{REGISTRIES}/{registry_id}", json={"access_secret": remote.password})
    assert again.status_code == 200
    assert (await admin.post(f"{REGISTRIES}/ping", json={"id": registry_id})).status_code == 200
